"""The lru driver: bounds by entries and bytes, recency, eviction events."""

from __future__ import annotations

import asyncio
import tracemalloc

import orjson
import pytest

from drivers.lru import LruDriver, entry_cost
from drivers.memory import MemoryDriver
from storage import InvalidArgumentError, create_driver, create_storage


async def test_max_entries_evicts_the_least_recently_used() -> None:
    driver = LruDriver(max_entries=3)
    for key in "abc":
        await driver.set_item(key, key.encode())
    assert await driver.get_item("a") == b"a"  # "a" is now the most recently used
    await driver.set_item("d", b"d")
    assert sorted(await driver.get_keys()) == ["a", "c", "d"]
    assert driver.size == 3


async def test_max_bytes_bounds_the_cost_of_the_entries_held() -> None:
    one = entry_cost("a", b"1234")
    driver = LruDriver(max_entries=None, max_bytes=2 * one + 1)
    await driver.set_item("a", b"1234")
    await driver.set_item("b", b"1234")
    await driver.set_item("c", b"1234")
    assert sorted(await driver.get_keys()) == ["b", "c"]
    assert driver.total_bytes == 2 * one
    await driver.set_item("b", b"1")  # overwriting frees the old value's bytes
    assert driver.total_bytes == one + entry_cost("b", b"1")


async def test_a_value_larger_than_max_bytes_is_not_kept_nor_left_stale() -> None:
    driver = LruDriver(max_bytes=entry_cost("k", b"old"))
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
    driver = LruDriver(max_bytes=1000)
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
    driver = create_driver("lru://?max_entries=2&max_bytes=10000")
    assert isinstance(driver, LruDriver)
    assert (driver.max_entries, driver.max_bytes) == (2, 10000)
    async with create_storage(driver) as storage:
        await storage.set_items({"a": 1, "b": 2, "c": 3})
        assert sorted(await storage.get_keys()) == ["b", "c"]


def _held(before: tracemalloc.Snapshot) -> int:
    return sum(
        stat.size_diff for stat in tracemalloc.take_snapshot().compare_to(before, "filename")
    )


@pytest.mark.parametrize("value_size", [20, 1000])
async def test_max_bytes_bounds_the_memory_really_held(value_size: int) -> None:
    bound = 1_000_000
    driver = LruDriver(max_entries=None, max_bytes=bound)
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for start in range(0, 4 * bound // value_size, 1000):
            # orjson's output, as Storage writes it: each buffer is far larger than its bytes.
            await driver.set_items(
                [
                    (f"k:{n}", orjson.dumps({"p": "x" * value_size}))
                    for n in range(start, start + 1000)
                ]
            )
        held = _held(before)
    finally:
        tracemalloc.stop()
        await driver.dispose()
    assert driver.total_bytes <= bound
    # Within a few percent of the bound: the hash table grows in steps.
    assert held < 1.1 * bound


async def test_memory_holds_small_values_at_their_size() -> None:
    count = 20_000
    async with create_storage(MemoryDriver()) as storage:
        tracemalloc.start()
        try:
            before = tracemalloc.take_snapshot()
            for n in range(count):
                await storage.set_item(f"user:{n}", {"name": "x", "n": n})
            per_value = _held(before) / count
        finally:
            tracemalloc.stop()
    # The value is about 20 bytes of JSON; its bytes object, the key, the stamp and the dict
    # slots cost the rest. Before the fix a serializer buffer of 4 KiB stayed with each value.
    assert per_value < 400
