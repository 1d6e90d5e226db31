"""The sqlite driver's listings: every one a range of the primary key.

Everything under a base ``b:`` sorts in ``b: <= key < b;`` (``;`` follows ``:``), whatever the
keys hold: keys are bound as parameters and compared by SQLite's binary collation, so no
character (``%``, ``_``, quotes) means anything. A page resumes strictly above the last key of
the page before: keys are unique and ordered, so no key is listed twice and none that stays
for the whole listing is skipped, whatever is written meanwhile.
"""

from __future__ import annotations

import time
from typing import Any

from drivers._sqlite_schema import LIVE

__all__ = ["key_range", "page_query", "upper_bound"]

_DEPTH = "length(key) - length(replace(key, ':', ''))"  # the separators in a key


def upper_bound(base: str) -> str:
    """The least string above every key that starts with ``base`` (which ends in ``:``)."""
    return base[:-1] + chr(ord(":") + 1)


def key_range(base: str) -> tuple[str, tuple[str, ...]]:
    """The condition (ending in ``AND``, empty for the root) and parameters of ``base``'s range."""
    if not base:
        return "", ()
    return "key >= ? AND key < ? AND ", (base, upper_bound(base))


def page_query(
    table: str, base: str, cursor: str | None, limit: int, max_depth: int | None
) -> tuple[str, tuple[Any, ...]]:
    """The query of a page: the first ``limit + 1`` live keys of ``base``'s range above
    ``cursor`` with at most ``max_depth`` separators after the base (the extra key tells that
    another page follows), and its parameters."""
    above = cursor is not None and cursor >= base  # a cursor below the range is no bound
    where = ["key > ?" if above else "key >= ?"]
    args: list[Any] = [cursor if above else base]
    if base:
        where.append("key < ?")
        args.append(upper_bound(base))
    if max_depth is not None:
        where.append(f"{_DEPTH} <= ?")
        args.append(base.count(":") + max_depth)
    where.append(LIVE)
    args += [time.time(), limit + 1]
    sql = f'SELECT key FROM "{table}" WHERE {" AND ".join(where)} ORDER BY key LIMIT ?'
    return sql, tuple(args)
