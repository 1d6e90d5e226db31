"""Cost as work grows: where each curve bends, and why (docs/benchmarks.md says it).

- value size: a set + get of one raw value from 100 B to 16 MB, on fs, sqlite, redis and s3
  (moto over loopback); time per operation and throughput.
- key count: listing every key (``get_keys``, and ``iter_keys`` streamed) of 1,000 to 100,000
  keys (``--full``: 1,000,000) on memory, sqlite, fs and redis; time and the tracemalloc peak
  of the listing.
- clients: requests/s and p99 of ``unistorage serve`` (memory, the chosen ASGI server) and of
  the raw ASGI floor on the same server, GET of 1 KB at 1 to 1,000 connections (wrk).

Each point is the median of its own rounds; there is no peer to divide by, so the figures
here are rates, not ratios (compare their shape, not their value, between runs). The curves
are drawn in results/scaling.png.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

from drivers.fs import FsDriver
from drivers.memory import MemoryDriver
from drivers.redis import RedisDriver
from drivers.s3 import S3Driver
from drivers.sqlite import SqliteDriver
from storage import Storage, create_storage
from storage.serve import choose_server
from tests.servers import MotoServer, RedisServer

from .chart import curves
from .harness import Bench, Result, Sample, Subject, peak_kib
from .history import RESULTS
from .http_servers import Served, floor_server, ours_server
from .loadgen import Wrk, wrk_available

SIZES = (100, 1_000, 10_000, 100_000, 1_000_000, 4_000_000, 16_000_000)
KEY_COUNTS = (1_000, 10_000, 100_000)
FULL_KEY_COUNTS = (*KEY_COUNTS, 1_000_000)
CLIENTS = (1, 4, 16, 64, 256, 1000)
#: Bytes moved per round of the value-size case (set + get), so a round lasts a fraction of a
#: second at any size; at least two pairs, at most 200.
ROUND_BYTES = 32_000_000
ROUNDS = 3
BUCKET = "unistorage-scaling"
SIZE_CASE = "value size"
LIST_CASE = "listing"
CLIENT_CASE = "server clients"


def _label(size: int) -> str:
    for unit, scale in (("MB", 1_000_000), ("KB", 1_000)):
        if size >= scale:
            return f"{size // scale} {unit}"
    return f"{size} B"


Opened = Callable[[], AbstractAsyncContextManager[Storage]]


def _stores(directory: Path, redis: RedisServer, moto: MotoServer | None) -> dict[str, Opened]:
    """Name -> a context manager opening a fresh Storage of that driver."""

    @asynccontextmanager
    async def fs() -> AsyncIterator[Storage]:
        base = tempfile.mkdtemp(dir=directory)
        try:
            async with create_storage(FsDriver(base)) as storage:
                yield storage
        finally:
            shutil.rmtree(base, ignore_errors=True)

    @asynccontextmanager
    async def sqlite() -> AsyncIterator[Storage]:
        base = tempfile.mkdtemp(dir=directory)
        try:
            async with create_storage(SqliteDriver(os.path.join(base, "db.sqlite"))) as storage:
                yield storage
        finally:
            shutil.rmtree(base, ignore_errors=True)

    @asynccontextmanager
    async def redis_store() -> AsyncIterator[Storage]:
        async with create_storage(RedisDriver(redis.url, base="scaling")) as storage:
            try:
                yield storage
            finally:
                await storage.clear()

    @asynccontextmanager
    async def memory() -> AsyncIterator[Storage]:
        async with create_storage(MemoryDriver()) as storage:
            yield storage

    stores: dict[str, Opened] = {"memory": memory, "fs": fs, "sqlite": sqlite}
    stores["redis"] = redis_store
    if moto is not None:
        client = moto.client()
        client.create_bucket(Bucket=BUCKET)

        @asynccontextmanager
        async def s3() -> AsyncIterator[Storage]:
            async with create_storage(S3Driver(BUCKET, "scaling", client=client)) as storage:
                try:
                    yield storage
                finally:
                    await storage.clear()

        stores["s3"] = s3
    return stores


async def _sizes(bench: Bench, stores: dict[str, Opened]) -> None:
    for name in ("fs", "sqlite", "redis", "s3"):
        if name not in stores:
            continue
        async with stores[name]() as storage:
            for size in SIZES:
                value = os.urandom(size)
                pairs = max(2, min(200, bench.n(ROUND_BYTES) // size))

                async def body(value: bytes = value, pairs: int = pairs) -> int:
                    for i in range(pairs):
                        await storage.set_item_raw(f"v:{i}", value)
                        await storage.get_item_raw(f"v:{i}")
                    return pairs * 2

                subject = Subject(f"{name} {_label(size)}", body)
                await bench.rounds(f"{SIZE_CASE}: {name}", [subject], rounds=ROUNDS)


async def _seed(storage: Storage, count: int, have: int) -> None:
    for start in range(have, count, 1000):
        await storage.set_items_raw(
            (f"k:{i:07d}", b"1") for i in range(start, min(count, start + 1000))
        )


async def _listing(bench: Bench, stores: dict[str, Opened], counts: tuple[int, ...]) -> None:
    for name in ("memory", "sqlite", "fs", "redis"):
        async with stores[name]() as storage:
            have = 0
            for count in counts:
                count = bench.n(count)
                started = time.perf_counter()
                await _seed(storage, count, have)
                have = count
                print(f"  ({name}: seeded {count:,} keys in {time.perf_counter() - started:.1f} s)")

                async def listed(storage: Storage = storage) -> int:
                    return len(await storage.get_keys())

                async def streamed(storage: Storage = storage) -> int:
                    found = 0
                    async for _ in storage.iter_keys():
                        found += 1
                    return found

                peaks = [await peak_kib(listed), await peak_kib(streamed)]
                results = await bench.rounds(
                    f"{LIST_CASE}: {name} {count:,} keys",
                    [
                        Subject(f"{name} get_keys", listed, floor=True, unit="keys"),
                        Subject(f"{name} iter_keys", streamed, unit="keys"),
                    ],
                    rounds=ROUNDS,
                )
                for result, peak in zip(results, peaks, strict=True):
                    result.peak_kib = peak
                    result.note = f"tracemalloc peak {peak:,.0f} KiB"
                    print(f"    {result.subject}: peak {peak:,.0f} KiB", flush=True)


async def _clients(bench: Bench, directory: Path) -> None:
    if not wrk_available():
        return
    server = choose_server("auto")
    wrk = Wrk()
    served: list[Served] = []
    try:
        floor = floor_server("memory", server, directory)
        served.append(floor)
        ours = ours_server("memory", server, directory)
        served.append(ours)
        for target in served:  # the keys the GETs read
            await wrk.run(target.url, "PUT", 16, 1)
        for connections in CLIENTS:

            def subject(target: Served, connections: int = connections, **flags: bool) -> Subject:
                async def body() -> Sample:
                    return await wrk.run(target.url, "GET", connections, 2)

                return Subject(target.name, body, unit="req", **flags)

            await bench.rounds(
                f"{CLIENT_CASE}: memory GET 1 KB, {connections} conns",
                [subject(floor, floor=True), subject(ours, ours=True)],
                rounds=ROUNDS,
            )
    finally:
        for each in served:
            each.stop()
        wrk.close()


def _chart(results: list[Result]) -> Path | None:
    sizes: dict[str, list[tuple[float, float]]] = {}
    listing: dict[str, list[tuple[float, float]]] = {}
    peaks: dict[str, list[tuple[float, float]]] = {}
    clients: dict[str, list[tuple[float, float]]] = {}
    for row in results:
        if row.case.startswith(SIZE_CASE) and row.rate:
            name, size = row.subject.split(" ", 1)
            number, unit = size.split()
            scale = {"B": 1, "KB": 1_000, "MB": 1_000_000}[unit]
            sizes.setdefault(name, []).append((int(number) * scale, 1e6 / row.rate))
        elif row.case.startswith(LIST_CASE) and row.rate:
            keys = row.ops
            listing.setdefault(row.subject, []).append((keys, keys / row.rate))
            if row.peak_kib is not None:
                peaks.setdefault(row.subject, []).append((keys, row.peak_kib / 1024))
        elif row.case.startswith(CLIENT_CASE):
            connections = int(row.case.rsplit(" ", 2)[1])
            clients.setdefault(row.subject, []).append((connections, row.rate))
    panels = [
        ("value size (bytes)", "µs per set or get", sizes),
        ("keys", "seconds to list them all", listing),
        ("keys", "listing's peak memory (MiB)", peaks),
        ("concurrent connections", "requests/s", clients),
    ]
    return curves([panel for panel in panels if panel[2]], RESULTS / "scaling.png")


async def run(bench: Bench) -> None:
    directory = Path(tempfile.mkdtemp(prefix="bench-scaling-"))
    redis = RedisServer().start()
    moto = MotoServer().start()
    try:
        stores = _stores(directory, redis, moto)
        await _sizes(bench, stores)
        await _listing(bench, stores, FULL_KEY_COUNTS if bench.full else KEY_COUNTS)
        await _clients(bench, directory)
    finally:
        moto.close()
        redis.close()
        await asyncio.to_thread(shutil.rmtree, directory, True)
    path = _chart(bench.results)
    if path is not None:
        print(f"  (curves in {path})")
