"""The Limit layer: writes beyond a bound refused before any I/O, or their TTL clamped."""

from __future__ import annotations

import pytest

from drivers.memory import MemoryDriver
from drivers.redis import RedisDriver
from storage import InvalidArgumentError, InvalidKeyError, UnsupportedError, create_storage
from storage.layers.limit import Limit, LimitError
from tests.fixtures.contributing import example_driver_class


async def test_a_value_larger_than_max_value_size_is_refused_before_writing() -> None:
    inner = MemoryDriver()
    storage = create_storage(Limit(inner, max_value_size=10))
    await storage.set_item_raw("fits", b"x" * 10)
    with pytest.raises(LimitError, match="11 bytes; this store allows 10") as caught:
        await storage.set_item_raw("big", b"x" * 11)
    assert caught.value.key == "big"
    assert isinstance(caught.value, InvalidArgumentError)
    assert await inner.get_keys() == ["fits"]


async def test_max_value_size_measures_the_serialized_value() -> None:
    storage = create_storage(Limit(MemoryDriver(), max_value_size=7))
    await storage.set_item("k", "12345")  # '"12345"' is 7 bytes of JSON
    with pytest.raises(LimitError):
        await storage.set_item("k", "123456")


async def test_user_meta_is_bounded_like_a_value() -> None:
    storage = create_storage(Limit(MemoryDriver(), max_value_size=20))
    await storage.set_item("k", 1)
    await storage.set_meta("k", {"a": 1})
    with pytest.raises(LimitError, match="user meta"):
        await storage.set_meta("k", {"owner": "a long name for a small store"})
    assert (await storage.get_meta("k"))["a"] == 1


async def test_key_length_is_measured_in_utf8_bytes() -> None:
    inner = MemoryDriver()
    storage = create_storage(Limit(inner, max_key_length=10))
    await storage.set_item("a" * 10, 1)
    await storage.set_item("é" * 5, 1)  # 5 characters, 10 bytes
    with pytest.raises(InvalidKeyError, match="11 bytes long in UTF-8") as caught:
        await storage.set_item("é" * 5 + "a", 1)  # 6 characters, 11 bytes
    assert caught.value.key == "é" * 5 + "a"
    with pytest.raises(InvalidKeyError):
        await storage.set_item("🎉" * 3, 1)  # 3 characters, 12 bytes
    assert sorted(await inner.get_keys()) == sorted(["a" * 10, "é" * 5])


async def test_reads_of_any_key_pass_through() -> None:
    storage = create_storage(Limit(MemoryDriver(), max_key_length=4))
    assert await storage.get_item("a much longer key") is None
    assert await storage.has_item("a much longer key") is False


async def test_a_ttl_out_of_range_is_refused() -> None:
    inner = MemoryDriver()
    storage = create_storage(Limit(inner, min_ttl=10, max_ttl=100))
    await storage.set_item("ok", 1, ttl=50)
    with pytest.raises(LimitError, match="shorter than min_ttl"):
        await storage.set_item("short", 1, ttl=5)
    with pytest.raises(LimitError, match="longer than max_ttl"):
        await storage.set_item("long", 1, ttl=500)
    with pytest.raises(LimitError, match="never expire"):
        await storage.set_item("forever", 1)
    assert await inner.get_keys() == ["ok"]


async def test_without_max_ttl_a_write_without_ttl_is_fine() -> None:
    storage = create_storage(Limit(MemoryDriver(), min_ttl=10))
    await storage.set_item("forever", 1)
    assert (await storage.get_meta("forever")).get("ttl") is None


async def test_clamp_writes_with_the_nearest_bound(driver_redis: RedisDriver) -> None:
    storage = create_storage(Limit(driver_redis, min_ttl=10, max_ttl=100, ttl_policy="clamp"))
    await storage.set_item("short", 1, ttl=1)
    await storage.set_item("long", 1, ttl=1000)
    await storage.set_item("forever", 1)
    await storage.set_items({"batch": 1}, ttl=5000)
    assert 9 < (await storage.get_meta("short"))["ttl"] <= 10
    for key in ("long", "forever", "batch"):
        assert 99 < (await storage.get_meta(key))["ttl"] <= 100, key


async def test_conditional_writes_are_checked_too() -> None:
    storage = create_storage(Limit(MemoryDriver(), max_value_size=4, max_ttl=100))
    with pytest.raises(LimitError):
        await storage.set_item_raw("k", b"12345", if_none_match=True, ttl=10)
    with pytest.raises(LimitError):
        await storage.set_item_raw("k", b"1", if_none_match=True, ttl=1000)
    await storage.set_item_raw("k", b"1", if_none_match=True, ttl=10)
    assert await storage.get_item_raw("k") == b"1"


async def test_a_batch_with_one_refused_item_writes_nothing(driver_redis: RedisDriver) -> None:
    storage = create_storage(Limit(driver_redis, max_value_size=10, max_key_length=8))
    good = {f"k{n}": n for n in range(50)}
    with pytest.raises(LimitError):
        await storage.set_items({**good, "big": "x" * 20})
    with pytest.raises(InvalidKeyError):
        await storage.set_items({**good, "far-too-long": 1})
    assert await storage.get_keys() == []
    await storage.set_items(good)
    assert len(await storage.get_keys()) == 50


async def test_a_batch_with_a_ttl_out_of_range_writes_nothing() -> None:
    inner = MemoryDriver()
    storage = create_storage(Limit(inner, max_ttl=60))
    with pytest.raises(LimitError):
        await storage.set_items({"a": 1, "b": 2}, ttl=61)
    assert await inner.get_keys() == []


@pytest.mark.parametrize(
    "options",
    [
        {"max_value_size": 0},
        {"max_key_length": -1},
        {"max_value_size": 1.5},
        {"max_key_length": True},
        {"min_ttl": 0},
        {"max_ttl": float("inf")},
        {"min_ttl": 10, "max_ttl": 5},
        {"ttl_policy": "ignore"},
    ],
)
def test_bad_options_are_refused(options: dict[str, object]) -> None:
    with pytest.raises(InvalidArgumentError):
        Limit(MemoryDriver(), **options)  # type: ignore[arg-type]


def test_max_ttl_needs_a_driver_with_ttl() -> None:
    with pytest.raises(UnsupportedError):
        Limit(example_driver_class()(), max_ttl=60)


def test_max_ttl_turns_off_the_no_coroutine_write_path() -> None:
    assert Limit(MemoryDriver()).capabilities.nowait
    assert not Limit(MemoryDriver(), max_ttl=60).capabilities.nowait
