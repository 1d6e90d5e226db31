"""The redis driver: keys in Redis or Valkey, standalone or a cluster, through redis-py's
asyncio client.

Every key is stored as ``<base><key>`` (UTF-8) holding the raw value bytes. Batches take one
round trip (MGET, MSET or a pipeline; in a cluster one command per hash slot, grouped per node);
listing and clear SCAN every primary. Every single-key operation is one round trip and atomic
in the server: a native command where Redis has one (SET NX/XX for create-only and
only-if-present writes, INCRBY, PEXPIRE, GETEX, UNLINK), a Lua script where a step compares an
etag (`drivers._redis_scripts`). The etag is the SHA-1 of the stored value. User meta lives in
a sibling key (the default of `storage.Driver`): it may sit in another slot, and that is fine,
because meta and value are never written in one atomic step. Needs Redis 6.2 or later (GETEX),
or any Valkey (tested with 8.1), which the ``valkey://`` schemes name (`drivers._redis_url`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, TypeAlias, cast
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from drivers import _redis_scripts as scripts
from drivers._redis_listing import scan_page
from drivers._redis_pool import WaitingConnectionPool, WaitingRedis, WaitingRedisCluster
from drivers._redis_scripts import etag
from drivers._redis_url import SCHEMES, client_url, split_options
from drivers._redis_watch import KeyspaceListener
from storage import (
    Capabilities,
    ConflictError,
    Driver,
    InvalidArgumentError,
    Unwatch,
    WatchCallback,
    Watchers,
)

__all__ = ["RedisDriver"]

logger = logging.getLogger(__name__)

_Client: TypeAlias = "Redis | RedisCluster"

_CLEAR_CHUNK = 1000
_GLOB = re.compile(r"([\\*?\[\]])")
# Redis counts in signed 64-bit integers.
_INT64 = range(-(2**63), 2**63)


def _glob_escape(text: str) -> str:
    """``text`` as a SCAN MATCH pattern that matches only itself."""
    return _GLOB.sub(r"\\\1", text)


def _px(ttl: float) -> int:
    return max(1, round(ttl * 1000))


def _set(name: bytes, value: bytes, px: int | None, *condition: str) -> tuple[Any, ...]:
    """SET's arguments, with PX for a TTL, then NX or XX, for ``execute_command``: redis-py's
    `set` weighs a dozen options first (2.7 us a call, 3% of a sequential set)."""
    if px is None:
        return ("SET", name, value, *condition)
    return ("SET", name, value, "PX", px, *condition)


def _counter_error(key: str, by: int, exc: ResponseError) -> InvalidArgumentError | None:
    """What INCRBY's refusal means to the caller; None for any other server error."""
    message = str(exc)
    if "not an integer" in message:
        return InvalidArgumentError(
            f"{key!r} does not hold an integer in redis' 64-bit range, so it cannot be incremented"
        )
    if "overflow" in message:
        return InvalidArgumentError(f"incrementing {key!r} by {by} would leave redis' 64-bit range")
    return None


