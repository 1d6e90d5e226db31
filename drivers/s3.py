"""The s3 driver: keys as objects in an S3 bucket (AWS or any S3-compatible server), via boto3.

Key ``a:b:c`` is the object ``<prefix>a/b/c``, so the bucket reads like folders; normalized keys
hold no ``/``, so the mapping is lossless for every valid key (``%`` and control characters are
percent-encoded: XML listings cannot carry control characters). User meta lives in sibling
objects (``<key>%1Fmeta``). `drivers._s3_client.S3Client` owns the boto3 client and its threads.

Versions are S3's ETags without their quotes; compare-and-set is S3's own conditional requests
(``If-None-Match: *`` and ``If-Match`` on PutObject, ``If-Match`` on DeleteObject: AWS since
September 2025, moto). "Any version" (``if_match="*"``) reads the current ETag with HEAD and
conditions the request on it, again while other writers win: atomic too. ETags are content
hashes, so rewriting the same bytes keeps the etag (a lock's value is unique, so its fencing
token is never reused). A server that ignores ``If-Match`` on DeleteObject (some S3-compatible
ones) makes a conditional remove HEAD, compare, then delete: not atomic there.

TTL: the deadline is object metadata (``x-amz-meta-unistorage-expires``), checked on every read;
each TTL write also drops an empty marker ``<prefix>%1Fttl/<deadline ms>/<key>``, so a listing
can find the expired objects (`drivers._s3_listing`). S3 cannot condition a request on that
metadata: a PUT naming the etag of an object past its deadline that nothing deleted yet still
lands (nobody wrote in between); a conditional remove checks the deadline with HEAD first.

Large values stream (`drivers._s3_streams`): one GET body read in chunks, multipart uploads of
``part_size`` parts. `get_url` presigns a GET or PUT of the stored bytes (a PUT through it sets
no TTL).
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from drivers._s3_client import DEFAULT_WORKERS, MARKERS, S3Client, deadline_of
from drivers._s3_listing import expired_names, pages
from drivers._s3_names import bare_etag, escape, quoted_etag, unescape
from drivers._s3_streams import MIN_PART, read_body, upload
from storage import Capabilities, ConflictError, Driver, InvalidArgumentError
from storage.atomic import CAS_ATTEMPTS, decode_counter, encode_counter
from storage.driver import parse_url_options

__all__ = ["S3Driver"]

_DELETE_CHUNK = 1000  # the most keys one DeleteObjects request takes
_TEXT_OPTIONS = frozenset(
    {"endpoint_url", "region", "access_key_id", "secret_access_key", "session_token", "profile"}
)
#: The longest a SigV4 presigned URL lives (seven days).
_MAX_URL_SECONDS = 7 * 24 * 3600


async def _back_off(attempt: int) -> None:
    # Another writer won the round: let it finish before reading again.
    await asyncio.sleep(random.uniform(0, min(0.05, 0.001 * 2**attempt)))


class S3Driver(Driver):
    """Objects in ``bucket`` under ``prefix``; ``endpoint_url`` for MinIO, R2 and the like.

    Credentials and region come the usual boto3 ways unless given. ``client`` (a boto3 S3
    client) is used as is and left open on dispose. Failures of the backend raise `DriverError`.

    ``max_workers`` (default 64) is both the number of threads that call S3 and the size of
    botocore's connection pool (``max_pool_connections``): each thread waits out a round trip,
    so it bounds how many requests a batch has in flight. With ``client``, the threads are
    capped at that client's pool size. Calls beyond them queue for a thread instead of failing,
    for at most ``pool_timeout`` seconds (default 5), then raise `DriverError`.
    ``part_size`` (default 8 MiB, at least 5 MiB) is the part of a multipart upload: a
    streamed write holds at most two parts in memory.
    """

    name = "s3"
    schemes = ("s3",)
    # Bounded: botocore's connect/read timeouts and attempts end every call.
    capabilities = Capabilities(ttl=True, conditional=True, bounded=True)

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
        profile: str | None = None,
        client: Any = None,
        max_workers: int = DEFAULT_WORKERS,
        connect_timeout: float = 2.0,
        read_timeout: float = 5.0,
        max_attempts: int = 2,
        checksums: Literal["when_required", "when_supported"] = "when_required",
        part_size: int = 8 * 1024 * 1024,
        pool_timeout: float = 5.0,
    ) -> None:
        if not bucket:
            raise InvalidArgumentError("the s3 driver needs a bucket")
        if isinstance(part_size, bool) or not isinstance(part_size, int) or part_size < MIN_PART:
            raise InvalidArgumentError(f"part_size is an int >= {MIN_PART}, not {part_size!r}")
        self._prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self._part_size = part_size
        self._s3 = S3Client(
            bucket,
            self._prefix,
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
            checksums=checksums,
            pool_timeout=pool_timeout,
        )

    @classmethod
    def from_url(cls, url: str, **options: Any) -> S3Driver:
        """``s3://bucket/prefix?endpoint_url=...&region=...`` (query values are options)."""
        parts = urlsplit(url)
        if parts.scheme not in cls.schemes:
            raise InvalidArgumentError(f"the s3 driver does not read {parts.scheme!r} URLs")
        merged = parse_url_options(parts.query)
        # Text options stay text, even when they look like numbers (a numeric secret key).
        merged.update((k, v) for k, v in parse_qsl(parts.query) if k in _TEXT_OPTIONS)
        return cls(unquote(parts.netloc), unquote(parts.path).strip("/"), **{**merged, **options})

    def _object(self, key: str) -> str:
        return self._prefix + escape(key).replace(":", "/")

    def _key(self, name: str) -> str:
        return unescape(name[len(self._prefix) :].replace("/", ":"))

    # -- items --------------------------------------------------------------------------------

    async def get_item(self, key: str) -> bytes | None:
        found = await self._s3.run("get_item", key, self._s3.get, name=self._object(key))
        return None if found is None else found.data

    async def get_item_with_etag(self, key: str) -> tuple[bytes | None, str | None]:
        # One GET: the body and the ETag of that very version.
        found = await self._s3.run("get_item", key, self._s3.get, name=self._object(key))
        return (None, None) if found is None else (found.data, found.etag)

    async def has_item(self, key: str) -> bool:
        head = await self._s3.run("has_item", key, self._s3.head, name=self._object(key))
        return head is not None

    async def set_item(self, key: str, value: bytes, *, ttl: float | None = None) -> str:
        return await self._s3.run(
            "set_item",
            key,
            self._s3.put,
            name=self._object(key),
            value=value,
            deadline=deadline_of(ttl),
        )

    async def remove_item(self, key: str) -> None:
        await self._s3.run(
            "remove_item",
            key,
            self._s3.api.delete_object,
            Bucket=self._s3.bucket,
            Key=self._object(key),
        )

    # get_items / set_items: the base class gathers one call per key, and the pool bounds how
    # many run at once; S3 has no multi-object GET or PUT.

    async def remove_items(self, keys: Sequence[str]) -> None:
        names = list(dict.fromkeys(self._object(key) for key in keys))
        await asyncio.gather(
            *(
                self._s3.run(
                    "remove_items", None, self._s3.delete, names=names[i : i + _DELETE_CHUNK]
                )
                for i in range(0, len(names), _DELETE_CHUNK)
            )
        )

    async def _put_if(
        self,
        key: str,
        value: bytes,
        deadline: float | None,
        *,
        mark: bool = True,
        **conditions: str,
    ) -> str:
        """A conditional PUT; `ConflictError` when S3 says the condition failed."""
        return await self._s3.run(
            "set_item_conditional",
            key,
            self._s3.put,
            conditional=True,
            name=self._object(key),
            value=value,
            deadline=deadline,
            mark=mark,
            **conditions,
        )

    async def set_item_conditional(
        self,
        key: str,
        value: bytes,
        *,
        ttl: float | None = None,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str | None:
        if if_none_match:
            try:
                return await self._put_if(key, value, deadline_of(ttl), IfNoneMatch="*")
            except ConflictError:
                # An expired object that no one deleted yet still blocks If-None-Match:
                # HEAD deletes it; then one more try.
                if await self.has_item(key):
                    raise ConflictError(key, "the key already exists") from None
            return await self._put_if(key, value, deadline_of(ttl), IfNoneMatch="*")
        if if_match is None:
            return await self.set_item(key, value, ttl=ttl)
        if if_match != "*":
            return await self._put_if(key, value, deadline_of(ttl), IfMatch=quoted_etag(if_match))
        # "Only if it exists": conditioned on the version HEAD saw, again while writers win.
        for attempt in range(CAS_ATTEMPTS):
            head = await self._s3.run(
                "set_item_conditional", key, self._s3.head, name=self._object(key)
            )
            if head is None:
                raise ConflictError(key, "the key does not exist")
            try:
                return await self._put_if(key, value, deadline_of(ttl), IfMatch=head["ETag"])
            except ConflictError:
                await _back_off(attempt)
        raise ConflictError(key, f"still contended after {CAS_ATTEMPTS} attempts")

    async def remove_item_conditional(self, key: str, *, if_match: str) -> None:
        name = self._object(key)
        for attempt in range(CAS_ATTEMPTS):
            # HEAD first: it sees the TTL deadline, which a conditional DELETE would not.
            head = await self._s3.run("remove_item", key, self._s3.head, name=name)
            if head is None:
                raise ConflictError(key, "the key does not exist")
            if if_match != "*" and bare_etag(if_match) != bare_etag(head["ETag"]):
                raise ConflictError(key)
            try:
                await self._s3.run(
                    "remove_item",
                    key,
                    self._s3.api.delete_object,
                    conditional=True,
                    Bucket=self._s3.bucket,
                    Key=name,
                    IfMatch=head["ETag"],
                )
                return
            except ConflictError:
                if if_match != "*":
                    raise
                await _back_off(attempt)
        raise ConflictError(key, f"still contended after {CAS_ATTEMPTS} attempts")

    async def increment(self, key: str, by: int, *, ttl: float | None = None) -> int:
        # One GET and one conditional PUT a round; an existing counter keeps its deadline.
        name = self._object(key)
        for attempt in range(CAS_ATTEMPTS):
            found = await self._s3.run("increment", key, self._s3.get, name=name)
            value = decode_counter(key, None if found is None else found.data) + by
            try:
                if found is None:
                    await self._put_if(
                        key, encode_counter(value), deadline_of(ttl), IfNoneMatch="*"
                    )
                else:
                    await self._put_if(
                        key,
                        encode_counter(value),
                        found.deadline,
                        mark=False,
                        IfMatch=quoted_etag(found.etag),
                    )
            except ConflictError:
                await _back_off(attempt)
                continue
            return value
        raise ConflictError(key, f"still contended after {CAS_ATTEMPTS} attempts")

    async def get_item_touch(self, key: str, ttl: float) -> bytes | None:
        # S3 cannot change metadata alone: the value is rewritten, conditioned on its etag.
        name = self._object(key)
        for attempt in range(CAS_ATTEMPTS):
            found = await self._s3.run("touch", key, self._s3.get, name=name)
            if found is None:
                return None
            try:
                await self._put_if(
                    key, found.data, deadline_of(ttl), IfMatch=quoted_etag(found.etag)
                )
            except ConflictError:
                await _back_off(attempt)
                continue
            return found.data
        raise ConflictError(key, f"still contended after {CAS_ATTEMPTS} attempts")

    async def touch(self, key: str, ttl: float) -> bool:
        return await self.get_item_touch(key, ttl) is not None

    async def get_meta(self, key: str) -> dict[str, Any]:
        head = await self._s3.run("get_meta", key, self._s3.head, name=self._object(key))
        if head is None:
            return {}
        meta: dict[str, Any] = {
            "mtime": head["LastModified"],
            "size": head["ContentLength"],
            "etag": bare_etag(head["ETag"]),
        }
        deadline = head["Deadline"]
        if deadline is not None:
            meta["ttl"] = max(0.0, deadline - time.time())
        return meta

    # -- large values -------------------------------------------------------------------------

    async def read_chunks(self, key: str, chunk_size: int) -> AsyncIterator[bytes] | None:
        response = await self._s3.run("open_read", key, self._s3.open, name=self._object(key))
        if response is None:
            return None
        return read_body(self._s3, key, response["Body"], chunk_size)

    async def write_chunks(
        self, key: str, chunks: AsyncIterator[bytes], *, ttl: float | None = None
    ) -> str:
        return await upload(self._s3, key, self._object(key), chunks, ttl, self._part_size)

    async def get_url(self, key: str, *, expires: float, method: str = "GET") -> str:
        seconds = math.ceil(expires)
        if seconds > _MAX_URL_SECONDS:
            raise InvalidArgumentError(f"an S3 URL lives at most {_MAX_URL_SECONDS} seconds")
        return await self._s3.run(
            "get_url", key, self._s3.presign, name=self._object(key), method=method, expires=seconds
        )

    # -- listing ------------------------------------------------------------------------------

    def _listed(self, base: str) -> str:
        return self._object(base) if base else self._prefix

    def _keys(self, names: list[str], expired: set[str]) -> list[str]:
        skip = len(self._prefix)
        return [
            self._key(name)
            for name in names
            if name not in expired and not name.startswith(MARKERS, skip)
        ]

    async def iter_keys(
        self, base: str = "", *, max_depth: int | None = None
    ) -> AsyncIterator[str]:
        expired = await expired_names(self._s3, "iter_keys")
        async for page in pages(self._s3, self._listed(base), "iter_keys"):
            for key in self._keys(page, expired):
                yield key

    async def list_page(
        self,
        base: str = "",
        *,
        limit: int,
        cursor: str | None = None,
        max_depth: int | None = None,
    ) -> tuple[list[str], str | None]:
        # S3's continuation token is the cursor: pages follow the key order, so a key present
        # for the whole listing is listed exactly once.
        expired = await expired_names(self._s3, "list_keys")
        s3 = self._s3
        names, token = await s3.run(
            "list_keys",
            None,
            s3.list,
            prefix=self._listed(base),
            token=cursor,
            limit=min(limit, 1000),
        )
        return self._keys(names, expired), token

    async def clear(self, base: str = "") -> None:
        async for page in pages(self._s3, self._listed(base), "clear"):
            for start in range(0, len(page), _DELETE_CHUNK):
                await self._s3.run(
                    "clear",
                    base or None,
                    self._s3.delete,
                    names=page[start : start + _DELETE_CHUNK],
                )

    async def dispose(self) -> None:
        self._s3.close()
