"""The redis driver under load: a bounded pool that waits, and compare-and-set that loses nothing.

Every test runs against a standalone server and against a 3-primary cluster, of Redis and of
Valkey (the ``engine`` fixtures of tests/fixtures/valkey.py).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from redis.asyncio import Redis

from drivers.redis import RedisDriver
from storage import ConflictError, DriverError, Storage, create_driver, create_storage
from tests.servers import RedisCluster, RedisServer


@dataclass
class Target:
    """Where a test's driver connects, and the ports of every server behind that URL."""

    url: str
    ports: list[int]


@pytest.fixture(params=["standalone", "cluster"])
def target(engine: str, request: pytest.FixtureRequest) -> Target:
    if request.param == "standalone":
        # A server of this test alone, so that every connection it counts is ours.
        server: RedisServer = request.getfixturevalue("lone_engine_server")
        return Target(server.url, [server.port])
    cluster: RedisCluster = request.getfixturevalue("engine_cluster")
    return Target(cluster.url, [node.port for node in cluster.nodes])


@pytest.fixture
async def raw_nodes(target: Target) -> AsyncIterator[list[Redis]]:
    """One plain client per server, to watch it from outside the driver."""
    clients = [Redis(port=port) for port in target.ports]
    yield clients
    for client in clients:
        await client.aclose()


def _driver(target: Target, **options: Any) -> RedisDriver:
    return RedisDriver(target.url, base=f"t{uuid.uuid4().hex[:12]}", **options)


async def _named_connections(nodes: list[Redis], name: str) -> int:
    """The most connections named ``name`` that any one server has open right now."""
    counts = []
    for node in nodes:
        clients = await node.client_list()
        counts.append(sum(1 for client in clients if client.get("name") == name))
    return max(counts)


async def _received(nodes: list[Redis]) -> list[int]:
    return [int((await node.info("stats"))["total_connections_received"]) for node in nodes]


async def _occupy_a_connection(driver: RedisDriver, seconds: int) -> None:
    """Hold one of the driver's connections: a blocking pop on a list nobody fills."""
    await driver._client.blpop([driver._key("empty")], timeout=seconds)


@pytest.mark.parametrize("calls", [300, 1000])
async def test_a_burst_beyond_max_connections_waits_and_all_calls_succeed(
    target: Target, raw_nodes: list[Redis], calls: int
) -> None:
    name = f"burst-{uuid.uuid4().hex[:8]}"
    storage = create_storage(_driver(target, max_connections=20, client_name=name))
    try:
        await storage.set_item("warm", 0)  # the cluster client maps its slots first
        before = await _received(raw_nodes)
        peak = 0
        done = False

        async def sample() -> None:
            nonlocal peak
            while not done:
                peak = max(peak, await _named_connections(raw_nodes, name))

        async def write_then_read(index: int) -> object:
            await storage.set_item(f"k:{index}", {"n": index})
            return await storage.get_item(f"k:{index}")

        sampler = asyncio.create_task(sample())
        try:
            results = await asyncio.gather(*(write_then_read(i) for i in range(calls)))
        finally:
            done = True  # not cancel(): redis-py may swallow a cancellation mid-reply
            await sampler
        assert results == [{"n": index} for index in range(calls)]
        after = await _received(raw_nodes)
        opened = [end - start for start, end in zip(before, after, strict=True)]
        # The sampler's own connections were open before the count began.
        assert max(opened) <= 20, f"connections opened per server: {opened}"
        # A cluster client also keeps the connection it reads the slot map on (opened before
        # the burst, when it learnt the slots, and again if it refreshes them).
        assert 1 < peak <= 20 + ("cluster" in target.url)
    finally:
        await storage.clear()
        await storage.dispose()


async def test_a_call_that_finds_every_connection_busy_fails_after_pool_timeout(
    target: Target,
) -> None:
    driver = _driver(target, max_connections=1, pool_timeout=0.5, socket_timeout=5)
    storage = create_storage(driver)
    try:
        await storage.set_item("k", 1)
        holder = asyncio.create_task(_occupy_a_connection(driver, seconds=2))
        await asyncio.sleep(0.2)
        started = time.monotonic()
        with pytest.raises(DriverError, match="max_connections=1") as caught:
            await storage.get_item("k")
        waited = time.monotonic() - started
        assert caught.value.driver == "redis"
        assert caught.value.key == "k"
        assert 0.4 < waited < 1.5
        await holder
        assert await storage.get_item("k") == 1
    finally:
        await storage.clear()
        await storage.dispose()


