"""What is special about sqlite streams: a write goes to a spool file beside the database and
is filled into the row's blob in one transaction; a read goes through a blob on its own
snapshot, which holds the WAL until it ends. What every driver's streams do (a failure or a
cancellation changes nothing, chunk sizes, snapshots, flat memory; on a file and in memory) is
the conformance suite's (tests/conformance/test_streams.py)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from drivers._sqlite_engine import SqliteEngine
from drivers._sqlite_schema import check_table
from drivers._sqlite_streams import Streams
from drivers.sqlite import SqliteDriver
from storage import ConflictError, DriverError, create_storage
from storage.streams import StreamAbortedError
from tests.fixtures.fs import open_files_under

MB = 1024 * 1024
PROC = os.path.isdir("/proc/self/fd")  # where this process's open files can be seen (Linux)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[SqliteDriver]:
    driver = SqliteDriver(tmp_path / "store.db", sweep_interval=0)
    yield driver
    await driver.dispose()


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        await asyncio.sleep(0)
        yield part


async def _failing(*parts: bytes) -> AsyncIterator[bytes]:
    async for part in _chunks(*parts):
        yield part
    raise StreamAbortedError("the writer's block failed")


async def _read(chunks: AsyncIterator[bytes] | None) -> bytes:
    assert chunks is not None
    return b"".join([chunk async for chunk in chunks])


def _spools(directory: Path) -> list[str]:
    """This process's open files in ``directory`` (anonymous ones included) but the database's."""
    database = ("store.db", "store.db-wal", "store.db-shm")
    return [
        name for name in open_files_under(directory) if not name.split(" ")[0].endswith(database)
    ]


async def test_a_streamed_value_is_one_blob_in_the_row(db: SqliteDriver) -> None:
    etag = await db.write_chunks("blob", _chunks(b"abc" * 1000, b"", b"def" * 1000))
    with sqlite3.connect(db.path) as conn:
        value, version, kind = conn.execute(
            "SELECT value, version, typeof(value) FROM unistorage WHERE key = 'blob'"
        ).fetchone()
    assert (value, str(version), kind) == (b"abc" * 1000 + b"def" * 1000, etag, "blob")


@pytest.mark.skipif(not PROC, reason="needs /proc (Linux)")
async def test_the_spool_lives_beside_the_database_until_the_stream_ends(
    tmp_path: Path, db: SqliteDriver
) -> None:
    await db.set_item("warm", b"v")
    seen: list[list[str]] = []

    async def chunks() -> AsyncIterator[bytes]:
        yield b"x" * 1000
        await asyncio.sleep(0.05)  # the spool job has run
        seen.append(_spools(tmp_path))
        yield b"y" * 1000

    await db.write_chunks("blob", chunks())
    assert len(seen[0]) == 1
    assert "(deleted)" in seen[0][0] or "#" in seen[0][0]  # anonymous: no name on the disk
    assert _spools(tmp_path) == []
    assert sorted(os.listdir(tmp_path)) == ["store.db", "store.db-shm", "store.db-wal"]


@pytest.mark.skipif(not PROC, reason="needs /proc (Linux)")
async def test_a_failed_stream_drops_its_spool(tmp_path: Path, db: SqliteDriver) -> None:
    await db.set_item("blob", b"old")
    with pytest.raises(StreamAbortedError):
        await db.write_chunks("blob", _failing(b"partial" * 1000, b"more" * 1000))
    with pytest.raises(StreamAbortedError):
        await db.write_chunks("new", _failing(b"partial"))
    assert _spools(tmp_path) == []


async def test_a_writer_cancelled_while_its_jobs_queue_up_leaves_the_old_value_or_the_new_one(
    db: SqliteDriver,
) -> None:
    new = os.urandom(2 * MB)
    parts = [new[start : start + 256 * 1024] for start in range(0, len(new), 256 * 1024)]
    busy = True

    async def keep_the_writer_busy() -> None:  # so jobs queue up behind one another
        while busy:
            await asyncio.gather(*(db.set_item(f"other:{i}", b"v" * 1000) for i in range(50)))

    load = asyncio.ensure_future(keep_the_writer_busy())
    try:
        for attempt in range(40):
            await db.set_item("blob", b"old")
            task = asyncio.ensure_future(db.write_chunks("blob", _chunks(*parts)))
            await asyncio.sleep(attempt * 0.001)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            stored = await db.get_item("blob")
            assert stored in (b"old", new)  # never a blob of zeros, never a part
    finally:
        busy = False
        await load
    if PROC:
        assert _spools(Path(db.path).parent) == []


async def test_a_value_removed_as_its_stream_opens_is_a_conflict(db: SqliteDriver) -> None:
    await db.set_item("blob", b"v" * 1000)
    chunks = await db.read_chunks("blob", 100)
    await db.remove_item("blob")
    with pytest.raises(ConflictError):
        await _read(chunks)


async def test_a_stream_closed_early_lets_the_database_checkpoint(db: SqliteDriver) -> None:
    await db.set_item("blob", b"v" * 100_000)
    chunks = await db.read_chunks("blob", 1000)
    assert chunks is not None
    await anext(chunks)
    await db.set_item("other", b"w")
    with sqlite3.connect(db.path, timeout=0) as conn:
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    assert busy == 1  # the stream's snapshot holds the WAL
    await chunks.aclose()  # type: ignore[attr-defined]
    with sqlite3.connect(db.path, timeout=0) as conn:
        assert conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone() == (0, 0, 0)


async def test_a_stream_of_a_disposed_driver_fails_cleanly(db: SqliteDriver) -> None:
    await db.set_item("blob", b"v" * 10_000)
    chunks = await db.read_chunks("blob", 1000)
    assert chunks is not None
    await anext(chunks)
    await db.dispose()
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        await anext(chunks)
    assert await db.get_item("blob") == b"v" * 10_000  # a disposed driver opens again


async def test_without_blob_io_streams_are_stored_and_read_whole(tmp_path: Path) -> None:
    """The path for Python 3.10, which has no ``Connection.blobopen``."""
    path = str(tmp_path / "old.db")
    engine = SqliteEngine(
        path, setup=lambda conn: check_table(conn, path=path, table="t", read_only=False)
    )
    streams = Streams("t", busy_timeout=1.0, blobs=False)
    try:
        etag = await streams.write(engine, "k", _chunks(b"a" * 3000, b"b" * 3000), None)
        with sqlite3.connect(path) as conn:
            row = conn.execute("SELECT value, version FROM t WHERE key = 'k'").fetchone()
        assert row == (b"a" * 3000 + b"b" * 3000, int(etag))
        chunks = await streams.read(engine, "k", 4000)
        assert chunks is not None
        assert [len(chunk) async for chunk in chunks] == [4000, 2000]
        assert await streams.read(engine, "missing", 4000) is None
        with pytest.raises(StreamAbortedError):
            await streams.write(engine, "k", _failing(b"c" * 3000), None)
        assert await _read(await streams.read(engine, "k", 10_000)) == row[0]
    finally:
        await engine.close()


async def test_a_database_that_cannot_store_the_stream_fails_with_a_driver_error(
    tmp_path: Path,
) -> None:
    path = tmp_path / "small.db"
    driver = SqliteDriver(path, sweep_interval=0)
    storage = create_storage(driver)
    try:
        await storage.set_item("warm", 1)
        with sqlite3.connect(path) as conn:  # the file may not grow past what it holds now
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
        full = f"PRAGMA max_page_count = {pages}"  # per connection: on each one that writes
        await driver._engine.call(lambda conn, _: conn.execute(full))
        if (reader := driver._engine._reader()) is not None:
            reader.execute(full)
        with pytest.raises(DriverError, match="full"):
            async with storage.open_write("blob") as writer:
                await writer.write(b"x" * MB)
        assert await storage.has_item("blob") is False
        assert await storage.get_item("warm") == 1
    finally:
        await driver.dispose()
