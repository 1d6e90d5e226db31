"""The storage server's routes on one key: GET, HEAD, PUT and DELETE (with RFC 9110
conditions), ``POST ?increment`` and ``POST ?touch``.

Large values stream both ways. A PUT of ``application/octet-stream`` without conditions goes
into `Storage.open_write` as it arrives (over the body limit: the write is aborted and the
answer is 413); a raw GET of a value over `STREAMED` bytes (or of unknown size) comes out of
`Storage.open_read`. A streamed GET sends an ``ETag`` only when the version read before
opening the stream is still the version after (so it names the body it comes with); a backend
failing midway drops the connection, so no client takes a value cut short for the whole.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable
from typing import Any

from ._server_http import HTTPError, Request, body_chunks, raw_headers, read_body, send_answer
from .asgi import Send
from .errors import NotFoundError
from .protocol import (
    INCREMENT_QUERY,
    JSON,
    OCTET,
    RENEW_TTL_HEADER,
    STORED_HEADER,
    TEXT,
    TTL_HEADER,
    Code,
    PreconditionFailedError,
    Preconditions,
    PutBody,
    ValueBodies,
    Write,
    accepts,
    counter_body,
    format_etag,
    media_type,
    meta_headers,
    parse_by,
    parse_ttl,
    raw_body,
    read_put_body,
    remove_if,
    touched_body,
    write_if,
)
from .storage import Storage

__all__ = ["STREAMED", "Items"]

logger = logging.getLogger("storage.server")  # one logger for the whole server

#: Raw values larger than this (bytes) are streamed to GETs instead of read whole.
STREAMED = 1024 * 1024
_CHUNK = 256 * 1024
# Attempts at a stream whose version holds still between opening it and reading its meta.
_STEADY = 3


class Items:
    """The item routes over ``storage``; request bodies are bounded by ``max_body`` bytes."""

    def __init__(self, storage: Storage, max_body: int) -> None:
        self.storage = storage
        self.max_body = max_body
        self._bodies = ValueBodies(storage.serializer.loads)

    # -- reads --------------------------------------------------------------------------------

    async def get(self, request: Request, key: str, send: Send) -> None:
        """The value (raw with ``Accept: application/octet-stream``: a string as its text, as
        unstorage sends it, unless ``x-stored-bytes`` asks for the bytes as stored), with its
        meta headers."""
        storage, headers = self.storage, request.headers
        conditions = Preconditions.from_headers(headers)
        renew = parse_ttl(headers.get(RENEW_TTL_HEADER))
        renewed: list[tuple[bytes, bytes]] = []
        if renew is not None:
            if not await storage.touch(key, renew):
                raise HTTPError(Code.NOT_FOUND, "KV value not found", key=key)
            renewed = raw_headers([(RENEW_TTL_HEADER, headers[RENEW_TTL_HEADER].strip())])
        raw = accepts(headers.get("accept"), OCTET)
        if raw:
            meta = await storage.get_native_meta(key)
            size = meta.get("size")
            if not (isinstance(size, int) and size <= STREAMED):
                await self._stream(request, key, conditions, meta, renewed, send)
                return
            # The meta is read already: value and version in one read.
            data, etag = await storage.get_item_raw_with_etag(key)
        else:
            # Value, version and meta in one call: the ETag names exactly the body it comes with.
            data, meta = await storage.get_item_raw_with_meta(key)
            tag = meta.get("etag")
            etag = tag if isinstance(tag, str) else None
        if data is None:
            raise HTTPError(Code.NOT_FOUND, "KV value not found", key=key)
        answer = meta_headers(meta, etag, len(data))
        if renewed:
            answer += renewed
        if conditions and await _not_modified(send, key, conditions, etag, answer):
            return
        if raw:
            body = data if STORED_HEADER in headers else raw_body(data)
            await send_answer(send, 200, body, OCTET, answer)
        else:
            await send_answer(send, 200, *self._bodies.get(key, data), answer)

    async def _stream(
        self,
        request: Request,
        key: str,
        conditions: Preconditions,
        meta: dict[str, Any],
        renewed: list[tuple[bytes, bytes]],
        send: Send,
    ) -> None:
        storage = self.storage
        for attempt in range(_STEADY):
            try:
                async with storage.open_read(key, chunk_size=_CHUNK) as reader:
                    after = await storage.get_native_meta(key)
                    etag, size = meta.get("etag"), meta.get("size")
                    steady = isinstance(etag, str) and after.get("etag") == etag
                    if not steady and isinstance(etag, str) and attempt + 1 < _STEADY:
                        meta = after
                        continue  # a write landed in between: open the newer version
                    if not steady:
                        etag = size = None  # neither names the body for sure
                    headers = [*meta_headers(meta, etag, size), *renewed]
                    if not await _not_modified(send, key, conditions, etag, headers):
                        await _send_stream(request, send, key, reader, headers)
                    return
            except NotFoundError:
                raise HTTPError(Code.NOT_FOUND, "KV value not found", key=key) from None

    async def head(self, request: Request, key: str, send: Send) -> None:
        """200 or 404 with the meta headers, and the size a raw GET would send."""
        conditions = Preconditions.from_headers(request.headers)
        if not await self.storage.has_item(key):
            raise HTTPError(Code.NOT_FOUND, "KV value not found", key=key)
        meta = await self.storage.get_native_meta(key)
        etag, size = meta.get("etag"), meta.get("size")
        etag = etag if isinstance(etag, str) else None
        size = size if isinstance(size, int) else None
        headers = meta_headers(meta, etag, size)
        if await _not_modified(send, key, conditions, etag, headers):
            return
        # The size a raw GET would send; it also keeps the server from announcing chunks.
        await send_answer(
            send, 200, b"", None, [*headers, (b"content-length", b"%d" % (size or 0))]
        )

    # -- writes -------------------------------------------------------------------------------

    async def put(self, request: Request, key: str, send: Send) -> None:
        """Store the body (streamed when raw and unconditional); answers ``OK`` and the ETag."""
        ttl = parse_ttl(request.headers.get(TTL_HEADER))
        conditions = Preconditions.from_headers(request.headers)
        if not conditions and media_type(request.headers.get("content-type")) == OCTET:
            async with self.storage.open_write(key, ttl=ttl) as writer:
                async for chunk in body_chunks(request, self.max_body):
                    await writer.write(chunk)
            etag = writer.etag
        else:
            body = await read_body(request, self.max_body)
            # How the body is stored is decided (and checked) before any I/O.
            put = read_put_body(body, request.headers.get("content-type"))
            if not conditions and put.raw:
                etag = await self.storage.set_item_raw(key, put.data, ttl=ttl)  # most PUTs
            else:
                read = lambda: self.storage.get_item_raw_with_etag(key)  # noqa: E731
                etag = await write_if(key, conditions, read, self._writer(key, put, ttl))
        await _ok(send, etag)

    def _writer(self, key: str, put: PutBody, ttl: float | None) -> Write:
        """The storage's conditional write of ``put``."""
        storage = self.storage

        async def write(if_match: str | None, if_none_match: bool) -> str | None:
            if put.raw:
                return await storage.set_item_raw(
                    key, put.data, ttl=ttl, if_match=if_match, if_none_match=if_none_match
                )
            return await storage.set_item(
                key, put.value, ttl=ttl, if_match=if_match, if_none_match=if_none_match
            )

        return write

    async def delete(self, request: Request, key: str, send: Send) -> None:
        """Remove the key; with ``If-Match``, only that version (``*``: any)."""
        storage = self.storage
        conditions = Preconditions.from_headers(request.headers)

        async def probe() -> tuple[bool, str | None]:
            etag = (await storage.get_native_meta(key)).get("etag")
            if isinstance(etag, str):
                return True, etag
            return await storage.has_item(key), None

        async def remove(if_match: str | None) -> None:
            await storage.remove_item(key, if_match=if_match)

        await remove_if(key, conditions, probe, remove)
        await _ok(send, None)

    async def increment(self, request: Request, key: str, send: Send) -> None:
        """``POST ?increment=N``: add N (default 1) and answer the new value."""
        by = parse_by(request.arg(INCREMENT_QUERY) or "")
        ttl = parse_ttl(request.headers.get(TTL_HEADER))
        value = await self.storage.increment(key, by, ttl=ttl)
        await send_answer(send, 200, counter_body(value), JSON)

    async def touch(self, request: Request, key: str, send: Send) -> None:
        """``POST ?touch`` with ``x-ttl``: renew the TTL; answers whether the key exists."""
        ttl = parse_ttl(request.headers.get(TTL_HEADER))
        if ttl is None:
            raise HTTPError(Code.INVALID_ARGUMENT, "a touch needs x-ttl seconds > 0", key=key)
        found = await self.storage.touch(key, ttl)
        await send_answer(send, 200, touched_body(found), JSON)


