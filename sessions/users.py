"""The index from a user to their live sessions: list them, revoke one or all.

`Session.login` writes one small entry per (user, session) at ``user:<sha256 of the user
ID>:<session key>`` beside the records, after the session's record exists: one key per pair,
so logins and logouts on several devices never contend for one shared value. An entry lives
as long as its session can (the absolute timeout), and entries whose session has ended are
dropped whenever the user's sessions are listed.

Nothing is brought back by requests in flight: a revoked record is removed under the same
per-record turns and conditional writes every update goes through, so a request that loaded
it before writes nothing; a request regenerating it creates the new record and its entry
first and only then retires the old record, and rolls the new one back if the old one was
gone, while `revoke_all` lists again until no entry it has not removed remains.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from storage import Storage

from .records import Record, Records

__all__ = ["UserIndex", "UserSession"]

#: `revoke_all` lists a user's sessions again until a listing shows none left; a new login at
#: the very same moment is a new session, so the listings are bounded.
_ROUNDS = 5


@dataclass(frozen=True, slots=True)
class UserSession:
    """One live session of a user, as `Sessions.user_sessions` lists it.

    ``handle`` names the session for `Sessions.revoke` (it is the storage key's digest, never
    the ID, so it can be shown on an account page); ``current`` compares it with
    `Session.handle`.
    """

    handle: str
    created: float
    accessed: float


class UserIndex:
    """Entries from users to session keys, in the sessions' Storage namespace."""

    __slots__ = ("_expired", "_records", "_storage")

    def __init__(
        self, storage: Storage, records: Records, expired: Callable[[Record], bool]
    ) -> None:
        self._storage = storage
        self._records = records
        self._expired = expired

    @staticmethod
    def base(user_id: str) -> str:
        """The base under which ``user_id``'s entries live."""
        return "user:" + hashlib.sha256(user_id.encode("utf-8")).hexdigest()

    def key(self, user_id: str, handle: str) -> str:
        """The entry of the session ``handle`` (a record key) of ``user_id``."""
        return f"{self.base(user_id)}:{handle}"

    async def add(self, user_id: str, handle: str, ttl: float) -> None:
        """Record that ``handle`` is a session of ``user_id`` for ``ttl`` seconds at most."""
        capabilities = self._storage.capabilities(handle)
        await self._storage.set_item(
            self.key(user_id, handle), 1, ttl=ttl if capabilities.ttl else None
        )

    async def sessions(self, user_id: str) -> list[UserSession]:
        """The live sessions of ``user_id``, oldest first; entries of ended ones are removed."""
        base = self.base(user_id)
        keys = await self._storage.get_keys(base)
        handles = [key.rsplit(":", 1)[1] for key in keys]
        found: list[UserSession] = []
        dead: list[str] = []
        for handle in handles:
            record, _ = await self._records.read(handle)
            if isinstance(record, Record) and record.user == user_id and not self._expired(record):
                found.append(UserSession(handle, record.created, record.accessed))
            else:
                dead.append(self.key(user_id, handle))
        if dead:
            await self._storage.remove_items(dead)
        return sorted(found, key=lambda one: one.created)

    async def revoke(self, user_id: str, handle: str) -> None:
        """End the session ``handle`` of ``user_id`` (a handle of another user is left alone)."""
        record, _ = await self._records.read(handle)
        if isinstance(record, Record) and record.user == user_id:
            await self._records.remove([handle, self.key(user_id, handle)])

    async def revoke_all(self, user_id: str, *, keep: str | None = None) -> int:
        """End every session of ``user_id`` but ``keep``; return how many were ended."""
        ended = 0
        for _ in range(_ROUNDS):
            handles = [one.handle for one in await self.sessions(user_id) if one.handle != keep]
            if not handles:
                break
            await self._records.remove(
                [*handles, *(self.key(user_id, handle) for handle in handles)]
            )
            ended += len(handles)
        return ended
