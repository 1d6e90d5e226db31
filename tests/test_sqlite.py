"""What is special about the sqlite driver: schema, group commit, key ranges, TTL purge,
the engine that owns its thread and connections, compare-and-set across processes."""

from __future__ import annotations

import asyncio
import os
import select
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from drivers._sqlite_engine import Events, SqliteEngine
from drivers.sqlite import SqliteDriver
from storage import (
    Capabilities,
    ConflictError,
    DriverError,
    InvalidArgumentError,
    ReadOnlyError,
    create_driver,
    create_storage,
)

ROOT = Path(__file__).resolve().parent.parent


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
    assert [type(result) for result in results if isinstance(result, Exception)] == [ConflictError]
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


async def _writer_statements(driver: SqliteDriver) -> list[str]:
    """Every statement the writer thread's connection runs from now on."""
    seen: list[str] = []
    await driver._engine.call(lambda conn, _: conn.set_trace_callback(seen.append))
    return seen


async def test_a_lone_writer_commits_on_its_own_thread(db: SqliteDriver) -> None:
    await db.set_item("warm", b"v")  # the first write opens the file in the writer thread
    on_writer = await _writer_statements(db)
    before = db.commits
    for i in range(50):
        etag = await db.set_item(f"k:{i}", str(i).encode())
        with sqlite3.connect(db.path) as other:  # committed before it was acknowledged
            assert other.execute(
                "SELECT value, version FROM unistorage WHERE key = ?", (f"k:{i}",)
            ).fetchone() == (str(i).encode(), int(etag))
    assert await db.set_item_conditional("k:49", b"new", if_match=etag) != etag
    assert not [statement for statement in on_writer if "unistorage" in statement]
    assert db.commits - before == 51


async def test_a_write_here_that_meets_a_lock_waits_in_the_thread_not_the_loop(
    db: SqliteDriver,
) -> None:
    await db.set_item("k", b"1")
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    with sqlite3.connect(db.path, isolation_level=None) as other:
        other.execute("BEGIN IMMEDIATE")
        writing = asyncio.create_task(db.set_item("k", b"2"))
        await asyncio.sleep(0.3)
        assert not writing.done()  # waiting for the lock...
        assert ticks >= 3  # ...in the writer thread: the loop went on
        other.execute("COMMIT")
    await writing
    ticker.cancel()
    assert await db.get_item("k") == b"2"


async def test_durable_writes_stay_in_the_writer_thread(tmp_path: Path) -> None:
    driver = SqliteDriver(tmp_path / "durable.db", sweep_interval=0, durable=True)
    try:
        await driver.set_item("warm", b"v")
        on_writer = await _writer_statements(driver)
        await driver.set_item("k", b"v")
        assert [statement for statement in on_writer if "unistorage" in statement]
    finally:
        await driver.dispose()


async def test_commits_made_here_are_checkpointed_by_the_writer_thread(db: SqliteDriver) -> None:
    await db.set_item("warm", b"v")
    value = b"x" * 4096
    for i in range(2000):  # about 8,000 pages through the WAL: 32 MB without checkpoints
        await db.set_item(f"k:{i % 100}", value)
    await db.get_keys()  # a job behind the last checkpoint asked for
    assert await asyncio.to_thread(os.path.getsize, f"{db.path}-wal") < 8 * 1024 * 1024


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
    failures = [result for result in results if isinstance(result, BaseException)]
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


async def test_capabilities_are_declared_and_read_only_opens_without_writing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ro.db"
    with sqlite3.connect(path) as conn:  # a rollback-journal file, as another program made it
        conn.execute(
            "CREATE TABLE unistorage (key TEXT PRIMARY KEY NOT NULL, value BLOB NOT NULL, "
            "expires REAL, mtime REAL NOT NULL, version INTEGER NOT NULL)"
        )
        conn.execute("INSERT INTO unistorage VALUES ('k', x'31', NULL, 0, 7)")
    writable = SqliteDriver(tmp_path / "rw.db")
    assert writable.capabilities == Capabilities(
        ttl=True, conditional=True, watch=True, bounded=True
    )
    driver = create_driver(f"sqlite:///{path}?read_only=true", sweep_interval=0)
    assert isinstance(driver, SqliteDriver)  # the driver takes read_only itself, no layer
    assert driver.capabilities == Capabilities(
        ttl=True, conditional=True, watch=True, read_only=True, bounded=True
    )
    async with create_storage(driver) as storage:
        assert await storage.get_item_raw("k") == b"1"
        with pytest.raises(ReadOnlyError):
            await storage.set_item("k", 2)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    assert not (tmp_path / "rw.db").exists()  # nothing opens before the first call


