"""The redis driver: keys in Redis or a Redis Cluster, through redis-py's asyncio client.

Every key is stored as ``<base><key>`` (UTF-8) holding the raw value bytes. Batches take one
round trip (MGET, MSET or a pipeline; in a cluster one command per hash slot, grouped per node);
listing and clear SCAN every primary; conditional writes and `get_meta` run as Lua scripts, so
they are atomic in the server. The etag is the SHA-1 of the stored value. User meta lives in a
sibling key (the default of `storage.Driver`): it may sit in another slot, and that is fine,
because meta and value are never written in one atomic step.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, TypeAlias, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.retry import Retry

from drivers._redis_pool import WaitingConnectionPool, WaitingRedisCluster
from storage import (
    Capabilities,
    ConflictError,
    Driver,
    InvalidArgumentError,
    Unwatch,
    WatchCallback,
    Watchers,
    WatchEvent,
)
from storage.driver import parse_url_options

__all__ = ["RedisDriver"]

logger = logging.getLogger(__name__)

_Client: TypeAlias = "Redis | RedisCluster"

# Options read from a URL's query string by the driver; everything else goes to redis-py.
_DRIVER_OPTIONS = frozenset(
    {"base", "scan_count", "retries", "notify_keyspace_events", "max_connections", "pool_timeout"}
)
_CLEAR_CHUNK = 1000
# K: keyspace channel, $: string commands, g: DEL/UNLINK/EXPIRE..., x: expired, e: evicted.
_NEEDED_EVENTS = "K$gxe"
_EVENTS: dict[bytes, WatchEvent] = {
    b"set": "update",
    b"del": "remove",
    b"expired": "remove",
    b"evicted": "remove",
}
_GLOB = re.compile(r"([\\*?\[\]])")

# ARGV: if_none_match ("1"/"0"), if_match etag ("" for none), value, PX milliseconds ("" for none)
_SET_IF = """
local current = redis.call('GET', KEYS[1])
if ARGV[1] == '1' and current then return 0 end
if ARGV[2] ~= '' and (not current or redis.sha1hex(current) ~= ARGV[2]) then return -1 end
if ARGV[4] == '' then
  redis.call('SET', KEYS[1], ARGV[3])
