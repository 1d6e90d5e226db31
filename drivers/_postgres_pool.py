"""The postgres driver's connection pool: at most ``max_connections`` asyncpg connections to
one server, handed out first come, first served; a call that finds them all busy waits for
one, at most ``pool_timeout`` seconds, then fails with `PoolTimeoutError`.

Not asyncpg's own ``Pool``: taking an idle connection here is a list pop rather than a holder,
a proxy and a timer per call, and nothing is sent on release (asyncpg resets every connection
it takes back, one more round trip per call unless told not to). Measured on a sequential
set+get: asyncpg's pool ran about a third of a bare connection's calls.

Statements are bounded by a watchdog rather than by asyncpg's ``command_timeout``, which arms
and cancels a timer for every statement (measured: 10-15% of a bare connection's sequential
rate): each call notes when it took its connection, and a check every quarter of the timeout
terminates any connection whose call has run longer than ``command_timeout``; that call then
fails with `TimeoutError`.

Every statement the driver sends through the pool is one autocommit statement, so a
connection comes back as it left. A connection that saw anything but a server-side error (a
lost socket, a timeout, a cancellation) is terminated instead of reused, and its place handed
to the next waiter, who opens a fresh one; idle connections the server closed (a restart) are
dropped when next taken. `close` ends every idle connection; those in use end when released.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Sequence
from time import monotonic
from typing import Any

import asyncpg

__all__ = ["PoolTimeoutError", "PostgresPool"]


class PoolTimeoutError(Exception):
    """Every connection stayed busy for the whole ``pool_timeout``."""


class PostgresPool:
    """A bounded, waiting pool of asyncpg connections to ``dsn``.

    ``max_connections`` bounds the open connections; ``pool_timeout`` is how long a call waits
    for one to come free; ``connect_timeout`` bounds opening one (so a dead or unreachable
    server fails in that time); ``command_timeout`` bounds each statement.
    """

    __slots__ = (
        "_closed",
        "_command_timeout",
        "_connect_timeout",
        "_dsn",
        "_idle",
        "_max",
        "_overdue",
        "_size",
        "_started",
        "_timeout",
        "_waiters",
        "_watchdog",
    )

    def __init__(
        self,
        dsn: str,
        *,
        max_connections: int,
        pool_timeout: float,
        connect_timeout: float,
        command_timeout: float,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self._dsn = dsn
        self._max = max_connections
        self._timeout = pool_timeout
        self._connect_timeout = connect_timeout
        self._command_timeout = command_timeout
        self._idle: list[asyncpg.Connection] = []
        # Open connections plus places reserved for a connection being opened.
        self._size = 0
        # A waiter is handed a live connection, or None: a free place to open one in.
        self._waiters: deque[asyncio.Future[asyncpg.Connection | None]] = deque()
        self._closed = False
        # When each connection in use was taken; those the watchdog ended.
        self._started: dict[asyncpg.Connection, float] = {}
        self._overdue: set[asyncpg.Connection] = set()
        self._watchdog: asyncio.TimerHandle | None = None

    async def connect(self, *, command_timeout: float | None = None) -> asyncpg.Connection:
        """A new connection (the pool's own have no ``command_timeout``: its watchdog bounds
        them; a connection used outside the pool may ask for one)."""
        connection: asyncpg.Connection = await asyncpg.connect(
            self._dsn,
            timeout=self._connect_timeout,
            command_timeout=command_timeout,
            server_settings={"application_name": "unistorage"},
        )
        return connection

    def _take_idle(self) -> asyncpg.Connection | None:
        idle = self._idle
        while idle:
            connection = idle.pop()
            if not connection.is_closed():
                self._started[connection] = monotonic()
                return connection
            self._size -= 1  # the server closed it while idle (a restart, a kill)
        return None

    async def acquire(self) -> asyncpg.Connection:
        """A connection for one caller, who must `release` it."""
        connection = self._take_idle()
        if connection is not None:
            return connection
        if self._size < self._max:
            self._size += 1
            connection = await self._open_reserved()
        else:
            connection = await self._wait()
        self._started[connection] = monotonic()
        return connection

    async def _wait(self) -> asyncpg.Connection:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[asyncpg.Connection | None] = loop.create_future()
        self._waiters.append(waiter)
        timer = loop.call_later(self._timeout, self._expire, waiter)
        try:
            handed = await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._give(waiter.result())  # handed one just as the wait was cancelled
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise
        finally:
            timer.cancel()
        return handed if handed is not None else await self._open_reserved()

    async def _open_reserved(self) -> asyncpg.Connection:
        """Open a connection in a place already counted in ``_size``."""
        try:
            connection = await self.connect()
        except BaseException:
            self._give(None)
            raise
        if self._watchdog is None and self._command_timeout > 0:
            self._watchdog = asyncio.get_running_loop().call_later(
                self._command_timeout / 4, self._check
            )
        return connection

    def _check(self) -> None:
        """The watchdog: end every call that has run past ``command_timeout``."""
        self._watchdog = None
        now = monotonic()
        for connection, started in list(self._started.items()):
            if now - started > self._command_timeout:
                self._overdue.add(connection)
                connection.terminate()
        if self._size and not self._closed:
            self._watchdog = asyncio.get_running_loop().call_later(
                self._command_timeout / 4, self._check
            )

    def _expire(self, waiter: asyncio.Future[asyncpg.Connection | None]) -> None:
        if not waiter.done():
            waiter.set_exception(
                PoolTimeoutError(
                    f"no postgres connection came free within {self._timeout:g} s "
                    f"(max_connections={self._max}; raise it or pool_timeout in the URL)"
                )
            )

    def _give(self, connection: asyncpg.Connection | None) -> None:
        """Hand a live connection, or a free place (None), to the first waiter, else keep it."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return
        if connection is None:
            self._size -= 1
        elif self._closed:
            self._size -= 1
            connection.terminate()
        else:
            self._idle.append(connection)

    def release(self, connection: asyncpg.Connection, error: BaseException | None = None) -> None:
        """Take ``connection`` back after a call; ``error`` is what the call raised, if any."""
        del self._started[connection]
        usable = error is None or _server_side(error)
        if usable and not connection.is_closed() and not connection.is_in_transaction():
            self._give(connection)
            return
        connection.terminate()
        self._give(None)

    def _done(self, connection: asyncpg.Connection) -> None:
        """Take ``connection`` back after a call that succeeded (the hot path of `release`)."""
        del self._started[connection]
        if self._waiters or self._closed:
            self._give(connection)
        else:
            self._idle.append(connection)

    def _failed(self, connection: asyncpg.Connection, error: BaseException) -> BaseException:
        """Release ``connection`` after ``error``; what the caller should raise instead, if
        the watchdog ended the call (else ``error`` itself)."""
        self.release(connection, error)
        if connection in self._overdue:
            self._overdue.discard(connection)
            return TimeoutError(
                f"postgres did not answer within command_timeout={self._command_timeout:g} s"
            )
        return error

    # -- one statement on a pooled connection ----------------------------------------------

    async def execute(self, sql: str, *args: Any) -> str:
        """Run ``sql`` and return its status (``"UPDATE 1"``...)."""
        connection = self._take_idle() or await self.acquire()
        try:
            status: str = await connection.execute(sql, *args)
        except BaseException as exc:
            if (raised := self._failed(connection, exc)) is exc:
                raise
            raise raised from exc
        self._done(connection)
        return status

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        """Run ``sql`` and return every row."""
        connection = self._take_idle() or await self.acquire()
        try:
            rows: list[asyncpg.Record] = await connection.fetch(sql, *args)
        except BaseException as exc:
            if (raised := self._failed(connection, exc)) is exc:
                raise
            raise raised from exc
        self._done(connection)
        return rows

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        """Run ``sql`` and return its first row (None when there is none)."""
        connection = self._take_idle() or await self.acquire()
        try:
            row: asyncpg.Record | None = await connection.fetchrow(sql, *args)
        except BaseException as exc:
            if (raised := self._failed(connection, exc)) is exc:
                raise
            raise raised from exc
        self._done(connection)
        return row

    async def fetchval(self, sql: str, *args: Any) -> Any:
        """Run ``sql`` and return the first column of its first row (None when no row)."""
        connection = self._take_idle() or await self.acquire()
        try:
            value = await connection.fetchval(sql, *args)
        except BaseException as exc:
            if (raised := self._failed(connection, exc)) is exc:
                raise
            raise raised from exc
        self._done(connection)
        return value

    async def run_script(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
        """Run ``statements`` (SQL and arguments) in one transaction on one connection."""
        connection = await self.acquire()
        try:
            async with connection.transaction():
                for sql, args in statements:
                    await connection.execute(sql, *args)
        except BaseException as exc:
            if (raised := self._failed(connection, exc)) is exc:
                raise
            raise raised from exc
        self.release(connection)

    async def close(self) -> None:
        """End every idle connection; those in use end when released. Waiters fail."""
        self._closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        idle, self._idle = self._idle, []
        self._size -= len(idle)
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(PoolTimeoutError("the postgres driver was disposed"))
        await asyncio.gather(*(_close(connection) for connection in idle))


def _server_side(error: BaseException) -> bool:
    """True for an error the server answered with, which leaves the connection usable."""
    return isinstance(error, asyncpg.PostgresError) and not isinstance(
        error, asyncpg.PostgresConnectionError
    )


async def _close(connection: asyncpg.Connection) -> None:
    try:
        await connection.close(timeout=1.0)
    except Exception:
        connection.terminate()
