"""Large values on sqlite in chunks, with memory flat both ways.

Writing: the chunks go to a spool, an anonymous temporary file (in the database's directory,
on the same disk as the database and never on a small tmpfs; in the system's temporary
directory for an in-memory database or a directory that takes no files), one job per chunk in
the writer thread. When the chunks end, one write job inserts the row with ``zeroblob(size)``
as its value and fills it from the spool through `sqlite3.Blob` (``Connection.blobopen``),
`FILL_CHUNK` bytes at a time, inside the writer thread's transaction: nothing is visible
before its commit. When the chunks fail (the writer's block raised), the spool is dropped, the
error goes on, and nothing was written.

Reading: a stream opens its own connection (used only in the writer thread, like every
connection there) and reads the row through a read-only blob, one chunk per job, inside a
read transaction. That transaction is a snapshot: the stream gives the value stored when its
first chunk was read, whole, whatever is written meanwhile (WAL lets writers go on; it cannot
be checkpointed past the snapshot until the stream ends).

Without ``blobopen`` (Python 3.10, `BLOBS` false) a stream is stored by reading the spool
whole, and read by reading the value whole; an in-memory database (which no second connection
can see) is read whole too. Both are correct, but then memory holds the value once.
"""

from __future__ import annotations

import contextlib
import io
import os
import sqlite3
import tempfile
import time
from collections.abc import AsyncIterator

from drivers._sqlite_engine import Events, SqliteEngine, Work
from drivers._sqlite_schema import LIVE, new_version, upsert
from storage import ConflictError

__all__ = ["BLOBS", "FILL_CHUNK", "Streams"]

#: True where sqlite3 has incremental blob I/O (``Connection.blobopen``, Python 3.11+).
BLOBS = hasattr(sqlite3.Connection, "blobopen")
#: Bytes copied from the spool into the blob at a time.
FILL_CHUNK = 256 * 1024


class Streams:
    """Streams in and out of one table, run on the engine the driver passes each call."""

    __slots__ = ("_blobs", "_busy_timeout", "_get", "_locate", "_put", "_put_zeroblob", "_table")

    def __init__(self, table: str, *, busy_timeout: float, blobs: bool = BLOBS) -> None:
        """``blobs=False`` takes the path without ``blobopen`` (the value whole, as on 3.10)."""
        self._table = table
        self._busy_timeout = busy_timeout
        self._blobs = blobs
        self._put = upsert(table)
        self._put_zeroblob = upsert(table, "zeroblob(?)") + " RETURNING rowid"
        self._get = f'SELECT value FROM "{table}" WHERE key = ? AND {LIVE}'
        self._locate = f'SELECT rowid FROM "{table}" WHERE key = ? AND {LIVE}'

    async def write(
        self, engine: SqliteEngine, key: str, chunks: AsyncIterator[bytes], ttl: float | None
    ) -> str:
        """Store what ``chunks`` yields at ``key`` once it ends; return the new etag. When
        ``chunks`` raises, the spool is dropped and the error re-raised: nothing is written."""
        file = engine.file
        spool = _Spool(None if file == ":memory:" else os.path.dirname(file))
        try:
            async for chunk in chunks:
                if chunk:
                    await engine.call(spool.append(chunk))
            etag: str = await engine.call(self._store(key, spool, ttl), write=True)
            return etag
        finally:
            await _finish(engine, spool.close)

    def _store(self, key: str, spool: _Spool, ttl: float | None) -> Work:
        def work(conn: sqlite3.Connection, events: Events) -> str:
            now = time.time()
            version = new_version()
            expires = None if ttl is None else now + ttl
            if self._blobs and spool.size:
                rows = conn.execute(self._put_zeroblob, (key, spool.size, expires, now, version))
                ((rowid,),) = rows.fetchall()
                with conn.blobopen(self._table, "value", rowid) as blob:
                    spool.copy_into(blob)
            else:
                conn.execute(self._put, (key, spool.read_all(), expires, now, version))
            events.append(("update", key))
            return str(version)

        return work

    async def read(
        self, engine: SqliteEngine, key: str, chunk_size: int
    ) -> AsyncIterator[bytes] | None:
        """The value of ``key`` in chunks of at most ``chunk_size`` bytes, or None when there
        is no live value. The stream holds its connection from the first chunk to the last
        (or until it is closed)."""
        if not self._blobs or engine.file == ":memory:":
            rows = await engine.read(_fetch(self._get, key))
            return None if not rows else _chunked(bytes(rows[0][0]), chunk_size)
        if not await engine.read(_fetch(self._locate, key)):
            return None
        reader = _BlobReader(
            engine.file, self._busy_timeout, self._table, self._locate, key, chunk_size
        )
        return self._chunks(engine, reader)

    async def _chunks(self, engine: SqliteEngine, reader: _BlobReader) -> AsyncIterator[bytes]:
        try:
            while chunk := await engine.call(reader.next):
                yield chunk
        finally:
            await _finish(engine, reader.close)


