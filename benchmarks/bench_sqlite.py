"""Storage + sqlite driver against aiosqlite (a commit per write), diskcache, and one raw
``executemany`` transaction, all on WAL databases in a temporary directory; then the native
increment against raw read-and-update transactions and the compare-and-set default, and
streams against a raw sqlite3 insert and select of the whole value. Every case runs its
subjects in alternating rounds, each round on a fresh database file.

Goal (issue 16): sequential at least 2x aiosqlite.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Awaitable, Callable

import aiosqlite
import diskcache

from drivers.sqlite import SqliteDriver
from storage import ConflictError, create_storage
from storage.atomic import cas_increment

from . import workload
from .harness import Bench, Body, Subject
from .workload import BATCH, BATCHES, SEQ, VALUE

SEQUENTIAL = 5000
WRITERS = 100
CONCURRENT = 20_000
ROUNDS = 10
INCREMENTS = 5000
INCREMENTERS = 100
STREAMED_MB = 64
MB = 1024 * 1024
STREAM_CHUNK = 256 * 1024
INCR = f"increments of one key, {INCREMENTERS} tasks"
STREAM_IN = "stream a value in (MB)"
STREAM_OUT = "stream a value out (MB)"
CONC = f"{WRITERS} concurrent writer tasks"
SCHEMA = "CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB)"
UPSERT = "INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"


class _Files:
    """A fresh database path per measured run."""

    def __init__(self) -> None:
        self.root = tempfile.mkdtemp(prefix="bench-sqlite-")
        self.count = 0

    def fresh(self) -> str:
        self.count += 1
        return os.path.join(self.root, f"db{self.count}.sqlite")


def _aiosqlite(files: _Files, n: int, total: int) -> tuple[Body, Body]:
    async def open_db() -> aiosqlite.Connection:
        db = await aiosqlite.connect(files.fresh())
        await db.execute("PRAGMA journal_mode = WAL")
        await db.execute("PRAGMA synchronous = NORMAL")
        await db.execute(SCHEMA)
        return db

    async def sequential() -> int:
        db = await open_db()
        try:
            for i in range(n):
                await db.execute(UPSERT, (f"user:{i}", json.dumps(VALUE).encode()))
                await db.commit()
                async with db.execute(
                    "SELECT value FROM kv WHERE key = ?", (f"user:{i}",)
                ) as cursor:
                    row = await cursor.fetchone()
                    json.loads(row[0] if row else b"null")
        finally:
            await db.close()
        return n * 2

    async def concurrent() -> int:
        db = await open_db()
        try:
            lock = asyncio.Lock()  # aiosqlite shares one connection: commits must not interleave

            async def writer(w: int) -> None:
                for i in range(total // WRITERS):
                    async with lock:
                        await db.execute(UPSERT, (f"w{w}:{i}", json.dumps(VALUE).encode()))
                        await db.commit()

            await asyncio.gather(*(writer(w) for w in range(WRITERS)))
        finally:
            await db.close()
        return total

    return sequential, concurrent


def _diskcache(files: _Files, total: int) -> Body:
    async def sequential() -> int:
        with diskcache.Cache(files.fresh()) as cache:
            for i in range(total):
                cache.set(f"w:{i}", json.dumps(VALUE).encode())
        return total

    return sequential


def _executemany(files: _Files, rounds: int) -> Body:
    async def batches() -> int:
        db = sqlite3.connect(files.fresh(), isolation_level=None)
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute(SCHEMA)
        marks = ", ".join("?" * len(BATCH))
        for _ in range(rounds):
            db.execute("BEGIN")
            db.executemany(UPSERT, [(key, json.dumps(VALUE).encode()) for key in BATCH])
            db.execute("COMMIT")
            rows = db.execute(f"SELECT key, value FROM kv WHERE key IN ({marks})", BATCH).fetchall()
            [json.loads(value) for _, value in rows]
        db.close()
        return rounds * 2000

    return batches


def _unistorage(files: _Files, n: int, total: int, rounds: int) -> tuple[Body, Body, Body]:
    async def sequential() -> int:
        async with create_storage(SqliteDriver(files.fresh())) as storage:
            return await workload.sequential(storage, n)

    async def concurrent() -> int:
        async with create_storage(SqliteDriver(files.fresh())) as storage:

            async def writer(w: int) -> None:
                for i in range(total // WRITERS):
                    await storage.set_item(f"w{w}:{i}", VALUE)

            await asyncio.gather(*(writer(w) for w in range(WRITERS)))
        return total

    async def batches() -> int:
        async with create_storage(SqliteDriver(files.fresh())) as storage:
            return await workload.batches(storage, rounds)

    return sequential, concurrent, batches


async def _increments(bench: Bench, files: _Files, total: int) -> None:
    """One counter: a raw read-and-update transaction per increment (what a caller writes by
    hand, sequential), the driver's native increment and the compare-and-set default, each
    from concurrent tasks."""

    async def raw() -> int:
        db = sqlite3.connect(files.fresh(), isolation_level=None)
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute(SCHEMA)
        for _ in range(total):
            db.execute("BEGIN IMMEDIATE")
            row = db.execute("SELECT value FROM kv WHERE key = 'n'").fetchone()
            db.execute(UPSERT, ("n", str(int(row[0] if row else 0) + 1).encode()))
            db.execute("COMMIT")
        db.close()
        return total

    async def tasks(add: Callable[[], Awaitable[int]]) -> int:
        async def task() -> None:
            for _ in range(total // INCREMENTERS):
                while True:
                    try:
                        await add()
                        break
                    except ConflictError:  # the CAS loop gave up: a caller tries again
                        continue

        await asyncio.gather(*(task() for _ in range(INCREMENTERS)))
        return total // INCREMENTERS * INCREMENTERS

    async def native() -> int:
        async with create_storage(SqliteDriver(files.fresh())) as storage:
            return await tasks(lambda: storage.increment("n"))

    async def by_cas() -> int:
        driver = SqliteDriver(files.fresh())
        try:
            return await tasks(lambda: cas_increment(driver, "n", 1, None))
        finally:
            await driver.dispose()

    await bench.rounds(
        INCR,
        [
            Subject("sqlite3 transaction per increment", raw, floor=True),
            Subject("unistorage sqlite increment", native, ours=True),
            Subject("compare-and-set loop (the default)", by_cas),
        ],
        rounds=5,
    )


async def _streams(bench: Bench, files: _Files, megabytes: int) -> None:
    """A value of ``megabytes`` MB: raw sqlite3 inserts and selects it whole (memory holds it
    all); Storage streams it in and out in chunks (memory flat)."""
    value = os.urandom(megabytes * MB)
    raw_path, ours_path = files.fresh(), files.fresh()
    raw_db = sqlite3.connect(raw_path, isolation_level=None)
    raw_db.execute("PRAGMA journal_mode = WAL")
    raw_db.execute("PRAGMA synchronous = NORMAL")
    raw_db.execute(SCHEMA)
    storage = create_storage(SqliteDriver(ours_path))

    async def raw_in() -> int:
        raw_db.execute(UPSERT, ("big", value))
        return megabytes

    async def raw_out() -> int:
        raw_db.execute("SELECT value FROM kv WHERE key = 'big'").fetchone()
        return megabytes

    async def ours_in() -> int:
        async with storage.open_write("big") as writer:
            for start in range(0, len(value), STREAM_CHUNK):
                await writer.write(value[start : start + STREAM_CHUNK])
        return megabytes

    async def ours_out() -> int:
        async with storage.open_read("big", chunk_size=STREAM_CHUNK) as reader:
            async for _ in reader:
                pass
        return megabytes

    try:
        await bench.rounds(
            STREAM_IN,
            [
                Subject("sqlite3 insert of the whole value", raw_in, floor=True, unit="MB"),
                Subject("unistorage sqlite open_write", ours_in, ours=True, unit="MB"),
            ],
            rounds=5,
        )
        await bench.rounds(
            STREAM_OUT,
            [
                Subject("sqlite3 select of the whole value", raw_out, floor=True, unit="MB"),
                Subject("unistorage sqlite open_read", ours_out, ours=True, unit="MB"),
            ],
            rounds=5,
        )
    finally:
        raw_db.close()
        await storage.dispose()


async def run(bench: Bench) -> None:
    files = _Files()
    n, total, rounds = bench.n(SEQUENTIAL), bench.n(CONCURRENT), bench.n(ROUNDS)
    try:
        aio_sequential, aio_concurrent = _aiosqlite(files, n, total)
        ours_sequential, ours_concurrent, ours_batches = _unistorage(files, n, total, rounds)
        await bench.rounds(
            SEQ,
            [
                Subject("aiosqlite, commit per write", aio_sequential, floor=True),
                Subject("unistorage sqlite", ours_sequential, ours=True),
            ],
        )
        await bench.rounds(
            CONC,
            [
                Subject("diskcache set (sequential, sync)", _diskcache(files, total), floor=True),
                Subject("unistorage sqlite (group commit)", ours_concurrent, ours=True),
                Subject("aiosqlite, commit per write", aio_concurrent),
            ],
            rounds=5,
        )
        await bench.rounds(
            BATCHES,
            [
                Subject("sqlite3 executemany transaction", _executemany(files, rounds), floor=True),
                Subject("unistorage sqlite", ours_batches, ours=True),
            ],
        )
        await _increments(bench, files, bench.n(INCREMENTS))
        await _streams(bench, files, bench.n(STREAMED_MB))
    finally:
        shutil.rmtree(files.root, ignore_errors=True)
