"""Requests/s through session middleware, in process (no network), ours against starsessions.

Each request carries the cookie of an existing session, reads one key and writes it back.
Both middlewares keep their sessions in the same kind of store: a unistorage memory driver
(starsessions through a small `SessionStore` adapter), plus starsessions' own dict store. The
floor is the same app without any session middleware. A last case shows that a request that
never touches the session costs no storage call at all.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

from starlette.requests import HTTPConnection
from starsessions import InMemoryStore, SessionStore, load_session
from starsessions import SessionMiddleware as StarSessionMiddleware

from drivers.memory import MemoryDriver
from sessions import Session, SessionMiddleware, Sessions
from storage import Storage, create_storage

from .harness import Bench

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
App = Callable[
    [Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]
]

REQUESTS = 20_000
READ_WRITE = "request with session read + write"
READ_ONLY = "request with a session read only"
UNTOUCHED = "request that never touches the session"


class CountingMemory(MemoryDriver):
    """The memory driver, counting the calls that reach it."""

    # Every call goes through the counted coroutines, never the core's synchronous shortcut.
    supports_nowait = False

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()

    async def get_item(self, key: str) -> bytes | None:
        self.calls["get_item"] += 1
        return await super().get_item(key)

    async def set_item(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        self.calls["set_item"] += 1
        await super().set_item(key, value, ttl=ttl)

    async def set_item_conditional(
        self,
        key: str,
        value: bytes,
        *,
        ttl: float | None = None,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str | None:
        self.calls["set_item_conditional"] += 1
        return await super().set_item_conditional(
            key, value, ttl=ttl, if_match=if_match, if_none_match=if_none_match
        )

    async def get_meta(self, key: str) -> dict[str, Any]:
        self.calls["get_meta"] += 1
        return await super().get_meta(key)

    async def remove_items(self, keys: Sequence[str]) -> None:
        self.calls["remove_items"] += 1
        await super().remove_items(keys)


class UnistorageStore(SessionStore):
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


async def _receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: Message) -> None:
    pass


_START: Message = {"type": "http.response.start", "status": 200, "headers": []}
_BODY: Message = {"type": "http.response.body", "body": b"ok"}


async def ours_app(scope: Scope, receive: Any, send: Any) -> None:
    session: Session[dict[str, int]] = scope["session"]
    await session.set("n", await session.get("n", 0) + 1)
    await send(dict(_START))
    await send(_BODY)


async def star_app(scope: Scope, receive: Any, send: Any) -> None:
    connection = HTTPConnection(scope)
    await load_session(connection)
    connection.session["n"] = connection.session.get("n", 0) + 1
    await send(dict(_START))
    await send(_BODY)


async def ours_read_app(scope: Scope, receive: Any, send: Any) -> None:
    session: Session[dict[str, int]] = scope["session"]
    await session.get("n", 0)
    await send(dict(_START))
    await send(_BODY)


async def star_read_app(scope: Scope, receive: Any, send: Any) -> None:
    connection = HTTPConnection(scope)
    await load_session(connection)
    connection.session.get("n", 0)
    await send(dict(_START))
    await send(_BODY)


async def bare_app(scope: Scope, receive: Any, send: Any) -> None:
    await send(dict(_START))
    await send(_BODY)


async def untouched_app(scope: Scope, receive: Any, send: Any) -> None:
    await send(dict(_START))
    await send(_BODY)


def _runner(app: App, cookie: bytes, n: int) -> Callable[[], Awaitable[int]]:
    async def run() -> int:
        for _ in range(n):
            await app(_scope(cookie), _receive, _send)
        return n

    return run


async def _our_cookie(sessions: Sessions[Any]) -> bytes:
    session = sessions.from_cookie(None)
    await session.set("n", 0)
    await sessions.commit(session)
    return f"session={session.id}".encode()


async def run(bench: Bench) -> None:
    n = bench.n(REQUESTS)
    await bench.measure(READ_WRITE, "no session middleware", _runner(bare_app, b"", n), floor=True)

    sessions: Sessions[Any] = Sessions(create_storage(MemoryDriver()))
    cookie = await _our_cookie(sessions)
    ours = SessionMiddleware(ours_app, sessions)
    await bench.measure(
        READ_WRITE, "unistorage sessions (memory)", _runner(ours, cookie, n), ours=True
    )

    star_storage = create_storage(MemoryDriver())
    star_id = "star-session-id"
    await star_storage.set_item_raw(star_id, b'{"n": 0}')
    star = StarSessionMiddleware(star_app, store=UnistorageStore(star_storage))
    await bench.measure(
        READ_WRITE,
        "starsessions (unistorage memory)",
        _runner(star, f"session={star_id}".encode(), n),
    )

    native = InMemoryStore()
    native.data[star_id] = b'{"n": 0}'
    star_native = StarSessionMiddleware(star_app, store=native)
    await bench.measure(
        READ_WRITE,
        "starsessions (InMemoryStore dict)",
        _runner(star_native, f"session={star_id}".encode(), n),
    )

    await bench.measure(READ_ONLY, "no session middleware", _runner(bare_app, b"", n), floor=True)
    reader = SessionMiddleware(ours_read_app, sessions)
    await bench.measure(
        READ_ONLY, "unistorage sessions (memory)", _runner(reader, cookie, n), ours=True
    )
    star_reader = StarSessionMiddleware(star_read_app, store=UnistorageStore(star_storage))
    await bench.measure(
        READ_ONLY,
        "starsessions (unistorage memory)",
        _runner(star_reader, f"session={star_id}".encode(), n),
    )

    await bench.measure(
        UNTOUCHED, "no session middleware", _runner(untouched_app, cookie, n), floor=True
    )
    driver = CountingMemory()
    counted: Sessions[Any] = Sessions(create_storage(driver))
    cookie = await _our_cookie(counted)
    driver.calls.clear()
    idle = SessionMiddleware(untouched_app, counted)
    result = await bench.measure(
        UNTOUCHED, "unistorage sessions (memory)", _runner(idle, cookie, n), ours=True
    )
    result.note = f"driver calls: {sum(driver.calls.values())} in {result.ops * 3} requests"
    print(f"  untouched: {result.note}", flush=True)
    if driver.calls:
        raise AssertionError(f"an untouched session reached the driver: {dict(driver.calls)}")
    star_idle = StarSessionMiddleware(untouched_app, store=UnistorageStore(star_storage))
    await bench.measure(
        UNTOUCHED, "starsessions (unistorage memory)", _runner(star_idle, cookie, n)
    )
