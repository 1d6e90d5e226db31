"""`storage.layers.Cache`: what it saves, what invalidates it, and the races it must survive.

The conformance suite (tests/fixtures/layer_compose.py) shows the layer stores like any driver;
these tests show what is special: hits that cost no backend call, one backend read for many
concurrent misses, invalidation by local writes and by other clients' changes, and no stale
value left behind by a read that overlaps a write.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from typing import Any

import pytest

from drivers.lru import LruDriver
from drivers.memory import MemoryDriver
from drivers.redis import RedisDriver
from storage import (
    Driver,
    InvalidArgumentError,
    Layer,
    ReadOnlyError,
    UnsupportedError,
    Unwatch,
    WatchCallback,
    create_storage,
)
from storage.driver import meta_key
from storage.layers.cache import Cache
from storage.layers.readonly import ReadOnly
from tests.servers import RedisServer


class Gate:
    """Holds the next ``count`` calls that pass (every call if None) until `open`."""

    def __init__(self) -> None:
        self.left: int | None = 0
        self.held = asyncio.Event()
        self.opened = asyncio.Event()

    def close(self, count: int | None = None) -> None:
        self.left, self.held, self.opened = count, asyncio.Event(), asyncio.Event()

    def open(self) -> None:
        self.left = 0
        self.opened.set()

    async def pass_(self) -> None:
        if self.left == 0:
            return
        if self.left is not None:
            self.left -= 1
        opened = self.opened
        self.held.set()
        await opened.wait()

    async def reached(self) -> None:
        """Wait (at most 2 s) until a call is held."""
        await asyncio.wait_for(self.held.wait(), 2)


class Counting(Layer):
    """Counts the calls that reach the driver below; can hold reads or writes, or fail reads.

    ``watch=False`` hides the inner driver's watch, so that only local writes can invalidate.
    A read waits at ``reads`` after reading, a write waits at ``writes`` before writing.
    """

    layer_name = "counting"

    def __init__(self, inner: Driver, *, watch: bool = True) -> None:
        hidden = dataclasses.replace(inner.capabilities, watch=False)
        super().__init__(inner, capabilities=inner.capabilities if watch else hidden)
        self.calls: Counter[str] = Counter()
        self.failure: Exception | None = None
        self.reads_gate = Gate()
        self.writes_gate = Gate()
        self.unwatched = 0

    @property
    def reads(self) -> int:
        """Calls that read values (get_item, get_items, has_item)."""
        return self.calls["get_item"] + self.calls["get_items"] + self.calls["has_item"]

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    async def _read(self, operation: str, call: Coroutine[Any, Any, Any]) -> Any:
        self.calls[operation] += 1
        if self.failure is not None:
            call.close()
            raise self.failure
        result = await call
        await self.reads_gate.pass_()
        return result

    async def _write(self, call: Awaitable[Any]) -> Any:
        self.calls["write"] += 1
        await self.writes_gate.pass_()
        return await call

    async def get_item(self, key: str) -> bytes | None:
        value: bytes | None = await self._read("get_item", self.inner.get_item(key))
        return value

    async def get_items(self, keys: Sequence[str]) -> list[bytes | None]:
        values: list[bytes | None] = await self._read("get_items", self.inner.get_items(keys))
        return values

    async def has_item(self, key: str) -> bool:
        found: bool = await self._read("has_item", self.inner.has_item(key))
        return found

    async def get_meta(self, key: str) -> dict[str, Any]:
        self.calls["get_meta"] += 1
        return await self.inner.get_meta(key)

    async def get_item_with_etag(self, key: str) -> tuple[bytes | None, str | None]:
        self.calls["get_item_with_etag"] += 1
        return await self.inner.get_item_with_etag(key)

    async def set_item(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        await self._write(self.inner.set_item(key, value, ttl=ttl))

    async def remove_items(self, keys: Sequence[str]) -> None:
        await self._write(self.inner.remove_items(keys))

    async def watch(self, callback: WatchCallback) -> Unwatch:
        self.calls["watch"] += 1
        unwatch = await self.inner.watch(callback)

        async def stop() -> None:
            self.unwatched += 1
            await unwatch()

        return stop

    async def dispose(self) -> None:
        self.calls["dispose"] += 1
        await self.inner.dispose()


@pytest.fixture
def memory() -> MemoryDriver:
    return MemoryDriver()


@pytest.fixture
def counted(memory: MemoryDriver) -> Counting:
    """A real memory driver behind a counter, without watch: only local writes invalidate."""
    return Counting(memory, watch=False)


@pytest.fixture
def lru() -> LruDriver:
    return LruDriver(max_entries=100)


@pytest.fixture
async def cache(counted: Counting, lru: LruDriver) -> AsyncIterator[Cache]:
    layer = Cache(counted, lru)
    yield layer
    await layer.dispose()


# -- hits and misses ----------------------------------------------------------------------------


async def test_a_hit_costs_no_backend_call(cache: Cache, counted: Counting) -> None:
    await cache.set_item("k", b"v")
    assert await cache.get_item("k") == b"v"
    before = counted.total
    assert await cache.get_item("k") == b"v"
    assert await cache.has_item("k") is True
    assert await cache.get_items(["k", "k"]) == [b"v", b"v"]
    assert counted.total == before


async def test_one_hundred_concurrent_misses_cause_one_backend_read(
    cache: Cache, counted: Counting, memory: MemoryDriver
) -> None:
    await memory.set_item("hot", b"v")
    counted.reads_gate.close()
    readers = [asyncio.create_task(cache.get_item("hot")) for _ in range(100)]
    await counted.reads_gate.reached()
    await asyncio.sleep(0.01)  # every reader has missed and joined by now
    counted.reads_gate.open()
    assert await asyncio.gather(*readers) == [b"v"] * 100
    assert counted.reads == 1
    assert await cache.get_item("hot") == b"v"
    assert counted.reads == 1


async def test_batch_and_single_misses_on_the_same_keys_share_one_read(
    cache: Cache, counted: Counting, memory: MemoryDriver
) -> None:
    await memory.set_items([("a", b"1"), ("b", b"2")])
    counted.reads_gate.close()
    batch = asyncio.create_task(cache.get_items(["a", "b", "missing", "a"]))
    await counted.reads_gate.reached()
    single = asyncio.create_task(cache.get_item("b"))
    has = asyncio.create_task(cache.has_item("a"))
    await asyncio.sleep(0.01)
    counted.reads_gate.open()
    assert await batch == [b"1", b"2", None, b"1"]
    assert await single == b"2"
    assert await has is True
    assert counted.calls["get_items"] == 1
    assert counted.calls["get_item"] == 0


async def test_a_failed_read_reaches_every_waiter_and_is_not_cached(
    cache: Cache, counted: Counting, memory: MemoryDriver
) -> None:
    await memory.set_item("k", b"v")
    counted.failure = ConnectionError("backend down")
    results = await asyncio.gather(
        *(cache.get_item("k") for _ in range(10)), return_exceptions=True
    )
    assert all(isinstance(result, ConnectionError) for result in results)
    # each waiter's own copy: one instance raised in ten tasks would gather all their frames
    assert len({id(result) for result in results}) == 10
    assert counted.reads == 1
    counted.failure = None
    assert await cache.get_item("k") == b"v"
    assert counted.reads == 2


async def test_a_cancelled_reader_leaves_the_read_to_the_others(
    cache: Cache, counted: Counting, memory: MemoryDriver
) -> None:
    await memory.set_item("k", b"v")
    counted.reads_gate.close()
    first = asyncio.create_task(cache.get_item("k"))
    await counted.reads_gate.reached()
    second = asyncio.create_task(cache.get_item("k"))
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.sleep(0)
    counted.reads_gate.open()
    assert await second == b"v"
    assert first.cancelled()
    assert counted.reads == 1


async def test_misses_are_read_again_unless_negative_ttl_remembers_them(
    counted: Counting, lru: LruDriver
) -> None:
    plain = Cache(counted, lru)
    await plain.get_item("absent")
    await plain.get_item("absent")
    assert counted.reads == 2
    remembering = Cache(Counting(MemoryDriver(), watch=False), LruDriver(), negative_ttl=60)
    below = remembering.inner
    assert isinstance(below, Counting)
    assert await remembering.get_item("absent") is None
    assert await remembering.has_item("absent") is False
    assert await remembering.get_items(["absent"]) == [None]
    assert below.reads == 1
    await remembering.set_item("absent", b"now")
    assert await remembering.get_item("absent") == b"now"
    await remembering.dispose()


async def test_entries_expire_after_the_cache_ttl(counted: Counting, memory: MemoryDriver) -> None:
    await memory.set_item("k", b"v")
    layer = Cache(counted, LruDriver(), ttl=0.2)
    await layer.get_item("k")
    await layer.get_item("k")
    assert counted.reads == 1
    await asyncio.sleep(0.3)
    await layer.get_item("k")
    assert counted.reads == 2
    await layer.dispose()


async def test_a_cached_value_never_outlives_its_ttl_in_the_inner_driver(
    cache: Cache, memory: MemoryDriver
) -> None:
    # Written by "another client" (straight to the driver), and no watch to report the expiry.
    await memory.set_item("short", b"v", ttl=0.3)
    await memory.set_items([("b:1", b"1"), ("b:2", b"2")], ttl=0.3)
    assert await cache.get_item("short") == b"v"
    assert await cache.get_items(["b:1", "b:2"]) == [b"1", b"2"]
    await asyncio.sleep(0.5)
    assert await cache.get_item("short") is None
    assert await cache.get_items(["b:1", "b:2"]) == [None, None]


# -- local writes -------------------------------------------------------------------------------

Write = Callable[[Cache], Awaitable[Any]]
WRITES: dict[str, tuple[Write, bytes | None]] = {
    "set_item": (lambda c: c.set_item("k", b"new"), b"new"),
    "set_item with ttl": (lambda c: c.set_item("k", b"new", ttl=60), b"new"),
    "set_items": (lambda c: c.set_items([("k", b"new"), ("j", b"x")]), b"new"),
    "set_item_conditional": (
        lambda c: c.set_item_conditional("k", b"new", if_none_match=False),
        b"new",
    ),
    "remove_item": (lambda c: c.remove_item("k"), None),
    "remove_items": (lambda c: c.remove_items(["j", "k"]), None),
    "clear of a base": (lambda c: c.clear("a:"), None),
    "clear of the root": (lambda c: c.clear(), None),
}


@pytest.mark.parametrize("name", list(WRITES))
async def test_each_local_write_invalidates_what_it_changed(
    cache: Cache, memory: MemoryDriver, name: str
) -> None:
    write, expected = WRITES[name]
    key = "a:k" if "clear" in name else "k"
    await memory.set_item(key, b"old")
    assert await cache.get_item(key) == b"old"
    await write(cache)
    assert await cache.get_item(key) == expected


async def test_user_meta_writes_invalidate_the_sibling_entry_that_holds_it(
    cache: Cache,
) -> None:
    # A layer above that keeps user meta in sibling items (Driver's default) reads them as items.
    await cache.set_user_meta("doc", b"one")
    assert await cache.get_item(meta_key("doc")) == b"one"
    await cache.set_user_meta("doc", b"two")
    assert await cache.get_item(meta_key("doc")) == b"two"
    await cache.remove_user_meta("doc")
    assert await cache.get_item(meta_key("doc")) is None


async def test_a_read_in_flight_across_a_write_never_leaves_the_old_value_cached(
    cache: Cache, counted: Counting, memory: MemoryDriver, lru: LruDriver
) -> None:
    await memory.set_item("k", b"old")
    counted.reads_gate.close(1)
    reader = asyncio.create_task(cache.get_item("k"))
    await counted.reads_gate.reached()  # the backend has answered "old"; nothing is kept yet
    await cache.set_item("k", b"new")
    counted.reads_gate.open()
    assert await reader == b"old"  # it ran concurrently with the write: either answer is right
    await _settled(cache)
    assert await lru.get_item("k") is None
    assert await cache.get_item("k") == b"new"
    assert await cache.get_item("k") == b"new"


async def test_a_read_that_starts_during_a_write_is_not_kept(
    cache: Cache, counted: Counting, memory: MemoryDriver, lru: LruDriver
) -> None:
    await memory.set_item("k", b"old")
    counted.writes_gate.close(1)
    writer = asyncio.create_task(cache.set_item("k", b"new"))
    await counted.writes_gate.reached()  # the write has begun and not yet landed
    counted.reads_gate.close(1)
    reader = asyncio.create_task(cache.get_item("k"))
    await counted.reads_gate.reached()  # it read "old" from the backend
    counted.writes_gate.open()
    await writer  # done, and the cache emptied, while the read still holds "old"
    counted.reads_gate.open()
    assert await reader == b"old"
    await _settled(cache)
    assert await lru.get_item("k") is None
    assert await cache.get_item("k") == b"new"


async def test_a_read_that_starts_after_a_write_does_not_share_an_older_read(
    cache: Cache, counted: Counting, memory: MemoryDriver
) -> None:
    await memory.set_item("k", b"old")
    counted.reads_gate.close(1)
    early = asyncio.create_task(cache.get_item("k"))
    await counted.reads_gate.reached()
    await cache.set_item("k", b"new")
    # The early read is still in flight with "old"; a read that starts now must not share it.
    assert await asyncio.wait_for(cache.get_item("k"), 2) == b"new"
    counted.reads_gate.open()
    assert await early == b"old"


async def test_a_clear_during_a_read_leaves_nothing_of_the_read_behind(
    cache: Cache, counted: Counting, memory: MemoryDriver, lru: LruDriver
) -> None:
    await memory.set_items([("a:1", b"1"), ("a:2", b"2"), ("b", b"3")])
    counted.reads_gate.close(1)
    reader = asyncio.create_task(cache.get_items(["a:1", "a:2", "b"]))
    await counted.reads_gate.reached()
    await cache.clear("a:")
    counted.reads_gate.open()
    await reader
    await _settled(cache)
    assert await lru.get_items(["a:1", "a:2"]) == [None, None]
    assert await cache.get_items(["a:1", "a:2", "b"]) == [None, None, b"3"]


async def _settled(cache: Cache) -> None:
    """Let the layer's background fills finish (they store after answering their readers)."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_get_item_with_etag_names_the_inner_drivers_current_version(
    cache: Cache, memory: MemoryDriver
) -> None:
    await memory.set_item("k", b"v1")
    assert await cache.get_item("k") == b"v1"
    await memory.set_item("k", b"v2")  # behind the cache's back, no watch
    value, etag = await cache.get_item_with_etag("k")
    assert value == b"v2"
    assert etag == (await memory.get_meta("k"))["etag"]


