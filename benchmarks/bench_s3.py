"""S3: batches against the sequential loop, directly and through a proxy adding real S3's
latency, a streamed listing of 10,000 keys, and a 256 MB value streamed up and down against
boto3's own file copy (upload_file / download_file).

moto on loopback answers in about 2 ms of CPU, so without latency a ratio measures CPU, not
overlap; `tests.faults.FaultProxy` adds 20 ms each way (loopback only), in a process of its own
so that forwarding bytes never takes the GIL from the Python subjects. In each case the
floor is our own sequential loop; beside it, our batches, raw boto3 sequentially and with a
thread pool, and unstorage's s3 driver on node (aws4fetch), all in alternating rounds.
Goals (issue 16): through the proxy, batches of 1000 at least 8x the sequential loop, and
ahead of unstorage's s3 driver on node with and without the proxy.

Starts its own S3-compatible server (moto's server mode, over HTTP) like the test fixtures.
moto serves from one Python process, so it caps the rate every subject here can reach.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from drivers._s3_client import DEFAULT_WORKERS
from drivers.s3 import S3Driver
from storage import Storage, create_storage
from tests.servers import MotoServer

from .harness import Bench, Body, Subject, peak_kib
from .node_rounds import NodeRounds, node_available

BUCKET = "unistorage-bench"
VALUE: dict[str, Any] = {"id": 1, "name": "user-1", "tags": ["a", "b"], "score": 1.5}
KEYS = 1000
LISTED = 10_000
BODY = b'{"id":1,"name":"user-1","tags":["a","b"],"score":1.5}'
#: Latency added by the proxy each way: a round trip of 40 ms, as real S3 from a nearby region.
DELAY_MS = 20
#: Threads of the raw boto3 pool, and botocore's pool size: the driver's default.
WORKERS = DEFAULT_WORKERS
#: Keys of the sequential loops; fewer through the proxy (each call waits a round trip).
SEQUENTIAL_DIRECT = 200
SEQUENTIAL_PROXIED = 40
ROUNDS = 5
LISTING = "listing 10,000 keys"
STREAMED_MB = 256
UPLOAD = "256 MB file up (MB)"
DOWNLOAD = "256 MB file down (MB)"
_READ = 1024 * 1024  # bytes per file read, as a producer of chunks


_PROXY = """
import sys, time
from tests.faults import FaultProxy
proxy = FaultProxy("127.0.0.1", int(sys.argv[1])).start()
proxy.delay(float(sys.argv[2]))
print(proxy.url, flush=True)
sys.stdin.read()  # until the benchmark closes it
proxy.close()
"""


def _latency_proxy(port: int, delay_ms: float) -> tuple[subprocess.Popen[str], str]:
    """A `FaultProxy` to ``port`` adding ``delay_ms`` each way, in its own process; returns
    the process (close its stdin to end it) and the proxy's URL."""
    source = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    process = subprocess.Popen(
        [sys.executable, "-c", _PROXY, str(port), str(delay_ms)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=source,
        env={**os.environ, "PYTHONPATH": source},
    )  # fmt: skip
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


def _client(endpoint: str) -> Any:
    """A boto3 S3 client for ``endpoint``, configured as the test fixtures' (moto accepts any
    credentials), with a pool as large as the raw thread pool's."""
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(
            max_pool_connections=WORKERS,
            retries={"max_attempts": 2},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )


def _raw(client: Any, prefix: str, keys: list[str], threads: int) -> Body:
    """Raw boto3: every put, then every get, through a pool of ``threads`` threads."""

    def put(key: str) -> None:
        client.put_object(Bucket=BUCKET, Key=f"{prefix}/{key}", Body=BODY)

    def get(key: str) -> None:
        client.get_object(Bucket=BUCKET, Key=f"{prefix}/{key}")["Body"].read()

    def run() -> int:
        if threads == 1:
            for key in keys:
                put(key)
            for key in keys:
                get(key)
        else:
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(put, keys))
                list(pool.map(get, keys))
        return 2 * len(keys)

    async def body() -> int:
        return await asyncio.to_thread(run)

    return body