def _sqlite_threads(path: str) -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == f"sqlite:{path}"]


def _kv_table(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v BLOB)")


def _insert(key: str, value: bytes) -> Callable[[sqlite3.Connection, Events], None]:
    def work(conn: sqlite3.Connection, events: Events) -> None:
        conn.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (key, value))
        events.append(("update", key))

    return work


async def test_the_engine_runs_work_and_close_ends_its_thread_and_connections(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "engine.db")
    reported: list[Events] = []
    engine = SqliteEngine(path, setup=_kv_table, on_events=lambda events: reported.append(events))
    used: list[tuple[sqlite3.Connection, int]] = []

    def read(conn: sqlite3.Connection, _: Events) -> tuple[bytes] | None:
        used.append((conn, threading.get_ident()))
        row: tuple[bytes] | None = conn.execute("SELECT v FROM kv WHERE k = 'a'").fetchone()
        return row

    def write(conn: sqlite3.Connection, events: Events) -> None:
        used.append((conn, threading.get_ident()))
        _insert("a", b"1")(conn, events)

    assert _sqlite_threads(path) == []  # nothing starts before the first job
    await engine.call(write, write=True)
    assert reported == [[("update", "a")]]
    assert engine.commits == 1
    assert await engine.read(read) == (b"1",)
    (writer, writer_thread), (reader, reader_thread) = used
    assert writer_thread != threading.get_ident()  # the write ran in the engine's thread
    assert reader_thread == threading.get_ident()  # the short read ran here, inline
    assert reader is not writer
    assert len(_sqlite_threads(path)) == 1
    await engine.close()
    assert engine.closed
    assert _sqlite_threads(path) == []
    for conn in (writer, reader):
        with pytest.raises(sqlite3.ProgrammingError):
            conn.execute("SELECT 1")


async def test_closing_the_engine_twice_is_harmless_and_later_jobs_fail_clearly(
    tmp_path: Path,
) -> None:
    never_started = SqliteEngine(str(tmp_path / "idle.db"), setup=_kv_table)
    await never_started.close()
    await never_started.close()
    assert not (tmp_path / "idle.db").exists()
    engine = SqliteEngine(str(tmp_path / "engine.db"), setup=_kv_table)
    await engine.call(_insert("a", b"1"), write=True)
    await engine.close()
    await engine.close()
    with pytest.raises(sqlite3.ProgrammingError, match=r"engine of .* is closed"):
        await engine.call(_insert("b", b"2"), write=True)
    with pytest.raises(sqlite3.ProgrammingError, match="is closed"):
        await engine.read(lambda conn, _: conn.execute("SELECT 1").fetchone())
    with pytest.raises(sqlite3.ProgrammingError, match="is closed"):
        engine.post(_insert("c", b"3"))


async def test_the_engine_finishes_the_jobs_queued_before_close(tmp_path: Path) -> None:
    path = str(tmp_path / "engine.db")
    engine = SqliteEngine(path, setup=_kv_table)
    writes = [
        asyncio.ensure_future(engine.call(_insert(f"k{i}", b"v"), write=True)) for i in range(50)
    ]
    await asyncio.sleep(0)  # every write is queued
    await engine.close()
    await asyncio.gather(*writes)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM kv").fetchone() == (50,)


async def test_an_engine_whose_setup_fails_answers_every_job_with_why(tmp_path: Path) -> None:
    path = str(tmp_path / "engine.db")

    def refuse(conn: sqlite3.Connection) -> None:
        raise DriverError("sqlite", "open", None, "not ours")

    engine = SqliteEngine(path, setup=refuse)
    for _ in range(2):
        with pytest.raises(DriverError, match="not ours"):
            await engine.call(_insert("a", b"1"), write=True)
    await engine.close()
    assert _sqlite_threads(path) == []


async def test_dispose_closes_the_engine_and_a_disposed_driver_opens_again(
    tmp_path: Path,
) -> None:
    driver = SqliteDriver(tmp_path / "store.db", sweep_interval=0.5)
    await driver.set_item("k", b"1")
    assert len(_sqlite_threads(driver.path)) == 1
    await driver.dispose()
    assert _sqlite_threads(driver.path) == []
    await driver.dispose()  # harmless
    assert await driver.get_item("k") == b"1"  # as before: the next call opens a fresh engine
    await driver.dispose()
    assert _sqlite_threads(driver.path) == []


