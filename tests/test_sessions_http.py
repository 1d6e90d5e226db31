"""Sessions through the ASGI middleware: a real Starlette app over httpx, and a raw ASGI app."""

from __future__ import annotations

from collections.abc import AsyncIterator, MutableMapping
from typing import Any, cast

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from sessions import Session, SessionMiddleware, Sessions
from sessions.ids import new_id
from storage import Storage, create_storage
from tests.test_sessions import CountingDriver, DownDriver

Scope = MutableMapping[str, Any]


def session_of(request: Request) -> Session[dict[str, Any]]:
    return cast("Session[dict[str, Any]]", request.scope["session"])


async def cart(request: Request) -> Response:
    items = await session_of(request).get("cart", [])
    return JSONResponse({"count": len(items), "user": await session_of(request).get("user")})


async def add(request: Request) -> Response:
    session = session_of(request)
    items = await session.get("cart", [])
    await session.set("cart", [*items, request.query_params["item"]])
    return PlainTextResponse("added", headers={"cache-control": "public, max-age=60"})


async def login(request: Request) -> Response:
    session = session_of(request)
    await session.regenerate()
    await session.set("user", request.query_params["user"])
    return PlainTextResponse("in")


async def logout(request: Request) -> Response:
    await session_of(request).destroy()
    return PlainTextResponse("out")


async def untouched(request: Request) -> Response:
    return PlainTextResponse("static", headers={"cache-control": "public, max-age=60"})


async def unstorable(request: Request) -> Response:
    await session_of(request).set("callback", print)
    return PlainTextResponse("never")


def build_app(sessions: Sessions[Any]) -> Starlette:
    return Starlette(
        routes=[
            Route("/cart", cart),
            Route("/add", add, methods=["POST"]),
            Route("/login", login, methods=["POST"]),
            Route("/logout", logout, methods=["POST"]),
            Route("/static", untouched),
            Route("/unstorable", unstorable, methods=["POST"]),
        ],
        middleware=[Middleware(SessionMiddleware, sessions=sessions)],
    )


@pytest.fixture
def counting() -> CountingDriver:
    return CountingDriver()


@pytest.fixture
def store(counting: CountingDriver) -> Storage:
    return create_storage(counting)


@pytest.fixture
async def client(store: Storage) -> AsyncIterator[httpx.AsyncClient]:
    app = build_app(Sessions(store))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    # https, so that the client's cookie jar sends the Secure cookie back.
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as http:
        yield http


def set_cookies(response: httpx.Response) -> list[str]:
    return response.headers.get_list("set-cookie")


async def test_a_first_visit_that_does_not_use_the_session_sets_no_cookie(
    client: httpx.AsyncClient, counting: CountingDriver
) -> None:
    response = await client.get("/static")
    assert response.text == "static"
    assert set_cookies(response) == []
    assert response.headers["cache-control"] == "public, max-age=60"
    assert counting.total == 0


async def test_reading_without_a_cookie_does_no_io_and_sets_no_cookie(
    client: httpx.AsyncClient, counting: CountingDriver
) -> None:
    response = await client.get("/cart")
    assert response.json() == {"count": 0, "user": None}
    assert set_cookies(response) == []
    assert counting.total == 0


async def test_the_first_write_sets_a_safe_cookie_and_no_store(client: httpx.AsyncClient) -> None:
    response = await client.post("/add", params={"item": "apple"})
    (cookie,) = set_cookies(response)
    assert cookie.endswith("; Path=/; HttpOnly; Secure; SameSite=Lax")
    assert response.headers.get_list("cache-control") == ["no-store"]
    assert (await client.get("/cart")).json()["count"] == 1


async def test_later_writes_and_reads_send_no_new_cookie(
    client: httpx.AsyncClient, counting: CountingDriver
) -> None:
    await client.post("/add", params={"item": "apple"})
    second = await client.post("/add", params={"item": "pear"})
    assert set_cookies(second) == []
    counting.calls.clear()
    read = await client.get("/cart")
    assert read.json()["count"] == 2
    assert set_cookies(read) == []
    assert counting.calls["set_item"] + counting.calls["set_item_conditional"] == 0


async def test_login_regenerates_the_id_and_keeps_the_cart(
    client: httpx.AsyncClient, store: Storage
) -> None:
    await client.post("/add", params={"item": "apple"})
    before = client.cookies["session"]
    response = await client.post("/login", params={"user": "alice"})
    after = client.cookies["session"]
    assert after != before
    (cookie,) = set_cookies(response)
    assert cookie == f"session={after}; Path=/; HttpOnly; Secure; SameSite=Lax"
    assert (await client.get("/cart")).json() == {"count": 1, "user": "alice"}
    # The new record, and the marker of the replaced ID (no data, gone within a minute).
    assert len(await store.keys()) == 2


