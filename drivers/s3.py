"""The s3 driver: keys as objects in an S3 bucket (AWS or any S3-compatible server), via boto3.

Key ``a:b:c`` is the object ``<prefix>a/b/c``, so the bucket reads like folders; normalized keys
hold no ``/``, so the mapping is lossless for every valid key. boto3 blocks, so every call runs
on a bounded thread pool (one client, which boto3 makes thread-safe); batches run concurrently
within that bound. ``%`` and control characters are percent-encoded in object names (XML
listings cannot carry control characters). User meta lives in sibling objects
(``<key>%1Fmeta``), so it survives `remove_item` like every other driver's. Etags are S3's
ETags without their quotes (conditional writes are S3's own If-Match / If-None-Match).

TTL: the deadline is object metadata (``x-amz-meta-unistorage-expires``, epoch seconds), checked
on every read. Because listings carry no metadata, each TTL write also drops an empty marker
object ``<prefix>%1Fttl/<deadline ms>/<key>``; a listing first reads the markers that are due
(they sort by deadline), confirms each with HEAD, hides and deletes the expired objects.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from drivers._s3_names import bare_etag, escape, quoted_etag, unescape
from storage import Capabilities, ConflictError, Driver, DriverError, InvalidArgumentError
from storage.driver import parse_url_options

__all__ = ["S3Driver"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
_EXPIRES = "unistorage-expires"
# Reserved: a key cannot start with a control character, so no key escapes to "%1F...".
_MARKERS = "%1Fttl/"
_DELETE_CHUNK = 1000  # the most keys one DeleteObjects request takes
_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})
_DENIED = frozenset(
    {"403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"}
)
_TEXT_OPTIONS = frozenset(
    {"endpoint_url", "region", "access_key_id", "secret_access_key", "session_token", "profile"}
)
_PRECONDITION = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict", "409"})


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _deadline(metadata: dict[str, str]) -> float | None:
    raw = metadata.get(_EXPIRES)
    try:
        return None if raw is None else float(raw)
    except ValueError:
        return None


class S3Driver(Driver):
    """Objects in ``bucket`` under ``prefix``; ``endpoint_url`` for MinIO, R2 and the like.

    Credentials and region come the usual boto3 ways unless given. ``client`` (a boto3 S3
    client) is used as is and left open on dispose. Failures of the backend raise `DriverError`.

    ``max_workers`` (default 16) is both the number of threads that call S3 and the size of
    botocore's connection pool (``max_pool_connections``), so every thread has a connection
    and none is opened only to be discarded; with ``client``, the threads are capped at that
    client's pool size. Calls beyond them queue for a thread instead of failing.
    """

    name = "s3"
    schemes = ("s3",)
    capabilities = Capabilities(ttl=True, conditional=True)

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
        max_workers: int = 16,
        connect_timeout: float = 2.0,
        read_timeout: float = 5.0,
        max_attempts: int = 2,
        checksums: Literal["when_required", "when_supported"] = "when_required",
    ) -> None:
        if not bucket:
            raise InvalidArgumentError("the s3 driver needs a bucket")
        self._bucket = bucket
        self._prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self._owned = client is None
        if client is None:
            session = boto3.session.Session(
                aws_access_key_id=access_key_id,
                aws_secret_access_key=secret_access_key,
                aws_session_token=session_token,
                region_name=region,
                profile_name=profile,
            )
            client = session.client(
                "s3",
                endpoint_url=endpoint_url,
                config=Config(
                    connect_timeout=connect_timeout,
                    read_timeout=read_timeout,
                    # Few attempts: an unreachable endpoint must fail within seconds.
                    retries={"max_attempts": max_attempts, "mode": "standard"},
                    max_pool_connections=max_workers,
                    # boto3's default CRC checksums on every request are refused by several
                    # S3-compatible stores; "when_supported" turns them back on.
                    request_checksum_calculation=checksums,
                    response_checksum_validation=checksums,
                ),
            )
        else:
            # More threads than pooled connections would open and drop a connection per call.
            max_workers = min(max_workers, client.meta.config.max_pool_connections)
        self._client: Any = client
        self._pool = ThreadPoolExecutor(max_workers, thread_name_prefix="unistorage-s3")
        self._bucket_checked = False
        self._bucket_lock = asyncio.Lock()

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

    # -- plumbing -----------------------------------------------------------------------------

    def _object(self, key: str) -> str:
        return self._prefix + escape(key).replace(":", "/")

    def _key(self, name: str) -> str:
        return unescape(name[len(self._prefix) :].replace("/", ":"))

    def _explain(self, exc: Exception) -> str:
        if isinstance(exc, ClientError):
            code = _code(exc)
            if code == "NoSuchBucket":
                return f"bucket {self._bucket!r} does not exist"
            if code in _DENIED:
                return f"access to bucket {self._bucket!r} denied ({code}): check the credentials"
        if isinstance(exc, BotoCoreError) and not isinstance(exc, ClientError):
            return f"cannot reach {self._client.meta.endpoint_url}: {exc}"
        return str(exc)

    async def _run(
        self, operation: str, key: str | None, call: Callable[..., _T], /, **kwargs: Any
    ) -> _T:
        """Run a blocking call on the pool; backend failures become a `DriverError`."""
        loop = asyncio.get_running_loop()
        if not self._bucket_checked:
            async with self._bucket_lock:  # one HEAD, not one per call of the first batch
                if not self._bucket_checked:
                    await self._check_bucket(loop, operation, key)
        try:
            return await loop.run_in_executor(self._pool, functools.partial(call, **kwargs))
        except (ClientError, BotoCoreError) as exc:
            raise DriverError(self.name, operation, key, self._explain(exc)) from exc

    async def _check_bucket(
        self, loop: asyncio.AbstractEventLoop, operation: str, key: str | None
    ) -> None:
        # HEAD answers a bare 404 for a missing bucket and a missing key alike; ask once up
        # front so that reads of a missing bucket fail instead of reporting absent keys.
        try:
            await loop.run_in_executor(
                self._pool, functools.partial(self._client.head_bucket, Bucket=self._bucket)
            )
        except ClientError as exc:
            message = self._explain(exc)
            if _code(exc) in _MISSING:
                message = f"bucket {self._bucket!r} does not exist"
            raise DriverError(self.name, operation, key, message) from exc
        except BotoCoreError as exc:
            raise DriverError(self.name, operation, key, self._explain(exc)) from exc
        self._bucket_checked = True

    def _expired(self, name: str, etag: str, deadline: float | None) -> bool:
        """True (after deleting the object, unless it changed since) when it is past due."""
        if deadline is None or deadline > time.time():
            return False
        try:
            self._client.delete_object(Bucket=self._bucket, Key=name, IfMatch=etag)
        except ClientError as exc:
            logger.debug("lazy delete of expired %r skipped: %s", name, exc)
        return True

    # -- blocking bodies, run on the pool -------------------------------------------------

    def _get(self, name: str) -> bytes | None:
        return self._get_tagged(name)[0]

    def _get_tagged(self, name: str) -> tuple[bytes | None, str | None]:
        try:
            response = self._client.get_object(Bucket=self._bucket, Key=name)
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None, None
            raise
        with response["Body"] as body:
            data: bytes = body.read()
        if self._expired(name, response["ETag"], _deadline(response["Metadata"])):
            return None, None
        return data, bare_etag(response["ETag"])

    def _head(self, name: str) -> dict[str, Any] | None:
        try:
            response: dict[str, Any] = self._client.head_object(Bucket=self._bucket, Key=name)
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            raise
        if self._expired(name, response["ETag"], _deadline(response["Metadata"])):
            return None
        return response

    def _put(self, name: str, value: bytes, ttl: float | None, **conditions: str) -> str:
        metadata: dict[str, str] = {}
        if ttl is not None:
            deadline = time.time() + ttl
            metadata[_EXPIRES] = f"{deadline:.3f}"
            marker = f"{self._prefix}{_MARKERS}{round(deadline * 1000):015d}/{name}"
            self._client.put_object(Bucket=self._bucket, Key=marker, Body=b"")
        response = self._client.put_object(
            Bucket=self._bucket, Key=name, Body=value, Metadata=metadata, **conditions
        )
        return bare_etag(response["ETag"])

    def _delete(self, names: Sequence[str]) -> None:
        response = self._client.delete_objects(
            Bucket=self._bucket,
            Delete={"Objects": [{"Key": name} for name in names], "Quiet": True},
        )
        errors = response.get("Errors") or []
        if errors:
            shown = ", ".join(f"{e.get('Key')!r} ({e.get('Code')})" for e in errors[:5])
            raise DriverError(
                self.name, "remove_items", None, f"{len(errors)} objects not deleted: {shown}"
            )

    def _list_page(self, prefix: str, token: str | None) -> tuple[list[str], str | None]:
        kwargs: dict[str, Any] = {"Bucket": self._bucket, "Prefix": prefix}
        if token:
            kwargs["ContinuationToken"] = token
        response = self._client.list_objects_v2(**kwargs)
        names = [item["Key"] for item in response.get("Contents", ())]
        return names, response.get("NextContinuationToken") if response.get("IsTruncated") else None

    # -- items --------------------------------------------------------------------------------

    async def get_item(self, key: str) -> bytes | None:
        return await self._run("get_item", key, self._get, name=self._object(key))

    async def get_item_with_etag(self, key: str) -> tuple[bytes | None, str | None]:
        # One GET: the body and the ETag of that very version.
        return await self._run("get_item", key, self._get_tagged, name=self._object(key))

    async def has_item(self, key: str) -> bool:
        return await self._run("has_item", key, self._head, name=self._object(key)) is not None

    async def set_item(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        await self._run("set_item", key, self._put, name=self._object(key), value=value, ttl=ttl)

    async def remove_item(self, key: str) -> None:
        await self._run(
            "remove_item",
            key,
            self._client.delete_object,
            Bucket=self._bucket,
            Key=self._object(key),
        )

    # get_items / set_items: the base class gathers one call per key, and the pool bounds how
    # many run at once; S3 has no multi-object GET or PUT.

    async def remove_items(self, keys: Sequence[str]) -> None:
        names = list(dict.fromkeys(self._object(key) for key in keys))
        await asyncio.gather(
            *(
                self._run("remove_items", None, self._delete, names=names[i : i + _DELETE_CHUNK])
                for i in range(0, len(names), _DELETE_CHUNK)
            )
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
        name = self._object(key)
        conditions = {"IfNoneMatch": "*"} if if_none_match else {}
        if if_match is not None:
            conditions["IfMatch"] = quoted_etag(if_match)
        for attempt in range(2):
            try:
                return await self._run(
                    "set_item_conditional",
                    key,
                    self._put,
                    name=name,
                    value=value,
                    ttl=ttl,
                    **conditions,
                )
            except DriverError as exc:
                cause = exc.__cause__
                if not isinstance(cause, ClientError):
                    raise
                code = _code(cause)
                # If-Match on a missing object answers 404 (NoSuchKey): that is a conflict too.
                if code not in _PRECONDITION and not (if_match and code in _MISSING):
                    raise
                # An expired object that no one deleted yet still blocks If-None-Match: delete
                # it (HEAD does) and try once more.
                if attempt == 0 and if_none_match and not await self.has_item(key):
                    continue
                raise ConflictError(
                    key, "the key already exists" if if_none_match else "stored version differs"
                ) from cause
        raise ConflictError(key, "the key already exists")

    async def get_meta(self, key: str) -> dict[str, Any]:
        head = await self._run("get_meta", key, self._head, name=self._object(key))
        if head is None:
            return {}
        meta: dict[str, Any] = {
            "mtime": head["LastModified"],
            "size": head["ContentLength"],
            "etag": bare_etag(head["ETag"]),
        }
        deadline = _deadline(head["Metadata"])
        if deadline is not None:
            meta["ttl"] = max(0.0, deadline - time.time())
        return meta

    # -- listing ------------------------------------------------------------------------------

    async def _pages(self, prefix: str, operation: str) -> AsyncGenerator[list[str], None]:
        """Object names under ``prefix``, a page at a time; the next page loads meanwhile."""
        pending = asyncio.ensure_future(
            self._run(operation, None, self._list_page, prefix=prefix, token=None)
        )
        try:
            while True:
                names, token = await pending
                if token:
                    pending = asyncio.ensure_future(
                        self._run(operation, None, self._list_page, prefix=prefix, token=token)
                    )
                yield names
                if not token:
                    return
        finally:
            if not pending.done():
                pending.cancel()

    async def _expired_names(self) -> set[str]:
        """Names of objects past their deadline (deleted here), from the markers that are due."""
        now_ms = round(time.time() * 1000)
        due: list[tuple[str, str]] = []  # (marker, object name)
        markers = self._prefix + _MARKERS
        async with contextlib.aclosing(self._pages(markers, "iter_keys")) as pages:
            async for page in pages:
                for marker in page:
                    stamp, _, name = marker[len(markers) :].partition("/")
                    if not stamp.isdigit() or int(stamp) > now_ms:
                        break
                    due.append((marker, name))
                else:
                    continue
                break
        if not due:
            return set()
        heads = await asyncio.gather(
            *(self._run("iter_keys", None, self._head, name=n) for _, n in due)
        )
        # A marker is spent once its object is gone or carries a later (or no) deadline.
        await self._run("iter_keys", None, self._delete, names=[m for m, _ in due])
        return {name for (_, name), head in zip(due, heads, strict=True) if head is None}

    async def iter_keys(
        self, base: str = "", *, max_depth: int | None = None
    ) -> AsyncIterator[str]:
        expired = await self._expired_names()
        async for page in self._pages(self._object(base) if base else self._prefix, "iter_keys"):
            for name in page:
                if name not in expired and not name.startswith(_MARKERS, len(self._prefix)):
                    yield self._key(name)

    async def clear(self, base: str = "") -> None:
        async for page in self._pages(self._object(base) if base else self._prefix, "clear"):
            for start in range(0, len(page), _DELETE_CHUNK):
                await self._run(
                    "clear", base or None, self._delete, names=page[start : start + _DELETE_CHUNK]
                )

    async def dispose(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._owned:
            self._client.close()