async def _send_stream(
    request: Request,
    send: Send,
    key: str,
    chunks: AsyncIterable[bytes],
    headers: list[tuple[bytes, bytes]],
) -> None:
    # No Content-Length: a layer's reported size need not be the bytes it streams, and a
    # chunked body that never ends properly is a cut every client sees.
    raw = [*headers, _OCTET_TYPE]
    await send({"type": "http.response.start", "status": 200, "headers": raw})
    # A client that goes away stops the stream: the rest of the value is never read.
    pumping = asyncio.ensure_future(_pump(send, key, chunks))
    watching = asyncio.ensure_future(_gone(request))
    try:
        await asyncio.wait({pumping, watching}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (pumping, watching):
            task.cancel()
        await asyncio.gather(pumping, watching, return_exceptions=True)


async def _pump(send: Send, key: str, chunks: AsyncIterable[bytes]) -> None:
    try:
        async for chunk in chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    except Exception:
        # The 200 is gone: ending without completing the response makes the ASGI server drop
        # the connection.
        logger.exception("streaming %r failed midway; connection aborted", key)
        return
    await send({"type": "http.response.body", "body": b""})


async def _gone(request: Request) -> None:
    """Return once the client has disconnected (a GET's empty body is read on the way)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


# The content-type headers of streamed values and of write answers, encoded once.
_OCTET_TYPE = (b"content-type", OCTET.encode("latin-1"))
_TEXT_TYPE = (b"content-type", TEXT.encode("latin-1"))
_OK_LENGTH = (b"content-length", b"2")


async def _ok(send: Send, etag: str | None) -> None:
    """``200 OK`` with the new ETag: every write's answer, its headers built here rather than
    by `send_answer` (which cost a PUT 3,200 more of its 78,000 instructions, callgrind)."""
    headers = [_TEXT_TYPE, _OK_LENGTH]
    if etag is not None:
        headers.insert(0, (b"etag", format_etag(etag).encode()))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"OK"})


async def _not_modified(
    send: Send,
    key: str,
    conditions: Preconditions,
    etag: str | None,
    headers: list[tuple[bytes, bytes]],
) -> bool:
    """Answer 304 (True) when If-None-Match fails on a read; raise 412 when If-Match does."""
    failed = conditions.failed(True, etag)
    if failed == "If-None-Match":
        await send_answer(send, 304, b"", None, headers)
        return True
    if failed is not None:
        raise PreconditionFailedError(key, failed)
    return False
