"""Converters for single decoded JSON values, the pieces the built-in validator of typed views
(`_typed_fields`) assembles into one converter per model.

Each converter takes a value as orjson decoded it and returns it as the declared type, or
raises `Invalid`. They are strict: a value must already have the declared type, with the few
readings JSON needs (an int for a float; ISO 8601 text for datetime, date and time; text for
UUID and Decimal; an array for tuple, set and frozenset; an enum's value for the enum).
"""

from __future__ import annotations

import datetime as _dt
import enum
import uuid
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = [
    "NUMERIC",
    "SIMPLE",
    "Convert",
    "Invalid",
    "enum_of",
    "items_of",
    "json_kind",
    "literal_of",
    "mapping_of",
    "none",
    "tuple_of",
    "union_of",
]

#: Checks one decoded JSON value and returns it as the declared type; raises `Invalid`.
Convert = Callable[[Any], Any]

_JSON_KINDS = {
    type(None): "null",
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    str: "text",
    list: "an array",
    dict: "an object",
}


class Invalid(ValueError):
    """A JSON value that does not fit its declared type; ``path`` says where in the value."""

    def __init__(self, message: str, path: tuple[str | int, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.path = path

    def under(self, part: str | int) -> Invalid:
        """The same failure, one level further down (inside field or item ``part``)."""
        return Invalid(self.message, (part, *self.path))

    def __str__(self) -> str:
        where = ".".join(str(part) for part in self.path)
        return f"{where}: {self.message}" if where else self.message


def json_kind(value: Any) -> str:
    return _JSON_KINDS.get(type(value), type(value).__name__)


def same(value: Any) -> Any:
    return value


def _scalar(kind: type, *also: type) -> Convert:
    name = _JSON_KINDS[kind]

    def convert(value: Any) -> Any:
        if type(value) is kind:
            return value
        if type(value) in also:
            return kind(value)
        raise Invalid(f"expected {name}, got {json_kind(value)}")

    return convert


def _text(kind: Callable[[str], Any], what: str) -> Convert:
    def convert(value: Any) -> Any:
        if type(value) is str:
            try:
                return kind(value)
            except (ValueError, TypeError):
                pass
        raise Invalid(f"expected {what}, got {value!r}")

    return convert


def _datetime(text: str) -> _dt.datetime:
    # Python 3.10 reads no "Z"; other clients often write one.
    return _dt.datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)


def _decimal(value: Any) -> Decimal:
    if type(value) in (str, int, float):
        try:
            return Decimal(value if type(value) is str else str(value))
        except InvalidOperation:
            pass
    raise Invalid(f"expected decimal text, got {value!r}")


SIMPLE: dict[Any, Convert] = {
    Any: same,
    object: same,
    bool: _scalar(bool),
    int: _scalar(int),
    float: _scalar(float, int),
    str: _scalar(str),
    _dt.datetime: _text(_datetime, "ISO 8601 date and time text"),
    _dt.date: _text(_dt.date.fromisoformat, "ISO 8601 date text"),
    _dt.time: _text(_dt.time.fromisoformat, "ISO 8601 time text"),
    uuid.UUID: _text(uuid.UUID, "UUID text"),
    Decimal: _decimal,
}
# Readings that turn a number into another type: tried last in a union, so 1 stays an int.
NUMERIC = {SIMPLE[float], _decimal}


def none(value: Any) -> None:
    if value is not None:
        raise Invalid(f"expected null, got {json_kind(value)}")


def enum_of(kind: type[enum.Enum]) -> Convert:
    def convert(value: Any) -> Any:
        if type(value) in (str, int, float):
            try:
                member = kind(value)
            except ValueError:
                pass
            else:
                if type(member.value) is type(value):  # 1.0 is no IntEnum, "1" no int value
                    return member
        values = ", ".join(repr(member.value) for member in kind)
        raise Invalid(f"expected one of {values} ({kind.__qualname__}), got {value!r}")

    return convert


def literal_of(choices: tuple[Any, ...]) -> Convert:
    allowed = {
        ((type(c.value), c.value) if isinstance(c, enum.Enum) else (type(c), c)): c for c in choices
    }

    def convert(value: Any) -> Any:
        try:
            return allowed[type(value), value]
        except (KeyError, TypeError):
            raise Invalid(f"expected one of {list(choices)!r}, got {value!r}") from None

    return convert


def union_of(members: list[Convert], names: str) -> Convert:
    ordered = sorted(members, key=lambda member: member in NUMERIC)

    def convert(value: Any) -> Any:
        for member in ordered:
            try:
                return member(value)
            except Invalid:
                continue
        raise Invalid(f"expected {names}, got {json_kind(value)}")

    return convert


def items_of(item: Convert, build: Callable[[Any], Any]) -> Convert:
    def convert(value: Any) -> Any:
        if type(value) is not list:
            raise Invalid(f"expected an array, got {json_kind(value)}")
        try:
            return build([item(element) for element in value])
        except Invalid:
            for index, element in enumerate(value):
                try:
                    item(element)
                except Invalid as exc:
                    raise exc.under(index) from None
            raise
        except TypeError as exc:  # an unhashable item for a set
            raise Invalid(str(exc)) from None

    return convert


def tuple_of(items: list[Convert]) -> Convert:
    def convert(value: Any) -> Any:
        if type(value) is not list or len(value) != len(items):
            raise Invalid(f"expected an array of {len(items)} items, got {json_kind(value)}")
        result = []
        for index, (item, element) in enumerate(zip(items, value, strict=True)):
            try:
                result.append(item(element))
            except Invalid as exc:
                raise exc.under(index) from None
        return tuple(result)

    return convert


def mapping_of(key: Convert, item: Convert) -> Convert:
    def convert(value: Any) -> Any:
        if type(value) is not dict:
            raise Invalid(f"expected an object, got {json_kind(value)}")
        result = {}
        for name, element in value.items():
            try:
                result[key(name)] = item(element)
            except Invalid as exc:
                raise exc.under(name) from None
        return result

    return convert
