"""SQLite on a disk that fills up: every write that cannot land fails as a `DriverError`, at
once, on the caller's connection (inline writes) and in the writer thread alike; a batch is all
or nothing; nothing acknowledged before is lost; once there is room again, writes go on and the
file checks out whole.

For real: a small tmpfs mounted for the test (needs root, as in CI).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers.sqlite import SqliteDriver
from storage import DriverError, Storage, create_storage
from tests import faults

VALUE = 8 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs, mounted for the test."""
    with faults.small_disk(tmp_path, "2m") as mount:
        yield mount


async def _fill(storage: Storage, stored: dict[str, bytes]) -> None:
    """Write new 8 KB values until a write fails; ``stored`` gets the ones acknowledged."""
    for i in range(1000):  # 8 MB: four times the disk
        value = os.urandom(VALUE)
        await storage.set_item_raw(f"k{i}", value)
        stored[f"k{i}"] = value


@pytest.mark.parametrize("inline_writes", [True, False], ids=["inline", "writer-thread"])
async def test_a_full_disk_fails_writes_as_driver_errors_and_loses_nothing(
    small_disk: Path, inline_writes: bool
) -> None:
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * 512 * 1024)  # room to give back once the disk is full
    path = small_disk / "store.db"
    driver = SqliteDriver(path, sweep_interval=0, inline_writes=inline_writes)
    storage = create_storage(driver)
    stored: dict[str, bytes] = {}
    try:
        with pytest.raises(DriverError, match="full") as raised:
            await _fill(storage, stored)
        assert raised.value.operation == "set_item"
        assert len(stored) > 10  # the disk took some before it filled
        failed = f"k{len(stored)}"
        assert await storage.get_item_raw(failed) is None
        for key, value in stored.items():  # every acknowledged write reads back whole
            assert await storage.get_item_raw(key) == value

        batch = {f"batch{i}": os.urandom(VALUE) for i in range(8)}
        with pytest.raises(DriverError, match="full"):
            await storage.set_items_raw(batch)
        assert await storage.get_items_raw(list(batch)) == dict.fromkeys(batch)
        first, newer = next(iter(stored)), os.urandom(VALUE)
        # An overwrite may fit in pages the WAL can reuse; if not, the old value stays.
        with contextlib.suppress(DriverError):
            await storage.set_item_raw(first, newer)
            stored[first] = newer
        assert await storage.get_item_raw(first) == stored[first]

        filler.unlink()  # room again: the same driver writes on
        await storage.set_item_raw(failed, b"fits now")
        await storage.set_items_raw({"after": b"a", "after2": b"b"})
        stored |= {failed: b"fits now", "after": b"a", "after2": b"b"}
    finally:
        await storage.dispose()

    reopened = create_storage(SqliteDriver(path, sweep_interval=0))
    try:
        assert await reopened.get_items_raw(list(stored)) == stored
    finally:
        await reopened.dispose()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()
