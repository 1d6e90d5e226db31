"""Per-key TTL, flash messages, users and revocation, in-place changes and regenerate races,
over every conformance driver."""

from __future__ import annotations

from typing import Any

import pytest

from sessions import FlashMessage, Session, Sessions
from sessions.ids import storage_digest
from storage import Storage
from tests.test_sessions import Clock

pytestmark = pytest.mark.capability("stores")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sessions(storage: Storage, clock: Clock) -> Sessions[Any]:
    return Sessions(storage, idle_timeout=600, absolute_timeout=3600, clock=clock)


async def started(sessions: Sessions[Any], user: str | None = None, **data: Any) -> str:
    session = sessions.from_cookie(None)
    for key, value in data.items():
        await session.set(key, value)
    if user is not None:
        await session.login(user)
    await sessions.commit(session)
    assert session.id is not None
    return session.id


async def request(sessions: Sessions[Any], session_id: str) -> Session[Any]:
    """A request carrying ``session_id`` that has read its session."""
    session = sessions.from_cookie(session_id)
    await session.ensure_loaded()
    return session


async def test_a_key_set_with_a_ttl_expires_inside_a_live_session(
    sessions: Sessions[Any], clock: Clock
) -> None:
    session = sessions.from_cookie(None)
    await session.set("cart", ["apple"])
    await session.set("code", "123456", ttl=60)
    await sessions.commit(session)
    assert session.id is not None
    clock.now += 59
    assert await (await request(sessions, session.id)).items() == {
        "cart": ["apple"],
        "code": "123456",
    }
    clock.now += 2
    later = await request(sessions, session.id)
    assert later.id == session.id
    assert await later.items() == {"cart": ["apple"]}


@pytest.mark.capability("ttl")
async def test_the_stored_entry_lives_until_the_latest_key_deadline(
    sessions: Sessions[Any], storage: Storage
) -> None:
    session = sessions.from_cookie(None)
    await session.set("a", 1, ttl=30)
    await session.set("b", 2, ttl=120)
    await sessions.commit(session)
    key = f"session:{storage_digest(session.id or '')}"
    ttl = (await storage.get_meta(key)).get("ttl")
    assert ttl is not None
    assert 100 < ttl <= 120
    again = await request(sessions, session.id or "")
    await again.set("c", 3)  # a key without a deadline: the session's idle timeout again
    await sessions.commit(again)
    assert 500 < (await storage.get_meta(key))["ttl"] <= 600


async def test_a_flash_message_is_read_once_by_the_next_request(sessions: Sessions[Any]) -> None:
    first = sessions.from_cookie(None)
    await first.flash("Saved.")
    await first.flash("Card expires soon", category="warning")
    await sessions.commit(first)
    assert first.id is not None
    second = await request(sessions, first.id)
    assert await second.flashes("warning") == [FlashMessage("warning", "Card expires soon")]
    assert await second.flashes() == [FlashMessage("message", "Saved.")]
    await sessions.commit(second)
    assert await (await request(sessions, first.id)).flashes() == []


async def test_concurrent_requests_neither_lose_nor_repeat_flash_messages(
    sessions: Sessions[Any],
) -> None:
    session_id = await started(sessions, a=1)
    leaving = await request(sessions, session_id)
    await leaving.flash("one")
    await sessions.commit(leaving)
    reader, writer = await request(sessions, session_id), await request(sessions, session_id)
    assert [flash.message for flash in await reader.flashes()] == ["one"]
    await writer.flash("two")
    await sessions.commit(writer)
    await sessions.commit(reader)
    assert [flash.message for flash in await (await request(sessions, session_id)).flashes()] == [
        "two"
    ]


async def test_a_value_changed_in_place_is_saved(sessions: Sessions[Any]) -> None:
    session_id = await started(sessions, cart=["apple"], prefs={"theme": "light"})
    session = await request(sessions, session_id)
    (await session.get("cart")).append("pear")
    (await session.items())["prefs"]["theme"] = "dark"
    await sessions.commit(session)
    assert await (await request(sessions, session_id)).items() == {
        "cart": ["apple", "pear"],
        "prefs": {"theme": "dark"},
    }


async def test_login_indexes_the_session_and_revoke_ends_one(sessions: Sessions[Any]) -> None:
    laptop = await started(sessions, user="alice", cart=["apple"])
    phone = await started(sessions, user="alice")
    await started(sessions, user="bob")
    listed = await sessions.user_sessions("alice")
    handles = [storage_digest(laptop), storage_digest(phone)]
    assert sorted(one.handle for one in listed) == sorted(handles)
    assert (await request(sessions, laptop)).user_id == "alice"
    await sessions.revoke("alice", storage_digest(phone))
    assert (await request(sessions, phone)).id is None
    assert [one.handle for one in await sessions.user_sessions("alice")] == [handles[0]]
    assert len(await sessions.user_sessions("bob")) == 1


async def test_revoke_all_ends_every_session_and_requests_in_flight_bring_none_back(
    sessions: Sessions[Any], storage: Storage
) -> None:
    kept = await started(sessions, user="alice")
    ids = [await started(sessions, user="alice", n=n) for n in range(3)]
    writing = await request(sessions, ids[0])
    regenerating = await request(sessions, ids[1])
    await writing.set("cart", ["late"])
    await regenerating.regenerate()
    assert await sessions.revoke_all("alice", keep=storage_digest(kept)) == 3
    assert await sessions.commit(writing) != []  # its cookie is expired
    await sessions.commit(regenerating)
    assert regenerating.id is None
    assert [one.handle for one in await sessions.user_sessions("alice")] == [storage_digest(kept)]
    for session_id in ids:
        assert (await sessions.load(session_id)).id is None
    records = [key for key in await storage.keys() if ":user:" not in key]
    assert records == [f"session:{storage_digest(kept)}"]


async def test_a_request_still_carrying_the_replaced_id_keeps_the_new_cookie(
    sessions: Sessions[Any],
) -> None:
    old = await started(sessions, cart=["apple"])
    before = await request(sessions, old)  # loaded before the login commits
    login = await request(sessions, old)
    await login.login("alice")
    await sessions.commit(login)
    await before.set("cart", ["apple", "pear"])
    assert await sessions.commit(before) == []  # no Set-Cookie: session=; Max-Age=0
    after = await request(sessions, old)  # loaded after the login committed
    await after.set("theme", "dark")
    assert await sessions.commit(after) == []  # no new session either
    resumed = await request(sessions, login.id or "")
    assert await resumed.items() == {"cart": ["apple"]}
    assert resumed.user_id == "alice"
