"""Storage + memory driver against a raw dict with json (the floor), the Python peers and
unstorage's memory driver on node, in alternating rounds.

Goals (issue 16): sequential at least 1.2x unstorage on node and 2x the fastest Python peer.
"""

from __future__ import annotations

import json
from typing import Any

from drivers.memory import MemoryDriver
from storage import create_storage

from . import workload
from .harness import Bench, Body, Subject
from .node_rounds import NodeRounds, node_available
from .workload import BATCH, BATCHES, SEQ, VALUE

SEQUENTIAL = 20_000
ROUNDS = 20


def _raw_dict(n: int, rounds: int) -> tuple[Body, Body]:
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

    return sequential, batches


def _litestar(n: int, rounds: int) -> tuple[Body, Body]:
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

    return sequential, batches


def _aiocache(n: int, rounds: int) -> tuple[Body, Body]:
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

    return sequential, batches


def _py_key_value(n: int, rounds: int) -> tuple[Body, Body]:
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

    return sequential, batches


async def run(bench: Bench) -> None:
    n, rounds = bench.n(SEQUENTIAL), bench.n(ROUNDS)
    storage = create_storage(MemoryDriver())
    peers = {
        "raw dict + json": _raw_dict(n, rounds),
        "litestar MemoryStore + json": _litestar(n, rounds),
        "aiocache SimpleMemoryCache json": _aiocache(n, rounds),
        "py-key-value-aio MemoryStore": _py_key_value(n, rounds),
    }
    node = await NodeRounds("memory.mjs", str(n), str(rounds)).start() if node_available() else None
    try:
        for index, case, ours in (
            (0, SEQ, lambda: workload.sequential(storage, n)),
            (1, BATCHES, lambda: workload.batches(storage, rounds)),
        ):
            subjects = [
                Subject(name, bodies[index], floor=name == "raw dict + json")
                for name, bodies in peers.items()
            ]
            subjects.insert(1, Subject("unistorage memory", ours, ours=True))
            if node is not None:
                subjects.append(
                    node.subject(("sequential", "batches")[index], "unstorage memory (node)")
                )
            await bench.rounds(case, subjects)
    finally:
        if node is not None:
            await node.close()
        await storage.dispose()
