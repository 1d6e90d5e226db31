"""Layers: what each layer costs over bare memory and bare redis, in alternating rounds.

Every subject is a Storage over a layer stacked on the same kind of driver; the floor is the
bare driver. Ratios are computed round by round (`Bench.rounds`), so they hold on a noisy
machine. Goals (issue 11): the pass-through `Layer` within 5% of bare memory; Encrypt and
Compress each within 1.5x of bare redis with 1 KB values; Compress stores 100 KB JSON at least
3x smaller. Starts its own redis-server.
"""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Callable
from typing import Any

from drivers.memory import MemoryDriver
from drivers.redis import RedisDriver
from storage import Driver, Layer, Storage, create_storage
from storage.layers import (
    Cache,
    Compress,
    DefaultTTL,
    Encrypt,
    Fallback,
    Limit,
    Retry,
    Stats,
    Timeout,
    Trace,
)
from tests.servers import RedisServer

from .harness import Bench, Subject
from .workload import SEQ, VALUE

MEMORY_OPS = 4_000
REDIS_OPS = 600
BIG_BATCH = 20
ROUNDS = 7

KEY = base64.urlsafe_b64encode(os.urandom(32)).decode()
#: About 1 KB of JSON that compresses as real documents do (repeated field names, text).
KILOBYTE: dict[str, Any] = {
    "items": [{"sku": f"sku-{n:04d}", "name": f"item number {n}", "qty": n} for n in range(22)]
}
#: About 100 KB of JSON.
HUNDRED_KB: dict[str, Any] = {
    "rows": [{"id": n, "name": f"user-{n}", "email": f"user{n}@example.com"} for n in range(1700)]
}

Stack = Callable[[Driver], Driver]
LAYERS: list[tuple[str, Stack]] = [
    ("Layer (pass-through)", Layer),
    ("DefaultTTL", lambda d: DefaultTTL(d, ttl=3600)),
    ("Limit", lambda d: Limit(d, max_value_size=1 << 20)),
    ("Encrypt", lambda d: Encrypt(d, keys=[KEY])),
    ("Compress", lambda d: Compress(d, min_size=512)),
    ("Stats", Stats),
    ("Trace (API, no SDK)", Trace),
    ("Retry", Retry),
    ("Timeout", lambda d: Timeout(d, seconds=5)),
    ("Cache (lru)", Cache),
    ("Fallback (memory)", lambda d: Fallback(d, MemoryDriver())),
    ("Retry(Compress(Encrypt))", lambda d: Retry(Compress(Encrypt(d, keys=[KEY]), min_size=512))),
]


def _sequential(storage: Storage, value: Any, n: int) -> Callable[[], Any]:
    async def body() -> int:
        for i in range(n):
            await storage.set_item(f"seq:{i}", value)
            await storage.get_item(f"seq:{i}")
        return n * 2

    return body


async def _layer_costs(
    bench: Bench, case: str, make: Callable[[], Driver], value: Any, n: int
) -> None:
    storages = [("bare driver", create_storage(make()), True)]
    storages += [(name, create_storage(stack(make())), False) for name, stack in LAYERS]
    subjects = [
        Subject(name, _sequential(storage, value, n), floor=floor, ours=not floor)
        for name, storage, floor in storages
    ]
    try:
        await bench.rounds(case, subjects, rounds=ROUNDS)
    finally:
        for _, storage, _ in storages:
            await storage.dispose()


async def _read_heavy(bench: Bench, url: str, n: int) -> None:
    """What Cache is for: a key written once and read many times (nine gets per set)."""
    bare = create_storage(RedisDriver(url, base=f"r{uuid.uuid4().hex[:8]}"))
    cached = create_storage(Cache(RedisDriver(url, base=f"h{uuid.uuid4().hex[:8]}")))

    def body(storage: Storage) -> Callable[[], Any]:
        async def run() -> int:
            for i in range(n):
                await storage.set_item(f"hot:{i % 50}", KILOBYTE)
                for _ in range(9):
                    await storage.get_item(f"hot:{i % 50}")
            return n * 10

        return run

    try:
        await bench.rounds(
            "redis: 1 set + 9 gets, 1 KB values",
            [
                Subject("bare redis", body(bare), floor=True),
                Subject("Cache (lru)", body(cached), ours=True),
            ],
            rounds=ROUNDS,
        )
    finally:
        await bare.dispose()
        await cached.dispose()


async def _compressed_batches(bench: Bench, url: str) -> None:
    bare = RedisDriver(url, base=f"b{uuid.uuid4().hex[:8]}")
    inner = RedisDriver(url, base=f"c{uuid.uuid4().hex[:8]}")
    plain, packed = create_storage(bare), create_storage(Compress(inner))
    items = {f"doc:{n}": HUNDRED_KB for n in range(BIG_BATCH)}

    def batches(storage: Storage) -> Callable[[], Any]:
        async def body() -> int:
            await storage.set_items(items)
            await storage.get_items(list(items))
            return 2 * len(items)

        return body

    try:
        results = await bench.rounds(
            "batches of 20 x 100 KB JSON (redis)",
            [
                Subject("bare redis", batches(plain), floor=True),
                Subject("Compress", batches(packed), ours=True),
            ],
            rounds=ROUNDS,
        )
        stored_plain = len(await bare.get_item("doc:0") or b"")
        stored_packed = len(await inner.get_item("doc:0") or b"")
        ratio = stored_plain / max(stored_packed, 1)
        results[
            -1
        ].note = f"stores {ratio:.1f}x fewer bytes ({stored_plain:,} -> {stored_packed:,})"
        print(f"  Compress stores {ratio:.1f}x fewer bytes per 100 KB value")
    finally:
        await plain.clear()
        await packed.clear()
        await plain.dispose()
        await packed.dispose()


async def run(bench: Bench) -> None:
    await _layer_costs(bench, f"memory: {SEQ}", MemoryDriver, VALUE, bench.n(MEMORY_OPS))
    server = RedisServer().start()
    try:

        def redis() -> Driver:
            return RedisDriver(server.url, base=f"l{uuid.uuid4().hex[:8]}")

        await _layer_costs(bench, f"redis: {SEQ}, 1 KB values", redis, KILOBYTE, bench.n(REDIS_OPS))
        await _read_heavy(bench, server.url, bench.n(REDIS_OPS // 5))
        await _compressed_batches(bench, server.url)
    finally:
        server.close()
