"""What is special about fs streams: a write goes to a temporary file in the store's ``tmp``
directory and is renamed into place when its chunks end (removed when they fail); a read
holds the value's open file and reads it a chunk at a time in the worker threads, closing it
at the end or when closed, read or not. What every driver's streams do (a failure or a
cancellation changes nothing, chunk sizes, snapshots, flat memory) is the conformance suite's
(tests/conformance/test_streams.py)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from drivers import _fs_write
from drivers.fs import INTERNAL, FsDriver
from storage import create_storage
from storage.streams import StreamAbortedError
from tests.fixtures.fs import open_files_under, store_path

MB = 1024 * 1024
linux_only = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/fd")


def _temporary_files(fs: FsDriver) -> list[str]:
    return os.listdir(store_path(fs, INTERNAL, "tmp"))


def _open_files(fs: FsDriver) -> list[str]:
    """The keys' files this process holds open (the store's own directories and lock file
    aside)."""
    held = open_files_under(fs.base)
    return [name for name in held if name != fs.base and f"/{INTERNAL}" not in name]


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        await asyncio.sleep(0)
        yield part


async def _failing(*parts: bytes, error: BaseException | None = None) -> AsyncIterator[bytes]:
    async for part in _chunks(*parts):
        yield part
    raise error or StreamAbortedError("the writer's block failed")


async def _read(chunks: AsyncIterator[bytes] | None) -> bytes:
    assert chunks is not None
    return b"".join([chunk async for chunk in chunks])


# -- writing ----------------------------------------------------------------------------------


async def test_a_streamed_value_is_the_plain_file_of_its_key(fs: FsDriver) -> None:
    await fs.write_chunks("files:big", _chunks(b"abc" * 1000, b"", b"def" * 1000))
    assert store_path(fs, "files", "big").read_bytes() == b"abc" * 1000 + b"def" * 1000
    assert _temporary_files(fs) == []


async def test_until_its_chunks_end_a_stream_is_a_temporary_file_beside_the_old_value(
    fs: FsDriver,
) -> None:
    await fs.set_item("k", b"old")
    seen: list[tuple[list[str], bytes | None]] = []

    async def chunks() -> AsyncIterator[bytes]:
        yield b"x" * 1000
        await asyncio.sleep(0.05)  # the first chunk has been written
        seen.append((_temporary_files(fs), await fs.get_item("k")))
        yield b"y" * 1000

    await fs.write_chunks("k", chunks())
    assert len(seen[0][0]) == 1
    assert seen[0][1] == b"old"
    assert await fs.get_item("k") == b"x" * 1000 + b"y" * 1000
    assert _temporary_files(fs) == []


@pytest.mark.parametrize("error", [StreamAbortedError("aborted"), RuntimeError("producer")])
async def test_a_failed_stream_removes_its_temporary_file_and_makes_no_directory(
    fs: FsDriver, error: BaseException
) -> None:
    await fs.set_item("k", b"old")
    with pytest.raises(type(error)):
        await fs.write_chunks("k", _failing(b"partial" * 100_000, b"more", error=error))
    with pytest.raises(type(error)):
        await fs.write_chunks("new:key", _failing(b"partial", error=error))
    assert not store_path(fs, "new").exists()
    assert _temporary_files(fs) == []


async def test_a_stream_cancelled_at_any_moment_leaves_no_temporary_file(fs: FsDriver) -> None:
    new = os.urandom(2 * MB)
    parts = [new[start : start + 64 * 1024] for start in range(0, len(new), 64 * 1024)]
    for attempt in range(30):
        await fs.set_item("blob", b"old")
        task = asyncio.ensure_future(fs.write_chunks("blob", _chunks(*parts)))
        await asyncio.sleep(attempt * 0.0005)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert _temporary_files(fs) == []


async def test_a_stream_cancelled_while_placing_returns_once_its_file_is_placed(
    fs: FsDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A slow disk: the rename into place takes a while in its worker thread. The cancelled
    # stream must not return while its temporary file is still there (CI saw one left).
    placing, release = threading.Event(), threading.Event()
    place = _fs_write.place_temp

    def slow_place(*args: Any, **kwargs: Any) -> str:
        placing.set()
        release.wait(5)
        return place(*args, **kwargs)

    await fs.set_item("blob", b"old")
    monkeypatch.setattr(_fs_write, "place_temp", slow_place)
    task = asyncio.ensure_future(fs.write_chunks("blob", _chunks(b"new" * 1000)))
    assert await asyncio.to_thread(placing.wait, 5)
    task.cancel()
    asyncio.get_running_loop().call_later(0.2, release.set)
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert _temporary_files(fs) == []
    assert await fs.get_item("blob") in (b"old", b"new" * 1000)  # one or the other, whole


async def test_a_stream_over_a_value_swaps_it_out_and_leaves_nothing_behind(
    fs: FsDriver,
) -> None:
    await fs.set_item("k", b"old" * 100_000)
    await fs.set_item("d", b"own")
    await fs.set_item("d:child", b"c")
    old = os.stat(store_path(fs, "k")).st_ino
    etag = await fs.write_chunks("k", _chunks(b"new" * 100_000))
    await fs.write_chunks("d", _chunks(b"own 2"))
    assert (await fs.get_item_with_etag("k")) == (b"new" * 100_000, etag)
    assert os.stat(store_path(fs, "k")).st_ino != old
    assert store_path(fs, "d", "%").read_bytes() == b"own 2"
    assert await fs.get_item("d:child") == b"c"
    assert _temporary_files(fs) == []


async def test_readers_see_the_old_value_or_the_new_one_while_streams_replace_it(
    fs: FsDriver,
) -> None:
    values = [bytes([n]) * 300_000 for n in range(6)]
    await fs.set_item("k", values[0])
    seen: set[bytes] = set()

    async def read_all_along(done: asyncio.Event) -> None:
        while not done.is_set():
            value = await fs.get_item("k")
            assert value in values
            seen.add(value)
            await asyncio.sleep(0)

    done = asyncio.Event()
    reader = asyncio.ensure_future(read_all_along(done))
    for value in values[1:]:
        await fs.write_chunks("k", _chunks(value[:100_000], value[100_000:]))
    done.set()
    await reader
    assert await fs.get_item("k") == values[-1]
    assert len(seen) > 1


async def test_an_empty_stream_stores_an_empty_file(fs: FsDriver) -> None:
    await fs.write_chunks("empty", _chunks())
    assert store_path(fs, "empty").read_bytes() == b""


async def test_a_streamed_value_is_reported_to_watchers_once(fs: FsDriver) -> None:
    events: list[tuple[str, str]] = []
    unwatch = await fs.watch(lambda event, key: events.append((event, key)))
    try:
        await fs.write_chunks("w", _chunks(b"a" * 100_000, b"b" * 100_000))
        assert events == [("update", "w")]
        await asyncio.sleep(0.3)  # watchfiles' echo of our own write is not sent again
        assert events == [("update", "w")]
    finally:
        await unwatch()


async def test_a_durable_stream_lands_whole(tmp_path: Path) -> None:
    driver = FsDriver(tmp_path, durable=True, sweep_interval=0)
    try:
        await driver.write_chunks("a:b", _chunks(b"1" * MB, b"2" * MB))
        assert await driver.get_item("a:b") == b"1" * MB + b"2" * MB
    finally:
        await driver.dispose()


async def test_a_stream_over_a_link_replaces_the_link_itself(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_bytes(b"secret")
    driver = FsDriver(tmp_path / "store", sweep_interval=0)
    try:
        (tmp_path / "store" / "k").symlink_to(outside)
        assert await driver.read_chunks("k", 100) is None  # a link is never a value
        await driver.write_chunks("k", _chunks(b"mine"))
        assert outside.read_bytes() == b"secret"
        assert not (tmp_path / "store" / "k").is_symlink()
        assert await driver.get_item("k") == b"mine"
    finally:
        await driver.dispose()


# -- reading ----------------------------------------------------------------------------------


async def test_an_expired_value_is_not_opened(fs: FsDriver) -> None:
    await fs.set_item("brief", b"v", ttl=0.1)
    await asyncio.sleep(0.2)
    assert await fs.read_chunks("brief", 10) is None
    assert not store_path(fs, "brief").exists()


async def test_a_key_that_is_also_a_directory_streams_its_own_value(fs: FsDriver) -> None:
    await fs.set_item("d", b"own")
    await fs.set_item("d:child", b"c")
    assert await _read(await fs.read_chunks("d", 2)) == b"own"
    await fs.remove_item("d")
    assert await fs.read_chunks("d", 2) is None


@linux_only
async def test_a_stream_closes_its_file_at_the_end_and_when_closed_read_or_not(
    fs: FsDriver,
) -> None:
    await fs.set_item("blob", b"v" * 10_000)
    value = store_path(fs, "blob")
    unread = await fs.read_chunks("blob", 1000)
    assert _open_files(fs) == [str(value)]
    await unread.aclose()  # type: ignore[union-attr]
    assert _open_files(fs) == []
    begun = await fs.read_chunks("blob", 1000)
    assert begun is not None
    await anext(begun)  # the next chunk is being read ahead meanwhile
    await begun.aclose()  # type: ignore[attr-defined]
    assert _open_files(fs) == []
    assert await anext(begun, None) is None
    await _read(await fs.read_chunks("blob", 1000))
    assert _open_files(fs) == []


@linux_only
async def test_a_dropped_stream_closes_its_file(fs: FsDriver) -> None:
    await fs.set_item("blob", b"v" * 10_000)
    chunks = await fs.read_chunks("blob", 20_000)
    assert _open_files(fs)
    del chunks
    assert _open_files(fs) == []


@linux_only
async def test_open_read_closes_the_file_when_the_block_reads_nothing(fs: FsDriver) -> None:
    async with create_storage(fs) as storage:
        await storage.set_item_raw("blob", b"v" * 10_000)
        async with storage.open_read("blob"):
            assert _open_files(fs)
        assert _open_files(fs) == []
