"""The kit: conditional writes (compare-and-set) and change events, or their clean refusal."""

from __future__ import annotations

import asyncio

import pytest

from storage import ConflictError, Driver, Storage, UnsupportedError

from .base import DriverFixtures, conformance_tests


async def _wait_for(events: list[tuple[str, str]], wanted: list[tuple[str, str]]) -> None:
    for _ in range(100):
        if all(item in events for item in wanted):
            return
        await asyncio.sleep(0.05)


@conformance_tests
class ConditionalWatchTests(DriverFixtures):
    """Etags and create-only writes where ``capabilities.conditional``, events where
    ``capabilities.watch``; `UnsupportedError` where not."""

    async def test_create_only_writes_refuse_an_existing_key(
        self, storage: Storage, driver: Driver
    ) -> None:
        if not driver.capabilities.conditional:
            with pytest.raises(UnsupportedError):
                await storage.set_item("k", 1, if_none_match=True)
            return
        await storage.set_item("k", 1, if_none_match=True)
        with pytest.raises(ConflictError):
            await storage.set_item("k", 2, if_none_match=True)
        assert await storage.get_item("k") == 1

    async def test_matching_etag_writes_and_stale_etag_conflicts(
        self, storage: Storage, driver: Driver
    ) -> None:
        await storage.set_item("k", "v1")
        etag = (await storage.get_meta("k")).get("etag")
        if not driver.capabilities.conditional:
            with pytest.raises(UnsupportedError):
                await storage.set_item("k", "v2", if_match=str(etag))
            return
        assert isinstance(etag, str)
        await storage.set_item("k", "v2", if_match=etag)
        assert await storage.get_item("k") == "v2"
        new_etag = (await storage.get_meta("k"))["etag"]
        assert new_etag != etag
        with pytest.raises(ConflictError):
            await storage.set_item("k", "v3", if_match=etag)
        assert await storage.get_item("k") == "v2"

    async def test_if_match_on_a_missing_key_conflicts(
        self, storage: Storage, driver: Driver
    ) -> None:
        expected = ConflictError if driver.capabilities.conditional else UnsupportedError
        with pytest.raises(expected):
            await storage.set_item("absent", 1, if_match="some-etag")
        assert await storage.has_item("absent") is False

    async def test_concurrent_create_only_writes_have_one_winner(
        self, storage: Storage, driver: Driver
    ) -> None:
        if not driver.capabilities.conditional:
            with pytest.raises(UnsupportedError):
                await storage.set_item("race", 0, if_none_match=True)
            return

        async def attempt(value: int) -> bool:
            try:
                await storage.set_item("race", value, if_none_match=True)
            except ConflictError:
                return False
            return True

        wins = await asyncio.gather(*(attempt(i) for i in range(8)))
        assert sum(wins) == 1
        assert await storage.get_item("race") == wins.index(True)

    async def test_watch_reports_updates_and_removals_with_full_keys(
        self, storage: Storage, driver: Driver
    ) -> None:
        events: list[tuple[str, str]] = []
        if not driver.capabilities.watch:
            with pytest.raises(UnsupportedError):
                await driver.watch(lambda event, key: None)
            return
        unwatch = await storage.watch(lambda event, key: events.append((event, key)))
        await asyncio.sleep(0.2)  # backends that watch out of process need a moment to subscribe
        await storage.set_item("w:a", 1)
        await storage.remove_item("w:a")
        wanted = [("update", "w:a"), ("remove", "w:a")]
        await _wait_for(events, wanted)
        assert all(item in events for item in wanted), events
        await unwatch()
        count = len(events)
        await storage.set_item("w:b", 1)
        await asyncio.sleep(0.3)
        assert len(events) == count

    async def test_watch_through_a_mount_and_a_namespace_reports_full_keys(
        self, storage: Storage, driver: Driver
    ) -> None:
        view = storage.namespace("ns")
        if not driver.capabilities.watch:
            with pytest.raises(UnsupportedError):
                await view.watch(lambda event, key: None)
            return
        seen: list[tuple[str, str]] = []
        everything: list[tuple[str, str]] = []
        await view.watch(lambda event, key: seen.append((event, key)))
        await storage.watch(lambda event, key: everything.append((event, key)))
        await asyncio.sleep(0.2)
        await view.set_item("k", 1)
        await storage.set_item("other", 1)
        await _wait_for(everything, [("update", "ns:k"), ("update", "other")])
        await asyncio.sleep(0.1)
        assert ("update", "k") in seen
        assert all(key != "other" for _, key in seen)
        assert ("update", "ns:k") in everything
        await storage.unwatch()
        await view.unwatch()

    async def test_get_item_with_etag_reads_a_version_that_guards_writes(
        self, storage: Storage, driver: Driver
    ) -> None:
        assert await storage.get_item_with_etag("absent", default="d") == ("d", None)
        await storage.set_item("k", {"n": 1})
        value, etag = await storage.get_item_with_etag("k")
        assert value == {"n": 1}
        if not driver.capabilities.conditional:
            assert etag is None
            return
        assert etag == (await storage.get_meta("k"))["etag"]
        await storage.set_item("k", {"n": 2}, if_match=etag)
        with pytest.raises(ConflictError):
            await storage.set_item("k", {"n": 3}, if_match=etag)
        assert await storage.get_item_with_etag("k") == (
            {"n": 2},
            (await storage.get_meta("k"))["etag"],
        )
