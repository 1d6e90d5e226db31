"""Storage + sqlite driver against aiosqlite (a commit per write), diskcache, and one raw
``executemany`` transaction, all on WAL databases in a temporary directory."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import tempfile

import aiosqlite
import diskcache

from drivers.sqlite import SqliteDriver
from storage import create_storage

from . import workload
from .harness import Bench
from .workload import BATCH, BATCHES, SEQ, VALUE

SEQUENTIAL = 5000
WRITERS = 100
CONCURRENT = 20_000
ROUNDS = 10
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


async def _aiosqlite(bench: Bench, files: _Files, n: int, total: int) -> None:
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

    await bench.measure(SEQ, "aiosqlite, commit per write", sequential, floor=True)
    await bench.measure(CONC, "aiosqlite, commit per write", concurrent)


def _diskcache(bench: Bench, files: _Files, total: int) -> None:
    def sequential() -> int:
        with diskcache.Cache(files.fresh()) as cache:
            for i in range(total):
                cache.set(f"w:{i}", json.dumps(VALUE).encode())
        return total

    bench.measure_sync(CONC, "diskcache set (sequential, sync)", sequential, floor=True)


def _executemany(bench: Bench, files: _Files, rounds: int) -> None:
    def batches() -> int:
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

    bench.measure_sync(BATCHES, "sqlite3 executemany transaction", batches, floor=True)


async def _unistorage(bench: Bench, files: _Files, n: int, total: int, rounds: int) -> None:
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

    await bench.measure(SEQ, "unistorage sqlite", sequential, ours=True)
    await bench.measure(CONC, "unistorage sqlite (group commit)", concurrent, ours=True)
    await bench.measure(BATCHES, "unistorage sqlite", batches, ours=True)


async def run(bench: Bench) -> None:
    files = _Files()
    n, total, rounds = bench.n(SEQUENTIAL), bench.n(CONCURRENT), bench.n(ROUNDS)
    try:
        await _aiosqlite(bench, files, n, total)
        _diskcache(bench, files, total)
        _executemany(bench, files, rounds)
        await _unistorage(bench, files, n, total, rounds)
    finally:
        shutil.rmtree(files.root, ignore_errors=True)
