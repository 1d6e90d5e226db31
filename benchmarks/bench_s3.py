"""S3: batches against the sequential loop, a streamed listing of 10,000 keys, and a 256 MB
value streamed up and down against boto3's own file copy (upload_file / download_file).

Starts its own S3-compatible server (moto's server mode, over HTTP) like the test fixtures.
moto serves from one Python process, so it caps the rate every subject here can reach.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from typing import Any

from drivers.s3 import S3Driver
from storage import create_storage
from tests.servers import MotoServer

from .harness import Bench, Subject

BUCKET = "unistorage-bench"
VALUE: dict[str, Any] = {"id": 1, "name": "user-1", "tags": ["a", "b"], "score": 1.5}
KEYS = 1000
LISTED = 10_000
BATCH = "1000 keys set+get"
LISTING = "listing 10,000 keys"
STREAMED_MB = 256
UPLOAD = "256 MB file up (MB)"
DOWNLOAD = "256 MB file down (MB)"
_READ = 1024 * 1024  # bytes per file read, as a producer of chunks


async def _peak_kib(body: Callable[[], Awaitable[int]]) -> float:
    """The tracemalloc peak of one run of ``body``, in KiB."""
    tracemalloc.start()
    try:
        await body()
        return tracemalloc.get_traced_memory()[1] / 1024
    finally:
        tracemalloc.stop()


async def _batches(bench: Bench, client: Any, count: int) -> None:
    keys = [f"batch:{i:05d}" for i in range(count)]
    body = b'{"id":1,"name":"user-1","tags":["a","b"],"score":1.5}'

    async def raw_loop() -> int:
        def run() -> None:
            for key in keys:
                client.put_object(Bucket=BUCKET, Key=f"raw/{key}", Body=body)
            for key in keys:
                client.get_object(Bucket=BUCKET, Key=f"raw/{key}")["Body"].read()

        await asyncio.to_thread(run)
        return 2 * count

    storage = create_storage(S3Driver(BUCKET, "ours", client=client))

    async def ours_loop() -> int:
        for key in keys:
            await storage.set_item(key, VALUE)
        for key in keys:
            await storage.get_item(key)
        return 2 * count

    async def ours_batch() -> int:
        await storage.set_items(dict.fromkeys(keys, VALUE))
        await storage.get_items(keys)
        return 2 * count

    await bench.measure(BATCH, "raw boto3 sequential loop", raw_loop, repeat=1, floor=True)
    await bench.measure(BATCH, "unistorage set_item/get_item loop", ours_loop, repeat=1)
    await bench.measure(BATCH, "unistorage set_items/get_items", ours_batch, repeat=1, ours=True)
    await storage.dispose()


async def _listing(bench: Bench, client: Any, count: int) -> None:
    driver = S3Driver(BUCKET, "listing", client=client)
    started = time.perf_counter()
    for start in range(0, count, 1000):
        await driver.set_items(
            [(f"k:{i:06d}", b"") for i in range(start, min(count, start + 1000))]
        )
    print(f"  (seeded {count:,} objects in {time.perf_counter() - started:.0f} s)")

    async def raw_list() -> int:
        def run() -> int:
            pages = client.get_paginator("list_objects_v2").paginate(
                Bucket=BUCKET, Prefix="listing/"
            )
            return len([item["Key"] for page in pages for item in page.get("Contents", [])])

        return await asyncio.to_thread(run)

    async def ours_stream() -> int:
        found = 0
        async for _ in driver.iter_keys():
            found += 1
        return found

    raw_peak = await _peak_kib(raw_list)
    ours_peak = await _peak_kib(ours_stream)
    await bench.measure(
        LISTING, "raw boto3 paginator (list)", raw_list, repeat=2, unit="keys", floor=True,
        note=f"tracemalloc peak {raw_peak:,.0f} KiB",
    )  # fmt: skip
    await bench.measure(
        LISTING, "unistorage iter_keys (streamed)", ours_stream, repeat=2, unit="keys",
        ours=True, note=f"tracemalloc peak {ours_peak:,.0f} KiB",
    )  # fmt: skip
    print(f"  tracemalloc peak: raw list {raw_peak:,.0f} KiB, streamed {ours_peak:,.0f} KiB")
    await driver.clear()
    await driver.dispose()


def _random_file(path: str, megabytes: int) -> None:
    with open(path, "wb") as out:
        for _ in range(megabytes):
            out.write(os.urandom(1024 * 1024))


async def _streams(bench: Bench, client: Any, megabytes: int) -> None:
    """A file copied into S3 and back: boto3's managed transfer (multipart, 10 threads) against
    `Storage.open_write` fed from the file and `Storage.open_read` written to one."""
    directory = tempfile.mkdtemp(prefix="unistorage-bench-")
    source, target = os.path.join(directory, "source"), os.path.join(directory, "target")
    await asyncio.to_thread(_random_file, source, megabytes)
    storage = create_storage(S3Driver(BUCKET, "streams", client=client))

    async def raw_up() -> int:
        await asyncio.to_thread(client.upload_file, source, BUCKET, "raw/streamed")
        return megabytes

    async def raw_down() -> int:
        await asyncio.to_thread(client.download_file, BUCKET, "raw/streamed", target)
        return megabytes

    async def ours_up() -> int:
        file = await asyncio.to_thread(open, source, "rb")
        try:
            async with storage.open_write("streamed") as writer:
                while chunk := await asyncio.to_thread(file.read, _READ):
                    await writer.write(chunk)
        finally:
            await asyncio.to_thread(file.close)
        return megabytes

    async def ours_down() -> int:
        file = await asyncio.to_thread(open, target, "wb")
        try:
            async with storage.open_read("streamed", chunk_size=_READ) as reader:
                async for chunk in reader:
                    await asyncio.to_thread(file.write, chunk)
        finally:
            await asyncio.to_thread(file.close)
        return megabytes

    try:
        await bench.rounds(
            UPLOAD,
            [
                Subject("raw boto3 upload_file", raw_up, floor=True, unit="MB"),
                Subject("unistorage open_write", ours_up, ours=True, unit="MB"),
            ],
            rounds=3,
        )
        await bench.rounds(
            DOWNLOAD,
            [
                Subject("raw boto3 download_file", raw_down, floor=True, unit="MB"),
                Subject("unistorage open_read", ours_down, ours=True, unit="MB"),
            ],
            rounds=3,
        )
    finally:
        await storage.clear()
        await storage.dispose()
        shutil.rmtree(directory, ignore_errors=True)


async def run(bench: Bench) -> None:
    server = MotoServer().start()
    try:
        client = server.client()
        client.create_bucket(Bucket=BUCKET)
        await _batches(bench, client, bench.n(KEYS))
        await _listing(bench, client, bench.n(LISTED))
        await _streams(bench, client, bench.n(STREAMED_MB))
    finally:
        server.close()
