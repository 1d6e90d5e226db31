"""Bounded redis-py clients whose commands wait for a free connection instead of failing.

redis-py's default pool raises "Too many connections" as soon as ``max_connections`` are in
use, and its asyncio cluster client does the same per node, so a burst of requests fails where
it should queue. Here ``max_connections`` slots sit in front of the connections: a command
takes a slot (waiting up to ``pool_timeout`` seconds for one), and gives it back when its
connection returns. A wait that runs out raises `redis.exceptions.MaxConnectionsError`, which
the core reports as a `storage.DriverError`.

redis-py's own ``BlockingConnectionPool`` waits too, but costs a lock, a condition and a timer
on every checkout (measured at 15-20% of a sequential get/set through Storage); taking a free
slot here is a method call (1-3%). The checkout and the return themselves are redis-py's
steps without the calls that do nothing unless its OpenTelemetry metrics are on, and without
its event dispatch (whose one listener re-authenticates the connection, called directly):
3 us a checkout and return instead of 8.5-9 (redis-py 8.1). Where its metrics are on, where
the caller passed an ``event_dispatcher`` of its own, and on a redis-py without those metrics,
redis-py's own steps run.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, TypeVar

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.asyncio.connection import AbstractConnection, Connection
from redis.exceptions import MaxConnectionsError

try:
    from redis.observability import providers as _observability
except ImportError:  # an older redis-py: no metrics, and light steps this module leaves alone
    _observability = None  # type: ignore[assignment]

__all__ = ["WaitingConnectionPool", "WaitingRedis", "WaitingRedisCluster"]

_T = TypeVar("_T")


class _Slots:
    """``size`` slots, handed out first come, first served; a wait lasts ``timeout`` seconds.

    Not an ``asyncio.Semaphore``: taking a free slot here is a plain method call rather than a
    coroutine, and that was most of what the bound cost a command.
    """

    __slots__ = ("_free", "_size", "_timeout", "_waiters")

    def __init__(self, size: int, timeout: float) -> None:
        if size < 1:
            raise ValueError("max_connections must be at least 1")
        self._free = size
        self._size = size
        self._timeout = timeout
        # While anyone waits, no slot is free: `give` hands each slot to the first waiter.
        self._waiters: deque[asyncio.Future[None]] = deque()

    def try_take(self) -> bool:
        """Take a slot if one is free; False if the caller must `wait` for one."""
        if self._free:
            self._free -= 1
            return True
        return False

    async def wait(self) -> None:
        """Wait until `give` hands this caller a slot; `MaxConnectionsError` after the timeout."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        timer = loop.call_later(self._timeout, self._expire, waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self.give()  # handed a slot just as the wait was cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise
        finally:
            timer.cancel()

    def _expire(self, waiter: asyncio.Future[None]) -> None:
        if not waiter.done():
            waiter.set_exception(
                MaxConnectionsError(
                    f"no redis connection came free within {self._timeout:g} s "
                    f"(max_connections={self._size}; raise it or pool_timeout in the URL)"
                )
            )

    def give(self) -> None:
        """Return a slot: to the first live waiter, or to the free ones."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1


def _redis_py_steps() -> bool:
    """Whether redis-py's own steps must run: while its OpenTelemetry metrics are on (they
    report them), and always on a redis-py without them (its steps are light already, and
    those of the releases before 8 differ in details that this module does not copy)."""
    return (
        _observability is None
        or _observability.get_observability_instance().get_provider_manager() is not None
    )


class WaitingConnectionPool(ConnectionPool):
    """A standalone server's pool of at most ``max_connections``; a checkout waits for one
    to come free, at most ``pool_timeout`` seconds."""

    def __init__(self, *, max_connections: int, pool_timeout: float, **options: Any) -> None:
        super().__init__(max_connections=max_connections, **options)
        self._slots = _Slots(max_connections, pool_timeout)
        # The connections handed out against a slot, each with whether it was checked out by
        # this class's own steps (`_plain`), to be returned the same way: a connection
        # released twice, or one the base class hands back itself after a failed connect,
        # must not free a slot.
        self._holding: dict[AbstractConnection, bool] = {}
        # Listeners of the caller's own on a connection's return are called by the base class.
        self._own_steps = "event_dispatcher" not in options

    def _plain(self) -> bool:
        """True unless redis-py's own steps must run for checkout and return (`_redis_py_steps`,
        or listeners of the caller's)."""
        return self._own_steps and not _redis_py_steps()

    async def get_connection(
        self, command_name: str | None = None, *keys: Any, **options: Any
    ) -> AbstractConnection:
        if not self._slots.try_take():
            await self._slots.wait()
        plain = self._plain()
        try:
            if plain:
                # The lock, as in the base class: maintenance notifications (RESP3) walk the
                # connections under it.
                async with self._lock:
                    connection: AbstractConnection = self.get_available_connection()  # type: ignore[no-untyped-call]
            else:
                connection = await super().get_connection()  # type: ignore[no-untyped-call]
        except BaseException:
            self._slots.give()
            raise
        self._holding[connection] = plain
        if plain:
            try:
                # redis-py's own check: connects a new connection or one that was dropped.
                await self.ensure_connection(connection)
            except BaseException:
                await self.release(connection)
                raise
        return connection

    async def release(self, connection: AbstractConnection) -> None:
        plain = self._holding.pop(connection, None)
        if plain is None:
            await super().release(connection)
            return
        try:
            if not plain:
                await super().release(connection)
                return
            # The base class's steps, and the re-authentication its release event runs.
            async with self._lock:
                self._in_use_connections.remove(connection)
                if connection.should_reconnect():  # type: ignore[no-untyped-call]
                    await connection.disconnect()
                self._available_connections.append(connection)
            await connection.re_auth()  # type: ignore[no-untyped-call]
        finally:
            self._slots.give()


