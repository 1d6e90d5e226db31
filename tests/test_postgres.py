"""The postgres driver against a real PostgreSQL: what the table looks like, what each call
sends, foreign tables, a killed, restarted and frozen server, a bounded pool, and two other
processes writing and watching. The conformance suite covers the rest (tests/fixtures)."""

from __future__ import annotations

import asyncio
import contextlib
import select
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest

from drivers.postgres import PostgresDriver
from storage import (
    ConflictError,
    DriverError,
    InvalidArgumentError,
    create_storage,
)
from tests.fixtures.postgres import drop_table
from tests.servers_postgres import PostgresServer

ROOT = Path(__file__).resolve().parent.parent
_RUN_CHILD = (
    "import asyncio, sys; from tests.test_postgres import _child; "
    "asyncio.run(_child(*sys.argv[1:]))"
)
LONG = "long:" + "x" * 9000  # past the 8000-byte NOTIFY payload


@pytest.fixture
async def table(postgres_server: PostgresServer) -> AsyncIterator[str]:
    """A table name of this test's own, dropped afterwards."""
    name = f"p{uuid.uuid4().hex[:12]}"
    yield name
    await drop_table(postgres_server.url, name)


@pytest.fixture
async def raw(postgres_server: PostgresServer) -> AsyncIterator[asyncpg.Connection]:
    """A plain asyncpg connection to the session's server: another client."""
    connection = await asyncpg.connect(postgres_server.url)
    yield connection
    await connection.close()


@pytest.fixture
def own_server() -> Iterator[PostgresServer]:
    """A server of this test alone, to kill, freeze and restart."""
    server = PostgresServer().start()
    yield server
    server.close()


async def _eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    assert check()


# -- the table ----------------------------------------------------------------------------


async def test_url_options_reach_the_driver_and_the_rest_goes_to_asyncpg(
    postgres_server: PostgresServer, table: str
) -> None:
    url = postgres_server.url.replace("postgresql://", "postgres://")
    query = f"table={table}&max_connections=3&pool_timeout=1.5&command_timeout=4&sslmode=disable"
    async with create_storage(f"{url}?{query}") as storage:
        driver = storage.get_mount("").driver
        assert isinstance(driver, PostgresDriver)
        assert (driver.table, driver.max_connections, driver.pool_timeout) == (table, 3, 1.5)
        assert driver.command_timeout == 4
        assert driver.url.endswith("?sslmode=disable")
        await storage.set_item("k", {"v": 1})
        assert await storage.get_item("k") == {"v": 1}
        await driver.dispose()
        assert await storage.get_item("k") == {"v": 1}  # a disposed driver opens a fresh pool
    with pytest.raises(InvalidArgumentError):
        PostgresDriver(postgres_server.url, table='kv"; DROP TABLE x; --')


async def test_the_table_orders_bytes_and_lists_by_an_index_range(
    postgres_server: PostgresServer, table: str, raw: asyncpg.Connection
) -> None:
    async with create_storage(PostgresDriver(postgres_server.url, table=table)) as storage:
        keys = ["a:%", "a:_x", "a:b", "a:é", "a:'q", "a;", "a", "b:a", "a:b:c"]
        await storage.set_items(dict.fromkeys(keys, 1))
        assert await storage.get_keys("a") == ["a:%", "a:'q", "a:_x", "a:b", "a:b:c", "a:é"]
        assert await storage.get_keys("a:%") == []
        assert await storage.get_keys("a", max_depth=0) == ["a:%", "a:'q", "a:_x", "a:b", "a:é"]
    collation = await raw.fetchval(
        "SELECT collation_name FROM information_schema.columns "
        "WHERE table_name = $1 AND column_name = 'key'",
        table,
    )
    assert collation == "C"
    sql, args = PostgresDriver(postgres_server.url, table=table)._sql.listing("a:", limit=10)
    assert "LIKE" not in sql
    async with raw.transaction():
        await raw.execute("SET LOCAL enable_seqscan = off")
        plan = "\n".join(row[0] for row in await raw.fetch(f"EXPLAIN {sql}", *args))
    assert "Index" in plan, plan
    assert "key >= " in plan, plan
    assert "key < " in plan, plan


