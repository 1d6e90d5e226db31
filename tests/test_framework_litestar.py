"""Litestar: our drivers as Litestar stores (its response cache, rate limiting and its own
server-side sessions on them), and our sessions as a Litestar plugin."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any, cast

import httpx
import pytest
from litestar import Litestar, Request, get, post
from litestar.di import NamedDependency
from litestar.middleware.rate_limit import RateLimitConfig
from litestar.middleware.session.server_side import ServerSideSessionConfig
from litestar.stores.registry import StoreRegistry

from sessions import Session, Sessions, SessionUsageError
from sessions.litestar import SessionPlugin, UnistorageStore
from storage import Driver, Storage, create_storage

ODD_KEYS = ["GET/a?b=1", "GET:a", "", "10.0.0.1", "a%2Fb", "é/\\ ü"]


@pytest.mark.capability("stores")
async def test_any_driver_keeps_the_store_contract(storage: Storage) -> None:
    store = UnistorageStore(storage)
    for n, key in enumerate(ODD_KEYS):
        await store.set(key, f"v{n}")
    assert [await store.get(key) for key in ODD_KEYS] == [
        f"v{n}".encode() for n in range(len(ODD_KEYS))
    ]
    assert await store.exists("GET:a")
    await store.delete("GET:a")
    await store.delete("missing")
    assert not await store.exists("GET:a")
    child = store.with_namespace("child")
    await child.set("GET/a?b=1", b"child")
    assert await store.get("GET/a?b=1") == b"v0"  # namespaces are isolated
    await store.delete_all()  # ... and a parent's bulk delete clears its children
    assert await child.get("GET/a?b=1") is None
    assert await store.get("") is None


@pytest.mark.capability("stores")
@pytest.mark.capability("ttl")
async def test_expiry_and_renewal_follow_the_driver_ttl(storage: Storage) -> None:
    assert storage.capabilities("litestar").ttl
    store = UnistorageStore(storage)
    await store.set("short", b"x", expires_in=timedelta(seconds=60))
    await store.set("forever", "y")
    expires = await store.expires_in("short")
    assert expires is not None
    assert 55 <= expires <= 60
    assert await store.get("short", renew_for=600) == b"x"
    assert 590 <= (await store.expires_in("short") or 0) <= 600
    if await store.expires_in("forever") is None:  # (a default-TTL layer gives every key one)
        assert await store.get("forever", renew_for=600) == b"y"
        assert await store.expires_in("forever") is None  # renewing never adds an expiry


# -- Litestar's own features on our stores, over a few kinds of backend ---------------------


@pytest.fixture(params=["memory", "sqlite", "redis"])
def backend(request: pytest.FixtureRequest) -> Storage:
    driver = request.getfixturevalue(f"driver_{request.param}")
    assert isinstance(driver, Driver)
    return create_storage(driver)


def registry(storage: Storage) -> StoreRegistry:
    return StoreRegistry(default_factory=UnistorageStore(storage).with_namespace)


async def client_of(app: Litestar) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=cast(Any, app))  # Litestar's own ASGI types
    return httpx.AsyncClient(transport=transport, base_url="https://testserver")


async def test_litestar_response_caching_runs_on_our_store(backend: Storage) -> None:
    calls: list[int] = []

    @get("/slow", cache=60)
    async def slow() -> dict[str, int]:
        calls.append(1)
        return {"n": len(calls)}

    async with await client_of(Litestar([slow], stores=registry(backend))) as http:
        assert (await http.get("/slow")).json() == {"n": 1}
        assert (await http.get("/slow")).json() == {"n": 1}
    assert calls == [1]
    assert any(key.startswith("litestar:response_cache:") for key in await backend.keys())


async def test_litestar_rate_limiting_runs_on_our_store(backend: Storage) -> None:
    @get("/")
    async def index() -> str:
        return "ok"

    limit = RateLimitConfig(rate_limit=("minute", 2))
    app = Litestar([index], middleware=[limit.middleware], stores=registry(backend))
    async with await client_of(app) as http:
        codes = [(await http.get("/")).status_code for _ in range(3)]
    assert codes == [200, 200, 429]


async def test_litestar_server_side_sessions_run_on_our_store(backend: Storage) -> None:
    @post("/login")
    async def login(request: Request[Any, Any, Any]) -> None:
        request.set_session({"user": "alice"})

    @get("/me")
    async def me(request: Request[Any, Any, Any]) -> dict[str, Any]:
        return dict(request.session)

    config = ServerSideSessionConfig()
    app = Litestar([login, me], middleware=[config.middleware], stores=registry(backend))
    async with await client_of(app) as http:
        await http.post("/login")
        assert (await http.get("/me")).json() == {"user": "alice"}
    assert any(key.startswith("litestar:sessions:") for key in await backend.keys())


# -- our sessions under Litestar --------------------------------------------------------------


@pytest.fixture
async def ours() -> AsyncIterator[httpx.AsyncClient]:
    @post("/visit")
    async def visit(session: NamedDependency[Session[dict[str, int]]]) -> dict[str, int]:
        visits = await session.get("visits", 0) + 1
        await session.set("visits", visits)
        return {"visits": visits}

    @get("/sync")
    async def sync(request: Request[Any, Any, Any]) -> str:
        return str(request.session.get("visits"))

    app = Litestar([visit, sync], plugins=[SessionPlugin(Sessions(create_storage()))], debug=True)
    async with await client_of(app) as http:
        yield http


async def test_our_sessions_run_under_litestar_through_the_plugin(
    ours: httpx.AsyncClient,
) -> None:
    first = await ours.post("/visit")
    assert first.json() == {"visits": 1}
    assert first.headers["set-cookie"].startswith("session=")
    assert (await ours.post("/visit")).json() == {"visits": 2}


async def test_synchronous_use_under_litestar_is_a_clear_error(ours: httpx.AsyncClient) -> None:
    response = await ours.get("/sync")
    assert response.status_code == 500
    assert SessionUsageError.__name__ in response.text
    assert "await session.get" in response.text
