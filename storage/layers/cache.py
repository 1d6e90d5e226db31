"""`Cache`: a read-through cache of any driver (an lru by default) in front of any other.

Reads (``get_item``, ``get_items``, ``has_item``) try the cache, then the inner driver, and
keep what the inner driver returned. Everything else (listing, meta, etags, conditional writes,
watch) goes to the inner driver, so an etag always names the inner's current version.

**Local writes invalidate, they do not write through.** A write (set, batches, conditional
set, removals, ``clear(base)``, user meta) goes to the inner driver, then removes the keys from
the cache; the next read fetches the stored value. Writing through would have to order two
writers' cache updates as the inner driver ordered their writes, which no driver reports.

**A read that overlaps a write never puts the old value back** (the bookkeeping is the fill
guard, storage/layers/_cache_guard.py). Every backend read is a *fill*, registered per key
while it runs. A write marks the fills of its keys *stale* when it starts (and detaches them,
so later readers start a fresh read), and counts as in progress until its cache removal is
done; a fill that starts while a write to its key (or a clear of a base above it) is in
progress is stale from the start. A stale fill answers the readers that waited for it (they
ran concurrently with the write) but stores nothing; a fill that goes stale while storing
removes what it stored. So after a write returns, the cache holds nothing older than it.

**Remote changes.** Where the inner driver can watch, the first fill subscribes to its events
(before reading, so no change can slip between the read and the subscription) and every
update or removal event invalidates the key, through the same guard as a local write: the key
bypasses the cache until its entry is removed. Own writes come back as events too (one more,
harmless removal). Dispose unsubscribes. A watch that drops events (a lost connection) leaves
entries stale until ``ttl``: set one when that matters, and always with an inner that cannot
watch (s3, http), where nothing else tells the cache about other writers.

**The inner's TTLs.** Where the inner driver can expire keys, a fill also reads the key's
remaining TTL (``get_meta``; concurrently for one key, after the values for a batch) and
keeps the value no longer, so a cached value never outlives the stored one (Redis reports
expiries late). This costs one extra backend call per miss, never one per hit.

**Stampedes.** Concurrent misses on one key share one fill: exactly one backend read. A failed
read reaches every waiter and caches nothing. A reader that is cancelled leaves the fill
running for the others.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import Any, TypeVar

from ..driver import Driver, Unwatch, WatchEvent, meta_key
from ..errors import InvalidArgumentError, UnsupportedError, own
from ..layer import Layer
from ..registry import driver_class
from ..ttl import TTL, ttl_seconds
from ._cache_guard import Fill, FillGuard, Value

_T = TypeVar("_T")
__all__ = ["Cache"]

logger = logging.getLogger(__name__)

#: Appended to a key to name its remembered miss in the cache (keys hold no control characters).
_MISS = "\x1fmiss"
_DEFAULT_ENTRIES = 10_000


class Cache(Layer):
    """Reads served from ``cache`` when it holds the key, else from ``inner`` (then kept).

    ``inner`` is the driver of record. ``cache`` is any writable driver, owned by the layer
    (default: an lru of 10,000 entries). ``ttl`` bounds how long an entry is kept (seconds or a
    timedelta; None keeps it until evicted or invalidated). ``negative_ttl`` remembers a miss
    for that long (None: misses are not remembered). Either needs a cache that can expire keys.
    Capabilities are the inner driver's, without no-coroutine calls. Disposing disposes both.
    """

    layer_name = "cache"

    def __init__(
        self,
        inner: Driver,
        cache: Driver | None = None,
        *,
        ttl: TTL = None,
        negative_ttl: TTL = None,
    ) -> None:
        lru: Any = driver_class("lru")  # through the registry: the core imports no driver
        store = lru(max_entries=_DEFAULT_ENTRIES) if cache is None else cache
        if not isinstance(store, Driver):
            raise InvalidArgumentError(f"the cache is a storage.Driver, not {store!r}")
        if store.capabilities.read_only:
            raise InvalidArgumentError(f"the {store.name} cache is read-only")
        self.ttl = ttl_seconds(ttl)
        self.negative_ttl = ttl_seconds(negative_ttl)
        if (self.ttl or self.negative_ttl) and not store.capabilities.ttl:
            raise UnsupportedError(f"the {store.name} cache cannot expire entries")
        bounded = inner.capabilities.bounded and store.capabilities.bounded
        super().__init__(
            inner,
            capabilities=dataclasses.replace(inner.capabilities, nowait=False, bounded=bounded),
        )
        self.cache = store
        self._expires = store.capabilities.ttl
        self._inner_ttl = inner.capabilities.ttl
        self._watches = inner.capabilities.watch
        self._guard = FillGuard()
        self._pending = self._guard.changed  # read on every hit: one attribute, not two
        self._tasks: set[asyncio.Task[None]] = set()
        self._drainer: asyncio.Task[None] | None = None
        self._unwatch: Unwatch | None = None
        self._subscribing: asyncio.Lock | None = None
        self._closed = False

    # -- reads --------------------------------------------------------------------------------

    async def get_item(self, key: str) -> bytes | None:
        if key not in self._pending:
            value = await self.cache.get_item(key)
            if value is not None:
                return value
            if self.negative_ttl is not None and await self.cache.get_item(key + _MISS) is not None:
                return None
        (future,) = self._fetch((key,))
        await asyncio.wait((future,))
        return _result(future)

    async def has_item(self, key: str) -> bool:
        return await self.get_item(key) is not None

    async def get_items(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        values = await self.cache.get_items(keys)
        pending = self._pending
        absent = [
            index
            for index, value in enumerate(values)
            if value is None or (pending and keys[index] in pending)
        ]
        if not absent:
            return values
        values = list(values)
        if self.negative_ttl is not None:
            known = [index for index in absent if keys[index] not in pending]
            remembered = await self.cache.get_items([keys[index] + _MISS for index in known])
            missed = {
                index for index, hit in zip(known, remembered, strict=True) if hit is not None
            }
            absent = [index for index in absent if index not in missed]
            for index in missed:
                values[index] = None
            if not absent:
                return values
        futures = self._fetch([keys[index] for index in absent])
        await asyncio.wait(set(futures))
        for index, future in zip(absent, futures, strict=True):
            values[index] = _result(future)
        return values

    def get_item_nowait(self, key: str) -> bytes | None:
        return Driver.get_item_nowait(self, key)

    def set_item_nowait(self, key: str, value: bytes) -> None:
        Driver.set_item_nowait(self, key, value)

    # -- fills --------------------------------------------------------------------------------

    def _fetch(self, keys: Sequence[str]) -> list[asyncio.Future[Value]]:
        """A future per key: a running fill's, or a new one; new fills share one backend read."""
        loop = asyncio.get_running_loop()
        futures, started = self._guard.join(keys, loop)
        if started:
            task = loop.create_task(self._fill(list(started), list(started.values())))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return futures

    async def _fill(self, keys: list[str], fills: list[Fill]) -> None:
        """Read ``keys`` from the inner driver, answer the waiters, then keep what is fresh."""
        try:
            if self._watches and self._unwatch is None:
                await self._subscribe()
            values, ttls = await self._read(keys)
        except BaseException as exc:
            for key, fill in zip(keys, fills, strict=True):
                self._guard.release(key, fill)
                if isinstance(exc, Exception):
                    fill.future.set_exception(exc)
                else:
                    fill.future.cancel()
            if not isinstance(exc, Exception):
                raise
            return
        for fill, value in zip(fills, values, strict=True):
            fill.future.set_result(value)
        try:
            await self._keep(keys, fills, values, ttls)
        except Exception:
            logger.warning("the %s cache could not keep a read", self.cache.name, exc_info=True)
        finally:
            for key, fill in zip(keys, fills, strict=True):
                self._guard.release(key, fill)

    async def _read(self, keys: list[str]) -> tuple[list[Value], list[Any] | None]:
        """The values of ``keys`` and, where the inner can expire keys, their remaining TTLs."""
        inner = self.inner
        if len(keys) == 1:
            if not self._inner_ttl:
                return [await inner.get_item(keys[0])], None
            value, meta = await asyncio.gather(inner.get_item(keys[0]), inner.get_meta(keys[0]))
            return [value], [meta.get("ttl")]
        values = await inner.get_items(keys)
        if not self._inner_ttl:
            return values, None
        found = [index for index, value in enumerate(values) if value is not None]
        metas = await asyncio.gather(*(inner.get_meta(keys[index]) for index in found))
        ttls: list[Any] = [None] * len(keys)
        for index, meta in zip(found, metas, strict=True):
            ttls[index] = meta.get("ttl")
        return values, ttls

    async def _keep(
        self, keys: list[str], fills: list[Fill], values: list[Value], ttls: list[Any] | None
    ) -> None:
        by_ttl: dict[float | None, list[tuple[str, bytes]]] = {}
        misses: list[tuple[str, bytes]] = []
        kept: list[tuple[str, Fill]] = []
        for index, (key, fill, value) in enumerate(zip(keys, fills, values, strict=True)):
            if fill.stale:
                continue
            if value is None:
                if self.negative_ttl is not None:
                    misses.append((key + _MISS, b""))
                    kept.append((key, fill))
                continue
            ttl = self.ttl
            left = None if ttls is None else ttls[index]
            if left is not None:
                # The stored value expires: keep it no longer, and only where the cache expires.
                if not self._expires or not left > 0:
                    continue
                ttl = float(left) if ttl is None else min(ttl, float(left))
            by_ttl.setdefault(ttl, []).append((key, value))
            kept.append((key, fill))
        for ttl, items in by_ttl.items():
            await self.cache.set_items(items, ttl=ttl)
        if misses:
            await self.cache.set_items(misses, ttl=self.negative_ttl)
        late = [key for key, fill in kept if fill.stale]
        if late:
            # A write began while these were being stored; its own removal may have come first.
            await self.cache.remove_items(self._entries(late))

    def _entries(self, keys: Sequence[str]) -> list[str]:
        """The cache keys that hold what is known of ``keys`` (values, remembered misses)."""
        if self.negative_ttl is None:
            return list(keys)
        return [*keys, *(key + _MISS for key in keys)]

    # -- local writes -------------------------------------------------------------------------

    async def _end(self, keys: Sequence[str]) -> None:
        try:
            await self.cache.remove_items(self._entries(keys))
        finally:
            self._guard.end(keys)

    async def set_item(self, key: str, value: bytes, *, ttl: float | None = None) -> str | None:
        self._guard.begin((key,))
        try:
            return await self.inner.set_item(key, value, ttl=ttl)
        finally:
            await self._end((key,))

    async def _writing(self, key: str, call: Awaitable[_T]) -> _T:
        """Any other write of ``key``: invalidated around it, like `set_item`."""
        self._guard.begin((key,))
        try:
            return await call
        finally:
            await self._end((key,))

    async def remove_item_conditional(self, key: str, *, if_match: str) -> None:
        await self._writing(key, self.inner.remove_item_conditional(key, if_match=if_match))

    async def increment(self, key: str, by: int, *, ttl: float | None = None) -> int:
        return await self._writing(key, self.inner.increment(key, by, ttl=ttl))

    async def touch(self, key: str, ttl: float) -> bool:
        # A new TTL changes how long the cached entry may live: it is read again.
        return await self._writing(key, self.inner.touch(key, ttl))

    async def get_item_touch(self, key: str, ttl: float) -> bytes | None:
        # The renewal must reach the backend; the value read with it is not kept.
        return await self._writing(key, self.inner.get_item_touch(key, ttl))

    async def write_chunks(
        self, key: str, chunks: AsyncIterator[bytes], *, ttl: float | None = None
    ) -> str | None:
        return await self._writing(key, self.inner.write_chunks(key, chunks, ttl=ttl))

    async def read_chunks(self, key: str, chunk_size: int) -> AsyncIterator[bytes] | None:
        # Large values are streamed from the driver of record, never through the cache.
        return await self.inner.read_chunks(key, chunk_size)

    async def set_item_conditional(
        self,
        key: str,
        value: bytes,
        *,
        ttl: float | None = None,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str | None:
        self._guard.begin((key,))
        try:
            return await self.inner.set_item_conditional(
                key, value, ttl=ttl, if_match=if_match, if_none_match=if_none_match
            )
        finally:
            await self._end((key,))

    async def set_items(
        self, items: Sequence[tuple[str, bytes]], *, ttl: float | None = None
    ) -> None:
        keys = [key for key, _ in items]
        self._guard.begin(keys)
        try:
            await self.inner.set_items(items, ttl=ttl)
        finally:
            await self._end(keys)

    async def remove_item(self, key: str) -> None:
        self._guard.begin((key,))
        try:
            await self.inner.remove_item(key)
        finally:
            await self._end((key,))

    async def remove_items(self, keys: Sequence[str]) -> None:
        self._guard.begin(keys)
        try:
            await self.inner.remove_items(keys)
        finally:
            await self._end(keys)

    async def clear(self, base: str = "") -> None:
        self._guard.begin_clear(base)
        try:
            await self.inner.clear(base)
        finally:
            try:
                await self.cache.clear(base)
            finally:
                self._guard.end_clear(base)

    # User meta is read from the inner driver; a layer above that keeps it in sibling items
    # (Driver's default) may have cached it, so its writes invalidate those items.

    async def set_user_meta(self, key: str, data: bytes) -> None:
        keys = (meta_key(key),)
        self._guard.begin(keys)
        try:
            await self.inner.set_user_meta(key, data)
        finally:
            await self._end(keys)

    async def remove_user_meta(self, key: str) -> None:
        keys = (meta_key(key),)
        self._guard.begin(keys)
        try:
            await self.inner.remove_user_meta(key)
        finally:
            await self._end(keys)

    # -- remote changes -----------------------------------------------------------------------

    async def _subscribe(self) -> None:
        if self._subscribing is None:
            self._subscribing = asyncio.Lock()
        async with self._subscribing:
            if self._unwatch is None and not self._closed:
                self._unwatch = await self.inner.watch(self._changed)

    def _changed(self, event: WatchEvent, key: str) -> None:
        """Called by the inner driver's watch: forget ``key`` as a local write would."""
        if self._closed:
            return
        self._guard.change(key)
        if self._drainer is None:
            self._drainer = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        """Remove remotely changed keys from the cache; until then they bypass it."""
        delay = 0.05
        try:
            while self._pending and not self._closed:
                batch = list(self._pending)
                try:
                    await self.cache.remove_items(self._entries(batch))
                except Exception:
                    logger.warning(
                        "the %s cache could not forget %d changed keys; retrying",
                        self.cache.name,
                        len(batch),
                        exc_info=True,
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 2.0)
                    continue
                self._guard.forget(batch)
        finally:
            self._drainer = None

    # -- lifecycle ----------------------------------------------------------------------------

    async def dispose(self) -> None:
        """Stop watching, stop running fills, then dispose the cache and the inner driver."""
        self._closed = True
        tasks = [*self._tasks, *([self._drainer] if self._drainer is not None else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        unwatch, self._unwatch = self._unwatch, None
        try:
            if unwatch is not None:
                await unwatch()
        finally:
            try:
                await self.cache.dispose()
            finally:
                await self.inner.dispose()


def _result(future: asyncio.Future[bytes | None]) -> bytes | None:
    """A fill's value, or its failure as an exception of this caller's own (`storage.errors.own`):
    every waiter of a fill, and every key of one backend read, share one failure."""
    exc = future.exception()
    if exc is not None:
        raise own(exc)
    return future.result()
