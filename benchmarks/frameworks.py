"""The sessions benchmark through real FastAPI and Litestar apps (in process, no network).

Each request carries the cookie of an existing session, reads one counter and writes it back
(or only reads it). Per framework: the same app without sessions (the floor), with ours, and
with the peer a user of that framework would pick, on the same kind of store: starsessions
(FastAPI) over our memory driver through a small `SessionStore` adapter, and Litestar's own
server-side sessions over our memory driver as a Litestar store (`UnistorageStore`). Rounds
alternate (`Bench.rounds`); the ratios are medians of per-round ratios.
"""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations.
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from litestar import Litestar, get
from litestar import Request as LitestarRequest
from litestar.di import NamedDependency
from litestar.middleware.session.server_side import ServerSideSessionConfig
from litestar.stores.registry import StoreRegistry
from starsessions import SessionMiddleware as StarSessionMiddleware
from starsessions import SessionStore, load_session

from drivers.memory import MemoryDriver
from sessions import Session, SessionMiddleware, Sessions
from sessions.fastapi import session_dependency
from sessions.litestar import SessionPlugin, UnistorageStore
from storage import Storage, create_storage

from .harness import Bench, Subject

Scope = MutableMapping[str, Any]
App = Callable[..., Awaitable[None]]
READ_WRITE = "read + write"
READ_ONLY = "read only"


class _StarStore(SessionStore):
    """starsessions' store interface over a unistorage Storage (raw bytes, same driver)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    async def read(self, session_id: str, lifetime: int) -> bytes:
        return await self.storage.get_item_raw(session_id) or b""

    async def write(self, session_id: str, data: bytes, lifetime: int, ttl: int) -> str:
        await self.storage.set_item_raw(session_id, data, ttl=ttl or None)
        return session_id

    async def remove(self, session_id: str) -> None:
        await self.storage.remove_item(session_id)


def _scope(cookie: bytes) -> Scope:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "https",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"bench"), (b"cookie", cookie)],
        "client": ("127.0.0.1", 1),
        "server": ("bench", 443),
    }


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


def _runner(app: Any, cookie: bytes, n: int) -> Callable[[], Awaitable[int]]:
    statuses: list[int] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    async def run() -> int:
        for _ in range(n):
            await app(_scope(cookie), _receive, send)
        if set(statuses) != {200}:
            raise AssertionError(f"unexpected statuses {set(statuses)}")
        statuses.clear()
        return n

    return run


def _fastapi_apps(write: bool, sessions: Sessions[Any], star: Storage) -> tuple[Any, Any, Any]:
    ours_dep = Annotated[Session[Any], Depends(session_dependency(sessions))]
    bare, ours, peer = FastAPI(), FastAPI(), FastAPI()

    @bare.get("/")
    async def bare_home() -> dict[str, int]:
        return {"n": 0}

    @ours.get("/")
    async def ours_home(session: ours_dep) -> dict[str, int]:
        n = await session.get("n", 0)
        if write:
            await session.set("n", n + 1)
        return {"n": n}

    @peer.get("/")
    async def peer_home(request: Request) -> dict[str, int]:
        await load_session(request)
        n = int(request.session.get("n", 0))
        if write:
            request.session["n"] = n + 1
        return {"n": n}

    ours.add_middleware(SessionMiddleware, sessions=sessions)
    peer.add_middleware(StarSessionMiddleware, store=_StarStore(star), lifetime=1800, rolling=True)
    return bare, ours, peer


def _litestar_apps(write: bool, sessions: Sessions[Any], store: Storage) -> tuple[Any, Any, Any]:
    @get("/", sync_to_thread=False)
    def bare_home() -> dict[str, int]:
        return {"n": 0}

    @get("/")
    async def ours_home(session: NamedDependency[Session[Any]]) -> dict[str, int]:
        n = await session.get("n", 0)
        if write:
            await session.set("n", n + 1)
        return {"n": n}

    @get("/", sync_to_thread=False)
    def peer_home(request: LitestarRequest[Any, Any, Any]) -> dict[str, int]:
        n = int(request.session.get("n", 0))
        if write:
            request.set_session({"n": n + 1})
        return {"n": n}

    config = ServerSideSessionConfig(max_age=1800, renew_on_access=True)
    peer = Litestar(
        [peer_home],
        middleware=[config.middleware],
        stores=StoreRegistry(default_factory=UnistorageStore(store).with_namespace),
    )
    ours = Litestar([ours_home], plugins=[SessionPlugin(sessions, dispose=False)])
    return Litestar([bare_home]), ours, peer


async def framework_cases(bench: Bench, n: int) -> None:
    """FastAPI and Litestar, read + write then read only, ours against each peer."""
    sessions: Sessions[Any] = Sessions(create_storage(MemoryDriver()))
    session = sessions.from_cookie(None)
    await session.set("n", 0)
    await sessions.commit(session)
    ours_cookie = f"session={session.id}".encode()
    star = create_storage(MemoryDriver())
    await star.set_item_raw("star-session-id", b'{"n": 0}')
    lite = create_storage(MemoryDriver())
    lite_id = "ab" * 32
    await UnistorageStore(lite).with_namespace("sessions").set(lite_id, b'{"n": 0}', 1800)
    for framework, build, peer_name, peer_cookie in (
        ("FastAPI", _fastapi_apps, "starsessions 30min rolling", b"session=star-session-id"),
        (
            "Litestar",
            _litestar_apps,
            "Litestar server-side sessions",
            f"session={lite_id}".encode(),
        ),
    ):
        for case, write in ((READ_WRITE, True), (READ_ONLY, False)):
            bare, ours, peer = build(write, sessions, star if framework == "FastAPI" else lite)
            await bench.rounds(
                f"{framework}: {case} (memory)",
                [
                    Subject(f"{framework}, no sessions", _runner(bare, b"", n), floor=True),
                    Subject("unistorage sessions", _runner(ours, ours_cookie, n), ours=True),
                    Subject(peer_name, _runner(peer, peer_cookie, n)),
                ],
            )