# The commands the redis driver sends one by one: their wire form depends on no state of the
# connection (HIMPORT SET does), so any pooled connection can carry them as they are.
_PLAIN_COMMANDS = frozenset(
    {"GET", "SET", "GETEX", "EXISTS", "UNLINK", "INCRBY", "PEXPIRE", "MGET", "MSET", "EVALSHA"}
)


class WaitingRedis(Redis):
    """The client of a `WaitingConnectionPool`. A command the driver sends is redis-py's
    steps (a pooled connection, the connection's retry of a failure, the reply parsed by the
    client's callbacks) without the metrics calls and bookkeeping that do nothing unless its
    OpenTelemetry metrics are on: 6 us less a command (redis-py 8.1). Any other command takes
    redis-py's own path, and so does every command where `_redis_py_steps` says so."""

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        if args[0] not in _PLAIN_COMMANDS or self.single_connection_client or _redis_py_steps():
            return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        pool = self.connection_pool
        connection: Connection = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            return await connection.retry.call_with_retry(
                lambda: self._round_trip(connection, args, options),
                lambda error: connection.disconnect(),
            )
        finally:
            await pool.release(connection)

    async def _round_trip(
        self, connection: Connection, args: tuple[Any, ...], options: dict[str, Any]
    ) -> Any:
        await connection.send_command(*args)
        return await self.parse_response(connection, args[0], **options)


# The slots the current task holds: a command issued while its caller already holds a slot of
# the same client (a cluster pipeline resends redirected commands one by one) must not wait
# for a second one, or max_connections=1 would deadlock.
_HELD: ContextVar[_Slots | None] = ContextVar("unistorage_redis_slots", default=None)


async def _holding(slots: _Slots, call: Callable[[], Awaitable[_T]]) -> _T:
    """Run ``call`` holding one of ``slots``, unless this task holds one already."""
    if _HELD.get() is slots:
        return await call()
    if not slots.try_take():
        await slots.wait()
    token = _HELD.set(slots)
    try:
        return await call()
    finally:
        _HELD.reset(token)
        slots.give()


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
        if self.get_default_node() is None:
            # Before it knows the slots (at first, and after it resets itself on MOVED storms)
            # redis-py 8 files a keyed command as keyless and sends it to a random node; the
            # MOVED replies then make it close every connection, commands in flight included,
            # and retry them: a burst of INCRBYs counted some twice. Learn the slots first.
            await self.initialize()
        call = super().execute_command
        return await _holding(self._slots, lambda: call(*args, **kwargs))

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
        call = super().execute
        return await _holding(self._slots, lambda: call(raise_on_error, allow_redirections))
