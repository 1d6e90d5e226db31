"""What is special about the sqlite driver's atomic operations and pages: each is one job in
the writer thread, on the row itself (its version column is the etag, its expiry column the
TTL), and a page is one query over a key range."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from drivers.sqlite import SqliteDriver
from storage import ConflictError, InvalidArgumentError, create_storage


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[SqliteDriver]:
    driver = SqliteDriver(tmp_path / "store.db", sweep_interval=0)
    yield driver
    await driver.dispose()


def _row(path: str, key: str) -> tuple[Any, ...] | None:
    """The stored row of ``key``: (value, expires, mtime, version), read by another connection."""
    with sqlite3.connect(path) as conn:
        row: tuple[Any, ...] | None = conn.execute(
            "SELECT value, expires, mtime, version FROM unistorage WHERE key = ?", (key,)
        ).fetchone()
        return row


async def _statements(driver: SqliteDriver) -> list[str]:
    """Collect every statement the driver's writer connection runs from now on (as traced,
    with its parameters bound), and those on the calling thread's read connection."""
    seen: list[str] = []

    def trace(conn: sqlite3.Connection, _: object) -> None:
        conn.set_trace_callback(seen.append)

    await driver._engine.call(trace)
    reader = driver._engine._reader()  # reads, and writes with nothing queued, run there
    if reader is not None:
        reader.set_trace_callback(seen.append)
    return seen


def _on_table(statements: list[str]) -> list[str]:
    return [statement for statement in statements if '"unistorage"' in statement]


# -- etags ------------------------------------------------------------------------------------


async def test_every_write_returns_the_version_it_stored(db: SqliteDriver) -> None:
    etag = await db.set_item("k", b"1")
    assert _row(db.path, "k") == (b"1", None, pytest.approx(time.time(), abs=60), int(etag))
    conditional = await db.set_item_conditional("k", b"2", if_match=etag)
    assert conditional != etag
    assert (await db.get_meta("k"))["etag"] == conditional
    created = await db.set_item_conditional("new", b"1", if_none_match=True)
    assert (await db.get_item_with_etag("new")) == (b"1", created)


async def test_an_etag_that_is_not_a_version_never_matches(db: SqliteDriver) -> None:
    etag = await db.set_item("k", b"1")
    for wrong in ("0" + etag, etag + " ", "version", "-1"):
        with pytest.raises(ConflictError):
            await db.set_item_conditional("k", b"2", if_match=wrong)
        with pytest.raises(ConflictError):
            await db.remove_item_conditional("k", if_match=wrong)
    assert await db.get_item("k") == b"1"


async def test_an_expired_row_counts_as_absent_for_conditional_writes(db: SqliteDriver) -> None:
    etag = await db.set_item("k", b"old", ttl=0.1)
    await asyncio.sleep(0.2)
    with pytest.raises(ConflictError):
        await db.set_item_conditional("k", b"x", if_match=etag)
    with pytest.raises(ConflictError):
        await db.set_item_conditional("k", b"x", if_match="*")
    with pytest.raises(ConflictError):
        await db.remove_item_conditional("k", if_match="*")
    await db.set_item_conditional("k", b"new", if_none_match=True)  # replaces the expired row
    assert _row(db.path, "k")[:2] == (b"new", None)  # type: ignore[index]


async def test_a_conditional_remove_shares_a_transaction_and_fails_alone(
    db: SqliteDriver,
) -> None:
    etag = await db.set_item("doomed", b"v")
    await db.set_item("kept", b"v")
    before = db.commits
    results = await asyncio.gather(
        *(db.set_item(f"k:{i}", b"v") for i in range(20)),
        db.remove_item_conditional("doomed", if_match=etag),
        db.remove_item_conditional("kept", if_match=etag),
        *(db.set_item(f"j:{i}", b"v") for i in range(20)),
        return_exceptions=True,
    )
    assert [type(r) for r in results if isinstance(r, Exception)] == [ConflictError]
    assert db.commits - before < 40
    assert await db.has_item("doomed") is False
    assert await db.get_item("kept") == b"v"


# -- increment --------------------------------------------------------------------------------


async def test_increments_are_stored_as_json_integer_text(db: SqliteDriver) -> None:
    assert await db.increment("n", 5) == 5
    assert await db.increment("n", -12) == -7
    assert _row(db.path, "n")[0] == b"-7"  # type: ignore[index]
    async with create_storage(SqliteDriver(db.path, sweep_interval=0)) as storage:
        assert await storage.get_item("n") == -7


async def test_concurrent_increments_share_transactions_and_count_exactly(
    db: SqliteDriver,
) -> None:
    await db.set_item("warm", b"v")
    before = db.commits
    results = await asyncio.gather(*(db.increment("hits", 1) for _ in range(200)))
    assert sorted(results) == list(range(1, 201))
    assert db.commits - before < 200
    assert await db.get_item("hits") == b"200"


async def test_an_increment_of_a_value_that_is_no_integer_changes_nothing(
    db: SqliteDriver,
) -> None:
    for stored in (b'"5"', b"1.5", b"true", b"not json", b"[1]"):
        etag = await db.set_item("v", stored)
        with pytest.raises(InvalidArgumentError, match="'v'"):
            await db.increment("v", 1)
        assert (await db.get_item_with_etag("v")) == (stored, etag)


