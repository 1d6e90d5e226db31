"""Bounded redis-py clients whose commands wait for a free connection instead of failing.

redis-py's default pool raises "Too many connections" as soon as ``max_connections`` are in
use, and its asyncio cluster client does the same per node, so a burst of requests fails where
it should queue. Here ``max_connections`` slots sit in front of the connections: a command
takes a slot (waiting up to ``pool_timeout`` seconds for one), and gives it back when its
connection returns. A wait that runs out raises `redis.exceptions.MaxConnectionsError`, which
the core reports as a `storage.DriverError`.

redis-py's own ``BlockingConnectionPool`` waits too, but costs a lock, a condition and a timer
on every checkout (measured at 15-20% of a sequential get/set through Storage); a free slot
costs a counter decrement.
"""

from __future__ import annotations

import asyncio
from contextvars import ContextVar
from typing import Any

from redis.asyncio import ConnectionPool
from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import MaxConnectionsError

__all__ = ["WaitingConnectionPool", "WaitingRedisCluster"]


class _Slots:
    """``size`` slots; `take` waits at most ``timeout`` seconds for one."""

    __slots__ = ("_free", "_size", "_timeout")

    def __init__(self, size: int, timeout: float) -> None:
        if size < 1:
            raise ValueError("max_connections must be at least 1")
        self._free = asyncio.Semaphore(size)
        self._size = size
        self._timeout = timeout

    async def take(self) -> None:
        if not self._free.locked():
            await self._free.acquire()  # a slot is free: returns without suspending
            return
        try:
            # wait_for rather than asyncio.timeout: Python 3.10 is supported, and the timer
            # is paid only by a command that has to wait.
            await asyncio.wait_for(self._free.acquire(), self._timeout)
        except asyncio.TimeoutError as exc:
            raise MaxConnectionsError(
                f"no redis connection came free within {self._timeout:g} s "
                f"(max_connections={self._size}; raise it or pool_timeout in the URL)"
            ) from exc

    def give(self) -> None:
        self._free.release()


class WaitingConnectionPool(ConnectionPool):
    """A standalone server's pool of at most ``max_connections``; a checkout waits for one
    to come free, at most ``pool_timeout`` seconds."""

    def __init__(self, *, max_connections: int, pool_timeout: float, **options: Any) -> None:
        super().__init__(max_connections=max_connections, **options)
        self._slots = _Slots(max_connections, pool_timeout)
        # The connections handed out against a slot: a connection released twice, or one
        # the base class hands back itself after a failed connect, must not free a slot.
        self._holding: set[AbstractConnection] = set()

    async def get_connection(
        self, command_name: str | None = None, *keys: Any, **options: Any
    ) -> AbstractConnection:
        await self._slots.take()
        try:
            connection: AbstractConnection = await super().get_connection()  # type: ignore[no-untyped-call]
        except BaseException:
            self._slots.give()
            raise
        self._holding.add(connection)
        return connection

    async def release(self, connection: AbstractConnection) -> None:
        try:
            await super().release(connection)
        finally:
            if connection in self._holding:
                self._holding.discard(connection)
                self._slots.give()


# The slots the current task holds: a command issued while its caller already holds a slot of
# the same client (a cluster pipeline resends redirected commands one by one) must not wait
# for a second one, or max_connections=1 would deadlock.
_HELD: ContextVar[_Slots | None] = ContextVar("unistorage_redis_slots", default=None)


class _Hold:
    """Holds one of ``slots`` for the duration of an ``async with``, once per task."""

    __slots__ = ("_slots", "_token")

    def __init__(self, slots: _Slots) -> None:
        self._slots = slots
        self._token: Any = None

    async def __aenter__(self) -> None:
        if _HELD.get() is self._slots:
            return
        await self._slots.take()
        self._token = _HELD.set(self._slots)

    async def __aexit__(self, *exc: object) -> None:
        if self._token is not None:
            _HELD.reset(self._token)
            self._slots.give()


class WaitingRedisCluster(RedisCluster):
    """A Redis Cluster client with at most ``max_connections`` commands in flight.

    redis-py's asyncio cluster client bounds connections per node but fails instead of
    waiting, and offers no hook to wait per node; so the bound is on the whole client: at most
    ``max_connections`` commands (or pipelines, which use one connection per node) run at
    once, and hence no node ever has more connections than that. The rest wait, at most
    ``pool_timeout`` seconds.
    """

    def __init__(self, *, pool_timeout: float, **options: Any) -> None:
        options.setdefault("max_connections", 100)
        super().__init__(**options)
        self._slots = _Slots(int(options["max_connections"]), pool_timeout)

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with _Hold(self._slots):
            return await super().execute_command(*args, **kwargs)

    def pipeline(
        self, transaction: Any | None = None, shard_hint: Any | None = None
    ) -> ClusterPipeline:
        if shard_hint:
            return super().pipeline(transaction, shard_hint)  # redis-py raises its own error
        # mypy sees an abstract attribute that redis-py's own ClusterPipeline sets at runtime.
        return _WaitingClusterPipeline(self, transaction, self._slots)  # type: ignore[abstract]


class _WaitingClusterPipeline(ClusterPipeline):
    """A cluster pipeline that holds one slot of its client while it runs."""

    def __init__(self, client: RedisCluster, transaction: Any | None, slots: _Slots) -> None:
        super().__init__(client, transaction)
        self._slots = slots

    async def execute(
        self, raise_on_error: bool = True, allow_redirections: bool = True
    ) -> list[Any]:
        async with _Hold(self._slots):
            return await super().execute(raise_on_error, allow_redirections)
