"""The postgres driver's `watch`: LISTEN/NOTIFY, fed by triggers on the table.

Statement-level triggers on the table (one each for INSERT, UPDATE and DELETE, over their
transition tables) call ``pg_notify`` once per changed key, whoever wrote it: this driver,
another process, or psql. An UPDATE that keeps the version (a `touch`, which renews only the
expiry) is no change. The payload is ``u`` (update) or ``r`` (remove) followed by the key.
A NOTIFY payload must stay under 8000 bytes, so a key longer than `LONG_KEY` bytes is written
to the side table ``<table>_long_keys`` and the payload carries ``\\x1f`` and that row's id (no
key holds a control character, so the two forms cannot be confused); the listener reads the
key back. The sweeper drops side rows after ten minutes.

The triggers cost every write (measured: 20-30% of a sequential upsert), so they are
installed by the first `watch` on the table, from any process, and stay; a table nobody ever
watched pays nothing. ``DROP TRIGGER unistorage_notify_insert ON <table>`` (and ``_update``,
``_delete``) takes them away again.

`NotifyListener` owns one dedicated connection (outside the pool) and two tasks: one that
keeps the connection LISTENing, reconnecting after a failure, and one that hands
notifications to the watchers in the order they came. Changes made while the connection is
down are not reported. An expired key is reported removed when the sweeper deletes its row.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import asyncpg

from drivers._postgres_pool import PostgresPool
from drivers._postgres_schema import quote
from storage import Watchers, WatchEvent

__all__ = ["LONG_KEY", "NotifyListener", "install_triggers", "long_keys_table"]

logger = logging.getLogger(__name__)

#: Keys longer than this (in UTF-8 bytes) travel through the side table.
LONG_KEY = 7900
_TRIGGERS = ("unistorage_notify_insert", "unistorage_notify_update", "unistorage_notify_delete")
_EVENTS: dict[str, WatchEvent] = {"u": "update", "r": "remove"}


def channel(table: str) -> str:
    """The NOTIFY channel of ``table``."""
    return f"unistorage:{table}"


def long_keys_table(table: str) -> str:
    """The side table that carries ``table``'s long keys to listeners."""
    return f"{table}_long_keys"


def _function(table: str) -> str:
    long = quote(long_keys_table(table))
    name = channel(table)
    return f"""
CREATE OR REPLACE FUNCTION {quote(table + "_notify")}() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
  tag text := CASE TG_OP WHEN 'DELETE' THEN 'r' ELSE 'u' END;
  changed text[];
  note bigint;
BEGIN
  IF TG_OP = 'INSERT' THEN
    changed := ARRAY(SELECT key FROM new_rows);
  ELSIF TG_OP = 'UPDATE' THEN
    changed := ARRAY(SELECT n.key FROM new_rows n JOIN old_rows o ON o.key = n.key
                     WHERE n.version <> o.version);
  ELSE
    changed := ARRAY(SELECT key FROM old_rows);
  END IF;
  PERFORM pg_notify('{name}', tag || k) FROM unnest(changed) AS k WHERE octet_length(k) <= {LONG_KEY};
  IF EXISTS (SELECT 1 FROM unnest(changed) AS k WHERE octet_length(k) > {LONG_KEY}) THEN
    FOR note IN INSERT INTO {long} (key)
        SELECT k FROM unnest(changed) AS k WHERE octet_length(k) > {LONG_KEY} RETURNING id LOOP
      PERFORM pg_notify('{name}', tag || chr(31) || note);
    END LOOP;
  END IF;
  RETURN NULL;
END
$fn$"""