# -- remote changes -----------------------------------------------------------------------------


@pytest.fixture
async def redis_pair(redis_server: RedisServer) -> AsyncIterator[tuple[RedisDriver, RedisDriver]]:
    """Two clients of one redis base: the cached one (watching) and "another process"."""
    base = f"t{uuid.uuid4().hex[:12]}"
    mine = RedisDriver(redis_server.url, base=base, notify_keyspace_events=True)
    other = RedisDriver(redis_server.url, base=base)
    yield mine, other
    await other.clear()
    await other.dispose()
    await mine.dispose()


async def _eventually(check: Callable[[], Awaitable[bool]]) -> None:
    for _ in range(100):
        if await check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the condition did not come true within 2 s")


async def test_a_change_by_another_redis_client_invalidates_the_cache(
    redis_pair: tuple[RedisDriver, RedisDriver],
) -> None:
    mine, other = redis_pair
    counted = Counting(mine)
    layer = Cache(counted, LruDriver())
    try:
        await other.set_item("k", b"1")
        assert await layer.get_item("k") == b"1"
        assert await layer.get_item("k") == b"1"
        assert counted.reads == 1  # the second read was a hit
        assert counted.calls["watch"] == 1
        await other.set_item("k", b"2")

        async def sees(value: bytes | None) -> bool:
            return await layer.get_item("k") == value

        await _eventually(lambda: sees(b"2"))
        await other.remove_item("k")
        await _eventually(lambda: sees(None))
        await other.set_item("k", b"3", ttl=0.2)
        await _eventually(lambda: sees(b"3"))
        await _eventually(lambda: sees(None))
    finally:
        await layer.dispose()
    assert counted.unwatched == 1


