"""Conformance over every driver and layer for streams, beyond the kit's `SurfaceTests`: a
stream that fails or is cancelled midway changes nothing, a streamed value's meta, chunk
sizes, a reader's snapshot, and flat memory where a driver streams in parts.

What a driver does with the parts (fs's temporary file, sqlite's spool, s3's multipart upload)
stays in tests/test_<driver>_streams.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import sys
import tracemalloc

import pytest

from storage import Driver, Storage
from storage.testing import ConformanceOptions, conformance_tests

from . import EveryDriver

MB = 1024 * 1024
#: The drivers whose streams never hold the value whole in this process: fs and sqlite move
#: it a chunk at a time between the file and the caller (sqlite by blob I/O, from Python 3.11).
#: memory and lru hold values in memory by design, http's test server keeps them in this
#: process, and s3's allowance is its part size (tests/test_s3_streams.py checks that).
STREAMS_IN_PARTS = {"fs"} | ({"sqlite"} if sys.version_info >= (3, 11) else set())


async def _write_then_fail(storage: Storage, key: str) -> None:
    async with storage.open_write(key) as writer:
        for _ in range(4):
            await writer.write(b"partial " * 8192)
        raise RuntimeError("the producer failed")


def _part(index: int, size: int) -> bytes:
    return hashlib.sha256(index.to_bytes(4, "big")).digest() * (size // 32)


async def _stream_in_and_out(storage: Storage, key: str, size: int, chunk: int) -> tuple[str, str]:
    """Stream ``size`` bytes to ``key`` and back, a chunk at a time; both digests."""
    written = hashlib.sha256()
    async with storage.open_write(key) as writer:
        for index in range(size // chunk):
            part = _part(index, chunk)
            written.update(part)
            await writer.write(part)
    read = hashlib.sha256()
    async with storage.open_read(key, chunk_size=chunk) as reader:
        async for data in reader:
            read.update(data)
    return written.hexdigest(), read.hexdigest()


@conformance_tests
class TestStreams(EveryDriver):
    """Streams through `Storage.open_write` and `Storage.open_read` on every driver."""

    async def test_a_stream_failing_midway_keeps_the_old_value_and_creates_no_key(
        self, storage: Storage
    ) -> None:
        await storage.set_item_raw("blob", b"old")
        before = await storage.get_item_raw_with_etag("blob")
        with pytest.raises(RuntimeError):
            await _write_then_fail(storage, "blob")
        with pytest.raises(RuntimeError):
            await _write_then_fail(storage, "new")
        assert await storage.get_item_raw_with_etag("blob") == before
        assert await storage.get_keys() == ["blob"]

    async def test_a_stream_cancelled_at_any_moment_leaves_the_old_value_or_the_new_one(
        self, storage: Storage
    ) -> None:
        new = os.urandom(256 * 1024)

        async def write() -> None:
            async with storage.open_write("blob") as writer:
                for start in range(0, len(new), 32 * 1024):
                    await writer.write(new[start : start + 32 * 1024])

        # From before the first chunk to, for a driver in this process, after the commit.
        for delay in (0, 0, 0.0005, 0.001, 0.002, 0.004, 0.008):
            await storage.set_item_raw("blob", b"old")
            task = asyncio.ensure_future(write())
            await asyncio.sleep(delay)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            assert await storage.get_item_raw("blob") in (b"old", new)

    async def test_a_streamed_value_has_the_etag_size_and_ttl_it_was_written_with(
        self, storage: Storage, driver: Driver, conformance_options: ConformanceOptions
    ) -> None:
        ttl = 100 if driver.capabilities.ttl else None
        async with storage.open_write("blob", ttl=ttl) as writer:
            await writer.write(b"abc" * 1000)
            await writer.write(b"def" * 1000)
        meta = await storage.get_meta("blob")
        if driver.capabilities.conditional:
            assert writer.etag is not None
            assert meta["etag"] == writer.etag
        if "size" in conformance_options.meta_fields:
            assert meta["size"] == 6000
        if ttl is not None:
            assert 90 < meta["ttl"] <= 100

    async def test_a_value_is_read_in_chunks_of_the_size_asked(self, storage: Storage) -> None:
        value = bytes(range(256)) * 100
        await storage.set_item_raw("blob", value)
        async with storage.open_read("blob", chunk_size=1000) as reader:
            chunks = [chunk async for chunk in reader]
        assert [len(chunk) for chunk in chunks] == [1000] * 25 + [600]
        assert b"".join(chunks) == value
        async with storage.open_read("blob", chunk_size=6400) as reader:
            assert [len(chunk) async for chunk in reader] == [6400] * 4

    async def test_a_stream_reads_the_value_it_opened(self, storage: Storage) -> None:
        old = os.urandom(30_000)
        await storage.set_item_raw("blob", old)
        async with storage.open_read("blob", chunk_size=10_000) as reader:
            first = await reader.read(10_000)
            await storage.set_item_raw("blob", b"new")
            await storage.remove_item("blob")
            assert first + await reader.read() == old

    async def test_streaming_a_value_twenty_times_the_memory_allowed_keeps_memory_flat(
        self, storage: Storage, driver_name: str
    ) -> None:
        if driver_name not in STREAMS_IN_PARTS:
            return  # holds values whole by design (see STREAMS_IN_PARTS)
        chunk, size = 64 * 1024, 40 * MB
        await _stream_in_and_out(storage, "warm", 4 * chunk, chunk)  # threads and caches
        tracemalloc.start()
        try:
            before, _ = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            written, read = await _stream_in_and_out(storage, "big", size, chunk)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert written == read
        assert (await storage.get_meta("big"))["size"] == size
        assert peak - before < size // 20, f"grew {(peak - before) / MB:.1f} MiB"
