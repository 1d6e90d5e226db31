"""The kit: `storage.layers.ReadOnly` over the driver reads the same and writes nothing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from storage import Driver, ReadOnlyError, Storage, create_storage
from storage.layers import ReadOnly

from .base import DriverFixtures, conformance_tests

_SEED = {"a": 1, "dir:b": "two", "dir:sub:c": [3], "z": {"four": 4}}


async def _seeded(storage: Storage, driver: Driver) -> Storage:
    await storage.set_items(_SEED)
    await storage.set_meta("a", {"owner": "ann"})
    return create_storage(ReadOnly(driver))


_WRITES: dict[str, Callable[[Storage], Awaitable[object]]] = {
    "set_item": lambda s: s.set_item("a", 9),
    "set_item_raw": lambda s: s.set_item_raw("new", b"x"),
    "set_items": lambda s: s.set_items({"a": 9, "new": 1}),
    "set_items_raw": lambda s: s.set_items_raw({"new": b"x"}),
    "create_only": lambda s: s.set_item("new", 1, if_none_match=True),
    "remove_item": lambda s: s.remove_item("a"),
    "remove_items": lambda s: s.remove_items(["a", "z"]),
    "clear_base": lambda s: s.clear("dir"),
    "clear_all": lambda s: s.clear(),
    "set_meta": lambda s: s.set_meta("a", {"owner": "eve"}),
    "remove_meta": lambda s: s.remove_meta("a"),
}


@conformance_tests
class ReadOnlyTests(DriverFixtures):
    """Reads through `ReadOnly` match the driver; every write is refused and changes nothing."""

    async def test_reads_through_read_only_match_the_driver(
        self, storage: Storage, driver: Driver
    ) -> None:
        frozen = await _seeded(storage, driver)
        assert frozen.capabilities().read_only
        assert await frozen.get_item("a") == 1
        assert await frozen.has_item("dir:b")
        assert await frozen.get_items(list(_SEED)) == _SEED
        assert sorted(await frozen.get_keys()) == sorted(_SEED)
        assert sorted(await frozen.get_keys("dir", max_depth=0)) == ["dir:b"]
        assert sorted([key async for key in frozen.iter_keys("dir")]) == ["dir:b", "dir:sub:c"]
        assert (await frozen.get_meta("a"))["owner"] == "ann"
        assert await frozen.get_item_with_etag("z") == await storage.get_item_with_etag("z")

    @pytest.mark.parametrize("write", sorted(_WRITES))
    async def test_every_write_through_read_only_is_refused_and_changes_nothing(
        self, storage: Storage, driver: Driver, write: str
    ) -> None:
        frozen = await _seeded(storage, driver)
        with pytest.raises(ReadOnlyError):
            await _WRITES[write](frozen)
        assert await storage.get_items(list(_SEED)) == _SEED
        assert sorted(await storage.get_keys()) == sorted(_SEED)
        assert (await storage.get_meta("a"))["owner"] == "ann"

    async def test_the_layer_itself_refuses_callers_that_bypass_storage(
        self, driver: Driver
    ) -> None:
        layer = ReadOnly(driver)
        assert layer.name == f"readonly({driver.name})"
        for call in (
            layer.set_item("k", b"v"),
            layer.set_items([("k", b"v")]),
            layer.remove_item("k"),
            layer.clear(),
            layer.set_user_meta("k", b"{}"),
        ):
            with pytest.raises(ReadOnlyError):
                await call
        assert await driver.get_keys() == []