@pytest.mark.parametrize(
    ("create", "message"),
    [
        ("CREATE TABLE {t} (key text PRIMARY KEY, data jsonb)", "is not a unistorage table"),
        ("CREATE VIEW {t} AS SELECT 1 AS key", "is not a plain table"),
        (
            'CREATE TABLE {t} (key text COLLATE "C" PRIMARY KEY, value bytea NOT NULL, '
            "expires timestamptz, mtime timestamptz NOT NULL, version bigint NOT NULL); "
            "COMMENT ON TABLE {t} IS 'unistorage key-value table, schema 2'",
            "schema 2",
        ),
    ],
)
async def test_a_foreign_table_of_the_same_name_is_refused_clearly(
    postgres_server: PostgresServer, table: str, raw: asyncpg.Connection, create: str, message: str
) -> None:
    await raw.execute(create.format(t=f'"{table}"'))
    async with create_storage(PostgresDriver(postgres_server.url, table=table)) as storage:
        with pytest.raises(DriverError, match=message) as caught:
            await storage.get_item("k")
        assert table in str(caught.value)
        with pytest.raises(DriverError, match=message):
            await storage.set_item("k", 1)  # refused every time, not just the first
    with contextlib.suppress(asyncpg.PostgresError):
        await raw.execute(f'DROP VIEW IF EXISTS "{table}"')


# -- what each call sends -----------------------------------------------------------------


async def test_batches_and_atomic_operations_are_one_statement_each(
    postgres_server: PostgresServer, table: str
) -> None:
    driver = PostgresDriver(postgres_server.url, table=table, max_connections=1)
    sent: list[str] = []
    items = {f"k:{n:04d}": n for n in range(1000)}
    async with create_storage(driver) as storage:
        calls: list[Callable[[], Awaitable[object]]] = [
            lambda: storage.set_items(items, ttl=60),
            lambda: storage.get_items(list(items)),
            lambda: storage.remove_items(list(items)[:500]),
            lambda: storage.increment("n", 5, ttl=10),
            lambda: storage.set_item("c", 1, if_none_match=True),
            lambda: storage.set_item("c", 2, if_match="*"),
            lambda: storage.remove_item("c", if_match="*"),
            lambda: storage.touch("n", 30),
            lambda: storage.get_item("n", renew_ttl=30),
            lambda: storage.list_keys("k", limit=100),
            lambda: storage.clear("k"),
        ]
        for call in calls:  # asyncpg learns the array types once per connection
            await call()
        (connection,) = driver._pool._idle
        connection.add_query_logger(lambda record: sent.append(record.query))
        for call in calls:
            before = len(sent)
            await call()
            await asyncio.sleep(0.01)  # asyncpg calls its query loggers soon after
            assert len(sent) == before + 1, sent[before:]
    assert not any("LIKE" in query for query in sent)


async def test_etags_are_the_rows_version_and_touch_keeps_them(
    driver_postgres: PostgresDriver, raw: asyncpg.Connection
) -> None:
    etag = await driver_postgres.set_item("k", b"v", ttl=10)
    meta = await driver_postgres.get_meta("k")
    version = await raw.fetchval(f'SELECT version FROM "{driver_postgres.table}"')
    assert meta["etag"] == etag == str(version)
    assert await driver_postgres.touch("k", 100) is True
    renewed = await driver_postgres.get_meta("k")
    assert (renewed["etag"], renewed["mtime"]) == (etag, meta["mtime"])
    assert renewed["ttl"] > 90
    assert await driver_postgres.get_item_touch("k", 200) == b"v"
    assert (await driver_postgres.get_meta("k"))["ttl"] > 190
    for stale in (etag + "0", "not-a-number", str(2**70), " " + etag):
        with pytest.raises(ConflictError):
            await driver_postgres.set_item_conditional("k", b"w", if_match=stale)
    assert await driver_postgres.get_item("k") == b"v"


