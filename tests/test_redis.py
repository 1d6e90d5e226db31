"""What is special about the redis driver: cluster batches, SCAN escaping, faults, keyspace watch.

Every test runs against Redis and against Valkey (the ``engine`` fixtures of
tests/fixtures/valkey.py).
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.event import (
    AsyncAfterConnectionReleasedEvent,
    AsyncEventListenerInterface,
    EventDispatcher,
)

from drivers.redis import RedisDriver
from storage import DriverError, InvalidArgumentError, Storage, create_driver, create_storage
from storage.layers import DefaultTTL
from tests.servers import RedisCluster, RedisServer


async def _eventually(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


@pytest.fixture
async def raw(engine_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis(port=engine_server.port)
    yield client
    await client.aclose()


async def test_cluster_batches_across_slots_keep_input_order(
    engine_cluster_driver: RedisDriver,
) -> None:
    keys = [f"user:{index}" for index in range(300)]
    await engine_cluster_driver.set_items([(key, key.encode()) for key in keys[::2]])
    shuffled = keys[::-1]
    values = await engine_cluster_driver.get_items(shuffled)
    assert values == [key.encode() if int(key[5:]) % 2 == 0 else None for key in shuffled]


async def test_cluster_batches_with_ttl_and_listing_reach_every_primary(
    engine_cluster_driver: RedisDriver, engine_cluster: RedisCluster
) -> None:
    keys = [f"k{index}" for index in range(200)]
    await engine_cluster_driver.set_items([(key, b"v") for key in keys], ttl=60)
    assert sorted(await engine_cluster_driver.get_keys()) == sorted(keys)
    counts = []
    for node in engine_cluster.nodes:
        async with Redis(port=node.port) as client:
            counts.append(await client.dbsize())
    assert all(counts), "keys should spread over every primary"
    await engine_cluster_driver.clear()
    assert await engine_cluster_driver.get_keys() == []


async def test_scan_treats_glob_characters_in_bases_literally(engine_driver: RedisDriver) -> None:
    tricky = ["a*:1", "ab:1", "a?:1", "a[b]:1", "ab]:1", "a\\:1", "b:1"]
    await engine_driver.set_items([(key, b"x") for key in tricky])
    assert await engine_driver.get_keys("a*:") == ["a*:1"]
    assert await engine_driver.get_keys("a?:") == ["a?:1"]
    assert await engine_driver.get_keys("a[b]:") == ["a[b]:1"]
    assert await engine_driver.get_keys("a\\:") == ["a\\:1"]
    await engine_driver.clear("a*:")
    assert sorted(await engine_driver.get_keys()) == sorted(key for key in tricky if key != "a*:1")


async def test_a_base_prefix_with_glob_characters_isolates_the_driver(
    engine_server: RedisServer,
) -> None:
    tag = uuid.uuid4().hex[:8]
    starred = RedisDriver(engine_server.url, base=f"{tag}*")
    plain = RedisDriver(engine_server.url, base=f"{tag}x")
    try:
        await plain.set_item("k", b"plain")
        await starred.set_item("k", b"starred")
        assert await starred.get_keys() == ["k"]
        await starred.clear()
        assert await plain.get_item("k") == b"plain"
    finally:
        await plain.clear()
        await starred.dispose()
        await plain.dispose()


async def test_values_are_stored_as_the_raw_bytes(engine_driver: RedisDriver, raw: Redis) -> None:
    value = bytes(range(256))
    await engine_driver.set_item("bin", value)
    assert await raw.get(engine_driver._key("bin")) == value


async def test_ttl_is_native_and_reported_by_get_meta(
    engine_driver: RedisDriver, raw: Redis
) -> None:
    await engine_driver.set_item("t", b"v", ttl=30)
    assert 20_000 < await raw.pttl(engine_driver._key("t")) <= 30_000
    meta = await engine_driver.get_meta("t")
    assert 20 < meta["ttl"] <= 30
    assert meta["size"] == 1


async def test_url_options_reach_the_driver_and_the_client(engine_server: RedisServer) -> None:
    driver = create_driver(f"{engine_server.url}?base=app&ttl=5&socket_timeout=1.5")
    assert isinstance(driver, DefaultTTL)
    assert isinstance(driver.inner, RedisDriver)
    try:
        await driver.set_item("k", b"v")
        assert await driver.get_keys() == ["k"]
        assert 0 < (await driver.get_meta("k"))["ttl"] <= 5
        assert driver.inner._prefix == "app:"
    finally:
        await driver.clear()
        await driver.dispose()


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:1/0?bogus=1", "valkey+cluster://127.0.0.1:1?sockettimeout=2"]
)
def test_an_option_neither_the_driver_nor_redis_py_reads_is_refused_before_connecting(
    url: str,
) -> None:
    # It used to pass the URL and fail at the first command, with redis-py's TypeError.
    with pytest.raises(InvalidArgumentError, match=r"no option '(bogus|sockettimeout)'"):
        create_driver(url)


async def test_a_stopped_server_gives_driver_errors_and_recovery_follows(
    lone_engine_server: RedisServer,
) -> None:
    storage = create_storage(RedisDriver(lone_engine_server.url))
    try:
        await storage.set_item("k", 1)
        lone_engine_server.stop()
        with pytest.raises(DriverError) as caught:
            await storage.get_item("k")
        assert caught.value.driver == "redis"
        with pytest.raises(DriverError):
            await storage.set_items({"a": 1, "b": 2})
        with pytest.raises(DriverError):
            await storage.get_keys()
        lone_engine_server.start()
        await storage.set_item("k", 2)
        assert await storage.get_item("k") == 2
        assert await storage.get_keys() == ["k"]
    finally:
        await storage.dispose()


async def test_a_connection_the_server_dropped_is_retried_once_on_a_new_one(
    lone_engine_server: RedisServer,
) -> None:
    # The pooled connection still looks open when the next call takes it: the call fails on
    # it, and the driver's one retry (retries=1, the default) reconnects and succeeds.
    storage = create_storage(RedisDriver(lone_engine_server.url))
    try:
        await storage.set_item("k", 1)
        lone_engine_server.stop()
        lone_engine_server.start()
        assert await storage.get_item("k") is None  # a fresh server: no persistence
    finally:
        await storage.dispose()


async def test_no_retry_is_made_with_retries_0(lone_engine_server: RedisServer) -> None:
    storage = create_storage(RedisDriver(lone_engine_server.url, retries=0))
    try:
        await storage.set_item("k", 1)
        lone_engine_server.stop()
        lone_engine_server.start()
        with pytest.raises(DriverError):
            await storage.get_item("k")
        assert await storage.get_item("k") is None
    finally:
        await storage.dispose()


async def test_listeners_of_a_callers_event_dispatcher_hear_every_connection_return(
    lone_engine_server: RedisServer,
) -> None:
    returned: list[object] = []

    class Listener(AsyncEventListenerInterface):
        async def listen(self, event: object) -> None:
            returned.append(event)

    dispatcher = EventDispatcher()
    if not hasattr(dispatcher, "register_listeners"):
        pytest.skip("a redis-py whose event dispatcher takes no listeners")
    dispatcher.register_listeners({AsyncAfterConnectionReleasedEvent: [Listener()]})
    driver = RedisDriver(lone_engine_server.url, max_connections=2, event_dispatcher=dispatcher)
    try:
        await asyncio.gather(*(driver.set_item(f"k{index}", b"v") for index in range(20)))
        assert len(returned) == 20
        assert await driver.get_items([f"k{index}" for index in range(20)]) == [b"v"] * 20
    finally:
        await driver.dispose()


# Run in a child: redis-py's metrics and OpenTelemetry's meter provider are process-wide.
_METRICS_CHILD = """
import asyncio, json, sys
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from redis.observability.config import MetricGroup, OTelConfig
from redis.observability.providers import get_observability_instance
from drivers.redis import RedisDriver

