"""Hostile HTTP against the server over fs and sqlite: never a 500, nothing outside touched.

Hypothesis sends raw ASGI requests (any method, decoded paths with dot segments, NUL, percent
signs and non-ASCII, any query, hostile headers, any body) straight to the app, as a server
would hand them over. After every request: no 500, every error carries a stable code, the
files beside the store are exactly as they were, and every key the store lists can be read
back. ``UNISTORAGE_FUZZ_EXAMPLES=5000`` tries more inputs.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, MutableMapping
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.fs import FsDriver
from drivers.sqlite import SqliteDriver
from storage import Driver, create_storage
from storage.server import StorageServer

_EXAMPLES = int(os.environ.get("UNISTORAGE_FUZZ_EXAMPLES", "300"))

_SEGMENT = st.one_of(
    st.sampled_from(["..", ".", "", "a", "b", "link", "%2e%2e", "%00", "~", ".hidden"]),
    st.sampled_from(["con", "a" * 300, "é", "\u202e", "\x00", "\x7f", "\n", "*", "[", "?"]),
    st.text(max_size=6),
)
PATHS = st.lists(_SEGMENT, max_size=5).map(lambda parts: "/" + "/".join(parts)) | st.sampled_from(
    [
        "/",
        "//",
        "/../../etc/passwd",
        "/a/../../outside",
        "/a\\..\\..\\x",
        "/link/secret",
        "/link/",
        "/link/dir/file",
        "/link/dir/",
        "/link/new",
        "/file-link",
        "/file-link/",
        "/seed",
    ]
)
METHODS = st.sampled_from(["GET", "HEAD", "PUT", "DELETE", "POST", "PATCH", "OPTIONS", "G E"])
QUERIES = st.sampled_from(
    [b"", b"meta", b"batch", b"max_depth=1", b"max_depth=%C2%B2", b"max_depth=-1", b"a=%ff"]
) | st.binary(max_size=12)
_HEADER_NAMES = st.sampled_from(
    [
        b"content-type",
        b"x-ttl",
        b"if-match",
        b"if-none-match",
        b"accept",
        b"content-length",
        b"authorization",
    ]
)
_HEADER_VALUES = st.sampled_from(
    [
        b"application/octet-stream",
        b"Application/JSON",
        b"*",
        b'"x", W/"y"',
        b"-1",
        b"nan",
        b"1e400",
        b"99999999999999999999",
        b"\xff\xfe",
        b"",
    ]
) | st.binary(max_size=10)
HEADERS = st.lists(st.tuples(_HEADER_NAMES, _HEADER_VALUES), max_size=4)
BODIES = st.one_of(
    st.binary(max_size=64),
    st.sampled_from(
        [
            b'{"get": "abc"}',
            b'{"remove": "ab"}',
            b'{"set": [["k", "aGk="]], "ttl": -1}',
            b'{"set": [["../x", "aGk="]]}',
            b'{"$tagged": 1, "value": {"$t": "bytes", "v": "***"}}',
            b"[" * 5000,
            b'{"get": [1, 2]}',
        ]
    ),
)


async def _call(
    app: StorageServer,
    method: str,
    path: str,
    query: bytes,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
) -> tuple[int, bytes]:
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "path": path,
        "raw_path": path.encode("utf-8", "surrogatepass"),
        "root_path": "",
        "query_string": query,
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    chunks = [body[: len(body) // 2], body[len(body) // 2 :]]
    status = 0
    answer: list[bytes] = []

    async def receive() -> dict[str, Any]:
        if chunks:
            chunk = chunks.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            answer.append(message.get("body", b""))

    await asyncio.wait_for(app(scope, receive, send), timeout=30)
    return status, b"".join(answer)


def _tree(root: Path) -> dict[str, tuple[bytes | str, int]]:
    """Every entry under ``root`` with its contents (or link target) and mode."""
    found: dict[str, tuple[bytes | str, int]] = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        if path.is_symlink():
            found[str(path)] = (os.readlink(path), info.st_mode)
        elif path.is_file():
            found[str(path)] = (path.read_bytes(), info.st_mode)
        else:
            found[str(path)] = (b"", info.st_mode)
    return found


@pytest.fixture(params=["fs", "sqlite"])
async def arena(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[StorageServer, Callable[[], dict[str, tuple[bytes | str, int]]]]]:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"do not touch")
    (outside / "dir").mkdir()
    (outside / "dir" / "file").write_bytes(b"nor this")
    store = tmp_path / "store"
    driver: Driver
    if request.param == "fs":
        driver = FsDriver(store)
        await driver.set_item("seed", b"1")
        # Links planted inside the store, pointing outside it.
        (store / "link").symlink_to(outside, target_is_directory=True)
        (store / "file-link").symlink_to(outside / "secret")
    else:
        store.mkdir()
        driver = SqliteDriver(store / "db.sqlite")
    storage = create_storage(driver)
    app = StorageServer(storage)
    try:
        yield app, lambda: _tree(outside)
    finally:
        await storage.dispose()


@settings(
    max_examples=_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(method=METHODS, path=PATHS, query=QUERIES, headers=HEADERS, body=BODIES)
async def test_hostile_requests_never_fail_the_server_nor_touch_anything_outside(
    arena: tuple[StorageServer, Callable[[], dict[str, tuple[bytes | str, int]]]],
    method: str,
    path: str,
    query: bytes,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
) -> None:
    app, outside = arena
    before = outside()
    status, answer = await _call(app, method, path, query, headers, body)
    assert status != 0
    assert status != 500, answer[:200]
    if status >= 400 and method != "HEAD":
        error = orjson.loads(answer)
        assert error["code"] not in ("", None, "internal"), error
    assert outside() == before
    # The store stays consistent: every key it lists reads back.
    keys = await app.storage.get_keys()
    values = await app.storage.get_items_raw(keys)
    assert all(value is not None for value in values.values()), values
