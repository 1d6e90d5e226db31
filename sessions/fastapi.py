"""FastAPI: the request's session as a typed dependency, and a lifespan that owns the Storage.

::

    storage = create_storage("redis://localhost")
    sessions: Sessions[CartData] = Sessions(storage)
    app = FastAPI(lifespan=storage_lifespan(storage))
    app.add_middleware(SessionMiddleware, sessions=sessions)
    CartSession = Annotated[Session[CartData], Depends(session_dependency(sessions))]

    @app.post("/cart")
    async def add(session: CartSession) -> dict[str, int]:
        cart = await session.get("cart") or []   # list[str] | None for mypy
        ...

The middleware commits the session and sets its cookie, whatever the handler returns.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import FastAPI

from storage import Storage

from .manager import Sessions
from .session import DataT, Session

__all__ = ["session_dependency", "storage_lifespan"]

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[Any]]


def session_dependency(sessions: Sessions[DataT]) -> Callable[[], Awaitable[Session[DataT]]]:
    """A dependency giving the request's `Session[DataT]` (lazy: no I/O until it is used).

    It takes no ``Request``: the session comes from `Sessions.current`, so each dependency
    gets the session of its own ``sessions`` even where middlewares of several are nested.
    """

    async def session() -> Session[DataT]:
        return sessions.current()

    return session


def storage_lifespan(storage: Storage, inner: Lifespan | None = None) -> Lifespan:
    """A FastAPI lifespan that checks ``storage`` answers at startup and disposes it at
    shutdown, around the app's own ``inner`` lifespan if any."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[Any]:
        async with storage:
            await storage.has_item("session:startup-check")
            if inner is None:
                yield None
            else:
                async with inner(app) as state:
                    yield state

    return lifespan
