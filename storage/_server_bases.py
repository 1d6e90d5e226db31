"""The storage server's routes on a base and on user meta: whole listings (streamed), pages of
a listing, clearing, ``POST base/?batch`` and ``?meta``."""

from __future__ import annotations

import logging
from collections.abc import Callable

from ._server_http import HTTPError, Request, read_body, send_answer
from .asgi import Send
from .protocol import (
    CURSOR_QUERY,
    JSON,
    LIMIT_QUERY,
    MAX_DEPTH_QUERY,
    MAX_PAGE,
    TEXT,
    Code,
    ListingWriter,
    Preconditions,
    batch_answer,
    page_body,
    parse_batch,
    parse_limit,
    parse_max_depth,
)
from .storage import Storage

__all__ = ["Bases"]

logger = logging.getLogger("storage.server")  # one logger for the whole server

_LIST_CHUNK = 64 * 1024
_READ = frozenset({"GET", "HEAD"})


class Bases:
    """Base, batch and user-meta routes over ``storage``; bodies bounded by ``max_body``.

    ``authorize_write(request)`` raises unless the request may write (batches that set or
    remove learn that only from their body).
    """

    def __init__(
        self, storage: Storage, max_body: int, authorize_write: Callable[[Request], None]
    ) -> None:
        self.storage = storage
        self.max_body = max_body
        self._authorize_write = authorize_write

    async def handle(self, request: Request, base: str, send: Send) -> None:
        """``GET`` lists (a page with ``?limit``), ``DELETE`` clears; nothing else on a base."""
        if request.method == "GET":
            depth = parse_max_depth(request.arg(MAX_DEPTH_QUERY))
            limit, cursor = request.arg(LIMIT_QUERY), request.arg(CURSOR_QUERY)
            if limit is None and cursor is not None:
                raise HTTPError(Code.INVALID_ARGUMENT, "a cursor goes with a limit")
            if limit is None:
                await self._list(base, depth, send)
                return
            keys, following = await self.storage.list_keys(
                base, limit=min(parse_limit(limit), MAX_PAGE), cursor=cursor, max_depth=depth
            )
            await send_answer(send, 200, page_body(keys, following), JSON)
        elif request.method == "DELETE":
            if Preconditions.from_headers(request.headers):
                raise HTTPError(Code.UNSUPPORTED, "a base is cleared without conditions")
            await self.storage.clear(base)
            await send_answer(send, 200, b"OK", TEXT)
        else:
            # As unstorage's server answers: a base is listed or cleared, never read or written.
            raise HTTPError(
                Code.INVALID_KEY, f"Invalid key: {request.method} is not allowed on a base key"
            )

    async def _list(self, base: str, depth: int | None, send: Send) -> None:
        keys = self.storage.iter_keys(base, max_depth=depth)
        # The first key is fetched before the status goes out, so a failing backend gets a 502.
        first = await anext(keys, None)
        start = {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}  # fmt: skip
        await send(start)
        writer = ListingWriter()
        if first is None:
            await send({"type": "http.response.body", "body": writer.end()})
            return
        parts, size = [writer.key(first)], 0
        try:
            async for key in keys:
                part = writer.key(key)
                parts.append(part)
                size += len(part)
                if size >= _LIST_CHUNK:
                    body = b"".join(parts)
                    await send({"type": "http.response.body", "body": body, "more_body": True})
                    parts, size = [], 0
        except Exception:
            # The 200 is gone already. Returning without the closing bracket and without
            # completing the response makes the ASGI server drop the connection, so no client
            # can take the keys it got for the whole listing.
            logger.exception(
                "listing %r failed after %d keys; connection aborted", base, writer.count
            )
            return
        parts.append(writer.end())
        await send({"type": "http.response.body", "body": b"".join(parts)})

    async def batch(self, request: Request, base: str, send: Send) -> None:
        """``POST base/?batch``: many gets, sets or removes in one request."""
        batch = parse_batch(await read_body(request, self.max_body), base)
        if batch.op != "get":
            self._authorize_write(request)
        storage = self.storage
        if batch.op == "get":
            found = await storage.get_items_raw(batch.keys)
            await send_answer(send, 200, batch_answer(found[key] for key in batch.keys), JSON)
            return
        if batch.op == "set":
            pairs = list(zip(batch.keys, batch.values, strict=True))
            await storage.set_items_raw(pairs, ttl=batch.ttl)
        else:
            await storage.remove_items(batch.keys)
        await send_answer(send, 200, batch_answer(), JSON)

    async def user_meta(self, request: Request, key: str, send: Send) -> None:
        """``?meta``: the user meta of a key (GET, HEAD, PUT, DELETE)."""
        method = request.method
        storage = self.storage
        if method in _READ:
            data = await storage.get_meta_raw(key)
            if data is None:
                raise HTTPError(Code.NOT_FOUND, "no user meta for this key", key=key)
            if method == "GET":
                await send_answer(send, 200, data, JSON)
            else:
                await send_answer(send, 200, b"", None, [(b"content-length", b"%d" % len(data))])
            return
        if method == "PUT":
            # set_meta_raw refuses bytes that do not decode to a mapping (a 400).
            await storage.set_meta_raw(key, await read_body(request, self.max_body))
        else:
            await storage.remove_meta(key)
        await send_answer(send, 200, b"OK", TEXT)
