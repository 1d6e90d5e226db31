"""Timeout: a deadline per operation, a DriverError naming it on expiry, no task left behind."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Iterator, Sequence

import pytest

from drivers.memory import MemoryDriver
from drivers.redis import RedisDriver
from storage import Capabilities, Driver, DriverError, InvalidArgumentError, create_storage
from storage.layers.timeout import Timeout
from tests.servers import RedisServer


class _Slow(MemoryDriver):
    """Memory that takes ``delay`` seconds per async call, and per key when listing.

    Batches use the base class's defaults, which run one task per key (``asyncio.gather``).
    """

    capabilities = Capabilities(ttl=True, conditional=True)

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    async def get_item(self, key: str) -> bytes | None:
        await asyncio.sleep(self.delay)
        return await super().get_item(key)

    async def get_items(self, keys: Sequence[str]) -> list[bytes | None]:
        return await Driver.get_items(self, keys)

    async def iter_keys(
        self, base: str = "", *, max_depth: int | None = None
    ) -> AsyncIterator[str]:
        async for key in super().iter_keys(base, max_depth=max_depth):
            await asyncio.sleep(self.delay)
            yield key


class _OwnTimeout(MemoryDriver):
    """Memory whose reads fail with a timeout of their own (a socket timeout, say)."""

    capabilities = Capabilities()

    async def get_item(self, key: str) -> bytes | None:
        raise TimeoutError("socket timed out")


def _others() -> set[asyncio.Task[object]]:
    current = asyncio.current_task()
    return {task for task in asyncio.all_tasks() if task is not current}


async def test_a_call_past_its_deadline_raises_a_driver_error_naming_it() -> None:
    layer = Timeout(_Slow(3600), seconds=0.2)
    started = time.monotonic()
    with pytest.raises(DriverError) as caught:
        await layer.get_item("users:ada")
    assert time.monotonic() - started < 3.0
    error = caught.value
    assert (error.driver, error.operation, error.key) == (
        "timeout(memory)",
        "get_item",
        "users:ada",
    )
    assert "timed out after 0.2s" in str(error)
    assert isinstance(error.__cause__, TimeoutError)


async def test_storage_passes_the_timeout_on_to_the_caller() -> None:
    storage = create_storage(Timeout(_Slow(3600), seconds=0.2))
    with pytest.raises(DriverError, match=r"timed out after 0\.2s"):
        await storage.get_item("k")


async def test_no_task_is_left_running_after_a_timeout() -> None:
    before = _others()
    layer = Timeout(_Slow(3600), seconds=0.2)
    with pytest.raises(DriverError, match="get_items"):
        await layer.get_items(["a", "b", "c"])  # three tasks, one per key, all cancelled
    assert _others() == before


async def test_a_call_within_its_deadline_answers() -> None:
    inner = _Slow(0.01)
    await inner.set_item("k", b"v")
    layer = Timeout(inner, seconds=2.0)
    assert await layer.get_item("k") == b"v"
    assert await layer.get_items(["k", "x"]) == [b"v", None]


async def test_a_timeout_of_the_driver_itself_passes_through() -> None:
    with pytest.raises(TimeoutError, match="socket timed out"):
        await Timeout(_OwnTimeout(), seconds=5.0).get_item("k")


async def test_a_timed_out_conditional_write_names_its_operation() -> None:
    class Hangs(MemoryDriver):
        async def set_item_conditional(
            self,
            key: str,
            value: bytes,
            *,
            ttl: float | None = None,
            if_match: str | None = None,
            if_none_match: bool = False,
        ) -> str | None:
            await asyncio.sleep(3600)
            return None

    with pytest.raises(DriverError) as caught:
        await Timeout(Hangs(), seconds=0.1).set_item_conditional("k", b"v", if_none_match=True)
    assert caught.value.operation == "set_item_conditional"


async def test_a_listing_has_a_deadline_per_key_not_in_all() -> None:
    inner = _Slow(0.05)
    await MemoryDriver.set_items(inner, [(f"k{n}", b"v") for n in range(8)])
    layer = Timeout(inner, seconds=0.3)  # the whole listing takes 0.4 s
    assert len([key async for key in layer.iter_keys()]) == 8


async def test_a_listing_step_past_its_deadline_raises_naming_the_base() -> None:
    inner = _Slow(3600)
    await MemoryDriver.set_items(inner, [("cart:1", b"v")])
    before = _others()

    async def listing() -> list[str]:
        return [key async for key in Timeout(inner, seconds=0.2).iter_keys("cart:")]

    with pytest.raises(DriverError) as caught:
        await listing()
    assert (caught.value.operation, caught.value.key) == ("iter_keys", "cart:")
    assert _others() == before


async def test_in_process_fast_calls_keep_their_fast_path() -> None:
    layer = Timeout(MemoryDriver(), seconds=1.0)
    assert layer.capabilities.nowait
    storage = create_storage(layer)
    await storage.set_item("k", 1)
    assert await storage.get_item("k") == 1


@pytest.mark.parametrize("seconds", [0, -1.0, float("nan"), float("inf")])
def test_a_deadline_must_be_positive_and_finite(seconds: float) -> None:
    with pytest.raises(InvalidArgumentError):
        Timeout(MemoryDriver(), seconds=seconds)


# -- a real redis-server, stopped with SIGSTOP ------------------------------------------------


@pytest.fixture
def lone_server() -> Iterator[RedisServer]:
    """A redis-server of this test alone, which the test freezes and thaws."""
    server = RedisServer().start()
    yield server
    server.close()


async def test_a_frozen_redis_server_gives_a_timeout_instead_of_a_hang(
    lone_server: RedisServer,
) -> None:
    assert lone_server.process is not None
    # The driver's own socket timeout is far longer than the deadline: the layer must act.
    inner = RedisDriver(lone_server.url, socket_timeout=60, retries=0)
    storage = create_storage(Timeout(inner, seconds=0.5))
    try:
        await storage.set_item("k", 1)
        before = _others()
        lone_server.process.send_signal(signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(DriverError) as caught:
                await storage.get_item("k")
            assert time.monotonic() - started < 3.0
            assert caught.value.operation == "get_item"
            with pytest.raises(DriverError, match="timed out"):
                await storage.get_keys()
            assert _others() == before
        finally:
            lone_server.process.send_signal(signal.SIGCONT)
        assert await storage.get_item("k") == 1
    finally:
        await storage.dispose()
