"""The sessions benchmark through real FastAPI and Litestar apps (in process, no network).

Each request carries the cookie of an existing session, reads one counter and writes it back
(or only reads it), and answers it as JSON. Per framework and store (memory, a sqlite file):
the same app without sessions (the floor), with ours, and with the peer a user of that
framework would pick, on the same kind of store:

- FastAPI: starsessions (30-minute rolling lifetime, so a store TTL and a Set-Cookie on every
  response) over the driver through a small `SessionStore` adapter. Ours through its typed
  dependency (``Annotated[Session[...], Depends(session_dependency(sessions))]``) against
  starsessions both through a dependency of the same shape (FastAPI's cost of a
  sub-dependency on both sides) and through ``request.session``; and in a case of its own ours
  through ``sessions.of(request)`` (a ``request: Request`` parameter, as starsessions'
  ``request.session`` handler has).
- Litestar: its own server-side sessions (``ServerSideSessionConfig``, 30-minute max age
  renewed on access) over the driver as a Litestar store (`UnistorageStore`); ours through
  `SessionPlugin`'s ``session`` dependency.

Rounds alternate (`Bench.rounds`); the ratios are medians of per-round ratios.
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

from sessions import Session, SessionMiddleware, Sessions
from sessions.fastapi import session_dependency
from sessions.litestar import SessionPlugin, UnistorageStore
from storage import Driver, Storage, create_storage

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


async def _star_session(request: Request) -> dict[str, Any]:
    """starsessions' session as a FastAPI dependency, the way a FastAPI user would write it."""
    await load_session(request)
    session: dict[str, Any] = request.session
    return session


def _fastapi_apps(write: bool, sessions: Sessions[Any], star: Storage) -> dict[str, Any]:
    ours_dep = Annotated[Session[Any], Depends(session_dependency(sessions))]
    star_dep = Annotated[dict[str, Any], Depends(_star_session)]
    apps = {name: FastAPI() for name in ("bare", "ours", "ours_of", "peer", "peer_dep")}

    @apps["bare"].get("/")
    async def bare_home() -> dict[str, int]:
        return {"n": 0}

    @apps["ours"].get("/")
    async def ours_home(session: ours_dep) -> dict[str, int]:
        n = await session.get("n", 0)
        if write:
            await session.set("n", n + 1)
        return {"n": n}

    @apps["ours_of"].get("/")
    async def ours_of_home(request: Request) -> dict[str, int]:
        session = sessions.of(request)
        n = await session.get("n", 0)
        if write:
            await session.set("n", n + 1)
        return {"n": n}

    @apps["peer"].get("/")
    async def peer_home(request: Request) -> dict[str, int]:
        await load_session(request)
        n = int(request.session.get("n", 0))
        if write:
            request.session["n"] = n + 1
        return {"n": n}

    @apps["peer_dep"].get("/")
    async def peer_dep_home(session: star_dep) -> dict[str, int]:
        n = int(session.get("n", 0))
        if write:
            session["n"] = n + 1
        return {"n": n}

    for name in ("ours", "ours_of"):
        apps[name].add_middleware(SessionMiddleware, sessions=sessions)
    for name in ("peer", "peer_dep"):
        apps[name].add_middleware(
            StarSessionMiddleware, store=_StarStore(star), lifetime=1800, rolling=True
        )
    return apps


def _litestar_apps(write: bool, sessions: Sessions[Any], store: Storage) -> dict[str, Any]:
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
    return {"bare": Litestar([bare_home]), "ours": ours, "peer": peer}


async def framework_cases(bench: Bench, kind: str, make: Callable[[str], Driver], n: int) -> None:
    """FastAPI and Litestar, read + write then read only, ours against each peer, every
    session kept in a driver from ``make(name)``."""
    ours_storage = create_storage(make("ours"))
    sessions: Sessions[Any] = Sessions(ours_storage)
    session = sessions.from_cookie(None)
    await session.set("n", 0)
    await sessions.commit(session)
    ours_cookie = f"session={session.id}".encode()
    star = create_storage(make("star"))
    await star.set_item_raw("star-session-id", b'{"n": 0}')
    lite = create_storage(make("litestar"))
    lite_id = "ab" * 32
    await UnistorageStore(lite).with_namespace("sessions").set(lite_id, b'{"n": 0}', 1800)
    star_cookie = b"session=star-session-id"
    lite_cookie = f"session={lite_id}".encode()
    for case, write in ((READ_WRITE, True), (READ_ONLY, False)):
        fast = _fastapi_apps(write, sessions, star)
        floor = Subject("FastAPI, no sessions", _runner(fast["bare"], b"", n), floor=True)
        peer = Subject("starsessions 30min rolling", _runner(fast["peer"], star_cookie, n))
        await bench.rounds(
            f"FastAPI, typed dependency: {case} ({kind})",
            [
                floor,
                Subject("unistorage sessions", _runner(fast["ours"], ours_cookie, n), ours=True),
                Subject(
                    "starsessions 30min rolling, dependency",
                    _runner(fast["peer_dep"], star_cookie, n),
                ),
                peer,
            ],
        )
        await bench.rounds(
            f"FastAPI, Sessions.of(request): {case} ({kind})",
            [
                floor,
                Subject(
                    "unistorage sessions, Sessions.of",
                    _runner(fast["ours_of"], ours_cookie, n),
                    ours=True,
                ),
                peer,
            ],
        )
        lit = _litestar_apps(write, sessions, lite)
        await bench.rounds(
            f"Litestar: {case} ({kind})",
            [
                Subject("Litestar, no sessions", _runner(lit["bare"], b"", n), floor=True),
                Subject("unistorage sessions", _runner(lit["ours"], ours_cookie, n), ours=True),
                Subject("Litestar server-side sessions", _runner(lit["peer"], lite_cookie, n)),
            ],
        )
    for storage in (ours_storage, star, lite):
        await storage.dispose()
