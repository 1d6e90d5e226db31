"""`storage.layers.Fallback`: reads fail over to the secondary, writes follow the policy.

A real redis-server of each test's own is the primary and is stopped mid-test; memory or
sqlite is the secondary. `Broken` is a small driver layer that fails on demand, for the
failures a stopped server cannot show (a listing that breaks part-way, a failing secondary).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from drivers.memory import MemoryDriver
from drivers.redis import RedisDriver
from drivers.sqlite import SqliteDriver
from storage import (
    Capabilities,
    ConflictError,
    Driver,
    DriverError,
    InvalidArgumentError,
    InvalidKeyError,
    Layer,
    Storage,
    UnsupportedError,
    create_storage,
)
from storage.layers.fallback import SECONDARY_ETAG, Fallback
from storage.layers.readonly import ReadOnly
from tests.servers import RedisServer


class Broken(Layer):
    """A driver that fails every call with ``error`` while it is set (reads and writes alike).

    ``list_then_fail`` lets a listing yield that many keys before it fails.
    """

    layer_name = "broken"

    def __init__(self, inner: Driver | None = None) -> None:
        super().__init__(MemoryDriver() if inner is None else inner)
        self.error: Exception | None = None
        self.list_then_fail: int | None = None
        self.calls = 0
        self.disposed = False

    def _check(self) -> None:
        self.calls += 1
        if self.error is not None:
            raise self.error

    async def get_item(self, key: str) -> bytes | None:
        self._check()
        return await self.inner.get_item(key)

    async def get_items(self, keys: Sequence[str]) -> list[bytes | None]:
        self._check()
        return await self.inner.get_items(keys)

    async def has_item(self, key: str) -> bool:
        self._check()
        return await self.inner.has_item(key)

    async def get_meta(self, key: str) -> dict[str, Any]:
        self._check()
        return await self.inner.get_meta(key)

    async def get_item_with_etag(self, key: str) -> tuple[bytes | None, str | None]:
        self._check()
        return await self.inner.get_item_with_etag(key)

    async def get_keys(self, base: str = "", *, max_depth: int | None = None) -> list[str]:
        self._check()
        return await self.inner.get_keys(base, max_depth=max_depth)

    async def iter_keys(
        self, base: str = "", *, max_depth: int | None = None
    ) -> AsyncIterator[str]:
        if self.list_then_fail is None:
            self._check()
        count = 0
        async for key in self.inner.iter_keys(base, max_depth=max_depth):
            if count == self.list_then_fail:
                raise ConnectionError("lost the connection part-way")
            count += 1
            yield key

    async def set_item(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        self._check()
        await self.inner.set_item(key, value, ttl=ttl)

    async def set_item_conditional(
        self,
        key: str,
        value: bytes,
        *,
        ttl: float | None = None,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str | None:
        self._check()
        return await self.inner.set_item_conditional(
            key, value, ttl=ttl, if_match=if_match, if_none_match=if_none_match
        )

    async def set_items(
        self, items: Sequence[tuple[str, bytes]], *, ttl: float | None = None
    ) -> None:
        self._check()
        await self.inner.set_items(items, ttl=ttl)

    async def remove_item(self, key: str) -> None:
        self._check()
        await self.inner.remove_item(key)

    async def dispose(self) -> None:
        self.disposed = True
        await self.inner.dispose()


@pytest.fixture
def lone_server() -> Iterator[RedisServer]:
    """A redis-server of this test alone, which the test may stop and restart."""
    server = RedisServer().start()
    yield server
    server.close()


@pytest.fixture
def secondary() -> MemoryDriver:
    return MemoryDriver()


@pytest.fixture
async def over_redis(lone_server: RedisServer, secondary: MemoryDriver) -> AsyncIterator[Storage]:
    storage = create_storage(Fallback(RedisDriver(lone_server.url), secondary))
    yield storage
    await storage.dispose()


# -- reads fail over ----------------------------------------------------------------------------


async def test_reads_come_from_the_secondary_while_the_primary_redis_is_stopped(
    over_redis: Storage, lone_server: RedisServer, secondary: MemoryDriver
) -> None:
    await over_redis.set_item("k", "primary")
    await secondary.set_items([("k", b'"secondary"'), ("only:here", b"1")])
    assert await over_redis.get_item("k") == "primary"
    lone_server.stop()
    assert await over_redis.get_item("k") == "secondary"
    assert await over_redis.get_items(["k", "only:here", "nope"]) == {
        "k": "secondary",
        "only:here": 1,
        "nope": None,
    }
    assert await over_redis.has_item("only:here") is True
    assert sorted(await over_redis.get_keys()) == ["k", "only:here"]
    assert [key async for key in over_redis.iter_keys("only")] == ["only:here"]
    assert (await over_redis.get_meta("only:here"))["size"] == 1
    lone_server.start()  # back, and empty (no persistence): the primary answers again
    assert await over_redis.get_item("k") is None
    assert await over_redis.get_keys() == []


async def test_writes_fail_while_the_primary_is_down_and_never_reach_the_secondary(
    lone_server: RedisServer,
) -> None:
    for policy in ("primary", "both"):
        secondary = MemoryDriver()
        storage = create_storage(Fallback(RedisDriver(lone_server.url), secondary, write=policy))
        lone_server.stop()
        try:
            with pytest.raises(DriverError):
                await storage.set_item("k", 1)
            with pytest.raises(DriverError):
                await storage.set_items({"a": 1})
            with pytest.raises(DriverError):
                await storage.remove_item("k")
            with pytest.raises(DriverError):
                await storage.clear()
            assert await secondary.get_keys() == []
        finally:
            lone_server.start()
            await storage.dispose()


async def test_sqlite_as_the_secondary_serves_what_write_both_copied(
    lone_server: RedisServer, tmp_path: Path
) -> None:
    storage = create_storage(
        Fallback(RedisDriver(lone_server.url), SqliteDriver(tmp_path / "copy.db"), write="both")
    )
    try:
        await storage.set_items({"user:1": {"name": "ann"}, "user:2": {"name": "bob"}})
        await storage.set_meta("user:1", {"owner": "ann"})
        await storage.remove_item("user:2")
        lone_server.stop()
        assert await storage.get_item("user:1") == {"name": "ann"}
        assert await storage.get_keys("user") == ["user:1"]
        assert (await storage.get_meta("user:1"))["owner"] == "ann"
    finally:
        lone_server.start()
        await storage.dispose()


@pytest.mark.parametrize(
    "error", [ConnectionError("refused"), TimeoutError(), DriverError("redis", "get_item", "k")]
)
async def test_backend_errors_fall_back(error: Exception) -> None:
    primary, secondary = Broken(), MemoryDriver()
    await secondary.set_item("k", b"from secondary")
    layer = Fallback(primary, secondary)
    primary.error = error
    assert await layer.get_item("k") == b"from secondary"
    assert await layer.get_items(["k"]) == [b"from secondary"]
    assert await layer.has_item("k") is True
    await layer.dispose()


@pytest.mark.parametrize(
    "error",
    [
        InvalidKeyError("k", "bad"),
        InvalidArgumentError("bad"),
        UnsupportedError("no"),
        ConflictError("k"),
    ],
)
async def test_storage_errors_are_answers_and_do_not_fall_back(error: Exception) -> None:
    primary, secondary = Broken(), Broken()
    layer = Fallback(primary, secondary)
    primary.error = error
    with pytest.raises(type(error)):
        await layer.get_item("k")
    with pytest.raises(type(error)):
        await layer.get_keys()
    assert secondary.calls == 0
    await layer.dispose()


async def test_a_listing_falls_back_as_a_whole_never_a_mix() -> None:
    primary, secondary = Broken(), MemoryDriver()
    await primary.inner.set_items([("p:1", b"1"), ("p:2", b"2")])
    await secondary.set_items([("s:1", b"1")])
    layer = Fallback(primary, secondary)
    primary.error = ConnectionError("down")
    assert await layer.get_keys() == ["s:1"]
    assert [key async for key in layer.iter_keys()] == ["s:1"]
    primary.error = None
    primary.list_then_fail = 1  # the primary answers with one key, then breaks
    streamed: list[str] = []

    async def listing() -> None:
        async for key in layer.iter_keys():
            streamed.append(key)

    with pytest.raises(ConnectionError):
        await listing()
    assert streamed == ["p:1"]
    primary.list_then_fail = None
    assert sorted(await layer.get_keys()) == ["p:1", "p:2"]
    await layer.dispose()


async def test_an_empty_primary_listing_is_an_answer(secondary: MemoryDriver) -> None:
    await secondary.set_item("s", b"1")
    layer = Fallback(MemoryDriver(), secondary)
    assert [key async for key in layer.iter_keys()] == []
    assert await layer.get_keys() == []
    await layer.dispose()


# -- writes and versions ------------------------------------------------------------------------


async def test_write_primary_leaves_the_secondary_alone(secondary: MemoryDriver) -> None:
    storage = create_storage(Fallback(MemoryDriver(), secondary))
    await storage.set_item("k", 1)
    await storage.set_items({"a": 1}, ttl=60)
    await storage.set_meta("k", {"m": 1})
    assert await secondary.get_keys() == []
    await storage.dispose()


async def test_write_both_copies_every_change_to_the_secondary(secondary: MemoryDriver) -> None:
    storage = create_storage(Fallback(MemoryDriver(), secondary, write="both"))
    copy = create_storage(secondary)
    await storage.set_item("k", 1, ttl=60)
    await storage.set_items({"a:1": 1, "a:2": 2, "b": 3})
    await storage.set_meta("b", {"owner": "ann"})
    assert await copy.get_items(["k", "a:1", "a:2", "b"]) == {"k": 1, "a:1": 1, "a:2": 2, "b": 3}
    assert 50 < (await copy.get_meta("k"))["ttl"] <= 60
    assert (await copy.get_meta("b"))["owner"] == "ann"
    await storage.remove_item("k")
    await storage.remove_items(["a:1"])
    await storage.clear("a")
    await storage.remove_meta("b")
    assert await copy.get_keys() == ["b"]
    assert "owner" not in await copy.get_meta("b")
    await storage.dispose()


async def test_write_both_survives_a_failing_secondary(caplog: pytest.LogCaptureFixture) -> None:
    primary, secondary = MemoryDriver(), Broken()
    layer = Fallback(primary, secondary, write="both")
    secondary.error = ConnectionError("secondary down")
    with caplog.at_level(logging.WARNING, logger="storage.layers.fallback"):
        await layer.set_item("k", b"v")
    assert await primary.get_item("k") == b"v"
    assert "failed to copy set_item" in caplog.text
    await layer.dispose()


async def test_a_conditional_write_is_decided_by_the_primary_and_then_copied() -> None:
    primary, secondary = MemoryDriver(), MemoryDriver()
    storage = create_storage(Fallback(primary, secondary, write="both"))
    await storage.set_item("k", 1)
    await secondary.set_item("k", b"99")  # the copy drifted: it does not take part in the CAS
    value, etag = await storage.get_item_with_etag("k")
    assert value == 1
    await storage.set_item("k", 2, if_match=etag)
    assert await secondary.get_item("k") == b"2"
    with pytest.raises(ConflictError):
        await storage.set_item("k", 3, if_match=etag)
    with pytest.raises(ConflictError):
        await storage.set_item("k", 3, if_none_match=True)
    assert await secondary.get_item("k") == b"2"
    await storage.dispose()


async def test_an_etag_read_from_the_secondary_never_guards_a_primary_write() -> None:
    primary, secondary = Broken(), MemoryDriver()
    storage = create_storage(Fallback(primary, secondary, write="both"))
    await storage.set_item("k", 1)
    primary.error = ConnectionError("down")
    value, etag = await storage.get_item_with_etag("k")
    assert value == 1
    assert isinstance(etag, str)
    assert etag.startswith(SECONDARY_ETAG)
    assert (await storage.get_meta("k"))["etag"] == etag
    primary.error = None
    before = primary.calls
    with pytest.raises(ConflictError):
        await storage.set_item("k", 2, if_match=etag)
    assert primary.calls == before  # refused before any I/O
    assert await storage.get_item("k") == 1
    await storage.dispose()


# -- capabilities and lifecycle -----------------------------------------------------------------


async def test_capabilities_are_those_that_stay_true_under_failover(
    lone_server: RedisServer, tmp_path: Path
) -> None:
    redis, memory = RedisDriver(lone_server.url), MemoryDriver()
    plain = Fallback(redis, memory)
    assert plain.capabilities.conditional
    assert plain.capabilities.ttl
    assert plain.capabilities.watch
    assert not plain.capabilities.nowait
    assert plain.name == "fallback(redis, memory)"
    no_ttl = Layer(MemoryDriver(), capabilities=Capabilities(conditional=True, watch=True))
    assert Fallback(MemoryDriver(), no_ttl).capabilities.ttl is True
    assert Fallback(MemoryDriver(), no_ttl, write="both").capabilities.ttl is False
    assert Fallback(ReadOnly(MemoryDriver()), memory).capabilities.read_only is True
    sqlite = SqliteDriver(tmp_path / "s.db")
    native = Fallback(sqlite, memory).capabilities.native_max_depth
    assert native is (sqlite.capabilities.native_max_depth and memory.capabilities.native_max_depth)
    with pytest.raises(UnsupportedError):
        plain.get_item_nowait("k")
    await plain.dispose()
    await sqlite.dispose()


def test_the_write_policy_is_checked() -> None:
    with pytest.raises(InvalidArgumentError):
        Fallback(MemoryDriver(), MemoryDriver(), write="secondary")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        Fallback(MemoryDriver(), ReadOnly(MemoryDriver()), write="both")
    Fallback(MemoryDriver(), ReadOnly(MemoryDriver()))


async def test_dispose_disposes_both_even_when_the_primary_fails() -> None:
    primary, secondary = Broken(), Broken()

    async def failing_dispose() -> None:
        raise ConnectionError("gone")

    primary.dispose = failing_dispose  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        await Fallback(primary, secondary).dispose()
    assert secondary.disposed


async def test_reads_fail_when_both_drivers_fail() -> None:
    primary, secondary = Broken(), Broken()
    primary.error = ConnectionError("primary down")
    secondary.error = ConnectionError("secondary down")
    storage = create_storage(Fallback(primary, secondary))
    with pytest.raises(DriverError, match="secondary down") as caught:
        await storage.get_item("k")
    assert caught.value.driver == "fallback(broken(memory), broken(memory))"
    await storage.dispose()
