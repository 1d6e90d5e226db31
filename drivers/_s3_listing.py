"""Listing S3 objects: pages of names (the next one loading meanwhile), and the expired
objects a listing must hide, found through their due-date markers."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator

from drivers._s3_client import MARKERS, S3Client

__all__ = ["expired_names", "pages"]


async def pages(s3: S3Client, prefix: str, operation: str) -> AsyncGenerator[list[str], None]:
    """Object names under ``prefix``, a page at a time; the next page loads meanwhile."""
    pending = asyncio.ensure_future(s3.run(operation, None, s3.list, prefix=prefix, token=None))
    try:
        while True:
            names, token = await pending
            if token:
                pending = asyncio.ensure_future(
                    s3.run(operation, None, s3.list, prefix=prefix, token=token)
                )
            yield names
            if not token:
                return
    finally:
        if not pending.done():
            pending.cancel()


async def expired_names(s3: S3Client, operation: str) -> set[str]:
    """Names of objects past their deadline (deleted here), from the markers that are due.

    Markers sort by deadline, so reading stops at the first one not yet due. Each due
    marker's object is confirmed with HEAD (which deletes it when expired); the markers are
    spent either way, since an object rewritten with a later deadline has a marker of its own.
    """
    now_ms = round(time.time() * 1000)
    due: list[tuple[str, str]] = []  # (marker, object name)
    markers = s3.prefix + MARKERS
    async with contextlib.aclosing(pages(s3, markers, operation)) as listed:
        async for page in listed:
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
    heads = await asyncio.gather(*(s3.run(operation, None, s3.head, name=n) for _, n in due))
    await s3.run(operation, None, s3.delete, names=[m for m, _ in due])
    return {name for (_, name), head in zip(due, heads, strict=True) if head is None}
