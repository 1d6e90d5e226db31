"""The postgres driver's table: created when missing, checked when present, and every
statement the driver sends over it.

Table ``<table>(key text COLLATE "C" PRIMARY KEY, value bytea, expires timestamptz,
mtime timestamptz, version bigint)``, commented ``unistorage key-value table, schema 1``.
The "C" collation orders keys by their UTF-8 bytes, so everything under a base ``b:`` is the
primary-key range ``b: <= key < b;`` and every listing is an index range scan (never LIKE:
keys are only ever bound as parameters). Times are the server's (``now()``), so writers on
machines whose clocks disagree still agree on expiry. ``version`` is a random 62-bit number
drawn for each write (the etag).
"""

from __future__ import annotations

import random
from typing import Any

import asyncpg

from storage import DriverError

__all__ = [
    "COLUMNS",
    "LIVE",
    "SCHEMA",
    "Statements",
    "new_version",
    "prepare_table",
    "quote",
    "upper_bound",
]

#: The schema version this driver writes; a table commented with another one is refused.
SCHEMA = 1
_COMMENT = f"unistorage key-value table, schema {SCHEMA}"
_COMMENT_PREFIX = "unistorage key-value table, schema "

#: The columns of a unistorage table, in order: (name, type, collation).
COLUMNS = [
    ("key", "text", "C"),
    ("value", "bytea", None),
    ("expires", "timestamp with time zone", None),
    ("mtime", "timestamp with time zone", None),
    ("version", "bigint", None),
]

#: The condition a live (unexpired) row meets.
LIVE = "(expires IS NULL OR expires > now())"
#: The condition a row of ``t`` (the table's alias in an upsert) that has expired meets.
_EXPIRED = "(t.expires IS NOT NULL AND t.expires <= now())"
#: Text a JSON parser reads as an integer (JSON whitespace around it allowed).
_JSON_INTEGER = r"'^[ \t\n\r]*-?(0|[1-9][0-9]*)[ \t\n\r]*$'"
_DEPTH = "length(key) - length(replace(key, ':', ''))"  # the separators in a key


def quote(identifier: str) -> str:
    """``identifier`` as a quoted SQL identifier (the driver checks it is a plain name)."""
    return f'"{identifier}"'


def new_version() -> int:
    """A fresh version for a row being written: random, so that no two writers (in any
    process) draw the same one in practice, and an etag never names another write's bytes."""
    return random.getrandbits(62)


def _expires(param: str) -> str:
    """The expiry of a write whose TTL in seconds (or NULL) is the parameter ``param``."""
    return f"now() + {param}::float8 * interval '1 second'"


def upper_bound(base: str) -> str:
    """The least string above every key that starts with ``base`` (which ends in ``:``)."""
    return base[:-1] + chr(ord(":") + 1)


