"""Sessions through their explicit API (no middleware), over the memory driver."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from drivers.memory import MemoryDriver
from sessions import CookieSettings, Session, Sessions
from sessions.ids import id_length, is_valid_id, new_id, storage_digest
from storage import (
    ConflictError,
    Driver,
    DriverError,
    SerializationError,
    Storage,
    create_storage,
)


class CountingDriver(MemoryDriver):
    """The memory driver, counting every call that reaches it (a real driver, not a mock)."""

    # Every call goes through the counted coroutines, never the core's synchronous shortcut.
    supports_nowait = False

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()
        self.before_conditional: list[Any] = []

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
        if self.before_conditional:
            # Lets a test slip a concurrent write in between a read and the conditional write.
            await self.before_conditional.pop(0)()
        return await super().set_item_conditional(
            key, value, ttl=ttl, if_match=if_match, if_none_match=if_none_match
        )

    async def remove_items(self, keys: Sequence[str]) -> None:
        self.calls["remove_items"] += 1
        await super().remove_items(keys)

    async def get_meta(self, key: str) -> dict[str, Any]:
        self.calls["get_meta"] += 1
        return await super().get_meta(key)

    async def get_item_with_etag(self, key: str) -> tuple[bytes | None, str | None]:
        self.calls["get_item_with_etag"] += 1
        return await super().get_item_with_etag(key)

    @property
    def total(self) -> int:
        return sum(self.calls.values())


class DownDriver(Driver):
    """A backend that is unreachable: every call fails like a refused connection."""

    name = "down"

    async def get_item(self, key: str) -> bytes | None:
        raise ConnectionRefusedError("connection refused")

    async def set_item(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        raise ConnectionRefusedError("connection refused")

    async def remove_item(self, key: str) -> None:
        raise ConnectionRefusedError("connection refused")

    async def iter_keys(
        self, base: str = "", *, max_depth: int | None = None
    ) -> AsyncIterator[str]:
        raise ConnectionRefusedError("connection refused")
        yield ""  # pragma: no cover


class Clock:
    """A settable clock for timeouts, so tests never sleep."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def counting() -> CountingDriver:
    return CountingDriver()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(counting: CountingDriver) -> Storage:
    return create_storage(counting)


@pytest.fixture
def sessions(store: Storage, clock: Clock) -> Sessions[dict[str, Any]]:
    return Sessions(store, idle_timeout=600, absolute_timeout=3600, touch_interval=60, clock=clock)


async def started(sessions: Sessions[Any], **data: Any) -> str:
    session = sessions.from_cookie(None)
    for key, value in data.items():
        await session.set(key, value)
    await sessions.commit(session)
    assert session.id is not None
    return session.id


# -- IDs ------------------------------------------------------------------------------------


