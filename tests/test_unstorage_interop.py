"""unstorage itself (npm, on node) against unistorage, for unstorage 1.17 and 2.0 (beta): its
http driver uses our server unchanged, and our http driver uses its storage server.

Needs ``npm install --prefix tests/node`` (unstorage 2 is the npm alias ``unstorage2``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from drivers.http import HttpDriver
from storage import DriverError, create_storage
from tests.fixtures.http import ServerThread
from tests.servers import free_port

NODE_DIR = Path(__file__).parent / "node"
SCRIPT = NODE_DIR / "interop.mjs"
PACKAGES = {1: "unstorage", 2: "unstorage2"}


@pytest.fixture(scope="module")
def node() -> str:
    binary = shutil.which("node")
    if binary is None:
        pytest.fail("node is not installed; the unstorage interop tests need node >= 18")
    for package in PACKAGES.values():
        if not (NODE_DIR / "node_modules" / package / "package.json").exists():
            pytest.fail(f"{package} is not installed; run: npm install --prefix {NODE_DIR}")
    return binary


@pytest.fixture(scope="module", params=sorted(PACKAGES), ids=lambda major: f"unstorage{major}")
def major(request: pytest.FixtureRequest) -> int:
    """The major version of unstorage a test runs against."""
    value: int = request.param
    return value


def _env(major: int) -> dict[str, str]:
    return {**os.environ, "UNSTORAGE_MAJOR": str(major)}


def _client(
    node: str, major: int, url: str, token: str | None = None
) -> subprocess.CompletedProcess[str]:
    command = [node, str(SCRIPT), "client", url, *([token] if token else [])]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=60, check=False, env=_env(major)
    )


async def test_unstorages_http_driver_uses_our_server_unchanged(node: str, major: int) -> None:
    with ServerThread(tokens=["tok"]) as server:
        async with create_storage(HttpDriver(base=server.url, token="tok")) as storage:
            await storage.set_item("py:str", "from python")
            await storage.set_item("py:obj", {"a": 1, "list": [1, "two", None]})
            await storage.set_item_raw("py:bin", bytes([0, 1, 2, 254, 255]))

            result = await asyncio.to_thread(_client, node, major, server.url, "tok")
            assert result.returncode == 0, result.stderr
            report = orjson.loads(result.stdout)
            assert report["ok"] is True
            assert report["major"] == major
            assert len(report["checks"]) == 16

            # What unstorage wrote reads back in Python as the same values.
            assert await storage.get_item("node:str") == "hello from node"
            assert await storage.get_item("node:obj") == {"n": 42, "nested": {"ok": True}}
            assert await storage.get_item("node:num") == 42
            assert await storage.get_item_raw("node:bin") == bytes([9, 8, 7, 0, 255])
            assert await storage.get_item("node:odd key:été") == "odd"
            assert 0 < (await storage.get_meta("node:ttl"))["ttl"] <= 60
            assert await storage.get_keys("node:dir") == []


async def test_unstorage_without_the_token_is_refused(node: str, major: int) -> None:
    with ServerThread(tokens=["tok"]) as server:
        result = await asyncio.to_thread(_client, node, major, server.url)
    assert result.returncode == 1
    assert "401" in result.stderr


@pytest.fixture(scope="module")
def unstorage_server(node: str, major: int) -> Iterator[str]:
    """unstorage's own storage server (over its memory driver) of version ``major``."""
    port = free_port()
    process = subprocess.Popen(
        [node, str(SCRIPT), "serve", str(port)], stdout=subprocess.PIPE, text=True, env=_env(major)
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "listening"
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


async def test_our_http_driver_uses_unstorages_own_server(unstorage_server: str) -> None:
    async with create_storage(unstorage_server) as storage:
        await storage.set_item("a:str", "text")
        await storage.set_item("a:obj", {"when": {1, 2}, "n": 10**30})
        await storage.set_item_raw("a:bin", b"\x00\xff")
        assert await storage.get_item("a:str") == "text"
        assert await storage.get_item("a:obj") == {"when": {1, 2}, "n": 10**30}
        assert await storage.get_item_raw("a:bin") == b"\x00\xff"
        assert await storage.has_item("a:str") is True
        assert await storage.get_item("a:absent") is None
        # unstorage's server has no batch route: batches fall back to one request per key.
        await storage.set_items({f"b:{i}": i for i in range(5)})
        assert await storage.get_items(["b:0", "b:4", "b:9"]) == {"b:0": 0, "b:4": 4, "b:9": None}
        assert sorted(await storage.get_keys("a")) == ["a:bin", "a:obj", "a:str"]
        await storage.remove_item("a:str")
        assert await storage.has_item("a:str") is False
        # (unstorage's server clears a base only when a mount sits there, so clear the root.)
        await storage.clear()
        assert await storage.get_keys() == []


async def test_conditional_writes_need_a_server_that_speaks_them(unstorage_server: str) -> None:
    async with create_storage(unstorage_server) as storage:
        await storage.set_item("k", 1, if_none_match=True)
        # unstorage's server ignores If-None-Match: the write goes through, which is why
        # conditional writes are only safe against a unistorage server.
        await storage.set_item("k", 2, if_none_match=True)
        assert await storage.get_item("k") == 2
        with pytest.raises(DriverError):
            await create_storage("http://127.0.0.1:9/?timeout=1").get_item("k")
