"""Requests/s through session middleware, in process (no network), ours against starsessions
and, through FastAPI and Litestar apps (`benchmarks.frameworks`), against starsessions and
Litestar's own server-side sessions on the same store.

Each request carries the cookie of an existing session and reads one counter (``read only``),
or reads it and writes it back incremented (``read + write``). What each subject does per
read + write request:

- ours: parse the cookie strictly, check the ID's shape, hash it (SHA-256) into the storage key,
  read the record and its etag, check the idle (30 min) and absolute (8 h) timeouts from the
  stored timestamps, and at the response start write the record back conditioned on that etag
  (merging into the fresh record on a conflict) with a 30-minute store TTL;
- starsessions, 30 min rolling (the like-for-like peer): parse the cookie, read the record by
  the raw ID, and at the response start write it back with a 30-minute store TTL and send a
  fresh Set-Cookie (rolling lifetime); starsessions without expiry, and starsessions on its own
  dict store, for reference.

Both keep their sessions in the same kind of store, a unistorage driver (memory, then a sqlite
file), starsessions through a small `SessionStore` adapter over it. Neither signs its cookie:
both IDs are random and server-side. Subjects take turns round after round (`Bench.rounds`);
ratios are medians of per-round ratios with their spread. The floor is the same app without
any session middleware. A read + write case with 16 clients at once, each with a session of its
own, shows a server's load, where sqlite's group commit shares the write round trips. A case
of store calls puts each library's two calls alone beside the requests (what the store costs,
and what is left to the layers). A last case shows that a request that never touches the
session costs no storage call at all.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

from starlette.requests import HTTPConnection
from starsessions import InMemoryStore, SessionStore, load_session
from starsessions import SessionMiddleware as StarSessionMiddleware

from drivers.memory import MemoryDriver
from drivers.sqlite import SqliteDriver
from sessions import Session, SessionMiddleware, Sessions
from storage import Driver, Storage, create_storage

from .frameworks import framework_cases
from .harness import Bench, Subject

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
App = Callable[
    [Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]
]

REQUESTS = 5_000
#: Clients sending requests at once in the concurrent case, each with a session of its own.
CLIENTS = 16
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

    async def get_item_with_etag(self, key: str) -> tuple[bytes | None, str | None]:
        self.calls["get_item_with_etag"] += 1
        return await super().get_item_with_etag(key)

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


def _clients(app: App, cookies: list[bytes], n: int) -> Callable[[], Awaitable[int]]:
    """``n`` requests from ``len(cookies)`` clients at once, each with its own session."""
    each = max(1, n // len(cookies))

    async def client(cookie: bytes) -> None:
        for _ in range(each):
            await app(_scope(cookie), _receive, _send)

    async def run() -> int:
        await asyncio.gather(*(client(cookie) for cookie in cookies))
        return each * len(cookies)

    return run


async def _our_cookie(sessions: Sessions[Any]) -> bytes:
    session = sessions.from_cookie(None)
    await session.set("n", 0)
    await sessions.commit(session)
    return f"session={session.id}".encode()


async def _store_cases(bench: Bench, kind: str, make: Callable[[str], Driver], n: int) -> None:
    """Read + write, then read only, ours against starsessions, both over ``make(name)``."""
    ours_storage = create_storage(make("ours"))
    star_storage = create_storage(make("star"))
    sessions: Sessions[Any] = Sessions(ours_storage)
    cookie = await _our_cookie(sessions)
    star_cookie = b"session=star-session-id"
    await star_storage.set_item_raw("star-session-id", b'{"n": 0}')
    for case, ours_handler, star_handler in (
        (f"{READ_WRITE} ({kind})", ours_app, star_app),
        (f"{READ_ONLY} ({kind})", ours_read_app, star_read_app),
    ):
        ours = SessionMiddleware(ours_handler, sessions)
        # Rolling 30-minute lifetime: the same expiry (and store TTL) as our idle timeout.
        star = StarSessionMiddleware(
            star_handler, store=UnistorageStore(star_storage), lifetime=1800, rolling=True
        )
        star_plain = StarSessionMiddleware(star_handler, store=UnistorageStore(star_storage))
        subjects = [
            Subject("no session middleware", _runner(bare_app, b"", n), floor=True),
            Subject(f"unistorage sessions ({kind})", _runner(ours, cookie, n), ours=True),
            Subject(f"starsessions 30min rolling ({kind})", _runner(star, star_cookie, n)),
            Subject(f"starsessions no expiry ({kind})", _runner(star_plain, star_cookie, n)),
        ]
        if kind == "memory":
            native = InMemoryStore()
            native.data["star-session-id"] = b'{"n": 0}'
            star_native = StarSessionMiddleware(star_handler, store=native)
            subjects.append(
                Subject("starsessions (InMemoryStore dict)", _runner(star_native, star_cookie, n))
            )
        await bench.rounds(case, subjects)
    star = StarSessionMiddleware(
        star_app, store=UnistorageStore(star_storage), lifetime=1800, rolling=True
    )
    await _store_calls(bench, kind, sessions, star_storage, star, cookie, star_cookie, n)
    # A server's load: many visitors at once, so a store that groups writes (sqlite's group
    # commit) shares its round trips and each request's own work counts for more.
    ours_cookies = [await _our_cookie(sessions) for _ in range(CLIENTS)]
    star_cookies = []
    for client in range(CLIENTS):
        await star_storage.set_item_raw(f"star-client-{client}", b'{"n": 0}')
        star_cookies.append(f"session=star-client-{client}".encode())
    await bench.rounds(
        f"{READ_WRITE}, {CLIENTS} clients at once ({kind})",
        [
            Subject("no session middleware", _clients(bare_app, star_cookies, n), floor=True),
            Subject(
                f"unistorage sessions ({kind})",
                _clients(SessionMiddleware(ours_app, sessions), ours_cookies, n),
                ours=True,
            ),
            Subject(f"starsessions 30min rolling ({kind})", _clients(star, star_cookies, n)),
        ],
    )
    await ours_storage.dispose()
    await star_storage.dispose()


async def _store_calls(
    bench: Bench,
    kind: str,
    sessions: Sessions[Any],
    star_storage: Storage,
    star: App,
    cookie: bytes,
    star_cookie: bytes,
    n: int,
) -> None:
    """What a read + write request asks of the store, against the requests themselves
    (``star``: starsessions' rolling middleware over ``star_storage``).

    The floor is starsessions' two calls alone (the raw record read, then written back with a
    TTL); beside it, the versioned pair ours makes (the record with its etag, then a write
    conditioned on that etag, which is what lets a concurrent commit merge instead of being
    lost). No session layer over the same calls can serve more requests than the floor: its
    rate over the peer's is the most any layer could reach against it on this store.
    """
    ours_storage = sessions.storage
    await star_storage.set_item_raw("pair-plain", b'{"n": 0}')
    await ours_storage.set_item("pair-versioned", {"n": 0})

    async def plain() -> int:
        for _ in range(n):
            data = await star_storage.get_item_raw("pair-plain")
            await star_storage.set_item_raw("pair-plain", data or b"{}", ttl=1800)
        return n

    async def versioned() -> int:
        for _ in range(n):
            value, etag = await ours_storage.get_item_with_etag("pair-versioned")
            await ours_storage.set_item("pair-versioned", value, ttl=1800, if_match=etag)
        return n

    results = await bench.rounds(
        f"store calls of a {READ_WRITE} ({kind})",
        [
            Subject("get_item_raw + set_item_raw(ttl), starsessions' calls", plain, floor=True),
            Subject("get_item_with_etag + set_item(ttl, if_match), ours", versioned),
            Subject(
                f"unistorage sessions ({kind})",
                _runner(SessionMiddleware(ours_app, sessions), cookie, n),
                ours=True,
            ),
            Subject(f"starsessions 30min rolling ({kind})", _runner(star, star_cookie, n)),
        ],
    )
    peer = results[-1]
    if peer.ratio:
        peer.note = f"a layer costing nothing over the floor's calls: {1 / peer.ratio:.2f}x this"
        print(f"  store calls ({kind}): {peer.note}", flush=True)


async def _untouched(bench: Bench, n: int) -> None:
    driver = CountingMemory()
    counted: Sessions[Any] = Sessions(create_storage(driver))
    cookie = await _our_cookie(counted)
    driver.calls.clear()
    star = StarSessionMiddleware(untouched_app, store=UnistorageStore(create_storage()))
    ours_untouched = SessionMiddleware(untouched_app, counted)
    results = await bench.rounds(
        UNTOUCHED,
        [
            Subject("no session middleware", _runner(untouched_app, cookie, n), floor=True),
            Subject("unistorage sessions (memory)", _runner(ours_untouched, cookie, n), ours=True),
            Subject("starsessions (memory)", _runner(star, cookie, n)),
        ],
    )
    ours = next(result for result in results if result.ours)
    ours.note = f"driver calls: {sum(driver.calls.values())} in all rounds of {n} requests"
    print(f"  untouched: {ours.note}", flush=True)
    if driver.calls:
        raise AssertionError(f"an untouched session reached the driver: {dict(driver.calls)}")


async def run(bench: Bench) -> None:
    n = bench.n(REQUESTS)
    await _store_cases(bench, "memory", lambda name: MemoryDriver(), n)
    with tempfile.TemporaryDirectory() as directory:
        await _store_cases(
            bench,
            "sqlite file",
            lambda name: SqliteDriver(f"{directory}/{name}.db"),
            max(1, n // 5),
        )
    await _untouched(bench, n)
    await framework_cases(bench, "memory", lambda name: MemoryDriver(), max(1, n // 2))
    with tempfile.TemporaryDirectory() as directory:
        await framework_cases(
            bench,
            "sqlite file",
            lambda name: SqliteDriver(f"{directory}/{name}.db"),
            max(1, n // 10),
        )
