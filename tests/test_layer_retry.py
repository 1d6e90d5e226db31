"""Retry: idempotent calls retried on transient failures, conditional writes never repeated."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from drivers.memory import MemoryDriver
from drivers.redis import RedisDriver
from storage import (
    Capabilities,
    ConflictError,
    DriverError,
    InvalidArgumentError,
    InvalidKeyError,
    ReadOnlyError,
    SerializationError,
    UnsupportedError,
    create_storage,
)
from storage.layers.retry import Retry, is_retryable
from storage.layers.stats import Stats
from storage.layers.timeout import Timeout
from tests.servers import RedisServer

#: In a `_Flaky` driver's failures: the call never answers.
HANG = ConnectionError("hang")


class _Flaky(MemoryDriver):
    """Memory whose async calls first raise each of ``failures`` (or hang, for `HANG`), then
    work; counts calls. ``hang_after_write`` makes a conditional write apply, then never
    answer (a lost reply). ``seed`` stores without counting or failing.
    """

    capabilities = Capabilities(ttl=True, conditional=True)

    def __init__(self, *failures: Exception, hang_after_write: bool = False) -> None:
        super().__init__()
        self.failures = list(failures)
        self.hang_after_write = hang_after_write
        self.calls: dict[str, int] = {}

    async def seed(self, *keys: str) -> None:
        await MemoryDriver.set_items(self, [(key, b"v") for key in keys])

    async def _call(self, operation: str) -> None:
        self.calls[operation] = self.calls.get(operation, 0) + 1
        if self.failures:
            failure = self.failures.pop(0)
            if failure is HANG:
                await asyncio.sleep(3600)
            raise failure

    async def get_item(self, key: str) -> bytes | None:
        await self._call("get_item")
        return await super().get_item(key)

    async def set_item(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        await self._call("set_item")
        await super().set_item(key, value, ttl=ttl)

    async def set_item_conditional(
        self,
        key: str,
        value: bytes,
        *,
        ttl: float | None = None,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str | None:
        self.calls["set_item_conditional"] = self.calls.get("set_item_conditional", 0) + 1
        etag = await super().set_item_conditional(
            key, value, ttl=ttl, if_match=if_match, if_none_match=if_none_match
        )
        if self.hang_after_write:
            await asyncio.sleep(3600)
        if self.failures:  # the write is done; only the answer is lost
            raise self.failures.pop(0)
        return etag

    async def iter_keys(
        self, base: str = "", *, max_depth: int | None = None
    ) -> AsyncIterator[str]:
        await self._call("iter_keys")
        async for key in super().iter_keys(base, max_depth=max_depth):
            yield key


class _BreaksMidListing(MemoryDriver):
    """Memory whose listing fails after its first key; counts listings."""

    def __init__(self) -> None:
        super().__init__()
        self.listings = 0

    async def iter_keys(
        self, base: str = "", *, max_depth: int | None = None
    ) -> AsyncIterator[str]:
        self.listings += 1
        async for key in super().iter_keys(base, max_depth=max_depth):
            yield key
            raise ConnectionError("connection reset")


def _quick(inner: MemoryDriver, **options: float) -> Retry:
    return Retry(inner, **{"attempts": 5, "backoff": 0.001, "max_backoff": 0.01, **options})  # type: ignore[arg-type]


async def test_a_read_is_retried_until_it_works() -> None:
    inner = _Flaky(ConnectionError("refused"), OSError("reset"))
    await inner.seed("k")
    assert await _quick(inner).get_item("k") == b"v"
    assert inner.calls == {"get_item": 3}


async def test_an_unconditional_write_is_retried() -> None:
    inner = _Flaky(TimeoutError())
    storage = create_storage(_quick(inner))
    await storage.set_item("k", 1, ttl=60)
    assert await storage.get_item("k") == 1
    assert inner.calls["set_item"] == 2


async def test_a_driver_error_from_a_lower_layer_is_retried() -> None:
    inner = _Flaky(HANG)
    await inner.seed("k")
    assert await _quick(Timeout(inner, seconds=0.2)).get_item("k") == b"v"  # type: ignore[arg-type]
    assert inner.calls == {"get_item": 2}


@pytest.mark.parametrize(
    "error",
    [
        ConflictError("k"),
        InvalidKeyError("k", "bad"),
        InvalidArgumentError("bad ttl"),
        ReadOnlyError("k", "memory"),
        UnsupportedError("no"),
        SerializationError("bad bytes", key="k"),
    ],
    ids=lambda error: type(error).__name__,
)
async def test_a_refusal_is_not_retried(error: Exception) -> None:
    inner = _Flaky(error)
    with pytest.raises(type(error)):
        await _quick(inner).get_item("k")
    assert inner.calls == {"get_item": 1}
    assert not is_retryable(error)


async def test_cancellation_is_not_retried() -> None:
    assert not is_retryable(asyncio.CancelledError())
    inner = _Flaky(asyncio.CancelledError())  # type: ignore[arg-type]
    with pytest.raises(asyncio.CancelledError):
        await _quick(inner).get_item("k")
    assert inner.calls == {"get_item": 1}


async def test_it_gives_up_after_the_attempts_with_the_last_error() -> None:
    inner = _Flaky(*(ConnectionError(f"try {n}") for n in range(10)))
    with pytest.raises(ConnectionError, match="try 2"):
        await _quick(inner, attempts=3).get_item("k")
    assert inner.calls == {"get_item": 3}


async def test_the_budget_bounds_the_total_time() -> None:
    inner = _Flaky(*(OSError("down") for _ in range(100_000)))
    layer = Retry(inner, attempts=100_000, backoff=0.01, max_backoff=0.05, budget=0.5)
    started = time.monotonic()
    with pytest.raises(OSError, match="down"):
        await layer.get_item("k")
    assert time.monotonic() - started < 3.0
    assert 1 < inner.calls["get_item"] < 100_000


async def test_a_conditional_write_that_timed_out_is_sent_once() -> None:
    inner = _Flaky(TimeoutError("no reply"))  # raised after the write was applied
    storage = create_storage(_quick(inner))
    with pytest.raises(DriverError, match="no reply"):
        await storage.set_item("k", 1, if_none_match=True)
    assert inner.calls == {"set_item_conditional": 1}
    assert await storage.get_item("k") == 1


async def test_a_conditional_write_cut_by_a_lower_timeout_is_sent_once() -> None:
    inner = _Flaky(hang_after_write=True)
    layer = _quick(Timeout(inner, seconds=0.2))  # type: ignore[arg-type]
    with pytest.raises(DriverError, match="timed out"):
        await layer.set_item_conditional("k", b"v", if_none_match=True)
    assert inner.calls == {"set_item_conditional": 1}
    assert await inner.get_item("k") == b"v"


async def test_a_listing_is_retried_before_its_first_key() -> None:
    inner = _Flaky(ConnectionError("refused"))
    await inner.seed("a", "b")
    assert sorted([key async for key in _quick(inner).iter_keys()]) == ["a", "b"]
    assert inner.calls == {"iter_keys": 2}


async def test_a_listing_is_not_retried_once_keys_are_out() -> None:
    inner = _BreaksMidListing()
    await inner.set_items([("a", b"1"), ("b", b"2")])
    seen: list[str] = []

    async def listing() -> None:
        async for key in _quick(inner).iter_keys():
            seen.append(key)

    with pytest.raises(ConnectionError, match="reset"):
        await listing()
    assert len(seen) == 1
    assert inner.listings == 1


@pytest.mark.parametrize(
    "options",
    [{"attempts": 0}, {"backoff": -1.0}, {"max_backoff": float("inf")}, {"budget": 0.0}],
)
def test_options_out_of_range_are_refused(options: dict[str, float]) -> None:
    with pytest.raises(InvalidArgumentError):
        Retry(MemoryDriver(), **options)  # type: ignore[arg-type]


# -- a real redis-server, stopped and restarted -----------------------------------------------


@pytest.fixture
def lone_server() -> Iterator[RedisServer]:
    """A redis-server of this test alone, which the test stops and restarts."""
    server = RedisServer().start()
    yield server
    server.close()


async def test_calls_made_while_redis_restarts_succeed_once_it_is_back(
    lone_server: RedisServer,
) -> None:
    inner = RedisDriver(lone_server.url, socket_timeout=0.5, socket_connect_timeout=0.5, retries=0)
    stats = Stats(inner)  # below the retries: counts every attempt
    storage = create_storage(Retry(stats, attempts=1000, backoff=0.05, max_backoff=0.25, budget=20))
    try:
        await storage.set_item("k", 1)
        lone_server.stop()

        def restart() -> None:
            time.sleep(1.0)
            lone_server.start()

        restarting = asyncio.ensure_future(asyncio.to_thread(restart))
        try:
            # The server comes back empty (no persistence): the read answers None, not an error.
            assert await storage.get_item("k") is None
        finally:
            await restarting
        await storage.set_item("k", 2)
        assert await storage.get_item("k") == 2
        lone_server.stop()
        restarting = asyncio.ensure_future(asyncio.to_thread(restart))
        try:
            await storage.set_items({"a": 1, "b": 2})  # retried until the server is back
        finally:
            await restarting
        assert await storage.get_items(["a", "b"]) == {"a": 1, "b": 2}
        assert sorted(await storage.get_keys()) == ["a", "b"]
        attempts = stats.snapshot()["operations"]
        assert attempts["get_item"]["errors"]  # the read failed while the server was down ...
        assert attempts["set_items"]["errors"]  # ... and so did the batch write
    finally:
        await storage.dispose()


async def test_redis_errors_outlasting_the_budget_reach_the_caller(
    lone_server: RedisServer,
) -> None:
    inner = RedisDriver(lone_server.url, socket_timeout=0.5, socket_connect_timeout=0.5, retries=0)
    storage = create_storage(Retry(inner, attempts=1000, backoff=0.05, max_backoff=0.1, budget=0.5))
    try:
        lone_server.stop()
        started = time.monotonic()
        with pytest.raises(DriverError) as caught:
            await storage.get_item("k")
        assert time.monotonic() - started < 5.0
        assert caught.value.driver == "retry(redis)"
    finally:
        await storage.dispose()
