"""Listing for the dynamodb driver: a base is one Query, the root one Scan, page by page.

Every key under a non-empty base shares the partition of the base's first segment, so a
listing is a Query of that partition with ``begins_with(sk, base)``: it reads the base's keys
and nothing else, in byte order. The root is every item of the table, read by Scan (a Query of
every partition would read the same items, and would need a registry of partitions kept in
step with every write). Only key attributes and the deadline are returned. A page's cursor is
DynamoDB's ``LastEvaluatedKey``, so a key present for the whole listing is listed exactly once.
"""

from __future__ import annotations

import base64
import binascii
import time
from typing import Any

from drivers._dynamodb_client import Send
from drivers._dynamodb_items import deadline_of, expression, key_of, listed_prefix, partition
from storage import InvalidArgumentError

__all__ = ["Page", "decode_cursor", "encode_cursor", "page"]


class Page:
    """One page of a listing: the keys (expired ones too, with their deadlines) and the cursor
    of the next page (None after the last)."""

    __slots__ = ("cursor", "items")

    def __init__(self, items: list[tuple[str, float | None]], cursor: str | None) -> None:
        self.items = items
        self.cursor = cursor

    def live(self, now: float | None = None) -> list[str]:
        """The keys whose deadline, if any, is still ahead."""
        moment = time.time() if now is None else now
        return [key for key, deadline in self.items if deadline is None or deadline > moment]


def encode_cursor(last: dict[str, Any]) -> str:
    """A cursor naming DynamoDB's ``LastEvaluatedKey``."""
    parts = (base64.urlsafe_b64encode(bytes(last[name]["B"])).decode() for name in ("pk", "sk"))
    return ".".join(parts)


def decode_cursor(cursor: str, base: str) -> dict[str, Any]:
    """The ``ExclusiveStartKey`` a cursor of a listing of ``base`` names;
    `InvalidArgumentError` for anything else."""
    try:
        pk, sk = (base64.urlsafe_b64decode(part.encode()) for part in cursor.split("."))
    except (ValueError, binascii.Error):
        raise InvalidArgumentError(f"not a cursor of this dynamodb listing: {cursor!r}") from None
    if base and pk != partition(base):
        raise InvalidArgumentError(f"not a cursor of a listing of {base!r}: {cursor!r}")
    return {"pk": {"B": pk}, "sk": {"B": sk}}


async def page(
    send: Send,
    base: str,
    *,
    limit: int,
    cursor: str | None,
    consistent: bool,
) -> Page:
    """One page of at most ``limit`` items under ``base``, after ``cursor``."""
    params: dict[str, Any] = {"Limit": limit, "ConsistentRead": consistent}
    if cursor is not None:
        params["ExclusiveStartKey"] = decode_cursor(cursor, base)
    if base:
        params |= expression(
            {":p": {"B": partition(base)}, ":s": {"B": listed_prefix(base)}},
            KeyConditionExpression="#pk = :p AND begins_with(#sk, :s)",
            ProjectionExpression="#sk, #key, #e",
        )
        response = await send("query", **params)
    else:
        params |= expression(ProjectionExpression="#sk, #key, #e")
        response = await send("scan", **params)
    items = [(key_of(item), deadline_of(item)) for item in response.get("Items", ())]
    if base:
        # A shortened sort key matched on its head: keep only keys truly under the base.
        items = [(key, deadline) for key, deadline in items if key.startswith(base)]
    last = response.get("LastEvaluatedKey")
    return Page(items, None if last is None else encode_cursor(last))
