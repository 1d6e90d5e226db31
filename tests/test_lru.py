"""The lru driver: bounds by entries and bytes, recency, eviction events."""

from __future__ import annotations

import asyncio

import pytest

from drivers.lru import LruDriver
from storage import InvalidArgumentError, create_driver, create_storage


async def test_max_entries_evicts_the_least_recently_used() -> None:
    driver = LruDriver(max_entries=3)
    for key in "abc":
        await driver.set_item(key, key.encode())
    assert await driver.get_item("a") == b"a"  # "a" is now the most recently used
    await driver.set_item("d", b"d")
    assert sorted(await driver.get_keys()) == ["a", "c", "d"]
    assert driver.size == 3


async def test_max_bytes_bounds_the_sum_of_value_sizes() -> None:
    driver = LruDriver(max_entries=None, max_bytes=10)
    await driver.set_item("a", b"1234")
    await driver.set_item("b", b"1234")
    await driver.set_item("c", b"1234")
    assert sorted(await driver.get_keys()) == ["b", "c"]
    assert driver.total_bytes == 8
    await driver.set_item("b", b"1")  # overwriting frees the old value's bytes
    assert driver.total_bytes == 5


async def test_a_value_larger_than_max_bytes_is_not_kept_nor_left_stale() -> None:
    driver = LruDriver(max_bytes=4)
    await driver.set_item("k", b"old")
    await driver.set_item("k", b"much too large")
    assert await driver.get_item("k") is None
    assert driver.total_bytes == 0


async def test_has_item_does_not_refresh_recency() -> None:
    driver = LruDriver(max_entries=2)
    await driver.set_item("a", b"1")
    await driver.set_item("b", b"2")
    assert await driver.has_item("a")
    await driver.set_item("c", b"3")
    assert await driver.has_item("a") is False


async def test_evictions_are_reported_as_removals() -> None:
    driver = LruDriver(max_entries=1)
    events: list[tuple[str, str]] = []
    await driver.watch(lambda event, key: events.append((event, key)))
    await driver.set_item("a", b"1")
    await driver.set_item("b", b"2")
    assert events == [("update", "a"), ("update", "b"), ("remove", "a")]


async def test_expired_entries_are_dropped_and_free_their_bytes() -> None:
    driver = LruDriver(max_bytes=100)
    await driver.set_item("k", b"12345", ttl=0.2)
    assert (await driver.get_meta("k"))["ttl"] <= 0.2
    await asyncio.sleep(0.3)
    assert await driver.get_item("k") is None
    assert driver.total_bytes == 0


@pytest.mark.parametrize("options", [{"max_entries": 0}, {"max_bytes": -1}, {"max_entries": 1.5}])
def test_bad_bounds_are_rejected(options: dict[str, object]) -> None:
    with pytest.raises(InvalidArgumentError):
        LruDriver(**options)  # type: ignore[arg-type]


async def test_url_options_set_the_bounds() -> None:
    driver = create_driver("lru://?max_entries=2&max_bytes=100")
    assert isinstance(driver, LruDriver)
    assert (driver.max_entries, driver.max_bytes) == (2, 100)
    async with create_storage(driver) as storage:
        await storage.set_items({"a": 1, "b": 2, "c": 3})
        assert sorted(await storage.get_keys()) == ["b", "c"]
