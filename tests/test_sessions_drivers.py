"""The session behaviours that depend on the backend, over every conformance driver."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import httpx
import pytest

from sessions import Sessions
from sessions.ids import new_id, storage_digest
from storage import Storage
from tests.test_sessions import Clock
from tests.test_sessions_http import build_app

# Drivers that discard writes by design (null) cannot hold sessions.
pytestmark = pytest.mark.capability("stores")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sessions(storage: Storage, clock: Clock) -> Sessions[Any]:
    return Sessions(storage, idle_timeout=600, absolute_timeout=3600, clock=clock)


@pytest.fixture
async def client(sessions: Sessions[Any]) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_app(sessions))
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as http:
        yield http


async def started(sessions: Sessions[Any], **data: Any) -> str:
    session = sessions.from_cookie(None)
    for key, value in data.items():
        await session.set(key, value)
    await sessions.commit(session)
    assert session.id is not None
    return session.id


async def test_cart_flow_over_http(client: httpx.AsyncClient, storage: Storage) -> None:
    assert (await client.get("/static")).headers.get("set-cookie") is None
    assert await storage.keys() == []
    await client.post("/add", params={"item": "apple"})
    await client.post("/add", params={"item": "pear"})
    first = client.cookies["session"]
    await client.post("/login", params={"user": "alice"})
    assert client.cookies["session"] != first
    assert (await client.get("/cart")).json() == {"count": 2, "user": "alice"}
    replaced = f"session:{storage_digest(first)}"  # the marker of the ID login replaced
    assert len(await storage.keys()) == 2
    await client.post("/logout")
    assert await storage.keys() == [replaced]


async def test_values_round_trip(sessions: Sessions[Any]) -> None:
    value = {
        "at": datetime(2024, 5, 6, tzinfo=timezone.utc),
        "price": Decimal("1.10"),
        "tags": {"a"},
    }
    session_id = await started(sessions, value=value, text="123")
    loaded = await sessions.load(session_id)
    assert await loaded.items() == {"value": value, "text": "123"}


async def test_unknown_ids_are_not_adopted(sessions: Sessions[Any], storage: Storage) -> None:
    planted = new_id()
    session = sessions.from_cookie(planted)
    await session.set("a", 1)
    await sessions.commit(session)
    assert session.id != planted
    assert await storage.keys() == [f"session:{storage_digest(session.id or '')}"]


async def test_regenerate_removes_the_old_entry(sessions: Sessions[Any], storage: Storage) -> None:
    old = await started(sessions, a=1)
    session = sessions.from_cookie(old)
    await session.regenerate()
    await sessions.commit(session)
    new_key, old_key = (f"session:{storage_digest(i or '')}" for i in (session.id, old))
    assert sorted(await storage.keys()) == sorted([new_key, old_key])
    # The old entry's data is gone: only a marker that the ID was replaced stays, for a minute.
    assert "data" not in await storage.get_item(old_key)
    assert (await sessions.load(old)).id is None


async def test_concurrent_changes_are_merged(sessions: Sessions[Any]) -> None:
    session_id = await started(sessions, a=0, b=0)
    first, second = sessions.from_cookie(session_id), sessions.from_cookie(session_id)
    await first.set("a", 1)
    await second.set("b", 2)
    await sessions.commit(first)
    await sessions.commit(second)
    assert await (await sessions.load(session_id)).items() == {"a": 1, "b": 2}


async def test_a_destroyed_session_is_not_resurrected(
    sessions: Sessions[Any], storage: Storage
) -> None:
    session_id = await started(sessions, user="alice")
    slow = sessions.from_cookie(session_id)
    await slow.get("user")
    logout = sessions.from_cookie(session_id)
    await logout.destroy()
    await sessions.commit(logout)
    await slow.set("cart", ["late"])
    await sessions.commit(slow)
    assert await storage.keys() == []


async def test_idle_timeout_from_stored_timestamps(sessions: Sessions[Any], clock: Clock) -> None:
    session_id = await started(sessions, a=1)
    clock.now += 601
    session = sessions.from_cookie(session_id)
    assert await session.get("a") is None
    assert session.id is None


async def test_absolute_timeout_from_stored_timestamps(
    sessions: Sessions[Any], clock: Clock
) -> None:
    session_id = await started(sessions, n=0)
    for n in range(1, 8):
        clock.now += 500
        session = sessions.from_cookie(session_id)
        await session.set("n", n)
        await sessions.commit(session)
    clock.now += 200  # 3700 s after creation, 200 s after the last write
    assert (await sessions.load(session_id)).id is None


async def test_a_corrupt_entry_becomes_a_new_session(
    sessions: Sessions[Any], storage: Storage
) -> None:
    session_id = await started(sessions, a=1)
    await storage.set_item_raw(f"session:{storage_digest(session_id)}", b"\x00garbage")
    assert (await sessions.load(session_id)).id is None
