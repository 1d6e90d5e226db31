"""Routes, header names and header values: paths and keys, media types, ``x-ttl``,
``max_depth``, bearer tokens and the native-meta headers."""

from __future__ import annotations

import contextlib
import functools
import math
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any
from urllib.parse import quote

from ..errors import (
    InvalidArgumentError,
)
from ..ttl import ttl_seconds
from .conditions import format_etag, parse_etag

__all__ = [
    "BATCH_QUERY",
    "CODE_HEADER",
    "CURSOR_QUERY",
    "JSON",
    "LIMIT_QUERY",
    "MAX_DEPTH_QUERY",
    "MAX_PAGE",
    "META_QUERY",
    "OCTET",
    "RENEW_TTL_HEADER",
    "SIZE_HEADER",
    "STORED_HEADER",
    "TEXT",
    "TTL_HEADER",
    "accepts",
    "check_token",
    "format_ttl",
    "is_base_path",
    "key_path",
    "media_type",
    "meta_headers",
    "meta_of_headers",
    "parse_limit",
    "parse_max_depth",
    "parse_ttl",
]

OCTET = "application/octet-stream"
JSON = "application/json"
TEXT = "text/plain; charset=utf-8"
TTL_HEADER = "x-ttl"
SIZE_HEADER = "x-size"
#: Every error answer also carries its code here, for HEAD, whose answers have no body.
CODE_HEADER = "x-error-code"
#: On a GET: renew the key's TTL to these seconds as it is read (``get_item(renew_ttl=)``);
#: the answer repeats it, so a client can tell a server that renewed from one that ignored it.
RENEW_TTL_HEADER = "x-renew-ttl"
#: On a raw GET (``Accept: application/octet-stream``): send the stored bytes exactly. Without
#: it a stored string comes back as its text, as from unstorage's server (``PUT -d hello`` reads
#: back ``hello``); unistorage's http driver always sends it, so every value round-trips.
STORED_HEADER = "x-stored-bytes"
META_QUERY = "meta"
BATCH_QUERY = "batch"
MAX_DEPTH_QUERY = "max_depth"
#: ``GET base/?limit=N&cursor=C``: one page of a listing (`storage.Storage.list_keys`).
LIMIT_QUERY = "limit"
CURSOR_QUERY = "cursor"
#: The most keys a server puts in one page, whatever the limit asked (fewer come with a cursor).
MAX_PAGE = 10_000


# -- paths, media types, simple headers -------------------------------------------------------


def key_path(key: str, *, base: bool = False) -> str:
    """The URL path of a full key (``a:b`` -> ``/a/b``), percent-encoded; ``base`` ends it in ``/``."""
    path = "/" + quote(key.strip(":").replace(":", "/"), safe="/")
    return path + "/" if base and path != "/" else path


def is_base_path(path: str) -> bool:
    """True when a request path names a base (it ends in ``/`` or ``:``), not an item."""
    return path.endswith(("/", ":"))


def media_type(header: str | None) -> str:
    """The media type of a ``Content-Type`` value, lowercased (MIME types ignore case)."""
    return (header or "").split(";", 1)[0].strip().lower()


def accepts(header: str | None, media: str) -> bool:
    """True when an ``Accept`` value names ``media`` itself (not through a wildcard)."""
    if not header or media not in header.lower():
        return False  # most requests: no Accept, or one that cannot name ``media``
    return any(media_type(part) == media for part in header.split(","))


def format_ttl(seconds: float) -> str:
    """The ``x-ttl`` value a client sends for ``seconds``."""
    return repr(float(seconds))


def parse_ttl(raw: str | None) -> float | None:
    """Seconds from an ``x-ttl`` value; absent, empty and ``0`` mean none (as unstorage sends)."""
    if raw is None or raw.strip() in ("", "0"):
        return None
    try:
        if not raw.isascii():
            raise ValueError(raw)
        value = float(raw)
    except ValueError:
        raise InvalidArgumentError(f"x-ttl must be seconds, not {raw!r}") from None
    try:
        return ttl_seconds(value)
    except InvalidArgumentError:
        raise InvalidArgumentError(
            f"x-ttl must be a finite number of seconds > 0, not {raw!r}"
        ) from None


