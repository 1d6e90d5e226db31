"""The blocking side of the s3 driver: one boto3 client and the threads that call it.

boto3 blocks, so every call runs on a bounded thread pool. `S3Client` owns both (a client given
to it is used and left open): `run` is the one way in, where a backend failure becomes a
`DriverError` (or, for a conditional request, a `ConflictError`) exactly once, and `close` the
one way out. Its other methods are the blocking bodies `run` runs, over object names; they keep
the TTL deadline in object metadata and the due-date markers that let listings find expired
objects (see the driver's docstring).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal, NamedTuple, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from drivers._s3_names import bare_etag
from storage import ConflictError, DriverError
from storage.workers import WorkersBusyError

from ._aws import aws_client

__all__ = ["DEFAULT_WORKERS", "MARKERS", "Found", "S3Client", "deadline_of"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
_EXPIRES = "unistorage-expires"
#: Where, under the driver's prefix, the TTL markers live. Reserved: a key cannot start with a
#: control character, so no key escapes to "%1F...".
MARKERS = "%1Fttl/"
#: Threads (and pooled connections) of a driver: S3 answers in 10-50 ms, and each thread waits
#: out its request, so a batch runs at most this many requests per round trip. Through a 40 ms
#: round trip 16 threads gave a batch 230 requests/s, 64 gave 470 (docs/benchmarks.md).
DEFAULT_WORKERS = 64
_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})
_DENIED = frozenset(
    {"403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"}
)
_PRECONDITION = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict", "409"})


class Found(NamedTuple):
    """An object that was read: its bytes, its bare etag and its TTL deadline (epoch seconds)."""

    data: bytes
    etag: str
    deadline: float | None


def deadline_of(ttl: float | None) -> float | None:
    """The epoch-seconds deadline of a TTL starting now."""
    return None if ttl is None else time.time() + ttl


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _deadline(metadata: dict[str, str]) -> float | None:
    raw = metadata.get(_EXPIRES)
    try:
        return None if raw is None else float(raw)
    except ValueError:
        return None


class S3Client:
    """Objects in ``bucket`` whose names start with ``prefix``, through one boto3 client.

    ``client`` is used as is (and left open by `close`); otherwise one is built from the
    endpoint, credentials and timeouts. ``max_workers`` threads call S3, and as many pooled
    connections serve them (fewer threads when a given client has a smaller pool), so every
    thread has a connection and none is opened only to be discarded. A call waits at most
    ``pool_timeout`` seconds for a free thread, then fails with `DriverError`: an endpoint that
    hangs holds its threads until botocore's timeouts end them, and the calls queued behind
    them must not wait for all of those in turn.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str,
        *,
        client: Any = None,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
        profile: str | None = None,
        max_workers: int = DEFAULT_WORKERS,
        connect_timeout: float = 2.0,
        read_timeout: float = 5.0,
        max_attempts: int = 2,
        checksums: Literal["when_required", "when_supported"] = "when_required",
        pool_timeout: float = 5.0,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self._owned = client is None
        client, self._workers = aws_client(
            "s3",
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
            pool_timeout=pool_timeout,
            # boto3's default CRC checksums on every request are refused by several
            # S3-compatible stores; "when_supported" turns them back on.
            request_checksum_calculation=checksums,
            response_checksum_validation=checksums,
            # Presigned URLs in SigV4 (X-Amz-*), which every region takes.
            signature_version="s3v4",
        )
        #: The boto3 client itself, for the calls that have no method here.
        self.api: Any = client
        self._bucket_checked = False
        self._bucket_lock = asyncio.Lock()

    # -- the way in and the way out ---------------------------------------------------------

    async def run(
        self,
        operation: str,
        key: str | None,
        call: Callable[..., _T],
        /,
        *,
        conditional: bool = False,
        **kwargs: Any,
    ) -> _T:
        """Run a blocking call on the pool; backend failures become a `DriverError`.

        With ``conditional``, a failed precondition (412, S3's 409 for a concurrent
        conditional write, or a missing object under ``If-Match``) is a `ConflictError`.
        """
        if not self._bucket_checked:
            async with self._bucket_lock:  # one HEAD, not one per call of the first batch
                if not self._bucket_checked:
                    await self._check_bucket(operation, key)
        try:
            return await self._workers.run(functools.partial(call, **kwargs))
        except ClientError as exc:
            if conditional and key is not None and _code(exc) in _PRECONDITION | _MISSING:
                raise ConflictError(key) from exc
            raise DriverError("s3", operation, key, self._explain(exc)) from exc
        except BotoCoreError as exc:
            raise DriverError("s3", operation, key, self._explain(exc)) from exc
        except WorkersBusyError as exc:
            raise DriverError(
                "s3", operation, key, f"{exc}: a slow or hung endpoint (or raise max_workers)"
            ) from exc

    def close(self) -> None:
        """Stop the threads (queued calls are dropped) and close the client if it is ours."""
        self._workers.close()
        if self._owned:
            self.api.close()

    def _explain(self, exc: Exception) -> str:
        if isinstance(exc, ClientError):
            code = _code(exc)
            if code == "NoSuchBucket":
                return f"bucket {self.bucket!r} does not exist"
            if code in _DENIED:
                return f"access to bucket {self.bucket!r} denied ({code}): check the credentials"
        if isinstance(exc, BotoCoreError) and not isinstance(exc, ClientError):
            return f"cannot reach {self.api.meta.endpoint_url}: {exc}"
        return str(exc)

    async def _check_bucket(self, operation: str, key: str | None) -> None:
        # HEAD answers a bare 404 for a missing bucket and a missing key alike; ask once up
        # front so that reads of a missing bucket fail instead of reporting absent keys.
        try:
            await self._workers.run(functools.partial(self.api.head_bucket, Bucket=self.bucket))
        except ClientError as exc:
            message = self._explain(exc)
            if _code(exc) in _MISSING:
                message = f"bucket {self.bucket!r} does not exist"
            raise DriverError("s3", operation, key, message) from exc
        except BotoCoreError as exc:
            raise DriverError("s3", operation, key, self._explain(exc)) from exc
        self._bucket_checked = True

    # -- blocking bodies, run on the pool -----------------------------------------------------

    def _expired(self, name: str, etag: str, deadline: float | None) -> bool:
        """True (after deleting the object, unless it changed since) when it is past due."""
        if deadline is None or deadline > time.time():
            return False
        try:
            self.api.delete_object(Bucket=self.bucket, Key=name, IfMatch=etag)
        except ClientError as exc:
            logger.debug("lazy delete of expired %r skipped: %s", name, exc)
        return True

    def get(self, name: str) -> Found | None:
        """The object's bytes, etag and deadline; None when it is missing or expired."""
        response = self.open(name)
        if response is None:
            return None
        with response["Body"] as body:
            data: bytes = body.read()
        return Found(data, bare_etag(response["ETag"]), _deadline(response["Metadata"]))

    def open(self, name: str) -> dict[str, Any] | None:
        """The GetObject answer, its body not yet read; None when missing or expired."""
        try:
            response: dict[str, Any] = self.api.get_object(Bucket=self.bucket, Key=name)
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            raise
        deadline = _deadline(response["Metadata"])
        if deadline is not None and deadline <= time.time():
            response["Body"].close()
            self._expired(name, response["ETag"], deadline)
            return None
        return response

    def head(self, name: str) -> dict[str, Any] | None:
        """The HeadObject answer (with ``Deadline`` added); None when missing or expired."""
        try:
            response: dict[str, Any] = self.api.head_object(Bucket=self.bucket, Key=name)
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            raise
        deadline = _deadline(response["Metadata"])
        if self._expired(name, response["ETag"], deadline):
            return None
        response["Deadline"] = deadline
        return response

    def mark(self, name: str, deadline: float) -> dict[str, str]:
        """Drop the due-date marker of ``name`` and return the metadata carrying ``deadline``.

        The marker goes first: a crash in between leaves a marker without its object, which
        the next listing throws away, never an expiring object no listing can find.
        """
        marker = f"{self.prefix}{MARKERS}{round(deadline * 1000):015d}/{name}"
        self.api.put_object(Bucket=self.bucket, Key=marker, Body=b"")
        return {_EXPIRES: f"{deadline:.3f}"}

    def put(
        self, name: str, value: Any, deadline: float | None, *, mark: bool = True, **conditions: str
    ) -> str:
        """Store ``value`` (bytes or a seekable file); the bare etag of the new version.

        ``mark=False`` keeps a deadline whose marker exists already (a rewrite keeping its
        expiry).
        """
        metadata: dict[str, str] = {}
        if deadline is not None:
            metadata = self.mark(name, deadline) if mark else {_EXPIRES: f"{deadline:.3f}"}
        response = self.api.put_object(
            Bucket=self.bucket, Key=name, Body=value, Metadata=metadata, **conditions
        )
        return bare_etag(response["ETag"])

    def delete(self, names: Sequence[str]) -> None:
        """Delete up to 1000 objects in one request; any object not deleted is an error."""
        response = self.api.delete_objects(
            Bucket=self.bucket,
            Delete={"Objects": [{"Key": name} for name in names], "Quiet": True},
        )
        errors = response.get("Errors") or []
        if errors:
            shown = ", ".join(f"{e.get('Key')!r} ({e.get('Code')})" for e in errors[:5])
            raise DriverError(
                "s3", "remove_items", None, f"{len(errors)} objects not deleted: {shown}"
            )

    def list(
        self, prefix: str, token: str | None, limit: int = 1000
    ) -> tuple[list[str], str | None]:
        """One ListObjectsV2 page of names under ``prefix`` and the next page's token."""
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, "MaxKeys": limit}
        if token:
            kwargs["ContinuationToken"] = token
        response = self.api.list_objects_v2(**kwargs)
        names = [item["Key"] for item in response.get("Contents", ())]
        return names, response.get("NextContinuationToken") if response.get("IsTruncated") else None

    def presign(self, name: str, method: str, expires: int) -> str:
        """A URL that lets its holder GET or PUT the object for ``expires`` seconds, signed as
        the client is configured (SigV4 for a client built here)."""
        url: str = self.api.generate_presigned_url(
            "get_object" if method == "GET" else "put_object",
            Params={"Bucket": self.bucket, "Key": name},
            ExpiresIn=expires,
            HttpMethod=method,
        )
        return url
