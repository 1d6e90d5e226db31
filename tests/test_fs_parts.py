"""The fs driver's two parts on their own: the file layer and the watcher.

Each is built directly, used, and closed: its threads are gone and its files closed, and
closing twice is harmless. The driver makes both in its constructor and closes both in
`dispose`, and declares its capabilities as data.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from pathlib import Path

import pytest

from drivers._fs_locks import HAS_LOCKS
from drivers._fs_ops import FsFiles
from drivers._fs_watch import FsWatcher
from drivers.fs import FsDriver
from storage import Capabilities, ConflictError, Watchers, WatchEvent
from tests.fixtures.fs import open_files_under

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/fd")


@linux_only
async def test_the_file_layer_runs_its_own_threads_and_closes_them(tmp_path: Path) -> None:
    files = FsFiles(tmp_path / "store")
    assert files.threads == []  # started on first use
    assert await files.run(files.set, "a:b", b"v", None)
    assert await files.run(files.get, "a:b") == b"v"
    assert files.peek("a:b") == b"v"
    assert await files.run(lambda: list(files.walk("", None))) == ["a:b"]
    threads = files.threads
    assert threads
    assert all(thread.is_alive() for thread in threads)
    assert open_files_under(tmp_path / "store")
    await files.close()
    assert not any(thread.is_alive() for thread in threads)
    assert files.threads == []
    assert open_files_under(tmp_path / "store") == []
    await files.close()  # harmless


@linux_only
async def test_a_read_only_file_layer_opens_nothing_it_could_write(tmp_path: Path) -> None:
    writer = FsFiles(tmp_path / "store")
    await writer.run(writer.set, "k", b"v", None)
    await writer.close()
    reader = FsFiles(tmp_path / "store", read_only=True)
    assert await reader.run(reader.get, "k") == b"v"
    assert reader.tree.tmp == -1
    await reader.close()
    await reader.close()
    assert open_files_under(tmp_path / "store") == []


async def test_the_watcher_reports_changes_and_stops_its_thread(tmp_path: Path) -> None:
    pytest.importorskip("watchfiles")
    files = FsFiles(tmp_path / "store")
    other = FsFiles(tmp_path / "store")
    watchers = Watchers()
    events: list[tuple[WatchEvent, str]] = []
    watchers.add(lambda event, key: events.append((event, key)))
    watcher = FsWatcher(files.tree, watchers)
    assert watcher.thread is None  # idle until started
    await watcher.start()
    thread = watcher.thread
    assert thread is not None
    assert thread.is_alive()
    try:
        await other.run(other.set, "from:other", b"1", None)  # another writer, unseen by `files`
        for _ in range(100):
            if ("update", "from:other") in events:
                break
            await asyncio.sleep(0.05)
        assert ("update", "from:other") in events
        files.tree.on_change = watcher.note
        await files.run(files.set, "mine", b"1", None)
        assert watcher.pending  # queued by the file layer, sent by flush
        watcher.flush()
        assert events[-1] == ("update", "mine")
    finally:
        await watcher.close()
        await other.close()
        await files.close()
    assert watcher.thread is None
    assert not thread.is_alive()
    await watcher.close()  # harmless


async def test_the_driver_holds_both_parts_and_dispose_closes_them(tmp_path: Path) -> None:
    pytest.importorskip("watchfiles")
    before = set(threading.enumerate())
    driver = FsDriver(tmp_path / "store", sweep_interval=0.2)
    unwatch = await driver.watch(lambda event, key: None)
    await driver.set_item("k", b"v")
    started = [thread for thread in set(threading.enumerate()) - before if thread.name[:3] == "fs-"]
    assert {thread.name for thread in started} >= {"fs-0", "fs-watch"}
    await unwatch()
    await driver.dispose()
    assert not any(thread.is_alive() for thread in started)
    assert open_files_under(tmp_path / "store") == [] or sys.platform != "linux"
    await driver.dispose()  # harmless


async def test_capabilities_are_data_and_read_only_instances_say_so(tmp_path: Path) -> None:
    common = {
        "ttl": True,
        "conditional": HAS_LOCKS,
        "watch": True,
        "native_max_depth": True,
        "bounded": True,
    }
    writer = FsDriver(tmp_path / "store")
    reader = FsDriver(tmp_path / "store", read_only=True)
    assert writer.capabilities == Capabilities(**common)
    assert reader.capabilities == Capabilities(**common, read_only=True)
    await writer.dispose()
    await reader.dispose()


async def test_a_read_only_store_whose_directory_is_missing_reads_as_empty(tmp_path: Path) -> None:
    reader = FsDriver(tmp_path / "nowhere", read_only=True)
    try:
        assert await reader.get_item("k") is None
        assert not await reader.has_item("k")
        assert await reader.get_keys() == []
        assert await reader.get_meta("k") == {}
    finally:
        await reader.dispose()
    assert not (tmp_path / "nowhere").exists()


async def test_with_a_coarse_clock_every_write_still_gets_a_new_etag(tmp_path: Path) -> None:
    files = FsFiles(tmp_path / "store")
    files.tree.coarse_clock = True  # as the probe finds on kernels without multigrain stamps
    try:
        etags = [await files.run(files.set, "counter", b"%03d" % i, None) for i in range(200)]
        assert len(set(etags)) == len(etags)
        stale = etags[-2]
        with pytest.raises(ConflictError):
            await files.run(files.set_conditional, "counter", b"x", None, stale, False)
        assert await files.run(files.get_with_etag, "counter") == (b"199", etags[-1])
    finally:
        await files.close()