@pytest.mark.parametrize("stored", [b"five", b"+5", b"05", b"5.0", b'"5"', b"", b"\xff1"])
async def test_increment_refuses_anything_but_json_integer_text(
    driver_postgres: PostgresDriver, stored: bytes
) -> None:
    await driver_postgres.set_item("n", stored)
    with pytest.raises(InvalidArgumentError, match="'n'"):
        await driver_postgres.increment("n", 1)
    assert await driver_postgres.get_item("n") == stored


async def test_increment_counts_in_64_bits_and_gives_a_ttl_only_on_creation(
    driver_postgres: PostgresDriver,
) -> None:
    await driver_postgres.set_item("n", b" 7\n")
    assert await driver_postgres.increment("n", 1, ttl=50) == 8
    assert "ttl" not in await driver_postgres.get_meta("n")
    await driver_postgres.set_item("big", str(2**63 - 1).encode())
    with pytest.raises(InvalidArgumentError, match="64-bit"):
        await driver_postgres.increment("big", 1)
    with pytest.raises(InvalidArgumentError):
        await driver_postgres.increment("n", 2**63)
    await driver_postgres.set_item("gone", b"40", ttl=0.2)
    await asyncio.sleep(0.4)
    assert await driver_postgres.increment("gone", 2, ttl=50) == 2
    assert (await driver_postgres.get_meta("gone"))["ttl"] > 40


async def test_the_sweeper_deletes_expired_rows(
    driver_postgres: PostgresDriver, raw: asyncpg.Connection
) -> None:
    await driver_postgres.set_items([("a", b"1"), ("b", b"2")], ttl=0.2)
    await driver_postgres.set_item("keep", b"3")
    count = f'SELECT count(*) FROM "{driver_postgres.table}"'
    assert await raw.fetchval(count) == 3
    for _ in range(100):  # the fixture's driver sweeps every 0.5 s
        if await raw.fetchval(count) == 1:
            break
        await asyncio.sleep(0.05)
    assert await raw.fetchval(count) == 1


# -- failures and the pool ----------------------------------------------------------------


async def test_a_killed_server_gives_driver_errors_quickly_and_recovery_follows(
    own_server: PostgresServer,
) -> None:
    driver = PostgresDriver(own_server.url, connect_timeout=1, command_timeout=2)
    events: list[tuple[str, str]] = []
    async with create_storage(driver) as storage:
        await storage.set_item("k", 1)
        await storage.watch(lambda event, key: events.append((event, key)))
        own_server.kill()
        for call in (storage.get_item("k"), storage.set_items({"a": 1}), storage.get_keys()):
            with pytest.raises(DriverError) as caught:
                await asyncio.wait_for(call, timeout=10)  # an error, never a hang
            assert caught.value.driver == "postgres"
        own_server.start()
        assert await storage.get_item("k") == 1  # acknowledged before the kill: kept
        await storage.set_item("k", 2)
        assert await storage.get_keys() == ["k"]
        for _ in range(100):  # the listener reconnects by itself; writes after that are heard
            await storage.set_item("again", 1)
            if ("update", "again") in events:
                break
            await asyncio.sleep(0.1)
        assert ("update", "again") in events


async def test_a_frozen_server_gives_a_driver_error_instead_of_a_hang(
    own_server: PostgresServer,
) -> None:
    driver = PostgresDriver(own_server.url, connect_timeout=0.5, command_timeout=0.5)
    async with create_storage(driver) as storage:
        await storage.set_item("k", 1)
        own_server.freeze()
        try:
            with pytest.raises(DriverError):
                await asyncio.wait_for(storage.get_item("k"), timeout=10)
        finally:
            own_server.thaw()
        assert await storage.get_item("k") == 1


