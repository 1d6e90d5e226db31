"""Atomic operations over HTTP: ``POST /key?increment=N`` and ``POST /key?touch``, their
query values and their answers, both ways. unstorage's server answers every ``POST`` on a key
with 405, so neither route can be taken for one of its own."""

from __future__ import annotations

import re

import orjson

from ..errors import InvalidArgumentError
from .codes import ProtocolError

__all__ = [
    "INCREMENT_QUERY",
    "TOUCH_QUERY",
    "counter_body",
    "parse_by",
    "parse_counter",
    "parse_touched",
    "touched_body",
]

#: ``POST /key?increment=N`` (``N`` defaults to 1, may be negative; ``x-ttl`` for a new key).
INCREMENT_QUERY = "increment"
#: ``POST /key?touch`` with ``x-ttl``: a new TTL for an existing key.
TOUCH_QUERY = "touch"

# Any int: a counter is JSON integer text of any size (4000 digits is below the limit of
# Python's int parsing).
_INTEGER = re.compile(r"[+-]?[0-9]{1,4000}")


def parse_by(raw: str) -> int:
    """The ``N`` of ``?increment=N``: an integer, 1 when empty."""
    if not raw:
        return 1
    if _INTEGER.fullmatch(raw) is None:
        raise InvalidArgumentError(f"increment takes an integer, not {raw[:40]!r}")
    return int(raw)


def counter_body(value: int) -> bytes:
    """The answer to an increment: the new value as JSON integer text."""
    return str(value).encode()


def parse_counter(content: bytes) -> int:
    """The new value an increment answered."""
    text = content.decode("ascii", "replace").strip()
    if _INTEGER.fullmatch(text) is None:
        raise ProtocolError(f"an increment answers an integer, not {text[:40]!r}")
    return int(text)


def touched_body(found: bool) -> bytes:
    """The answer to a touch: ``{"found": true}`` or ``{"found": false}``."""
    return orjson.dumps({"found": found})


def parse_touched(content: bytes) -> bool:
    """Whether the key a touch named existed."""
    try:
        found = orjson.loads(content)["found"]
    except (orjson.JSONDecodeError, TypeError, KeyError):
        found = None
    if not isinstance(found, bool):
        raise ProtocolError(f'a touch answers {{"found": bool}}, not {content[:40]!r}')
    return found
