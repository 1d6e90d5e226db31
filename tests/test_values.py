"""The default serializer: plain JSON where it can, a documented tagged form elsewhere."""

from __future__ import annotations

import datetime as dt
import json
import zoneinfo
from typing import Any

import orjson
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


@pytest.mark.parametrize("digits", [4301, 20_000])
def test_ints_past_the_decimal_conversion_limit_round_trip(digits: int) -> None:
    for value in (10**digits + 7, -(10**digits) - 7):
        assert serializer.loads(serializer.dumps(value)) == value


@pytest.mark.parametrize(
    "text",
    [
        {"$tagged": "note"},
        {"$tagged": 2, "value": "x"},
        {"$tagged": True, "value": {"$t": "bytes", "v": "aGk="}},
        {"$tagged": 1, "value": 1, "other": 2},
        {"$t": "bytes", "v": "aGk="},
    ],
)
def test_json_that_is_not_exactly_the_envelope_reads_as_written(text: dict[str, Any]) -> None:
    assert serializer.loads(orjson.dumps(text)) == text


@pytest.mark.parametrize(
    "value", [{"$tagged": 1, "value": {"$t": "bytes", "v": "aGk="}}, {"$tagged": "note"}]
)
def test_dicts_shaped_like_the_envelope_round_trip(value: dict[str, Any]) -> None:
    assert serializer.loads(serializer.dumps(value)) == value


@pytest.mark.parametrize(
    "hostile",
    [
        b'{"$tagged":1,"value":{"$t":"decimal","v":"abc"}}',
        b'{"$tagged":1,"value":{"$t":"timedelta","v":[1e300,0,0]}}',
        b'{"$tagged":1,"value":{"$t":"int","v":"' + b"9" * 5000 + b'"}}',
        b'{"$tagged":1,"value":{"$t":"int","v":"1e5"}}',
        b'{"$tagged":1,"value":{"$t":"datetime","v":"2020-01-01","tz":5}}',
        b'{"$tagged":1,"value":{"$t":"datetime","v":"2020-01-01","tz":"../../etc/passwd"}}',
        b'{"$tagged":1,"value":{"$t":"datetime","v":7}}',
        b'{"$tagged":1,"value":{"$t":"set","v":[[1]]}}',
        b'{"$tagged":1,"value":{"$t":"set","v":7}}',
        b'{"$tagged":1,"value":{"$t":"dict","v":[[1]]}}',
        b'{"$tagged":1,"value":{"$t":"bytes","v":"***"}}',
        b'{"$tagged":1,"value":{"$t":"uuid","v":"nope"}}',
        b'{"$tagged":1,"value":{"$t":"nosuch","v":1}}',
        b'{"$tagged":1,"value":{"$t":"float","v":"abc"}}',
        b"[" * 100_000,
        b"\xff\xfe",
    ],
)
def test_hostile_bytes_raise_serialization_error_only(hostile: bytes) -> None:
    with pytest.raises(SerializationError):
        serializer.loads(hostile)


@pytest.mark.parametrize(
    ("wall", "fold"),
    [
        ((2000, 3, 26, 3, 0), 0),  # skipped by the spring change in Bucharest
        ((2000, 10, 29, 3, 30), 0),  # repeated by the autumn change: first time
        ((2000, 10, 29, 3, 30), 1),  # and second time
    ],
)
def test_aware_datetimes_around_dst_changes_round_trip(
    wall: tuple[int, int, int, int, int], fold: int
) -> None:
    zone = zoneinfo.ZoneInfo("Europe/Bucharest")
    year, month, day, hour, minute = wall
    value = dt.datetime(year, month, day, hour, minute, tzinfo=zone, fold=fold)
    back = serializer.loads(serializer.dumps(value))
    assert (back.replace(tzinfo=None), back.tzinfo, back.fold) == (
        value.replace(tzinfo=None),
        zone,
        fold,
    )
    assert back.utcoffset() == value.utcoffset()
