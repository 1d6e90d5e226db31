"""Storage + memory driver against a raw dict with json (the floor) and the Python peers."""

from __future__ import annotations

import json
from typing import Any

from drivers.memory import MemoryDriver
from storage import create_storage

from . import workload
from .harness import Bench, node_available, run_node
from .workload import BATCH, BATCHES, SEQ, VALUE

SEQUENTIAL = 20_000
ROUNDS = 20


async def _raw_dict(bench: Bench, n: int, rounds: int) -> None:
    data: dict[str, str] = {}

    async def set_item(key: str, value: Any) -> None:
        data[key] = json.dumps(value)

    async def get_item(key: str) -> Any:
        raw = data.get(key)
        return None if raw is None else json.loads(raw)

    async def sequential() -> int:
        for i in range(n):
            await set_item(f"user:{i}", VALUE)
            await get_item(f"user:{i}")
        return n * 2

    async def batches() -> int:
        for _ in range(rounds):
            for key in BATCH:
                data[key] = json.dumps(VALUE)
            [json.loads(data[key]) for key in BATCH]
        return rounds * 2000

    await bench.measure(SEQ, "raw dict + json", sequential, floor=True)
    await bench.measure(BATCHES, "raw dict + json", batches, floor=True)


async def _unistorage(bench: Bench, n: int, rounds: int) -> None:
    storage = create_storage(MemoryDriver())

    await bench.measure(
        SEQ, "unistorage memory", lambda: workload.sequential(storage, n), ours=True
    )
    await bench.measure(
        BATCHES, "unistorage memory", lambda: workload.batches(storage, rounds), ours=True
    )
    await storage.dispose()


async def _litestar(bench: Bench, n: int, rounds: int) -> None:
    from litestar.stores.memory import MemoryStore

    store = MemoryStore()

    async def sequential() -> int:
        for i in range(n):
            await store.set(f"user:{i}", json.dumps(VALUE))
            raw = await store.get(f"user:{i}")
            json.loads(raw or b"null")
        return n * 2

    async def batches() -> int:  # no batch API: a loop is what a user would write
        for _ in range(rounds):
            for key in BATCH:
                await store.set(key, json.dumps(VALUE))
            for key in BATCH:
                json.loads(await store.get(key) or b"null")
        return rounds * 2000

    await bench.measure(SEQ, "litestar MemoryStore + json", sequential)
    await bench.measure(BATCHES, "litestar MemoryStore + json", batches)


async def _aiocache(bench: Bench, n: int, rounds: int) -> None:
    from aiocache import SimpleMemoryCache
    from aiocache.serializers import JsonSerializer

    cache = SimpleMemoryCache(serializer=JsonSerializer())

    async def sequential() -> int:
        for i in range(n):
            await cache.set(f"user:{i}", VALUE)
            await cache.get(f"user:{i}")
        return n * 2

    async def batches() -> int:
        pairs = [(key, VALUE) for key in BATCH]
        for _ in range(rounds):
            await cache.multi_set(pairs)
            await cache.multi_get(BATCH)
        return rounds * 2000

    await bench.measure(SEQ, "aiocache SimpleMemoryCache json", sequential)
    await bench.measure(BATCHES, "aiocache SimpleMemoryCache json", batches)


async def _py_key_value(bench: Bench, n: int, rounds: int) -> None:
    from key_value.aio.stores.memory import MemoryStore

    store = MemoryStore()

    async def sequential() -> int:
        for i in range(n):
            await store.put(f"user:{i}", VALUE)
            await store.get(f"user:{i}")
        return n * 2

    async def batches() -> int:
        values = [VALUE] * len(BATCH)
        for _ in range(rounds):
            await store.put_many(BATCH, values)
            await store.get_many(BATCH)
        return rounds * 2000

    await bench.measure(SEQ, "py-key-value-aio MemoryStore", sequential)
    await bench.measure(BATCHES, "py-key-value-aio MemoryStore", batches)


def _node(bench: Bench, n: int, rounds: int) -> None:
    if not node_available():
        print(
            "  (node or benchmarks/node/node_modules missing: `npm install --prefix benchmarks/node`)"
        )
        return
    for line in run_node("memory.mjs", str(n), str(rounds)):
        bench.add(line["case"], line["subject"], line["ops"], line["seconds"])


async def run(bench: Bench) -> None:
    n, rounds = bench.n(SEQUENTIAL), bench.n(ROUNDS)
    await _raw_dict(bench, n, rounds)
    await _unistorage(bench, n, rounds)
    await _litestar(bench, n, rounds)
    await _aiocache(bench, n, rounds)
    await _py_key_value(bench, n, rounds)
    _node(bench, n, rounds)
