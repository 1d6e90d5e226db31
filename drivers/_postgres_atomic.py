"""The postgres driver's read-modify-write operations, each one statement in the server.

Compare-and-set is an UPDATE guarded by the version column (``if_match``; ``"*"``: any live
row), create-only an upsert whose ``DO UPDATE`` replaces only an expired row
(``if_none_match``); a conditional remove is a DELETE with the same guards; an increment is
one upsert that adds to a stored JSON integer. None reads first, so nothing another
connection does can come between a check and its write. An expired row counts as absent
everywhere. The command status (``"UPDATE 0"``) tells whether the guard held.
"""

from __future__ import annotations

import asyncpg

from drivers._postgres_pool import PostgresPool
from drivers._postgres_schema import Statements, new_version
from storage import ConflictError, InvalidArgumentError

__all__ = ["INT64", "increment", "remove_conditional", "rows_changed", "set_conditional"]

#: What postgres' bigint holds, and so what a counter and a version may be.
INT64 = range(-(2**63), 2**63)


def rows_changed(status: str) -> int:
    """The row count of a command status (``"UPDATE 1"``, ``"INSERT 0 1"``)."""
    return int(status.rpartition(" ")[2])


def _version(etag: str) -> int | None:
    """The version an etag names, or None when it names none (it cannot match any row)."""
    try:
        version = int(etag)
    except ValueError:
        return None
    return version if str(version) == etag and version in INT64 else None


async def set_conditional(
    pool: PostgresPool,
    sql: Statements,
    key: str,
    value: bytes,
    ttl: float | None,
    if_match: str | None,
    if_none_match: bool,
) -> str:
    """Store ``value`` only over version ``if_match`` (``"*"``: any live version) / only where
    no live row is (``if_none_match``); return the new etag, or raise `ConflictError`."""
    version = new_version()
    if if_none_match:
        if if_match is not None:  # both can never hold
            raise ConflictError(key)
        if not rows_changed(await pool.execute(sql.create, key, value, ttl, version)):
            raise ConflictError(key, "the key already exists")
    elif if_match is None:
        await pool.execute(sql.put, key, value, ttl, version)
    elif if_match == "*":
        if not rows_changed(await pool.execute(sql.update_any, key, value, ttl, version)):
            raise ConflictError(key, "the key does not exist")
    else:
        expected = _version(if_match)
        if expected is None or not rows_changed(
            await pool.execute(sql.update_version, key, value, ttl, version, expected)
        ):
            raise ConflictError(key)
    return str(version)


async def remove_conditional(pool: PostgresPool, sql: Statements, key: str, if_match: str) -> None:
    """Remove ``key`` only at version ``if_match`` (``"*"``: any live version); raise
    `ConflictError` otherwise, a missing or expired key included."""
    if if_match == "*":
        removed = rows_changed(await pool.execute(sql.remove_any, key))
    else:
        expected = _version(if_match)
        removed = expected is not None and rows_changed(
            await pool.execute(sql.remove_version, key, expected)
        )
    if not removed:
        raise ConflictError(key)


async def increment(
    pool: PostgresPool, sql: Statements, key: str, by: int, ttl: float | None
) -> int:
    """Add ``by`` to the JSON integer at ``key`` and return the sum: a live integer keeps its
    expiry, an absent or expired key starts at ``by`` with ``ttl``. Counts in signed 64 bits
    (like redis); a value that is not a JSON integer is left alone and refused with
    `InvalidArgumentError`, as is a sum outside that range."""
    if by not in INT64:
        raise InvalidArgumentError(f"postgres increments by 64-bit integers, not by {by}")
    try:
        value = await pool.fetchval(sql.increment, key, by, ttl, new_version())
    except asyncpg.NumericValueOutOfRangeError as exc:
        raise InvalidArgumentError(
            f"incrementing {key!r} by {by} would leave postgres' 64-bit integer range"
        ) from exc
    if value is None:
        raise InvalidArgumentError(f"{key!r} does not hold an integer, so it cannot be incremented")
    return int(value)