class Statements:
    """Every statement over one table, written once when the driver is built."""

    __slots__ = (
        "clear",
        "clear_all",
        "create",
        "delete",
        "delete_many",
        "get",
        "get_many",
        "get_tagged",
        "get_touch",
        "has",
        "increment",
        "meta",
        "put",
        "put_many",
        "remove_any",
        "remove_version",
        "sweep",
        "table",
        "touch",
        "update_any",
        "update_version",
    )

    def __init__(self, table: str) -> None:
        t = quote(table)
        self.table = table
        columns = "(key, value, expires, mtime, version)"
        replace = (
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires = excluded.expires, "
            "mtime = excluded.mtime, version = excluded.version"
        )
        self.get = f"SELECT value FROM {t} WHERE key = $1 AND {LIVE}"
        self.get_tagged = f"SELECT value, version FROM {t} WHERE key = $1 AND {LIVE}"
        self.has = f"SELECT 1 FROM {t} WHERE key = $1 AND {LIVE}"
        self.get_many = f"SELECT key, value FROM {t} WHERE key = ANY($1::text[]) AND {LIVE}"
        self.meta = (
            "SELECT mtime, date_part('epoch', expires - now()), version, octet_length(value) "
            f"FROM {t} WHERE key = $1 AND {LIVE}"
        )
        values = f"VALUES ($1, $2, {_expires('$3')}, now(), $4)"
        self.put = f"INSERT INTO {t} AS t {columns} {values} {replace}"
        # Ordered by key, so that concurrent batches lock their rows in the same order.
        self.put_many = (
            f"INSERT INTO {t} AS t {columns} SELECT k, v, {_expires('$3')}, now(), "
            "(random() * 4611686018427387903)::bigint "
            f"FROM unnest($1::text[], $2::bytea[]) AS r(k, v) ORDER BY k {replace}"
        )
        # Create-only: replaces an expired row, never a live one ("INSERT 0 0").
        self.create = f"INSERT INTO {t} AS t {columns} {values} {replace} WHERE {_EXPIRED}"
        self.update_any = (
            f"UPDATE {t} SET value = $2, expires = {_expires('$3')}, mtime = now(), version = $4 "
            f"WHERE key = $1 AND {LIVE}"
        )
        self.update_version = self.update_any + " AND version = $5"
        self.delete = f"DELETE FROM {t} WHERE key = $1"
        self.delete_many = f"DELETE FROM {t} WHERE key = ANY($1::text[])"
        self.remove_any = f"DELETE FROM {t} WHERE key = $1 AND {LIVE}"
        self.remove_version = self.remove_any + " AND version = $2"
        self.clear = f"DELETE FROM {t} WHERE key >= $1 AND key < $2"
        self.clear_all = f"DELETE FROM {t}"
        # A live integer gains $2 and keeps its expiry; an absent or expired key starts at $2
        # with the TTL $3. A live row holding anything else is left alone: no row comes back.
        stored = "btrim(encode(t.value, 'escape'), E' \\t\\n\\r')::bigint"
        self.increment = (
            f"INSERT INTO {t} AS t {columns} "
            f"VALUES ($1, convert_to($2::bigint::text, 'UTF8'), {_expires('$3')}, now(), $4) "
            f"ON CONFLICT (key) DO UPDATE SET "
            f"value = CASE WHEN {_EXPIRED} THEN excluded.value "
            f"ELSE convert_to(({stored} + $2::bigint)::text, 'UTF8') END, "
            f"expires = CASE WHEN {_EXPIRED} THEN excluded.expires ELSE t.expires END, "
            "mtime = excluded.mtime, version = excluded.version "
            f"WHERE {_EXPIRED} OR encode(t.value, 'escape') ~ {_JSON_INTEGER} "
            "RETURNING value"
        )
        renew = f"UPDATE {t} SET expires = {_expires('$2')} WHERE key = $1 AND {LIVE}"
        self.touch = renew
        self.get_touch = renew + " RETURNING value"
        self.sweep = (
            f"DELETE FROM {t} WHERE key IN "
            f"(SELECT key FROM {t} WHERE expires <= now() LIMIT $1 FOR UPDATE SKIP LOCKED)"
        )

    def listing(
        self,
        base: str,
        *,
        after: str | None = None,
        max_depth: int | None = None,
        limit: int | None = None,
    ) -> tuple[str, list[Any]]:
        """The query of the live keys in ``base``'s key range, in key order: above ``after``
        (the last key of the page before), with at most ``max_depth`` separators after the
        base, at most ``limit`` of them; and its parameters."""
        above = after is not None and after >= base  # a cursor below the range is no bound
        where = ["key > $1" if above else "key >= $1"]
        args: list[Any] = [after if above else base]
        if base:
            args.append(upper_bound(base))
            where.append(f"key < ${len(args)}")
        if max_depth is not None:
            args.append(base.count(":") + max_depth)
            where.append(f"{_DEPTH} <= ${len(args)}")
        where.append(LIVE)
        sql = f"SELECT key FROM {quote(self.table)} WHERE {' AND '.join(where)} ORDER BY key"
        if limit is not None:
            args.append(limit)
            sql += f" LIMIT ${len(args)}"
        return sql, args


async def prepare_table(connection: asyncpg.Connection, table: str) -> None:
    """Create ``table`` if it is missing; refuse one that is not a unistorage table of this
    schema, with a `DriverError` that says why. Runs in one transaction, under an advisory
    lock named after the table, so processes opening it at once create it once."""
    async with connection.transaction():
        await connection.execute(
            "SELECT pg_advisory_xact_lock(hashtext($1))", "unistorage:" + table
        )
        found = await connection.fetchrow(
            "SELECT c.oid, c.relkind::text AS relkind, obj_description(c.oid, 'pg_class') AS comment "
            "FROM pg_class c WHERE c.oid = to_regclass($1)",
            quote(table),
        )
        if found is None:
            await _create(connection, table)
            return
        where = f"table {table!r}"
        if found["relkind"] != "r":
            _refuse(f"{where} exists and is not a plain table (relkind {found['relkind']!r})")
        comment = found["comment"] or ""
        if comment.startswith(_COMMENT_PREFIX) and comment != _COMMENT:
            _refuse(
                f"{where} has {comment[len(_COMMENT_PREFIX) - 7 :]!r}; this driver reads "
                f"schema {SCHEMA} (upgrade unistorage, or choose another table=)"
            )
        columns = [
            (row["attname"], row["type"], row["collname"])
            for row in await connection.fetch(
                "SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type, "
                "CASE WHEN a.attcollation = 0 THEN NULL ELSE co.collname END AS collname "
                "FROM pg_attribute a LEFT JOIN pg_collation co ON co.oid = a.attcollation "
                "WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped "
                "ORDER BY a.attnum",
                found["oid"],
            )
        ]
        if comment != _COMMENT or columns != COLUMNS:
            _refuse(
                f"{where} is not a unistorage table (columns {columns}, comment {comment!r}; "
                f"expected {COLUMNS}); choose another table="
            )


async def _create(connection: asyncpg.Connection, table: str) -> None:
    t = quote(table)
    await connection.execute(
        f'CREATE TABLE {t} (key text COLLATE "C" PRIMARY KEY, value bytea NOT NULL, '
        "expires timestamptz, mtime timestamptz NOT NULL, version bigint NOT NULL)"
    )
    await connection.execute(
        f"CREATE INDEX {quote(table + '_expires')} ON {t} (expires) WHERE expires IS NOT NULL"
    )
    await connection.execute(f"COMMENT ON TABLE {t} IS '{_COMMENT}'")


def _refuse(message: str) -> None:
    raise DriverError("postgres", "open", None, message)