async def _count_by_compare_and_set(url: str, tasks: str, rounds: str) -> None:
    """In a child process: after "go" on stdin, ``tasks`` tasks each add ``rounds`` to the key
    "counter" by read-with-etag then conditional write, retrying on conflict."""
    driver = create_driver(url, sweep_interval=0)
    conflicts = 0

    async def add(times: int) -> None:
        nonlocal conflicts
        for _ in range(times):
            while True:
                value, etag = await driver.get_item_with_etag("counter")
                try:
                    if etag is None:
                        await driver.set_item_conditional("counter", b"1", if_none_match=True)
                    else:
                        new = str(int(value or b"") + 1).encode()
                        await driver.set_item_conditional("counter", new, if_match=etag)
                    break
                except ConflictError:
                    conflicts += 1

    try:
        await driver.get_item("counter")  # the file is open before the race starts
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        await asyncio.to_thread(sys.stdin.readline)
        await asyncio.gather(*(add(int(rounds)) for _ in range(int(tasks))))
        sys.stdout.write(f"done {conflicts}\n")
    finally:
        await driver.dispose()


_COUNTER = (
    "import asyncio, sys; from tests.test_sqlite import _count_by_compare_and_set as count; "
    "asyncio.run(count(*sys.argv[1:]))"
)


def _race(url: str, processes: int, tasks: int, rounds: int) -> list[str]:
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _COUNTER, url, str(tasks), str(rounds)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    try:
        for child in children:
            assert child.stdout is not None
            assert select.select([child.stdout], [], [], 60)[0], "a counter did not start"
            assert child.stdout.readline() == "ready\n"
        outputs = []
        for child in children:
            out, _ = child.communicate("go\n", timeout=120)
            assert child.returncode == 0
            outputs.append(out.strip())
        return outputs
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()


@pytest.mark.parametrize("inline_reads", [True, False])
async def test_etag_compare_and_set_from_two_processes_loses_no_increment(
    tmp_path: Path, inline_reads: bool
) -> None:
    url = f"sqlite:///{tmp_path / 'count.db'}?inline_reads={str(inline_reads).lower()}"
    outputs = await asyncio.to_thread(_race, url, 2, 10, 20)
    assert [out.split()[0] for out in outputs] == ["done", "done"]
    driver = create_driver(url, sweep_interval=0)
    try:
        value, etag = await driver.get_item_with_etag("counter")
        assert value == b"400"
        assert etag == (await driver.get_meta("counter"))["etag"]
    finally:
        await driver.dispose()
    assert sum(int(out.split()[1]) for out in outputs) > 0  # the tasks really raced


def _frames(exc: BaseException) -> int:
    tb, count = exc.__traceback__, 0
    while tb is not None:
        tb, count = tb.tb_next, count + 1
    return count


async def test_a_group_failed_by_a_lock_gives_each_caller_an_error_of_its_own(
    tmp_path: Path,
) -> None:
    # One error fails every write of a group commit. Shared by all of them, its traceback
    # gathered every caller's frames (hundreds of frames per logged error under load, which
    # stalled the server that logged them).
    path = tmp_path / "store.db"
    async with create_storage(f"sqlite:///{path}?sweep_interval=0&busy_timeout=0.2") as storage:
        await storage.set_item("warm", 1)
        with sqlite3.connect(path, isolation_level=None) as other:
            other.execute("BEGIN EXCLUSIVE")
            failed = await asyncio.gather(
                *(storage.set_item(f"k{i}", i) for i in range(50)), return_exceptions=True
            )
            other.execute("ROLLBACK")
    assert all(isinstance(exc, DriverError) for exc in failed)
    causes = [exc.__cause__ for exc in failed if isinstance(exc, BaseException)]
    assert all(isinstance(cause, sqlite3.OperationalError) for cause in causes)
    assert len({id(cause) for cause in causes}) == 50
    assert max(_frames(cause) for cause in causes if cause is not None) < 20


async def test_long_writes_stay_in_the_writer_thread(db: SqliteDriver) -> None:
    await db.set_item("warm", b"v")
    on_writer = await _writer_statements(db)
    await db.set_items([(f"small:{i}", b"v") for i in range(10)])  # short: here
    assert not [statement for statement in on_writer if "unistorage" in statement]
    await db.set_items([(f"big:{i}", b"v") for i in range(200)])
    await db.remove_items([f"big:{i}" for i in range(100)])
    await db.clear("small:")
    on_table = [statement for statement in on_writer if "unistorage" in statement]
    assert len(on_table) >= 3  # the large batch, the large remove and the clear
