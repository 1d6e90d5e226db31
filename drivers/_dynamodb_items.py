"""The dynamodb driver's item layout: how a key and its value become one DynamoDB item.

Every item has the binary key attributes ``pk`` (the key's first segment, as UTF-8) and ``sk``
(the whole key, as UTF-8), so the keys under a base share a partition and sort by their bytes.
A partition or sort key longer than DynamoDB takes (2048 and 1024 bytes) keeps its head, then
the byte 0xFF (never in UTF-8, so no whole key can look like it) and a SHA-256 of the whole;
the key itself then also goes in ``key`` (such keys sort by the digest after their head, so
listings keep key order only within the limits). The value is ``value`` (bytes), or
``counter`` (a number) for counters made by ``increment``; ``version`` is the etag, ``mtime``
and ``expires`` epoch seconds (``expires`` is the native TTL attribute).

Expressions name attributes through ``#placeholders`` (several names are reserved words);
`expression` adds exactly the names an expression uses, as DynamoDB insists.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from decimal import Decimal
from typing import Any

from storage import InvalidArgumentError

__all__ = [
    "ABSENT",
    "LIVE",
    "MAX_ITEM_BYTES",
    "deadline_of",
    "expression",
    "item_key",
    "key_of",
    "listed_prefix",
    "live",
    "new_item",
    "new_version",
    "number",
    "partition",
    "value_of",
]

#: DynamoDB's item size limit, attribute names included: 400 KB.
MAX_ITEM_BYTES = 400 * 1024
_PK_LIMIT = 2048
_SK_LIMIT = 1024
_DIGEST = 32
_NAMES = {
    "#pk": "pk",
    "#sk": "sk",
    "#key": "key",
    "#v": "value",
    "#n": "counter",
    "#ver": "version",
    "#m": "mtime",
    "#e": "expires",
}
_PLACEHOLDER = re.compile(r"#[a-z]+")
_VALUE = re.compile(r":[a-z]+")

#: A condition that holds while the item has no deadline or it is still ahead (``:now``).
LIVE = "(attribute_not_exists(#e) OR #e > :now)"
#: A condition that holds where no live item is: none at all, or one past its deadline.
ABSENT = "(attribute_not_exists(#pk) OR #e <= :now)"


def _shorten(data: bytes, limit: int) -> bytes:
    if len(data) <= limit:
        return data
    return data[: limit - _DIGEST - 1] + b"\xff" + hashlib.sha256(data).digest()


def partition(key: str) -> bytes:
    """The partition key of ``key`` (or of a non-empty base): its first segment."""
    return _shorten(key.partition(":")[0].encode(), _PK_LIMIT)


def item_key(key: str) -> dict[str, Any]:
    """The primary key of ``key``'s item."""
    return {"pk": {"B": partition(key)}, "sk": {"B": _shorten(key.encode(), _SK_LIMIT)}}


def listed_prefix(base: str) -> bytes:
    """The ``begins_with`` operand that selects every sort key under ``base`` (a shortened sort
    key keeps only a head, so a longer base also selects neighbours, which the caller drops)."""
    return base.encode()[: _SK_LIMIT - _DIGEST - 1]


def key_of(item: dict[str, Any]) -> str:
    """The key an item holds."""
    found = item.get("key") or item["sk"]
    return bytes(found["B"]).decode()


def new_version() -> str:
    """A fresh etag: random, so no two writes share one."""
    return os.urandom(8).hex()


def number(value: float) -> dict[str, str]:
    """A DynamoDB number attribute for epoch seconds, to the millisecond."""
    return {"N": f"{value:.3f}"}


def new_item(
    key: str, value: bytes | int, version: str, deadline: float | None, now: float | None = None
) -> dict[str, Any]:
    """The whole item that stores ``value`` at ``key`` (an int as a native counter);
    `InvalidArgumentError` when it would exceed DynamoDB's 400 KB, measured as DynamoDB does,
    before any request is made."""
    item = item_key(key)
    if item["sk"]["B"] != key.encode():
        item["key"] = {"B": key.encode()}
    if isinstance(value, int):
        item["counter"] = {"N": str(value)}
    else:
        item["value"] = {"B": value}
    item["version"] = {"S": version}
    item["mtime"] = number(time.time() if now is None else now)
    if deadline is not None:
        item["expires"] = number(deadline)
    # Room is kept for a deadline, so that a touch never pushes a stored item over the limit.
    size = item_size(item if deadline is not None else {**item, "expires": item["mtime"]})
    if size > MAX_ITEM_BYTES:
        shown = key if len(key) <= 80 else key[:80] + "..."
        raise InvalidArgumentError(
            f"the value of {shown!r} makes a {size}-byte DynamoDB item; items hold at most "
            f"{MAX_ITEM_BYTES} bytes (400 KB, attribute names and the key included)"
        )
    return item


def item_size(item: dict[str, Any]) -> int:
    """The size DynamoDB counts for ``item``: each attribute's UTF-8 name plus its value
    (bytes as they are, text as UTF-8, a number one byte per two significant digits plus one)."""
    size = 0
    for name, attribute in item.items():
        size += len(name.encode())
        if "B" in attribute:
            size += len(attribute["B"])
        elif "S" in attribute:
            size += len(attribute["S"].encode())
        else:
            digits = attribute["N"].lstrip("-").replace(".", "").strip("0")
            size += (len(digits) + 1) // 2 + 1
    return size


def deadline_of(item: dict[str, Any]) -> float | None:
    """The item's TTL deadline in epoch seconds, or None."""
    found = item.get("expires")
    return None if found is None else float(found["N"])


def live(item: dict[str, Any], now: float) -> bool:
    """True for an item that exists and is not past its deadline (DynamoDB deletes expired
    items late, so reads must not take an item's presence for its life)."""
    deadline = deadline_of(item)
    return bool(item) and (deadline is None or deadline > now)


def value_of(item: dict[str, Any], now: float) -> bytes | None:
    """The stored bytes of a live item (a counter as JSON integer text); None for an item past
    its deadline or none at all."""
    if not live(item, now):
        return None
    counter = item.get("counter")
    if counter is not None:
        return str(int(Decimal(counter["N"]))).encode()
    return bytes(item["value"]["B"])


def expression(values: dict[str, Any] | None = None, **clauses: str) -> dict[str, Any]:
    """Request parameters for expressions (``ConditionExpression=...`` and the like), with
    the attribute names they use and those of ``values`` they use (DynamoDB refuses unused
    ones)."""
    params: dict[str, Any] = dict(clauses)
    text = " ".join(clauses.values())
    names = sorted(set(_PLACEHOLDER.findall(text)))
    if names:
        params["ExpressionAttributeNames"] = {name: _NAMES[name] for name in names}
    used = set(_VALUE.findall(text))
    if values and used:
        params["ExpressionAttributeValues"] = {k: v for k, v in values.items() if k in used}
    return params
