"""Redis: the redis driver against raw redis-py asyncio (the floor) and the peers, one server.

The floor serializes with orjson, as the core does, so that it is a true floor.

Starts its own redis-server (and a 3-primary cluster) on free ports, like the test fixtures.
"""

from __future__ import annotations

from typing import Any

import orjson
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster as ClusterClient

from drivers.redis import RedisDriver
from storage import create_storage
from tests.servers import RedisCluster, RedisServer

from .harness import Bench, node_available, run_node

VALUE: dict[str, Any] = {"id": 1, "name": "user-1", "tags": ["a", "b"], "score": 1.5}
SEQUENTIAL = 2_000
ROUNDS = 20
BATCH = [f"batch:{i}" for i in range(1000)]
SEQ = "sequential set+get"
BATCHES = "batches of 1000"
CLUSTER = "cluster batches of 1000"


async def _raw(bench: Bench, url: str, n: int, rounds: int) -> None:
    client = Redis.from_url(url)

    async def sequential() -> int:
        for i in range(n):
            await client.set(f"raw:user:{i}", orjson.dumps(VALUE))
            orjson.loads(await client.get(f"raw:user:{i}") or b"null")
        return n * 2

    keys = [f"raw:{key}" for key in BATCH]

    async def batches() -> int:
        for _ in range(rounds):
            await client.mset({key: orjson.dumps(VALUE) for key in keys})
            [orjson.loads(raw or b"null") for raw in await client.mget(keys)]
        return rounds * 2000

    await bench.measure(SEQ, "raw redis-py asyncio + orjson", sequential, floor=True)
    await bench.measure(BATCHES, "raw redis-py MSET/MGET + orjson", batches, floor=True)
    await client.flushdb()
    await client.aclose()


async def _unistorage(bench: Bench, url: str, n: int, rounds: int) -> None:
    storage = create_storage(RedisDriver(url, base="ours"))

    async def sequential() -> int:
        for i in range(n):
            await storage.set_item(f"user:{i}", VALUE)
            await storage.get_item(f"user:{i}")
        return n * 2

    async def batches() -> int:
        items = dict.fromkeys(BATCH, VALUE)
        for _ in range(rounds):
            await storage.set_items(items)
            await storage.get_items(BATCH)
        return rounds * 2000

    await bench.measure(SEQ, "unistorage redis", sequential, ours=True)
    await bench.measure(BATCHES, "unistorage redis", batches, ours=True)
    await storage.clear()
    await storage.dispose()


async def _aiocache(bench: Bench, port: int, n: int, rounds: int) -> None:
    from aiocache import RedisCache
    from aiocache.serializers import JsonSerializer

    cache = RedisCache(
        serializer=JsonSerializer(), endpoint="127.0.0.1", port=port, namespace="aiocache"
    )

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

    await bench.measure(SEQ, "aiocache RedisCache json", sequential)
    await bench.measure(BATCHES, "aiocache RedisCache json", batches)
    await cache.clear()
    await cache.close()


async def _py_key_value(bench: Bench, url: str, n: int, rounds: int) -> None:
    from key_value.aio.stores.redis import RedisStore

    store = RedisStore(url=url, default_collection="pkv")

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

    await bench.measure(SEQ, "py-key-value-aio RedisStore", sequential)
    await bench.measure(BATCHES, "py-key-value-aio RedisStore", batches)
    await store.close()


def _node(bench: Bench, url: str, n: int, rounds: int) -> None:
    if not node_available():
        print(
            "  (node or benchmarks/node/node_modules missing: `npm install --prefix benchmarks/node`)"
        )
        return
    for line in run_node("redis.mjs", url, str(n), str(rounds)):
        bench.add(line["case"], line["subject"], line["ops"], line["seconds"])


async def _cluster(bench: Bench, rounds: int) -> None:
    cluster = RedisCluster(primaries=3).start()
    try:
        client = ClusterClient.from_url(cluster.url.replace("redis+cluster", "redis"))
        keys = [f"raw:{key}" for key in BATCH]

        async def raw() -> int:
            for _ in range(rounds):
                await client.mset_nonatomic({key: orjson.dumps(VALUE) for key in keys})
                [orjson.loads(v or b"null") for v in await client.mget_nonatomic(keys)]
            return rounds * 2000

        await bench.measure(CLUSTER, "raw RedisCluster *_nonatomic + orjson", raw, floor=True)
        await client.aclose()
        storage = create_storage(RedisDriver(cluster.url, base="ours"))

        async def ours() -> int:
            items = dict.fromkeys(BATCH, VALUE)
            for _ in range(rounds):
                await storage.set_items(items)
                await storage.get_items(BATCH)
            return rounds * 2000

        await bench.measure(CLUSTER, "unistorage redis (cluster)", ours, ours=True)
        await storage.dispose()
    finally:
        cluster.close()


async def run(bench: Bench) -> None:
    n, rounds = bench.n(SEQUENTIAL), bench.n(ROUNDS)
    server = RedisServer().start()
    try:
        await _raw(bench, server.url, n, rounds)
        await _unistorage(bench, server.url, n, rounds)
        await _aiocache(bench, server.port, n, rounds)
        await _py_key_value(bench, server.url, n, rounds)
        _node(bench, server.url, n, rounds)
    finally:
        server.close()
    await _cluster(bench, max(1, rounds // 4))