reader = InMemoryMetricReader()
metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
groups = [MetricGroup.COMMAND, MetricGroup.CONNECTION_BASIC]
get_observability_instance().init(OTelConfig(metric_groups=groups))

async def main():
    driver = RedisDriver(sys.argv[1], base=sys.argv[2])
    await driver.set_item("k", b"v")
    await driver.get_item("k")
    await driver.get_item("k")
    await driver.clear()
    await driver.dispose()

asyncio.run(main())
seen = {}
for resource in reader.get_metrics_data().resource_metrics:
    for scope in resource.scope_metrics:
        for metric in scope.metrics:
            for point in metric.data.data_points:
                attributes = dict(point.attributes)
                name = attributes.get("db.operation.name") or attributes.get(
                    "db.client.connection.state"
                )
                counts = seen.setdefault(metric.name, {})
                counts[name] = getattr(point, "count", getattr(point, "value", None))
print(json.dumps(seen))
"""


def test_with_redis_py_metrics_on_every_command_and_connection_is_reported(
    engine_server: RedisServer,
) -> None:
    # The driver's own command steps skip redis-py's metrics calls only while they are off.
    pytest.importorskip("redis.observability.providers", reason="a redis-py without metrics")
    root = Path(__file__).resolve().parent.parent
    base = f"m{uuid.uuid4().hex[:8]}"
    child = subprocess.run(
        [sys.executable, "-c", _METRICS_CHILD, engine_server.url, base],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    seen = json.loads(child.stdout.splitlines()[-1])
    operations = seen["db.client.operation.duration"]
    assert operations["SET"] == 1
    assert operations["GET"] == 2
    assert seen["db.client.connection.count"] == {"used": 0, "idle": 1}


async def test_a_hung_server_gives_a_driver_error_instead_of_a_hang(
    lone_engine_server: RedisServer,
) -> None:
    assert lone_engine_server.process is not None
    storage = create_storage(RedisDriver(lone_engine_server.url, socket_timeout=0.3, retries=0))
    try:
        await storage.set_item("k", 1)
        lone_engine_server.process.send_signal(signal.SIGSTOP)
        try:
            with pytest.raises(DriverError):
                await storage.get_item("k")
        finally:
            lone_engine_server.process.send_signal(signal.SIGCONT)
        assert await storage.get_item("k") == 1
    finally:
        await storage.dispose()


async def test_an_increment_whose_reply_timed_out_is_not_sent_again(
    lone_engine_server: RedisServer,
) -> None:
    # The command reaches a frozen server and runs when it wakes; a retry on the timeout
    # would have sent it a second time and counted twice.
    assert lone_engine_server.process is not None
    storage = create_storage(RedisDriver(lone_engine_server.url, socket_timeout=0.3, retries=1))
    try:
        await storage.increment("hits")
        lone_engine_server.process.send_signal(signal.SIGSTOP)
        try:
            with pytest.raises(DriverError):
                await storage.increment("hits")
        finally:
            lone_engine_server.process.send_signal(signal.SIGCONT)
        await asyncio.sleep(0.2)
        assert await storage.get_item("hits") == 2
    finally:
        await storage.dispose()


async def test_watch_sees_writes_from_other_clients_and_expiry(
    engine_driver: RedisDriver, raw: Redis
) -> None:
    events: list[tuple[str, str]] = []
    unwatch = await engine_driver.watch(lambda event, key: events.append((event, key)))
    await raw.set(engine_driver._key("from:outside"), b"1")
    await engine_driver.set_item("short", b"1", ttl=0.2)
    await raw.delete(engine_driver._key("from:outside"))
    await raw.set("someone-else:key", b"1")
    await _eventually(lambda: ("remove", "short") in events)
    assert ("update", "from:outside") in events
    assert ("remove", "from:outside") in events
    assert all(not key.startswith("someone") and "someone" not in key for _, key in events)
    await unwatch()
    assert not engine_driver._keyspace.running


async def test_watch_leaves_server_config_alone_unless_allowed(
    lone_engine_server: RedisServer,
) -> None:
    driver = RedisDriver(lone_engine_server.url)
    try:
        unwatch = await driver.watch(lambda event, key: None)
        await unwatch()
        async with Redis(port=lone_engine_server.port) as client:
            config = await client.config_get("notify-keyspace-events")
        assert config["notify-keyspace-events"] in ("", b"")
    finally:
        await driver.dispose()


async def test_watch_resumes_after_the_server_restarts(lone_engine_server: RedisServer) -> None:
    driver = RedisDriver(lone_engine_server.url, notify_keyspace_events=True)
    events: list[tuple[str, str]] = []
    try:
        await driver.watch(lambda event, key: events.append((event, key)))
        lone_engine_server.stop()
        lone_engine_server.start()
        # The restarted server forgot its config; the listener must turn notifications on again.
        async with Redis(port=lone_engine_server.port) as client:

            async def write_until_seen() -> None:
                while ("update", "again") not in events:
                    await client.set("again", b"1")
                    await asyncio.sleep(0.1)

            await asyncio.wait_for(write_until_seen(), 15)
    finally:
        await driver.dispose()


async def test_watch_on_a_cluster_hears_every_primary(engine_cluster_driver: RedisDriver) -> None:
    storage: Storage = create_storage(engine_cluster_driver)
    seen: set[str] = set()
    await storage.watch(lambda event, key: seen.add(key))
    keys = {f"w{index}" for index in range(30)}
    await storage.set_items(dict.fromkeys(keys, 1))
    await _eventually(lambda: keys <= seen)
    await storage.unwatch()
