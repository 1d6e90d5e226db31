"""FastAPI: the typed session dependency and the lifespan that owns the Storage."""

# No `from __future__ import annotations`: FastAPI reads these handlers' annotations at runtime.
import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any, TypedDict

import httpx
import pytest
from fastapi import Depends, FastAPI, Request

from drivers.memory import MemoryDriver
from sessions import Session, SessionMiddleware, Sessions
from sessions.fastapi import session_dependency, storage_lifespan
from storage import create_storage


class Visits(TypedDict, total=False):
    visits: int


class DisposableMemory(MemoryDriver):
    """The memory driver, remembering that it was disposed."""

    disposed = False

    async def dispose(self) -> None:
        self.disposed = True
        await super().dispose()


@pytest.fixture
def driver() -> DisposableMemory:
    return DisposableMemory()


@pytest.fixture
def app(driver: DisposableMemory) -> FastAPI:
    storage = create_storage(driver)
    sessions: Sessions[Visits] = Sessions(storage)
    VisitSession = Annotated[Session[Visits], Depends(session_dependency(sessions))]
    app = FastAPI(lifespan=storage_lifespan(storage))
    app.add_middleware(SessionMiddleware, sessions=sessions)

    @app.post("/visit")
    async def visit(session: VisitSession) -> dict[str, int]:
        visits = (await session.get("visits") or 0) + 1
        await session.set("visits", visits)
        return {"visits": visits}

    @app.get("/static")
    async def static() -> dict[str, Any]:
        return {}

    return app


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as http:
            yield http


async def test_the_dependency_gives_the_session_and_the_middleware_commits_it(
    client: httpx.AsyncClient,
) -> None:
    first = await client.post("/visit")
    assert first.json() == {"visits": 1}
    assert first.headers["set-cookie"].startswith("session=")
    second = await client.post("/visit")
    assert second.json() == {"visits": 2}
    assert "set-cookie" not in second.headers


async def test_a_handler_without_the_session_sets_no_cookie(client: httpx.AsyncClient) -> None:
    assert "set-cookie" not in (await client.get("/static")).headers


async def test_the_lifespan_disposes_the_storage(app: FastAPI, driver: DisposableMemory) -> None:
    async with app.router.lifespan_context(app):
        assert not driver.disposed
    assert driver.disposed


async def test_concurrent_requests_each_get_their_own_session(app: FastAPI) -> None:
    transport = httpx.ASGITransport(app=app)

    async def visit(cookie: str | None) -> httpx.Response:
        # A client of its own per request: no cookie jar shared between them.
        headers = {"cookie": f"session={cookie}"} if cookie else {}
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as http:
            return await http.post("/visit", headers=headers)

    async with app.router.lifespan_context(app):
        cookie = (await visit(None)).cookies["session"]
        answers = await asyncio.gather(*(visit(cookie if i % 2 else None) for i in range(8)))
    known, fresh = answers[1::2], answers[::2]
    for answer in known:  # the same session throughout: no new cookie, its count went on
        assert 2 <= answer.json()["visits"] <= 5
        assert "set-cookie" not in answer.headers
    for answer in fresh:  # each a session of its own, none seeing another's count
        assert answer.json() == {"visits": 1}
    assert len({answer.cookies["session"] for answer in fresh} | {cookie}) == 5


async def test_the_dependency_without_the_middleware_is_a_clear_error() -> None:
    sessions: Sessions[Visits] = Sessions(create_storage())
    app = FastAPI()

    @app.get("/")
    async def home(
        session: Annotated[Session[Visits], Depends(session_dependency(sessions))],
    ) -> dict[str, Any]:
        return {}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as http:
        with pytest.raises(RuntimeError, match="SessionMiddleware"):
            await http.get("/")


async def test_nested_apps_each_get_the_session_of_their_own_sessions() -> None:
    storage = create_storage()
    outer: Sessions[Visits] = Sessions(storage, namespace="outer", cookie_name="outer")
    inner: Sessions[Visits] = Sessions(storage, namespace="inner", cookie_name="inner")
    sub = FastAPI()
    sub.add_middleware(SessionMiddleware, sessions=inner)
    app = FastAPI()
    app.add_middleware(SessionMiddleware, sessions=outer)
    app.mount("/sub", sub)
    seen: dict[str, Session[Visits]] = {}

    @sub.get("/")
    async def both(
        request: Request,
        mine: Annotated[Session[Visits], Depends(session_dependency(inner))],
        theirs: Annotated[Session[Visits], Depends(session_dependency(outer))],
    ) -> dict[str, Any]:
        seen.update(inner=mine, outer=theirs, scope=request.scope["session"])
        await mine.set("visits", 1)
        return {}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as http:
        answer = await http.get("/sub/")
    assert seen["inner"] is seen["scope"]  # the innermost middleware's, as `of` finds it
    assert seen["outer"] is not seen["inner"]
    assert answer.cookies.get("inner")
    assert not answer.cookies.get("outer")


async def test_current_is_an_error_outside_a_request_and_after_one() -> None:
    sessions: Sessions[Visits] = Sessions(create_storage())
    with pytest.raises(RuntimeError, match="SessionMiddleware"):
        sessions.current()
    inside: list[Session[Visits]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        inside.append(sessions.current())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    transport = httpx.ASGITransport(app=SessionMiddleware(app, sessions))
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as http:
        await http.get("/")
    assert len(inside) == 1
    assert isinstance(inside[0], Session)
    with pytest.raises(RuntimeError, match="SessionMiddleware"):
        sessions.current()  # the request's session does not outlive it


async def test_a_websocket_handler_finds_its_session_through_current() -> None:
    sessions: Sessions[Visits] = Sessions(create_storage())
    found: list[bool] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        found.append(sessions.current() is scope["session"])

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: Any) -> None:
        pass

    scope = {"type": "websocket", "path": "/ws", "headers": [], "query_string": b""}
    await SessionMiddleware(app, sessions)(scope, receive, send)
    assert found == [True]
    with pytest.raises(RuntimeError, match="SessionMiddleware"):
        sessions.current()
