"""Redis: the redis driver against raw redis-py asyncio (the floor) and the peers, one server.

The floor serializes with orjson, as the core does, so that it is a true floor.

Every case runs its subjects in alternating rounds, unstorage's redis driver on node among
them. Goals (issue 16): sequential at least 0.95x raw; batches at least 0.85x raw MSET/MGET
and 2x unstorage on node.

Starts its own redis-server (and a 3-primary cluster) on free ports, like the test fixtures.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import orjson
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster as ClusterClient

from drivers.redis import RedisDriver
from storage import create_storage
from tests.servers import RedisCluster, RedisServer

from . import workload
from .harness import Bench, Body, Subject
from .node_rounds import NodeRounds, node_available
from .workload import BATCH, BATCHES, SEQ, VALUE

SEQUENTIAL = 2_000
ROUNDS = 20
CLUSTER = "cluster batches of 1000"
INCREMENT = "increment one counter"
INCREMENTS = 2_000


Close = Callable[[], Awaitable[None]]


def _raw(client: Redis, n: int, rounds: int) -> tuple[Body, Body]:
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

    return sequential, batches


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


def _aiocache(port: int, n: int, rounds: int) -> tuple[Body, Body, Close]:
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

    async def close() -> None:
        await cache.clear()
        await cache.close()

    return sequential, batches, close


def _py_key_value(url: str, n: int, rounds: int) -> tuple[Body, Body, Close]:
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

    return sequential, batches, store.close


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

        await bench.rounds(
            CLUSTER,
            [
                Subject("raw RedisCluster *_nonatomic + orjson", raw, floor=True),
                Subject("unistorage redis (cluster)", ours, ours=True),
            ],
        )
        await client.aclose()
        await storage.dispose()
    finally:
        cluster.close()


async def _sequential_and_batches(bench: Bench, server: RedisServer, n: int, rounds: int) -> None:
    client = Redis.from_url(server.url)
    storage = create_storage(RedisDriver(server.url, base="ours"))
    raw = _raw(client, n, rounds)
    *aiocache, aiocache_close = _aiocache(server.port, n, rounds)
    *pkv, pkv_close = _py_key_value(server.url, n, rounds)
    node = None
    if node_available("ioredis"):
        node = await NodeRounds("redis.mjs", server.url, str(n), str(rounds)).start()
    try:
        for index, case, ours, floor in (
            (0, SEQ, lambda: workload.sequential(storage, n), "raw redis-py asyncio + orjson"),
            (
                1,
                BATCHES,
                lambda: workload.batches(storage, rounds),
                "raw redis-py MSET/MGET + orjson",
            ),
        ):
            subjects = [
                Subject(floor, raw[index], floor=True),
                Subject("unistorage redis", ours, ours=True),
                Subject("aiocache RedisCache json", aiocache[index]),
                Subject("py-key-value-aio RedisStore", pkv[index]),
            ]
            if node is not None:
                subjects.append(
                    node.subject(("sequential", "batches")[index], "unstorage redis (node)")
                )
            await bench.rounds(case, subjects)
    finally:
        if node is not None:
            await node.close()
        await aiocache_close()
        await pkv_close()
        await client.flushdb()
        await client.aclose()
        await storage.dispose()


async def run(bench: Bench) -> None:
    n, rounds = bench.n(SEQUENTIAL), bench.n(ROUNDS)
    server = RedisServer().start()
    try:
        await _sequential_and_batches(bench, server, n, rounds)
        await _increment(bench, server.url, bench.n(INCREMENTS))
    finally:
        server.close()
    await _cluster(bench, max(1, rounds // 4))
