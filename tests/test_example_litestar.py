"""The Litestar cart example over HTTP: our sessions and Litestar's cache on one Storage."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, cast

import httpx
import pytest

from examples.litestar_cart import create_app
from storage import Storage, create_storage


@pytest.fixture
def store() -> Storage:
    return create_storage()


@pytest.fixture
async def client(store: Storage) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=cast(Any, create_app(store)))  # Litestar's own ASGI types
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as http:
        yield http


async def test_the_litestar_cart_over_http(client: httpx.AsyncClient, store: Storage) -> None:
    assert (await client.get("/cart")).json() == {"cart": [], "user": None, "flashes": []}
    assert "session" not in client.cookies
    await client.post("/cart/apple")
    await client.post("/cart/pear")
    guest = client.cookies["session"]
    page = (await client.get("/cart")).json()
    assert page == {
        "cart": ["apple", "pear"],
        "user": None,
        "flashes": ["Added apple", "Added pear"],
    }
    await client.post("/login/alice")
    assert client.cookies["session"] != guest
    assert (await client.get("/cart")).json() == {
        "cart": ["apple", "pear"],
        "user": "alice",
        "flashes": [],
    }
    await client.post("/logout")
    assert "session" not in client.cookies
    assert (await client.get("/catalog")).json() == ["apple", "pear", "plum"]
    assert any(key.startswith("litestar:response_cache:") for key in await store.keys())
