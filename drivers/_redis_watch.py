"""Keyspace notifications for the redis driver's `watch`: one listener task per server.

`KeyspaceListener` owns what it creates: a plain client (without retries: the listener
reconnects itself) and a task per server (per primary of a cluster), started by `start` and
closed by `stop`. Each task follows its server's keyspace channel for the driver's prefix and
turns ``set``, ``del``, ``expired`` and ``evicted`` into "update" and "remove" events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from storage import Watchers, WatchEvent

__all__ = ["KeyspaceListener"]

logger = logging.getLogger(__name__)

# K: keyspace channel, $: string commands, g: DEL/UNLINK/EXPIRE..., x: expired, e: evicted.
_NEEDED_EVENTS = "K$gxe"
_EVENTS: dict[bytes, WatchEvent] = {
    b"set": "update",
    b"del": "remove",
    b"expired": "remove",
    b"evicted": "remove",
}


class KeyspaceListener:
    """Follows the keyspace channels of ``client``'s servers for keys under ``prefix`` and
    reports each change to ``watchers`` as a mount-relative key.

    ``pattern`` is the SCAN-style glob of the prefix (escaped); ``enable`` lets it turn
    keyspace notifications on in a server that lacks them (otherwise it warns).
    """

    def __init__(
        self,
        client: Redis | RedisCluster,
        *,
        prefix: str,
        pattern: str,
        enable: bool,
        watchers: Watchers,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._pattern = pattern
        self._enable = enable
        self._watchers = watchers
        self._tasks: list[tuple[asyncio.Task[None], Redis]] = []

    @property
    def running(self) -> bool:
        """True between `start` and `stop`."""
        return bool(self._tasks)

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

    async def start(self) -> None:
        """Subscribe on every server; returns once each has confirmed its subscription."""
        if isinstance(self._client, RedisCluster):
            await self._client.initialize()
        loop = asyncio.get_running_loop()
        for node in self._node_clients():
            ready: asyncio.Future[None] = loop.create_future()
            task = asyncio.create_task(self._listen(node, ready))
            self._tasks.append((task, node))
            try:
                await ready
            except BaseException:
                await self.stop()
                raise

    async def stop(self) -> None:
        """End every listener task and close its client."""
        tasks, self._tasks = self._tasks, []
        for task, _ in tasks:
            task.cancel()
        for task, node in tasks:
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
        if not self._enable:
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
        pattern = f"__keyspace@{db}__:" + self._pattern
        delay = 0.1
        while True:
            pubsub = node.pubsub()
            try:
                await self._enable_notifications(node)
                await pubsub.psubscribe(pattern)
                # Return from start() only once the server confirms the subscription.
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
                    await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]  # typed since redis-py 8.2

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
