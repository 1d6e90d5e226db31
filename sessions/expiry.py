"""Per-key TTL inside a session, and the TTL hint of the stored entry.

A key set with ``ttl`` gets a deadline of its own (Astro's ``session.set(key, value, {ttl})``),
checked whenever the key is read and dropped from the record once passed. The entry's driver
TTL is the session's own deadline (idle, absolute) and, when every key has a deadline and no
user or flash message holds the session, the latest of them: abandoned short-lived data
leaves storage by itself.
"""

from __future__ import annotations

import math

from .records import Record
from .state import SessionSettings, SessionState

__all__ = ["deadline", "entry_ttl", "live"]


def deadline(ttl: float, now: float) -> float:
    """The timestamp at which a key set at ``now`` with ``ttl`` seconds expires.

    Raises ValueError unless ``ttl`` is a finite number of seconds > 0.
    """
    if not (isinstance(ttl, (int, float)) and ttl > 0 and math.isfinite(ttl)):
        raise ValueError(f"ttl is a finite number of seconds > 0, not {ttl!r}")
    return now + ttl


def live(state: SessionState, settings: SessionSettings, key: str) -> bool:
    """True when ``key`` holds a value whose own deadline (if any) has not passed; a key past
    its deadline is dropped."""
    if key not in state.data:
        return False
    expires = state.expires
    if expires:
        at = expires.get(key)
        if at is not None and at <= settings.clock():
            del state.data[key], expires[key]
            return False
    return True


def entry_ttl(record: Record, settings: SessionSettings, now: float) -> float:
    """Seconds the stored ``record`` may live: a hint for drivers that expire keys themselves."""
    seconds = record.created + settings.absolute_timeout - now
    idle = settings.idle_timeout
    if idle < seconds:
        seconds = idle
    # Deadlines are kept for keys that hold values only: as many deadlines as keys means
    # every key has one.
    expires = record.expires
    if expires and len(expires) == len(record.data) and record.user is None and not record.flashes:
        seconds = min(seconds, max(expires.values()) - now)
    return seconds if seconds > 0.001 else 0.001
