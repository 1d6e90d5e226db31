"""The kit: listing by base and depth, streamed listing, clearing and snapshots."""

from __future__ import annotations

import pytest

from storage import Storage

from .base import DriverFixtures, conformance_tests

TREE = {
    "foo": 0,
    "foo:a": 1,
    "foo:b:c": 2,
    "foo:b:d:e": 3,
    "foobar:x": 4,
    "fo": 5,
    "other:y": 6,
}


async def _tree(storage: Storage) -> None:
    await storage.set_items(TREE)


@conformance_tests
class ListingTests(DriverFixtures):
    """`get_keys`, `iter_keys`, `clear` and `snapshot` over a small tree of keys."""

    async def test_listing_the_root_returns_every_key(self, storage: Storage) -> None:
        await _tree(storage)
        assert sorted(await storage.get_keys()) == sorted(TREE)

    async def test_listing_a_base_excludes_siblings_sharing_a_prefix(
        self, storage: Storage
    ) -> None:
        await _tree(storage)
        assert sorted(await storage.get_keys("foo")) == ["foo:a", "foo:b:c", "foo:b:d:e"]
        assert sorted(await storage.get_keys("foo:")) == ["foo:a", "foo:b:c", "foo:b:d:e"]
        assert sorted(await storage.get_keys("foo/b/")) == ["foo:b:c", "foo:b:d:e"]
        assert await storage.get_keys("nothing") == []

    @pytest.mark.parametrize(
        ("base", "depth", "expected"),
        [
            ("", 0, ["fo", "foo"]),
            ("", 1, ["fo", "foo", "foo:a", "foobar:x", "other:y"]),
            ("foo", 0, ["foo:a"]),
            ("foo", 1, ["foo:a", "foo:b:c"]),
            ("foo", 5, ["foo:a", "foo:b:c", "foo:b:d:e"]),
        ],
    )
    async def test_max_depth_limits_separators_after_the_base(
        self, storage: Storage, base: str, depth: int, expected: list[str]
    ) -> None:
        await _tree(storage)
        assert sorted(await storage.get_keys(base, max_depth=depth)) == expected

    async def test_iter_keys_streams_the_same_keys(self, storage: Storage) -> None:
        await _tree(storage)
        streamed = [key async for key in storage.iter_keys("foo", max_depth=1)]
        assert sorted(streamed) == ["foo:a", "foo:b:c"]

    async def test_clear_of_a_base_removes_exactly_what_it_lists(self, storage: Storage) -> None:
        await _tree(storage)
        await storage.clear("foo")
        assert sorted(await storage.get_keys()) == ["fo", "foo", "foobar:x", "other:y"]
        assert await storage.get_item("foo") == 0
        assert await storage.get_item("foo:a") is None

    async def test_clear_of_the_root_removes_everything(self, storage: Storage) -> None:
        await _tree(storage)
        await storage.set_meta("foo:a", {"note": "x"})
        await storage.clear()
        assert await storage.get_keys() == []

    async def test_clear_removes_user_meta_of_cleared_keys(self, storage: Storage) -> None:
        await storage.set_item("m:k", 1)
        await storage.set_meta("m:k", {"owner": "ann"})
        await storage.clear("m")
        await storage.set_item("m:k", 2)
        assert "owner" not in await storage.get_meta("m:k")

    async def test_snapshot_and_restore_round_trip(self, storage: Storage) -> None:
        await _tree(storage)
        snap = await storage.snapshot("foo")
        assert snap == {"a": 1, "b:c": 2, "b:d:e": 3}
        await storage.clear()
        await storage.restore_snapshot(snap, "copy")
        assert await storage.get_item("copy:b:d:e") == 3
