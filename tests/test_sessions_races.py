"""Regenerate races over HTTP: requests still carrying the old ID must not log the user out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from sessions import SessionMiddleware, Sessions
from storage import create_storage


@pytest.fixture
def sessions() -> Sessions[Any]:
    return Sessions(create_storage())


class Gate:
    """Holds the slow request between its read and its write until the test opens it."""

    def __init__(self) -> None:
        self.read = asyncio.Event()
        self.go = asyncio.Event()


@pytest.fixture
def gate() -> Gate:
    return Gate()


@pytest.fixture
async def client(sessions: Sessions[Any], gate: Gate) -> AsyncIterator[httpx.AsyncClient]:
    async def slow_add(request: Request) -> Response:
        session = sessions.of(request)
        if request.query_params.get("late") is None:
            cart = await session.get("cart", [])
            gate.read.set()
            await gate.go.wait()
        else:
            gate.read.set()
            await gate.go.wait()
            cart = await session.get("cart", [])
        await session.set("cart", [*cart, "pear"])
        return PlainTextResponse("added")

    async def add(request: Request) -> Response:
        await sessions.of(request).set("cart", ["apple"])
        return PlainTextResponse("added")

    async def login(request: Request) -> Response:
        await sessions.of(request).login("alice")
        return PlainTextResponse("in")

    async def whoami(request: Request) -> Response:
        return PlainTextResponse(sessions.of(request).user_id or "guest")

    async def who(request: Request) -> Response:
        await sessions.of(request).ensure_loaded()
        return await whoami(request)

    app = Starlette(
        routes=[
            Route("/add", add, methods=["POST"]),
            Route("/slow-add", slow_add, methods=["POST"]),
            Route("/login", login, methods=["POST"]),
            Route("/who", who),
        ],
        middleware=[Middleware(SessionMiddleware, sessions=sessions)],
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as http:
        yield http


@pytest.mark.parametrize("late", [False, True], ids=["read-before-login", "read-after-login"])
async def test_a_request_with_the_old_id_finishing_after_login_keeps_the_user_logged_in(
    client: httpx.AsyncClient, gate: Gate, late: bool
) -> None:
    await client.post("/add")
    old = client.cookies["session"]
    params = {"late": "1"} if late else {}
    slow = asyncio.create_task(
        client.post("/slow-add", params=params, headers={"cookie": f"session={old}"})
    )
    if not late:
        await gate.read.wait()
    login = await client.post("/login")
    assert login.cookies["session"] != old
    gate.go.set()
    response = await slow
    assert response.status_code == 200
    # Before the fix: `Set-Cookie: session=; Max-Age=0`, which logged the user out.
    assert response.headers.get_list("set-cookie") == []
    assert (await client.get("/who")).text == "alice"
