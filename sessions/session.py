"""`Session`: one visitor's server-side data, loaded lazily and written at commit."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol

from .cookies import CookieSettings, read_cookie
from .ids import new_id, storage_digest
from .records import Record, Records, Version, Write

if TYPE_CHECKING:
    from typing_extensions import TypeVar
else:
    from typing import TypeVar

__all__ = ["DataT", "Session", "SessionSettings"]

if TYPE_CHECKING:
    DataT = TypeVar("DataT", bound=Mapping[str, object], default=dict[str, Any])
else:
    DataT = TypeVar("DataT", bound=Mapping[str, object])

#: Marks a key deleted in `Session._changes`.
_DELETED: Any = object()

CookieAction = Literal["set", "expire"] | None


class SessionSettings(Protocol):
    """What a `Session` reads from the `Sessions` that made it: settings and the record store."""

    @property
    def cookie(self) -> CookieSettings: ...
    @property
    def records(self) -> Records: ...
    @property
    def idle_timeout(self) -> float: ...
    @property
    def absolute_timeout(self) -> float: ...
    @property
    def touch_interval(self) -> float: ...
    @property
    def id_bytes(self) -> int: ...
    @property
    def clock(self) -> Callable[[], float]: ...
    def valid_id(self, value: object) -> bool: ...


class Session(Generic[DataT]):
    """The data of one visitor. Nothing is read until first use; nothing is written until commit.

    `get`/`has`/`keys` load the session on first use; `set`/`delete` record changes that are
    merged into the freshest stored state at commit. Declare the data's shape with a TypedDict,
    ``Session[CartData]``, and the mypy plugin ``sessions.mypy_plugin`` checks keys and values.
    """

    __slots__ = (
        "_accessed",
        "_changes",
        "_cookie",
        "_created",
        "_data",
        "_doomed",
        "_headers",
        "_id",
        "_key",
        "_loaded",
        "_manager",
        "_new",
        "_presented",
        "_stored",
        "_touch",
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
        self._version: Version | None = None
        self._data: dict[str, Any] = {}
        self._changes: dict[str, Any] = {}
        self._created = 0.0
        self._accessed = 0.0
        self._doomed: list[str] = []
        self._cookie: CookieAction = None

    @property
    def id(self) -> str | None:
        """The session ID once the session is known to exist (loaded or created), else None."""
        return self._id

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
        expired at commit unless a new session replaces it.
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
        if record is None or self._expired(record, now):
            if record is not None:
                self._doomed.append(presented)
            self._cookie = "expire"
            return
        self._id = presented
        self._key = key
        self._stored = True
        self._version = version
        self._data = record.data
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

    def _expired(self, record: Record, now: float) -> bool:
        manager = self._manager
        return (
            now - record.accessed >= manager.idle_timeout
            or now - record.created >= manager.absolute_timeout
        )

    async def get(self, key: str, default: Any = None) -> Any:
        """The value stored at ``key``, or ``default``."""
        if not self._loaded:
            await self.ensure_loaded()
        return self._data.get(key, default)

    async def has(self, key: str) -> bool:
        """True when ``key`` holds a value."""
        await self.ensure_loaded()
        return key in self._data

    async def keys(self) -> list[str]:
        """The keys this session holds."""
        await self.ensure_loaded()
        return list(self._data)

    async def items(self) -> dict[str, Any]:
        """A copy of every key and value this session holds."""
        await self.ensure_loaded()
        return dict(self._data)

    # -- changing -----------------------------------------------------------------------------

    async def set(self, key: str, value: Any) -> None:
        """Store ``value`` at ``key``; the session (and its cookie) is created if needed.

        Raises `storage.SerializationError` naming the key when the value cannot be stored.
        """
        self._manager.records.check(key, value)
        if not self._loaded:
            await self.ensure_loaded()
        if self._id is None:
            self._start()
        self._data[key] = value
        self._changes[key] = value

    async def delete(self, key: str) -> None:
        """Remove ``key``; a missing key is fine."""
        await self.ensure_loaded()
        if key in self._data:
            del self._data[key]
            if self._id is not None:
                self._changes[key] = _DELETED

    async def regenerate(self) -> None:
        """Give the session a new ID (keeping its data); the old entry is removed at commit."""
        await self.ensure_loaded()
        if self._id is not None and self._stored:
            self._doomed.append(self._id)
        created = self._created if self._id is not None else 0.0
        self._start()
        if created:
            # The absolute timeout counts from the first creation, not from the new ID.
            self._created = created

    async def destroy(self) -> None:
        """Remove the session's data and expire its cookie; needs no prior load."""
        target = self._id if self._loaded else self._presented_id()
        if target is not None and target not in self._doomed:
            self._doomed.append(target)
        self._id = None
        self._loaded = True
        self._stored = False
        self._new = False
        self._touch = False
        self._version = None
        self._data = {}
        self._changes = {}
        self._cookie = "expire"

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
        self._changes = dict(self._data)
        self._cookie = "set"

    # -- committing ---------------------------------------------------------------------------

    async def commit(self) -> list[tuple[str, str]]:
        """Write what this session changed; return the response headers to add (Set-Cookie...).

        Raises `storage.StorageError` when the backend fails, so the app answers with an error
        instead of silently dropping the visitor's session.
        """
        if not self.used:
            return []
        wrote = False
        if self._id is not None and (self._new or self._changes or self._touch):
            wrote = await self._write()
        if self._doomed:
            await self._manager.records.remove(storage_digest(gone) for gone in self._doomed)
            self._doomed.clear()
        self._changes = {}
        self._touch = False
        return self._response_headers(wrote)

    def _ttl(self, created: float, now: float) -> float:
        """Seconds the record may live: a hint for drivers that expire keys themselves."""
        manager = self._manager
        return max(min(manager.idle_timeout, created + manager.absolute_timeout - now), 0.001)

    async def _write(self) -> bool:
        """Create or update the record; False when it vanished (destroyed or expired)."""
        manager = self._manager
        key = self._key
        if self._new:
            now = manager.clock()
            record = Record(self._created, now, self._data)
            await manager.records.create(key, record, self._ttl(self._created, now))
            self._new = False
            self._stored = True
            self._accessed = now
            return True
        version, self._version = self._version, None
        first: Write | None = None
        if version is not None and version.etag is not None:
            # Unchanged since the load (same version): the loaded state is the fresh state.
            now = manager.clock()
            first = Record(self._created, now, self._data), self._ttl(self._created, now)
        written = await manager.records.update(key, self._merged, first=first, version=version)
        if written is None:
            # Never bring a destroyed or expired session back.
            self._id = None
            self._cookie = "expire"
            return False
        self._data = written.data
        self._accessed = written.accessed
        return True

    def _merged(self, stored: Record) -> Write | None:
        """The stored record with this request's changes applied; None once it has expired."""
        now = self._manager.clock()
        if self._expired(stored, now):
            return None
        merged = Record(stored.created, now, _apply(stored.data, self._changes.items()))
        return merged, self._ttl(stored.created, now)

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

    def __repr__(self) -> str:
        state = "loaded" if self._loaded else "lazy"
        return f"<Session {state} keys={len(self._data)}>"


def _apply(data: dict[str, Any], changes: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    merged = dict(data)
    for name, value in changes:
        if value is _DELETED:
            merged.pop(name, None)
        else:
            merged[name] = value
    return merged