class RedisDriver(Driver):
    """Keys in one Redis or Valkey server or a cluster of them, under an optional ``base``
    prefix.

    ``url`` (``redis://``, ``rediss://`` for TLS, ``redis+cluster://``; for Valkey the same
    URLs, options and all, may say ``valkey://``, ``valkeys://``, ``valkey+cluster://``) or
    ``client`` (a ``redis.asyncio.Redis`` / ``RedisCluster`` without ``decode_responses``, left
    open on dispose). ``notify_keyspace_events=True`` lets `watch` turn keyspace
    notifications on in the server (otherwise the server must be configured for them).
    Short socket timeouts and one retry of a failed connection (never of a reply that timed
    out, which may have run) bound how long a dead or hung server takes to fail.
    ``scan_count`` is the most keys one SCAN call visits (listing, clear, `list_page`).

    ``max_connections`` (default 50) bounds the connections to the server (to each node of a
    cluster, where it bounds the commands in flight across the whole cluster); a command that
    finds them all busy waits for one, at most ``pool_timeout`` seconds (default 5: longer than
    a hung server takes to fail a command, so only a backlog that is not draining gives up),
    then fails with `DriverError`. Both are URL options:
    ``redis://host/0?max_connections=20&pool_timeout=2``. One process gains nothing past about
    20 connections (measured), and 50 per process leaves a server's 10,000 clients for many
    processes. `watch` holds one more connection per server. With ``client``, its pool rules.
    """

    name = "redis"
    schemes = SCHEMES
    # Bounded: socket timeouts, one retry and a pool wait of pool_timeout end every call.
    capabilities = Capabilities(ttl=True, conditional=True, watch=True, bounded=True)

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Redis | RedisCluster | None = None,
        base: str = "",
        scan_count: int = 1000,
        socket_timeout: float = 2.0,
        socket_connect_timeout: float = 2.0,
        retries: int = 1,
        notify_keyspace_events: bool = False,
        max_connections: int = 50,
        pool_timeout: float = 5.0,
        **client_options: Any,
    ) -> None:
        if client is not None and url is not None:
            raise InvalidArgumentError("pass either url or client to the redis driver, not both")
        self._owned = client is None
        if client is None:
            client = self._connect(
                url or "redis://localhost:6379/0",
                socket_timeout=socket_timeout,
                socket_connect_timeout=socket_connect_timeout,
                # Few, short retries: a dead server must surface as an error within seconds.
                # Only a connection that failed is retried, never a reply that timed out: the
                # command may have run, and INCRBY or a compare-and-set must not run twice.
                retry=Retry(
                    ExponentialBackoff(cap=0.5, base=0.05),
                    retries,
                    supported_errors=(RedisConnectionError,),
                ),
                max_connections=max_connections,
                pool_timeout=pool_timeout,
                **client_options,
            )
        elif client.get_encoder().decode_responses:
            raise InvalidArgumentError("the redis driver needs a client without decode_responses")
        self._client: _Client = client
        self._prefix = base if not base or base.endswith(":") else base + ":"
        self._scan_count = scan_count
        self._set_if_match = client.register_script(scripts.SET_IF_MATCH)
        self._remove_if_match = client.register_script(scripts.REMOVE_IF_MATCH)
        self._increment_new_ttl = client.register_script(scripts.INCREMENT_NEW_TTL)
        self._meta = client.register_script(scripts.META)
        self._watchers = Watchers()
        self._keyspace = KeyspaceListener(
            client,
            prefix=self._prefix,
            pattern=self._pattern(""),
            enable=notify_keyspace_events,
            watchers=self._watchers,
        )

    @staticmethod
    def _connect(url: str, **options: Any) -> _Client:
        target, cluster = client_url(url)
        if cluster:
            return WaitingRedisCluster.from_url(target, **options)
        return WaitingRedis.from_pool(WaitingConnectionPool.from_url(target, **options))

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisDriver:
        """Build from a URL; ``base``, ``scan_count``... in the query go to the driver."""
        scheme = urlsplit(url).scheme
        if scheme not in cls.schemes:
            raise InvalidArgumentError(f"the redis driver does not read {scheme!r} URLs")
        rest, own = split_options(url)
        return cls(rest, **{**own, **options})

    def _key(self, key: str) -> bytes:
        return (self._prefix + key).encode()

    def _pattern(self, base: str) -> str:
        return _glob_escape(self._prefix + base) + "*"

    # -- items --------------------------------------------------------------------------------

    async def get_item(self, key: str) -> bytes | None:
        return cast("bytes | None", await self._client.get(self._key(key)))

    async def get_item_with_etag(self, key: str) -> tuple[bytes | None, str | None]:
        # The etag is the value's hash: one GET gives both, and they always agree.
        value = await self.get_item(key)
        return value, None if value is None else etag(value)

    async def has_item(self, key: str) -> bool:
        return bool(await self._client.exists(self._key(key)))

    async def set_item(self, key: str, value: bytes, *, ttl: float | None = None) -> str:
        px = None if ttl is None else _px(ttl)
        await self._client.execute_command(*_set(self._key(key), value, px))
        return etag(value)

    async def remove_item(self, key: str) -> None:
        await self._client.unlink(self._key(key))

    async def get_items(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        names = [self._key(key) for key in keys]
        if isinstance(self._client, RedisCluster):
            # One MGET per hash slot, pipelined per node, answers put back in input order.
            return cast("list[bytes | None]", await self._client.mget_nonatomic(names))
        return cast("list[bytes | None]", await self._client.mget(names))

    async def set_items(
        self, items: Sequence[tuple[str, bytes]], *, ttl: float | None = None
    ) -> None:
        if not items:
            return
        if ttl is None:
            mapping = {self._key(key): value for key, value in items}
            if isinstance(self._client, RedisCluster):
                await self._client.mset_nonatomic(mapping)
            else:
                await self._client.mset(mapping)
            return
        px = _px(ttl)
        if isinstance(self._client, RedisCluster):
            pipe: Any = self._client.pipeline()
        else:
            pipe = self._client.pipeline(transaction=False)
        for key, value in items:
            pipe.execute_command(*_set(self._key(key), value, px))
        await pipe.execute()

    async def remove_items(self, keys: Sequence[str]) -> None:
        if keys:
            # A cluster client splits a multi-key UNLINK by hash slot.
            await self._client.unlink(*(self._key(key) for key in keys))

    # -- atomic operations --------------------------------------------------------------------

    async def set_item_conditional(
        self,
        key: str,
        value: bytes,
        *,
        ttl: float | None = None,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str:
        px = None if ttl is None else _px(ttl)
        name = self._key(key)
        if if_none_match or if_match == "*":
            # SET NX / SET XX: create-only and only-if-present are native and atomic.
            condition = "NX" if if_none_match else "XX"
            if not await self._client.execute_command(*_set(name, value, px, condition)):
                reason = "the key already exists" if if_none_match else "the key does not exist"
                raise ConflictError(key, reason)
        elif if_match is not None:
            args = [if_match, value, "" if px is None else px]
            if not await self._set_if_match(keys=[name], args=args):
                raise ConflictError(key)
        else:
            await self._client.execute_command(*_set(name, value, px))
        return etag(value)

    async def remove_item_conditional(self, key: str, *, if_match: str) -> None:
        name = self._key(key)
        if if_match == "*":
            if not await self._client.unlink(name):
                raise ConflictError(key, "the key does not exist")
        elif not await self._remove_if_match(keys=[name], args=[if_match]):
            raise ConflictError(key)

    async def increment(self, key: str, by: int, *, ttl: float | None = None) -> int:
        """INCRBY, which creates a missing key at 0 and keeps an existing key's expiry; with
        ``ttl``, a script that gives the key it creates that TTL. Either is one round trip.

        INCRBY takes only a canonical decimal integer in the signed 64-bit range (no sign
        ``+``, no leading zero, no ``.0``, no quotes), a subset of JSON integer text: a JSON
        string ``"5"`` or a float ``5.0`` is refused with `InvalidArgumentError`, untouched.
        """
        if by not in _INT64:
            raise InvalidArgumentError(f"redis increments by 64-bit integers, not by {by}")
        name = self._key(key)
        try:
            if ttl is None:
                return await self._client.incrby(name, by)
            return int(await self._increment_new_ttl(keys=[name], args=[by, _px(ttl)]))
        except ResponseError as exc:
            refusal = _counter_error(key, by, exc)
            if refusal is None:
                raise
            raise refusal from exc

    async def touch(self, key: str, ttl: float) -> bool:
        return bool(await self._client.pexpire(self._key(key), _px(ttl)))

    async def get_item_touch(self, key: str, ttl: float) -> bytes | None:
        # GETEX as it goes on the wire: redis-py's `getex` weighs its options first, as `set`.
        reply = await self._client.execute_command("GETEX", self._key(key), "PX", _px(ttl))
        return cast("bytes | None", reply)

    async def get_meta(self, key: str) -> dict[str, Any]:
        found = await self._meta(keys=[self._key(key)])
        if not found:
            return {}
        size, pttl, tag, idle = found
        meta: dict[str, Any] = {"size": int(size), "etag": tag.decode()}
        if int(idle) >= 0:
            # OBJECT IDLETIME counts whole seconds since the last read or write: that is atime.
            meta["atime"] = datetime.now(timezone.utc) - timedelta(seconds=int(idle))
        if int(pttl) >= 0:
            meta["ttl"] = int(pttl) / 1000
        return meta

    # -- listing ------------------------------------------------------------------------------

    def _scan(self, base: str) -> AsyncIterator[bytes]:
        # A cluster client's scan_iter walks every primary in turn.
        iterator: AsyncIterator[bytes] = self._client.scan_iter(
            match=self._pattern(base), count=self._scan_count
        )
        return iterator

    def _relative(self, names: Sequence[bytes]) -> list[str]:
        """Mount-relative keys of SCAN's names, skipping any name that is not UTF-8."""
        skip = len(self._prefix)
        keys: list[str] = []
        for name in names:
            try:
                keys.append(name.decode()[skip:])
            except UnicodeDecodeError:
                logger.debug("skipping a key that is not UTF-8: %r", name)
        return keys

    async def iter_keys(
        self, base: str = "", *, max_depth: int | None = None
    ) -> AsyncIterator[str]:
        """Stream keys page by page. SCAN may repeat a key while the server resizes its table."""
        skip = len(self._prefix)
        async for name in self._scan(base):
            try:
                yield name.decode()[skip:]
            except UnicodeDecodeError:
                logger.debug("skipping a key that is not UTF-8: %r", name)

    async def get_keys(self, base: str = "", *, max_depth: int | None = None) -> list[str]:
        # dict.fromkeys drops the rare duplicates SCAN may return, keeping the order.
        return list(dict.fromkeys([key async for key in self.iter_keys(base)]))

    async def list_page(
        self,
        base: str = "",
        *,
        limit: int,
        cursor: str | None = None,
        max_depth: int | None = None,
    ) -> tuple[list[str], str | None]:
        """A page of SCAN (per primary, in address order, on a cluster), resumed from SCAN's
        own cursor.

        At least once: every key present for the whole listing is listed, and a key may be
        listed twice (SCAN repeats keys while the server resizes its table; a cluster whose
        primaries change restarts the listing). A page may hold somewhat more than ``limit``
        keys, because what one SCAN call returns cannot be split across pages; it holds fewer
        only at the end.
        """
        names, after = await scan_page(
            self._client, self._pattern(base), limit, cursor, self._scan_count
        )
        return list(dict.fromkeys(self._relative(names))), after

    async def clear(self, base: str = "") -> None:
        chunk: list[bytes] = []
        async for name in self._scan(base):
            chunk.append(name)
            if len(chunk) >= _CLEAR_CHUNK:
                await self._client.unlink(*chunk)
                chunk = []
        if chunk:
            await self._client.unlink(*chunk)

    # -- watch and lifecycle ------------------------------------------------------------------

    async def watch(self, callback: WatchCallback) -> Unwatch:
        remove = self._watchers.add(callback)
        if not self._keyspace.running:
            try:
                await self._keyspace.start()
            except BaseException:
                await remove()
                raise

        async def unwatch() -> None:
            await remove()
            if not self._watchers:
                await self._keyspace.stop()

        return unwatch

    async def dispose(self) -> None:
        await self._keyspace.stop()
        self._watchers.clear()
        if self._owned:
            await self._client.aclose()
