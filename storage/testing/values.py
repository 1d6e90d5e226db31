"""Values every driver must carry losslessly through the default serializer."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

ROUND_TRIP: dict[str, Any] = {
    "none": None,
    "true": True,
    "false": False,
    "zero": 0,
    "negative": -42,
    "big_int": 2**100,
    "negative_big_int": -(2**90),
    "float": 1.5,
    "negative_zero": -0.0,
    "inf": float("inf"),
    "minus_inf": float("-inf"),
    "numeric_str": "123",
    "json_looking_str": '{"a": 1}',
    "true_str": "true",
    "empty_str": "",
    "unicode_str": "héllo wörld ✓ 🎉",
    "list": [1, "two", 3.0, None, [True]],
    "dict": {"a": 1, "b": {"c": [1, 2]}},
    "empty_dict": {},
    "bytes": b"\x00\x01\xfe\xff raw",
    "set": {1, 2, 3},
    "frozenset": frozenset({"a", "b"}),
    "tuple": (1, "a", (2, 3)),
    "naive_datetime": dt.datetime(2026, 11, 26, 12, 30, 45, 123456),
    "aware_datetime": dt.datetime(2026, 3, 29, 1, 30, tzinfo=dt.timezone(dt.timedelta(hours=5))),
    "zoned_datetime": dt.datetime(2026, 10, 25, 2, 30, tzinfo=ZoneInfo("Europe/Paris")),
    "date": dt.date(1999, 12, 31),
    "time": dt.time(23, 59, 59, 999),
    "timedelta": dt.timedelta(days=-2, seconds=5, microseconds=7),
    "decimal": Decimal("3.14159265358979323846264338327950288"),
    "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "nested": {
        "tags": {"x", "y"},
        "when": [dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc), dt.date(2020, 1, 2)],
        "pair": ("k", b"v"),
        "int_keys": {1: "one", 2: "two"},
        "dollar": {"$t": "not a tag", "$tagged": 1},
    },
    "envelope_lookalike": {"$tagged": 1, "value": "plain"},
}

UNUSUAL_KEYS: list[str] = [
    "with space",
    "unicode:héllo:日本語",
    "emoji:🎉",
    "percent:100%",
    "percent:%2F%00",
    "star:*",
    "question:what?",
    "bracket:[a-z]",
    "quotes:'single'",
    'quotes:"double"',
    "backtick:`cmd`",
    "semicolon;drop table",
    "dollar:$HOME",
    "hash:#fragment",
    "ampersand:a&b=c",
    "plus:a+b",
    "tilde:~user",
    "dots:...",
    "dots:.hidden",
    "dots:trailing.",
    "caret:^$|",
    "braces:{slot}",
    "long:" + "x" * 300,
    "Case:Key",
    "case:key",
]

TRAVERSAL_KEYS: list[str] = [
    "..",
    "../etc/passwd",
    "a/../../b",
    "a:..:b",
    "./a",
    "a\x00b",
    "line\nbreak",
    "tab\there",
]
