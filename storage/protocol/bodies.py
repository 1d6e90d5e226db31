"""Request and response bodies: values as each client sends them, batches and listings."""

from __future__ import annotations

import binascii
import json
import re
from base64 import b64decode, b64encode
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

import orjson

from ..errors import (
    InvalidArgumentError,
)
from ..keys import normalize_key
from ..ttl import ttl_seconds
from ..values import ENVELOPE, is_envelope
from .codes import ProtocolError
from .headers import JSON, OCTET, TEXT, media_type

__all__ = [
    "BATCH_BYTES",
    "BATCH_KEYS",
    "Batch",
    "BatchOp",
    "ListingReader",
    "ListingWriter",
    "PutBody",
    "ValueBodies",
    "batch_answer",
    "batch_body",
    "page_body",
    "parse_batch",
    "parse_batch_values",
    "parse_page",
    "raw_body",
    "read_put_body",
    "value_body",
]

# -- values as clients send them -------------------------------------------------------------


@dataclass(slots=True)
class PutBody:
    """What a PUT body stores: its bytes as they are (``raw``), or ``value`` serialized.

    Not frozen: a frozen dataclass sets each field through ``object.__setattr__``, which
    tripled the cost of making the one every PUT makes."""

    raw: bool
    data: bytes
    value: Any = None


def read_put_body(body: bytes, content_type: str | None) -> PutBody:
    """How a PUT body is stored, decided (and checked) before any I/O.

    ``application/octet-stream`` is bytes. JSON text is already the stored form of its JSON
    value, so its bytes are kept as sent, unless it is shaped like the serializer's envelope,
    which a reader would take for the tagged form: that value is stored serialized. Other
    text is a string, as unstorage sends one.
    """
    if media_type(content_type) == OCTET:
        return PutBody(True, body)
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        try:
            return PutBody(False, body, body.decode("utf-8"))
        except UnicodeDecodeError:
            raise InvalidArgumentError(
                "a text body must be UTF-8; send bytes as application/octet-stream"
            ) from None
    if type(value) is dict and ENVELOPE in value and is_envelope(value):
        return PutBody(False, body, value)
    if _has_float(value) and _LONG_NUMBER.search(body):
        # orjson reads an int beyond 64 bits as a float; read such text exactly and, if it
        # really holds one, store it serialized so that every reader gets the int back.
        # Without a float in the value there is no such int, and no text to scan (the scan
        # of a 1 KB body cost a third of a PUT's time in the server).
        exact = _exact_json(body)
        if _has_big_int(exact):
            return PutBody(False, body, exact)
    return PutBody(True, body)


_LONG_NUMBER = re.compile(rb"\d{19}")


def _exact_json(body: bytes) -> Any:
    def integer(text: str) -> int:
        return int(text) if len(text) < 4000 else int(Decimal(text))

    return json.loads(body, parse_int=integer)