def parse_max_depth(raw: str | None) -> int | None:
    """``?max_depth=N`` as an int (ASCII digits only), or None when absent or empty."""
    if not raw:
        return None
    if re.fullmatch(r"[0-9]{1,9}", raw) is None:
        raise InvalidArgumentError(f"max_depth must be an integer >= 0, not {raw!r}")
    return int(raw)


def parse_limit(raw: str) -> int:
    """``?limit=N`` as an int >= 1 (ASCII digits only)."""
    if re.fullmatch(r"[0-9]{1,9}", raw) is None or int(raw) < 1:
        raise InvalidArgumentError(f"limit must be an integer >= 1, not {raw!r}")
    return int(raw)


def check_token(token: object, what: str = "a bearer token") -> str:
    """``token`` if it can ever authenticate: visible ASCII, no spaces (the value is not shown)."""
    if not isinstance(token, str) or not token:
        raise InvalidArgumentError(f"{what} must be a non-empty string")
    if not all("!" <= char <= "~" for char in token):
        raise InvalidArgumentError(
            f"{what} may hold only visible ASCII characters: no spaces, newlines, control "
            "characters or non-ASCII letters (an HTTP header could never carry it)"
        )
    return token


# -- native meta in headers -------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def _http_date(second: int) -> bytes:
    # HTTP dates have whole seconds, and under load many answers share one: format each once.
    return format_datetime(datetime.fromtimestamp(second, timezone.utc), usegmt=True).encode()


_TTL_NAME, _SIZE_NAME = TTL_HEADER.encode(), SIZE_HEADER.encode()


def meta_headers(
    meta: Mapping[str, Any], etag: str | None = None, size: int | None = None
) -> list[tuple[bytes, bytes]]:
    """Headers for a key's native meta (``mtime``, ``ttl`` in whole seconds), its version and
    its stored size, as ASGI sends them (lowercase names, bytes): every GET and HEAD sends
    them, and encoding them one by one on the way out cost a GET more than making them."""
    headers: list[tuple[bytes, bytes]] = []
    mtime = meta.get("mtime")
    if isinstance(mtime, datetime):
        # An aware datetime's timestamp is the same in any zone; a naive one is taken as UTC.
        stamp = mtime if mtime.tzinfo else mtime.replace(tzinfo=timezone.utc)
        headers.append((b"last-modified", _http_date(math.floor(stamp.timestamp()))))
    ttl = meta.get("ttl")
    if isinstance(ttl, (int, float)) and not isinstance(ttl, bool) and 0 < ttl < float("inf"):
        # Whole seconds, as unstorage sends and reads them (parseInt); rounded up, since 0
        # means no TTL, and a cache may keep the value only while it surely lives.
        headers.append((_TTL_NAME, b"%d" % math.ceil(ttl)))
        headers.append((b"cache-control", b"max-age=%d" % math.floor(ttl)))
    if etag is not None:
        headers.append((b"etag", format_etag(etag).encode()))
    if size is not None:
        headers.append((_SIZE_NAME, b"%d" % size))
    return headers


def meta_of_headers(headers: Mapping[str, str]) -> dict[str, Any]:
    """Native meta read back from a HEAD answer's headers (what a field cannot parse is left out)."""
    meta: dict[str, Any] = {}
    with contextlib.suppress(TypeError, ValueError, IndexError):
        if modified := headers.get("last-modified"):
            meta["mtime"] = parsedate_to_datetime(modified)
    with contextlib.suppress(ValueError):
        if ttl := headers.get(TTL_HEADER):
            meta["ttl"] = float(ttl)
    if (etag := parse_etag(headers.get("etag"))) is not None:
        meta["etag"] = etag
    with contextlib.suppress(ValueError):
        if size := headers.get(SIZE_HEADER):
            meta["size"] = int(size)
    return meta
