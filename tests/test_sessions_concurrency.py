"""Concurrent requests to one session lose nothing and bring nothing back, on every driver.

Drivers without atomic conditional writes (a third-party driver by default, overlay) are safe
within one process; drivers with them (fs here) also settle contention with backoff.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from drivers.fs import FsDriver
from drivers.memory import MemoryDriver
from drivers.overlay import OverlayDriver
from sessions import SessionMiddleware, Sessions
from sessions.ids import storage_digest
from storage import Driver, Storage, create_storage
from tests.test_sessions_http import session_of

ROOT = Path(__file__).resolve().parent.parent


class DictDriver(Driver):
    """A third-party-style driver: a dict behind awaits, without conditional writes or TTL.

    Each call yields to the event loop once, as a call over the network would.
    """

    name = "dict"

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    async def get_item(self, key: str) -> bytes | None:
        await asyncio.sleep(0)
        return self.data.get(key)

    async def set_item(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        await asyncio.sleep(0)
        self.data[key] = value

    async def remove_item(self, key: str) -> None:
        await asyncio.sleep(0)
        self.data.pop(key, None)

    async def iter_keys(
        self, base: str = "", *, max_depth: int | None = None
    ) -> AsyncIterator[str]:
        for key in list(self.data):
            if key.startswith(base):
                yield key


def dict_driver(tmp_path: Path) -> Driver:
    return DictDriver()


class FsWithoutLocks(FsDriver):
    """The fs driver as it is where ``fcntl`` is missing: no atomic conditional writes."""

    def __init__(self, base: Path) -> None:
        super().__init__(base)
        self.capabilities = replace(self.capabilities, conditional=False)


def overlay_driver(tmp_path: Path) -> Driver:
    return OverlayDriver(layers=[MemoryDriver(), MemoryDriver()])


def overlay_over_dict_driver(tmp_path: Path) -> Driver:
    return OverlayDriver(layers=[DictDriver(), MemoryDriver()])


def fs_driver(tmp_path: Path) -> Driver:
    return FsDriver(tmp_path / "store")


def fs_without_locks_driver(tmp_path: Path) -> Driver:
    return FsWithoutLocks(tmp_path / "store")


DRIVERS: dict[str, Callable[[Path], Driver]] = {
    "third-party dict (no conditional writes)": dict_driver,
    "overlay over memory (no conditional writes)": overlay_driver,
    "overlay over the dict driver (no conditional writes)": overlay_over_dict_driver,
    "fs without fcntl (no conditional writes)": fs_without_locks_driver,
    "fs (conditional writes)": fs_driver,
}


@pytest.fixture(params=list(DRIVERS))
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    async with create_storage(DRIVERS[request.param](tmp_path)) as storage:
        yield storage


@pytest.fixture
def sessions(storage: Storage) -> Sessions[Any]:
    return Sessions(storage)


async def mark(request: Request) -> Response:
    session = session_of(request)
    await session.get("user")
    await session.set(f"mark-{request.query_params['n']}", True)
    return PlainTextResponse("marked")


async def logout(request: Request) -> Response:
    await session_of(request).destroy()
    return PlainTextResponse("out")


@pytest.fixture
async def client(sessions: Sessions[Any]) -> AsyncIterator[httpx.AsyncClient]:
    app = Starlette(
        routes=[Route("/mark", mark, methods=["POST"]), Route("/logout", logout, methods=["POST"])],
        middleware=[Middleware(SessionMiddleware, sessions=sessions)],
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as http:
        yield http


async def started(sessions: Sessions[Any]) -> str:
    session = sessions.from_cookie(None)
    await session.set("user", "alice")
    await sessions.commit(session)
    assert session.id is not None
    return session.id


async def test_twenty_concurrent_changes_to_one_session_are_all_acknowledged_and_kept(
    client: httpx.AsyncClient, sessions: Sessions[Any]
) -> None:
    session_id = await started(sessions)
    cookie = {"cookie": f"session={session_id}"}
    responses = await asyncio.gather(
        *(client.post("/mark", params={"n": n}, headers=cookie) for n in range(20))
    )
    assert [response.status_code for response in responses] == [200] * 20
    stored = await (await sessions.load(session_id)).items()
    assert stored == {"user": "alice", **{f"mark-{n}": True for n in range(20)}}


async def test_a_destroyed_session_is_not_brought_back_by_requests_in_flight(
    client: httpx.AsyncClient, sessions: Sessions[Any], storage: Storage
) -> None:
    session_id = await started(sessions)
    cookie = {"cookie": f"session={session_id}"}
    marks = [client.post("/mark", params={"n": n}, headers=cookie) for n in range(10)]
    out = client.post("/logout", headers=cookie)
    responses = await asyncio.gather(*marks[:5], out, *marks[5:])
    assert [response.status_code for response in responses] == [200] * 11
    assert responses[5].headers["set-cookie"].startswith("session=; Max-Age=0;")
    assert (await sessions.load(session_id)).id is None
    # A request that loaded after the logout starts a new session, under a new ID.
    issued = {
        response.cookies["session"] for response in responses if "session" in response.cookies
    }
    assert session_id not in issued
    assert sorted(await storage.keys()) == sorted(f"session:{storage_digest(i)}" for i in issued)


# -- across processes -----------------------------------------------------------------------


async def mark_from_another_process(directory: str, session_id: str, first: int) -> None:
    """Run in a child process: wait for a line on stdin, then make ten concurrent changes."""
    async with create_storage(FsDriver(directory)) as storage:
        sessions: Sessions[Any] = Sessions(storage)

        async def change(n: int) -> None:
            session = sessions.from_cookie(session_id)
            await session.set(f"mark-{n}", True)
            await sessions.commit(session)

        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        await asyncio.gather(*(change(n) for n in range(first, first + 10)))


@pytest.mark.slow
async def test_changes_from_two_processes_are_all_kept_where_writes_are_conditional(
    tmp_path: Path,
) -> None:
    directory = str(tmp_path / "store")
    async with create_storage(FsDriver(directory)) as storage:
        assert storage.capabilities("session").conditional
        sessions: Sessions[Any] = Sessions(storage)
        session_id = await started(sessions)
        script = (
            "import asyncio, sys\n"
            "from tests.test_sessions_concurrency import mark_from_another_process as run\n"
            "asyncio.run(run(sys.argv[1], sys.argv[2], int(sys.argv[3])))\n"
        )
        children = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                script,
                directory,
                session_id,
                str(first),
                cwd=ROOT,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
            for first in (0, 10)
        ]
        for child in children:
            assert child.stdout is not None
            assert await asyncio.wait_for(child.stdout.readline(), 60) == b"ready\n"
        for child in children:
            assert child.stdin is not None
            child.stdin.write(b"go\n")
            await child.stdin.drain()
        assert [await asyncio.wait_for(child.wait(), 60) for child in children] == [0, 0]
        stored = await (await sessions.load(session_id)).items()
        assert stored == {"user": "alice", **{f"mark-{n}": True for n in range(20)}}
