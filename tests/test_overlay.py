"""The overlay driver: layered reads, top-layer writes, tombstones."""

from __future__ import annotations

import pytest

from drivers.memory import MemoryDriver
from drivers.overlay import TOMBSTONE, OverlayDriver
from storage import InvalidArgumentError, ReadOnlyError, Storage, create_storage
from storage.layers import ReadOnly


async def _layered() -> tuple[Storage, MemoryDriver, MemoryDriver]:
    top, bottom = MemoryDriver(), MemoryDriver()
    base = create_storage(bottom)
    await base.set_items({"a": "bottom-a", "b": "bottom-b", "dir:x": 1, "dir:y": 2})
    return create_storage(OverlayDriver(layers=[top, bottom])), top, bottom


async def test_reads_fall_through_to_lower_layers() -> None:
    storage, _, _ = await _layered()
    assert await storage.get_item("a") == "bottom-a"
    assert await storage.get_items(["a", "missing", "dir:x"]) == {
        "a": "bottom-a",
        "missing": None,
        "dir:x": 1,
    }


async def test_writes_go_to_the_top_and_shadow_lower_values() -> None:
    storage, top, bottom = await _layered()
    await storage.set_item("a", "top-a")
    assert await storage.get_item("a") == "top-a"
    assert await bottom.get_item("a") == b'"bottom-a"'
    assert await top.get_item("a") == b'"top-a"'


async def test_a_removed_key_stays_removed_although_a_lower_layer_has_it() -> None:
    storage, top, bottom = await _layered()
    await storage.remove_item("a")
    assert await storage.get_item("a") is None
    assert await storage.has_item("a") is False
    assert "a" not in await storage.get_keys()
    assert await storage.get_meta("a") == {}
    assert await top.get_item("a") == TOMBSTONE
    assert await bottom.get_item("a") == b'"bottom-a"'


async def test_removing_a_key_only_the_top_has_leaves_no_tombstone() -> None:
    storage, top, _ = await _layered()
    await storage.set_item("fresh", 1)
    await storage.remove_item("fresh")
    assert await top.get_keys() == []


async def test_writing_after_a_removal_brings_the_key_back() -> None:
    storage, _, _ = await _layered()
    await storage.remove_item("a")
    await storage.set_item("a", "again")
    assert await storage.get_item("a") == "again"


async def test_listing_merges_layers_without_duplicates() -> None:
    storage, _, _ = await _layered()
    await storage.set_item("a", "top-a")
    await storage.set_item("c", 3)
    assert sorted(await storage.get_keys()) == ["a", "b", "c", "dir:x", "dir:y"]
    assert sorted(await storage.get_keys("dir")) == ["dir:x", "dir:y"]


async def test_clear_hides_lower_keys_under_the_base_only() -> None:
    storage, _, bottom = await _layered()
    await storage.set_item("dir:z", 3)
    await storage.clear("dir")
    assert sorted(await storage.get_keys()) == ["a", "b"]
    assert sorted(await bottom.get_keys("dir:")) == ["dir:x", "dir:y"]


async def test_meta_comes_from_the_layer_holding_the_value() -> None:
    storage, _, _ = await _layered()
    assert (await storage.get_meta("b"))["size"] == len(b'"bottom-b"')


async def test_a_read_only_top_layer_refuses_writes() -> None:
    storage = create_storage(OverlayDriver(layers=[ReadOnly(MemoryDriver()), MemoryDriver()]))
    with pytest.raises(ReadOnlyError):
        await storage.set_item("k", 1)


def test_an_overlay_needs_a_layer() -> None:
    with pytest.raises(InvalidArgumentError):
        OverlayDriver(layers=[])


async def test_layers_can_be_names_or_urls() -> None:
    driver = OverlayDriver(layers=["memory", "lru://?max_entries=5"])
    assert [layer.name for layer in driver.layers] == ["memory", "lru"]
    await driver.dispose()
