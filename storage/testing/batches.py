"""The kit: batch reads, writes and removals, in one call per mount and in input order."""

from __future__ import annotations

from storage import Storage, create_driver

from .base import DriverFixtures, conformance_tests


@conformance_tests
class BatchTests(DriverFixtures):
    """`get_items`, `set_items` and `remove_items`: order, normalized keys, mounts."""

    async def test_get_items_keeps_input_order_with_missing_keys(self, storage: Storage) -> None:
        await storage.set_items({"b": 2, "a": 1, "c": 3})
        result = await storage.get_items(["c", "missing", "a", "b"])
        assert list(result.items()) == [("c", 3), ("missing", None), ("a", 1), ("b", 2)]

    async def test_get_items_returns_normalized_keys(self, storage: Storage) -> None:
        await storage.set_item("x:y", 1)
        assert await storage.get_items(["/x/y"]) == {"x:y": 1}

    async def test_set_items_takes_pairs_and_mappings(self, storage: Storage) -> None:
        await storage.set_items([("p:1", "one"), ("p:2", "two")])
        await storage.set_items({"p:3": "three"})
        assert await storage.get_items(["p:1", "p:2", "p:3"]) == {
            "p:1": "one",
            "p:2": "two",
            "p:3": "three",
        }

    async def test_set_items_with_a_repeated_key_keeps_the_last_value(
        self, storage: Storage
    ) -> None:
        await storage.set_items([("dup", 1), ("dup", 2), ("dup", 3)])
        assert await storage.get_item("dup") == 3

    async def test_large_batches_round_trip(self, storage: Storage) -> None:
        items = {f"bulk:{i:04d}": {"i": i} for i in range(1500)}
        await storage.set_items(items)
        got = await storage.get_items(list(items))
        assert got == items
        assert len(await storage.get_keys("bulk")) == 1500
        await storage.remove_items(list(items)[:1000])
        assert len(await storage.get_keys("bulk")) == 500

    async def test_remove_items_tolerates_missing_keys(self, storage: Storage) -> None:
        await storage.set_items({"r:1": 1, "r:2": 2})
        await storage.remove_items(["r:1", "r:missing"])
        assert await storage.get_keys() == ["r:2"]

    async def test_batches_span_mounts_and_keep_order(self, storage: Storage) -> None:
        storage.mount("side", create_driver("memory"))
        await storage.set_items({"side:a": 1, "root:a": 2, "side:b": 3})
        assert await storage.get_mount("side:a").driver.get_item("a") == b"1"
        result = await storage.get_items(["side:b", "root:a", "nope", "side:a"])
        assert list(result.items()) == [("side:b", 3), ("root:a", 2), ("nope", None), ("side:a", 1)]
        await storage.remove_items(["side:a", "root:a"])
        assert sorted(await storage.get_keys()) == ["side:b"]