async def test_waits_that_time_out_or_are_cancelled_leave_the_pool_whole(
    target: Target,
) -> None:
    storage = create_storage(_driver(target, max_connections=2, pool_timeout=0.3, socket_timeout=5))
    driver = storage.get_mount("").driver
    assert isinstance(driver, RedisDriver)
    try:
        holders = [asyncio.create_task(_occupy_a_connection(driver, seconds=1)) for _ in range(2)]
        await asyncio.sleep(0.2)
        timed_out = asyncio.gather(*(storage.get_item("k") for _ in range(5)))
        cancelled = asyncio.gather(*(storage.get_item("k") for _ in range(5)))
        await asyncio.sleep(0.1)
        cancelled.cancel()
        with pytest.raises(DriverError):
            await timed_out
        await asyncio.gather(*holders)
        # Both slots are back: a second round of two blocking pops runs side by side.
        started = time.monotonic()
        await asyncio.gather(*(_occupy_a_connection(driver, seconds=1) for _ in range(2)))
        assert time.monotonic() - started < 1.8
        assert await asyncio.gather(*(storage.get_item("k") for _ in range(50))) == [None] * 50
    finally:
        await storage.dispose()


async def test_url_options_set_the_pool_size_and_timeout(target: Target) -> None:
    driver = create_driver(f"{target.url}?max_connections=1&pool_timeout=0.3&socket_timeout=5")
    assert isinstance(driver, RedisDriver)
    try:
        holder = asyncio.create_task(_occupy_a_connection(driver, seconds=1))
        await asyncio.sleep(0.2)
        started = time.monotonic()
        with pytest.raises(Exception, match="max_connections=1"):
            await driver.get_item("k")
        assert time.monotonic() - started < 1.0
        await holder
    finally:
        await driver.dispose()


async def test_an_etag_read_with_a_value_names_exactly_that_value_under_writes(
    target: Target,
) -> None:
    storage = create_storage(_driver(target))
    try:
        await storage.set_item("k", 0)
        seen: dict[int, set[str | None]] = {}
        writing = True

        async def write() -> None:
            nonlocal writing
            for n in range(1, 300):
                await storage.set_item("k", n)
            writing = False

        async def read() -> None:
            while writing:
                value, etag = await storage.get_item_with_etag("k")
                seen.setdefault(value, set()).add(etag)

        await asyncio.gather(write(), *(read() for _ in range(5)))
        assert len(seen) > 10, "the readers should have seen many versions"
        assert all(len(etags) == 1 for etags in seen.values()), "one value, one etag"
        etags = [next(iter(etags)) for etags in seen.values()]
        assert len(set(etags)) == len(etags), "different values, different etags"
        final, etag = await storage.get_item_with_etag("k")
        assert (final, etag) == (299, (await storage.get_meta("k"))["etag"])
    finally:
        await storage.clear()
        await storage.dispose()


async def _increment(storage: Storage, key: str, times: int) -> int:
    """Add 1 to ``key`` ``times`` times by compare-and-set; returns the conflicts met."""
    conflicts = 0
    for _ in range(times):
        while True:
            value, etag = await storage.get_item_with_etag(key)
            assert etag is not None
            try:
                await storage.set_item(key, value + 1, if_match=etag)
                break
            except ConflictError:
                conflicts += 1
                await asyncio.sleep(0)
    return conflicts


async def test_concurrent_compare_and_set_increments_lose_nothing(target: Target) -> None:
    storage = create_storage(_driver(target))
    try:
        await storage.set_item("counter", 0)
        conflicts = await asyncio.gather(*(_increment(storage, "counter", 10) for _ in range(20)))
        assert await storage.get_item("counter") == 200
        assert sum(conflicts) > 0, "the tasks should have raced"
    finally:
        await storage.clear()
        await storage.dispose()