def test_ids_carry_256_random_bits_by_default() -> None:
    ids = {new_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(len(value) == id_length(32) == 43 and is_valid_id(value) for value in ids)


def test_ids_under_128_bits_are_refused() -> None:
    with pytest.raises(ValueError, match="128"):
        Sessions(create_storage(), id_bytes=8)


@pytest.mark.parametrize(
    "value", ["../x", "a\r\nSet-Cookie: x=1", "A" * 5000, "é" * 43, "", "A" * 42 + "=", None]
)
async def test_malformed_ids_are_rejected_before_any_storage_call(
    sessions: Sessions[Any], counting: CountingDriver, value: str | None
) -> None:
    session = sessions.from_cookie(value)
    assert await session.get("anything") is None
    assert session.id is None
    assert counting.total == 0


async def test_an_unknown_well_formed_id_is_never_adopted(sessions: Sessions[Any]) -> None:
    unknown = new_id()
    session = sessions.from_cookie(unknown)
    await session.set("user", "mallory")
    headers = await sessions.commit(session)
    assert session.id is not None
    assert session.id != unknown
    assert dict(headers)["set-cookie"].startswith(f"session={session.id};")


async def test_storage_keys_hold_a_digest_never_the_id(
    sessions: Sessions[Any], store: Storage
) -> None:
    session_id = await started(sessions, cart=[1])
    keys = await store.keys()
    assert keys == [f"session:{storage_digest(session_id)}"]
    assert session_id not in keys[0]


# -- laziness -------------------------------------------------------------------------------


async def test_an_untouched_session_does_no_storage_io(
    sessions: Sessions[Any], counting: CountingDriver
) -> None:
    session = sessions.from_cookie(await started(sessions, a=1))
    counting.calls.clear()
    assert await sessions.commit(session) == []
    assert counting.total == 0


async def test_a_read_only_request_does_not_write(
    sessions: Sessions[Any], counting: CountingDriver
) -> None:
    session = sessions.from_cookie(await started(sessions, a=1))
    counting.calls.clear()
    assert await session.get("a") == 1
    assert await sessions.commit(session) == []
    # One read of the entry (and, on drivers with conditional writes, of its version).
    assert counting.calls == Counter(get_item_with_etag=1)


async def test_a_read_after_the_touch_interval_refreshes_the_entry(
    sessions: Sessions[Any], counting: CountingDriver, clock: Clock
) -> None:
    session_id = await started(sessions, a=1)
    clock.now += 61
    counting.calls.clear()
    session = sessions.from_cookie(session_id)
    await session.get("a")
    await sessions.commit(session)
    assert counting.calls["set_item_conditional"] == 1
    clock.now += 599  # idle time counts from the touch, not from the creation
    assert await (await sessions.load(session_id)).get("a") == 1


async def test_reading_a_missing_session_creates_nothing(
    sessions: Sessions[Any], store: Storage
) -> None:
    session = sessions.from_cookie(None)
    assert await session.keys() == []
    assert await sessions.commit(session) == []
    assert await store.keys() == []


# -- data -----------------------------------------------------------------------------------


async def test_get_set_delete_has_keys(sessions: Sessions[Any]) -> None:
    session = sessions.from_cookie(await started(sessions, a=1, b=[1, 2]))
    assert await session.has("a")
    assert sorted(await session.keys()) == ["a", "b"]
    await session.delete("a")
    await session.delete("never-there")
    await session.set("c", {"x": 1})
    await sessions.commit(session)
    again = sessions.from_cookie(session.id)
    assert await again.items() == {"b": [1, 2], "c": {"x": 1}}
    assert await again.get("a", "gone") == "gone"


async def test_values_round_trip_through_the_storage_serializer(sessions: Sessions[Any]) -> None:
    from datetime import datetime, timezone
    from decimal import Decimal

    value = {
        "when": datetime(2024, 1, 2, tzinfo=timezone.utc),
        "price": Decimal("9.99"),
        "b": b"\0",
    }
    session_id = await started(sessions, value=value)
    assert await (await sessions.load(session_id)).get("value") == value


async def test_a_value_that_cannot_be_stored_raises_at_set_naming_the_key(
    sessions: Sessions[Any],
) -> None:
    session = sessions.from_cookie(None)
    with pytest.raises(SerializationError, match="'callback'") as caught:
        await session.set("callback", lambda: None)
    assert caught.value.key == "callback"
    assert session.id is None


async def test_a_corrupt_stored_session_becomes_a_new_session(
    sessions: Sessions[Any], store: Storage
) -> None:
    session_id = await started(sessions, a=1)
    await store.set_item_raw(f"session:{storage_digest(session_id)}", b"\xff not json")
    session = sessions.from_cookie(session_id)
    assert await session.get("a") is None
    await session.set("a", 2)
    await sessions.commit(session)
    assert session.id not in (None, session_id)


async def test_a_backend_that_is_down_raises_instead_of_logging_the_user_out() -> None:
    sessions: Sessions[Any] = Sessions(create_storage(DownDriver()))
    session = sessions.from_cookie(new_id())
    with pytest.raises(DriverError, match="connection refused"):
        await session.get("user")


# -- regenerate and destroy -----------------------------------------------------------------


async def test_regenerate_keeps_the_data_under_a_new_id_and_removes_the_old_entry(
    sessions: Sessions[Any], store: Storage
) -> None:
    old = await started(sessions, cart=["apple"])
    session = sessions.from_cookie(old)
    await session.regenerate()
    headers = dict(await sessions.commit(session))
    assert session.id not in (None, old)
    assert headers["set-cookie"].startswith(f"session={session.id};")
    new_key, old_key = (f"session:{storage_digest(i or '')}" for i in (session.id, old))
    assert sorted(await store.keys()) == sorted([new_key, old_key])
    # The old entry's data is gone: only a marker that the ID was replaced stays, for a minute.
    assert "data" not in await store.get_item(old_key)
    assert await (await sessions.load(session.id or "")).get("cart") == ["apple"]
    assert (await sessions.load(old)).id is None


async def test_destroy_works_without_loading(
    sessions: Sessions[Any], store: Storage, counting: CountingDriver
) -> None:
    session_id = await started(sessions, a=1)
    counting.calls.clear()
    session = sessions.from_cookie(session_id)
    await session.destroy()
    headers = dict(await sessions.commit(session))
    assert counting.calls == Counter(remove_items=1)
    assert await store.keys() == []
    assert "Max-Age=0" in headers["set-cookie"]
    assert headers["cache-control"] == "no-store"


async def test_set_after_destroy_starts_a_new_session(
    sessions: Sessions[Any], store: Storage
) -> None:
    old = await started(sessions, user="alice")
    session = sessions.from_cookie(old)
    await session.destroy()
    await session.set("theme", "dark")
    headers = dict(await sessions.commit(session))
    assert session.id not in (None, old)
    assert headers["set-cookie"].startswith(f"session={session.id};")
    assert await (await sessions.load(session.id or "")).items() == {"theme": "dark"}
    assert len(await store.keys()) == 1


async def test_destroy_expires_the_cookie_with_the_same_path_and_domain(store: Storage) -> None:
    sessions: Sessions[Any] = Sessions(store, cookie_path="/shop", cookie_domain="example.com")
    session = sessions.from_cookie(None)
    await session.set("a", 1)
    created = dict(await sessions.commit(session))["set-cookie"]
    again = sessions.from_cookie(session.id)
    await again.destroy()
    expired = dict(await sessions.commit(again))["set-cookie"]
    assert "Max-Age=0" in expired
    for attribute in ("Path=/shop", "Domain=example.com", "HttpOnly", "Secure", "SameSite=Lax"):
        assert attribute in created.split("; ")
        assert attribute in expired.split("; ")


async def test_a_cookie_with_a_lifetime_is_refreshed_on_each_write(store: Storage) -> None:
    sessions: Sessions[Any] = Sessions(store, cookie_max_age=600)
    session_id = await started(sessions, a=1)
    writer = sessions.from_cookie(session_id)
    await writer.set("a", 2)
    assert dict(await sessions.commit(writer))["set-cookie"].startswith(
        f"session={session_id}; Max-Age=600;"
    )
    reader = sessions.from_cookie(session_id)
    await reader.get("a")
    assert await sessions.commit(reader) == []


# -- timeouts -------------------------------------------------------------------------------


async def test_idle_timeout_is_enforced_from_stored_timestamps(
    sessions: Sessions[Any], clock: Clock
) -> None:
    session_id = await started(sessions, a=1)
    clock.now += 599
    assert (await sessions.load(session_id)).id == session_id
    clock.now += 600
    replayed = sessions.from_cookie(session_id)
    assert await replayed.get("a") is None
    assert "Max-Age=0" in dict(await sessions.commit(replayed))["set-cookie"]


async def test_absolute_timeout_holds_even_for_an_active_session(
    sessions: Sessions[Any], clock: Clock
) -> None:
    session_id = await started(sessions, n=0)
    for n in range(1, 6):
        clock.now += 590
        session = sessions.from_cookie(session_id)
        await session.set("n", n)
        await sessions.commit(session)
    clock.now += 700  # 3650 s after creation, 700 s since the last write
    assert (await sessions.load(session_id)).id is None


async def test_the_driver_ttl_is_set_as_a_hint(sessions: Sessions[Any], store: Storage) -> None:
    session_id = await started(sessions, a=1)
    ttl = (await store.get_meta(f"session:{storage_digest(session_id)}"))["ttl"]
    assert 590 < ttl <= 600


# -- concurrency ----------------------------------------------------------------------------


async def test_concurrent_changes_to_different_keys_are_both_kept(sessions: Sessions[Any]) -> None:
    session_id = await started(sessions, a=0, b=0)
    first, second = sessions.from_cookie(session_id), sessions.from_cookie(session_id)
    await first.set("a", 1)
    await second.set("b", 2)
    await second.delete("a")  # deleting a key the other request changed: last commit wins
    await sessions.commit(second)
    await sessions.commit(first)
    assert await (await sessions.load(session_id)).items() == {"a": 1, "b": 2}


async def test_a_write_racing_the_commit_is_merged_not_lost(
    sessions: Sessions[Any], counting: CountingDriver
) -> None:
    session_id = await started(sessions, a=0, b=0)
    racer = sessions.from_cookie(session_id)
    await racer.set("b", 2)
    session = sessions.from_cookie(session_id)
    await session.set("a", 1)

    async def race() -> None:
        await sessions.commit(racer)

    counting.before_conditional.append(race)
    await sessions.commit(session)
    assert await (await sessions.load(session_id)).items() == {"a": 1, "b": 2}


async def test_a_request_loaded_before_destroy_cannot_bring_the_session_back(
    sessions: Sessions[Any], store: Storage
) -> None:
    session_id = await started(sessions, user="alice")
    slow = sessions.from_cookie(session_id)
    assert await slow.get("user") == "alice"
    logout = sessions.from_cookie(session_id)
    await logout.destroy()
    await sessions.commit(logout)
    await slow.set("cart", ["late"])
    headers = dict(await sessions.commit(slow))
    assert await store.keys() == []
    assert slow.id is None
    assert "Max-Age=0" in headers["set-cookie"]


async def test_destroy_racing_the_commit_wins(
    sessions: Sessions[Any], counting: CountingDriver, store: Storage
) -> None:
    session_id = await started(sessions, user="alice")
    session = sessions.from_cookie(session_id)
    await session.set("cart", ["late"])

    async def logout() -> None:
        other = sessions.from_cookie(session_id)
        await other.destroy()
        await sessions.commit(other)

    counting.before_conditional.append(logout)
    await sessions.commit(session)
    assert await store.keys() == []


async def test_sessions_over_a_namespace_view_still_write_conditionally(
    store: Storage, counting: CountingDriver
) -> None:
    sessions: Sessions[Any] = Sessions(store.namespace("tenant"))
    session_id = await started(sessions, a=0, b=0)
    assert await store.keys() == [f"tenant:session:{storage_digest(session_id)}"]
    racer = sessions.from_cookie(session_id)
    await racer.set("b", 2)
    session = sessions.from_cookie(session_id)
    await session.set("a", 1)

    async def race() -> None:
        await sessions.commit(racer)

    counting.before_conditional.append(race)
    await sessions.commit(session)
    assert await (await sessions.load(session_id)).items() == {"a": 1, "b": 2}
    assert counting.calls["set_item_conditional"] >= 3


async def test_a_session_that_keeps_conflicting_raises(
    sessions: Sessions[Any], counting: CountingDriver
) -> None:
    session_id = await started(sessions, a=0)
    session = sessions.from_cookie(session_id)
    await session.set("a", 1)

    async def bump() -> None:
        other = sessions.from_cookie(session_id)
        await other.set("b", len(counting.before_conditional))
        await sessions.commit(other)
        counting.before_conditional.append(bump)

    counting.before_conditional.append(bump)
    with pytest.raises(ConflictError):
        await sessions.commit(session)
    counting.before_conditional.clear()


# -- cookies --------------------------------------------------------------------------------


def test_cookie_defaults_are_safe() -> None:
    header = CookieSettings().set_header("ID")
    assert header == "session=ID; Path=/; HttpOnly; Secure; SameSite=Lax"
    assert "Domain" not in header
    assert "Max-Age" not in header  # lives for the browser session


def test_cookie_options_are_reflected() -> None:
    settings = CookieSettings(name="sid", same_site="strict", max_age=60, domain="example.com")
    assert settings.set_header("ID") == (
        "sid=ID; Max-Age=60; Path=/; Domain=example.com; HttpOnly; Secure; SameSite=Strict"
    )
    assert settings.expire_header().endswith(
        "Path=/; Domain=example.com; HttpOnly; Secure; SameSite=Strict"
    )


@pytest.mark.parametrize(
    "options",
    [
        {"name": "__Host-sid", "secure": False},
        {"name": "__Host-sid", "path": "/app"},
        {"name": "__Host-sid", "domain": "example.com"},
        {"name": "__Secure-sid", "secure": False},
        {"same_site": "none", "secure": False},
        {"name": "bad name"},
        {"same_site": "sometimes"},
    ],
)
def test_unsafe_cookie_settings_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"cookie|same_site|Secure"):
        CookieSettings(**options)


def test_a_valid_host_prefixed_cookie_is_accepted() -> None:
    assert CookieSettings(name="__Host-sid").set_header("ID").startswith("__Host-sid=ID;")


def test_secure_can_be_relaxed_for_local_http() -> None:
    assert "Secure" not in CookieSettings(secure=False).set_header("ID")


# -- typing ---------------------------------------------------------------------------------


async def test_session_is_generic_over_a_typed_dict(store: Storage) -> None:
    from typing import TypedDict

    class Cart(TypedDict, total=False):
        items: list[str]

    sessions: Sessions[Cart] = Sessions(store)
    session: Session[Cart] = sessions.from_cookie(None)
    await session.set("items", ["pear"])
    assert await session.get("items") == ["pear"]


def test_the_cookie_is_found_only_under_its_own_name() -> None:
    from sessions.cookies import read_cookie

    assert read_cookie([(b"cookie", b"mysession=1; session=abc; x=2")], "session") == "abc"
    assert read_cookie([(b"cookie", b"a=1;session=z")], "session") == "z"
    assert read_cookie([(b"cookie", b"xsession=1"), (b"cookie", b"session=2")], "session") == "2"
    assert read_cookie([(b"cookie", b"xsession=1")], "session") is None