async def test_the_pool_is_bounded_waits_and_gives_up_after_pool_timeout(
    postgres_server: PostgresServer, table: str
) -> None:
    driver = PostgresDriver(postgres_server.url, table=table, max_connections=2, pool_timeout=0.3)
    async with create_storage(driver) as storage:
        await asyncio.gather(*(storage.set_item(f"k{n}", n) for n in range(100)))
        assert driver._pool._size == 2
        held = [await driver._pool.acquire(), await driver._pool.acquire()]
        with pytest.raises(DriverError, match="max_connections=2"):
            await storage.get_item("k1")
        waiting = asyncio.ensure_future(storage.get_item("k1"))
        await asyncio.sleep(0.05)
        driver._pool.release(held.pop())
        assert await waiting == 1
        driver._pool.release(held.pop())
        assert driver._pool._size == 2


# -- other processes ----------------------------------------------------------------------


async def _child(url: str, table: str, mode: str, name: str) -> None:
    """In a child process: say "ready", wait for "go", do ``mode``'s work, say "done".

    ``write``: 20 tasks each increment "hits" 25 times, append 5 items to the list "log" by
    compare-and-set, and write 50 keys of their own. ``notify``: set and remove "w:a" and
    `LONG`, touch nothing else.
    """
    async with create_storage(PostgresDriver(url, table=table)) as storage:
        await storage.has_item("warm")
        print("ready", flush=True)
        if (await asyncio.to_thread(sys.stdin.readline)).strip() != "go":
            return

        async def append(item: str) -> None:
            while True:
                log, etag = await storage.get_item_with_etag("log")
                try:
                    if etag is None:
                        await storage.set_item("log", [item], if_none_match=True)
                    else:
                        await storage.set_item("log", [*log, item], if_match=etag)
                    return
                except ConflictError:
                    await asyncio.sleep(0)

        async def work(task: int) -> None:
            for _ in range(25):
                await storage.increment("hits")
            for n in range(5):
                await append(f"{name}:{task}:{n}")
            await storage.set_items({f"{name}:{task}:{n}": n for n in range(50)})

        if mode == "write":
            await asyncio.gather(*(work(task) for task in range(20)))
        else:
            for key in ("w:a", LONG):
                await storage.set_item(key, 1)
                await storage.touch(key, 60)
                await storage.remove_item(key)
        print("done", flush=True)


def _spawn(url: str, table: str, mode: str, name: str) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", _RUN_CHILD, url, table, mode, name],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert select.select([child.stdout], [], [], 60)[0], "the child said nothing"
    assert child.stdout.readline().strip() == "ready"
    return child


def _go(children: list[subprocess.Popen[str]]) -> list[str]:
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    said = [child.communicate(timeout=120)[0].strip() for child in children]
    assert [child.returncode for child in children] == [0] * len(children)
    return said


async def test_two_processes_writing_at_once_lose_nothing(
    postgres_server: PostgresServer, table: str
) -> None:
    async with create_storage(PostgresDriver(postgres_server.url, table=table)) as storage:
        await storage.has_item("created")  # the table exists before the children race
        children = [_spawn(postgres_server.url, table, "write", name) for name in "ab"]
        assert await asyncio.to_thread(_go, children) == ["done", "done"]
        assert await storage.get_item("hits") == 2 * 20 * 25
        log = await storage.get_item("log")
        expected = {f"{name}:{task}:{n}" for name in "ab" for task in range(20) for n in range(5)}
        assert sorted(log) == sorted(expected)
        assert len(await storage.get_keys("a")) == len(await storage.get_keys("b")) == 20 * 50


async def test_watch_hears_another_process_and_long_keys(
    postgres_server: PostgresServer, table: str, raw: asyncpg.Connection
) -> None:
    events: list[tuple[str, str]] = []
    async with create_storage(PostgresDriver(postgres_server.url, table=table)) as storage:
        await storage.watch(lambda event, key: events.append((event, key)))
        child = _spawn(postgres_server.url, table, "notify", "-")
        assert await asyncio.to_thread(_go, [child]) == ["done"]
        await raw.execute(f"""INSERT INTO "{table}" VALUES ('psql', '1', NULL, now(), 1)""")
        wanted = [(event, key) for key in ("w:a", LONG) for event in ("update", "remove")]
        await _eventually(lambda: ("update", "psql") in events)
        assert events[:4] == wanted  # in order; a touch is no change
        await storage.unwatch()
