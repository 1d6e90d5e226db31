"""The kit: single items, every value type, keys and their errors."""

from __future__ import annotations

from typing import Any

import pytest

from storage import InvalidKeyError, SerializationError, Storage

from .base import DriverFixtures, conformance_tests
from .values import ROUND_TRIP, TRAVERSAL_KEYS, UNUSUAL_KEYS


@conformance_tests
class ItemTests(DriverFixtures):
    """Set, get, remove; lossless values; normalized and unusual keys; refused keys."""

    async def test_a_new_store_is_empty(self, storage: Storage) -> None:
        assert await storage.get_keys() == []
        assert await storage.get_item("missing") is None
        assert await storage.has_item("missing") is False

    async def test_set_then_get_returns_the_value(self, storage: Storage) -> None:
        await storage.set_item("greeting", "hello")
        assert await storage.get_item("greeting") == "hello"
        assert await storage.has_item("greeting") is True

    async def test_get_of_a_missing_key_returns_the_default(self, storage: Storage) -> None:
        assert await storage.get_item("nothing", default="fallback") == "fallback"

    async def test_set_overwrites(self, storage: Storage) -> None:
        await storage.set_item("k", 1)
        await storage.set_item("k", 2)
        assert await storage.get_item("k") == 2

    async def test_remove_deletes_and_missing_keys_are_fine(self, storage: Storage) -> None:
        await storage.set_item("k", "v")
        await storage.remove_item("k")
        assert await storage.has_item("k") is False
        assert await storage.get_item("k") is None
        await storage.remove_item("k")

    async def test_every_value_type_round_trips_exactly(self, storage: Storage) -> None:
        await storage.set_items({f"types:{name}": value for name, value in ROUND_TRIP.items()})
        stored = await storage.get_items([f"types:{name}" for name in ROUND_TRIP])
        for name, value in ROUND_TRIP.items():
            got = stored[f"types:{name}"]
            assert got == value, name
            assert type(got) is type(value), name
        assert str(await storage.get_item("types:negative_zero")) == "-0.0"

    @pytest.mark.parametrize("name", ["numeric_str", "nested", "zoned_datetime", "big_int"])
    async def test_single_values_round_trip_through_set_item(
        self, storage: Storage, name: str
    ) -> None:
        await storage.set_item("one", ROUND_TRIP[name])
        got = await storage.get_item("one")
        assert got == ROUND_TRIP[name]
        assert type(got) is type(ROUND_TRIP[name])

    async def test_nan_round_trips(self, storage: Storage) -> None:
        await storage.set_item("nan", float("nan"))
        value = await storage.get_item("nan")
        assert isinstance(value, float)
        assert value != value

    async def test_raw_bytes_round_trip_unchanged(self, storage: Storage) -> None:
        data = bytes(range(256)) * 4
        await storage.set_item_raw("blob", data)
        assert await storage.get_item_raw("blob") == data
        assert await storage.get_item_raw("absent") is None

    async def test_json_values_are_stored_as_plain_json(self, storage: Storage) -> None:
        await storage.set_item("doc", {"id": 1, "tags": ["a"]})
        assert await storage.get_item_raw("doc") == b'{"id":1,"tags":["a"]}'
        await storage.set_item("str", "123")
        assert await storage.get_item_raw("str") == b'"123"'

    async def test_keys_are_normalized(self, storage: Storage) -> None:
        await storage.set_item("/a/b\\c::d/", "v")
        assert await storage.get_item("a:b:c:d") == "v"
        assert await storage.get_keys() == ["a:b:c:d"]

    @pytest.mark.parametrize("key", UNUSUAL_KEYS)
    async def test_unusual_keys_round_trip(self, storage: Storage, key: str) -> None:
        await storage.set_item(key, key)
        assert await storage.get_item(key) == key
        assert await storage.get_keys() == [key]
        await storage.remove_item(key)
        assert await storage.get_keys() == []

    async def test_keys_differing_only_by_case_are_distinct(self, storage: Storage) -> None:
        await storage.set_items({"Case:Key": 1, "case:key": 2, "CASE:KEY": 3})
        assert await storage.get_items(["Case:Key", "case:key", "CASE:KEY"]) == {
            "Case:Key": 1,
            "case:key": 2,
            "CASE:KEY": 3,
        }

    async def test_a_key_can_also_be_a_parent_of_other_keys(self, storage: Storage) -> None:
        await storage.set_items({"a": "parent", "a:b": "child", "a:b:c": "grandchild"})
        assert await storage.get_item("a") == "parent"
        assert await storage.get_item("a:b") == "child"
        assert sorted(await storage.get_keys()) == ["a", "a:b", "a:b:c"]
        await storage.remove_item("a")
        assert await storage.get_item("a:b") == "child"

    @pytest.mark.parametrize("key", TRAVERSAL_KEYS)
    async def test_traversal_and_control_keys_are_rejected(
        self, storage: Storage, key: str
    ) -> None:
        with pytest.raises(InvalidKeyError):
            await storage.set_item(key, "x")
        with pytest.raises(InvalidKeyError):
            await storage.get_item(key)
        assert await storage.get_keys() == []

    @pytest.mark.parametrize("key", ["", ":", "//", None, 5])
    async def test_empty_or_non_text_keys_are_rejected(self, storage: Storage, key: Any) -> None:
        with pytest.raises(InvalidKeyError):
            await storage.set_item(key, "x")
        with pytest.raises(InvalidKeyError):
            await storage.has_item(key)

    async def test_unserializable_values_fail_before_any_write(self, storage: Storage) -> None:
        await storage.set_item("kept", "old")
        with pytest.raises(SerializationError, match="kept"):
            await storage.set_item("kept", object())
        with pytest.raises(SerializationError, match="object"):
            await storage.set_items({"new": 1, "bad": {"x": object()}})
        assert await storage.get_item("kept") == "old"
        assert await storage.get_keys() == ["kept"]

    async def test_raw_writes_take_only_bytes(self, storage: Storage) -> None:
        with pytest.raises(SerializationError):
            await storage.set_item_raw("k", "text")  # type: ignore[arg-type]
        assert await storage.get_keys() == []
