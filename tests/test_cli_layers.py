"""Layers through the command line: URL options, ``rotate``, ``keygen`` and served metrics."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import httpx
import pytest

from storage import create_storage
from storage._cli_parser import parser as _parser
from storage.cli import main
from storage.layers import generate_key
from storage.serve import build


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/store.db"


def test_keygen_prints_a_key_the_encrypt_layer_takes(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, db: str
) -> None:
    assert main(["keygen"]) == 0
    key = capsys.readouterr().out.strip()
    monkeypatch.setenv("CLI_KEYS", key)
    assert main(["set", f"{db}?encrypt_keys_env=CLI_KEYS", "secret", "hush"]) == 0
    assert main(["get", f"{db}?encrypt_keys_env=CLI_KEYS", "secret"]) == 0
    assert capsys.readouterr().out == "hush\n"
    at_rest = asyncio.run(_raw(db, "secret"))
    assert at_rest is not None
    assert b"hush" not in at_rest


async def _raw(url: str, key: str) -> bytes | None:
    async with create_storage(url) as storage:
        return await storage.get_item_raw(key)


async def _write_docs(url: str) -> None:
    async with create_storage(url) as storage:
        await storage.set_items({f"doc:{n}": {"n": n} for n in range(30)})


async def _read(url: str, key: str) -> object:
    async with create_storage(url) as storage:
        return await storage.get_item(key)


def test_rotate_rewrites_old_values_under_the_newest_key(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, db: str
) -> None:
    old, new = generate_key(), generate_key()
    monkeypatch.setenv("CLI_KEYS", old)
    asyncio.run(_write_docs(f"{db}?encrypt_keys_env=CLI_KEYS"))
    before = asyncio.run(_raw(db, "doc:0"))
    monkeypatch.setenv("CLI_KEYS", f"{new},{old}")
    assert main(["rotate", db, "doc", "--keys-env", "CLI_KEYS", "--no-progress"]) == 0
    assert "re-encrypted 30 values" in capsys.readouterr().out
    assert asyncio.run(_raw(db, "doc:0")) != before
    monkeypatch.setenv("CLI_KEYS", new)  # the old key is gone: every value must still read
    assert asyncio.run(_read(f"{db}?encrypt_keys_env=CLI_KEYS", "doc:7")) == {"n": 7}


def _serve_args(*argv: str) -> argparse.Namespace:
    return _parser().parse_args(["serve", *argv])


async def test_metrics_are_served_to_their_token_only(db: str) -> None:
    app, storage = build(
        _serve_args("--driver", db, "--mount", "cache=memory://", "--metrics-token", "m3trics")
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        assert (await http.put("/cache/k", content=b"1")).status_code == 200
        assert (await http.put("/root-key", content=b"1")).status_code == 200
        assert (await http.get("/cache/k")).status_code == 200
        assert (await http.get("/?metrics")).status_code == 401
        wrong = {"authorization": "Bearer nope"}
        assert (await http.get("/?metrics", headers=wrong)).status_code == 401
        good = {"authorization": "Bearer m3trics"}
        answer = await http.get("/?metrics", headers=good)
    await storage.dispose()
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = answer.text
    assert 'mount="cache:"' in text
    assert 'mount="/"' in text
    assert 'operation="set_item"' in text
    assert "# TYPE unistorage_operations_total counter" in text or "_total" in text


async def test_without_a_metrics_token_there_is_no_metrics_route(db: str) -> None:
    app, storage = build(_serve_args("--driver", db))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        assert (await http.get("/?metrics")).status_code == 404
    await storage.dispose()


def test_a_mount_at_the_root_points_to_driver(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--mount", "=memory://"]) == 2
    assert "--driver" in capsys.readouterr().err
