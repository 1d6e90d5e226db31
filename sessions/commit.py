"""Committing a session: write what the request changed, retire replaced records, and say what
the response does with the cookie.

An existing record is written in one conditional step when nobody changed it since the load;
otherwise this request's changes are merged into the freshest stored record
(`sessions.changes`). A new ID's record (and its user's index entry) is created before the
record it replaces is retired, and rolled back when that one ended meanwhile: nothing a
revocation removed comes back.
"""

from __future__ import annotations

import logging

from .changes import Changes
from .expiry import entry_ttl
from .inplace import changed_in_place
from .records import Ended, Moved, Record, Write
from .state import SessionSettings, SessionState

__all__ = ["commit"]

logger = logging.getLogger(__name__)


async def commit(state: SessionState, settings: SessionSettings) -> list[tuple[str, str]]:
    """Write what ``state`` changed; return the response headers to add (Set-Cookie...)."""
    if state.superseded:
        if state.pending or state.lent:
            logger.warning(
                "session changes were dropped: a concurrent request had already given "
                "this session a new ID (regenerate or login)"
            )
        state.changes = state.lent = state.cookie = None
        return []
    wrote = False
    if state.id is not None:
        if state.lent:
            changed_in_place(state, settings)
        if state.new:
            wrote = await _create(state, settings)
        elif state.touch or state.changes:
            wrote = await _update(state, settings)
    if state.doomed:
        await settings.records.remove(state.doomed)
        state.doomed.clear()
    state.changes = state.lent = None
    state.touch = False
    return _response_headers(state, settings, wrote)


async def _update(state: SessionState, settings: SessionSettings) -> bool:
    """Write the record back; False when it vanished (destroyed, expired or replaced)."""
    version, state.version = state.version, None
    first = None
    if version is not None and version.etag is not None:
        # Unchanged since the load (same version): the loaded state is the fresh state.
        now = settings.clock()
        record = state.current(now)
        first = record, entry_ttl(record, settings, now)
    changes = state.changes

    def merged(stored: Record) -> Write | None:
        """The stored record with this request's changes applied; None once it has expired."""
        now = settings.clock()
        if settings.expired(stored, now):
            return None
        record = (changes if changes is not None else Changes()).apply(stored, now)
        return record, entry_ttl(record, settings, now)

    written = await settings.records.update(state.key, merged, first=first, version=version)
    if not isinstance(written, Record):
        # Never bring a destroyed or expired session back; one that a concurrent request
        # has given a new ID keeps the cookie that request set.
        state.id = None
        state.cookie = "expire" if written is Ended.GONE else None
        return False
    state.adopt(written)
    return True


async def _create(state: SessionState, settings: SessionSettings) -> bool:
    """Write the record of a new ID (and its user's index entry), then retire the old one:
    a session ended meanwhile is not carried over (the new record is rolled back)."""
    records, users = settings.records, settings.users
    now = settings.clock()
    record = state.current(now)
    await records.create(state.key, record, entry_ttl(record, settings, now))
    state.new = False
    state.stored = True
    state.adopt(record)
    created = [state.key]
    if record.user is not None:
        ttl = record.created + settings.absolute_timeout - now
        await users.add(record.user, state.key, ttl)
        created.append(users.key(record.user, state.key))
    if state.moved_from is None:
        return True
    (old, version), state.moved_from = state.moved_from, None
    grace = settings.regenerate_grace
    marker = Moved(now + grace), grace
    outcome = await records.update(old, lambda stored: marker, first=marker, version=version)
    if isinstance(outcome, Moved):
        return True
    await records.remove(created)
    state.id = None
    state.stored = False
    state.cookie = "expire" if outcome is Ended.GONE else None
    return False


def _response_headers(
    state: SessionState, settings: SessionSettings, wrote: bool
) -> list[tuple[str, str]]:
    """The Set-Cookie (with ``Cache-Control: no-store``) this response carries, if any."""
    action, state.cookie = state.cookie, None
    cookie = settings.cookie
    if action == "set" and state.id is not None:
        value = cookie.set_header(state.id)
    elif action == "expire":
        value = cookie.expire_header()
    elif wrote and cookie.max_age is not None and state.id is not None:
        # A cookie with a lifetime is refreshed whenever the record was written.
        value = cookie.set_header(state.id)
    else:
        return []
    return [("set-cookie", value), ("cache-control", "no-store")]
