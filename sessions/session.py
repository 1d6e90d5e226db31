"""`Session`: one visitor's server-side data, loaded lazily and written at commit.

The state of one request's session is a `sessions.state.SessionState`; reading it in is
`sessions.loading`, writing it back `sessions.commit`, per-key deadlines `sessions.expiry`,
and values changed in place `sessions.inplace`. This module is the public face over them.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, NoReturn

from .changes import Changes
from .commit import commit
from .expiry import deadline, live
from .guard import Awaiting, refuse
from .ids import storage_digest
from .inplace import lend
from .loading import load, presented_id
from .state import SessionSettings, SessionState

if TYPE_CHECKING:
    from typing_extensions import TypeVar
else:
    from typing import TypeVar

__all__ = ["DataT", "FlashMessage", "Session", "SessionSettings"]

if TYPE_CHECKING:
    DataT = TypeVar("DataT", bound=Mapping[str, object], default=dict[str, Any])
else:
    DataT = TypeVar("DataT", bound=Mapping[str, object])


class FlashMessage(NamedTuple):
    """A message left for the next request by `Session.flash`."""

    category: str
    message: Any


class Session(Generic[DataT]):
    """The data of one visitor. Nothing is read until first use; nothing is written until commit.

    `get`/`has`/`keys` load the session on first use; `set`/`delete` record changes that are
    merged into the freshest stored state at commit. A mutable value read with `get` and
    changed in place is saved at commit too, like a `set`. Declare the data's shape with a
    TypedDict, ``Session[CartData]``, and the mypy plugin ``sessions.mypy_plugin`` checks keys
    and values. Every method is a coroutine: synchronous use raises `SessionUsageError`.
    """

    __slots__ = ("_settings", "_state")

    def __init__(
        self,
        manager: SessionSettings,
        presented: str | None = None,
        *,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        self._settings = manager
        # Raw request headers are kept and only parsed when the session is used.
        self._state = SessionState(presented, headers)

    @property
    def id(self) -> str | None:
        """The session ID once the session is known to exist (loaded or created), else None."""
        return self._state.id

    @property
    def handle(self) -> str | None:
        """The name of this session in `Sessions.user_sessions` (never its ID), once it exists."""
        state = self._state
        return state.key if state.id is not None else None

    @property
    def user_id(self) -> str | None:
        """The user `login` recorded, once the session is loaded."""
        return self._state.user

    @property
    def used(self) -> bool:
        """True when this request loaded, changed, regenerated or destroyed the session."""
        state = self._state
        return state.loaded or bool(state.doomed) or state.cookie is not None

    @property
    def pending(self) -> bool:
        """True when changes await a commit (data, a new ID, or entries to remove)."""
        return self._state.pending

    # -- reading ------------------------------------------------------------------------------

    async def ensure_loaded(self) -> None:
        """Read the stored session now, unless done already (the data methods do it on first use).

        Strict: an unknown or expired ID is not adopted (``id`` stays None) and its cookie is
        expired at commit unless a new session replaces it. An ID that a concurrent request
        has just replaced (`regenerate`, `login`) reads as empty and leaves the cookie alone.
        """
        if not self._state.loaded:
            await load(self._state, self._settings)

    def get(self, key: str, default: Any = None) -> Awaiting[Any]:
        """The value stored at ``key``, or ``default``."""
        return Awaiting(self._get(key, default), "get(...)")

    async def _get(self, key: str, default: Any) -> Any:
        state = self._state
        if not state.loaded:
            await load(state, self._settings)
        data = state.data
        if key not in data or (state.expires and not live(state, self._settings, key)):
            return default
        return lend(state, self._settings, key, data[key])

    def has(self, key: str) -> Awaiting[bool]:
        """True when ``key`` holds a value."""
        return Awaiting(self._has(key), "has(...)")

    async def _has(self, key: str) -> bool:
        state = self._state
        if not state.loaded:
            await load(state, self._settings)
        return live(state, self._settings, key)

    def keys(self) -> Awaiting[list[str]]:
        """The keys this session holds."""
        return Awaiting(self._keys(), "keys()")

    async def _keys(self) -> list[str]:
        state = self._state
        if not state.loaded:
            await load(state, self._settings)
        return [key for key in list(state.data) if live(state, self._settings, key)]

    def items(self) -> Awaiting[dict[str, Any]]:
        """A copy of every key and value this session holds."""
        return Awaiting(self._items(), "items()")

    async def _items(self) -> dict[str, Any]:
        state, settings = self._state, self._settings
        return {key: lend(state, settings, key, state.data[key]) for key in await self._keys()}

    # -- changing -----------------------------------------------------------------------------

    async def set(self, key: str, value: Any, *, ttl: float | None = None) -> None:
        """Store ``value`` at ``key``; the session (and its cookie) is created if needed.

        ``ttl`` seconds: the key expires on its own then, inside a live session (Astro's
        ``session.set(key, value, {ttl})``). Raises `storage.SerializationError` naming the
        key when the value cannot be stored.
        """
        settings, state = self._settings, self._state
        settings.records.check(key, value)
        at = None if ttl is None else deadline(ttl, settings.clock())
        if not state.loaded:
            await load(state, settings)
        if state.id is None:
            state.begin(settings)
        state.data[key] = value
        if at is not None:
            state.expires[key] = at
        elif state.expires:
            state.expires.pop(key, None)
        changes = state.changes
        if changes is None:
            changes = state.changes = Changes()
        changes.set(key, value, at)
        if state.lent:
            state.lent.pop(key, None)

    async def delete(self, key: str) -> None:
        """Remove ``key``; a missing key is fine."""
        state = self._state
        if not state.loaded:
            await load(state, self._settings)
        if key in state.data:
            del state.data[key]
            state.expires.pop(key, None)
            if state.lent:
                state.lent.pop(key, None)
            if state.id is not None:
                state.changing().delete(key)

    async def flash(self, message: Any, category: str = "message") -> None:
        """Leave ``message`` for the next request that reads `flashes` (read once)."""
        settings, state = self._settings, self._state
        settings.records.check(category, message)
        await self.ensure_loaded()
        state.begin(settings)
        state.changing().added.append((secrets.token_urlsafe(6), category, message))

    async def flashes(self, category: str | None = None) -> list[FlashMessage]:
        """The flash messages left so far (of ``category`` only, if given), oldest first; each is
        returned once, then gone."""
        await self.ensure_loaded()
        state = self._state
        if not state.flashes and state.changes is None:
            return []
        return [
            FlashMessage(kind, message)
            for kind, message in state.changing().take(state.flashes, category)
        ]

    async def login(self, user_id: str) -> None:
        """Mark the visitor as ``user_id``, under a new ID (data kept), and index the session so
        that `Sessions.user_sessions` lists it and `Sessions.revoke_all` can end it."""
        if not isinstance(user_id, str) or not user_id:
            raise ValueError("user_id is a non-empty string")
        await self.regenerate()
        if not self._state.superseded:
            self._state.user = user_id

    async def regenerate(self) -> None:
        """Give the session a new ID (keeping its data); the old entry is retired at commit."""
        await self.ensure_loaded()
        state = self._state
        if state.superseded:
            return
        if state.id is not None and state.stored:
            state.moved_from = (state.key, state.version)
        created = state.created if state.id is not None else 0.0
        state.start(self._settings)
        if created:
            # The absolute timeout counts from the first creation, not from the new ID.
            state.created = created

    async def destroy(self) -> None:
        """Remove the session's data and expire its cookie; needs no prior load."""
        state, settings = self._state, self._settings
        if state.loaded:
            target = state.key if state.id is not None else None
        else:
            presented = presented_id(state, settings)
            target = storage_digest(presented) if presented is not None else None
        if state.superseded and state.presented is not None:
            target = storage_digest(state.presented)
        doomed = state.doomed
        for key in (target, state.moved_from[0] if state.moved_from else None):
            if key is not None and key not in doomed:
                doomed.append(key)
        if state.user is not None and target is not None:
            doomed.append(settings.users.key(state.user, target))
        state.forget()
        state.cookie = "expire"

    # -- committing ---------------------------------------------------------------------------

    async def commit(self) -> list[tuple[str, str]]:
        """Write what this session changed; return the response headers to add (Set-Cookie...).

        Raises `storage.StorageError` when the backend fails, so the app answers with an error
        instead of silently dropping the visitor's session.
        """
        if not self.used:
            return []
        return await commit(self._state, self._settings)

    # -- synchronous use, refused loudly --------------------------------------------------------

    def __getitem__(self, key: str) -> NoReturn:
        refuse("get(key)")

    def __setitem__(self, key: str, value: Any) -> NoReturn:
        refuse("set(key, value)")

    def __delitem__(self, key: str) -> NoReturn:
        refuse("delete(key)")

    def __contains__(self, key: object) -> bool:
        refuse("has(key)")

    def __iter__(self) -> NoReturn:
        refuse("keys()")

    def __len__(self) -> int:
        refuse("keys()")

    def __bool__(self) -> bool:
        return True

    # The dict methods a Starlette user reaches for; explicit, because a `__getattr__` hook
    # would slow every attribute access of the class.
    def pop(self, *args: Any) -> NoReturn:
        refuse("delete(key)")

    def update(self, *args: Any, **kwargs: Any) -> NoReturn:
        refuse("set(key, value)")

    def setdefault(self, *args: Any) -> NoReturn:
        refuse("set(key, value)")

    def clear(self) -> NoReturn:
        refuse("destroy()")

    def values(self) -> NoReturn:
        refuse("items()")

    def __repr__(self) -> str:
        state = self._state
        return f"<Session {'loaded' if state.loaded else 'lazy'} keys={len(state.data)}>"