else
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
end
return 1
"""
_META = """
local pttl = redis.call('PTTL', KEYS[1])
if pttl == -2 then return false end
local idle = redis.pcall('OBJECT', 'IDLETIME', KEYS[1])
if type(idle) ~= 'number' then idle = -1 end
local value = redis.call('GET', KEYS[1])
return {string.len(value), pttl, redis.sha1hex(value), idle}
"""


def _glob_escape(text: str) -> str:
    """``text`` as a SCAN MATCH pattern that matches only itself."""
    return _GLOB.sub(r"\\\1", text)


def _px(ttl: float) -> int:
    return max(1, round(ttl * 1000))


def _etag(value: bytes) -> str:
    return hashlib.sha1(value, usedforsecurity=False).hexdigest()


class RedisDriver(Driver):
    """Keys in one Redis server or a Redis Cluster, under an optional ``base`` prefix.

    ``url`` (``redis://``, ``rediss://``, ``redis+cluster://``) or ``client`` (a
    ``redis.asyncio.Redis`` / ``RedisCluster`` without ``decode_responses``, left open on
    dispose). ``notify_keyspace_events=True`` lets `watch` turn
    keyspace notifications on in the server (otherwise the server must be configured for them).
    Short socket timeouts and one retry bound how long a dead or hung server takes to fail.

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
    schemes = ("redis", "rediss", "redis+cluster")
    capabilities = Capabilities(ttl=True, conditional=True, watch=True)

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
                retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries),
                max_connections=max_connections,
                pool_timeout=pool_timeout,
                **client_options,
            )
        elif client.get_encoder().decode_responses:
            raise InvalidArgumentError("the redis driver needs a client without decode_responses")
        self._client: _Client = client
        self._prefix = base if not base or base.endswith(":") else base + ":"
        self._scan_count = scan_count
        self._notify = notify_keyspace_events
        self._set_if = client.register_script(_SET_IF)
        self._meta = client.register_script(_META)
        self._watchers = Watchers()
        self._listeners: list[tuple[asyncio.Task[None], Redis]] = []

    @staticmethod
    def _connect(url: str, **options: Any) -> _Client:
        scheme = urlsplit(url).scheme
        if scheme == "redis+cluster":
            return WaitingRedisCluster.from_url("redis" + url[len(scheme) :], **options)
        return Redis.from_pool(WaitingConnectionPool.from_url(url, **options))

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisDriver:
        """Build from a URL; ``base``, ``scan_count``... in the query go to the driver."""
        parts = urlsplit(url)
        if parts.scheme not in cls.schemes:
            raise InvalidArgumentError(f"the redis driver does not read {parts.scheme!r} URLs")
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        own = parse_url_options(urlencode([(k, v) for k, v in pairs if k in _DRIVER_OPTIONS]))
        rest = urlencode([(k, v) for k, v in pairs if k not in _DRIVER_OPTIONS])
        return cls(urlunsplit(parts._replace(query=rest)), **{**own, **options})

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
        return value, None if value is None else _etag(value)

    async def has_item(self, key: str) -> bool:
        return bool(await self._client.exists(self._key(key)))

    async def set_item(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        await self._client.set(self._key(key), value, px=None if ttl is None else _px(ttl))

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
            pipe.set(self._key(key), value, px=px)
        await pipe.execute()

    async def remove_items(self, keys: Sequence[str]) -> None:
        if keys:
            # A cluster client splits a multi-key UNLINK by hash slot.
            await self._client.unlink(*(self._key(key) for key in keys))

    async def set_item_conditional(
        self,
        key: str,
        value: bytes,
        *,
        ttl: float | None = None,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str | None:
        args = [
            "1" if if_none_match else "0",
            if_match or "",
            value,
            "" if ttl is None else _px(ttl),
        ]
        outcome = await self._set_if(keys=[self._key(key)], args=args)
        if outcome == 0:
            raise ConflictError(key, "the key already exists")
        if outcome != 1:
            raise ConflictError(key)
        return _etag(value)

    async def get_meta(self, key: str) -> dict[str, Any]:
        found = await self._meta(keys=[self._key(key)])
        if not found:
            return {}
        size, pttl, etag, idle = found
        meta: dict[str, Any] = {"size": int(size), "etag": etag.decode()}
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

    async def clear(self, base: str = "") -> None:
        chunk: list[bytes] = []
        async for name in self._scan(base):
            chunk.append(name)
            if len(chunk) >= _CLEAR_CHUNK:
                await self._client.unlink(*chunk)
                chunk = []
        if chunk:
            await self._client.unlink(*chunk)

    # -- watch --------------------------------------------------------------------------------

    async def watch(self, callback: WatchCallback) -> Unwatch:
        remove = self._watchers.add(callback)
        if not self._listeners:
            try:
                await self._start_listening()
            except BaseException:
                await remove()
                raise

        async def unwatch() -> None:
            await remove()
            if not self._watchers:
                await self._stop_listening()

        return unwatch

    def _node_clients(self) -> list[Redis]:
        """One plain client per primary, without retries: the listener reconnects itself."""
        if isinstance(self._client, RedisCluster):
            pools = [
                ConnectionPool(**{**node.connection_kwargs, "retry": Retry(NoBackoff(), 0)})
                for node in self._client.get_primaries()
            ]
        else:
            pool = self._client.connection_pool
            pools = [
                ConnectionPool(
                    connection_class=pool.connection_class,
                    **{**pool.connection_kwargs, "retry": Retry(NoBackoff(), 0)},
                )
            ]
        return [Redis.from_pool(pool) for pool in pools]

    async def _start_listening(self) -> None:
        if isinstance(self._client, RedisCluster):
            await self._client.initialize()
        loop = asyncio.get_running_loop()
        for node in self._node_clients():
            ready: asyncio.Future[None] = loop.create_future()
            task = asyncio.create_task(self._listen(node, ready))
            self._listeners.append((task, node))
            try:
                await ready
            except BaseException:
                await self._stop_listening()
                raise

    async def _stop_listening(self) -> None:
        listeners, self._listeners = self._listeners, []
        for task, _ in listeners:
            task.cancel()
        for task, node in listeners:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            await node.aclose()

    async def _enable_notifications(self, node: Redis) -> None:
        config = await node.config_get("notify-keyspace-events")
        current = config.get("notify-keyspace-events", "")
        current = current.decode() if isinstance(current, bytes) else str(current)
        # "A" stands for every event class, "$g...xe" among them.
        covered = set(current.replace("A", "g$lshzxet"))
        missing = [flag for flag in _NEEDED_EVENTS if flag not in covered]
        if not missing:
            return
        if not self._notify:
            logger.warning(
                "redis keyspace notifications lack %r; watch sees no changes until the server "
                "enables them (or pass notify_keyspace_events=True)",
                "".join(missing),
            )
            return
        await node.config_set("notify-keyspace-events", current + "".join(missing))

    async def _listen(self, node: Redis, ready: asyncio.Future[None]) -> None:
        """Follow one node's keyspace channel; after a failure, reconnect and subscribe again."""
        db = int(node.connection_pool.connection_kwargs.get("db", 0))
        pattern = f"__keyspace@{db}__:" + self._pattern("")
        delay = 0.1
        while True:
            pubsub = node.pubsub()
            try:
                await self._enable_notifications(node)
                await pubsub.psubscribe(pattern)
                # Return from watch() only once the server confirms the subscription.
                if await pubsub.get_message(timeout=5.0) is None:
                    raise TimeoutError("redis did not confirm the keyspace subscription")
                if not ready.done():
                    ready.set_result(None)
                delay = 0.1
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None:
                        self._dispatch(message["channel"], message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not ready.done():
                    ready.set_exception(exc)
                    return
                logger.warning("redis keyspace listener lost its connection: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _dispatch(self, channel: bytes, data: bytes) -> None:
        event = _EVENTS.get(data)
        if event is None:
            return
        name = channel.split(b"__:", 1)[1]
        try:
            key = name.decode()[len(self._prefix) :]
        except UnicodeDecodeError:
            return
        self._watchers.emit(event, key)

    async def dispose(self) -> None:
        await self._stop_listening()
        self._watchers.clear()
        if self._owned:
            await self._client.aclose()
