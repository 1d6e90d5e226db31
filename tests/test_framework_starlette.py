"""Starlette: the typed session through `Sessions.of`, and loud errors for synchronous use."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from sessions import SessionMiddleware, Sessions, SessionUsageError
from storage import create_storage


async def sync_get(request: Request) -> Response:
    # What a Starlette user writes out of habit: `request.session` is typed as a dict.
    user = request.session.get("user") or "guest"
    return PlainTextResponse(user)


async def sync_item(request: Request) -> Response:
    request.session["user"] = "alice"
    return PlainTextResponse("set")


async def typed(request: Request) -> Response:
    session = request.app.state.sessions.of(request)
    await session.set("user", "alice")
    return PlainTextResponse(await session.get("user"))


def app(sessions: Sessions[Any] | None) -> Starlette:
    routes = [Route("/get", sync_get), Route("/item", sync_item), Route("/typed", typed)]
    middleware = [] if sessions is None else [Middleware(SessionMiddleware, sessions=sessions)]
    built = Starlette(routes=routes, middleware=middleware)
    built.state.sessions = sessions or Sessions(create_storage())
    return built


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app(Sessions(create_storage())))
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as http:
        yield http


async def test_a_session_read_without_await_raises_a_clear_error(
    client: httpx.AsyncClient,
) -> None:
    with pytest.raises(SessionUsageError, match=r"await session\.get"):
        await client.get("/get")


async def test_dict_style_use_of_the_session_raises_a_clear_error(
    client: httpx.AsyncClient,
) -> None:
    with pytest.raises(SessionUsageError, match=r"await session\.set"):
        await client.get("/item")


async def test_sessions_of_gives_the_typed_session(client: httpx.AsyncClient) -> None:
    response = await client.get("/typed")
    assert response.text == "alice"
    assert response.headers["set-cookie"].startswith("session=")


async def test_sessions_of_without_the_middleware_names_the_fix() -> None:
    transport = httpx.ASGITransport(app=app(None))
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as http:
        with pytest.raises(RuntimeError, match="SessionMiddleware"):
            await http.get("/typed")
