"""PostgreSQL: the postgres driver against raw asyncpg running the same statements (the floor),
asyncpg's own pool, and py-key-value-aio's PostgreSQLStore, in alternating rounds.

The floor is one bare asyncpg connection sending the driver's own SQL (its upsert and its
select; unnest in and ANY out for batches: no executemany, no COPY) and serializing with
orjson, as the core does: what the driver adds over the wire protocol is all that is measured.

Starts its own PostgreSQL (tests/servers_postgres.py) on a free port and removes it after.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import orjson

from drivers._postgres_schema import Statements
from drivers.postgres import PostgresDriver
from storage import create_storage
from tests.servers_postgres import PostgresServer

from . import workload
from .harness import Bench, Subject
from .workload import BATCH, BATCHES, SEQ, VALUE

SEQUENTIAL = 200
BATCH_ROUNDS = 10
ROUNDS = 41

Body = Callable[[], Awaitable[int]]


def _raw_sequential(
    run: Callable[..., Awaitable[Any]],
    fetch: Callable[..., Awaitable[Any]],
    sql: Statements,
    n: int,
) -> Body:
    async def body() -> int:
        for i in range(n):
            key = f"user:{i}"
            await run(sql.put, key, orjson.dumps(VALUE), None, random.getrandbits(62))
            orjson.loads(await fetch(sql.get, key) or b"null")
        return n * 2

    return body


def _raw_batches(connection: asyncpg.Connection, sql: Statements, rounds: int) -> Body:
    async def body() -> int:
        for _ in range(rounds):
            values = [orjson.dumps(VALUE) for _ in BATCH]
            await connection.execute(sql.put_many, BATCH, values, None)
            rows = await connection.fetch(sql.get_many, BATCH)
            found = {row[0]: orjson.loads(row[1]) for row in rows}
            [found.get(key) for key in BATCH]
        return rounds * 2000

    return body


async def _py_key_value(
    url: str, n: int, rounds: int
) -> tuple[Body, Body, Callable[[], Awaitable[None]]]:
    from key_value.aio.stores.postgresql import PostgreSQLStore

    store = PostgreSQLStore(url=url, table_name="pkv", default_collection="pkv")
    await store.setup()

    async def sequential() -> int:
        for i in range(n):
            await store.put(f"user:{i}", VALUE)
            await store.get(f"user:{i}")
        return n * 2

    async def batches() -> int:
        values = [VALUE] * len(BATCH)
        for _ in range(rounds):
            await store.put_many(BATCH, values)
            await store.get_many(BATCH)
        return rounds * 2000

    return sequential, batches, store.close


async def run(bench: Bench) -> None:
    n, rounds = bench.n(SEQUENTIAL), bench.n(BATCH_ROUNDS)
    server = PostgresServer().start()
    try:
        storage = create_storage(PostgresDriver(server.url, table="ours"))
        await storage.has_item("created")
        raw_driver = PostgresDriver(server.url, table="raw")
        await raw_driver.has_item("created")  # the same table, created the driver's way
        await raw_driver.dispose()
        sql = Statements("raw")
        connection = await asyncpg.connect(server.url)
        pool = await asyncpg.create_pool(server.url, min_size=1, max_size=10)
        pkv_sequential, pkv_batches, pkv_close = await _py_key_value(server.url, n, rounds)

        async def ours_sequential() -> int:
            return await workload.sequential(storage, n)

        async def driver_sequential() -> int:
            driver = storage.get_mount("").driver
            for i in range(n):
                await driver.set_item(f"user:{i}", orjson.dumps(VALUE))
                orjson.loads(await driver.get_item(f"user:{i}") or b"null")
            return n * 2

        async def ours_batches() -> int:
            return await workload.batches(storage, rounds)

        await bench.rounds(
            SEQ,
            [
                Subject(
                    "raw asyncpg connection + orjson",
                    _raw_sequential(connection.execute, connection.fetchval, sql, n),
                    floor=True,
                ),
                Subject("unistorage postgres", ours_sequential, ours=True),
                Subject("postgres driver alone + orjson", driver_sequential),
                Subject(
                    "raw asyncpg Pool + orjson",
                    _raw_sequential(pool.execute, pool.fetchval, sql, n),
                ),
                Subject("py-key-value-aio PostgreSQLStore", pkv_sequential),
            ],
            rounds=ROUNDS,
        )
        await bench.rounds(
            BATCHES,
            [
                Subject(
                    "raw asyncpg unnest/ANY + orjson",
                    _raw_batches(connection, sql, rounds),
                    floor=True,
                ),
                Subject("unistorage postgres", ours_batches, ours=True),
                Subject("py-key-value-aio PostgreSQLStore", pkv_batches),
            ],
            rounds=ROUNDS,
        )
        await pkv_close()
        await pool.close()
        await connection.close()
        await storage.dispose()
    finally:
        server.close()
