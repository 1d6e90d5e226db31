"""Values: the serializer protocol and the default serializer.

The default serializer writes a value made only of JSON types (None, bool, str, finite float,
int within 64 bits, list, dict with str keys) as plain JSON text. Anything else, and a dict
shaped like the envelope (which plain text could not tell from it), is written in the *tagged
form*, which is JSON too::

    {"$tagged": 1, "value": <tree>}

Inside ``<tree>`` a non-JSON value is an object ``{"$t": <tag>, "v": <payload>}``:

========== =================================================================
tag        payload
========== =================================================================
bytes      base64 text
tuple      array of items
set        array of items (``frozenset`` for frozensets)
dict       array of ``[key, value]`` pairs (non-str keys, or a ``"$t"`` key)
int        decimal text (ints outside the signed/unsigned 64-bit range); ints too large
           for Python's decimal conversion limit as ``"0x..."`` / ``"-0x..."`` hex text
float      ``"nan"``, ``"inf"`` or ``"-inf"``
datetime   ISO 8601 text; ``"tz"`` holds an IANA zone name when there is one
date       ISO 8601 text
time       ISO 8601 text
timedelta  ``[days, seconds, microseconds]``
decimal    decimal text
uuid       canonical text
========== =================================================================

Only an object with exactly the keys ``"$tagged"`` (equal to 1) and ``"value"`` is read as the
envelope; any other JSON text, whoever wrote it, reads back as the JSON value it is.

Decoding never executes code: it only rebuilds the types above. Whatever the bytes, a failure
to decode is a `SerializationError`, never another exception.
"""

from __future__ import annotations

import base64
import datetime as _dt
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

import orjson

from .errors import SerializationError

__all__ = ["JSONSerializer", "Serializer", "default_serializer"]

ENVELOPE = "$tagged"
_TAG = "$t"
_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1
# Decimal text is used while it stays well under Python's int/str conversion limit (4300
# digits by default, a guard against quadratic conversions); larger ints are written in hex,
# which has no limit because its conversion is linear.
_DECIMAL_BITS = 12_000


@runtime_checkable
class Serializer(Protocol):
    """Turns values into bytes and back; plugged into a Storage with ``serializer=``."""

    def dumps(self, value: Any) -> bytes: ...

    def loads(self, data: bytes) -> Any: ...


def is_plain_json(value: Any) -> bool:
    """True when the default serializer writes ``value`` as plain JSON text (orjson alone)."""
    # Scalars are checked inline: this runs on every write, and calls cost more than the checks.
    kind = type(value)
    if kind is dict:
        if ENVELOPE in value and is_envelope(value):
            return False
        for key, item in value.items():
            if type(key) is not str:
                return False
            kind = type(item)
            if kind is str or kind is bool or item is None:
                continue
            if kind is int:
                if -9223372036854775808 <= item <= 18446744073709551615:
                    continue
                return False
            if kind is float:
                if item - item == 0.0:
                    continue
                return False
            if (kind is dict or kind is list) and is_plain_json(item):
                continue
            return False
        return True
    if kind is list:
        for item in value:
            kind = type(item)
            if kind is str or kind is bool or item is None:
                continue
            if kind is int:
                if -9223372036854775808 <= item <= 18446744073709551615:
                    continue
                return False
            if kind is float:
                if item - item == 0.0:
                    continue
                return False
            if (kind is dict or kind is list) and is_plain_json(item):
                continue
            return False
        return True
    if kind is str or kind is bool or value is None:
        return True
    if kind is int:
        return bool(-9223372036854775808 <= value <= 18446744073709551615)
    if kind is float:
        return bool(value - value == 0.0)
    return False


def _tag(name: str, payload: Any) -> dict[str, Any]:
    return {_TAG: name, "v": payload}


def _int_text(value: int) -> str:
    if value.bit_length() < _DECIMAL_BITS:
        return str(value)
    return hex(value)


def _int_value(text: Any) -> int:
    if type(text) is not str:
        raise SerializationError("corrupt tagged value: an int is text")
    digits = text.removeprefix("-")
    if digits.startswith("0x"):
        return int(text, 16)
    if not digits.isascii() or not digits.isdigit():
        raise SerializationError("corrupt tagged value: an int is decimal or 0x text")
    return int(text)


def _encode_datetime(value: _dt.datetime) -> dict[str, Any]:
    tagged = _tag("datetime", value.isoformat())
    zone = getattr(value.tzinfo, "key", None)
    if isinstance(zone, str):
        tagged["tz"] = zone
    return tagged


def _encode(value: Any) -> Any:
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if kind is int:
        return value if _INT_MIN <= value <= _INT_MAX else _tag("int", _int_text(value))
    if kind is float:
        return value if value - value == 0.0 else _tag("float", repr(value))
    if kind is list:
        return [_encode(item) for item in value]
    if kind is dict:
        if _TAG not in value and all(type(key) is str for key in value):
            return {key: _encode(item) for key, item in value.items()}
        return _tag("dict", [[_encode(k), _encode(v)] for k, v in value.items()])
    encoder = _ENCODERS.get(kind)
    if encoder is not None:
        return encoder(value)
    for base, encoder in _SUBCLASS_ENCODERS:
        if isinstance(value, base):
            return encoder(value)
    raise SerializationError(
        f"cannot serialize a value of type {kind.__qualname__}: store models (and enums inside "
        "them) through storage.typed(Model), or give create_storage a serializer= that knows it"
    )


