"""An ASGI app that serves a Storage over HTTP, speaking `storage.protocol`.

``GET``/``HEAD``/``PUT``/``DELETE`` on ``/a/b`` read, write and remove key ``a:b`` (unstorage's
routes: ``x-ttl``, ``application/octet-stream`` for raw bytes), with ETags and RFC 9110
conditional headers; a path ending in ``/`` lists (``GET``) or clears (``DELETE``) a base;
``?meta`` addresses an item's user meta and ``POST /base/?batch`` many items at once. Errors are
JSON ``{"statusCode", "statusMessage", "message", "code"}``. With tokens configured every request
needs ``Authorization: Bearer <token>``. docs/server.md describes it all; the server uses only
the public Storage API.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from .asgi import Receive, Scope, Send
from .errors import ReadOnlyError, StorageError
from .keys import normalize_base, normalize_key
from .protocol import (
    BATCH_QUERY,
    CODE_HEADER,
    JSON,
    MAX_DEPTH_QUERY,
    META_QUERY,
    OCTET,
    TEXT,
    TTL_HEADER,
    Code,
    ListingWriter,
    PreconditionFailedError,
    Preconditions,
    Write,
    accepts,
    batch_answer,
    check_token,
    code_of,
    error_body,
    error_fields,
    is_base_path,
    meta_headers,
    parse_batch,
    parse_max_depth,
    parse_ttl,
    read_put_body,
    status_of,
    value_body,
    write_if,
)
from .storage import Storage

__all__ = ["DEFAULT_MAX_BODY", "StorageServer", "create_app"]

logger = logging.getLogger(__name__)

#: Largest request body accepted by default (bytes); larger ones get 413.
DEFAULT_MAX_BODY = 32 * 1024 * 1024

_READ = frozenset({"GET", "HEAD"})
_WRITE = frozenset({"PUT", "DELETE"})
_LIST_CHUNK = 64 * 1024
_CHALLENGE = [("www-authenticate", 'Bearer realm="unistorage"')]
METRICS_QUERY = "metrics"
_METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_READ_ONLY = [("allow", "GET, HEAD")]


class HTTPError(Exception):
    """An answer other than 2xx, sent as a JSON error body with its code."""

    def __init__(
        self, code: str, message: str, headers: Iterable[tuple[str, str]] = (), **fields: Any
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.headers = list(headers)
        self.fields = fields


class _Request:
    __slots__ = ("headers", "method", "path", "query", "receive")

    def __init__(self, scope: Scope, receive: Receive) -> None:
        self.method: str = scope["method"]
        self.path: str = scope["path"][len(scope.get("root_path", "")) :] or "/"
        self.query = parse_qs(scope.get("query_string", b"").decode("latin-1"), True)
        headers: dict[str, str] = {}
        for raw_name, raw_value in scope["headers"]:
            name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
            # Repeated headers are one comma-separated list (RFC 9110, section 5.3).
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        self.headers = headers
        self.receive = receive


class StorageServer:
    """The ASGI app. ``tokens`` may read and write, ``read_tokens`` only read.

    With neither, the server is open (bind it to localhost). ``read_only`` refuses every
    write with 405. ``dispose_on_shutdown`` disposes the storage at ASGI lifespan shutdown.
    The storage is a root Storage (not a namespace view). A token that could never
    authenticate (empty, non-ASCII, holding spaces) raises `InvalidArgumentError` here.
    ``metrics`` renders Prometheus text for ``GET /?metrics`` (see `storage.layers.Stats`);
    that route needs one of ``metrics_tokens`` or a read-write token, never no token.
    """

    def __init__(
        self,
        storage: Storage,
        *,
        tokens: Iterable[str] = (),
        read_tokens: Iterable[str] = (),
        read_only: bool = False,
        max_body: int = DEFAULT_MAX_BODY,
        dispose_on_shutdown: bool = False,
        metrics: Callable[[], str] | None = None,
        metrics_tokens: Iterable[str] = (),
    ) -> None:
        self.storage = storage
        self._metrics = metrics
        self._metrics_tokens = [check_token(t, "a metrics token").encode() for t in metrics_tokens]
        self._write_tokens = [check_token(t, "a token").encode() for t in tokens]
        self._read_tokens = [check_token(t, "a read token").encode() for t in read_tokens]
        self.read_only = read_only
        self.max_body = max_body
        self.dispose_on_shutdown = dispose_on_shutdown

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        request = _Request(scope, receive)
        try:
            await self._handle(request, send)
        except HTTPError as exc:
            await _send_error(send, exc.code, exc.message, exc.headers, **exc.fields)
        except StorageError as exc:
            code = code_of(exc)
            if code in (Code.DRIVER_ERROR, Code.INTERNAL):
                # The whole story stays here; the client gets the operation, key and code.
                logger.warning("%s %s failed: %s", request.method, request.path, exc, exc_info=exc)
            fields = error_fields(exc)
            message = fields.pop("message")
            headers = _READ_ONLY if isinstance(exc, ReadOnlyError) else []
            await _send_error(send, code, message, headers, **fields)
        except Exception:
            logger.exception("%s %s failed", request.method, request.path)
            await _send_error(send, Code.INTERNAL, "internal server error")

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.dispose_on_shutdown:
                    await self.storage.dispose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- routing and authorization ------------------------------------------------------------

    async def _send_metrics(self, request: _Request, send: Send) -> None:
        allowed = self._metrics_tokens + self._write_tokens
        if self._metrics is None or not allowed:
            raise HTTPError(Code.NOT_FOUND, "this server keeps no metrics")
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        token = given.strip().encode("latin-1")
        if scheme.lower() != "bearer" or not token:
            raise HTTPError(Code.UNAUTHORIZED, "metrics need a bearer token", _CHALLENGE)
        if not any([hmac.compare_digest(token, known) for known in allowed]):
            raise HTTPError(Code.UNAUTHORIZED, "the bearer token is not valid", _CHALLENGE)
        await _send(send, 200, self._metrics().encode(), _METRICS_TYPE)

    def _authorize(self, request: _Request, write: bool) -> None:
        if self._write_tokens or self._read_tokens:
            scheme, _, given = request.headers.get("authorization", "").partition(" ")
            token = given.strip().encode("latin-1")
            if scheme.lower() != "bearer" or not token:
                raise HTTPError(Code.UNAUTHORIZED, "a bearer token is required", _CHALLENGE)
            # Compare against every token so the time taken does not reveal which one matched.
            writer = any([hmac.compare_digest(token, known) for known in self._write_tokens])
            reader = any([hmac.compare_digest(token, known) for known in self._read_tokens])
            if not (writer or reader):
                raise HTTPError(Code.UNAUTHORIZED, "the bearer token is not valid", _CHALLENGE)
            if write and not writer:
                raise HTTPError(Code.FORBIDDEN, "this token may only read")
        if write and self.read_only:
            raise HTTPError(Code.READ_ONLY, "the server is read-only", _READ_ONLY)

    async def _handle(self, request: _Request, send: Send) -> None:
        method, path = request.method, request.path
        if method == "GET" and path == "/" and METRICS_QUERY in request.query:
            await self._send_metrics(request, send)
            return
        if method == "POST" and BATCH_QUERY in request.query and is_base_path(path):
            self._authorize(request, write=False)
            await self._batch(request, normalize_base(path), send)
            return
        if method not in _READ and method not in _WRITE:
            allow = [("allow", "GET, HEAD, PUT, DELETE")]
            raise HTTPError(Code.METHOD_NOT_ALLOWED, f"method not allowed: {method}", allow)
        self._authorize(request, method in _WRITE)
        if is_base_path(path):
            await self._handle_base(request, normalize_base(path), send)
            return
        key = normalize_key(path)
        if META_QUERY in request.query:
            await self._handle_user_meta(request, key, send)
        elif method == "GET":
            await self._get(request, key, send)
        elif method == "HEAD":
            await self._head(request, key, send)
        elif method == "PUT":
            await self._put(request, key)
            await _send(send, 200, b"OK", TEXT)
        else:
            await self._delete(request, key)
            await _send(send, 200, b"OK", TEXT)

    # -- items --------------------------------------------------------------------------------

    async def _get(self, request: _Request, key: str, send: Send) -> None:
        conditions = Preconditions.from_headers(request.headers)
        # Value and version in one read: the ETag names exactly the body it comes with.
        data, etag = await self.storage.get_item_raw_with_etag(key)
        if data is None:
            raise HTTPError(Code.NOT_FOUND, "KV value not found", key=key)
        meta = await self.storage.get_native_meta(key)
        headers = meta_headers(meta, etag, len(data))
        if await _not_modified(send, key, conditions, etag, headers):
            return
        if accepts(request.headers.get("accept"), OCTET):
            await _send(send, 200, data, OCTET, headers)
        else:
            await _send(send, 200, *value_body(data, self.storage.serializer.loads), headers)

    async def _head(self, request: _Request, key: str, send: Send) -> None:
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
        await _send(send, 200, b"", None, [*headers, ("content-length", str(size or 0))])

    async def _put(self, request: _Request, key: str) -> None:
        ttl = parse_ttl(request.headers.get(TTL_HEADER))
        conditions = Preconditions.from_headers(request.headers)
        write = self._writer(request, key, await self._body(request), ttl)
        await write_if(key, conditions, lambda: self.storage.get_item_raw_with_etag(key), write)

    def _writer(self, request: _Request, key: str, body: bytes, ttl: float | None) -> Write:
        """How the body is stored (decided before any I/O), as a conditional write."""
        storage = self.storage
        put = read_put_body(body, request.headers.get("content-type"))

        async def write(if_match: str | None, if_none_match: bool) -> None:
            if put.raw:
                await storage.set_item_raw(
                    key, put.data, ttl=ttl, if_match=if_match, if_none_match=if_none_match
                )
            else:
                await storage.set_item(
                    key, put.value, ttl=ttl, if_match=if_match, if_none_match=if_none_match
                )

        return write

    async def _delete(self, request: _Request, key: str) -> None:
        conditions = Preconditions.from_headers(request.headers)
        if conditions.create_only:
            # "Only if absent": removing an absent key changes nothing, so answering from one
            # read is exact.
            if await self.storage.has_item(key):
                raise PreconditionFailedError(key, "If-None-Match")
            return
        if conditions:
            message = "a conditional DELETE needs an atomic conditional remove (not yet there)"
            raise HTTPError(Code.UNSUPPORTED, message, key=key)
        await self.storage.remove_item(key)

    async def _body(self, request: _Request) -> bytes:
        declared = request.headers.get("content-length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > self.max_body:
            raise HTTPError(Code.TOO_LARGE, f"the body exceeds {self.max_body} bytes")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                raise HTTPError(Code.INVALID_ARGUMENT, "the client disconnected")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise HTTPError(Code.TOO_LARGE, f"the body exceeds {self.max_body} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    # -- bases, batches, user meta ------------------------------------------------------------

    async def _handle_base(self, request: _Request, base: str, send: Send) -> None:
        if request.method == "GET":
            depth = parse_max_depth(request.query.get(MAX_DEPTH_QUERY, [""])[0])
            await self._list(base, depth, send)
        elif request.method == "DELETE":
            if Preconditions.from_headers(request.headers):
                raise HTTPError(Code.UNSUPPORTED, "a base is cleared without conditions")
            await self.storage.clear(base)
            await _send(send, 200, b"OK", TEXT)
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

    async def _batch(self, request: _Request, base: str, send: Send) -> None:
        batch = parse_batch(await self._body(request), base)
        if batch.op != "get":
            self._authorize(request, write=True)
        storage = self.storage
        if batch.op == "get":
            found = await storage.get_items_raw(batch.keys)
            await _send(send, 200, batch_answer(found[key] for key in batch.keys), JSON)
            return
        if batch.op == "set":
            pairs = list(zip(batch.keys, batch.values, strict=True))
            await storage.set_items_raw(pairs, ttl=batch.ttl)
        else:
            await storage.remove_items(batch.keys)
        await _send(send, 200, batch_answer(), JSON)

    async def _handle_user_meta(self, request: _Request, key: str, send: Send) -> None:
        method = request.method
        storage = self.storage
        if method in _READ:
            data = await storage.get_meta_raw(key)
            if data is None:
                raise HTTPError(Code.NOT_FOUND, "no user meta for this key", key=key)
            if method == "GET":
                await _send(send, 200, data, JSON)
            else:
                await _send(send, 200, b"", None, [("content-length", str(len(data)))])
            return
        if method == "PUT":
            # set_meta_raw refuses bytes that do not decode to a mapping (a 400).
            await storage.set_meta_raw(key, await self._body(request))
        else:
            await storage.remove_meta(key)
        await _send(send, 200, b"OK", TEXT)


def create_app(storage: Storage, **options: Any) -> StorageServer:
    """The ASGI app serving ``storage``; options as for `StorageServer`."""
    return StorageServer(storage, **options)


async def _not_modified(
    send: Send,
    key: str,
    conditions: Preconditions,
    etag: str | None,
    headers: list[tuple[str, str]],
) -> bool:
    """Answer 304 (True) when If-None-Match fails on a read; raise 412 when If-Match does."""
    failed = conditions.failed(True, etag)
    if failed == "If-None-Match":
        await _send(send, 304, b"", None, headers)
        return True
    if failed is not None:
        raise PreconditionFailedError(key, failed)
    return False


async def _send(
    send: Send,
    status: int,
    body: bytes,
    content_type: str | None,
    headers: Iterable[tuple[str, str]] = (),
) -> None:
    raw = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers]
    if content_type is not None:
        raw.append((b"content-type", content_type.encode("latin-1")))
        raw.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def _send_error(
    send: Send, code: str, message: str, headers: Iterable[tuple[str, str]] = (), **fields: Any
) -> None:
    status = status_of(code)
    body = error_body(status, code, message, **fields)
    await _send(send, status, body, JSON, [*headers, (CODE_HEADER, code)])
