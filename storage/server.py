"""An ASGI app that serves a Storage over HTTP, speaking unstorage's storage-server protocol.

Routes (the path is the key, percent-decoded; ``/`` and ``:`` both separate segments):

- ``GET /a/b`` the value; with ``Accept: application/octet-stream`` the stored bytes as they
  are. Otherwise a stored string is sent as its text (``text/plain``), any other value as its
  JSON text (``application/json``), and bytes that are not JSON as ``application/octet-stream``.
- ``HEAD /a/b`` 200 or 404, with ``Last-Modified``, ``x-ttl``, ``ETag`` and ``x-size``.
- ``PUT /a/b`` store the body; ``Content-Type: application/octet-stream`` stores the bytes as
  they are, any other body is read as unstorage sends it: JSON text is kept as that JSON value
  and text that is not JSON is stored as a string. ``x-ttl`` (seconds), ``If-Match`` (an etag)
  and ``If-None-Match: *`` make expiring and conditional writes.
- ``DELETE /a/b`` remove; a path ending in ``/`` or ``:`` names a base: ``GET`` lists it (a JSON
  array of keys with ``/`` separators, one per line) and ``DELETE`` clears it.
- ``?meta`` on an item addresses its user meta (GET/HEAD/PUT/DELETE), as the http driver uses.
- ``POST /base/?batch`` with ``{"get": [keys]}``, ``{"remove": [keys]}`` or
  ``{"set": [[key, base64]], "ttl": seconds}`` (keys relative to the base) does many items in
  one request; a get answers ``{"values": [base64 or null]}``. This one is ours, not unstorage's.

Errors are JSON ``{"statusCode", "statusMessage", "message"}``. With tokens configured every
request needs ``Authorization: Bearer <token>`` (401 without, 403 for a read token writing).
"""

from __future__ import annotations

import hmac
import logging
import math
from base64 import b64decode, b64encode
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, MutableMapping
from datetime import datetime, timezone
from email.utils import format_datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

import orjson

from .errors import (
    ConflictError,
    DriverError,
    InvalidArgumentError,
    ReadOnlyError,
    SerializationError,
    StorageError,
    UnsupportedError,
)
from .keys import normalize_base, normalize_key
from .mounts import Mount
from .storage import Storage

__all__ = ["DEFAULT_MAX_BODY", "StorageServer", "create_app"]

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: Largest request body accepted by default (bytes); larger ones get 413.
DEFAULT_MAX_BODY = 32 * 1024 * 1024

_READ = frozenset({"GET", "HEAD"})
_WRITE = frozenset({"PUT", "DELETE"})
_OCTET = "application/octet-stream"
_LIST_CHUNK = 64 * 1024