async def test_an_increment_keeps_the_expiry_of_a_live_counter_and_restarts_an_expired_one(
    db: SqliteDriver,
) -> None:
    await db.increment("window", 1, ttl=0.3)
    expires = _row(db.path, "window")[1]  # type: ignore[index]
    await db.increment("window", 1, ttl=100)
    assert _row(db.path, "window")[1] == expires  # type: ignore[index]
    await asyncio.sleep(0.4)
    assert await db.increment("window", 1, ttl=100) == 1
    assert 90 < (await db.get_meta("window"))["ttl"] <= 100


# -- touch ------------------------------------------------------------------------------------


async def test_touch_updates_the_expiry_alone(db: SqliteDriver) -> None:
    etag = await db.set_item("k", b"v", ttl=10)
    value, _, mtime, version = _row(db.path, "k")  # type: ignore[misc]
    statements = await _statements(db)
    assert await db.touch("k", 100) is True
    (update,) = _on_table(statements)
    assert update.startswith('UPDATE "unistorage" SET expires = ')
    assert _row(db.path, "k") == (value, pytest.approx(time.time() + 100, abs=5), mtime, version)
    assert (await db.get_meta("k"))["etag"] == etag  # the etag names the bytes, not the TTL
    await db.set_item_conditional("k", b"w", if_match=etag)


async def test_touch_and_renewed_reads_find_no_expired_or_missing_key(db: SqliteDriver) -> None:
    await db.set_item("k", b"v", ttl=0.1)
    await asyncio.sleep(0.2)
    assert await db.touch("k", 100) is False
    assert await db.touch("never", 100) is False
    assert await db.get_item_touch("k", 100) is None
    assert await db.get_item_touch("never", 100) is None
    assert await db.get_item("k") is None


async def test_a_renewed_read_returns_the_value_and_renews_it_in_one_statement(
    db: SqliteDriver,
) -> None:
    await db.set_item("k", b"v", ttl=10)
    statements = await _statements(db)
    assert await db.get_item_touch("k", 100) == b"v"
    (update,) = _on_table(statements)
    assert update.startswith('UPDATE "unistorage" SET expires = ')
    assert update.endswith("RETURNING value")
    assert 90 < (await db.get_meta("k"))["ttl"] <= 100


# -- pages ------------------------------------------------------------------------------------


async def test_a_page_is_one_query_and_its_cursor_is_its_last_key(db: SqliteDriver) -> None:
    await db.set_items([(f"p:{i:02d}", b"v") for i in range(25)])
    statements = await _statements(db)
    keys, cursor = await db.list_page("p:", limit=10)
    assert keys == [f"p:{i:02d}" for i in range(10)]
    assert cursor == "p:09"
    (query,) = _on_table(statements)
    assert query.startswith("SELECT key FROM \"unistorage\" WHERE key >= 'p:' AND key < 'p;'")
    keys, cursor = await db.list_page("p:", limit=10, cursor=cursor)
    assert (keys[0], cursor) == ("p:10", "p:19")
    keys, cursor = await db.list_page("p:", limit=10, cursor=cursor)
    assert (keys, cursor) == ([f"p:{i:02d}" for i in range(20, 25)], None)


async def test_a_page_ending_exactly_at_the_last_key_has_no_next_cursor(db: SqliteDriver) -> None:
    await db.set_items([(f"k{i}", b"v") for i in range(10)])
    assert (await db.list_page(limit=10))[1] is None
    assert (await db.list_page(limit=9))[1] == "k8"


async def test_pages_stay_inside_the_base_range_whatever_keys_hold(db: SqliteDriver) -> None:
    keys = ["a", "a:b", "a:c:d", "a;", "ab:x", "a%:y", "a_:z", "b", "a:日本", "a:" + "\uffff"]
    await db.set_items([(key, b"v") for key in keys])
    assert (await db.list_page("a:", limit=100))[0] == sorted(
        ["a:b", "a:c:d", "a:日本", "a:\uffff"]
    )
    assert (await db.list_page("a_:", limit=100))[0] == ["a_:z"]
    # A cursor below the range is no bound; one above it ends the listing.
    assert (await db.list_page("a:", limit=100, cursor="a"))[0][0] == "a:b"
    assert await db.list_page("a:", limit=100, cursor="zzz") == ([], None)


async def test_max_depth_is_filtered_in_the_query_so_pages_stay_full(db: SqliteDriver) -> None:
    await db.set_items(
        [(f"t:{i:02d}", b"v") for i in range(10)] + [(f"t:{i:02d}:deep", b"v") for i in range(10)]
    )
    keys, cursor = await db.list_page("t:", limit=4, max_depth=0)
    assert keys == ["t:00", "t:01", "t:02", "t:03"]
    seen = list(keys)
    while cursor is not None:
        keys, cursor = await db.list_page("t:", limit=4, cursor=cursor, max_depth=0)
        seen += keys
    assert seen == [f"t:{i:02d}" for i in range(10)]
    assert len((await db.list_page("t:", limit=100, max_depth=1))[0]) == 20


async def test_expired_keys_are_left_out_of_pages(db: SqliteDriver) -> None:
    await db.set_items([("e:1", b"v"), ("e:2", b"v")], ttl=0.1)
    await db.set_item("e:3", b"v")
    await asyncio.sleep(0.2)
    assert await db.list_page("e:", limit=1) == (["e:3"], None)


async def test_iter_keys_goes_page_by_page_and_leaves_deeper_keys_in_the_database(
    db: SqliteDriver,
) -> None:
    shallow = [f"d:{i:04d}" for i in range(1500)]
    await db.set_items([(key, b"v") for key in shallow] + [(k + ":x", b"v") for k in shallow])
    assert [key async for key in db.iter_keys("d:", max_depth=0)] == shallow
    assert len([key async for key in db.iter_keys("d:")]) == 3000