async def install_triggers(pool: PostgresPool, table: str) -> None:
    """Install the NOTIFY triggers on ``table`` unless they are there (once, under the
    table's advisory lock, whoever races to do it)."""
    t = quote(table)
    count = "SELECT count(*) FROM pg_trigger WHERE tgrelid = to_regclass($1) AND tgname = ANY($2)"
    if await pool.fetchval(count, t, list(_TRIGGERS)) == len(_TRIGGERS):
        return
    function = quote(table + "_notify")
    transitions = {
        "insert": "NEW TABLE AS new_rows",
        "update": "OLD TABLE AS old_rows NEW TABLE AS new_rows",
        "delete": "OLD TABLE AS old_rows",
    }
    script: list[tuple[str, list[object]]] = [
        ("SELECT pg_advisory_xact_lock(hashtext($1))", ["unistorage:" + table]),
        (
            f"CREATE TABLE IF NOT EXISTS {quote(long_keys_table(table))} (id bigserial "
            "PRIMARY KEY, key text NOT NULL, at timestamptz NOT NULL DEFAULT now())",
            [],
        ),
        (_function(table), []),
    ]
    for event, tables in transitions.items():
        name = f"unistorage_notify_{event}"
        script.append((f"DROP TRIGGER IF EXISTS {name} ON {t}", []))
        script.append(
            (
                f"CREATE TRIGGER {name} AFTER {event.upper()} ON {t} REFERENCING {tables} "
                f"FOR EACH STATEMENT EXECUTE FUNCTION {function}()",
                [],
            )
        )
    await pool.run_script(script)


class NotifyListener:
    """Follows ``table``'s NOTIFY channel on a connection of its own (opened by ``pool``) and
    reports each change to ``watchers``; `start` and `stop` bound its life."""

    def __init__(self, pool: PostgresPool, table: str, watchers: Watchers) -> None:
        self._pool = pool
        self._table = table
        self._watchers = watchers
        self._resolve = f"SELECT key FROM {quote(long_keys_table(table))} WHERE id = $1"
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def running(self) -> bool:
        """True between `start` and `stop`."""
        return bool(self._tasks)

    async def start(self) -> None:
        """Install the triggers, LISTEN, and return once the server has confirmed it."""
        await install_triggers(self._pool, self._table)
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._tasks = [
            asyncio.create_task(self._listen(ready)),
            asyncio.create_task(self._deliver()),
        ]
        try:
            await ready
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """End both tasks and the connection."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _notified(self, _connection: object, _pid: int, _channel: str, payload: object) -> None:
        self._queue.put_nowait(str(payload))

    async def _listen(self, ready: asyncio.Future[None]) -> None:
        """Keep a connection LISTENing; after a failure, reconnect with a growing pause."""
        delay = 0.1
        while True:
            connection: asyncpg.Connection | None = None
            try:
                connection = await self._pool.connect()
                lost = asyncio.Event()
                connection.add_termination_listener(_setter(lost))
                await connection.add_listener(channel(self._table), self._notified)
                if not ready.done():
                    ready.set_result(None)
                delay = 0.1
                while not lost.is_set():
                    # A dead server is noticed by the keepalive query as well as by the socket.
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(lost.wait(), timeout=5.0)
                    if not lost.is_set():
                        await connection.execute("SELECT 1", timeout=5.0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not ready.done():
                    ready.set_exception(exc)
                    return
                logger.warning("postgres NOTIFY listener lost its connection: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
            finally:
                if connection is not None:
                    try:
                        await connection.close(timeout=1.0)
                    except Exception:
                        connection.terminate()

    async def _deliver(self) -> None:
        """Emit each payload, in order, reading long keys back from the side table."""
        while True:
            payload = await self._queue.get()
            event, key = _EVENTS.get(payload[:1]), payload[1:]
            if event is None:
                continue
            if key.startswith("\x1f"):
                try:
                    key = await self._pool.fetchval(self._resolve, int(key[1:]))
                except Exception as exc:
                    logger.warning("postgres watch could not read a long key back: %s", exc)
                    continue
                if key is None:
                    continue
            self._watchers.emit(event, key)


def _setter(event: asyncio.Event) -> Callable[[object], None]:
    return lambda _connection: event.set()
