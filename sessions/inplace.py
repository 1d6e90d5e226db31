"""In-place changes: a mutable value read from a session and changed without `Session.set`
(``(await session.get("cart")).append("pear")``) is saved at commit like a `set`.

Each mutable value handed out is serialized once, when first handed out; at commit, only if
any was, each is serialized again and compared. Strings, numbers and the other immutable
types cost nothing, and a request that hands out none skips the comparison altogether.
"""

from __future__ import annotations

import datetime
import decimal
import uuid
from typing import Any

from .state import SessionSettings, SessionState

__all__ = ["changed_in_place", "lend"]

#: Values that cannot change in place; any other value handed out is compared at commit.
_IMMUTABLE = frozenset(
    {str, int, float, bool, type(None), bytes, decimal.Decimal, uuid.UUID}
    | {datetime.datetime, datetime.date, datetime.time, datetime.timedelta}
)


def lend(state: SessionState, settings: SessionSettings, key: str, value: Any) -> Any:
    """Hand out ``value``; a mutable one is remembered to notice changes made in place."""
    if type(value) in _IMMUTABLE:
        return value
    lent = state.lent
    if lent is None:
        lent = state.lent = {}
    if key not in lent:
        lent[key] = settings.records.encode(key, value)
    return value


def changed_in_place(state: SessionState, settings: SessionSettings) -> None:
    """Turn the values handed out and changed since into changes, like a `set`."""
    lent = state.lent
    if not lent:
        return
    encode = settings.records.encode
    data = state.data
    changes = state.changes
    for key, before in lent.items():
        if key in data and (changes is None or key not in changes.data):
            value = data[key]
            if encode(key, value) != before:
                changes = state.changing()
                changes.set(key, value, state.expires.get(key))
