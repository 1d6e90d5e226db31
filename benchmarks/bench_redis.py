"""Redis: the redis driver against raw redis-py asyncio (the floor) and the peers, one server.

The floor serializes with orjson, as the core does, so that it is a true floor.

Starts its own redis-server (and a 3-primary cluster) on free ports, like the test fixtures.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import orjson
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster as ClusterClient

from drivers.redis import RedisDriver
from storage import create_storage
from tests.servers import RedisCluster, RedisServer

from . import workload
from .harness import Bench, Subject, node_available, run_node
from .workload import BATCH, BATCHES, SEQ, VALUE

SEQUENTIAL = 2_000
ROUNDS = 20
CLUSTER = "cluster batches of 1000"
INTERLEAVED_ROUNDS = 5
INCREMENT = "increment one counter"
INCREMENTS = 2_000


Body = Callable[[], Awaitable[int]]


async def _interleaved(bench: Bench, case: str, subjects: list[tuple[str, Body, bool]]) -> None:
    """Time the subjects in turn, round after round, keeping each one's best run.

    On a shared, noisy machine this keeps a load swing from favouring one subject.
    """
    best: dict[str, tuple[int, float]] = {}
    for _ in range(INTERLEAVED_ROUNDS):
        for subject, body, _ in subjects:
            start = time.perf_counter()
            ops = await body()
            seconds = time.perf_counter() - start
            if subject not in best or seconds < best[subject][1]:
                best[subject] = (ops, seconds)
    for subject, _, ours in subjects:
        ops, seconds = best[subject]
        bench.add(case, subject, ops, seconds, floor=not ours, ours=ours)


async def _raw_and_ours(bench: Bench, url: str, n: int, rounds: int) -> None:
    client = Redis.from_url(url)
    storage = create_storage(RedisDriver(url, base="ours"))

    async def raw_sequential() -> int:
        for i in range(n):
            await client.set(f"raw:user:{i}", orjson.dumps(VALUE))
            orjson.loads(await client.get(f"raw:user:{i}") or b"null")
        return n * 2

    async def ours_sequential() -> int:
        return await workload.sequential(storage, n)

    keys = [f"raw:{key}" for key in BATCH]

    async def raw_batches() -> int:
        for _ in range(rounds):
            await client.mset({key: orjson.dumps(VALUE) for key in keys})
            [orjson.loads(raw or b"null") for raw in await client.mget(keys)]
        return rounds * 2000

    async def ours_batches() -> int:
        return await workload.batches(storage, rounds)

    await _interleaved(
        bench,
        SEQ,
        [
            ("raw redis-py asyncio + orjson", raw_sequential, False),
            ("unistorage redis", ours_sequential, True),
        ],
    )
    await _interleaved(
        bench,
        BATCHES,
        [
            ("raw redis-py MSET/MGET + orjson", raw_batches, False),
            ("unistorage redis", ours_batches, True),
        ],
    )
    await client.flushdb()
    await client.aclose()
    await storage.dispose()


async def _increment(bench: Bench, url: str, n: int) -> None:
    """`Storage.increment` against raw INCRBY, in alternating rounds (the issue asks >= 0.9x).

    With a TTL the increment is a script (it gives a key it creates that TTL); measured too.
    """
    client = Redis.from_url(url)
    storage = create_storage(RedisDriver(url, base="ours"))

    async def raw() -> int:
        for _ in range(n):
            await client.incrby("raw:hits", 1)
        return n

    async def ours() -> int:
        for _ in range(n):
            await storage.increment("hits")
        return n

    async def ours_ttl() -> int:
        for _ in range(n):
            await storage.increment("window", ttl=3600)
        return n

    await bench.rounds(
        INCREMENT,
        [
            Subject("raw redis-py INCRBY", raw, floor=True),
            Subject("unistorage redis increment", ours, ours=True),
            Subject("unistorage redis increment(ttl=3600)", ours_ttl, ours=True),
        ],
        rounds=15,
    )
    await client.flushdb()
    await client.aclose()
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
        storage = create_storage(RedisDriver(cluster.url, base="ours"))
        keys = [f"raw:{key}" for key in BATCH]

        async def raw() -> int:
            for _ in range(rounds):
                await client.mset_nonatomic({key: orjson.dumps(VALUE) for key in keys})
                [orjson.loads(v or b"null") for v in await client.mget_nonatomic(keys)]
            return rounds * 2000

        async def ours() -> int:
            return await workload.batches(storage, rounds)

        await _interleaved(
            bench,
            CLUSTER,
            [
                ("raw RedisCluster *_nonatomic + orjson", raw, False),
                ("unistorage redis (cluster)", ours, True),
            ],
        )
        await client.aclose()
        await storage.dispose()
    finally:
        cluster.close()


async def run(bench: Bench) -> None:
    n, rounds = bench.n(SEQUENTIAL), bench.n(ROUNDS)
    server = RedisServer().start()
    try:
        await _raw_and_ours(bench, server.url, n, rounds)
        await _increment(bench, server.url, bench.n(INCREMENTS))
        await _aiocache(bench, server.port, n, rounds)
        await _py_key_value(bench, server.url, n, rounds)
        _node(bench, server.url, n, rounds)
    finally:
        server.close()
    await _cluster(bench, max(1, rounds // 4))
