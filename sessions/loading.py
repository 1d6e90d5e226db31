"""Loading a session: the ID the client presented, and its record read into the state.

Strict: an unknown or expired ID is never adopted (its cookie is expired at commit unless a
new session replaces it), and an ID that a concurrent request has just replaced
(`Session.regenerate`, `Session.login`) reads as empty and leaves the cookie alone.
"""

from __future__ import annotations

from .cookies import read_cookie
from .ids import storage_digest
from .records import Moved, Record
from .state import SessionSettings, SessionState

__all__ = ["load", "presented_id"]


def presented_id(state: SessionState, settings: SessionSettings) -> str | None:
    """The well-formed ID the client sent, if any (the cookie is parsed on the first call)."""
    headers = state.headers
    if headers is not None:
        value = read_cookie(headers, settings.cookie.name)
        state.headers = None
        state.presented = value if settings.valid_id(value) else None
    return state.presented


async def load(state: SessionState, settings: SessionSettings) -> None:
    """Read the stored session into ``state``, unless done already."""
    if state.loaded:
        return
    state.loaded = True
    presented = presented_id(state, settings)
    if presented is None:
        return
    # Where the driver has conditional writes the version is read too, so that a commit
    # writes in one step when nobody else changed the record meanwhile.
    key = storage_digest(presented)
    record, version = await settings.records.read(key)
    now = settings.clock()
    if not isinstance(record, Record):
        if isinstance(record, Moved) and record.until > now:
            state.superseded = True
            return
        if record is not None:
            state.doomed.append(key)
        state.cookie = "expire"
        return
    if settings.expired(record, now):
        state.doomed.append(key)
        state.cookie = "expire"
        return
    if record.expires:
        record.drop_expired(now)
    state.id = presented
    state.key = key
    state.stored = True
    state.version = version
    state.data = record.data
    state.expires = record.expires
    state.flashes = record.flashes
    state.user = record.user
    state.created = record.created
    state.accessed = record.accessed
    state.touch = now - record.accessed >= settings.touch_interval
