"""The dynamodb driver: keys as items of one DynamoDB table (AWS or DynamoDB Local), via boto3.

Key layout. Each item's partition key ``pk`` is the key's first segment and its sort key ``sk``
the whole key, both binary UTF-8 (``drivers._dynamodb_items``). So the keys under any non-empty
base live in one partition, in byte order, and listing a base is one Query with
``begins_with(sk, base)`` that reads those keys and nothing else: no listing of a base Scans.
Listing the root (the whole table) is a Scan: it reads the items a Query of every partition
would, without a registry of partitions to keep in step with every write (a GSI over all keys
would double every write and be one hot partition itself). Every key is stored losslessly: a
partition or sort key past DynamoDB's 2048 / 1024 bytes keeps its head plus a digest, and the
whole key rides along in another attribute.

Limits of that choice. One partition key value is served by one partition, about 3,000 reads
and 1,000 writes a second; DynamoDB may split a busy item collection by sort-key range, but
keys sharing a first segment (``session:...``, ``cache:...``) share one partition key. Spread
them by mounting the driver below that segment: with ``mounts={"session":
"dynamodb://sessions"}`` each session is its own partition, while a root driver holding
``session:<id>`` keys puts them all in one. No local secondary index is created, so the 10 GB
limit per item collection does not apply. Listing the root reads (and bills) the whole table;
every page reads at most 1 MB. ``max_depth`` is filtered by the core, after the Query.

What is native. Compare-and-set is a ``ConditionExpression`` on the random ``version``
attribute (``if_match="*"``: the item exists; create-only: it does not), for writes and
removes. ``increment`` is one UpdateItem ``ADD`` on a number attribute, which ``get_item``
renders as the JSON integer text the Storage contract stores (``drivers._dynamodb_counter``;
signed 64-bit, as on redis). ``touch`` and ``get_item(renew_ttl=)`` are one conditional
UpdateItem of the deadline. TTL is DynamoDB's own, on ``expires`` (epoch seconds), which
``create=true`` turns on; DynamoDB deletes expired items late (within days), so reads,
conditions and listings treat an item past its deadline as absent. Batches are BatchGetItem /
BatchWriteItem, with unprocessed keys and items sent again (``drivers._dynamodb_batch``). An
item over 400 KB, measured as DynamoDB measures it, is refused with
`storage.InvalidArgumentError` before any request. User meta lives in sibling items; there is
no watch. Reads are strongly consistent unless ``consistent_reads=false``.
"""

from __future__ import annotations

import asyncio
import functools
import re
import time
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from drivers._dynamodb_batch import GET_CHUNK, WRITE_CHUNK, get_all, write_all
from drivers._dynamodb_client import DynamoClient, Send
from drivers._dynamodb_counter import Counters
from drivers._dynamodb_items import (
    ABSENT,
    LIVE,
    expression,
    item_key,
    key_of,
    live,
    new_item,
    new_version,
    number,
    value_of,
)
from drivers._dynamodb_listing import page
from storage import Capabilities, ConflictError, Driver, InvalidArgumentError
from storage.driver import parse_url_options

__all__ = ["DynamoDriver"]

_TABLE = re.compile(r"[A-Za-z0-9_.-]{3,255}\Z")
_TEXT_OPTIONS = frozenset(
    {"endpoint_url", "region", "access_key_id", "secret_access_key", "session_token", "profile"}
)
_PAGE = 1000
_READ = "#v, #n, #e"


def _deadline(ttl: float | None) -> float | None:
    return None if ttl is None else time.time() + ttl


