"""``increment`` for the dynamodb driver: a native number attribute, added to in one request.

A counter made by ``increment`` is stored as the number attribute ``counter`` (no ``value``),
and reads render it as JSON integer text, the form the Storage contract stores. Adding to it is
one UpdateItem ``ADD``, conditioned on the item being a live counter whose result stays in the
signed 64-bit range (JSON integer text past it is not an int to the default serializer), and,
when the increment may create the key, on no text value being there. Everything else takes a
compare-and-set round: a missing or expired key is created (with the increment's TTL) by a
create-only write; a value written as JSON integer text is replaced, conditioned on its
version, by a number. Contended rounds back off and retry, at most
`storage.atomic.CAS_ATTEMPTS` times; a result outside 64 bits is an `InvalidArgumentError`.
"""

from __future__ import annotations

import asyncio
import random
import time
from decimal import Decimal
from typing import Any

from drivers._dynamodb_client import DynamoClient
from drivers._dynamodb_items import (
    ABSENT,
    LIVE,
    expression,
    item_key,
    new_item,
    new_version,
    number,
    value_of,
)
from storage import ConflictError, InvalidArgumentError
from storage.atomic import CAS_ATTEMPTS, decode_counter

__all__ = ["Counters"]

#: What a counter may hold: signed 64-bit integers (DynamoDB numbers hold 38 digits).
_INT64 = range(-(2**63), 2**63)


def _checked(key: str, by: int, value: int) -> int:
    if value not in _INT64:
        raise InvalidArgumentError(
            f"incrementing {key!r} by {by} would leave the signed 64-bit range of counters"
        )
    return value


class Counters:
    """The increments of one driver's table, through its `DynamoClient`; ``consistent`` as
    the driver's ``consistent_reads``."""

    __slots__ = ("_consistent", "_db")

    def __init__(self, db: DynamoClient, consistent: bool) -> None:
        self._db = db
        self._consistent = consistent

    async def increment(self, key: str, by: int, deadline: float | None) -> int:
        """Add ``by`` to the counter at ``key`` (created at 0, with ``deadline`` if given; an
        existing key keeps its own) and return the new value."""
        if by not in _INT64:
            raise InvalidArgumentError(f"counters are added to by 64-bit integers, not by {by}")
        for attempt in range(CAS_ATTEMPTS):
            added = await self._add(key, by, may_create=deadline is None)
            if added is not None:
                return added
            response = await self._db.request(
                "increment", key, "get_item", Key=item_key(key), ConsistentRead=self._consistent
            )
            item: dict[str, Any] = response.get("Item") or {}
            now = time.time()
            current = value_of(item, now)
            value = _checked(key, by, decode_counter(key, current) + by)
            try:
                if current is None:
                    await self._create(key, value, deadline, now)
                else:
                    await self._replace(key, value, item["version"]["S"], now)
            except ConflictError:
                await asyncio.sleep(random.uniform(0, min(0.05, 0.001 * 2**attempt)))
                continue
            return value
        raise ConflictError(key, f"still contended after {CAS_ATTEMPTS} attempts")

    async def _add(self, key: str, by: int, *, may_create: bool) -> int | None:
        """One ``ADD``; None when the item is not a live counter that can take ``by`` (or, with
        ``may_create``, absent)."""
        item = item_key(key)
        now = time.time()
        in_range = "#n BETWEEN :lo AND :hi"  # the sum stays a 64-bit integer
        if may_create:
            # A new item gets no deadline: that is what an increment without a TTL creates.
            condition = f"attribute_not_exists(#v) AND (attribute_not_exists(#n) OR ({in_range}))"
        else:
            condition = f"attribute_exists(#n) AND {in_range}"
        update = "ADD #n :by SET #ver = :ver, #m = :now"
        if item["sk"]["B"] != key.encode():
            update += ", #key = :key"
        try:
            response = await self._db.request(
                "increment",
                key,
                "update_item",
                conditional=True,
                Key=item,
                ReturnValues="UPDATED_NEW",
                **expression(
                    {
                        ":by": {"N": str(by)},
                        ":ver": {"S": new_version()},
                        ":now": number(now),
                        ":key": {"B": key.encode()},
                        ":lo": {"N": str(_INT64.start - min(by, 0))},
                        ":hi": {"N": str(_INT64.stop - 1 - max(by, 0))},
                    },
                    UpdateExpression=update,
                    ConditionExpression=f"{condition} AND {LIVE}",
                ),
            )
        except ConflictError:
            return None
        return int(Decimal(response["Attributes"]["counter"]["N"]))

    async def _create(self, key: str, value: int, deadline: float | None, now: float) -> None:
        """Store a new counter where no live item is; `ConflictError` if one appeared."""
        await self._db.request(
            "increment",
            key,
            "put_item",
            conditional=True,
            Item=new_item(key, value, new_version(), deadline, now),
            **expression({":now": number(now)}, ConditionExpression=ABSENT),
        )

    async def _replace(self, key: str, value: int, version: str, now: float) -> None:
        """Replace the value of version ``version`` by the counter ``value``, keeping its
        deadline; `ConflictError` if another write came first."""
        await self._db.request(
            "increment",
            key,
            "update_item",
            conditional=True,
            Key=item_key(key),
            **expression(
                {
                    ":n": {"N": str(value)},
                    ":ver": {"S": new_version()},
                    ":now": number(now),
                    ":etag": {"S": version},
                },
                UpdateExpression="SET #n = :n, #ver = :ver, #m = :now REMOVE #v",
                ConditionExpression=f"#ver = :etag AND {LIVE}",
            ),
        )
