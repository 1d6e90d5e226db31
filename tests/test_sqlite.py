"""What is special about the sqlite driver: schema, group commit, key ranges, TTL purge."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from drivers.sqlite import SqliteDriver
from storage import ConflictError, DriverError, InvalidArgumentError, create_driver, create_storage


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[SqliteDriver]:
    driver = SqliteDriver(tmp_path / "store.db", sweep_interval=0)
    yield driver
    await driver.dispose()


def _rows(path: str, table: str = "unistorage") -> list[tuple[str, bytes]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(f"SELECT key, value FROM {table} ORDER BY key").fetchall()


async def test_one_table_in_wal_mode_holds_the_rows(db: SqliteDriver) -> None:
    await db.set_item("a:b", b"1")
    assert _rows(db.path) == [("a:b", b"1")]
    with sqlite3.connect(db.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_prefix_listing_is_an_exact_key_range(db: SqliteDriver) -> None:
    keys = ["a", "a:b", "a:c:d", "a;", "ab:x", "a%:y", "a_:z", "b", "a:日本", "a:" + "\uffff"]
    await db.set_items([(key, b"v") for key in keys])
    assert sorted(await db.get_keys("a:")) == ["a:b", "a:c:d", "a:日本", "a:\uffff"]
    assert sorted(await db.get_keys("a%:")) == ["a%:y"]
    assert sorted(await db.get_keys("a_:")) == ["a_:z"]
    assert [key async for key in db.iter_keys("a:")] == sorted(await db.get_keys("a:"))
    await db.clear("a:")
    assert sorted(await db.get_keys()) == sorted(["a", "a;", "ab:x", "a%:y", "a_:z", "b"])


async def test_iter_keys_pages_through_many_keys(db: SqliteDriver) -> None:
    await db.set_items([(f"p:{i:05d}", b"v") for i in range(2500)])
    keys = [key async for key in db.iter_keys("p:")]
    assert keys == [f"p:{i:05d}" for i in range(2500)]


async def test_concurrent_writers_share_transactions(db: SqliteDriver) -> None:
    await db.set_item("warm", b"v")
    before = db.commits
    await asyncio.gather(*(db.set_item(f"k:{i}", str(i).encode()) for i in range(200)))
    assert db.commits - before < 200
    assert len(_rows(db.path)) == 201


async def test_no_write_is_acknowledged_before_its_commit(db: SqliteDriver) -> None:
    async def write_then_look(i: int) -> None:
        await db.set_item(f"k:{i}", b"v")
        with sqlite3.connect(db.path) as other:
            row = other.execute(
                "SELECT value FROM unistorage WHERE key = ?", (f"k:{i}",)
            ).fetchone()
        assert row == (b"v",)

    await asyncio.gather(*(write_then_look(i) for i in range(50)))


async def test_a_conflict_in_a_shared_transaction_fails_only_its_own_write(
    db: SqliteDriver,
) -> None:
    await db.set_item("taken", b"old")
    results = await asyncio.gather(
        *(db.set_item(f"k:{i}", b"v") for i in range(20)),
        db.set_item_conditional("taken", b"new", if_none_match=True),
        *(db.set_item(f"j:{i}", b"v") for i in range(20)),
        return_exceptions=True,
    )
    assert [type(result) for result in results if result is not None] == [ConflictError]
    assert await db.get_item("taken") == b"old"
    assert len(await db.get_keys()) == 41


async def test_expired_rows_are_purged_on_access(db: SqliteDriver) -> None:
    await db.set_item("gone", b"v", ttl=0.2)
    await asyncio.sleep(0.3)
    assert await db.get_item("gone") is None
    await db.set_item("sync", b"v")  # the purge is queued before this write
    assert [key for key, _ in _rows(db.path)] == ["sync"]


async def test_the_sweep_deletes_rows_nobody_reads(tmp_path: Path) -> None:
    driver = SqliteDriver(tmp_path / "s.db", sweep_interval=0.2)
    try:
        await driver.set_items([(f"t:{i}", b"v") for i in range(5)], ttl=0.2)
        await driver.set_item("keep", b"v")
        for _ in range(40):
            await asyncio.sleep(0.1)
            if len(_rows(driver.path)) == 1:
                break
        assert [key for key, _ in _rows(driver.path)] == ["keep"]
    finally:
        await driver.dispose()


async def test_meta_comes_from_the_row(db: SqliteDriver) -> None:
    await db.set_item("k", b"12345", ttl=50)
    meta = await db.get_meta("k")
    assert meta["size"] == 5
    assert 40 < meta["ttl"] <= 50
    assert abs(meta["mtime"].timestamp() - time.time()) < 60
    await db.set_item("k", b"12345")
    assert (await db.get_meta("k"))["etag"] != meta["etag"]


async def test_watch_reports_this_drivers_changes(db: SqliteDriver) -> None:
    events: list[tuple[str, str]] = []
    unwatch = await db.watch(lambda event, key: events.append((event, key)))
    await db.set_item("a", b"1")
    await db.set_items([("b", b"1"), ("c", b"1")])
    await db.remove_item("a")
    await db.remove_item("never")
    await db.clear()
    assert events == [
        ("update", "a"),
        ("update", "b"),
        ("update", "c"),
        ("remove", "a"),
        ("remove", "b"),
        ("remove", "c"),
    ]
    await unwatch()


async def test_a_table_of_another_shape_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE unistorage (id INTEGER PRIMARY KEY, data TEXT)")
    driver = SqliteDriver(path)
    try:
        with pytest.raises(DriverError, match="not a unistorage table"):
            await driver.get_item("k")
        with pytest.raises(DriverError, match="not a unistorage table"):
            await create_storage(driver).set_item("k", 1)
    finally:
        await driver.dispose()


async def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are my notes, not a database" * 100)
    driver = SqliteDriver(path)
    try:
        with pytest.raises(DriverError, match="not a SQLite database"):
            await driver.set_item("k", b"v")
    finally:
        await driver.dispose()
    assert path.read_bytes().startswith(b"these are my notes")


async def test_a_table_name_is_an_option_and_must_be_an_identifier(tmp_path: Path) -> None:
    driver = SqliteDriver(tmp_path / "t.db", table="cache_v2", sweep_interval=0)
    try:
        await driver.set_item("k", b"v")
        assert _rows(driver.path, "cache_v2") == [("k", b"v")]
    finally:
        await driver.dispose()
    with pytest.raises(InvalidArgumentError):
        SqliteDriver(tmp_path / "t.db", table='x"; DROP TABLE y; --')


async def test_writes_wait_for_another_connections_lock(db: SqliteDriver) -> None:
    await db.set_item("k", b"1")
    locked = threading.Event()

    def hold_lock() -> None:
        with sqlite3.connect(db.path, isolation_level=None) as other:
            other.execute("BEGIN IMMEDIATE")
            locked.set()
            time.sleep(0.3)
            other.execute("COMMIT")

    holder = threading.Thread(target=hold_lock)
    holder.start()
    await asyncio.to_thread(locked.wait)
    await db.set_item("k", b"2")
    assert await db.get_item("k") == b"2"
    await asyncio.to_thread(holder.join)


async def test_reads_work_while_another_connection_writes(db: SqliteDriver) -> None:
    await db.set_item("k", b"1")
    with sqlite3.connect(db.path, isolation_level=None) as other:
        other.execute("BEGIN IMMEDIATE")
        other.execute("UPDATE unistorage SET value = x'32' WHERE key = 'k'")
        assert await db.get_item("k") == b"1"
        other.execute("COMMIT")
    assert await db.get_item("k") == b"2"


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///data/app.db", "data/app.db"),
        ("sqlite:////tmp/abs.db", "/tmp/abs.db"),
        ("sqlite://:memory:", ":memory:"),
        ("sqlite:///:memory:", ":memory:"),
    ],
)
def test_urls_name_the_file(url: str, path: str) -> None:
    driver = create_driver(url)
    assert isinstance(driver, SqliteDriver)
    assert driver.path == path


async def test_an_in_memory_database_works(tmp_path: Path) -> None:
    driver = create_driver("sqlite://:memory:?table=mem")
    try:
        await driver.set_item("k", b"v")
        assert await driver.get_item("k") == b"v"
        assert await driver.get_keys() == ["k"]
    finally:
        await driver.dispose()


async def test_a_write_the_database_rejects_fails_alone_in_its_group(db: SqliteDriver) -> None:
    bad: bytes = object()  # type: ignore[assignment]  # sqlite cannot bind it
    results = await asyncio.gather(
        *(db.set_item(f"k:{i}", b"v") for i in range(20)),
        db.set_item("bad", bad),
        *(db.set_items([(f"j:{i}", b"v"), (f"i:{i}", b"v")]) for i in range(10)),
        return_exceptions=True,
    )
    failures = [result for result in results if result is not None]
    assert len(failures) == 1
    assert isinstance(failures[0], sqlite3.Error)
    assert len(await db.get_keys()) == 40
    await db.set_item("after", b"ok")  # the worker is still serving
    assert await db.get_item("after") == b"ok"


async def test_many_connections_can_create_the_same_new_file_at_once(tmp_path: Path) -> None:
    drivers = [SqliteDriver(tmp_path / "new.db", sweep_interval=0) for _ in range(8)]
    try:
        await asyncio.gather(*(d.set_item(f"k{i}", b"v") for i, d in enumerate(drivers)))
        assert len(await drivers[0].get_keys()) == 8
    finally:
        for driver in drivers:
            await driver.dispose()
