"""The kit: compare-and-set in full, increment, sliding expiry, locks, pages and streams."""

from __future__ import annotations

import asyncio
import os

import pytest

from storage import (
    ConflictError,
    Driver,
    InvalidArgumentError,
    LockLostError,
    LockUnavailableError,
    NotFoundError,
    Storage,
    UnsupportedError,
)

from .base import ConformanceOptions, DriverFixtures, conformance_tests, expired, refuses_ttl


def _conditional(driver: Driver) -> bool:
    return driver.capabilities.conditional


async def _pages(storage: Storage, base: str, limit: int, **options: object) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        keys, cursor = await storage.list_keys(base, limit=limit, cursor=cursor, **options)  # type: ignore[arg-type]
        pages.append(keys)
        if cursor is None:
            return pages
        assert len(pages) < 1000, "the listing never ended"


async def _write_then_fail(storage: Storage, key: str) -> None:
    async with storage.open_write(key) as writer:
        await writer.write(b"partial " * 1000)
        raise RuntimeError("the producer failed")


@conformance_tests
class SurfaceTests(DriverFixtures):
    """What conditional writes and TTL make possible (refused without them), pages, streams."""

    # -- compare-and-set, complete ------------------------------------------------------------

    async def test_set_item_returns_the_etag_get_meta_reports(
        self, storage: Storage, driver: Driver
    ) -> None:
        etag = await storage.set_item("k", {"v": 1})
        raw_etag = await storage.set_item_raw("r", b"bytes")
        if not _conditional(driver):
            return
        assert etag is not None
        assert raw_etag is not None
        assert (await storage.get_meta("r"))["etag"] == raw_etag
        assert (await storage.get_item_with_etag("k"))[1] == etag
        assert await storage.set_item("k", {"v": 2}, if_match=etag) is not None

    async def test_if_match_star_writes_only_over_an_existing_key(
        self, storage: Storage, driver: Driver
    ) -> None:
        if not _conditional(driver):
            with pytest.raises(UnsupportedError):
                await storage.set_item("k", 1, if_match="*")
            return
        with pytest.raises(ConflictError):
            await storage.set_item("k", 1, if_match="*")
        assert await storage.get_item("k") is None
        await storage.set_item("k", 1)
        await storage.set_item("k", 2, if_match="*")
        assert await storage.get_item("k") == 2

    async def test_a_conditional_remove_removes_only_that_version(
        self, storage: Storage, driver: Driver
    ) -> None:
        etag = await storage.set_item("k", "old")
        if not _conditional(driver):
            with pytest.raises(UnsupportedError):
                await storage.remove_item("k", if_match="x")
            return
        assert etag is not None
        newer = await storage.set_item("k", "new")
        with pytest.raises(ConflictError):
            await storage.remove_item("k", if_match=etag)
        assert await storage.get_item("k") == "new"
        assert newer is not None
        await storage.remove_item("k", if_match=newer)
        assert await storage.get_item("k") is None
        with pytest.raises(ConflictError):
            await storage.remove_item("k", if_match="*")
        await storage.set_item("k", "again")
        await storage.remove_item("k", if_match="*")
        assert await storage.has_item("k") is False

    # -- increment ----------------------------------------------------------------------------

    async def test_increment_creates_at_zero_and_adds(
        self, storage: Storage, driver: Driver
    ) -> None:
        if not _conditional(driver):
            with pytest.raises(UnsupportedError):
                await storage.increment("n")
            return
        assert await storage.increment("n") == 1
        assert await storage.increment("n", 10) == 11
        assert await storage.increment("n", -20) == -9
        assert await storage.get_item("n") == -9
        await storage.set_item("text", "five")
        with pytest.raises(InvalidArgumentError):
            await storage.increment("text")
        assert await storage.get_item("text") == "five"
        with pytest.raises(InvalidArgumentError):
            await storage.increment("n", 1.5)  # type: ignore[arg-type]

    async def test_fifty_concurrent_increments_count_exactly(
        self, storage: Storage, driver: Driver
    ) -> None:
        if not _conditional(driver):
            return
        results = await asyncio.gather(*(storage.increment("hits") for _ in range(50)))
        assert sorted(results) == list(range(1, 51))
        assert await storage.get_item("hits") == 50

    async def test_increment_gives_a_new_key_its_ttl_and_keeps_an_old_keys_expiry(
        self, storage: Storage, driver: Driver, conformance_options: ConformanceOptions
    ) -> None:
        if not driver.capabilities.ttl:
            with pytest.raises(UnsupportedError):
                await storage.increment("window", ttl=100)
            assert await storage.has_item("window") is False
            return
        if not _conditional(driver):
            return
        await storage.increment("window", ttl=100)
        assert 90 < (await storage.get_meta("window"))["ttl"] <= 100
        await storage.increment("window", ttl=5)
        assert (await storage.get_meta("window"))["ttl"] > 90
        await storage.increment("forever")
        await storage.increment("forever")
        if conformance_options.plain_ttl:
            assert (await storage.get_meta("forever")).get("ttl") is None

    # -- sliding expiry -----------------------------------------------------------------------

    async def test_touch_renews_the_ttl_and_keeps_the_value(
        self, storage: Storage, driver: Driver
    ) -> None:
        if not driver.capabilities.ttl:
            await refuses_ttl(storage)
            return
        try:
            missing = await storage.touch("nope", 30)
        except UnsupportedError:
            assert not _conditional(driver)  # TTL without any way to renew one atomically
            return
        assert missing is False
        await storage.set_item("k", {"v": 1}, ttl=10)
        assert await storage.touch("k", 100) is True
        assert 90 < (await storage.get_meta("k"))["ttl"] <= 100
        assert await storage.get_item("k") == {"v": 1}

    async def test_get_item_can_renew_the_ttl(self, storage: Storage, driver: Driver) -> None:
        if not driver.capabilities.ttl:
            await storage.set_item("k", "v")
            with pytest.raises(UnsupportedError):
                await storage.get_item("k", renew_ttl=100)
            return
        await storage.set_item("k", "v", ttl=10)
        try:
            value = await storage.get_item("k", renew_ttl=100)
        except UnsupportedError:
            assert not _conditional(driver)
            return
        assert value == "v"
        assert 90 < (await storage.get_meta("k"))["ttl"] <= 100
        assert await storage.get_item("missing", default=0, renew_ttl=100) == 0

    # -- locks --------------------------------------------------------------------------------

    async def test_a_lock_is_held_by_one_at_a_time(self, storage: Storage, driver: Driver) -> None:
        if not (_conditional(driver) and driver.capabilities.ttl):
            with pytest.raises(UnsupportedError):
                storage.lock("job", ttl=5)
            return
        async with storage.lock("job", ttl=5) as lock:
            assert lock.held
            assert lock.token is not None
            with pytest.raises(LockUnavailableError):
                await storage.lock("job", ttl=5).acquire()
        assert not lock.held
        async with storage.lock("job", ttl=5, wait=1):
            pass
        assert await storage.has_item("job") is False

    async def test_a_lock_waits_for_its_holder(self, storage: Storage, driver: Driver) -> None:
        if not (_conditional(driver) and driver.capabilities.ttl):
            return  # refused: see test_a_lock_is_held_by_one_at_a_time
        order: list[str] = []

        async def holder() -> None:
            async with storage.lock("job", ttl=5):
                order.append("first in")
                await asyncio.sleep(0.3)
                order.append("first out")

        task = asyncio.ensure_future(holder())
        await asyncio.sleep(0.1)
        async with storage.lock("job", ttl=5, wait=5):
            order.append("second in")
        await task
        assert order == ["first in", "first out", "second in"]

    async def test_a_lost_lease_is_reported_and_never_releases_the_new_holders(
        self, storage: Storage, driver: Driver
    ) -> None:
        if not (_conditional(driver) and driver.capabilities.ttl):
            return  # refused: see test_a_lock_is_held_by_one_at_a_time
        stale = storage.lock("job", ttl=0.5, renew=False)
        await stale.acquire()
        await expired(storage, "job")  # the lease runs out; another process takes it
        async with storage.lock("job", ttl=10) as fresh:
            with pytest.raises(LockLostError):
                await stale.release()
            assert fresh.held
            assert await storage.has_item("job")

    async def test_a_held_lock_is_renewed_past_its_ttl(
        self, storage: Storage, driver: Driver
    ) -> None:
        if not (_conditional(driver) and driver.capabilities.ttl):
            return  # refused: see test_a_lock_is_held_by_one_at_a_time
        # Renewed every third of its TTL, held past it: each renewal has 0.6 s to land, which
        # a loaded machine needs (at 0.6 s a TTL, s3 through moto lost its lease there).
        async with storage.lock("job", ttl=0.9) as lock:
            await asyncio.sleep(1.2)
            assert not lock.lost
            with pytest.raises(LockUnavailableError):
                await storage.lock("job", ttl=5).acquire()

    # -- resumable listing ------------------------------------------------------------------

    async def test_pages_cover_every_key_once(
        self, storage: Storage, conformance_options: ConformanceOptions
    ) -> None:
        expected = {f"p:{n:03d}" for n in range(45)} | {"p:deep:x", "other"}
        await storage.set_items(dict.fromkeys(expected, 1))
        await storage.set_meta("p:001", {"m": 1})
        pages = await _pages(storage, "p", 10)
        listed = [key for page in pages for key in page]
        assert set(listed) == expected - {"other"}
        if not conformance_options.pages_may_repeat:  # Redis SCAN may; other cursors do not
            assert len(listed) == len(set(listed))
        assert all(len(page) <= 10 for page in pages) or conformance_options.pages_may_repeat
        shallow = [key for page in await _pages(storage, "p", 7, max_depth=0) for key in page]
        assert set(shallow) == expected - {"other", "p:deep:x"}

    async def test_a_page_limit_and_cursor_are_checked(self, storage: Storage) -> None:
        with pytest.raises(InvalidArgumentError):
            await storage.list_keys(limit=0)
        with pytest.raises(InvalidArgumentError):
            await storage.list_keys(limit=5, cursor="not a cursor!")

    async def test_keys_present_for_the_whole_listing_are_listed_despite_writes(
        self,
        storage: Storage,
    ) -> None:
        await storage.set_items({f"k:{n:03d}": n for n in range(30)})
        keys, cursor = await storage.list_keys("k", limit=10)
        await storage.set_items({f"k:{n:03d}x": n for n in range(30)})  # writes meanwhile
        await storage.remove_items([f"k:{n:03d}x" for n in range(0, 30, 3)])
        seen = set(keys)
        while cursor is not None:
            page, cursor = await storage.list_keys("k", limit=10, cursor=cursor)
            seen.update(page)
        assert {f"k:{n:03d}" for n in range(30)} <= seen

    # -- streams ------------------------------------------------------------------------------

    async def test_a_streamed_value_reads_back_in_chunks(self, storage: Storage) -> None:
        payload = os.urandom(300_000)
        async with storage.open_write("blob") as writer:
            for start in range(0, len(payload), 70_000):
                await writer.write(payload[start : start + 70_000])
        assert writer.size == len(payload)
        async with storage.open_read("blob", chunk_size=64_000) as reader:
            head = await reader.read(10)
            rest = b"".join([chunk async for chunk in reader])
        assert head + rest == payload
        assert await storage.get_item_raw("blob") == payload

    async def test_a_failed_stream_leaves_the_old_value(self, storage: Storage) -> None:
        await storage.set_item_raw("blob", b"old")
        with pytest.raises(RuntimeError):
            await _write_then_fail(storage, "blob")
        assert await storage.get_item_raw("blob") == b"old"

    async def test_opening_a_missing_key_for_reading_is_not_found(self, storage: Storage) -> None:
        with pytest.raises(NotFoundError):
            async with storage.open_read("missing"):
                pass

    async def test_an_empty_stream_stores_an_empty_value(self, storage: Storage) -> None:
        async with storage.open_write("empty"):
            pass
        async with storage.open_read("empty") as reader:
            assert await reader.read() == b""

    async def test_get_url_is_refused_where_a_driver_cannot_sign(
        self, storage: Storage, conformance_options: ConformanceOptions
    ) -> None:
        await storage.set_item_raw("k", b"v")
        if conformance_options.signed_urls:
            assert (await storage.get_url("k", expires=60)).startswith("http")
            return
        with pytest.raises(UnsupportedError):
            await storage.get_url("k", expires=60)

    async def test_counters_stay_within_64_bits(self, storage: Storage, driver: Driver) -> None:
        if not _conditional(driver):
            return
        await storage.set_item("big", 2**63 - 2)
        assert await storage.increment("big") == 2**63 - 1
        with pytest.raises(InvalidArgumentError):
            await storage.increment("big")
        assert await storage.get_item("big") == 2**63 - 1
        await storage.set_item("huge", 2**70)
        with pytest.raises(InvalidArgumentError):
            await storage.increment("huge")
