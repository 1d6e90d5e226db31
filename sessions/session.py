"""`Session`: one visitor's server-side data, loaded lazily and written at commit."""

from __future__ import annotations

import datetime
import decimal
import logging
import math
import secrets
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Generic, Literal, NamedTuple, NoReturn, Protocol

from .changes import Changes
from .cookies import CookieSettings, read_cookie
from .guard import Awaiting, refuse
from .ids import new_id, storage_digest
from .records import Ended, Moved, Record, Records, Version
from .users import UserIndex

if TYPE_CHECKING:
    from typing_extensions import TypeVar
else:
    from typing import TypeVar

__all__ = ["DataT", "FlashMessage", "Session", "SessionSettings"]

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    DataT = TypeVar("DataT", bound=Mapping[str, object], default=dict[str, Any])
else:
    DataT = TypeVar("DataT", bound=Mapping[str, object])

CookieAction = Literal["set", "expire"] | None

#: Values that cannot change in place; any other value handed out is compared at commit.
_IMMUTABLE = frozenset(
    {str, int, float, bool, type(None), bytes, decimal.Decimal, uuid.UUID}
    | {datetime.datetime, datetime.date, datetime.time, datetime.timedelta}
)


class FlashMessage(NamedTuple):
    """A message left for the next request by `Session.flash`."""

    category: str
    message: Any


class SessionSettings(Protocol):
    """What a `Session` reads from the `Sessions` that made it: settings and the record store."""

    @property
    def cookie(self) -> CookieSettings: ...
    @property
    def records(self) -> Records: ...
    @property
    def users(self) -> UserIndex: ...
    @property
    def idle_timeout(self) -> float: ...
    @property
    def absolute_timeout(self) -> float: ...
    @property
    def touch_interval(self) -> float: ...
    @property
    def regenerate_grace(self) -> float: ...
    @property
    def id_bytes(self) -> int: ...
    @property
    def clock(self) -> Callable[[], float]: ...
    def valid_id(self, value: object) -> bool: ...
    def expired(self, record: Record, now: float) -> bool: ...


