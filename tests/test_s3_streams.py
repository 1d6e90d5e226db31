"""s3 streams and URLs: multipart uploads that only ever appear whole, reads in chunks, flat
memory for a value 20x larger than the process may grow, and presigned URLs."""

from __future__ import annotations

import asyncio
import hashlib
import time
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from drivers.s3 import S3Driver
from storage import InvalidArgumentError, Storage, create_storage
from tests.fixtures.s3 import S3_BUCKET
from tests.servers import MotoServer

MIB = 1024 * 1024
CHUNK = 256 * 1024


@pytest.fixture
async def parts(s3_shared_client: Any) -> AsyncIterator[Storage]:
    """A Storage on s3 whose multipart uploads use S3's smallest parts (5 MiB)."""
    driver = S3Driver(
        S3_BUCKET, f"t-{uuid.uuid4().hex[:12]}", client=s3_shared_client, part_size=5 * MIB
    )
    storage = create_storage(driver)
    yield storage
    await storage.clear()
    await storage.dispose()


def _uploads(client: Any, storage: Storage) -> list[str]:
    prefix = storage.get_mount().driver._prefix  # type: ignore[attr-defined]
    listed = client.list_multipart_uploads(Bucket=S3_BUCKET, Prefix=prefix)
    return [upload["Key"] for upload in listed.get("Uploads", [])]


def _chunks(count: int) -> Iterator[bytes]:
    """``count`` distinct chunks, each a new object (as a producer reading a file makes them)."""
    for index in range(count):
        yield index.to_bytes(8, "big") * (CHUNK // 8)


async def _write(storage: Storage, key: str, chunks: Iterator[bytes]) -> str | None:
    async with storage.open_write(key) as writer:
        for chunk in chunks:
            await writer.write(chunk)
    return writer.etag


async def test_a_value_smaller_than_a_part_is_stored_with_one_put(parts: Storage) -> None:
    etag = await _write(parts, "small", _chunks(4))
    assert etag is not None
    assert "-" not in etag  # a multipart ETag ends in -<number of parts>
    assert await parts.get_item_raw("small") == b"".join(_chunks(4))


async def test_a_large_value_goes_up_in_parts_and_reads_back_in_chunks(parts: Storage) -> None:
    count = 12 * MIB // CHUNK
    etag = await _write(parts, "large", _chunks(count))
    assert etag is not None
    assert etag.endswith("-3")  # 5 + 5 + 2 MiB
    assert (await parts.get_meta("large"))["etag"] == etag
    async with parts.open_read("large", chunk_size=CHUNK) as reader:
        read = [chunk async for chunk in reader]
    assert max(len(chunk) for chunk in read) <= CHUNK
    assert b"".join(read) == b"".join(_chunks(count))


async def test_a_failed_stream_aborts_its_upload_and_keeps_the_old_value(
    parts: Storage, s3_shared_client: Any
) -> None:
    await parts.set_item_raw("blob", b"old")

    async def fail_midway() -> None:
        async with parts.open_write("blob") as writer:
            for chunk in _chunks(7 * MIB // CHUNK):  # one part stored, the next one filling
                await writer.write(chunk)
            raise RuntimeError("the producer failed")

    with pytest.raises(RuntimeError):
        await fail_midway()
    assert await parts.get_item_raw("blob") == b"old"
    assert _uploads(s3_shared_client, parts) == []


async def test_a_cancelled_stream_aborts_its_upload(parts: Storage, s3_shared_client: Any) -> None:
    started = asyncio.Event()

    async def produce() -> None:
        async with parts.open_write("blob") as writer:
            for chunk in _chunks(6 * MIB // CHUNK):
                await writer.write(chunk)
            started.set()
            await asyncio.sleep(60)

    task = asyncio.ensure_future(produce())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await parts.has_item("blob") is False
    assert _uploads(s3_shared_client, parts) == []


async def test_a_streamed_value_with_a_ttl_expires(parts: Storage) -> None:
    # The TTL counts from the start of the multipart upload: it must outlast a 6 MiB upload
    # to moto on a loaded machine (0.5 s did not, once, in CI), so the value is read alive.
    ttl = 3.0
    started = time.monotonic()
    async with parts.open_write("brief", ttl=ttl) as writer:
        for chunk in _chunks(24):
            await writer.write(chunk)
    assert 0 < (await parts.get_meta("brief"))["ttl"] <= ttl
    await asyncio.sleep(max(0.0, started + ttl + 0.2 - time.monotonic()))
    assert await parts.has_item("brief") is False
    assert await parts.get_keys() == []


async def test_streaming_a_value_20x_the_memory_allowed_keeps_memory_flat(
    parts: Storage,
) -> None:
    # The process may grow by two 5 MiB parts (one uploading, one filling) and change.
    allowed = 16 * MIB
    count = 20 * allowed // CHUNK
    written = hashlib.sha256()
    tracemalloc.start()
    try:
        async with parts.open_write("huge") as writer:
            for chunk in _chunks(count):
                written.update(chunk)
                await writer.write(chunk)
        write_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        read = hashlib.sha256()
        async with parts.open_read("huge") as reader:
            async for chunk in reader:
                read.update(chunk)
        read_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert writer.size == count * CHUNK
    assert read.digest() == written.digest()
    assert write_peak < allowed, f"writing grew {write_peak / MIB:.1f} MiB"
    assert read_peak < allowed, f"reading grew {read_peak / MIB:.1f} MiB"


# -- presigned URLs ---------------------------------------------------------------------------


async def test_a_presigned_get_url_serves_the_stored_bytes_without_credentials(
    driver_s3: S3Driver,
) -> None:
    storage = create_storage(driver_s3)
    await storage.set_item_raw("report:2026", b"\x00 the bytes \xff")
    url = await storage.get_url("report:2026", expires=60)
    async with httpx.AsyncClient() as http:
        response = await http.get(url)
    assert response.status_code == 200
    assert response.content == b"\x00 the bytes \xff"


async def test_a_presigned_put_url_stores_the_bytes_sent_to_it(driver_s3: S3Driver) -> None:
    storage = create_storage(driver_s3)
    url = await storage.get_url("upload", expires=60, method="PUT")
    async with httpx.AsyncClient() as http:
        assert (await http.put(url, content=b"uploaded")).status_code == 200
    assert await storage.get_item_raw("upload") == b"uploaded"


async def test_a_presigned_url_lives_the_seconds_asked_up_to_seven_days(
    s3_server: MotoServer,
) -> None:
    driver = S3Driver(
        S3_BUCKET,
        endpoint_url=s3_server.endpoint_url,
        region="us-east-1",
        access_key_id="testing",
        secret_access_key="testing",
    )
    async with create_storage(driver) as storage:
        url = await storage.get_url("k", expires=90.2)
        assert httpx.URL(url).params["X-Amz-Expires"] == "91"  # SigV4; whole seconds, rounded up
        with pytest.raises(InvalidArgumentError):
            await storage.get_url("k", expires=8 * 24 * 3600)
