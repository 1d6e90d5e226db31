"""`SessionState`: what one request knows of its session, shared by the modules that run it.

`Session` is the public face; loading (`sessions.loading`), committing (`sessions.commit`) and
noticing in-place changes (`sessions.inplace`) each work on the one `SessionState` a
`Session` holds, with the `SessionSettings` of the `Sessions` that made it. The containers a
plain request never needs (changes, snapshots of values handed out) stay None until used, so
a request that only reads, or never touches its session, builds none of them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, Protocol

from .changes import Changes
from .cookies import CookieSettings
from .ids import new_id, storage_digest
from .records import Flash, Record, Records, Version
from .users import UserIndex

__all__ = ["CookieAction", "SessionSettings", "SessionState"]

#: What the response does with the cookie: hand out the current ID, expire it, or nothing.
CookieAction = Literal["set", "expire"] | None


class SessionSettings(Protocol):
    """What a session reads from the `Sessions` that made it: settings and the record store."""

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


class SessionState:
    """The state of one session during one request: identity, data, and what changed."""

    __slots__ = (
        "accessed",
        "changes",
        "cookie",
        "created",
        "data",
        "doomed",
        "expires",
        "flashes",
        "headers",
        "id",
        "key",
        "lent",
        "loaded",
        "moved_from",
        "new",
        "presented",
        "stored",
        "superseded",
        "touch",
        "user",
        "version",
    )

    def __init__(self, presented: str | None, headers: list[tuple[bytes, bytes]] | None) -> None:
        #: Raw request headers, parsed for the cookie only when the session is first used.
        self.headers = headers
        #: The well-formed ID the client sent (once ``headers`` are parsed), if any.
        self.presented = presented
        #: The session ID once the session is known to exist (loaded or created).
        self.id: str | None = None
        #: The storage key of ``id`` (its digest).
        self.key = ""
        self.loaded = False
        #: The record exists in storage (loaded, or created by this request's commit).
        self.stored = False
        #: ``id`` is brand new: commit creates its record.
        self.new = False
        #: The record is old enough that commit rewrites it (renewing the idle timeout).
        self.touch = False
        #: A concurrent request gave the presented ID a successor: nothing here is written.
        self.superseded = False
        #: What the load learned for writing the record back (etag, capabilities).
        self.version: Version | None = None
        self.data: dict[str, Any] = {}
        #: Deadlines of keys set with a TTL (only keys that hold values).
        self.expires: dict[str, float] = {}
        #: Flash messages stored before this request.
        self.flashes: list[Flash] = []
        self.user: str | None = None
        #: This request's changes, merged into the freshest record at commit; None while
        #: nothing changed.
        self.changes: Changes | None = None
        #: Stored form of each mutable value handed out (`sessions.inplace`); None while none.
        self.lent: dict[str, bytes] | None = None
        self.created = 0.0
        self.accessed = 0.0
        #: Storage keys to remove at commit.
        self.doomed: list[str] = []
        #: The record (key, version) this session's new ID replaces, retired once the new
        #: record exists.
        self.moved_from: tuple[str, Version | None] | None = None
        self.cookie: CookieAction = None

    @property
    def pending(self) -> bool:
        """True when changes await a commit (data, a new ID, or entries to remove)."""
        return bool(self.changes or self.new or self.doomed or self.cookie)

    def changing(self) -> Changes:
        """This request's changes, started on first use."""
        changes = self.changes
        if changes is None:
            changes = self.changes = Changes()
        return changes

    def start(self, settings: SessionSettings) -> None:
        """Take a brand-new ID; the current data becomes the new record at commit."""
        now = settings.clock()
        self.id = new_id(settings.id_bytes)
        self.key = storage_digest(self.id)
        self.new = True
        self.stored = False
        self.version = None
        self.created = now
        self.accessed = now
        self.cookie = "set"

    def begin(self, settings: SessionSettings) -> None:
        """Make sure a session exists to change (not when a successor replaced it)."""
        if self.id is None and not self.superseded:
            self.start(settings)

    def adopt(self, record: Record) -> None:
        """Take ``record`` (just loaded or written) as the current state."""
        self.data = record.data
        self.expires = record.expires
        self.flashes = record.flashes
        self.accessed = record.accessed

    def current(self, now: float) -> Record:
        """The record as this request sees it, to write at ``now``."""
        changes = self.changes
        flashes = self.flashes if changes is None else changes.flashes(self.flashes)
        record = Record(self.created, now, self.data, self.expires, flashes, self.user)
        if record.expires:
            record.drop_expired(now)
        return record

    def forget(self) -> None:
        """Drop the data and every pending change (the session is destroyed); the storage keys
        to remove and the cookie action are the caller's to set."""
        self.id = self.version = self.moved_from = self.user = None
        self.loaded = True
        self.stored = self.new = self.touch = self.superseded = False
        self.data, self.expires, self.flashes = {}, {}, []
        self.changes = self.lent = None
