"""Request bodies as ASGI servers deliver them: whole in one message, whole and then an empty
last message (granian's way), or in pieces; over the limit, or cut off by a disconnect.

The server is called as an ASGI app with the messages given here, so each delivery is exact.
A JSON PUT reads its body whole before any I/O (`storage._server_http.read_body`): whatever
the delivery, the value stored is the bytes sent, and a body that goes wrong stores nothing.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import orjson
import pytest

from storage import create_storage
from storage.server import StorageServer

VALUE = orjson.dumps({"id": "0000000042", "data": "x" * 990})


async def _put(server: StorageServer, messages: list[dict[str, Any]]) -> tuple[int, bytes, int]:
    """PUT /item with ``messages`` as the request's receive(); status, body, receive calls."""
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "PUT",
        "path": "/item",
        "raw_path": b"/item",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json")],
    }
    pending = list(messages)
    calls = 0
    status = 0
    body: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        else:
            body.append(message.get("body", b""))

    await server(scope, receive, send)
    return status, b"".join(body), calls


def _request(body: bytes, more: bool = False) -> dict[str, Any]:
    return {"type": "http.request", "body": body, "more_body": more}


DELIVERIES = {
    "one message": [_request(VALUE)],
    "then an empty last one": [_request(VALUE, True), _request(b"")],
    "in three pieces": [
        _request(VALUE[:10], True),
        _request(VALUE[10:600], True),
        _request(VALUE[600:]),
    ],
    "with empty messages between": [
        _request(b"", True),
        _request(VALUE[:500], True),
        _request(b"", True),
        _request(VALUE[500:]),
    ],
}


@pytest.mark.parametrize("delivery", DELIVERIES)
async def test_every_delivery_of_a_body_stores_the_bytes_sent(delivery: str) -> None:
    storage = create_storage()
    status, _, calls = await _put(StorageServer(storage), DELIVERIES[delivery])
    assert status == 200
    assert calls == len(DELIVERIES[delivery])  # read to its last message, never past it
    assert await storage.get_item_raw("item") == VALUE


async def test_a_body_over_the_limit_in_a_later_message_is_413_and_stores_nothing() -> None:
    storage = create_storage()
    await storage.set_item("item", "kept")
    server = StorageServer(storage, max_body=len(VALUE) - 1)
    messages = [_request(VALUE[:500], True), _request(VALUE[500:], True), _request(b"")]
    status, answer, calls = await _put(server, messages)
    assert status == 413
    assert orjson.loads(answer)["code"] == "too_large"
    assert calls == 2  # refused as soon as it passed the limit
    assert await storage.get_item("item") == "kept"


async def test_a_client_gone_before_the_end_of_its_body_is_400_and_stores_nothing() -> None:
    storage = create_storage()
    await storage.set_item("item", "kept")
    status, answer, _ = await _put(StorageServer(storage), [_request(VALUE[:500], True)])
    assert status == 400
    assert b"disconnected" in answer
    assert await storage.get_item("item") == "kept"


async def test_a_body_over_the_limit_in_its_only_message_is_413_and_stores_nothing() -> None:
    storage = create_storage()
    await storage.set_item("item", "kept")
    server = StorageServer(storage, max_body=len(VALUE) - 1)
    status, answer, calls = await _put(server, [_request(VALUE)])  # no Content-Length
    assert status == 413
    assert orjson.loads(answer)["code"] == "too_large"
    assert calls == 1
    assert await storage.get_item("item") == "kept"


async def test_a_client_gone_before_its_first_body_message_is_400_and_stores_nothing() -> None:
    storage = create_storage()
    await storage.set_item("item", "kept")
    status, answer, calls = await _put(StorageServer(storage), [])
    assert status == 400
    assert b"disconnected" in answer
    assert calls == 1
    assert await storage.get_item("item") == "kept"