async def test_the_watch_is_subscribed_once_before_the_first_read(memory: MemoryDriver) -> None:
    counted = Counting(memory)
    layer = Cache(counted, LruDriver())
    await asyncio.gather(*(layer.get_item(f"k{index}") for index in range(20)))
    assert counted.calls["watch"] == 1
    await memory.set_item("k1", b"changed")  # another client of the same memory
    assert await layer.get_item("k1") == b"changed"
    await layer.dispose()
    assert counted.unwatched == 1


async def test_a_remote_change_is_seen_before_its_cache_entry_is_removed(
    memory: MemoryDriver,
) -> None:
    store = Counting(LruDriver())
    layer = Cache(Counting(memory), store)
    await memory.set_item("k", b"old")
    assert await layer.get_item("k") == b"old"
    store.writes_gate.close()
    await memory.set_item("k", b"new")  # another client; the cache's removal is held
    await store.writes_gate.reached()
    assert await layer.get_item("k") == b"new"
    assert await layer.get_items(["k"]) == [b"new"]
    store.writes_gate.open()
    await _settled(layer)
    assert await store.inner.get_item("k") is None
    assert await layer.get_item("k") == b"new"
    await layer.dispose()


# -- construction and lifecycle -----------------------------------------------------------------


async def test_any_driver_can_be_the_cache(redis_server: RedisServer) -> None:
    counted = Counting(MemoryDriver(), watch=False)
    remote = RedisDriver(redis_server.url, base=f"t{uuid.uuid4().hex[:12]}")
    layer = Cache(counted, remote, ttl=60)
    try:
        await layer.set_item("k", b"v")
        assert await layer.get_item("k") == b"v"
        assert await remote.get_item("k") == b"v"
        assert await layer.get_item("k") == b"v"
        assert counted.reads == 1
        await layer.set_item("k", b"w")
        assert await remote.get_item("k") is None
        assert await layer.get_item("k") == b"w"
    finally:
        await remote.clear()
        await layer.dispose()