_ENCODERS: dict[type, Callable[[Any], Any]] = {
    bytes: lambda v: _tag("bytes", base64.b64encode(v).decode("ascii")),
    bytearray: lambda v: _tag("bytes", base64.b64encode(v).decode("ascii")),
    memoryview: lambda v: _tag("bytes", base64.b64encode(v).decode("ascii")),
    tuple: lambda v: _tag("tuple", [_encode(item) for item in v]),
    set: lambda v: _tag("set", [_encode(item) for item in v]),
    frozenset: lambda v: _tag("frozenset", [_encode(item) for item in v]),
    _dt.datetime: _encode_datetime,
    _dt.date: lambda v: _tag("date", v.isoformat()),
    _dt.time: lambda v: _tag("time", v.isoformat()),
    _dt.timedelta: lambda v: _tag("timedelta", [v.days, v.seconds, v.microseconds]),
    Decimal: lambda v: _tag("decimal", str(v)),
    uuid.UUID: lambda v: _tag("uuid", str(v)),
}

# Subclasses (IntEnum, StrEnum, OrderedDict, namedtuple, ...) are stored as their base type:
# they come back equal, though not as the subclass.
_SUBCLASS_ENCODERS: tuple[tuple[type, Callable[[Any], Any]], ...] = (
    (bool, bool),
    (int, lambda v: _encode(int(v))),
    (float, lambda v: _encode(float(v))),
    (str, lambda v: str.__str__(v)),
    (dict, lambda v: _encode(dict(v))),
    (list, lambda v: _encode(list(v))),
    (tuple, lambda v: _encode(tuple(v))),
    (_dt.datetime, _encode_datetime),
    (_dt.date, lambda v: _tag("date", v.isoformat())),
    (set, lambda v: _encode(set(v))),
    (frozenset, lambda v: _encode(frozenset(v))),
    (bytes, lambda v: _encode(bytes(v))),
    (Decimal, lambda v: _tag("decimal", str(v))),
    (uuid.UUID, lambda v: _tag("uuid", str(v))),
)


def _decode_datetime(tagged: dict[str, Any]) -> _dt.datetime:
    value = _dt.datetime.fromisoformat(tagged["v"])
    zone = tagged.get("tz")
    if zone is None:
        return value
    from zoneinfo import ZoneInfo

    # The wall time is kept as written, even one a DST change skips or repeats; the offset
    # written beside it tells which of two repeated wall times it was (the fold).
    local = value.replace(tzinfo=ZoneInfo(zone))
    if value.utcoffset() is not None and local.utcoffset() != value.utcoffset():
        local = local.replace(fold=1)
    return local


def _decode_dict(pairs: list[list[Any]]) -> dict[Any, Any]:
    return {_decode_key(key): _decode(item) for key, item in pairs}


def _decode_key(key: Any) -> Any:
    decoded = _decode(key)
    if isinstance(decoded, list):  # an unhashable key cannot have been written
        raise SerializationError("corrupt tagged value: a dict key decodes to a list")
    return decoded


_DECODERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "bytes": lambda t: base64.b64decode(t["v"], validate=True),
    "tuple": lambda t: tuple(_decode(item) for item in t["v"]),
    "set": lambda t: {_decode(item) for item in t["v"]},
    "frozenset": lambda t: frozenset(_decode(item) for item in t["v"]),
    "dict": lambda t: _decode_dict(t["v"]),
    "int": lambda t: _int_value(t["v"]),
    "float": lambda t: float(t["v"]),
    "datetime": _decode_datetime,
    "date": lambda t: _dt.date.fromisoformat(t["v"]),
    "time": lambda t: _dt.time.fromisoformat(t["v"]),
    "timedelta": lambda t: _dt.timedelta(days=t["v"][0], seconds=t["v"][1], microseconds=t["v"][2]),
    "decimal": lambda t: Decimal(t["v"]),
    "uuid": lambda t: uuid.UUID(t["v"]),
}


def _decode(value: Any) -> Any:
    kind = type(value)
    if kind is list:
        return [_decode(item) for item in value]
    if kind is dict:
        tag = value.get(_TAG)
        if tag is None:
            return {key: _decode(item) for key, item in value.items()}
        decoder = _DECODERS.get(tag)
        if decoder is None:
            raise SerializationError(f"corrupt tagged value: unknown tag {tag!r}")
        return decoder(value)
    return value


class JSONSerializer:
    """The default serializer: plain JSON for JSON-only values, the tagged form for the rest."""

    __slots__ = ()

    def dumps(self, value: Any) -> bytes:
        """Encode ``value``; raise `SerializationError` for a type it cannot represent."""
        try:
            if is_plain_json(value):
                return orjson.dumps(value)
            return orjson.dumps({ENVELOPE: 1, "value": _encode(value)})
        except SerializationError:
            raise
        except Exception as exc:
            raise SerializationError(f"cannot serialize value: {exc}") from exc

    def loads(self, data: bytes) -> Any:
        """Decode bytes written by `dumps` (or any JSON text); `SerializationError` otherwise."""
        try:
            value = orjson.loads(data)
            if type(value) is dict and is_envelope(value):
                return _decode(value["value"])
            return value
        except SerializationError:
            raise
        except Exception as exc:  # hostile bytes: any failure is a decoding failure
            raise SerializationError(f"cannot decode stored value: {exc}") from exc


def is_envelope(value: dict[str, Any]) -> bool:
    """True for a decoded JSON object that is the tagged form's envelope."""
    version = value.get(ENVELOPE)
    return len(value) == 2 and type(version) is int and version == 1 and "value" in value


default_serializer = JSONSerializer()
