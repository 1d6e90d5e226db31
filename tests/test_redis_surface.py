"""What the redis driver makes special of the storage surface: etags other clients can compute,
native conditional writes, INCRBY counters, PEXPIRE and GETEX, and SCAN-cursor pages.

Tests over ``driver`` run against a standalone server and a 3-primary cluster, of Redis and of
Valkey; the others against both engines (the ``engine`` fixtures of tests/fixtures/valkey.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster as ClusterClient

from drivers.redis import RedisDriver
from storage import ConflictError, InvalidArgumentError, Storage, create_storage
from tests.servers import RedisCluster, RedisServer


@pytest.fixture(params=["standalone", "cluster"])
def topology(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def driver(engine: str, topology: str, request: pytest.FixtureRequest) -> RedisDriver:
    suffix = "_cluster" if topology == "cluster" else ""
    found: RedisDriver = request.getfixturevalue(f"driver_{engine}{suffix}")
    return found


@pytest.fixture
async def raw(
    engine: str, topology: str, request: pytest.FixtureRequest
) -> AsyncIterator[Redis | ClusterClient]:
    """A plain client of the same server or cluster as ``driver``, to look from outside."""
    client: Redis | ClusterClient
    if topology == "cluster":
        cluster: RedisCluster = request.getfixturevalue(f"{engine}_cluster")
        client = ClusterClient(host="127.0.0.1", port=cluster.nodes[0].port)
    else:
        server: RedisServer = request.getfixturevalue(f"{engine}_server")
        client = Redis(port=server.port)
    yield client
    await client.aclose()


@pytest.fixture
def storage(driver: RedisDriver) -> Storage:
    return create_storage(driver)


# -- etags and conditional writes ---------------------------------------------------------------


async def test_the_etag_set_item_returns_is_the_sha1_of_the_stored_bytes(
    driver: RedisDriver, raw: Redis | ClusterClient
) -> None:
    tag = await driver.set_item("k", b"some bytes")
    assert tag == hashlib.sha1(b"some bytes").hexdigest()
    assert tag == (await driver.get_meta("k"))["etag"]
    await raw.set(driver._key("k"), b"written by another client")
    assert (await driver.get_meta("k"))["etag"] == hashlib.sha1(
        b"written by another client"
    ).hexdigest()


async def test_create_only_and_only_if_present_writes_set_a_native_ttl(
    driver: RedisDriver, raw: Redis | ClusterClient
) -> None:
    await driver.set_item_conditional("k", b"1", ttl=30, if_none_match=True)
    assert 20_000 < await raw.pttl(driver._key("k")) <= 30_000
    await driver.set_item_conditional("k", b"2", ttl=100, if_match="*")
    assert 90_000 < await raw.pttl(driver._key("k")) <= 100_000
    await driver.set_item_conditional("k", b"3", if_match="*")
    assert await raw.pttl(driver._key("k")) == -1
    assert await raw.get(driver._key("k")) == b"3"


async def test_a_refused_conditional_write_or_remove_changes_nothing(
    driver: RedisDriver, raw: Redis | ClusterClient
) -> None:
    with pytest.raises(ConflictError, match="does not exist"):
        await driver.set_item_conditional("missing", b"v", if_match="*")
    with pytest.raises(ConflictError, match="does not exist"):
        await driver.remove_item_conditional("missing", if_match="*")
    assert await raw.exists(driver._key("missing")) == 0
    await driver.set_item("k", b"v", ttl=60)
    with pytest.raises(ConflictError, match="already exists"):
        await driver.set_item_conditional("k", b"other", if_none_match=True)
    with pytest.raises(ConflictError):
        await driver.remove_item_conditional("k", if_match=hashlib.sha1(b"other").hexdigest())
    assert await raw.get(driver._key("k")) == b"v"
    assert await raw.pttl(driver._key("k")) > 50_000


# -- increment --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "stored", [b'"5"', b"5.0", b" 5", b"5 ", b"+5", b"05", b"-0", b"1e3", b"true", b"{}"]
)
async def test_increment_refuses_anything_but_json_integer_text_and_leaves_it(
    driver: RedisDriver, raw: Redis | ClusterClient, stored: bytes
) -> None:
    await driver.set_item("n", stored, ttl=60)
    for ttl in (None, 30.0):
        with pytest.raises(InvalidArgumentError, match="'n' does not hold an integer"):
            await driver.increment("n", 1, ttl=ttl)
    assert await raw.get(driver._key("n")) == stored


async def test_a_counter_is_plain_integer_text_that_other_clients_increment_too(
    storage: Storage, driver: RedisDriver, raw: Redis | ClusterClient
) -> None:
    assert await storage.increment("hits", 5) == 5
    assert await raw.incrby(driver._key("hits"), 10) == 15
    assert await storage.increment("hits") == 16
    assert await storage.get_item("hits") == 16


async def test_increment_is_exact_at_the_edge_of_64_bits_and_refuses_to_overflow(
    driver: RedisDriver,
) -> None:
    top = 2**63 - 1
    await driver.set_item("big", str(top - 10).encode())
    assert await driver.increment("big", 9) == top - 1
    assert await driver.increment("big", 1, ttl=30) == top
    with pytest.raises(InvalidArgumentError, match="64-bit"):
        await driver.increment("big", 1)
    with pytest.raises(InvalidArgumentError, match="64-bit"):
        await driver.increment("big", 1, ttl=30)
    assert await driver.get_item("big") == str(top).encode()
    assert await driver.increment("fresh", -(2**63), ttl=30) == -(2**63)
    with pytest.raises(InvalidArgumentError, match="64-bit"):
        await driver.increment("other", 2**63)
    assert await driver.get_item("other") is None


async def test_increment_gives_a_ttl_only_to_the_key_it_creates(
    driver: RedisDriver, raw: Redis | ClusterClient
) -> None:
    assert await driver.increment("window", 1, ttl=100) == 1
    assert 90_000 < await raw.pttl(driver._key("window")) <= 100_000
    await raw.pexpire(driver._key("window"), 50_000)
    assert await driver.increment("window", 1, ttl=100) == 2
    assert await driver.increment("window", 1) == 3
    assert 40_000 < await raw.pttl(driver._key("window")) <= 50_000
    await driver.increment("forever", 1)
    await driver.increment("forever", 1, ttl=100)
    assert await raw.pttl(driver._key("forever")) == -1


# -- sliding expiry ---------------------------------------------------------------------------


async def test_touch_sets_an_expiry_on_a_key_that_had_none_and_creates_nothing(
    driver: RedisDriver, raw: Redis | ClusterClient
) -> None:
    await driver.set_item("k", b"v")
    assert await driver.touch("k", 30) is True
    assert 20_000 < await raw.pttl(driver._key("k")) <= 30_000
    assert await driver.touch("missing", 30) is False
    assert await raw.exists(driver._key("missing")) == 0


async def test_get_item_touch_reads_and_renews_in_one_command(
    driver: RedisDriver, raw: Redis | ClusterClient
) -> None:
    await driver.set_item("k", b"v", ttl=5)
    assert await driver.get_item_touch("k", 100) == b"v"
    assert 90_000 < await raw.pttl(driver._key("k")) <= 100_000
    assert await driver.get_item_touch("missing", 100) is None
    assert await raw.exists(driver._key("missing")) == 0


# -- pages --------------------------------------------------------------------------------------


async def _every_page(
    driver: RedisDriver, base: str, limit: int
) -> tuple[list[list[str]], list[str | None]]:
    pages: list[list[str]] = []
    cursors: list[str | None] = []
    cursor: str | None = None
    while True:
        keys, cursor = await driver.list_page(base, limit=limit, cursor=cursor)
        pages.append(keys)
        cursors.append(cursor)
        if cursor is None:
            return pages, cursors
        assert len(pages) < 10_000, "the listing never ended"


async def test_pages_resume_from_scan_cursors_and_cover_every_key(driver: RedisDriver) -> None:
    keys = {f"p:{n:04d}" for n in range(1500)}
    await driver.set_items([(key, b"1") for key in keys] + [("q:1", b"1")])
    pages, _ = await _every_page(driver, "p:", 100)
    listed = [key for page in pages for key in page]
    assert set(listed) == keys
    assert all(page for page in pages[:-1]), "only the last page may be short"
    assert max(len(page) for page in pages) < 300, "pages hold about limit keys"
    assert len(pages) >= 5


async def test_a_page_larger_than_scan_count_is_still_one_page(
    engine_server: RedisServer,
) -> None:
    driver = RedisDriver(engine_server.url, base="pages-big", scan_count=50)
    try:
        await driver.set_items([(f"k{n}", b"1") for n in range(400)])
        keys, cursor = await driver.list_page(limit=300)
        assert len(keys) >= 300 or cursor is None
        rest = []
        while cursor is not None:
            page, cursor = await driver.list_page(limit=300, cursor=cursor)
            rest.extend(page)
        assert set(keys + rest) == {f"k{n}" for n in range(400)}
    finally:
        await driver.clear()
        await driver.dispose()


async def test_a_sparse_base_is_paged_in_few_scan_calls(lone_engine_server: RedisServer) -> None:
    async with Redis(port=lone_engine_server.port) as raw:
        await raw.mset({f"noise:{n}": b"x" for n in range(20_000)})
        driver = RedisDriver(lone_engine_server.url)
        try:
            await driver.set_items([(f"rare:{n}", b"1") for n in range(10)])
            await raw.config_resetstat()
            listed: list[str] = []
            cursor: str | None = None
            while True:
                page, cursor = await driver.list_page("rare:", limit=5, cursor=cursor)
                listed.extend(page)
                if cursor is None:
                    break
            scans = int((await raw.info("commandstats"))["cmdstat_scan"]["calls"])
        finally:
            await driver.dispose()
    assert sorted(set(listed)) == sorted(f"rare:{n}" for n in range(10))
    # COUNT grows with what the scan finds: 20,000 keys take dozens of calls, not thousands.
    assert scans < 100, f"{scans} SCAN calls"


async def test_a_cluster_listing_walks_the_primaries_in_turn(
    engine_cluster_driver: RedisDriver, engine_cluster: RedisCluster
) -> None:
    keys = {f"c{n}" for n in range(600)}
    await engine_cluster_driver.set_items([(key, b"1") for key in keys])
    pages, cursors = await _every_page(engine_cluster_driver, "", 50)
    assert {key for page in pages for key in page} == keys
    named = [cursor.split("/")[1] for cursor in cursors if cursor is not None]
    order = list(dict.fromkeys(named))
    assert order == sorted(order), "primaries in address order, each finished before the next"
    addresses = {f"127.0.0.1:{node.port}" for node in engine_cluster.nodes}
    assert set(order) <= addresses
    assert len(order) >= 2


async def test_a_cluster_cursor_from_other_primaries_starts_the_listing_again(
    engine_cluster_driver: RedisDriver,
) -> None:
    keys = {f"c{n}" for n in range(60)}
    await engine_cluster_driver.set_items([(key, b"1") for key in keys])
    _, cursor = await engine_cluster_driver.list_page(limit=10)
    assert cursor is not None
    _, address, position = cursor.split("/")
    stale = f"000000000000/{address}/{position}"
    listed: set[str] = set()
    next_cursor: str | None = stale
    while True:
        page, next_cursor = await engine_cluster_driver.list_page(limit=10, cursor=next_cursor)
        listed.update(page)
        if next_cursor is None:
            break
    assert listed == keys


@pytest.mark.parametrize("cursor", ["", "x", "-1", "abc/def", "a/b/c"])
async def test_a_cursor_that_is_not_scans_is_refused(driver: RedisDriver, cursor: str) -> None:
    with pytest.raises(InvalidArgumentError):
        await driver.list_page(limit=10, cursor=cursor)


async def test_pages_treat_glob_characters_in_bases_literally(driver: RedisDriver) -> None:
    await driver.set_items([(key, b"x") for key in ["a*:1", "ab:1", "a?:1", "a[b]:1"]])
    assert (await driver.list_page("a*:", limit=10))[0] == ["a*:1"]
    assert (await driver.list_page("a[b]:", limit=10))[0] == ["a[b]:1"]
