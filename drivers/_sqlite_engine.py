"""The engine under the sqlite driver: one file's writer thread, group commit and readers.

`SqliteEngine` is the one owner of everything in the sqlite driver that meets a thread, as
aiosqlite's ``Connection`` is: the driver creates it in its constructor and closes it in
``dispose``. It knows no table and no driver: it is given a ``setup`` to run on the writing
connection when it opens (the driver's table check), the work to run, and an ``on_events``
callback for the changes that work reports. See drivers.sqlite for group commit and inline
reads.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from storage import DriverError, WatchEvent
from storage.errors import own

__all__ = ["Events", "SqliteEngine", "Work"]

logger = logging.getLogger("drivers.sqlite")

_NOTADB = 26
_BATCH = 1024
#: Commits made on callers' threads between the checkpoints the writer thread is asked for
#: (their connections never checkpoint themselves: that may fsync, on the caller's thread).
_CHECKPOINT_EVERY = 256

#: The changes one job made, reported to ``on_events`` once its transaction committed.
Events = list[tuple[WatchEvent, str]]
#: A job: runs on a connection (the writer's or a reader's), may append to the events.
Work = Callable[[sqlite3.Connection, Events], Any]


@dataclass(slots=True)
class _Job:
    work: Work
    future: asyncio.Future[Any]
    write: bool
    simple: bool = False  # one statement: autocommit is already atomic
    events: Events = field(default_factory=list)


_Outcome = tuple[_Job, Any, BaseException | None]


def _failed(job: _Job, exc: BaseException) -> _Outcome:
    job.events.clear()
    return job, None, exc


def _busy(exc: sqlite3.OperationalError) -> bool:
    """True for SQLITE_BUSY and SQLITE_LOCKED (and their extended codes)."""
    return getattr(exc, "sqlite_errorcode", 0) & 0xFF in (5, 6)


class SqliteEngine:
    """Runs work on one SQLite file: writes in one thread with group commit, short reads inline.

    Nothing starts before the first job. Then the writer thread opens the file (WAL unless
    ``read_only``; ``setup`` checks it) and, given a ``sweep``, a task on the caller's event
    loop runs it as a write every ``sweep_interval`` seconds. ``close()`` stops both and closes
    every connection; a job submitted after it fails with `sqlite3.ProgrammingError`.
    """

    __slots__ = (
        "_busy_timeout",
        "_closed",
        "_connected",
        "_durable",
        "_file",
        "_in_flight",
        "_inline",
        "_inline_commits",
        "_inline_reads",
        "_inline_writes",
        "_lock",
        "_on_events",
        "_queue",
        "_read_only",
        "_readers",
        "_setup",
        "_started",
        "_sweep",
        "_sweep_interval",
        "_sweeper",
        "_thread",
        "_tick_writer",
        "commits",
        "path",
    )

    def __init__(
        self,
        path: str,
        *,
        setup: Callable[[sqlite3.Connection], None],
        read_only: bool = False,
        busy_timeout: float = 5.0,
        durable: bool = False,
        inline_reads: bool = True,
        inline_writes: bool = True,
        on_events: Callable[[Events], None] | None = None,
        sweep: Work | None = None,
        sweep_interval: float = 0.0,
    ) -> None:
        self.path = path
        self._file = path if path == ":memory:" else os.path.abspath(path)
        self._setup = setup
        self._read_only = read_only
        self._busy_timeout = busy_timeout
        self._durable = durable
        self._inline_reads = inline_reads and path != ":memory:"
        # A commit here never fsyncs (synchronous=NORMAL in WAL): durable ones stay in the thread.
        self._inline_writes = self._inline_reads and inline_writes and not (read_only or durable)
        self._inline_commits = 0
        self._in_flight = 0  # jobs submitted to the thread and not yet settled
        # The task that wrote here in this turn of its event loop (cleared by the next turn).
        self._tick_writer: asyncio.Task[Any] | None = None
        self._on_events = on_events
        self._sweep = sweep if sweep_interval > 0 else None
        self._sweep_interval = sweep_interval
        #: Write transactions committed so far (several writes share one under load).
        self.commits = 0
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=f"sqlite:{path}", daemon=True)
        self._lock = threading.Lock()  # orders every submission before close()'s stop signal
        self._started = False
        self._closed = False
        self._connected = False  # the writer opened the file and setup passed
        self._inline = False  # reads may run on the caller's thread
        self._readers: dict[int, sqlite3.Connection] = {}  # thread id -> its read connection
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def file(self) -> str:
        """The absolute path of the database file (``":memory:"`` for an in-memory one)."""
        return self._file

    @property
    def closed(self) -> bool:
        """True once `close` was called."""
        return self._closed

    # -- the one way in ------------------------------------------------------------------------

    async def call(
        self, work: Work, *, write: bool = False, simple: bool = False, short: bool = False
    ) -> Any:
        """Run ``work`` in the writer thread; a ``write`` resolves only after its commit.

        ``simple`` marks a write of one statement, which may run alone in autocommit mode.
        A simple write, or one marked ``short`` (a few rows: one key's counter, a small batch),
        runs here instead when nothing is queued ahead of it (`_write_here`); long ones (a
        clear, a stream, a sweep, a large batch) always go to the thread, so that the caller's
        loop never stalls on them.
        """
        if write and (simple or short) and self._inline_writes and self._inline:
            done, result = self._write_here(work, simple)
            if done:
                return result
        result = await self._submit(work, write, simple)
        if not self._inline and self._inline_reads and self._connected and not self._closed:
            self._inline = True
        return result

    async def read(self, work: Work) -> Any:
        """Run a short read here, on a connection this thread owns; else in the writer thread."""
        conn = self._reader()
        if conn is not None:
            try:
                return work(conn, [])
            except sqlite3.OperationalError as exc:
                if not _busy(exc):
                    raise
        return await self.call(work)

    def _write_here(self, work: Work, simple: bool) -> tuple[bool, Any]:
        """Run a write on this thread's connection, committed before returning, when no job
        is queued or running in the thread (so writes still land in the order they were
        made) and no other task wrote here in this turn of the event loop; ``(False, None)``
        when it must go to the thread instead: jobs ahead of it, concurrent writers (they
        share one commit there, and SQLite's work runs beside the loop's), or a lock held by
        another connection (the zero busy timeout: this thread never waits).
        """
        task = asyncio.current_task()
        if self._tick_writer is not None and self._tick_writer is not task:
            return False, None
        with self._lock:
            if self._in_flight or self._closed:
                return False, None
        conn = self._reader()
        if conn is None:
            return False, None
        events: Events = []
        try:
            if simple:
                result = work(conn, events)
            else:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    result = work(conn, events)
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if not _busy(exc):
                raise
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            return False, None
        self.commits += 1
        self._inline_commits += 1
        if self._tick_writer is None and task is not None:
            self._tick_writer = task
            task.get_loop().call_soon(self._next_tick)
        if self._inline_commits % _CHECKPOINT_EVERY == 0:
            self._submit(_checkpoint, False, False).add_done_callback(_log_failure)
        if events:
            self._report(events)
        return True, result

    def _next_tick(self) -> None:
        self._tick_writer = None

    def post(self, work: Work) -> None:
        """Queue a write that nobody waits for (a purge); its failure is logged."""
        self._submit(work, True, False).add_done_callback(_log_failure)

    def _submit(self, work: Work, write: bool, simple: bool) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        with self._lock:
            if self._closed:
                raise sqlite3.ProgrammingError(f"the sqlite engine of {self.path!r} is closed")
            if not self._started:
                self._started = True
                self._thread.start()
                if self._sweep is not None:
                    self._sweeper = loop.create_task(self._sweep_forever(self._sweep))
            self._queue.put(_Job(work, future, write, simple))
            self._in_flight += 1
        return future

    # -- the one way out -----------------------------------------------------------------------

    async def close(self) -> None:
        """Stop the sweeper and the writer thread (after the jobs already queued), close every
        connection. Closing again does nothing."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._started:
                self._queue.put(None)
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        self._inline = False
        for conn in self._readers.values():
            conn.close()
        self._readers.clear()
        if self._started:
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join)

    # -- the writer thread ---------------------------------------------------------------------

    def _open(self, timeout: float) -> sqlite3.Connection:
        """A connection to the file: read-only ones never create it (nor its directory)."""
        if self._read_only and self._file != ":memory:":
            uri = "file:" + urllib.parse.quote(os.path.abspath(self._file)) + "?mode=ro"
            return sqlite3.connect(
                uri, timeout=timeout, isolation_level=None, check_same_thread=False, uri=True
            )
        return sqlite3.connect(
            self._file, timeout=timeout, isolation_level=None, check_same_thread=False
        )

    def _connect(self) -> sqlite3.Connection:
        if self._file != ":memory:" and not self._read_only:
            os.makedirs(os.path.dirname(self._file), exist_ok=True)
        try:
            conn = self._open(self._busy_timeout)
        except sqlite3.OperationalError as exc:
            raise DriverError("sqlite", "open", None, f"cannot open {self.path!r}: {exc}") from exc
        deadline = time.monotonic() + self._busy_timeout
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
        conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
        if self._file != ":memory:" and not self._read_only:
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {'FULL' if self._durable else 'NORMAL'}")
        self._setup(conn)

    def _serve(self) -> None:
        try:
            conn: sqlite3.Connection | None = self._connect()
            self._connected = True
        except BaseException as exc:  # every job is answered with why the database is unusable
            conn, failure = None, exc
        try:
            while True:
                first = self._queue.get()
                jobs: list[_Job] = []
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
                    self._resolve([_failed(job, failure) for job in jobs])
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

    def _run_batch(self, conn: sqlite3.Connection, jobs: list[_Job]) -> None:
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

    def _group(self, conn: sqlite3.Connection, writes: list[_Job]) -> list[_Outcome]:
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

    def _attempt(self, conn: sqlite3.Connection, job: _Job, *, savepoint: bool = False) -> _Outcome:
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
        raised: set[int] = set()  # one error often fails a whole group: each caller gets a copy
        for job, result, exc in done:
            if exc is not None:
                shared = id(exc) in raised
                raised.add(id(exc))
                if shared:
                    exc = own(exc)
            by_loop.setdefault(job.future.get_loop(), []).append((job, result, exc))
        for loop, outcomes in by_loop.items():
            try:
                loop.call_soon_threadsafe(self._settle, outcomes)
            except RuntimeError:
                logger.warning("sqlite: results for a closed event loop were dropped")
                self._settled(len(outcomes))

    # -- back on the caller's event loop -------------------------------------------------------

    def _settle(self, outcomes: list[_Outcome]) -> None:
        for job, result, exc in outcomes:
            if job.events:
                self._report(job.events)
            if job.future.done():
                continue
            if exc is not None:
                job.future.set_exception(exc)
            else:
                job.future.set_result(result)
        # Only now may a write run on a caller's thread: its events follow these.
        self._settled(len(outcomes))

    def _settled(self, count: int) -> None:
        with self._lock:
            self._in_flight -= count

    def _report(self, events: Events) -> None:
        if self._on_events is None:
            return
        try:
            self._on_events(events)
        except Exception:  # a failing listener must not leave the other callers waiting
            logger.exception("sqlite: reporting changes failed")

    def _reader(self) -> sqlite3.Connection | None:
        """This thread's read connection, once the writer has opened and checked the file."""
        if not self._inline:
            return None
        ident = threading.get_ident()
        conn = self._readers.get(ident)
        if conn is None:
            # timeout=0: a read that would wait for a lock goes to the writer thread instead.
            conn = self._open(0)
            if self._inline_writes:  # it commits as the writer does, and never checkpoints
                conn.execute("PRAGMA synchronous = NORMAL")
                conn.execute("PRAGMA wal_autocheckpoint = 0")
            self._readers[ident] = conn
        return conn

    async def _sweep_forever(self, sweep: Work) -> None:
        while True:
            await asyncio.sleep(self._sweep_interval)
            try:
                await self.call(sweep, write=True)
            except Exception:
                logger.exception("sqlite sweep of %s failed", self.path)


def _checkpoint(conn: sqlite3.Connection, _: Events) -> None:
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


def _log_failure(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and (exc := future.exception()) is not None:
        logger.warning("sqlite: a queued write failed: %s", exc)
