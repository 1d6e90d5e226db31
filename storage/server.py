"""An ASGI app that serves a Storage over HTTP, speaking `storage.protocol`.

``GET``/``HEAD``/``PUT``/``DELETE`` on ``/a/b`` read, write and remove key ``a:b`` (unstorage's
routes: ``x-ttl``, ``application/octet-stream`` for raw bytes), with ETags and RFC 9110
conditional headers; ``POST /a/b?increment=N`` and ``POST /a/b?touch`` are the atomic counter
and sliding expiry; a path ending in ``/`` lists (``GET``, a page with ``?limit=&cursor=``) or
clears (``DELETE``) a base; ``?meta`` addresses an item's user meta and ``POST /base/?batch``
many items at once. Large raw values stream both ways. Errors are JSON in the shapes of
unstorage 1 and 2 (``statusCode``/``statusMessage``, ``status``/``statusText``/``message``) plus
a ``code``. With tokens configured every request needs
``Authorization: Bearer <token>``. docs/server.md describes it all; the server uses only the
public Storage API. The routes live in `storage._server_items` and `storage._server_bases`.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from ._server_bases import Bases
from ._server_http import HTTPError, Request, send_answer, send_error
from ._server_items import Items
from .asgi import Receive, Scope, Send
from .errors import ReadOnlyError, StorageError
from .keys import KeyCache, normalize_base, normalize_key
from .protocol import (
    BATCH_QUERY,
    INCREMENT_QUERY,
    META_QUERY,
    RENEW_TTL_HEADER,
    TOUCH_QUERY,
    Code,
    check_token,
    code_of,
    error_fields,
    is_base_path,
)
from .storage import Storage

__all__ = ["DEFAULT_MAX_BODY", "StorageServer", "create_app"]

logger = logging.getLogger(__name__)

#: A route on one key: the request, its normalized key, and where the answer goes.
_Route = Callable[[Request, str, Send], Awaitable[None]]

#: Largest request body accepted by default (bytes); larger ones get 413. Streamed bodies too.
DEFAULT_MAX_BODY = 32 * 1024 * 1024

_WRITE = frozenset({"PUT", "DELETE"})
_CHALLENGE = [("www-authenticate", 'Bearer realm="unistorage"')]
METRICS_QUERY = "metrics"
_METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_READ_ONLY = [("allow", "GET, HEAD")]


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
        self._items = Items(storage, max_body)
        # Request paths repeat as keys repeat: each is normalized once.
        self._paths = KeyCache()
        self._bases = Bases(storage, max_body, lambda request: self._authorize(request, True))
        # The routes on one key (or on a base, for the methods that have one), by method.
        items = self._items
        self._routes: dict[str, _Route] = {
            "GET": items.get, "HEAD": items.head, "PUT": items.put, "DELETE": items.delete
        }  # fmt: skip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        try:
            # The routing is here, not in a coroutine of its own: one frame less per request.
            method, path, query = request.method, request.path, request.query
            if query and await self._query_route(request, send):
                return
            route = self._routes.get(method)
            if route is None:
                allow = [("allow", "GET, HEAD, PUT, DELETE")]
                raise HTTPError(Code.METHOD_NOT_ALLOWED, f"Method Not Allowed: {method}", allow)
            if self._write_tokens or self._read_tokens or self.read_only:
                # An open server has nothing to authorize. A GET that renews a TTL writes.
                self._authorize(request, method in _WRITE or RENEW_TTL_HEADER in request.headers)
            if is_base_path(path):
                await self._bases.handle(request, normalize_base(path), send)
                return
            key = self._paths.get(path) or self._paths.normalize(path)
            if query and META_QUERY in query:
                await self._bases.user_meta(request, key, send)
            else:
                await route(request, key, send)
        except Exception as exc:
            await self._send_failure(request, send, exc)

    async def _send_failure(self, request: Request, send: Send, exc: Exception) -> None:
        """The error answer for what a request raised (and the log line for a failure of
        ours or of a backend)."""
        if isinstance(exc, HTTPError):
            await send_error(send, exc.code, exc.message, exc.headers, **exc.fields)
        elif isinstance(exc, StorageError):
            code = code_of(exc)
            if code in (Code.DRIVER_ERROR, Code.INTERNAL):
                # The whole story stays here; the client gets the operation, key and code.
                logger.warning("%s %s failed: %s", request.method, request.path, exc, exc_info=exc)
            fields = error_fields(exc)
            message = fields.pop("message")
            headers = _READ_ONLY if isinstance(exc, ReadOnlyError) else []
            await send_error(send, code, message, headers, **fields)
        else:
            logger.error("%s %s failed", request.method, request.path, exc_info=exc)
            await send_error(send, Code.INTERNAL, "internal server error")

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

    async def _send_metrics(self, request: Request, send: Send) -> None:
        allowed = self._metrics_tokens + self._write_tokens
        if self._metrics is None or not allowed:
            raise HTTPError(Code.NOT_FOUND, "this server keeps no metrics")
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        token = given.strip().encode("latin-1")
        if scheme.lower() != "bearer" or not token:
            raise HTTPError(Code.UNAUTHORIZED, "metrics need a bearer token", _CHALLENGE)
        if not any([hmac.compare_digest(token, known) for known in allowed]):
            raise HTTPError(Code.UNAUTHORIZED, "the bearer token is not valid", _CHALLENGE)
        await send_answer(send, 200, self._metrics().encode(), _METRICS_TYPE)

    def _authorize(self, request: Request, write: bool) -> None:
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

    async def _query_route(self, request: Request, send: Send) -> bool:
        """Serve the routes a query selects (metrics, batches, counters, touches); False when
        the query selects none of them."""
        method, path, query = request.method, request.path, request.query
        if method == "GET" and path == "/" and METRICS_QUERY in query:
            await self._send_metrics(request, send)
            return True
        if method != "POST":
            return False
        if BATCH_QUERY in query and is_base_path(path):
            self._authorize(request, write=False)
            await self._bases.batch(request, normalize_base(path), send)
            return True
        if (INCREMENT_QUERY in query or TOUCH_QUERY in query) and not is_base_path(path):
            self._authorize(request, write=True)
            key = normalize_key(path)
            if INCREMENT_QUERY in query:
                await self._items.increment(request, key, send)
            else:
                await self._items.touch(request, key, send)
            return True
        return False


def create_app(storage: Storage, **options: Any) -> StorageServer:
    """The ASGI app serving ``storage``; options as for `StorageServer`."""
    return StorageServer(storage, **options)
