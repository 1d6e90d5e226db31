"""`Sessions`: configuration and lifecycle (load, commit) of every session of one app."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from typing import Any, Generic

from storage import (
    ConflictError,
    Driver,
    SerializationError,
    Storage,
    normalize_base,
)

from .cookies import CookieSettings, SameSite
from .ids import MIN_ID_BYTES, is_valid_id, new_id, storage_digest
from .session import _DELETED, DataT, Session

__all__ = ["Sessions"]

logger = logging.getLogger(__name__)

_RECORD_VERSION = 1
_MERGE_ATTEMPTS = 8


class _Record:
    """A decoded stored session: timestamps and data."""

    __slots__ = ("accessed", "created", "data")

    def __init__(self, created: float, accessed: float, data: dict[str, Any]) -> None:
        self.created = created
        self.accessed = accessed
        self.data = data


class _Place:
    """Where one session entry lives: its driver, and its key in the namespace, in the driver
    and in the root storage."""

    __slots__ = ("conditional", "driver", "full", "key", "relative")

    def __init__(self, driver: Driver, key: str, relative: str, full: str) -> None:
        self.driver = driver
        self.key = key
        self.relative = relative
        self.full = full
        self.conditional = driver.capabilities.conditional


class Sessions(Generic[DataT]):
    """How sessions are stored, identified, timed out and sent to the client.

    One session is one value at ``<namespace>:<sha256 of the ID>`` in ``storage``. Defaults
    follow OWASP: 256-bit IDs, strict (unknown IDs are never adopted), 30 min idle and 8 h
    absolute timeouts enforced from stored timestamps, HttpOnly + Secure + SameSite=Lax cookie.
    """

    def __init__(
        self,
        storage: Storage,
        *,
        namespace: str = "session",
        cookie_name: str = "session",
        secure: bool = True,
        same_site: SameSite = "lax",
        cookie_path: str = "/",
        cookie_domain: str | None = None,
        cookie_max_age: int | None = None,
        idle_timeout: float = 30 * 60,
        absolute_timeout: float = 8 * 60 * 60,
        touch_interval: float | None = None,
        id_bytes: int = 32,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if id_bytes < MIN_ID_BYTES:
            raise ValueError(f"id_bytes must be at least {MIN_ID_BYTES} (128 bits)")
        for label, value in (
            ("idle_timeout", idle_timeout),
            ("absolute_timeout", absolute_timeout),
        ):
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{label} must be a finite number of seconds > 0")
        if touch_interval is None:
            touch_interval = min(60.0, idle_timeout / 2)
        if not 0 <= touch_interval < idle_timeout:
            raise ValueError("touch_interval must be >= 0 and shorter than idle_timeout")
        self.storage = storage.namespace(namespace)
        self._prefix = normalize_base(namespace)
        self.cookie = CookieSettings(
            name=cookie_name,
            secure=secure,
            same_site=same_site,
            path=cookie_path,
            domain=cookie_domain,
            max_age=cookie_max_age,
        )
        self.idle_timeout = float(idle_timeout)
        self.absolute_timeout = float(absolute_timeout)
        self.touch_interval = float(touch_interval)
        self.id_bytes = id_bytes
        self.clock = clock
        self._dumps = storage.serializer.dumps
        # Versions are read straight from the driver until that proves wrong (see `_read`).

    # -- creating Session objects -----------------------------------------------------------------

    def valid_id(self, value: object) -> bool:
        """True when ``value`` is shaped like an ID this app issues (no storage call)."""
        return is_valid_id(value, self.id_bytes)

    def from_headers(self, headers: list[tuple[bytes, bytes]]) -> Session[DataT]:
        """A lazy session for raw ASGI request headers; the cookie is parsed on first use."""
        return Session(self, headers=headers)

    def from_cookie(self, value: str | None) -> Session[DataT]:
        """A lazy session for a cookie value read by other means; malformed values are dropped."""
        return Session(self, value if self.valid_id(value) else None)

    async def load(self, session_id: str) -> Session[DataT]:
        """Resume the session ``session_id`` now (say, from a WebSocket handshake).

        Strict like cookies: an unknown or expired ID gives an empty session whose ``id`` is None.
        """
        session = self.from_cookie(session_id)
        await self._load_into(session)
        return session

    # -- reading --------------------------------------------------------------------------------

    def _key(self, session_id: str) -> str:
        return storage_digest(session_id)

    def _check_value(self, key: str, value: Any) -> None:
        if not isinstance(key, str) or not key:
            raise TypeError(f"session keys are non-empty strings, not {key!r}")
        try:
            self._dumps(value)
        except Exception as exc:
            raise SerializationError(
                f"session value {type(value).__name__} cannot be stored: {exc}", key=key
            ) from exc

    async def _read(
        self, key: str, place: _Place | None = None
    ) -> tuple[_Record | None, str | None]:
        """The record at ``key``; with ``place`` on a conditional driver, its etag too."""
        try:
            if place is not None and place.conditional:
                raw, etag = await self.storage.get_item_with_etag(key)
            else:
                raw, etag = await self.storage.get_item(key), None
        except SerializationError:
            logger.warning("a stored session could not be decoded; starting a new one")
            return None, None
        return self._parse(raw), etag

    def _place(self, key: str) -> _Place:
        mount = self.storage.get_mount(key)
        full = self._prefix + key
        return _Place(mount.driver, key, full[len(mount.base) :], full)

    @staticmethod
    def _parse(raw: Any) -> _Record | None:
        if raw is None:
            return None
        if (
            isinstance(raw, dict)
            and raw.get("v") == _RECORD_VERSION
            and isinstance(raw.get("data"), dict)
            and isinstance(raw.get("created"), (int, float))
            and isinstance(raw.get("accessed"), (int, float))
        ):
            return _Record(float(raw["created"]), float(raw["accessed"]), raw["data"])
        logger.warning("a stored session has an unknown shape; starting a new one")
        return None

    def _expired(self, record: _Record, now: float) -> bool:
        return (
            now - record.accessed >= self.idle_timeout
            or now - record.created >= self.absolute_timeout
        )

    async def _load_into(self, session: Session[DataT]) -> None:
        session._loaded = True
        presented = session._presented_id()
        if presented is None:
            return
        key = self._key(presented)
        place = self._place(key)
        # On drivers with conditional writes the version is read too, so that a commit can
        # write in one step when nobody else changed the entry meanwhile.
        record, version = await self._read(key, place)
        now = self.clock()
        if record is None or self._expired(record, now):
            if record is not None:
                session._doomed.append(presented)
            # Strict: the ID is not adopted; the stale cookie is removed unless a new one is set.
            session._cookie = "expire"
            return
        session._id = presented
        session._stored = True
        session._place = place
        session._version = version
        session._data = record.data
        session._created = record.created
        session._accessed = record.accessed
        session._touch = now - record.accessed >= self.touch_interval

    def _start(self, session: Session[DataT]) -> None:
        """Give ``session`` a brand-new ID; its current data becomes the new entry."""
        now = self.clock()
        session._id = new_id(self.id_bytes)
        session._new = True
        session._stored = False
        session._version = None
        session._place = None
        session._created = now
        session._accessed = now
        session._changes = dict(session._data)
        session._cookie = "set"

    # -- writing --------------------------------------------------------------------------------

    def _ttl(self, place: _Place, created: float, now: float) -> float | None:
        """Seconds the entry may live: a hint for drivers that expire keys themselves."""
        if not place.driver.capabilities.ttl:
            return None
        return max(min(self.idle_timeout, created + self.absolute_timeout - now), 0.001)

    def _record(self, created: float, now: float, data: dict[str, Any]) -> dict[str, Any]:
        return {"v": _RECORD_VERSION, "created": created, "accessed": now, "data": data}

    async def commit(self, session: Session[DataT]) -> list[tuple[str, str]]:
        """Write what ``session`` changed; return the response headers to add (Set-Cookie...).

        Raises `storage.StorageError` when the backend fails, so the app answers with an error
        instead of silently dropping the visitor's session.
        """
        if not session.used:
            return []
        wrote = False
        if session._id is not None and (session._new or session._changes or session._touch):
            wrote = True
            if session._new:
                await self._create(session)
            elif not await self._merge(session):
                wrote = False
                # The entry vanished (destroyed or expired elsewhere): never bring it back.
                session._id = None
                session._cookie = "expire"
        if session._doomed:
            await self.storage.remove_items([self._key(doomed) for doomed in session._doomed])
            session._doomed.clear()
        session._changes = {}
        session._touch = False
        return self._headers(session, wrote)

    def _headers(self, session: Session[DataT], wrote: bool) -> list[tuple[str, str]]:
        action = session._cookie
        session._cookie = None
        if action == "set" and session._id is not None:
            value = self.cookie.set_header(session._id)
        elif action == "expire":
            value = self.cookie.expire_header()
        elif wrote and self.cookie.max_age is not None and session._id is not None:
            # A cookie with a lifetime is refreshed whenever the entry was written.
            value = self.cookie.set_header(session._id)
        else:
            return []
        return [("set-cookie", value), ("cache-control", "no-store")]

    async def _create(self, session: Session[DataT]) -> None:
        assert session._id is not None
        key = self._key(session._id)
        place = self._place(key)
        now = self.clock()
        ttl = self._ttl(place, session._created, now)
        record = self._record(session._created, now, session._data)
        if place.conditional:
            await self.storage.set_item(key, record, ttl=ttl, if_none_match=True)
        else:
            await self.storage.set_item(key, record, ttl=ttl)
        session._new = False
        session._stored = True
        session._accessed = now

    async def _merge(self, session: Session[DataT]) -> bool:
        assert session._id is not None
        place = session._place
        if place is None:
            place = self._place(self._key(session._id))
        key = place.key
        version, session._version = session._version, None
        if version is not None and place.conditional:
            # Unchanged since the load (same version): the loaded state is the fresh state.
            now = self.clock()
            stored = self._record(session._created, now, session._data)
            try:
                await self.storage.set_item(
                    key, stored, ttl=self._ttl(place, session._created, now), if_match=version
                )
            except ConflictError:
                pass
            else:
                session._accessed = now
                return True
        for _ in range(_MERGE_ATTEMPTS):
            record, etag = await self._read(key, place)
            now = self.clock()
            if record is None or self._expired(record, now):
                return False
            data = _apply(record.data, session._changes.items())
            ttl = self._ttl(place, record.created, now)
            stored = self._record(record.created, now, data)
            try:
                if etag is not None:
                    await self.storage.set_item(key, stored, ttl=ttl, if_match=etag)
                else:
                    await self.storage.set_item(key, stored, ttl=ttl)
            except ConflictError:
                continue
            session._data = data
            session._accessed = now
            return True
        raise ConflictError(key, "the session kept changing while being saved")


def _apply(data: dict[str, Any], changes: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    merged = dict(data)
    for name, value in changes:
        if value is _DELETED:
            merged.pop(name, None)
        else:
            merged[name] = value
    return merged