async def test_capabilities_are_the_inner_drivers_without_no_coroutine_calls() -> None:
    layer = Cache(MemoryDriver())
    assert layer.capabilities == dataclasses.replace(MemoryDriver().capabilities, nowait=False)
    assert layer.name == "cache(memory)"
    with pytest.raises(UnsupportedError):
        layer.get_item_nowait("k")
    with pytest.raises(UnsupportedError):
        layer.set_item_nowait("k", b"v")
    await layer.dispose()


def test_ttls_need_a_cache_that_can_expire_and_a_writable_one() -> None:
    no_expiry = Counting(MemoryDriver())
    no_expiry.capabilities = dataclasses.replace(no_expiry.capabilities, ttl=False)
    with pytest.raises(UnsupportedError):
        Cache(MemoryDriver(), no_expiry, ttl=10)
    with pytest.raises(UnsupportedError):
        Cache(MemoryDriver(), no_expiry, negative_ttl=10)
    with pytest.raises(InvalidArgumentError):
        Cache(MemoryDriver(), ReadOnly(MemoryDriver()))
    with pytest.raises(InvalidArgumentError):
        Cache(MemoryDriver(), ttl=0)


async def test_dispose_disposes_the_cache_and_the_inner_driver() -> None:
    inner, store = Counting(MemoryDriver()), Counting(LruDriver())
    layer = Cache(inner, store)
    await layer.get_item("k")
    await layer.dispose()
    assert inner.calls["dispose"] == 1
    assert store.calls["dispose"] == 1
    assert inner.unwatched == 1


async def test_storage_over_a_cache_refuses_writes_through_a_read_only_inner() -> None:
    storage = create_storage(Cache(ReadOnly(MemoryDriver())))
    with pytest.raises(ReadOnlyError):
        await storage.set_item("k", 1)
    assert await storage.get_item("k") is None
    await storage.dispose()
