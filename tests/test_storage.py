"""The Storage core: mounts, shadowing, namespaces, errors, lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from drivers.memory import MemoryDriver
from storage import (
    Capabilities,
    ConflictError,
    Driver,
    DriverError,
    InvalidArgumentError,
    ReadOnlyError,
    Storage,
    UnsupportedError,
    create_storage,
)
from storage.driver import has_shortcut
from storage.layers import Limit, LimitError, ReadOnly, Timeout
from storage.storage import DEFAULT_DEADLINE


@pytest.fixture
def storage() -> Storage:
    return create_storage()


async def test_the_default_root_is_memory(storage: Storage) -> None:
    assert isinstance(storage.get_mount("anything").driver, MemoryDriver)


async def test_keys_route_to_the_longest_matching_mount(storage: Storage) -> None:
    outer, inner = MemoryDriver(), MemoryDriver()
    storage.mount("a", outer).mount("a:b", inner)
    await storage.set_items({"a:b:c": 1, "a:x": 2, "z": 3, "a:bc": 4})
    assert await inner.get_keys() == ["c"]
    assert sorted(await outer.get_keys()) == ["bc", "x"]
    assert storage.get_mount("a:b:c").base == "a:b:"
    assert storage.get_mount("a:b").base == "a:"  # the base itself is not inside its mount
    assert storage.get_mount("z").base == ""


async def test_listing_spans_every_mount_at_or_under_the_base(storage: Storage) -> None:
    storage.mount("data:cache", MemoryDriver())
    await storage.set_items({"data:x": 1, "data:cache:y": 2, "data:cache:deep:z": 3, "top": 4})
    assert sorted(await storage.get_keys("data")) == ["data:cache:deep:z", "data:cache:y", "data:x"]
    assert sorted(await storage.get_keys("data", max_depth=1)) == ["data:cache:y", "data:x"]
    assert sorted(await storage.get_keys("data:cache:deep")) == ["data:cache:deep:z"]
    assert sorted(await storage.get_keys("", max_depth=0)) == ["top"]


async def test_keys_under_a_later_mount_are_shadowed(storage: Storage) -> None:
    await storage.set_items({"m:hidden": "root copy", "m2": "sibling"})
    storage.mount("m", MemoryDriver())
    assert await storage.get_item("m:hidden") is None
    assert sorted(await storage.get_keys()) == ["m2"]
    await storage.set_item("m:visible", 1)
    assert sorted(await storage.get_keys()) == ["m2", "m:visible"]


async def test_clear_leaves_shadowed_keys_of_a_parent_alone(storage: Storage) -> None:
    root = storage.get_mount("").driver
    await storage.set_items({"m:hidden": 1, "keep": 2, "gone:x": 3})
    storage.mount("m", MemoryDriver())
    await storage.set_item("m:child", 4)
    await storage.clear()
    assert await storage.get_keys() == []
    assert await root.get_keys() == ["m:hidden"]  # never listed, so never cleared


async def test_clear_of_a_base_inside_a_mount_touches_only_that_mount(storage: Storage) -> None:
    side = MemoryDriver()
    storage.mount("side", side)
    await storage.set_items({"side:a:1": 1, "side:b:1": 2, "root:a": 3})
    await storage.clear("side:a")
    assert await side.get_keys() == ["b:1"]
    assert await storage.get_item("root:a") == 3


async def test_mounting_twice_at_one_base_raises(storage: Storage) -> None:
    storage.mount("x", MemoryDriver())
    with pytest.raises(InvalidArgumentError, match="already mounted"):
        storage.mount("x:", MemoryDriver())
    with pytest.raises(InvalidArgumentError):
        storage.mount("", MemoryDriver())


async def test_unmount_disposes_unless_asked_not_to(storage: Storage) -> None:
    kept, dropped = MemoryDriver(), MemoryDriver()
    storage.mount("kept", kept).mount("dropped", dropped)
    await storage.set_items({"kept:a": 1, "dropped:a": 2})
    await storage.unmount("kept", dispose=False)
    await storage.unmount("dropped")
    assert await kept.get_keys() == ["a"]
    assert await dropped.get_keys() == []
    assert [m.base for m in storage.get_mounts()] == [""]
    with pytest.raises(InvalidArgumentError):
        await storage.unmount("nothing")


async def test_get_mounts_lists_children_and_optionally_parents(storage: Storage) -> None:
    storage.mount("a", MemoryDriver()).mount("a:b", MemoryDriver()).mount("c", MemoryDriver())
    assert [m.base for m in storage.get_mounts("a")] == ["a:b:", "a:"]
    assert [m.base for m in storage.get_mounts("a:b", parents=True)] == ["a:b:", "a:", ""]


async def test_mounts_accept_names_and_urls(storage: Storage) -> None:
    storage.mount("by-name", "memory").mount("by-url", "memory://")
    assert isinstance(storage.get_mount("by-url:x").driver, MemoryDriver)
    with pytest.raises(InvalidArgumentError, match="no driver"):
        storage.mount("bad", "nosuchdriver")


async def test_a_namespace_sees_keys_relative_to_its_base(storage: Storage) -> None:
    users = storage.namespace("users")
    await users.set_item("ann", {"age": 3})
    assert await storage.get_item("users:ann") == {"age": 3}
    assert await users.get_keys() == ["ann"]
    assert await users.get_items(["ann", "bob"]) == {"ann": {"age": 3}, "bob": None}
    nested = users.namespace("admins")
    await nested.set_item("root", 1)
    assert sorted(await users.get_keys()) == ["admins:root", "ann"]
    await users.clear()
    assert await storage.get_keys() == []


async def test_a_namespace_view_does_not_dispose_shared_drivers(storage: Storage) -> None:
    await storage.set_item("ns:k", 1)
    await storage.namespace("ns").dispose()
    assert await storage.get_item("ns:k") == 1


async def test_async_with_disposes_every_driver() -> None:
    side = MemoryDriver()
    async with create_storage(mounts={"side": side}) as storage:
        await storage.set_item("side:k", 1)
    assert await side.get_keys() == []


async def test_read_only_drivers_refuse_writes_before_io(storage: Storage) -> None:
    frozen = ReadOnly(MemoryDriver())
    storage.mount("ro", frozen)
    for write in (
        storage.set_item("ro:k", 1),
        storage.set_items({"ro:k": 1}),
        storage.remove_item("ro:k"),
        storage.set_meta("ro:k", {}),
        storage.clear("ro"),
        storage.clear(),
    ):
        with pytest.raises(ReadOnlyError, match="memory"):
            await write
    assert await storage.get_item("ro:k") is None


class _Broken(Driver):
    """A driver whose backend always fails, the way a dead connection does."""

    name = "broken"

    async def get_item(self, key: str) -> bytes | None:
        raise ConnectionRefusedError("backend is down")

    async def set_item(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        raise ConnectionRefusedError("backend is down")

    async def remove_item(self, key: str) -> None:
        raise ConnectionRefusedError("backend is down")

    async def iter_keys(
        self, base: str = "", *, max_depth: int | None = None
    ) -> AsyncIterator[str]:
        raise ConnectionRefusedError("backend is down")
        yield ""  # pragma: no cover - makes this an async generator


async def test_backend_failures_surface_as_driver_errors(storage: Storage) -> None:
    storage.mount("down", _Broken())
    with pytest.raises(DriverError) as info:
        await storage.get_item("down:key")
    error = info.value
    assert (error.driver, error.operation, error.key) == ("broken", "get_item", "down:key")
    assert isinstance(error.__cause__, ConnectionRefusedError)
    with pytest.raises(DriverError, match="set_items"):
        await storage.set_items({"down:a": 1, "up": 2})
    with pytest.raises(DriverError, match="iter_keys"):
        _ = [key async for key in storage.iter_keys("down")]
    with pytest.raises(DriverError):
        await storage.get_keys()


async def test_ttl_on_a_driver_without_ttl_is_refused(storage: Storage) -> None:
    storage.mount("down", _Broken())
    with pytest.raises(UnsupportedError, match="TTL"):
        await storage.set_item("down:k", 1, ttl=5)
    with pytest.raises(UnsupportedError):
        await storage.set_item("down:k", 1, if_none_match=True)
    with pytest.raises(UnsupportedError):
        await _Broken().watch(lambda event, key: None)


async def test_watch_callbacks_may_be_coroutines(storage: Storage) -> None:
    seen: list[str] = []

    async def callback(event: str, key: str) -> None:
        seen.append(f"{event}:{key}")

    await storage.watch(callback)
    await storage.set_item("k", 1)
    for _ in range(5):
        if seen:
            break
        await asyncio.sleep(0.01)
    assert seen == ["update:k"]
    await storage.unwatch()


async def test_watch_skips_meta_entries_and_covers_later_mounts(storage: Storage) -> None:
    seen: list[tuple[str, str]] = []
    await storage.watch(lambda event, key: seen.append((event, key)))
    await storage.set_item("k", 1)
    await storage.set_meta("k", {"a": 1})
    storage.mount("late", MemoryDriver())
    await asyncio.sleep(0)
    await storage.set_item("late:x", 1)
    assert seen == [("update", "k"), ("update", "late:x")]


async def test_aliases_match_the_long_names(storage: Storage) -> None:
    await storage.set("k", 1)
    assert await storage.get("k") == 1
    assert await storage.has("k")
    assert await storage.keys() == ["k"]
    await storage.delete("k")
    assert not await storage.has("k")


async def test_empty_batches_do_nothing(storage: Storage) -> None:
    await storage.set_items({})
    await storage.set_items_raw([])
    await storage.remove_items([])
    assert await storage.get_items([]) == {}
    assert await storage.get_items_raw([]) == {}


async def test_user_meta_of_many_keys_is_read_in_one_batch_per_mount(storage: Storage) -> None:
    storage.mount("side", MemoryDriver())
    await storage.set_items({"a": 1, "side:b": 2, "c": 3})
    await storage.set_meta("a", {"n": 1})
    await storage.set_meta("side:b", {"n": 2})
    metas = await storage.get_metas_raw(["side:b", "c", "a"])
    assert list(metas) == ["side:b", "c", "a"]
    assert metas["c"] is None
    assert storage.serializer.loads(metas["a"] or b"") == {"n": 1}
    assert storage.serializer.loads(metas["side:b"] or b"") == {"n": 2}


class _Unbounded(MemoryDriver):
    """An in-process driver that does not say its calls end on their own (a third party's)."""

    name = "unbounded"
    capabilities = Capabilities(ttl=True, conditional=True)


async def test_a_driver_that_does_not_bound_its_calls_gets_the_default_deadline() -> None:
    storage = create_storage(_Unbounded(), mounts={"side": _Unbounded(), "mem": MemoryDriver()})
    root, side, mem = (storage.get_mount(key).driver for key in ("k", "side:k", "mem:k"))
    assert isinstance(root, Timeout)
    assert isinstance(side, Timeout)
    assert root.seconds == side.seconds == DEFAULT_DEADLINE
    assert isinstance(mem, MemoryDriver)  # bounded (and never waits): nothing in front
    await storage.set_item("k", 1)
    assert await storage.get_item("k") == 1
    bare = create_storage(_Unbounded(), deadline=None)
    assert isinstance(bare.get_mount("").driver, _Unbounded)


async def test_errors_from_a_mounted_layer_name_the_callers_key() -> None:
    storage = create_storage(mounts={"side": Limit(MemoryDriver(), max_value_size=3)})
    with pytest.raises(LimitError) as refused:
        await storage.set_item_raw("side:k", b"12345")
    assert refused.value.key == "side:k"
    assert "'side:k'" in str(refused.value)
    await storage.set_item("side:c", 1)
    view = storage.namespace("side")
    with pytest.raises(ConflictError) as conflict:
        await view.set_item("c", 2, if_none_match=True)
    assert conflict.value.key == "c"


# -- the drivers' shortcuts -------------------------------------------------------------------


class _Counted(MemoryDriver):
    """A memory driver whose coroutines count their calls, as a test double over it would."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    async def get_item_with_etag(self, key: str) -> tuple[bytes | None, str | None]:
        self.calls.append("get_item_with_etag")
        return await super().get_item_with_etag(key)

    async def set_item_conditional(
        self,
        key: str,
        value: bytes,
        *,
        ttl: float | None = None,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str | None:
        self.calls.append("set_item_conditional")
        return await super().set_item_conditional(
            key, value, ttl=ttl, if_match=if_match, if_none_match=if_none_match
        )

    async def get_meta(self, key: str) -> dict[str, Any]:
        self.calls.append("get_meta")
        return await super().get_meta(key)


async def test_a_subclass_overriding_a_coroutine_loses_the_shortcuts_past_it() -> None:
    driver = _Counted()
    storage = create_storage(driver)
    etag = await storage.set_item("k", 1, if_none_match=True)
    _, etag = await storage.get_item_with_etag("k")
    await storage.set_item("k", 2, if_match=etag, ttl=60)
    data, meta = await storage.get_item_raw_with_meta("k")
    assert (data, meta["size"]) == (b"2", 1)
    assert driver.calls == [
        "set_item_conditional",
        "get_item_with_etag",
        "set_item_conditional",
        "get_item_with_etag",  # the composed get_item_with_meta
        "get_meta",
    ]


async def test_the_memory_driver_takes_its_shortcuts() -> None:
    driver = MemoryDriver()
    assert has_shortcut(driver, "get_item_with_etag_nowait")
    assert has_shortcut(driver, "set_item_conditional_nowait")
    assert has_shortcut(driver, "get_item_with_meta")
    assert not has_shortcut(_Counted(), "set_item_conditional_nowait")


# -- a stream's writer interrupted --------------------------------------------------------------


class _SlowStreams(MemoryDriver):
    """Takes a stream's chunks slowly (a writer's queue fills up) and says when it is done."""

    def __init__(self) -> None:
        super().__init__()
        self.ended = asyncio.Event()
        self.reading = asyncio.Event()

    async def write_chunks(
        self, key: str, chunks: AsyncIterator[bytes], *, ttl: float | None = None
    ) -> str | None:
        try:
            parts = []
            async for chunk in chunks:
                self.reading.set()
                await asyncio.sleep(0.05)
                parts.append(chunk)
            return await self.set_item(key, b"".join(parts), ttl=ttl)
        finally:
            self.ended.set()


@pytest.mark.parametrize("interrupted", ["committing", "aborting"])
async def test_a_writer_cancelled_at_the_end_of_its_block_stops_the_drivers_write(
    interrupted: str,
) -> None:
    driver = _SlowStreams()
    storage = create_storage(driver)
    await storage.set_item_raw("blob", b"old")
    at_the_end = asyncio.Event()

    async def write() -> None:
        async with storage.open_write("blob") as writer:
            for _ in range(8):  # more than the writer queues: the last ones wait
                await writer.write(b"x" * 1024)
            at_the_end.set()
            if interrupted == "aborting":
                raise RuntimeError("the block failed")

    task = asyncio.ensure_future(write())
    await at_the_end.wait()
    await asyncio.sleep(0)  # now in __aexit__, waiting for the queue
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, RuntimeError):
        await task
    await asyncio.wait_for(driver.ended.wait(), 2)  # the driver's write did not stay pending
    assert await storage.get_item_raw("blob") == b"old"


# -- a lock released while a renewal is under way ---------------------------------------------


class _SlowAnswers(MemoryDriver):
    """Conditional writes land at once but answer late (a backend under load)."""

    def __init__(self) -> None:
        super().__init__()
        self.landed = asyncio.Event()

    async def set_item_conditional(
        self,
        key: str,
        value: bytes,
        *,
        ttl: float | None = None,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str | None:
        etag = await super().set_item_conditional(
            key, value, ttl=ttl, if_match=if_match, if_none_match=if_none_match
        )
        if if_match is not None:  # a renewal: it is stored, its answer is on the way
            self.landed.set()
            await asyncio.sleep(0.2)
        return etag


async def test_a_lock_released_while_a_renewal_is_under_way_is_released() -> None:
    driver = _SlowAnswers()
    storage = create_storage(driver)
    lock = storage.lock("job", ttl=0.3)
    await lock.acquire()
    await asyncio.wait_for(driver.landed.wait(), 2)
    await lock.release()  # the renewal's new etag is the one to release: not LockLostError
    assert await storage.get_item_raw("job") is None


async def test_capabilities_of_a_known_key_follow_a_later_mount(storage: Storage) -> None:
    # One mount answers every key from the key cache; a mount added later routes again.
    await storage.set_item("sub:k", 1)
    root = storage.get_mount("").driver
    assert storage.capabilities("sub:k") is root.capabilities
    inner = ReadOnly(MemoryDriver())
    storage.mount("sub", inner)
    assert storage.capabilities("sub:k") is inner.capabilities
    assert storage.capabilities("sub:k").read_only
    await storage.unmount("sub")
    assert storage.capabilities("sub:k") is root.capabilities
    for bad in ("a\x7f", ":::", 3):
        with pytest.raises(InvalidArgumentError):
            storage.capabilities(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("ttl", [0.0, -1.0, float("nan"), float("inf"), float("-inf")])
async def test_a_float_ttl_outside_finite_positive_seconds_is_refused(
    storage: Storage, ttl: float
) -> None:
    await storage.set_item("k", 1)
    with pytest.raises(InvalidArgumentError):
        await storage.set_item("k", 2, ttl=ttl)
    with pytest.raises(InvalidArgumentError):
        await storage.set_item("k", 2, ttl=ttl, if_match="*")
    assert await storage.get_item("k") == 1


async def test_a_ttl_with_a_condition_on_one_mount_expires_and_checks(storage: Storage) -> None:
    # A second of TTL: a stalled machine must not expire the value before its first read.
    etag = await storage.set_item("k", 1)
    with pytest.raises(ConflictError):
        await storage.set_item("k", 2, ttl=1.0, if_match="not-" + str(etag))
    await storage.set_item("k", 2, ttl=1.0, if_match=etag)
    assert await storage.get_item("k") == 2
    await asyncio.sleep(1.1)
    assert await storage.get_item("k") is None
