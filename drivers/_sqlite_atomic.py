"""The sqlite driver's read-modify-write operations, each one job for the writer thread.

Every method returns a `Work` that the driver hands to the engine as a write: it runs inside
the writer thread's transaction (``BEGIN IMMEDIATE``, shared with whatever other writes group
commit gathers), so nothing another connection or process does comes between its read and its
write. Those written as one statement (conditional writes and removes, touch, read-and-touch)
may also run alone in autocommit, which is just as atomic: the driver tells the engine so
with ``simple=True``. Only `increment` reads, then writes, and needs the transaction.

An expired row counts as absent everywhere: a create-only write may replace it, an increment
starts again at 0, a touch or a conditional remove finds nothing.

Versions: every write of a value draws a new random version (the etag). `touch` changes the
expiry alone: the value, its version and its mtime stay, so an etag read before a touch still
matches after it (the etag names the stored bytes, not their lifetime), as on memory.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from drivers._sqlite_engine import Events, Work
from drivers._sqlite_schema import LIVE, new_version, upsert
from storage import ConflictError
from storage.atomic import decode_counter, encode_counter

__all__ = ["Atomic"]


def _version(etag: str) -> int | None:
    """The version an etag names, or None when it names none (it cannot match any row)."""
    try:
        version = int(etag)
    except ValueError:
        return None
    return version if str(version) == etag else None


class Atomic:
    """The SQL and the work of compare-and-set, conditional removes, increment and touch on
    one table; the driver owns one and runs what it returns on its engine."""

    __slots__ = (
        "_create",
        "_put",
        "_read",
        "_remove",
        "_remove_version",
        "_renew",
        "_renew_returning",
        "_rewrite",
        "_update",
        "_update_version",
    )

    def __init__(self, table: str) -> None:
        t = f'"{table}"'
        self._put = upsert(table)
        # Create-only: the insert may replace an expired row, never a live one (rowcount 0).
        self._create = (
            f"INSERT INTO {t} (key, value, expires, mtime, version) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
            "expires = excluded.expires, mtime = excluded.mtime, version = excluded.version "
            f"WHERE {t}.expires IS NOT NULL AND {t}.expires <= excluded.mtime"
        )
        self._update = f"UPDATE {t} SET value = ?, expires = ?, mtime = ?, version = ? WHERE key = ? AND {LIVE}"
        self._update_version = self._update + " AND version = ?"
        self._remove = f"DELETE FROM {t} WHERE key = ? AND {LIVE}"
        self._remove_version = self._remove + " AND version = ?"
        self._read = f"SELECT value, expires FROM {t} WHERE key = ?"
        self._rewrite = f"UPDATE {t} SET value = ?, mtime = ?, version = ? WHERE key = ?"
        self._renew = f"UPDATE {t} SET expires = ? WHERE key = ? AND {LIVE}"
        self._renew_returning = self._renew + " RETURNING value"

    def set_conditional(
        self,
        key: str,
        value: bytes,
        ttl: float | None,
        if_match: str | None,
        if_none_match: bool,
    ) -> Work:
        """Store ``value`` only over version ``if_match`` (``"*"``: any live version) / only
        where no live row is (``if_none_match``); the work returns the new etag and raises
        `ConflictError` otherwise."""

        def work(conn: sqlite3.Connection, events: Events) -> str:
            now = time.time()
            version = new_version()
            expires = None if ttl is None else now + ttl
            row = (value, expires, now, version, key, now)
            if if_none_match:
                if if_match is not None:  # both can never hold
                    raise ConflictError(key)
                cursor = conn.execute(self._create, (key, value, expires, now, version))
                if not cursor.rowcount:
                    raise ConflictError(key, "the key already exists")
            elif if_match is None:
                conn.execute(self._put, (key, value, expires, now, version))
            elif if_match == "*":
                if not conn.execute(self._update, row).rowcount:
                    raise ConflictError(key)
            else:
                expected = _version(if_match)
                if (
                    expected is None
                    or not conn.execute(self._update_version, (*row, expected)).rowcount
                ):
                    raise ConflictError(key)
            events.append(("update", key))
            return str(version)

        return work

    def remove_conditional(self, key: str, if_match: str) -> Work:
        """Remove ``key`` only at version ``if_match`` (``"*"``: any live version); the work
        raises `ConflictError` otherwise, a missing or expired key included."""

        def work(conn: sqlite3.Connection, events: Events) -> None:
            now = time.time()
            if if_match == "*":
                removed = conn.execute(self._remove, (key, now)).rowcount
            else:
                expected = _version(if_match)
                removed = (
                    expected is not None
                    and conn.execute(self._remove_version, (key, now, expected)).rowcount
                )
            if not removed:
                raise ConflictError(key)
            events.append(("remove", key))

        return work

    def increment(self, key: str, by: int, ttl: float | None) -> Work:
        """Add ``by`` to the JSON integer at ``key`` (an absent or expired key counts as 0 and
        gets ``ttl``; a live one keeps its expiry); the work returns the new value and raises
        `storage.InvalidArgumentError`, writing nothing, when the value is not an integer."""

        def work(conn: sqlite3.Connection, events: Events) -> int:
            row = conn.execute(self._read, (key,)).fetchone()
            now = time.time()
            live = row is not None and (row[1] is None or row[1] > now)
            value = decode_counter(key, row[0] if live else None) + by
            data = encode_counter(value)
            if live:
                conn.execute(self._rewrite, (data, now, new_version(), key))
            else:
                expires = None if ttl is None else now + ttl
                conn.execute(self._put, (key, data, expires, now, new_version()))
            events.append(("update", key))
            return value

        return work

    def touch(self, key: str, ttl: float) -> Work:
        """Give a live ``key`` the expiry ``ttl`` seconds from now, changing nothing else; the
        work returns False when there is no live row."""

        def work(conn: sqlite3.Connection, _: Events) -> bool:
            now = time.time()
            return bool(conn.execute(self._renew, (now + ttl, key, now)).rowcount)

        return work

    def get_touch(self, key: str, ttl: float) -> Work:
        """`touch`, returning the value it renewed (None when there is no live row)."""

        def work(conn: sqlite3.Connection, _: Events) -> bytes | None:
            now = time.time()
            # fetchall: the statement must run to its end, or autocommit would not commit it.
            rows: list[Any] = conn.execute(self._renew_returning, (now + ttl, key, now)).fetchall()
            return bytes(rows[0][0]) if rows else None

        return work
