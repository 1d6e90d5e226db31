"""The default serializer: plain JSON where it can, a documented tagged form elsewhere."""

from __future__ import annotations

import json
from typing import Any

import pytest

from storage import JSONSerializer, SerializationError, create_storage

serializer = JSONSerializer()


@pytest.mark.parametrize(
    "value", [None, True, 0, -(2**63), 2**64 - 1, 1.25, "", "123", [1, [2]], {"a": {"b": None}}]
)
def test_json_only_values_are_plain_json_text(value: Any) -> None:
    data = serializer.dumps(value)
    assert json.loads(data) == value


def test_other_values_use_the_tagged_envelope() -> None:
    data = json.loads(serializer.dumps({"tags": {"a"}}))
    assert data == {"$tagged": 1, "value": {"tags": {"$t": "set", "v": ["a"]}}}


def test_a_plain_dict_shaped_like_the_envelope_is_escaped() -> None:
    value = {"$tagged": 1, "value": {"$t": "bytes", "v": "AA=="}}
    assert serializer.loads(serializer.dumps(value)) == value


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b'{"$tagged": 1, "value": {"$t": "pickle", "v": "gASV"}}',
        b'{"$tagged": 1, "value": {"$t": "bytes", "v": "***"}}',
        b'{"$tagged": 1}',
    ],
)
def test_corrupt_or_unknown_data_raises_serialization_error(data: bytes) -> None:
    with pytest.raises(SerializationError):
        serializer.loads(data)


@pytest.mark.parametrize("value", [object(), {"a": lambda: 1}, [1, {2, object()}], "\ud800"])
def test_unsupported_values_raise_naming_the_type(value: Any) -> None:
    with pytest.raises(SerializationError):
        serializer.dumps(value)


def test_subclasses_come_back_as_equal_base_values() -> None:
    from collections import OrderedDict
    from enum import IntEnum

    class Level(IntEnum):
        HIGH = 3

    value = {"level": Level.HIGH, "ordered": OrderedDict(a=1)}
    assert serializer.loads(serializer.dumps(value)) == {"level": 3, "ordered": {"a": 1}}


class _Upper:
    """A toy serializer: proves the protocol is all a Storage needs."""

    def dumps(self, value: Any) -> bytes:
        return str(value).upper().encode()

    def loads(self, data: bytes) -> Any:
        return data.decode()


async def test_a_storage_uses_a_plugged_serializer() -> None:
    storage = create_storage(serializer=_Upper())
    await storage.set_item("k", "quiet")
    assert await storage.get_item("k") == "QUIET"
    assert await storage.get_item_raw("k") == b"QUIET"


async def test_decoding_errors_name_the_key() -> None:
    storage = create_storage()
    await storage.set_item_raw("broken", b"\xff\xfe")
    with pytest.raises(SerializationError, match="broken"):
        await storage.get_item("broken")
