"""The engine under the sqlite driver: its writer thread, group commit and connections.

See the docstring of drivers.sqlite for the design; this module holds the machinery that runs
work on the writing connection (in one thread) or on per-thread read connections.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from storage import DriverError, Watchers, WatchEvent

logger = logging.getLogger("drivers.sqlite")

_COLUMNS = ["key", "value", "expires", "mtime", "version"]
_NOTADB = 26
_BATCH = 1024


Events = list[tuple[WatchEvent, str]]
Work = Callable[[sqlite3.Connection, Events], Any]


@dataclass(slots=True)
class Job:
    work: Work
    future: asyncio.Future[Any]
    write: bool
    simple: bool = False  # one statement: autocommit is already atomic
    events: Events = field(default_factory=list)


_Outcome = tuple[Job, Any, BaseException | None]


def _failed(job: Job, exc: BaseException) -> _Outcome:
    job.events.clear()
    return job, None, exc


def _busy(exc: sqlite3.OperationalError) -> bool:
    """True for SQLITE_BUSY and SQLITE_LOCKED (and their extended codes)."""
    return getattr(exc, "sqlite_errorcode", 0) & 0xFF in (5, 6)


def upper_bound(base: str) -> str:
    """The least string above every key that starts with ``base`` (which ends in ``:``)."""
    return base[:-1] + chr(ord(":") + 1)


def new_version() -> int:
    return random.getrandbits(62)


class SqliteEngine:
    """Runs work on the writing connection (one thread, group commit) or on a read connection."""

    path: str
    _file: str
    table: str
    read_only: bool
    busy_timeout: float
    sweep_interval: float
    _sql_purge: str
    durable: bool
    inline_reads: bool
    _connected: bool
    commits: int
    _inline: bool
    _readers: dict[int, sqlite3.Connection]
    _queue: queue.SimpleQueue[Job | None]
    _thread: threading.Thread | None
    _watchers: Watchers
    _sweeper: asyncio.Task[None] | None

    async def _sweep_forever(self) -> None:
        """Purge expired rows every ``sweep_interval`` seconds (the driver defines it)."""
        raise NotImplementedError

    # -- the worker thread -------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self._file != ":memory:":
            os.makedirs(os.path.dirname(self._file), exist_ok=True)
        conn = sqlite3.connect(
            self._file, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
        )
        deadline = time.monotonic() + self.busy_timeout
        try:
            while True:
                try:
                    self._prepare(conn)
                    return conn
                except sqlite3.OperationalError as exc:
                    # Switching to WAL can report "locked" at once, without the busy handler,
                    # while another process sets up the same new file: wait and retry.
                    if not _busy(exc) or time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
        except sqlite3.DatabaseError as exc:
            conn.close()
            if getattr(exc, "sqlite_errorcode", 0) == _NOTADB:
                message = f"{self.path!r} is not a SQLite database ({exc})"
            else:
                message = f"cannot open {self.path!r}: {exc}"
            raise DriverError("sqlite", "open", None, message) from exc
        except BaseException:
            conn.close()
            raise

    def _prepare(self, conn: sqlite3.Connection) -> None:
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        if self.path != ":memory:" and not self.read_only:
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {'FULL' if self.durable else 'NORMAL'}")
        self._check_schema(conn)

    def _check_schema(self, conn: sqlite3.Connection) -> None:
        t = f'"{self.table}"'
        columns = [row[1] for row in conn.execute(f"PRAGMA table_info({t})")]
        if not columns:
            if self.read_only:
                raise DriverError(
                    "sqlite", "open", None, f"no table {self.table!r} in {self.path!r}"
                )
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {t} (key TEXT PRIMARY KEY NOT NULL, "
                "value BLOB NOT NULL, expires REAL, mtime REAL NOT NULL, version INTEGER NOT NULL)"
            )
            conn.execute(
                f'CREATE INDEX IF NOT EXISTS "{self.table}_expires" ON {t} (expires) '
                "WHERE expires IS NOT NULL"
            )
        elif columns != _COLUMNS:
            raise DriverError(
                "sqlite",
                "open",
                None,
                f"table {self.table!r} in {self.path!r} is not a unistorage table "
                f"(columns {columns}, expected {_COLUMNS}); choose another table= or file",
            )

    def _serve(self) -> None:
        try:
            conn: sqlite3.Connection | None = self._connect()
            self._connected = True
        except BaseException as exc:  # every job is answered with why the database is unusable
            conn, failure = None, exc
        try:
            while True:
                first = self._queue.get()
                jobs: list[Job] = []
                stopping = first is None
                if first is not None:
                    jobs.append(first)
                while len(jobs) < _BATCH:
                    try:
                        job = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if job is None:
                        stopping = True
                    else:
                        jobs.append(job)
                if conn is None:
                    self._resolve([(job, None, failure) for job in jobs])
                elif jobs:
                    try:
                        self._run_batch(conn, jobs)
                    except Exception as exc:  # never leave a caller waiting
                        logger.exception("sqlite worker failed a batch")
                        self._resolve([_failed(job, exc) for job in jobs])
                if stopping:
                    return
        finally:
            if conn is not None:
                conn.close()

    def _run_batch(self, conn: sqlite3.Connection, jobs: list[Job]) -> None:
        done = [self._attempt(conn, job) for job in jobs if not job.write]
        writes = [job for job in jobs if job.write]
        if len(writes) == 1 and writes[0].simple:
            outcome = self._attempt(conn, writes[0])
            error = outcome[2]
            if isinstance(error, sqlite3.OperationalError) and _busy(error):
                # A stale read snapshot fails at once (BUSY_SNAPSHOT): redo it under a write lock.
                done.extend(self._group(conn, writes))
            else:
                done.append(outcome)
                self.commits += error is None
        elif writes:
            done.extend(self._group(conn, writes))
        self._resolve(done)

    def _group(self, conn: sqlite3.Connection, writes: list[Job]) -> list[_Outcome]:
        """Run ``writes`` in one transaction; each in a savepoint, so one failing job is undone alone."""
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:  # busy past the timeout, or broken: every job fails at once
            return [_failed(job, exc) for job in writes]
        try:
            outcomes = [self._attempt(conn, job, savepoint=len(writes) > 1) for job in writes]
            if len(writes) == 1 and outcomes[0][2] is not None:
                conn.execute("ROLLBACK")
                return outcomes
            conn.execute("COMMIT")
            self.commits += 1
            return outcomes
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if len(writes) == 1:
                return [_failed(writes[0], exc)]
            # The shared transaction itself broke: redo each job alone, so only the culprit fails.
            for job in writes:
                job.events.clear()
            return [outcome for job in writes for outcome in self._group(conn, [job])]

    def _attempt(self, conn: sqlite3.Connection, job: Job, *, savepoint: bool = False) -> _Outcome:
        if savepoint:
            conn.execute("SAVEPOINT job")
        try:
            result = job.work(conn, job.events)
        except Exception as exc:
            if savepoint:
                conn.execute("ROLLBACK TO job")
                conn.execute("RELEASE job")
            return _failed(job, exc)
        if savepoint:
            conn.execute("RELEASE job")
        return job, result, None

    def _resolve(self, done: list[_Outcome]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}
        for outcome in done:
            by_loop.setdefault(outcome[0].future.get_loop(), []).append(outcome)
        for loop, outcomes in by_loop.items():
            try:
                loop.call_soon_threadsafe(self._settle, outcomes)
            except RuntimeError:
                logger.warning("sqlite: results for a closed event loop were dropped")

    def _settle(self, outcomes: list[_Outcome]) -> None:
        for job, result, exc in outcomes:
            if job.events and self._watchers:
                for event, key in job.events:
                    self._watchers.emit(event, key)
            if job.future.done():
                continue
            if exc is not None:
                job.future.set_exception(exc)
            else:
                job.future.set_result(result)

    def _reader(self) -> sqlite3.Connection | None:
        """This thread's read connection, once the worker has checked the schema."""
        if not self._inline:
            return None
        ident = threading.get_ident()
        conn = self._readers.get(ident)
        if conn is None:
            # timeout=0: a read that would wait for a lock goes to the worker instead.
            conn = sqlite3.connect(
                self._file, timeout=0, isolation_level=None, check_same_thread=False
            )
            self._readers[ident] = conn
        return conn

    async def _read(self, work: Work) -> Any:
        """Run a short read here, on a connection this thread owns; else in the worker."""
        conn = self._reader()
        if conn is not None:
            try:
                return work(conn, [])
            except sqlite3.OperationalError as exc:
                if not _busy(exc):
                    raise
        return await self._call(work)

    async def _call(self, work: Work, *, write: bool = False, simple: bool = False) -> Any:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._serve, name=f"sqlite:{self.path}", daemon=True
            )
            self._thread.start()
            if self.sweep_interval > 0 and not self.read_only:
                self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put(Job(work, future, write, simple))
        result = await future
        if not self._inline and self.inline_reads and self._connected:
            self._inline = True
        return result

    # -- operations (the work runs in the worker thread) ----------------------------------------

    def _purge_later(self, key: str) -> None:
        if self.read_only:
            return

        def purge(conn: sqlite3.Connection, events: Events) -> None:
            if conn.execute(self._sql_purge, (key, time.time())).rowcount:
                events.append(("remove", key))

        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_log_failure)
        self._queue.put(Job(purge, future, True))


def _log_failure(future: asyncio.Future[None]) -> None:
    if not future.cancelled() and (exc := future.exception()) is not None:
        logger.warning("sqlite: purging an expired key failed: %s", exc)
