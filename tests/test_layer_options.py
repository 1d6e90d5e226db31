"""Layers named in a driver URL (or as keyword options) build one stack in a fixed order."""

from __future__ import annotations

import pytest

from drivers.http import HttpDriver
from drivers.memory import MemoryDriver
from storage import Driver, InvalidArgumentError, Layer, create_driver, create_storage
from storage.layers import (
    Cache,
    Compress,
    DefaultTTL,
    Encrypt,
    Limit,
    ReadOnly,
    Retry,
    Stats,
    Timeout,
    generate_key,
)


def _stack(driver: Driver) -> list[type[Driver]]:
    kinds: list[type[Driver]] = []
    while isinstance(driver, Layer):
        kinds.append(type(driver))
        driver = driver.inner
    return [*kinds, type(driver)]


def test_every_layer_option_builds_its_layer_in_the_documented_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEST_KEYS", generate_key())
    driver = create_driver(
        "memory://?encrypt_keys_env=TEST_KEYS&compress=true&compress_min_size=10"
        "&max_value_size=1000&ttl=60&cache=100&retry=2&timeout=3&stats=true&read_only=true"
    )
    assert _stack(driver) == [
        ReadOnly,
        Stats,
        Timeout,
        Retry,
        Cache,
        DefaultTTL,
        Limit,
        Compress,
        Encrypt,
        MemoryDriver,
    ]


async def test_keyword_options_build_the_same_layers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_KEYS", generate_key())
    driver = create_driver("memory", compress=True, encrypt_keys_env="TEST_KEYS")
    assert _stack(driver) == [Compress, Encrypt, MemoryDriver]
    async with create_storage(driver) as storage:
        await storage.set_item("k", {"v": "x" * 100})
        assert await storage.get_item("k") == {"v": "x" * 100}


def test_an_option_the_driver_takes_itself_stays_the_drivers() -> None:
    driver = create_driver("http://127.0.0.1:1/base?timeout=2&retry=2")
    assert _stack(driver) == [Retry, HttpDriver]


@pytest.mark.parametrize(
    "url",
    [
        "memory://?compress=maybe",
        "memory://?timeout=soon",
        "memory://?encrypt_keys_env=UNISTORAGE_TEST_MISSING",
        "memory://?retry=-1",
    ],
)
def test_bad_layer_options_are_refused_before_any_io(url: str) -> None:
    with pytest.raises(InvalidArgumentError):
        create_driver(url)


def test_no_layer_option_means_no_layer() -> None:
    assert type(create_driver("memory://")) is MemoryDriver