def _has_float(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is float:
            return True
        if kind is dict:
            stack.extend(item.values())
        elif kind is list:
            stack.extend(item)
    return False


def _has_big_int(value: Any) -> bool:
    kind = type(value)
    if kind is int:
        return not -(2**63) <= value < 2**64
    if kind is list:
        return any(_has_big_int(item) for item in value)
    if kind is dict:
        return any(_has_big_int(item) for item in value.values())
    return False


def value_body(data: bytes, loads: Callable[[bytes], Any]) -> tuple[bytes, str]:
    """The body and content type of a non-raw GET of stored ``data``.

    A string is sent as its bare text, another JSON value as its JSON text, bytes that are
    not JSON as bytes. The tagged form is sent as the value itself when ``loads`` (the
    storage's serializer) gives plain JSON, as the tagged JSON otherwise.
    """
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return data, OCTET
    if type(value) is dict and ENVELOPE in value and is_envelope(value):
        try:
            decoded = loads(data)
        except Exception:
            return data, JSON
        if not _plain(decoded):
            return data, JSON
        value = decoded
        data = json.dumps(decoded).encode() if _has_big_int(decoded) else orjson.dumps(decoded)
    if isinstance(value, str):
        return value.encode("utf-8"), TEXT
    return data, JSON


class ValueBodies:
    """`value_body` remembered per key: the body and content type of the last value each key
    sent, for as long as the key still holds those very bytes.

    A remembered answer is used only when the stored bytes read now are the bytes it was made
    from (the same object, else equal bytes), so it is sound over any driver whatever its
    etags, and a write is seen at the next read. At most ``keys`` keys are remembered (the
    oldest goes first) and only values of at most ``max_bytes``: the memo holds at most
    ``keys`` values of that size beyond what the driver holds. On a server the parse it saves
    is the largest step of a GET of a JSON value (benchmarks/bench_server.py)."""

    __slots__ = ("_answers", "_keys", "_loads", "_max_bytes")

    def __init__(
        self, loads: Callable[[bytes], Any], *, keys: int = 1024, max_bytes: int = 4096
    ) -> None:
        self._loads = loads
        self._keys = keys
        self._max_bytes = max_bytes
        self._answers: dict[str, tuple[bytes, bytes, str]] = {}

    def __len__(self) -> int:
        return len(self._answers)

    def get(self, key: str, data: bytes) -> tuple[bytes, str]:
        """The body and content type of a non-raw GET of ``key``, which holds ``data``."""
        answers = self._answers
        known = answers.get(key)
        if known is not None and (known[0] is data or known[0] == data):
            return known[1], known[2]
        body, content_type = value_body(data, self._loads)
        if len(data) <= self._max_bytes:
            if known is None and len(answers) >= self._keys:
                del answers[next(iter(answers))]
            answers[key] = (data, body, content_type)
        elif known is not None:
            del answers[key]
        return body, content_type


def raw_body(data: bytes) -> bytes:
    """The body of a raw GET that did not ask for the stored bytes (`STORED_HEADER`).

    A stored string is sent as its text, as unstorage's server sends one; any other value
    as stored. Bytes that spell a JSON string literal read the same way: stored as a string,
    the two cannot be told apart.
    """
    if data[:1] != b'"':
        return data
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return data
    return value.encode("utf-8") if isinstance(value, str) else data


def _plain(value: Any) -> bool:
    """True for a value made only of JSON types that any JSON reader gets back the same."""
    kind = type(value)
    if kind is dict:
        return all(type(key) is str and _plain(item) for key, item in value.items())
    if kind is list:
        return all(_plain(item) for item in value)
    if kind is float:
        return bool(value - value == 0.0)
    return value is None or kind is str or kind is bool or kind is int


# -- batches ----------------------------------------------------------------------------------

#: Most keys, and most value bytes, one batch request carries.
BATCH_KEYS = 1000
BATCH_BYTES = 4 * 1024 * 1024

BatchOp = Literal["get", "set", "remove"]
_BATCH_SHAPE = (
    '{"get": [keys]}, {"remove": [keys]} or {"set": [[key, base64], ...], "ttl": seconds}'
)


@dataclass(frozen=True, slots=True)
class Batch:
    """A validated ``POST base/?batch`` body: the operation, full keys and, for set, values."""

    op: BatchOp
    keys: tuple[str, ...]
    values: tuple[bytes, ...] = ()
    ttl: float | None = None


def batch_body(
    op: BatchOp,
    keys: Sequence[str] = (),
    items: Sequence[tuple[str, bytes]] = (),
    ttl: float | None = None,
) -> bytes:
    """The body of a batch request (keys relative to the base the request is posted to)."""
    if op == "set":
        pairs = [[key, b64encode(value).decode()] for key, value in items]
        return orjson.dumps({"set": pairs} if ttl is None else {"set": pairs, "ttl": ttl})
    return orjson.dumps({op: list(keys)})


def _batch_error(detail: str) -> InvalidArgumentError:
    return InvalidArgumentError(f"a batch is {_BATCH_SHAPE}: {detail}")


def parse_batch(body: bytes, base: str) -> Batch:
    """Validate a batch body completely, before any I/O; keys become ``base`` + key, normalized."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise _batch_error("the body is not JSON") from None
    if not isinstance(parsed, dict):
        raise _batch_error(f"the body is a JSON {type(parsed).__name__}, not an object")
    ops = [op for op in ("get", "set", "remove") if op in parsed]
    if len(ops) != 1:
        raise _batch_error("it holds exactly one of get, set and remove")
    op: BatchOp = ops[0]  # type: ignore[assignment]
    extra = set(parsed) - {op, "ttl"} if op == "set" else set(parsed) - {op}
    if extra:
        raise _batch_error(f"unknown fields {sorted(extra)}")
    entries = parsed[op]
    if not isinstance(entries, list):
        raise _batch_error(f"{op} takes a JSON array, not {type(entries).__name__}")
    if op != "set":
        if not all(isinstance(key, str) for key in entries):
            raise _batch_error(f"the keys to {op} are strings")
        return Batch(op, tuple(base + normalize_key(key) for key in entries))
    keys: list[str] = []
    values: list[bytes] = []
    for entry in entries:
        if not (
            isinstance(entry, list)
            and len(entry) == 2
            and isinstance(entry[0], str)
            and isinstance(entry[1], str)
        ):
            raise _batch_error(f"each item to set is a [key, base64] pair, not {entry!r:.80}")
        try:
            values.append(b64decode(entry[1], validate=True))
        except (binascii.Error, ValueError):
            raise _batch_error(f"the value of {entry[0]!r} is not base64") from None
        keys.append(base + normalize_key(entry[0]))
    ttl = parsed.get("ttl")
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, (int, float))):
        raise _batch_error(f"ttl is a number of seconds, not {ttl!r}")
    # 0 means no expiry, as in the x-ttl header.
    return Batch(op, tuple(keys), tuple(values), None if ttl == 0 else ttl_seconds(ttl))


def batch_answer(values: Iterable[bytes | None] | None = None) -> bytes:
    """The server's answer to a batch: ``{"ok": true}``, with ``values`` for a get."""
    if values is None:
        return orjson.dumps({"ok": True})
    encoded = [None if value is None else b64encode(value).decode() for value in values]
    return orjson.dumps({"ok": True, "values": encoded})


def parse_batch_values(body: bytes, count: int) -> list[bytes | None]:
    """The values of a batch-get answer, checked: ``count`` of them, each base64 or null."""
    try:
        parsed = orjson.loads(body)
        values = parsed["values"]
        if not isinstance(values, list) or len(values) != count:
            raise ValueError(f"expected {count} values")
        return [None if value is None else b64decode(value, validate=True) for value in values]
    except (orjson.JSONDecodeError, TypeError, KeyError, ValueError, binascii.Error) as exc:
        raise ProtocolError(f"a malformed batch answer: {exc}") from None


# -- listings ---------------------------------------------------------------------------------


class ListingWriter:
    """Frames a streamed listing: one JSON array, one key per line, ``/`` as the separator.

    One key per line lets both ends stream millions of keys in flat memory; the array stays
    valid JSON for unstorage's client, which reads it whole.
    """

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0

    def key(self, key: str) -> bytes:
        """The bytes that add ``key`` (a full key with ``:`` separators)."""
        self.count += 1
        return (b"[\n" if self.count == 1 else b",\n") + orjson.dumps(key.replace(":", "/"))

    def end(self) -> bytes:
        """The bytes that close the array; a listing without them was cut short."""
        return b"\n]" if self.count else b"[]"


class ListingReader:
    """Reads a listing line by line, ours (a key per line) or any JSON array of keys.

    `feed` returns the keys of a line with ``:`` separators; `finish` raises `ProtocolError`
    unless the closing bracket came, so a listing cut short is never taken for a short one.
    """

    __slots__ = ("_complete", "_started")

    def __init__(self) -> None:
        self._started = False
        self._complete = False

    def feed(self, line: str) -> list[str]:
        """The keys on one line of the body."""
        text = line.strip()
        if not text:
            return []
        if self._complete:
            raise ProtocolError("data after the end of a listing")
        if not self._started:
            if not text.startswith("["):
                raise ProtocolError("a listing is a JSON array")
            self._started, text = True, text[1:]
        # A JSON string ends in a quote, so a line ending in "]" is the end of the array.
        if text.endswith("]"):
            self._complete, text = True, text[:-1]
        text = text.strip().rstrip(",")
        if not text:
            return []
        try:
            keys = orjson.loads(f"[{text}]")
        except orjson.JSONDecodeError:
            raise ProtocolError(f"a malformed line in a listing: {line[:80]!r}") from None
        if not all(isinstance(key, str) for key in keys):
            raise ProtocolError("a listing holds only strings")
        return [key.replace("/", ":") for key in keys]

    def finish(self) -> None:
        """Raise `ProtocolError` unless the listing ended properly."""
        if not self._complete:
            raise ProtocolError("the server cut the listing short")


def page_body(keys: Sequence[str], cursor: str | None) -> bytes:
    """One page of a listing: ``{"keys": [...], "cursor": "..." | null}``, keys with ``/``
    separators as in the whole listing."""
    return orjson.dumps({"keys": [key.replace(":", "/") for key in keys], "cursor": cursor})


def parse_page(content: bytes) -> tuple[list[str], str | None] | None:
    """The keys (``:`` separators) and cursor of a page; None when the answer is a whole
    listing instead (a server without pages, such as unstorage's, ignores ``?limit``)."""
    try:
        parsed = orjson.loads(content)
    except orjson.JSONDecodeError:
        raise ProtocolError("a page of keys is JSON") from None
    if isinstance(parsed, list):
        return None
    keys = parsed.get("keys") if isinstance(parsed, dict) else None
    cursor = parsed.get("cursor") if isinstance(parsed, dict) else None
    if not (isinstance(keys, list) and all(isinstance(key, str) for key in keys)):
        raise ProtocolError('a page is {"keys": [strings], "cursor": string or null}')
    if cursor is not None and not isinstance(cursor, str):
        raise ProtocolError("a page's cursor is a string or null")
    return [key.replace("/", ":") for key in keys], cursor