def _ours(storage: Storage, keys: list[str], batched: bool) -> Body:
    async def body() -> int:
        if batched:
            await storage.set_items(dict.fromkeys(keys, VALUE))
            await storage.get_items(keys)
        else:
            for key in keys:
                await storage.set_item(key, VALUE)
            for key in keys:
                await storage.get_item(key)
        return 2 * len(keys)

    return body


async def _batches(
    bench: Bench, endpoint: str, node: NodeRounds | None, where: str, sequential: int, batch: int
) -> None:
    """The sequential loop (the floor) against batches, ours and raw boto3's, and node's."""
    client = _client(endpoint)
    # A shared machine can stall moto for seconds: a call waits for a thread as long as it
    # takes (the suite measures speed, not the driver's give-up; tests cover that).
    storage = create_storage(S3Driver(BUCKET, f"ours-{where}", client=client, pool_timeout=120))
    loop_keys = [f"seq:{i:05d}" for i in range(sequential)]
    batch_keys = [f"batch:{i:05d}" for i in range(batch)]
    loops = [
        Subject("unistorage set_item/get_item loop", _ours(storage, loop_keys, False), floor=True),
        Subject("raw boto3 sequential loop", _raw(client, f"raw-{where}", loop_keys, 1)),
    ]
    batches = [
        Subject("unistorage set_items/get_items", _ours(storage, batch_keys, True), ours=True),
        Subject(f"raw boto3, {WORKERS} threads", _raw(client, f"raw-{where}", batch_keys, WORKERS)),
    ]
    if node is not None:
        loops.append(node.subject("sequential", "unstorage s3 loop (node)", where=where))
        batches.append(
            node.subject("batches", "unstorage s3 setItems/getItems (node)", where=where)
        )
    case = f"{batch} keys set+get, {where}"
    try:
        await bench.rounds(case, loops + batches, rounds=ROUNDS)
    finally:
        client.close()
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

    raw_peak = await peak_kib(raw_list)
    ours_peak = await peak_kib(ours_stream)
    raw, ours = await bench.rounds(
        LISTING,
        [
            Subject("raw boto3 paginator (list)", raw_list, floor=True, unit="keys"),
            Subject("unistorage iter_keys (streamed)", ours_stream, ours=True, unit="keys"),
        ],
        rounds=5,
    )
    raw.note = f"tracemalloc peak {raw_peak:,.0f} KiB"
    ours.note = f"tracemalloc peak {ours_peak:,.0f} KiB"
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
            rounds=5,
        )
        await bench.rounds(
            DOWNLOAD,
            [
                Subject("raw boto3 download_file", raw_down, floor=True, unit="MB"),
                Subject("unistorage open_read", ours_down, ours=True, unit="MB"),
            ],
            rounds=5,
        )
    finally:
        await storage.clear()
        await storage.dispose()
        shutil.rmtree(directory, ignore_errors=True)


async def run(bench: Bench) -> None:
    server = MotoServer().start()
    proxy, proxy_url = _latency_proxy(server.port, DELAY_MS)
    node = None
    try:
        client = server.client()
        client.create_bucket(Bucket=BUCKET)
        if node_available():
            node = await NodeRounds(
                "s3.mjs",
                json.dumps({"direct": server.endpoint_url, "proxied": proxy_url}),
                BUCKET,
                str(bench.n(SEQUENTIAL_DIRECT)),
                str(bench.n(SEQUENTIAL_PROXIED)),
                str(bench.n(KEYS)),
            ).start()
        await _batches(
            bench, server.endpoint_url, node, "direct", bench.n(SEQUENTIAL_DIRECT), bench.n(KEYS)
        )
        await _batches(
            bench,
            proxy_url,
            node,
            f"{DELAY_MS} ms each way",
            bench.n(SEQUENTIAL_PROXIED),
            bench.n(KEYS),
        )
        await _listing(bench, client, bench.n(LISTED))
        await _streams(bench, client, bench.n(STREAMED_MB))
    finally:
        if node is not None:
            await node.close()
        assert proxy.stdin is not None
        proxy.stdin.close()
        proxy.wait(timeout=10)
        server.close()