class HTTPError(Exception):
    """A response with a status code other than 2xx, sent as a JSON body."""

    def __init__(self, status: int, message: str, headers: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = list(headers)


class _Request:
    __slots__ = ("headers", "method", "path", "query", "receive")

    def __init__(self, scope: Scope, receive: Receive) -> None:
        self.method: str = scope["method"]
        self.path: str = scope["path"][len(scope.get("root_path", "")) :] or "/"
        self.query = parse_qs(scope.get("query_string", b"").decode("latin-1"), True)
        self.headers = {name.decode("latin-1").lower(): value.decode("latin-1")
                        for name, value in scope["headers"]}  # fmt: skip
        self.receive = receive


class StorageServer:
    """The ASGI app. ``tokens`` may read and write, ``read_tokens`` only read.

    With neither, the server is open (bind it to localhost). ``read_only`` refuses every
    write with 405. ``dispose_on_shutdown`` disposes the storage at ASGI lifespan shutdown.
    The storage is a root Storage (not a namespace view).
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
    ) -> None:
        self.storage = storage
        self._write_tokens = [token.encode() for token in tokens if token]
        self._read_tokens = [token.encode() for token in read_tokens if token]
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
            await _send_error(send, exc.status, exc.message, exc.headers)
        except StorageError as exc:
            status = _status_of(exc)
            if status >= 500:
                logger.warning("%s %s failed: %s", request.method, request.path, exc)
            await _send_error(send, status, str(exc), _allow(exc))
        except Exception:
            logger.exception("%s %s failed", request.method, request.path)
            await _send_error(send, 500, "internal server error")

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

    # -- request handling ---------------------------------------------------------------------

    def _authorize(self, request: _Request, write: bool) -> None:
        if self._write_tokens or self._read_tokens:
            scheme, _, given = request.headers.get("authorization", "").partition(" ")
            token = given.strip().encode()
            if scheme.lower() != "bearer" or not token:
                raise HTTPError(401, "a bearer token is required", _CHALLENGE)
            # Compare against every token so the time taken does not reveal which one matched.
            writer = any([hmac.compare_digest(token, known) for known in self._write_tokens])
            reader = any([hmac.compare_digest(token, known) for known in self._read_tokens])
            if not (writer or reader):
                raise HTTPError(401, "the bearer token is not valid", _CHALLENGE)
            if write and not writer:
                raise HTTPError(403, "this token may only read")
        if write and self.read_only:
            raise HTTPError(405, "the server is read-only", [("allow", "GET, HEAD")])

    async def _handle(self, request: _Request, send: Send) -> None:
        method = request.method
        path = request.path
        if method == "POST" and "batch" in request.query and path.endswith(("/", ":")):
            self._authorize(request, write=False)
            await self._batch(request, normalize_base(path), send)
            return
        if method not in _READ and method not in _WRITE:
            raise HTTPError(
                405, f"method not allowed: {method}", [("allow", "GET, HEAD, PUT, DELETE")]
            )
        self._authorize(request, method in _WRITE)
        if path.endswith(("/", ":")):
            await self._handle_base(request, normalize_base(path), send)
            return
        key = normalize_key(path)
        if "meta" in request.query:
            await self._handle_user_meta(request, key, send)
            return
        storage = self.storage
        if method == "GET":
            data = await storage.get_item_raw(key)
            if data is None:
                raise HTTPError(404, "KV value not found")
            headers = await self._meta_headers(key)
            if _OCTET in request.headers.get("accept", ""):
                await _send(send, 200, data, _OCTET, headers)
            else:
                body, content_type = _as_value(data)
                await _send(send, 200, body, content_type, headers)
        elif method == "HEAD":
            if not await storage.has_item(key):
                raise HTTPError(404, "KV value not found")
            headers = await self._meta_headers(key)
            # The size a raw GET would send; it also keeps the server from announcing chunks.
            size = next((value for name, value in headers if name == "x-size"), "0")
            await _send(send, 200, b"", None, [*headers, ("content-length", size)])
        elif method == "PUT":
            await self._put(request, key)
            await _send(send, 200, b"OK", "text/plain; charset=utf-8")
        else:
            await storage.remove_item(key)
            await _send(send, 200, b"OK", "text/plain; charset=utf-8")

    async def _put(self, request: _Request, key: str) -> None:
        ttl = _ttl_header(request.headers.get("x-ttl"))
        if_match = request.headers.get("if-match")
        if if_match is not None:
            if_match = if_match.strip().removeprefix("W/").strip('"')
        if_none_match = request.headers.get("if-none-match", "").strip() == "*"
        body = await self._body(request)
        storage = self.storage
        if request.headers.get("content-type", "").startswith(_OCTET) or _is_json(body):
            # JSON text is already the stored form of a JSON value: keep its bytes as sent.
            await storage.set_item_raw(
                key, body, ttl=ttl, if_match=if_match, if_none_match=if_none_match
            )
            return
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise HTTPError(
                400, "a text body must be UTF-8; send bytes as application/octet-stream"
            ) from None
        # Not JSON: unstorage sends a string value as its bare text, so store it as a string.
        await storage.set_item(key, text, ttl=ttl, if_match=if_match, if_none_match=if_none_match)

    async def _body(self, request: _Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            raise HTTPError(413, f"the body exceeds {self.max_body} bytes")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                raise HTTPError(400, "the client disconnected")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise HTTPError(413, f"the body exceeds {self.max_body} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _handle_base(self, request: _Request, base: str, send: Send) -> None:
        if request.method == "DELETE":
            await self.storage.clear(base)
            await _send(send, 200, b"OK", "text/plain; charset=utf-8")
        elif request.method == "GET":
            depth = request.query.get("max_depth", [""])[0]
            if depth and not depth.isdigit():
                raise HTTPError(400, f"max_depth must be an integer >= 0, not {depth!r}")
            keys = self.storage.iter_keys(base, max_depth=int(depth) if depth else None)
            await _send_listing(send, keys)
        else:
            # As unstorage's server answers: a base is listed or cleared, never read or written.
            raise HTTPError(400, f"Invalid key: {request.method} is not allowed on a base key")

    async def _batch(self, request: _Request, base: str, send: Send) -> None:
        try:
            body = orjson.loads(await self._body(request))
            ttl = body.get("ttl") if isinstance(body, dict) else None
            if "get" in body:
                keys = [base + normalize_key(key) for key in body["get"]]
            elif "set" in body:
                items = {
                    base + normalize_key(key): b64decode(value, validate=True)
                    for key, value in body["set"]
                }
                keys, ttl = list(items), _ttl_header(None if ttl is None else str(ttl))
            else:
                keys = [base + normalize_key(key) for key in body["remove"]]
        except (orjson.JSONDecodeError, TypeError, KeyError, ValueError) as exc:
            raise HTTPError(
                400, f"a batch is {{get|remove: [keys]}} or {{set: [[key, base64]]}}: {exc}"
            ) from None
        if "get" not in body:
            self._authorize(request, write=True)
        groups: dict[Mount, list[str]] = {}
        for key in dict.fromkeys(keys):
            groups.setdefault(self.storage.get_mount(key), []).append(key)
        found: dict[str, bytes | None] = {}
        for mount, group in groups.items():
            driver, start = mount.driver, len(mount.base)
            relative = [key[start:] for key in group]
            if "get" not in body and driver.read_only:
                raise ReadOnlyError(group[0], driver.name)
            if ttl is not None and not driver.capabilities.ttl:
                raise UnsupportedError(
                    f"the {driver.name} driver (mounted at {mount.base!r}) has no TTL"
                )
            try:
                if "get" in body:
                    found.update(zip(group, await driver.get_items(relative), strict=True))
                elif "set" in body:
                    await driver.set_items([(key[start:], items[key]) for key in group], ttl=ttl)
                else:
                    await driver.remove_items(relative)
            except Exception as exc:
                raise DriverError(driver.name, "batch", group[0], str(exc)) from exc
        answer: dict[str, Any] = {"ok": True}
        if "get" in body:
            answer["values"] = [
                None if (v := found[key]) is None else b64encode(v).decode() for key in keys
            ]
        await _send(send, 200, orjson.dumps(answer), "application/json")

    async def _handle_user_meta(self, request: _Request, key: str, send: Send) -> None:
        mount = self.storage.get_mount(key)
        driver, relative = mount.driver, key[len(mount.base) :]
        method = request.method
        if method in _WRITE and driver.read_only:
            raise ReadOnlyError(key, driver.name)
        try:
            if method in _READ:
                data = await driver.get_user_meta(relative)
                if data is None:
                    raise HTTPError(404, "no user meta for this key")
                await _send(send, 200, b"" if method == "HEAD" else data, "application/json")
                return
            if method == "PUT":
                await driver.set_user_meta(relative, self._meta_body(await self._body(request)))
            else:
                await driver.remove_user_meta(relative)
        except (HTTPError, StorageError):
            raise
        except Exception as exc:
            raise DriverError(driver.name, f"{method} meta", key, str(exc)) from exc
        await _send(send, 200, b"OK", "text/plain; charset=utf-8")

    def _meta_body(self, body: bytes) -> bytes:
        # Stored meta must decode to a mapping, or every later get_meta of the key would fail.
        try:
            meta = self.storage.serializer.loads(body)
        except Exception:
            meta = None
        if not isinstance(meta, dict):
            raise HTTPError(400, "user meta is a JSON object")
        return body

    async def _meta_headers(self, key: str) -> list[tuple[str, str]]:
        mount = self.storage.get_mount(key)
        try:
            meta = await mount.driver.get_meta(key[len(mount.base) :])
        except Exception as exc:
            raise DriverError(mount.driver.name, "get_meta", key, str(exc)) from exc
        headers: list[tuple[str, str]] = []
        mtime = meta.get("mtime")
        if isinstance(mtime, datetime):
            headers.append(
                ("last-modified", format_datetime(mtime.astimezone(timezone.utc), usegmt=True))
            )
        ttl = meta.get("ttl")
        if isinstance(ttl, (int, float)) and ttl > 0:
            headers.append(("x-ttl", f"{ttl:.3f}"))
            headers.append(("cache-control", f"max-age={int(ttl)}"))
        etag = meta.get("etag")
        if etag is not None:
            headers.append(("etag", f'"{etag}"'))
        size = meta.get("size")
        if isinstance(size, int):
            headers.append(("x-size", str(size)))
        return headers


def create_app(storage: Storage, **options: Any) -> StorageServer:
    """The ASGI app serving ``storage``; options as for `StorageServer`."""
    return StorageServer(storage, **options)


_CHALLENGE = [("www-authenticate", 'Bearer realm="unistorage"')]


def _status_of(exc: StorageError) -> int:
    if isinstance(exc, (InvalidArgumentError, SerializationError)):
        return 400
    if isinstance(exc, ConflictError):
        return 412
    if isinstance(exc, ReadOnlyError):
        return 405
    if isinstance(exc, UnsupportedError):
        return 501
    if isinstance(exc, DriverError):
        return 502
    return 500


def _allow(exc: StorageError) -> list[tuple[str, str]]:
    return [("allow", "GET, HEAD")] if isinstance(exc, ReadOnlyError) else []


def _ttl_header(raw: str | None) -> float | None:
    # unstorage omits the header for "no expiry" and treats 0 as none; anything else must
    # be a positive number of seconds.
    if raw is None or raw.strip() in ("", "0"):
        return None
    try:
        ttl = float(raw)
    except ValueError:
        raise HTTPError(400, f"x-ttl must be seconds, not {raw!r}") from None
    if not ttl > 0 or math.isinf(ttl):
        raise HTTPError(400, f"x-ttl must be a finite number of seconds > 0, not {raw!r}")
    return ttl


def _is_json(body: bytes) -> bool:
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return bool(body.strip())


def _as_value(data: bytes) -> tuple[bytes, str]:
    """The body of a non-raw GET: a string's bare text, JSON as JSON, other bytes as bytes."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return data, _OCTET
    if isinstance(value, str):
        return value.encode("utf-8"), "text/plain; charset=utf-8"
    return data, "application/json"


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
    send: Send, status: int, message: str, headers: Iterable[tuple[str, str]] = ()
) -> None:
    body = orjson.dumps(
        {"statusCode": status, "statusMessage": HTTPStatus(status).phrase, "message": message}
    )
    await _send(send, status, body, "application/json", headers)


async def _send_listing(send: Send, keys: AsyncIterator[str]) -> None:
    # Streamed one key per line so that a listing of millions of keys needs flat memory on
    # both ends; the whole body is still one JSON array, as unstorage's client expects.
    # The first key is fetched before the status goes out, so a failing backend gets a 502.
    first: str | None = None
    async for key in keys:
        first = key
        break
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    if first is None:
        await send({"type": "http.response.body", "body": b"[]"})
        return
    parts = [b"[\n", orjson.dumps(first.replace(":", "/"))]
    size = 0
    try:
        async for key in keys:
            part = b",\n" + orjson.dumps(key.replace(":", "/"))
            parts.append(part)
            size += len(part)
            if size >= _LIST_CHUNK:
                await send(
                    {"type": "http.response.body", "body": b"".join(parts), "more_body": True}
                )
                parts, size = [], 0
    except Exception:
        # The status is gone already; an unterminated array tells the client it was cut short.
        logger.exception("listing failed midway")
        await send({"type": "http.response.body", "body": b"".join(parts)})
        return
    parts.append(b"\n]")
    await send({"type": "http.response.body", "body": b"".join(parts)})
