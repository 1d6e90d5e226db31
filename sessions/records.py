"""Session records in storage: read, create, update and remove them by key, with versions.

This is all the storage I/O of session records, and it never sees a `Session`. A record is
stored as ``{"v": 1, "created": ..., "accessed": ..., "data": {...}}`` under a key that is the
digest of the session ID, with optional ``"exp"`` (per-key deadlines), ``"flash"`` (pending
flash messages) and ``"user"`` (the logged-in user). An ID replaced by `Session.regenerate`
leaves a short-lived marker, ``{"v": 1, "moved": <until>}``, that holds no data and is never
loaded: requests still carrying that ID know it was replaced, not ended. Concurrent updates of
one record are never lost:

- in one process, on every driver: updates and removals of one record take turns (an
  asyncio lock per record, held across read, change and write), so a change can neither
  overwrite another nor bring a removed record back;
- across processes, where the driver has atomic conditional writes (``capabilities.
  conditional``): every write is conditioned on the version it was computed from, and a
  conflict is retried on the fresh record after a jittered exponential backoff.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import weakref
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

from storage import Capabilities, ConflictError, JSONSerializer, SerializationError, Storage

__all__ = ["Change", "Ended", "Flash", "Moved", "Record", "Records", "Version", "Write"]

logger = logging.getLogger(__name__)

_FORMAT = 1
#: A conflicting write (once writers in this process take turns, mostly one from another
#: process) is retried this many times, after a random pause of up to 1, 2, 4 ... ms (at most
#: _MAX_BACKOFF).
_ATTEMPTS = 12
_FIRST_BACKOFF = 0.001
_MAX_BACKOFF = 0.1

#: One lock per record being updated in this process, per event loop; gone when unused.
_locks: weakref.WeakValueDictionary[tuple[int, str], asyncio.Lock] = weakref.WeakValueDictionary()

#: A pending flash message as stored: (its id, its category, the message).
Flash = tuple[str, str, Any]

#: Values the default serializer stores whatever they hold (ints of any size, nan and inf
#: included): `Records.check` needs no trial encoding of them. Not every str is one (a lone
#: surrogate is not UTF-8): an ASCII str is.
_ALWAYS_STORABLE = frozenset({int, float, bool, type(None)})


class Record:
    """One stored session: when it was created and last written, its data, the deadlines of
    keys set with a TTL, its pending flash messages and its logged-in user."""

    __slots__ = ("accessed", "created", "data", "expires", "flashes", "user")

    def __init__(
        self,
        created: float,
        accessed: float,
        data: dict[str, Any],
        expires: dict[str, float] | None = None,
        flashes: list[Flash] | None = None,
        user: str | None = None,
    ) -> None:
        self.created = created
        self.accessed = accessed
        self.data = data
        self.expires = expires if expires is not None else {}
        self.flashes = flashes if flashes is not None else []
        self.user = user

    def drop_expired(self, now: float) -> None:
        """Forget the keys whose own deadline has passed."""
        if self.expires:
            for name in [name for name, at in self.expires.items() if at <= now]:
                del self.expires[name]
                self.data.pop(name, None)


class Moved:
    """The marker an ID replaced by regenerate leaves until ``until`` (a timestamp)."""

    __slots__ = ("until",)

    def __init__(self, until: float) -> None:
        self.until = until


class Ended(enum.Enum):
    """Why `Records.update` wrote nothing."""

    #: Removed (destroyed, revoked), expired, or never there.
    GONE = "gone"
    #: Replaced by a new ID a moment ago (its `Moved` marker is there).
    MOVED = "moved"


#: What an update writes: a record (or a marker) and the seconds it may live (a TTL hint).
Write = tuple[Record | Moved, float]
#: Computes what to write from the stored record, or None to write nothing.
Change = Callable[[Record], Write | None]


class Version:
    """What `Records.read` learned for writing a record back: the etag of exactly the bytes
    read (None where the driver has no conditional writes, or nothing was read), and what the
    driver serving the record can do."""

    __slots__ = ("capabilities", "etag")

    def __init__(self, etag: str | None, capabilities: Capabilities) -> None:
        self.etag = etag
        self.capabilities = capabilities


class Records:
    """Session records in one Storage (a namespace view), by key."""

    __slots__ = ("_default", "_dumps", "_storage")

    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self._dumps = storage.serializer.dumps
        self._default = type(storage.serializer) is JSONSerializer

    def check(self, name: str, value: Any) -> None:
        """Raise `storage.SerializationError` naming ``name`` when ``value`` cannot be stored."""
        if not isinstance(name, str) or not name:
            raise TypeError(f"session keys are non-empty strings, not {name!r}")
        if self._default:
            kind = type(value)
            if kind in _ALWAYS_STORABLE or (kind is str and value.isascii()):
                return
        self.encode(name, value)

    def encode(self, name: str, value: Any) -> bytes:
        """``value`` as the serializer stores it (to notice a value changed in place)."""
        try:
            return self._dumps(value)
        except Exception as exc:
            raise SerializationError(
                f"session value {type(value).__name__} cannot be stored: {exc}", key=name
            ) from exc

    async def read(self, key: str) -> tuple[Record | Moved | None, Version]:
        """The record at ``key`` (None when missing or unreadable) and its version.

        The etag is read only where the driver has atomic conditional writes.
        """
        capabilities = self._storage.capabilities(key)
        try:
            if capabilities.conditional:
                raw, etag = await self._storage.get_item_with_etag(key)
            else:
                raw, etag = await self._storage.get_item(key), None
        except SerializationError:
            logger.warning("a stored session could not be decoded; starting a new one")
            return None, Version(None, capabilities)
        record = _parse(raw)
        return record, Version(etag if record is not None else None, capabilities)

    async def create(self, key: str, record: Record, ttl: float) -> None:
        """Store a new record at ``key`` (a fresh random ID's digest, so nobody else writes it)."""
        capabilities = self._storage.capabilities(key)
        await self._storage.set_item(
            key,
            _dump(record),
            ttl=ttl if capabilities.ttl else None,
            if_none_match=capabilities.conditional,
        )

    async def update(
        self,
        key: str,
        change: Change,
        *,
        first: Write | None = None,
        version: Version | None = None,
    ) -> Record | Moved | Ended:
        """Write ``change(stored record)`` at ``key``; return what was written.

        `Ended` when the record is gone or replaced, or ``change`` declines: a removed record
        is never written again. With the ``version`` `read` returned, ``first`` (computed from
        that read) is tried first, conditioned on that version: one write when nobody changed
        the record.
        """
        if first is not None and version is not None and version.etag is not None:
            written, seconds = first
            try:
                await self._storage.set_item(
                    key,
                    _dump(written),
                    ttl=seconds if version.capabilities.ttl else None,
                    if_match=version.etag,
                )
            except ConflictError:
                pass
            else:
                return written
        async with _turn(self._storage.prefix + key):
            for attempt in range(_ATTEMPTS):
                record, version = await self.read(key)
                if isinstance(record, Moved):
                    return Ended.MOVED
                result = None if record is None else change(record)
                if result is None:
                    return Ended.GONE
                written, seconds = result
                try:
                    await self._storage.set_item(
                        key,
                        _dump(written),
                        ttl=seconds if version.capabilities.ttl else None,
                        if_match=version.etag,
                    )
                except ConflictError:
                    # Written meanwhile (by another process, or by a first attempt here that
                    # was under way): let the writer finish, then merge into the new record.
                    pause = min(_MAX_BACKOFF, _FIRST_BACKOFF * 2**attempt)
                    await asyncio.sleep(random.uniform(0, pause))
                    continue
                return written
        raise ConflictError(key, "the session kept changing while being saved")

    async def remove(self, keys: Iterable[str]) -> None:
        """Remove the records at ``keys``; an update in flight in this process finishes first."""
        keys = sorted(set(keys))
        if keys:
            async with _turns([self._storage.prefix + key for key in keys]):
                await self._storage.remove_items(keys)


@asynccontextmanager
async def _turn(full_key: str) -> AsyncIterator[None]:
    """Wait for the other updates of ``full_key`` in this process, then hold the record."""
    slot = (id(asyncio.get_running_loop()), full_key)
    lock = _locks.get(slot)
    if lock is None:
        lock = _locks[slot] = asyncio.Lock()
    async with lock:
        yield


@asynccontextmanager
async def _turns(full_keys: list[str]) -> AsyncIterator[None]:
    """Hold several records (in sorted order, so two holders never wait on each other)."""
    if not full_keys:
        yield
        return
    async with _turn(full_keys[0]), _turns(full_keys[1:]):
        yield


def _dump(record: Record | Moved) -> dict[str, Any]:
    """The stored form of ``record``."""
    if isinstance(record, Moved):
        return {"v": _FORMAT, "moved": record.until}
    stored: dict[str, Any] = {
        "v": _FORMAT,
        "created": record.created,
        "accessed": record.accessed,
        "data": record.data,
    }
    if record.expires:
        stored["exp"] = record.expires
    if record.flashes:
        stored["flash"] = [list(flash) for flash in record.flashes]
    if record.user is not None:
        stored["user"] = record.user
    return stored


def _parse(raw: Any) -> Record | Moved | None:
    """The record a stored value holds; None (logged) when it is not one."""
    if raw is None:
        return None
    if type(raw) is dict and raw.get("v") == _FORMAT:
        data, created, accessed = raw.get("data"), raw.get("created"), raw.get("accessed")
        if (
            len(raw) == 4  # the common case: no deadlines, flashes or user
            and type(data) is dict
            and isinstance(created, (int, float))
            and isinstance(accessed, (int, float))
        ):
            return Record(float(created), float(accessed), data)
        if isinstance(raw.get("moved"), (int, float)):
            return Moved(float(raw["moved"]))
        expires, flashes = raw.get("exp", {}), raw.get("flash", [])
        user = raw.get("user")
        if (
            isinstance(data, dict)
            and isinstance(raw.get("created"), (int, float))
            and isinstance(raw.get("accessed"), (int, float))
            and isinstance(expires, dict)
            and all(isinstance(at, (int, float)) for at in expires.values())
            and isinstance(flashes, list)
            and all(_is_flash(flash) for flash in flashes)
            and (user is None or isinstance(user, str))
        ):
            return Record(
                float(raw["created"]),
                float(raw["accessed"]),
                data,
                {name: float(at) for name, at in expires.items()},
                [(flash[0], flash[1], flash[2]) for flash in flashes],
                user,
            )
    logger.warning("a stored session has an unknown shape; starting a new one")
    return None


def _is_flash(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 3
        and isinstance(value[0], str)
        and isinstance(value[1], str)
    )
