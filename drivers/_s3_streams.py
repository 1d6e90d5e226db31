"""Large values on S3 in parts: a GET body read chunk by chunk, and multipart uploads.

Memory stays flat whatever the size of the value: a read holds one chunk at a time, a write
at most two parts (one uploading while the next fills). A value that ends before its first
part is full is stored with one PUT. A multipart upload becomes the object only when it
completes, so nothing is visible unless every chunk arrived; when the chunks fail (the writer's
block raised) or a part cannot be stored, the upload is aborted and S3 drops its parts.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import io
import logging
from collections.abc import AsyncIterator
from typing import Any

from drivers._s3_client import S3Client, deadline_of
from drivers._s3_names import bare_etag

__all__ = ["MIN_PART", "read_body", "upload"]

logger = logging.getLogger(__name__)

#: The smallest part S3 takes (every part but the last).
MIN_PART = 5 * 1024 * 1024


async def read_body(s3: S3Client, key: str, body: Any, chunk_size: int) -> AsyncIterator[bytes]:
    """The bytes of an open GetObject ``body``, ``chunk_size`` at a time; closes it at the end.

    botocore checks the length at the end, so a body cut short raises instead of ending early.
    """
    try:
        while True:
            chunk: bytes = await s3.run("open_read", key, body.read, amt=chunk_size)
            if not chunk:
                return
            yield chunk
    finally:
        body.close()


class _Part(io.RawIOBase):
    """One part's chunks as a seekable file: boto3 reads (and re-reads, on a retry) the chunks
    where they are, so a part is never joined into one more copy of itself."""

    def __init__(self) -> None:
        super().__init__()
        self._chunks: list[bytes] = []
        self._starts: list[int] = []
        self.size = 0
        self._position = 0

    def append(self, chunk: bytes) -> None:
        """Add ``chunk`` at the end."""
        self._chunks.append(chunk)
        self._starts.append(self.size)
        self.size += len(chunk)

    def close(self) -> None:
        """Let go of the chunks (botocore may keep the body in a reference cycle for a while)."""
        self._chunks, self._starts = [], []
        super().close()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self.size}[whence]
        self._position = min(max(0, base + offset), self.size)
        return self._position

    def readinto(self, buffer: Any) -> int:
        target = memoryview(buffer).cast("B")
        done = 0
        index = bisect.bisect_right(self._starts, self._position) - 1
        while done < len(target) and self._position < self.size:
            chunk = self._chunks[index]
            start = self._position - self._starts[index]
            count = min(len(chunk) - start, len(target) - done)
            target[done : done + count] = chunk[start : start + count]
            done += count
            self._position += count
            index += 1
        return done


class _Upload:
    """One multipart upload under way: its id, the parts stored, the part being stored."""

    def __init__(self, s3: S3Client, key: str, name: str, upload_id: str) -> None:
        self._s3 = s3
        self._key = key
        self._name = name
        self._id = upload_id
        self._parts: list[dict[str, Any]] = []
        self._count = 0
        self._pending: asyncio.Future[None] | None = None

    def _store(self, number: int, part: _Part) -> None:
        try:
            part.seek(0)
            response = self._s3.api.upload_part(
                Bucket=self._s3.bucket,
                Key=self._name,
                UploadId=self._id,
                PartNumber=number,
                Body=part,
            )
        finally:
            part.close()
        self._parts.append({"PartNumber": number, "ETag": response["ETag"]})

    async def add(self, part: _Part) -> None:
        """Start storing ``part`` once the one before it is stored (at most one in flight)."""
        await self.settle()
        self._count += 1
        number = self._count
        self._pending = asyncio.ensure_future(
            self._s3.run("open_write", self._key, self._store, number=number, part=part)
        )

    async def settle(self) -> None:
        """Wait for the part in flight; its failure is raised here."""
        pending, self._pending = self._pending, None
        if pending is not None:
            await pending

    async def complete(self) -> str:
        """Make the parts the object; its bare etag."""
        await self.settle()
        response = await self._s3.run(
            "open_write",
            self._key,
            self._s3.api.complete_multipart_upload,
            Bucket=self._s3.bucket,
            Key=self._name,
            UploadId=self._id,
            MultipartUpload={"Parts": sorted(self._parts, key=lambda p: p["PartNumber"])},
        )
        return bare_etag(response["ETag"])

    async def abort(self) -> None:
        """Drop the upload and its parts (after the part in flight, so none outlives it)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            await asyncio.wait([pending])
            if not pending.cancelled():
                pending.exception()  # retrieved: the failure that matters is the caller's
        try:
            await self._s3.run(
                "open_write",
                self._key,
                self._s3.api.abort_multipart_upload,
                Bucket=self._s3.bucket,
                Key=self._name,
                UploadId=self._id,
            )
        except Exception:
            # A bucket lifecycle rule (AbortIncompleteMultipartUpload) sweeps what is left.
            logger.warning("could not abort the upload of %r", self._name, exc_info=True)


async def upload(
    s3: S3Client,
    key: str,
    name: str,
    chunks: AsyncIterator[bytes],
    ttl: float | None,
    part_size: int,
) -> str:
    """Store the bytes ``chunks`` yields as object ``name``; the bare etag of the new version.

    The TTL counts from the start of a multipart upload (S3 takes the metadata then).
    """
    part = _Part()
    async for chunk in chunks:
        part.append(chunk)
        if part.size >= part_size:
            break
    else:
        data = part.read()
        return await s3.run(
            "open_write", key, s3.put, name=name, value=data, deadline=deadline_of(ttl)
        )
    deadline = deadline_of(ttl)
    metadata = (
        {}
        if deadline is None
        else await s3.run("open_write", key, s3.mark, name=name, deadline=deadline)
    )
    created = await s3.run(
        "open_write",
        key,
        s3.api.create_multipart_upload,
        Bucket=s3.bucket,
        Key=name,
        Metadata=metadata,
    )
    upload = _Upload(s3, key, name, created["UploadId"])
    try:
        await upload.add(part)
        part = _Part()
        async for chunk in chunks:
            part.append(chunk)
            if part.size >= part_size:
                await upload.add(part)
                part = _Part()
        if part.size:
            await upload.add(part)
        return await upload.complete()
    except BaseException:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(upload.abort())
        raise