class Session(Generic[DataT]):
    """The data of one visitor. Nothing is read until first use; nothing is written until commit.

    `get`/`has`/`keys` load the session on first use; `set`/`delete` record changes that are
    merged into the freshest stored state at commit. A mutable value read with `get` and
    changed in place is saved at commit too, like a `set`. Declare the data's shape with a
    TypedDict, ``Session[CartData]``, and the mypy plugin ``sessions.mypy_plugin`` checks keys
    and values. Every method is a coroutine: synchronous use raises `SessionUsageError`.
    """

    __slots__ = (
        "_accessed",
        "_changes",
        "_cookie",
        "_created",
        "_data",
        "_doomed",
        "_expires",
        "_flashes",
        "_headers",
        "_id",
        "_key",
        "_lent",
        "_loaded",
        "_manager",
        "_moved_from",
        "_new",
        "_presented",
        "_stored",
        "_superseded",
        "_touch",
        "_user",
        "_version",
    )

    def __init__(
        self,
        manager: SessionSettings,
        presented: str | None = None,
        *,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        self._manager = manager
        # Raw request headers are kept and only parsed when the session is used.
        self._headers = headers
        self._presented = presented
        self._id: str | None = None
        # The storage key of `_id` (its digest), kept beside it.
        self._key = ""
        self._loaded = False
        self._stored = False
        self._new = False
        self._touch = False
        # A concurrent request gave this session's ID a successor: nothing here is written.
        self._superseded = False
        self._version: Version | None = None
        self._data: dict[str, Any] = {}
        self._expires: dict[str, float] = {}
        self._flashes: list[tuple[str, str, Any]] = []
        self._user: str | None = None
        self._changes = Changes()
        # Snapshots of mutable values handed out, to notice changes made in place.
        self._lent: dict[str, bytes] = {}
        self._created = 0.0
        self._accessed = 0.0
        # Storage keys to remove at commit; the record to retire once its successor exists.
        self._doomed: list[str] = []
        self._moved_from: tuple[str, Version | None] | None = None
        self._cookie: CookieAction = None

    @property
    def id(self) -> str | None:
        """The session ID once the session is known to exist (loaded or created), else None."""
        return self._id

    @property
    def handle(self) -> str | None:
        """The name of this session in `Sessions.user_sessions` (never its ID), once it exists."""
        return self._key if self._id is not None else None

    @property
    def user_id(self) -> str | None:
        """The user `login` recorded, once the session is loaded."""
        return self._user

    @property
    def used(self) -> bool:
        """True when this request loaded, changed, regenerated or destroyed the session."""
        return self._loaded or bool(self._doomed) or self._cookie is not None

    @property
    def pending(self) -> bool:
        """True when changes await a commit (data, a new ID, or entries to remove)."""
        return bool(self._changes or self._new or self._doomed or self._cookie)

    # -- reading ------------------------------------------------------------------------------

    async def ensure_loaded(self) -> None:
        """Read the stored session now, unless done already (the data methods do it on first use).

        Strict: an unknown or expired ID is not adopted (``id`` stays None) and its cookie is
        expired at commit unless a new session replaces it. An ID that a concurrent request
        has just replaced (`regenerate`, `login`) reads as empty and leaves the cookie alone.
        """
        if self._loaded:
            return
        self._loaded = True
        presented = self._presented_id()
        if presented is None:
            return
        manager = self._manager
        # Where the driver has conditional writes the version is read too, so that a commit
        # writes in one step when nobody else changed the record meanwhile.
        key = storage_digest(presented)
        record, version = await manager.records.read(key)
        now = manager.clock()
        if isinstance(record, Moved) and record.until > now:
            self._superseded = True
            return
        if not isinstance(record, Record) or manager.expired(record, now):
            if record is not None:
                self._doomed.append(key)
            self._cookie = "expire"
            return
        record.drop_expired(now)
        self._id = presented
        self._key = key
        self._stored = True
        self._version = version
        self._data = record.data
        self._expires = record.expires
        self._flashes = record.flashes
        self._user = record.user
        self._created = record.created
        self._accessed = record.accessed
        self._touch = now - record.accessed >= manager.touch_interval

    def _presented_id(self) -> str | None:
        """The well-formed ID the client sent, if any (malformed values are already dropped)."""
        if self._headers is not None:
            value = read_cookie(self._headers, self._manager.cookie.name)
            self._headers = None
            self._presented = value if self._manager.valid_id(value) else None
        return self._presented

    def _live(self, key: str) -> bool:
        """True when ``key`` holds a value whose own deadline (if any) has not passed."""
        if key not in self._data:
            return False
        deadline = self._expires.get(key)
        if deadline is not None and deadline <= self._manager.clock():
            del self._data[key], self._expires[key]
            return False
        return True

    def _lend(self, key: str, value: Any) -> Any:
        """Hand out ``value``; a mutable one is remembered to notice changes made in place."""
        if type(value) not in _IMMUTABLE and key not in self._lent:
            self._lent[key] = self._manager.records.encode(key, value)
        return value

    def get(self, key: str, default: Any = None) -> Awaiting[Any]:
        """The value stored at ``key``, or ``default``."""
        return Awaiting(self._get(key, default), "get(...)")

    async def _get(self, key: str, default: Any) -> Any:
        if not self._loaded:
            await self.ensure_loaded()
        return self._lend(key, self._data[key]) if self._live(key) else default

    def has(self, key: str) -> Awaiting[bool]:
        """True when ``key`` holds a value."""
        return Awaiting(self._has(key), "has(...)")

    async def _has(self, key: str) -> bool:
        await self.ensure_loaded()
        return self._live(key)

    def keys(self) -> Awaiting[list[str]]:
        """The keys this session holds."""
        return Awaiting(self._keys(), "keys()")

    async def _keys(self) -> list[str]:
        await self.ensure_loaded()
        return [key for key in list(self._data) if self._live(key)]

    def items(self) -> Awaiting[dict[str, Any]]:
        """A copy of every key and value this session holds."""
        return Awaiting(self._items(), "items()")

    async def _items(self) -> dict[str, Any]:
        return {key: self._lend(key, self._data[key]) for key in await self._keys()}

    # -- changing -----------------------------------------------------------------------------

    async def set(self, key: str, value: Any, *, ttl: float | None = None) -> None:
        """Store ``value`` at ``key``; the session (and its cookie) is created if needed.

        ``ttl`` seconds: the key expires on its own then, inside a live session (Astro's
        ``session.set(key, value, {ttl})``). Raises `storage.SerializationError` naming the
        key when the value cannot be stored.
        """
        self._manager.records.check(key, value)
        deadline = None
        if ttl is not None:
            if not (isinstance(ttl, (int, float)) and ttl > 0 and math.isfinite(ttl)):
                raise ValueError(f"ttl is a finite number of seconds > 0, not {ttl!r}")
            deadline = self._manager.clock() + ttl
        if not self._loaded:
            await self.ensure_loaded()
        self._begin()
        self._data[key] = value
        if deadline is None:
            self._expires.pop(key, None)
        else:
            self._expires[key] = deadline
        self._changes.set(key, value, deadline)
        self._lent.pop(key, None)

    async def delete(self, key: str) -> None:
        """Remove ``key``; a missing key is fine."""
        await self.ensure_loaded()
        if key in self._data:
            del self._data[key]
            self._expires.pop(key, None)
            self._lent.pop(key, None)
            if self._id is not None:
                self._changes.delete(key)

    async def flash(self, message: Any, category: str = "message") -> None:
        """Leave ``message`` for the next request that reads `flashes` (read once)."""
        self._manager.records.check(category, message)
        await self.ensure_loaded()
        self._begin()
        self._changes.added.append((secrets.token_urlsafe(6), category, message))

    async def flashes(self, category: str | None = None) -> list[FlashMessage]:
        """The flash messages left so far (of ``category`` only, if given), oldest first; each is
        returned once, then gone."""
        await self.ensure_loaded()
        taken = self._changes.taken
        found: list[FlashMessage] = []
        for flash_id, kind, message in (*self._flashes, *self._changes.added):
            if flash_id not in taken and (category is None or kind == category):
                taken.add(flash_id)
                found.append(FlashMessage(kind, message))
        return found

    async def login(self, user_id: str) -> None:
        """Mark the visitor as ``user_id``, under a new ID (data kept), and index the session so
        that `Sessions.user_sessions` lists it and `Sessions.revoke_all` can end it."""
        if not isinstance(user_id, str) or not user_id:
            raise ValueError("user_id is a non-empty string")
        await self.regenerate()
        if not self._superseded:
            self._user = user_id

    async def regenerate(self) -> None:
        """Give the session a new ID (keeping its data); the old entry is retired at commit."""
        await self.ensure_loaded()
        if self._superseded:
            return
        if self._id is not None and self._stored:
            self._moved_from = (self._key, self._version)
        created = self._created if self._id is not None else 0.0
        self._start()
        if created:
            # The absolute timeout counts from the first creation, not from the new ID.
            self._created = created

    async def destroy(self) -> None:
        """Remove the session's data and expire its cookie; needs no prior load."""
        if self._loaded:
            target = self._key if self._id is not None else None
        else:
            presented = self._presented_id()
            target = storage_digest(presented) if presented is not None else None
        if self._superseded and self._presented is not None:
            target = storage_digest(self._presented)
        for key in (target, self._moved_from[0] if self._moved_from else None):
            if key is not None and key not in self._doomed:
                self._doomed.append(key)
        if self._user is not None and target is not None:
            self._doomed.append(self._manager.users.key(self._user, target))
        self._id = None
        self._loaded = True
        self._stored = self._new = self._touch = self._superseded = False
        self._version = self._moved_from = self._user = None
        self._data, self._expires, self._flashes = {}, {}, []
        self._changes, self._lent = Changes(), {}
        self._cookie = "expire"

    def _begin(self) -> None:
        """Make sure a session exists to change (not when a successor replaced it)."""
        if self._id is None and not self._superseded:
            self._start()

    def _start(self) -> None:
        """Take a brand-new ID; the current data becomes the new record."""
        now = self._manager.clock()
        self._id = new_id(self._manager.id_bytes)
        self._key = storage_digest(self._id)
        self._new = True
        self._stored = False
        self._version = None
        self._created = now
        self._accessed = now
        self._cookie = "set"

    # -- committing ---------------------------------------------------------------------------

    async def commit(self) -> list[tuple[str, str]]:
        """Write what this session changed; return the response headers to add (Set-Cookie...).

        Raises `storage.StorageError` when the backend fails, so the app answers with an error
        instead of silently dropping the visitor's session.
        """
        if not self.used:
            return []
        if self._superseded:
            if self.pending or self._lent:
                logger.warning(
                    "session changes were dropped: a concurrent request had already given "
                    "this session a new ID (regenerate or login)"
                )
            self._changes, self._lent, self._cookie = Changes(), {}, None
            return []
        wrote = False
        if self._id is not None:
            self._changed_in_place()
            if self._new or self._changes or self._touch:
                wrote = await self._write()
        if self._doomed:
            await self._manager.records.remove(self._doomed)
            self._doomed.clear()
        self._changes.clear()
        self._lent.clear()
        self._touch = False
        return self._response_headers(wrote)

    def _changed_in_place(self) -> None:
        """Turn values handed out and changed since into changes, like a `set`."""
        encode = self._manager.records.encode
        for key, before in self._lent.items():
            if key in self._data and key not in self._changes.data:
                value = self._data[key]
                if encode(key, value) != before:
                    self._changes.set(key, value, self._expires.get(key))

    def _ttl(self, record: Record, now: float) -> float:
        """Seconds the record may live: a hint for drivers that expire keys themselves.

        The session's own deadline (idle, absolute); and when every key has a deadline of its
        own (and no user or flash message holds the session), the latest of them.
        """
        manager = self._manager
        seconds = min(manager.idle_timeout, record.created + manager.absolute_timeout - now)
        # Deadlines are kept for keys that hold values only: as many deadlines as keys means
        # every key has one.
        if (
            record.expires
            and len(record.expires) == len(record.data)
            and record.user is None
            and not record.flashes
        ):
            seconds = min(seconds, max(record.expires.values()) - now)
        return max(seconds, 0.001)

    def _current(self, now: float) -> Record:
        """The record as this request sees it."""
        record = Record(
            self._created,
            now,
            self._data,
            self._expires,
            self._changes.flashes(self._flashes),
            self._user,
        )
        record.drop_expired(now)
        return record

    async def _write(self) -> bool:
        """Create or update the record; False when it vanished (destroyed or expired)."""
        if self._new:
            return await self._create()
        version, self._version = self._version, None
        first = None
        if version is not None and version.etag is not None:
            # Unchanged since the load (same version): the loaded state is the fresh state.
            now = self._manager.clock()
            record = self._current(now)
            first = record, self._ttl(record, now)
        written = await self._manager.records.update(
            self._key, self._merged, first=first, version=version
        )
        if not isinstance(written, Record):
            # Never bring a destroyed or expired session back; one that a concurrent request
            # has given a new ID keeps the cookie that request set.
            self._id = None
            self._cookie = "expire" if written is Ended.GONE else None
            return False
        self._adopt(written)
        return True

    async def _create(self) -> bool:
        """Write the record of a new ID (and its user's index entry), then retire the old one:
        a session ended meanwhile is not carried over (the new record is rolled back)."""
        manager = self._manager
        now = manager.clock()
        record = self._current(now)
        await manager.records.create(self._key, record, self._ttl(record, now))
        self._new = False
        self._stored = True
        self._adopt(record)
        created = [self._key]
        if record.user is not None:
            await manager.users.add(
                record.user, self._key, record.created + manager.absolute_timeout - now
            )
            created.append(manager.users.key(record.user, self._key))
        if self._moved_from is None:
            return True
        (old, version), self._moved_from = self._moved_from, None
        grace = manager.regenerate_grace
        marker = Moved(now + grace), grace
        outcome = await manager.records.update(
            old, lambda stored: marker, first=marker, version=version
        )
        if isinstance(outcome, Moved):
            return True
        await manager.records.remove(created)
        self._id = None
        self._stored = False
        self._cookie = "expire" if outcome is Ended.GONE else None
        return False

    def _adopt(self, record: Record) -> None:
        self._data = record.data
        self._expires = record.expires
        self._flashes = record.flashes
        self._accessed = record.accessed

    def _merged(self, stored: Record) -> tuple[Record, float] | None:
        """The stored record with this request's changes applied; None once it has expired."""
        now = self._manager.clock()
        if self._manager.expired(stored, now):
            return None
        merged = self._changes.apply(stored, now)
        return merged, self._ttl(merged, now)

    def _response_headers(self, wrote: bool) -> list[tuple[str, str]]:
        action, self._cookie = self._cookie, None
        cookie = self._manager.cookie
        if action == "set" and self._id is not None:
            value = cookie.set_header(self._id)
        elif action == "expire":
            value = cookie.expire_header()
        elif wrote and cookie.max_age is not None and self._id is not None:
            # A cookie with a lifetime is refreshed whenever the record was written.
            value = cookie.set_header(self._id)
        else:
            return []
        return [("set-cookie", value), ("cache-control", "no-store")]

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
        state = "loaded" if self._loaded else "lazy"
        return f"<Session {state} keys={len(self._data)}>"
