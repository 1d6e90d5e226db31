"""The sqlite driver's table: created in a new file, checked in an existing one, and the
pieces of SQL every statement over it shares.

The engine runs `check_table` on the writing connection when it opens the file, so a
foreign table is refused before any work touches it.
"""

from __future__ import annotations

import random
import sqlite3

from storage import DriverError

__all__ = ["COLUMNS", "LIVE", "check_table", "new_version", "upsert"]

#: The columns of a unistorage table, in order.
COLUMNS = ["key", "value", "expires", "mtime", "version"]

#: The condition a row that has not expired meets; its one parameter is the time now.
LIVE = "(expires IS NULL OR expires > ?)"


def upsert(table: str, value: str = "?") -> str:
    """The statement that writes one whole row (key, value, expires, mtime, version), new or
    replacing; ``value`` is the SQL expression of the value (a parameter by default)."""
    return (
        f'INSERT INTO "{table}" (key, value, expires, mtime, version) VALUES (?, {value}, ?, ?, ?) '
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires = excluded.expires, "
        "mtime = excluded.mtime, version = excluded.version"
    )


def new_version() -> int:
    """A fresh version for a row being written: random, so that no two writers (in any
    process) draw the same one in practice, and an etag never names another write's bytes."""
    return random.getrandbits(62)


def check_table(conn: sqlite3.Connection, *, path: str, table: str, read_only: bool) -> None:
    """Create ``table`` if the file has none (unless ``read_only``); refuse a foreign one."""
    t = f'"{table}"'
    columns = [row[1] for row in conn.execute(f"PRAGMA table_info({t})")]
    if not columns:
        if read_only:
            raise DriverError("sqlite", "open", None, f"no table {table!r} in {path!r}")
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {t} (key TEXT PRIMARY KEY NOT NULL, "
            "value BLOB NOT NULL, expires REAL, mtime REAL NOT NULL, version INTEGER NOT NULL)"
        )
        conn.execute(
            f'CREATE INDEX IF NOT EXISTS "{table}_expires" ON {t} (expires) '
            "WHERE expires IS NOT NULL"
        )
    elif columns != COLUMNS:
        raise DriverError(
            "sqlite",
            "open",
            None,
            f"table {table!r} in {path!r} is not a unistorage table "
            f"(columns {columns}, expected {COLUMNS}); choose another table= or file",
        )
