"""The HTTP plumbing of the storage server: a request as ASGI gives it, answers and errors sent
back, and request bodies read whole or streamed, never past the body limit."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any
from urllib.parse import parse_qs

from .asgi import Message, Receive, Scope, Send
from .protocol import CODE_HEADER, JSON, OCTET, TEXT, Code, error_body, status_of

__all__ = [
    "HTTPError",
    "Request",
    "body_chunks",
    "raw_headers",
    "read_body",
    "send_answer",
    "send_error",
]


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


class Request:
    """One HTTP request: method, path (below the root path), query, lowercase headers."""

    __slots__ = ("headers", "method", "path", "query", "receive")

    def __init__(self, scope: Scope, receive: Receive) -> None:
        self.method: str = scope["method"]
        path: str = scope["path"]
        root = scope.get("root_path")
        self.path = (path[len(root) :] or "/") if root else path or "/"
        query = scope.get("query_string")
        self.query = parse_qs(query.decode("latin-1"), True) if query else {}
        raw = scope["headers"]
        if type(raw) is not list:
            raw = list(raw)  # ASGI allows any iterable of pairs
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in raw}
        if len(headers) != len(raw):
            # Repeated headers are one comma-separated list (RFC 9110, section 5.3).
            headers = {}
            for raw_name, raw_value in raw:
                name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
                headers[name] = f"{headers[name]}, {value}" if name in headers else value
        self.headers = headers
        self.receive = receive

    def arg(self, name: str) -> str | None:
        """The (first) value of query parameter ``name``, or None when absent."""
        values = self.query.get(name)
        return None if values is None else values[0]


def _too_large(limit: int) -> HTTPError:
    return HTTPError(Code.TOO_LARGE, f"the body exceeds {limit} bytes")


def _check_declared(request: Request, limit: int) -> None:
    """413 before reading a body whose declared length is already past ``limit``."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)


async def body_chunks(request: Request, limit: int) -> AsyncIterator[bytes]:
    """The request body as it arrives; `HTTPError` (413) as soon as it passes ``limit`` bytes,
    (400) when the client goes away before its end."""
    _check_declared(request, limit)
    async for chunk in _chunks(request, limit, await request.receive()):
        yield chunk


async def _chunks(request: Request, limit: int, message: Message) -> AsyncIterator[bytes]:
    """The body from ``message`` (the first one received) on, checked against ``limit``."""
    size = 0
    while True:
        chunk = _take(message, size, limit)
        size += len(chunk)
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return
        message = await request.receive()


def _take(message: Message, size: int, limit: int) -> bytes:
    """The bytes of one received message of a body of which ``size`` bytes came before, with
    the checks every body gets: 400 when the client went away, 413 once it passes ``limit``."""
    if message["type"] == "http.disconnect":
        raise HTTPError(Code.INVALID_ARGUMENT, "the client disconnected")
    chunk: bytes = message.get("body", b"")
    if size + len(chunk) > limit:
        raise _too_large(limit)
    return chunk


async def read_body(request: Request, limit: int) -> bytes:
    """The whole request body, at most ``limit`` bytes: `HTTPError` 413 past them, 400 when
    the client goes away before its end."""
    _check_declared(request, limit)
    message = await request.receive()
    first = _take(message, 0, limit)
    if not message.get("more_body", False):
        return first  # most bodies: whole in one message
    # Else a plain loop (no generator), and no join for a single piece: granian may follow
    # a whole body with an empty last message.
    chunks = [first] if first else []
    size = len(first)
    while True:
        message = await request.receive()
        chunk = _take(message, size, limit)
        if chunk:
            size += len(chunk)
            chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


#: The content types of most answers, encoded once.
_TYPES = {kind: kind.encode("latin-1") for kind in (JSON, OCTET, TEXT)}


async def send_answer(
    send: Send,
    status: int,
    body: bytes,
    content_type: str | None,
    headers: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    """A complete answer; ``content_type`` None sends no body headers (HEAD, 304). The
    ``headers`` are as ASGI sends them (lowercase names, bytes)."""
    raw = [*headers]
    if content_type is not None:
        raw.append((b"content-type", _TYPES.get(content_type) or content_type.encode("latin-1")))
        raw.append((b"content-length", b"%d" % len(body)))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def raw_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    """Headers made as text, as ASGI sends them."""
    return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers]


async def send_error(
    send: Send, code: str, message: str, headers: Iterable[tuple[str, str]] = (), **fields: Any
) -> None:
    """An error answer: its JSON body, and its code in a header too (for HEAD)."""
    status = status_of(code)
    body = error_body(status, code, message, **fields)
    await send_answer(send, status, body, JSON, raw_headers([*headers, (CODE_HEADER, code)]))
