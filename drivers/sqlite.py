"""The sqlite driver: one table in a SQLite file, written by one thread, with group commit.

Every connection belongs to exactly one thread (the aiosqlite discipline). The writing
connection belongs to a worker thread that takes jobs from a queue; whatever jobs are waiting
when it wakes run together: reads first, then every write in one ``BEGIN IMMEDIATE`` ...
``COMMIT``, each write in its own savepoint so that one failure is undone alone. A write's
future resolves only after that commit: concurrent writers share transactions and nothing is
acknowledged uncommitted. ``durable=True`` makes each commit fsync (``synchronous=FULL``).

Short reads (one key, meta, a few keys) run on a read connection owned by the calling event
loop's thread, in WAL mode, with a zero busy timeout: a read that would have to wait for a lock
goes to the worker instead, so the loop never waits on another process. That saves a thread
hop per read (measured in benchmarks/bench_sqlite.py); ``inline_reads=False`` turns it off,
say for very large values. Listings always run in the worker.

Short writes (one key, or a batch of at most 50) run there too when nothing is queued for the
worker or running in it, and no other task wrote there in the same turn of the event loop
(``inline_writes``, on by default; not with ``durable``, whose commits fsync). The same zero
busy timeout sends a write that meets another connection's lock to the worker, whose busy
timeout waits for it; a write made while others are queued joins the queue, so writes still
land in the order they were made; concurrent writers go to the worker and share its commits.
One write alone costs a thread hop less (a sequential writer no longer waits for the worker
to wake). Long writes (clears, streams, sweeps, large batches) always run in the worker, so
the loop never stalls on them. Those connections never checkpoint (a checkpoint may fsync):
every 256 commits made there, the worker is asked for a passive checkpoint.

The threads and connections belong to a `SqliteEngine` (drivers/_sqlite_engine.py) that the
driver creates in its constructor and closes in ``dispose``; the driver holds the SQL and the
watchers, and hands the engine work functions, its table check and a callback for events.

Table ``<table>(key TEXT PRIMARY KEY, value BLOB, expires REAL, mtime REAL, version INTEGER)``;
``expires`` is a Unix time or NULL, ``version`` a random number per write (the etag, which
every write returns). Keys are only ever bound as parameters; listings and pages are ranges
of the key (drivers/_sqlite_listing.py). Compare-and-set, conditional removes, increment and
touch are each one job in the writer thread (drivers/_sqlite_atomic.py); streams go through a
spool file and SQLite's blob I/O, on connections of the writer thread (drivers/_sqlite_streams.py).
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timezone
from functools import partial
from typing import Any
from urllib.parse import unquote, urlsplit

from drivers._sqlite_atomic import Atomic
from drivers._sqlite_engine import Events, SqliteEngine, Work
from drivers._sqlite_listing import key_range, page_query
from drivers._sqlite_schema import LIVE, check_table, new_version, upsert
from drivers._sqlite_streams import Streams
from storage import (
    Capabilities,
    Driver,
    InvalidArgumentError,
    Unwatch,
    WatchCallback,
    Watchers,
)
from storage.driver import parse_url_options

__all__ = ["SqliteDriver"]

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_PAGE = 1000
_IN_CHUNK = 500
_INLINE_KEYS = 50


class SqliteDriver(Driver):
    """Keys in one SQLite table: WAL, busy timeout, TTL column, group commit, watch.

    Options: ``path`` (or ``":memory:"``); ``table`` name; ``read_only``; ``busy_timeout``
    seconds to wait for another process's lock; ``sweep_interval`` (seconds between purges of
    expired rows, 0 for none); ``durable`` (fsync each commit); ``inline_reads`` and
    ``inline_writes`` (see above).
    """

    name = "sqlite"
    schemes = ("sqlite",)

    def __init__(
        self,
        path: str | os.PathLike[str] = ".data/unistorage.db",
        *,
        table: str = "unistorage",
        read_only: bool = False,
        busy_timeout: float = 5.0,
        sweep_interval: float = 60.0,
        durable: bool = False,
        inline_reads: bool = True,
        inline_writes: bool = True,
    ) -> None:
        if not _IDENTIFIER.match(table):
            raise InvalidArgumentError(f"table must be a plain SQL identifier, not {table!r}")
        self.path = os.fspath(path)
        self.table = table
        self.read_only = read_only
        self.busy_timeout = busy_timeout
        self.sweep_interval = sweep_interval
        self.durable = durable
        self.inline_reads = inline_reads and self.path != ":memory:"
        # As asked: the engine writes inline only where it may (not durable, read-only, :memory:).
        self.inline_writes = inline_writes
        self.capabilities = Capabilities(
            ttl=True, conditional=True, watch=True, read_only=read_only, bounded=True
        )
        self._watchers = Watchers()
        t = f'"{table}"'
        self._sql_get = f"SELECT value, expires FROM {t} WHERE key = ?"
        self._sql_get_tagged = f"SELECT value, expires, version FROM {t} WHERE key = ?"
        self._sql_get_meta = f"SELECT value, expires, version, mtime FROM {t} WHERE key = ?"
        self._sql_has = f"SELECT expires FROM {t} WHERE key = ?"
        self._sql_put = upsert(table)
        self._sql_delete = f"DELETE FROM {t} WHERE key = ?"
        self._sql_purge = f"DELETE FROM {t} WHERE key = ? AND expires <= ?"
        self._sql_sweep = f"DELETE FROM {t} WHERE expires <= ? RETURNING key"
        self._sql_live = LIVE
        self._atomic = Atomic(table)
        self._streams = Streams(table, busy_timeout=busy_timeout)
        self._engine = self._new_engine()  # owned: closed by dispose

    def _new_engine(self) -> SqliteEngine:
        """The engine that holds this driver's thread and connections (see `SqliteEngine`)."""
        return SqliteEngine(
            self.path,
            setup=partial(check_table, path=self.path, table=self.table, read_only=self.read_only),
            read_only=self.read_only,
            busy_timeout=self.busy_timeout,
            durable=self.durable,
            inline_reads=self.inline_reads,
            inline_writes=self.inline_writes,
            on_events=self._emit,
            sweep=None if self.read_only else self._sweep_work,
            sweep_interval=self.sweep_interval,
        )

    @property
    def commits(self) -> int:
        """Write transactions committed so far (several writes share one under load)."""
        return self._engine.commits

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SqliteDriver:
        """``sqlite:///relative.db``, ``sqlite:////absolute.db`` or ``sqlite://:memory:``."""
        parts = urlsplit(url)
        if parts.scheme != "sqlite":
            raise InvalidArgumentError(f"the sqlite driver does not read {parts.scheme!r} URLs")
        if parts.netloc == ":memory:" or parts.path in ("/:memory:", ":memory:"):
            path = ":memory:"
        elif parts.netloc:
            raise InvalidArgumentError(f"sqlite URLs have no host: {url!r} (use sqlite:///file.db)")
        else:
            path = unquote(parts.path[1:])
        if not path:
            raise InvalidArgumentError(f"no database file in {url!r}")
        return cls(path, **{**parse_url_options(parts.query), **options})

    async def get_item(self, key: str) -> bytes | None:
        rows = await self._engine.read(
            lambda conn, _: conn.execute(self._sql_get, (key,)).fetchall()
        )
        row = rows[0] if rows else None
        if row is None:
            return None
        if row[1] is not None and row[1] <= time.time():
            self._purge_later(key)
            return None
        return bytes(row[0])

    async def get_item_with_etag(self, key: str) -> tuple[bytes | None, str | None]:
        """The value of ``key`` and its version (the etag), read by one query."""
        rows = await self._engine.read(
            lambda conn, _: conn.execute(self._sql_get_tagged, (key,)).fetchall()
        )
        row = rows[0] if rows else None
        if row is None:
            return None, None
        if row[1] is not None and row[1] <= time.time():
            self._purge_later(key)
            return None, None
        return bytes(row[0]), str(row[2])

    async def get_item_with_meta(self, key: str) -> tuple[bytes | None, dict[str, Any]]:
        """The value of ``key`` and its meta, read by one query."""
        rows = await self._engine.read(
            lambda conn, _: conn.execute(self._sql_get_meta, (key,)).fetchall()
        )
        row = rows[0] if rows else None
        if row is None:
            return None, {}
        value, expires, version, mtime = row
        now = time.time()
        if expires is not None and expires <= now:
            self._purge_later(key)
            return None, {}
        data = bytes(value)
        return data, _meta(mtime, expires, version, len(data), now)

    async def has_item(self, key: str) -> bool:
        rows = await self._engine.read(
            lambda conn, _: conn.execute(self._sql_has, (key,)).fetchall()
        )
        row = rows[0] if rows else None
        if row is not None and row[0] is not None and row[0] <= time.time():
            self._purge_later(key)
            return False
        return row is not None

    async def get_items(self, keys: Sequence[str]) -> list[bytes | None]:
        def work(conn: sqlite3.Connection, _: Events) -> dict[str, bytes]:
            found: dict[str, bytes] = {}
            now = time.time()
            unique = list(dict.fromkeys(keys))
            for start in range(0, len(unique), _IN_CHUNK):
                chunk = unique[start : start + _IN_CHUNK]
                marks = ", ".join("?" * len(chunk))
                sql = f'SELECT key, value FROM "{self.table}" WHERE key IN ({marks}) AND {self._sql_live}'
                found.update(conn.execute(sql, (*chunk, now)).fetchall())
            return found

        found = await (
            self._engine.read(work) if len(keys) <= _INLINE_KEYS else self._engine.call(work)
        )
        return [found.get(key) for key in keys]

    def _put(self, conn: sqlite3.Connection, key: str, value: bytes, ttl: float | None) -> str:
        now = time.time()
        version = new_version()
        conn.execute(self._sql_put, (key, value, None if ttl is None else now + ttl, now, version))
        return str(version)

    async def set_item(self, key: str, value: bytes, *, ttl: float | None = None) -> str:
        def work(conn: sqlite3.Connection, events: Events) -> str:
            events.append(("update", key))
            return self._put(conn, key, value, ttl)

        etag: str = await self._engine.call(work, write=True, simple=True)
        return etag

    async def set_items(
        self, items: Sequence[tuple[str, bytes]], *, ttl: float | None = None
    ) -> None:
        def work(conn: sqlite3.Connection, events: Events) -> None:
            now = time.time()
            expires = None if ttl is None else now + ttl
            conn.executemany(
                self._sql_put, [(key, value, expires, now, new_version()) for key, value in items]
            )
            events.extend(("update", key) for key, _ in items)

        await self._engine.call(work, write=True, short=len(items) <= _INLINE_KEYS)

    async def set_item_conditional(
        self,
        key: str,
        value: bytes,
        *,
        ttl: float | None = None,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str:
        work = self._atomic.set_conditional(key, value, ttl, if_match, if_none_match)
        etag: str = await self._engine.call(work, write=True, simple=True)
        return etag

    async def remove_item_conditional(self, key: str, *, if_match: str) -> None:
        work = self._atomic.remove_conditional(key, if_match)
        await self._engine.call(work, write=True, simple=True)

    async def increment(self, key: str, by: int, *, ttl: float | None = None) -> int:
        value: int = await self._engine.call(
            self._atomic.increment(key, by, ttl), write=True, short=True
        )
        return value

    async def touch(self, key: str, ttl: float) -> bool:
        """Renew the expiry alone: the value, its etag and its mtime stay as they are."""
        touched: bool = await self._engine.call(
            self._atomic.touch(key, ttl), write=True, simple=True
        )
        return touched

    async def get_item_touch(self, key: str, ttl: float) -> bytes | None:
        value: bytes | None = await self._engine.call(
            self._atomic.get_touch(key, ttl), write=True, simple=True
        )
        return value

    async def remove_item(self, key: str) -> None:
        def work(conn: sqlite3.Connection, events: Events) -> None:
            if conn.execute(self._sql_delete, (key,)).rowcount:
                events.append(("remove", key))

        await self._engine.call(work, write=True, simple=True)

    async def remove_items(self, keys: Sequence[str]) -> None:
        def work(conn: sqlite3.Connection, events: Events) -> None:
            if not self._watchers:
                conn.executemany(self._sql_delete, [(key,) for key in keys])
                return
            for key in keys:
                if conn.execute(self._sql_delete, (key,)).rowcount:
                    events.append(("remove", key))

        await self._engine.call(work, write=True, short=len(keys) <= _INLINE_KEYS)

    async def iter_keys(
        self, base: str = "", *, max_depth: int | None = None
    ) -> AsyncIterator[str]:
        cursor: str | None = None
        while True:
            keys, cursor = await self.list_page(
                base, limit=_PAGE, cursor=cursor, max_depth=max_depth
            )
            for key in keys:
                yield key
            if cursor is None:
                return

    async def list_page(
        self,
        base: str = "",
        *,
        limit: int,
        cursor: str | None = None,
        max_depth: int | None = None,
    ) -> tuple[list[str], str | None]:
        """One query over the base's key range, above ``cursor`` (the last key of the page
        before): a key present for the whole listing is listed exactly once."""
        rows = await self._engine.call(
            _fetch_all(*page_query(self.table, base, cursor, limit, max_depth))
        )
        keys = [key for (key,) in rows[:limit]]
        return keys, keys[-1] if len(rows) > limit else None

    async def get_keys(self, base: str = "", *, max_depth: int | None = None) -> list[str]:
        where, args = key_range(base)
        sql = f'SELECT key FROM "{self.table}" WHERE {where}{self._sql_live}'
        rows = await self._engine.call(
            lambda conn, _: conn.execute(sql, (*args, time.time())).fetchall()
        )
        return [key for (key,) in rows]

    async def clear(self, base: str = "") -> None:
        where, args = key_range(base)
        sql = f'DELETE FROM "{self.table}" WHERE {where}1'

        def work(conn: sqlite3.Connection, events: Events) -> None:
            if not self._watchers:
                conn.execute(sql, args)
                return
            removed = conn.execute(sql + " RETURNING key", args).fetchall()
            events.extend(("remove", key) for (key,) in removed)

        await self._engine.call(work, write=True)

    async def get_meta(self, key: str) -> dict[str, Any]:
        sql = f'SELECT mtime, expires, version, length(value) FROM "{self.table}" WHERE key = ?'
        rows = await self._engine.read(lambda conn, _: conn.execute(sql, (key,)).fetchall())
        row = rows[0] if rows else None
        if row is None:
            return {}
        mtime, expires, version, size = row
        now = time.time()
        if expires is not None and expires <= now:
            self._purge_later(key)
            return {}
        return _meta(mtime, expires, version, size, now)

    async def read_chunks(self, key: str, chunk_size: int) -> AsyncIterator[bytes] | None:
        """The value in chunks read through a blob on a snapshot (see drivers/_sqlite_streams.py)."""
        return await self._streams.read(self._engine, key, chunk_size)

    async def write_chunks(
        self, key: str, chunks: AsyncIterator[bytes], *, ttl: float | None = None
    ) -> str:
        """Spool the chunks to a temporary file, then fill a blob from it in one transaction."""
        return await self._streams.write(self._engine, key, chunks, ttl)

    async def sweep(self) -> list[str]:
        """Delete every expired row now; return their keys."""
        result: list[str] = await self._engine.call(self._sweep_work, write=True)
        return result

    def _sweep_work(self, conn: sqlite3.Connection, events: Events) -> list[str]:
        removed = [key for (key,) in conn.execute(self._sql_sweep, (time.time(),)).fetchall()]
        events.extend(("remove", key) for key in removed)
        return removed

    def _purge_later(self, key: str) -> None:
        """Delete ``key`` if it is still expired, without waiting for it."""
        if self.read_only:
            return

        def purge(conn: sqlite3.Connection, events: Events) -> None:
            if conn.execute(self._sql_purge, (key, time.time())).rowcount:
                events.append(("remove", key))

        self._engine.post(purge)

    async def watch(self, callback: WatchCallback) -> Unwatch:
        """Report the changes made through this driver object (not other processes)."""
        return self._watchers.add(callback)

    def _emit(self, events: Events) -> None:
        """Tell the watchers what a committed job changed (the engine calls it on the loop)."""
        if self._watchers.callbacks:
            for event, key in events:
                self._watchers.emit(event, key)

    async def dispose(self) -> None:
        """Close the engine (its thread and connections) and drop the watchers.

        A disposed driver still works, as it always has: its next call starts a fresh engine.
        """
        self._watchers.clear()
        engine, self._engine = self._engine, self._new_engine()
        await engine.close()


def _fetch_all(sql: str, args: tuple[Any, ...]) -> Work:
    def work(conn: sqlite3.Connection, _: Events) -> list[Any]:
        return conn.execute(sql, args).fetchall()

    return work


def _meta(
    mtime: float, expires: float | None, version: int, size: int, now: float
) -> dict[str, Any]:
    """A live row's native meta."""
    meta: dict[str, Any] = {
        "mtime": datetime.fromtimestamp(mtime, timezone.utc),
        "size": size,
        "etag": str(version),
    }
    if expires is not None:
        meta["ttl"] = max(0.0, expires - now)
    return meta
