"""FastAPI: the typed session dependency and the lifespan that owns the Storage."""

# No `from __future__ import annotations`: FastAPI reads these handlers' annotations at runtime.
from collections.abc import AsyncIterator
from typing import Annotated, Any, TypedDict

import httpx
import pytest
from fastapi import Depends, FastAPI

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