class _Spool:
    """The chunks of a value being written, in an anonymous temporary file (made at the first
    chunk, in the writer thread; gone from the disk once closed).

    A spool closed early (its writer cancelled while the value was being stored) refuses to
    be read, so that the store fails and rolls back instead of keeping a blob of zeros.
    """

    __slots__ = ("_closed", "_directory", "_file", "size")

    def __init__(self, directory: str | None) -> None:
        self._directory = directory
        self._file: io.BufferedRandom | None = None
        self._closed = False
        #: Bytes spooled so far.
        self.size = 0

    def append(self, chunk: bytes) -> Work:
        """The job that adds ``chunk`` to the spool."""

        def work(*_: object) -> None:
            if self._closed:
                raise ValueError("the stream's spool was dropped")
            if self._file is None:
                self._file = _temporary(self._directory)
            self._file.write(chunk)
            self.size += len(chunk)

        return work

    def _opened(self) -> io.BufferedRandom | None:
        if self._closed:
            raise ValueError("the stream's spool was dropped before its value was stored")
        if self._file is not None:
            self._file.seek(0)
        return self._file

    def copy_into(self, blob: sqlite3.Blob) -> None:
        """Write the spooled bytes into ``blob`` from its start, `FILL_CHUNK` at a time."""
        file = self._opened()
        if file is None:
            return
        buffer = bytearray(FILL_CHUNK)
        view = memoryview(buffer)
        while count := file.readinto(buffer):
            blob.write(view[:count])

    def read_all(self) -> bytes:
        """The spooled bytes, whole (the path without blobs)."""
        file = self._opened()
        return b"" if file is None else file.read()

    def close(self, *_: object) -> None:
        """Drop the spool; closing again does nothing."""
        self._closed = True
        file, self._file = self._file, None
        if file is not None:
            file.close()


def _temporary(directory: str | None) -> io.BufferedRandom:
    """An anonymous temporary file in ``directory``, else in the system's temporary one."""
    if directory is not None:
        with contextlib.suppress(OSError):
            return tempfile.TemporaryFile(dir=directory, prefix=".unistorage-spool-")
    return tempfile.TemporaryFile(prefix="unistorage-spool-")


class _BlobReader:
    """One stream's connection, read transaction and blob, used only in the writer thread."""

    __slots__ = (
        "_blob",
        "_chunk_size",
        "_closed",
        "_conn",
        "_file",
        "_key",
        "_locate",
        "_table",
        "_timeout",
    )

    def __init__(
        self, file: str, timeout: float, table: str, locate: str, key: str, chunk_size: int
    ) -> None:
        self._file = file
        self._timeout = timeout
        self._table = table
        self._locate = locate  # SELECT rowid of the live row at a key
        self._key = key
        self._chunk_size = chunk_size
        self._conn: sqlite3.Connection | None = None
        self._blob: sqlite3.Blob | None = None
        self._closed = False

    def next(self, *_: object) -> bytes:
        """The job that reads the next chunk (``b""`` at the end, or once closed)."""
        if self._closed:
            return b""
        if self._blob is None:
            self._blob = self._open()
        return self._blob.read(self._chunk_size)

    def _open(self) -> sqlite3.Blob:
        conn = sqlite3.connect(
            self._file,
            timeout=self._timeout,
            isolation_level=None,
            check_same_thread=False,  # closed here instead should the writer thread be gone
        )
        self._conn = conn
        conn.execute("BEGIN")  # the snapshot the whole stream reads
        row = conn.execute(self._locate, (self._key, time.time())).fetchone()
        if row is None:
            raise ConflictError(self._key, "the value was removed as its stream opened")
        return conn.blobopen(self._table, "value", row[0], readonly=True)

    def close(self, *_: object) -> None:
        """Close the blob and the connection (ending the snapshot); again does nothing."""
        self._closed = True
        blob, self._blob = self._blob, None
        conn, self._conn = self._conn, None
        if blob is not None:
            blob.close()
        if conn is not None:
            conn.close()


async def _finish(engine: SqliteEngine, work: Work) -> None:
    """Run the clean-up ``work`` in the writer thread; here, should the engine not run it
    (closed meanwhile, or its file unusable): the thread is then gone or never used it."""
    try:
        await engine.call(work)
    except Exception:
        work(None, [])  # type: ignore[arg-type]  # clean-ups take no connection


def _fetch(sql: str, key: str) -> Work:
    def work(conn: sqlite3.Connection, _: Events) -> list[tuple[bytes]]:
        rows: list[tuple[bytes]] = conn.execute(sql, (key, time.time())).fetchall()
        return rows

    return work


async def _chunked(value: bytes, size: int) -> AsyncIterator[bytes]:
    view = memoryview(value)
    for start in range(0, len(value), size):
        yield bytes(view[start : start + size])