async def test_logout_destroys_the_data_and_expires_the_cookie(
    client: httpx.AsyncClient, store: Storage
) -> None:
    await client.post("/login", params={"user": "alice"})
    stolen = client.cookies["session"]
    response = await client.post("/logout")
    (cookie,) = set_cookies(response)
    assert cookie.startswith("session=; Max-Age=0;")
    assert "Path=/" in cookie
    assert response.headers["cache-control"] == "no-store"
    assert await store.keys() == []
    client.cookies.clear()
    replay = await client.get("/cart", headers={"cookie": f"session={stolen}"})
    assert replay.json() == {"count": 0, "user": None}
    assert set_cookies(replay)[0].startswith("session=; Max-Age=0;")


async def test_a_replayed_unknown_cookie_gets_a_fresh_id(client: httpx.AsyncClient) -> None:
    planted = new_id()
    response = await client.post(
        "/add", params={"item": "apple"}, headers={"cookie": f"session={planted}"}
    )
    (cookie,) = set_cookies(response)
    assert cookie.startswith("session=")
    assert planted not in cookie


async def test_an_unstorable_value_is_an_error_response(client: httpx.AsyncClient) -> None:
    response = await client.post("/unstorable")
    assert response.status_code == 500
    assert set_cookies(response) == []


async def test_a_backend_that_is_down_gives_an_error_response_not_a_logout() -> None:
    app = build_app(Sessions(create_storage(DownDriver())))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as http:
        response = await http.get("/cart", headers={"cookie": f"session={new_id()}"})
    assert response.status_code == 500
    assert set_cookies(response) == []


# -- raw ASGI -------------------------------------------------------------------------------


async def raw_call(
    app: Any, headers: list[tuple[bytes, bytes]]
) -> tuple[int, list[tuple[bytes, bytes]]]:
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "https",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 443),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = sent[0]
    return start["status"], list(start.get("headers", []))


def raw_app(action: str) -> Any:
    """A bare ASGI app that uses the session from the scope, without any framework."""

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        session: Session[dict[str, Any]] = scope["session"]
        if action == "visit":
            await session.set("visits", await session.get("visits", 0) + 1)
        elif action == "read":
            await session.get("visits")
        body = str(session.id).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/plain")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app


async def test_raw_asgi_app_gets_the_session_in_scope_and_a_cookie(store: Storage) -> None:
    sessions: Sessions[Any] = Sessions(store, cookie_name="__Host-sid")
    status, headers = await raw_call(SessionMiddleware(raw_app("visit"), sessions), [])
    assert status == 200
    cookies = [value.decode() for name, value in headers if name == b"set-cookie"]
    assert len(cookies) == 1
    assert cookies[0].startswith("__Host-sid=")
    session_id = cookies[0].split(";")[0].split("=", 1)[1]
    again = await sessions.load(session_id)
    assert await again.get("visits") == 1


@pytest.mark.parametrize(
    "value",
    [b"../x", b"a" * 5000, "\u00e9t\u00e9".encode(), b"%0d%0aSet-Cookie:x", b""],
)
async def test_raw_malformed_cookies_never_reach_storage(
    store: Storage, counting: CountingDriver, value: bytes
) -> None:
    sessions: Sessions[Any] = Sessions(store)
    cookie = b"other=1; session=" + value
    status, headers = await raw_call(
        SessionMiddleware(raw_app("read"), sessions), [(b"cookie", cookie)]
    )
    assert status == 200
    assert counting.total == 0
    assert not any(name == b"set-cookie" for name, _ in headers)


async def test_raw_websocket_scopes_get_a_session_and_other_scopes_pass_through(
    store: Storage,
) -> None:
    seen: list[Any] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        seen.append(scope.get("session"))

    middleware = SessionMiddleware(app, Sessions(store))
    await middleware({"type": "websocket", "headers": []}, None, None)  # type: ignore[arg-type]
    await middleware({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    assert isinstance(seen[0], Session)
    assert seen[1] is None


async def test_a_websocket_handler_reads_and_commits_the_session_explicitly(store: Storage) -> None:
    sessions: Sessions[Any] = Sessions(store)
    existing = sessions.from_cookie(None)
    await existing.set("user", "alice")
    await sessions.commit(existing)
    seen: list[Any] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        session: Session[dict[str, Any]] = scope["session"]
        seen.append(await session.get("user"))
        await session.set("channel", "news")
        assert await sessions.commit(session) == []  # same ID: no cookie to send

    scope = {"type": "websocket", "headers": [(b"cookie", f"session={existing.id}".encode())]}
    await SessionMiddleware(app, sessions)(scope, None, None)  # type: ignore[arg-type]
    assert seen == ["alice"]
    assert await (await sessions.load(existing.id or "")).items() == {
        "user": "alice",
        "channel": "news",
    }
