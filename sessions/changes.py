"""`Changes`: what one request changed in a session, and how it merges into the stored record.

Merging is what makes concurrent requests to one session safe: each commit applies only its
own changes to the freshest stored record. Keys: set or deleted, with their own deadlines
(the last commit wins per key). Flash messages: those this request read are removed, those it
added are appended, so two requests never lose or repeat each other's messages.
"""

from __future__ import annotations

from typing import Any

from .records import Flash, Record

__all__ = ["DELETED", "Changes"]

#: Marks a deleted key in `Changes.data`.
DELETED: Any = object()


class Changes:
    """The changes of one request: keys (value or `DELETED`, and deadline) and flashes."""

    __slots__ = ("added", "data", "taken")

    def __init__(self) -> None:
        #: key -> (value or DELETED, the key's deadline or None).
        self.data: dict[str, tuple[Any, float | None]] = {}
        #: Flash messages added by this request.
        self.added: list[Flash] = []
        #: Ids of the flash messages this request read (and so removes).
        self.taken: set[str] = set()

    def __bool__(self) -> bool:
        return bool(self.data or self.added or self.taken)

    def set(self, name: str, value: Any, deadline: float | None) -> None:
        """Record that ``name`` now holds ``value`` (until ``deadline``, a timestamp)."""
        self.data[name] = (value, deadline)

    def delete(self, name: str) -> None:
        """Record that ``name`` was removed."""
        self.data[name] = (DELETED, None)

    def take(self, stored: list[Flash], category: str | None) -> list[tuple[str, Any]]:
        """Read the flash messages not read yet (``stored`` ones, then the ones added here),
        of ``category`` only if given: (category, message) pairs, oldest first, each once."""
        taken = self.taken
        found: list[tuple[str, Any]] = []
        for flash_id, kind, message in (*stored, *self.added):
            if flash_id not in taken and (category is None or kind == category):
                taken.add(flash_id)
                found.append((kind, message))
        return found

    def flashes(self, stored: list[Flash]) -> list[Flash]:
        """``stored`` flash messages without the ones read here, then the ones added here."""
        taken = self.taken
        if not taken and not self.added:
            return stored
        return [flash for flash in (*stored, *self.added) if flash[0] not in taken]

    def apply(self, stored: Record, now: float) -> Record:
        """``stored`` with these changes applied, keys whose deadline passed left out."""
        data = dict(stored.data)
        expires = dict(stored.expires)
        for name, (value, deadline) in self.data.items():
            if value is DELETED:
                data.pop(name, None)
                expires.pop(name, None)
                continue
            data[name] = value
            if deadline is None:
                expires.pop(name, None)
            else:
                expires[name] = deadline
        merged = Record(
            stored.created, now, data, expires, self.flashes(stored.flashes), stored.user
        )
        merged.drop_expired(now)
        return merged