class DynamoDriver(Driver):
    """Keys in one DynamoDB table, on AWS or any DynamoDB-compatible endpoint.

    Failures of the backend raise `DriverError`. Options:

    - ``table``: the table's name (3-255 of ``A-Z a-z 0-9 _ . -``).
    - ``endpoint_url``: another endpoint than AWS's (DynamoDB Local, moto).
    - ``region``, ``access_key_id``, ``secret_access_key``, ``session_token``, ``profile``:
      where and as whom; unset ones come the usual boto3 ways (environment, config files).
    - ``client``: a boto3 DynamoDB client to use as is (left open on dispose).
    - ``create``: create the table when it is missing (on-demand billing, TTL on).
    - ``consistent_reads``: strongly consistent reads and listings (default; twice the read
      cost of eventually consistent ones).
    - ``max_workers``: threads that call DynamoDB, and the size of the connection pool (16).
    - ``pool_timeout``: seconds a request waits for a free thread before `DriverError` (5).
    - ``connect_timeout``, ``read_timeout``: seconds botocore waits (2 and 5).
    - ``max_attempts``: botocore's tries per request, throttled ones included (2): raise it
      for a provisioned table that throttles.
    """

    name = "dynamodb"
    schemes = ("dynamodb",)
    # Bounded: botocore's timeouts and attempts, and bounded batch and compare-and-set rounds.
    capabilities = Capabilities(ttl=True, conditional=True, bounded=True)

    def __init__(
        self,
        table: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
        profile: str | None = None,
        client: Any = None,
        create: bool = False,
        consistent_reads: bool = True,
        max_workers: int = 16,
        connect_timeout: float = 2.0,
        read_timeout: float = 5.0,
        max_attempts: int = 2,
        pool_timeout: float = 5.0,
    ) -> None:
        if not isinstance(table, str) or not _TABLE.match(table):
            raise InvalidArgumentError(
                f"a DynamoDB table name is 3-255 of A-Z a-z 0-9 _ . -, not {table!r}"
            )
        self.table = table
        self._consistent = consistent_reads
        self._db = DynamoClient(
            table,
            client=client,
            endpoint_url=endpoint_url,
            region=region,
            access_key_id=access_key_id,
            secret_access_key=secret_access_key,
            session_token=session_token,
            profile=profile,
            max_workers=max_workers,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_attempts=max_attempts,
            create=create,
            pool_timeout=pool_timeout,
        )
        self._counters = Counters(self._db, consistent_reads)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> DynamoDriver:
        """``dynamodb://table?endpoint_url=...&region=...&create=true`` (query values are
        options)."""
        parts = urlsplit(url)
        if parts.scheme not in cls.schemes:
            raise InvalidArgumentError(f"the dynamodb driver does not read {parts.scheme!r} URLs")
        if parts.path.strip("/"):
            raise InvalidArgumentError(f"a dynamodb URL names only a table: {url!r}")
        merged = parse_url_options(parts.query)
        # Text options stay text, even when they look like numbers (a numeric secret key).
        merged.update((k, v) for k, v in parse_qsl(parts.query) if k in _TEXT_OPTIONS)
        return cls(unquote(parts.netloc), **{**merged, **options})

    async def _get(self, operation: str, key: str, projection: str) -> dict[str, Any]:
        response = await self._db.request(
            operation,
            key,
            "get_item",
            Key=item_key(key),
            ConsistentRead=self._consistent,
            **expression(ProjectionExpression=projection),
        )
        item: dict[str, Any] = response.get("Item") or {}
        return item

    # -- items --------------------------------------------------------------------------------

    async def get_item(self, key: str) -> bytes | None:
        return value_of(await self._get("get_item", key, _READ), time.time())

    async def get_item_with_etag(self, key: str) -> tuple[bytes | None, str | None]:
        item = await self._get("get_item", key, _READ + ", #ver")
        value = value_of(item, time.time())
        return (None, None) if value is None else (value, item["version"]["S"])

    async def has_item(self, key: str) -> bool:
        return live(await self._get("has_item", key, "#pk, #e"), time.time())

    async def get_meta(self, key: str) -> dict[str, Any]:
        item = await self._get("get_meta", key, _READ + ", #ver, #m")
        now = time.time()
        value = value_of(item, now)
        if value is None:
            return {}
        meta: dict[str, Any] = {
            "mtime": datetime.fromtimestamp(float(item["mtime"]["N"]), timezone.utc),
            "size": len(value),
            "etag": item["version"]["S"],
        }
        if "expires" in item:
            meta["ttl"] = max(0.0, float(item["expires"]["N"]) - now)
        return meta

    async def set_item(self, key: str, value: bytes, *, ttl: float | None = None) -> str:
        version = new_version()
        item = new_item(key, value, version, _deadline(ttl))
        await self._db.request("set_item", key, "put_item", Item=item)
        return version

    async def remove_item(self, key: str) -> None:
        await self._db.request("remove_item", key, "delete_item", Key=item_key(key))

    # -- batches ------------------------------------------------------------------------------

    async def get_items(self, keys: Sequence[str]) -> list[bytes | None]:
        unique = list(dict.fromkeys(keys))
        send = self._send("get_items")
        requests = [
            {
                "Keys": [item_key(key) for key in unique[start : start + GET_CHUNK]],
                "ConsistentRead": self._consistent,
                **expression(ProjectionExpression="#sk, #key, " + _READ),
            }
            for start in range(0, len(unique), GET_CHUNK)
        ]
        chunks = await asyncio.gather(
            *(get_all(send, self.table, request, "get_items") for request in requests)
        )
        now = time.time()
        found = {key_of(item): value_of(item, now) for chunk in chunks for item in chunk}
        return [found.get(key) for key in keys]

    async def set_items(
        self, items: Sequence[tuple[str, bytes]], *, ttl: float | None = None
    ) -> None:
        deadline = _deadline(ttl)
        last = dict(items)  # a repeated key keeps its last value; DynamoDB refuses repeats
        puts = [
            {"PutRequest": {"Item": new_item(key, value, new_version(), deadline)}}
            for key, value in last.items()
        ]
        await self._write(puts, "set_items")

    async def remove_items(self, keys: Sequence[str]) -> None:
        deletes = [{"DeleteRequest": {"Key": item_key(key)}} for key in dict.fromkeys(keys)]
        await self._write(deletes, "remove_items")

    async def _write(self, requests: list[dict[str, Any]], operation: str) -> None:
        send = self._send(operation)
        await asyncio.gather(
            *(
                write_all(send, self.table, requests[start : start + WRITE_CHUNK], operation)
                for start in range(0, len(requests), WRITE_CHUNK)
            )
        )

    # -- compare-and-set ----------------------------------------------------------------------

    async def set_item_conditional(
        self,
        key: str,
        value: bytes,
        *,
        ttl: float | None = None,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str:
        if if_none_match:
            condition = ABSENT
        elif if_match == "*":
            condition = f"attribute_exists(#pk) AND {LIVE}"
        elif if_match is not None:
            condition = f"#ver = :etag AND {LIVE}"
        else:
            return await self.set_item(key, value, ttl=ttl)
        version = new_version()
        await self._db.request(
            "set_item_conditional",
            key,
            "put_item",
            conditional=True,
            Item=new_item(key, value, version, _deadline(ttl)),
            **expression(
                {":now": number(time.time()), ":etag": {"S": if_match or ""}},
                ConditionExpression=condition,
            ),
        )
        return version

    async def remove_item_conditional(self, key: str, *, if_match: str) -> None:
        condition = "attribute_exists(#pk)" if if_match == "*" else "#ver = :etag"
        await self._db.request(
            "remove_item",
            key,
            "delete_item",
            conditional=True,
            Key=item_key(key),
            **expression(
                {":now": number(time.time()), ":etag": {"S": if_match}},
                ConditionExpression=f"{condition} AND {LIVE}",
            ),
        )

    async def increment(self, key: str, by: int, *, ttl: float | None = None) -> int:
        return await self._counters.increment(key, by, _deadline(ttl))

    # -- expiry -------------------------------------------------------------------------------

    async def get_item_touch(self, key: str, ttl: float) -> bytes | None:
        """Set the deadline alone (the value, etag and mtime stay) in one conditional
        UpdateItem that also returns the value; None when the key is absent or expired."""
        now = time.time()
        try:
            response = await self._db.request(
                "touch",
                key,
                "update_item",
                conditional=True,
                Key=item_key(key),
                ReturnValues="ALL_NEW",
                **expression(
                    {":now": number(now), ":d": number(now + ttl)},
                    UpdateExpression="SET #e = :d",
                    ConditionExpression=f"attribute_exists(#pk) AND {LIVE}",
                ),
            )
        except ConflictError:
            return None
        return value_of(response["Attributes"], now)

    async def touch(self, key: str, ttl: float) -> bool:
        return await self.get_item_touch(key, ttl) is not None

    # -- listing ------------------------------------------------------------------------------

    def _send(self, operation: str) -> Send:
        return functools.partial(self._db.request, operation, None)

    async def iter_keys(
        self, base: str = "", *, max_depth: int | None = None
    ) -> AsyncIterator[str]:
        cursor: str | None = None
        send = self._send("iter_keys")
        while True:
            found = await page(send, base, limit=_PAGE, cursor=cursor, consistent=self._consistent)
            for key in found.live():
                yield key
            cursor = found.cursor
            if cursor is None:
                return

    async def list_page(
        self,
        base: str = "",
        *,
        limit: int,
        cursor: str | None = None,
        max_depth: int | None = None,
    ) -> tuple[list[str], str | None]:
        """One Query (one Scan at the root) page: DynamoDB's ``LastEvaluatedKey`` is the
        cursor, so a key present for the whole listing is listed exactly once."""
        found = await page(
            self._send("list_keys"), base, limit=limit, cursor=cursor, consistent=self._consistent
        )
        return found.live(), found.cursor

    async def clear(self, base: str = "") -> None:
        """Delete every item under ``base``, expired ones too, a page at a time."""
        cursor: str | None = None
        send = self._send("clear")
        while True:
            found = await page(send, base, limit=_PAGE, cursor=cursor, consistent=self._consistent)
            await self._write(
                [{"DeleteRequest": {"Key": item_key(key)}} for key, _ in found.items], "clear"
            )
            cursor = found.cursor
            if cursor is None:
                return

    async def dispose(self) -> None:
        self._db.close()
