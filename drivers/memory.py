"""The memory driver: a dict in this process. The default root of every Storage."""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timezone
from typing import Any

from storage import Capabilities, ConflictError, Driver, Unwatch, WatchCallback, Watchers
from storage.atomic import decode_counter, encode_counter

__all__ = ["MemoryDriver"]


class MemoryDriver(Driver):
    """Keys in a dict, with TTL (expired keys are dropped on a timer, unread), etags and watch.

    Per key it keeps the value and one *stamp*: the write time in nanoseconds, bumped so that it
    never repeats, which is both the mtime and the etag. Values (bytes) and stamps (ints) are not
    tracked by the garbage collector, so a store of millions of keys costs no GC passes.

    Every value is copied into a bytes object of its exact size when stored: a serializer's
    output buffer may be several times larger than the bytes it holds (orjson's starts at
    4 KiB), and keeping that buffer would cost kilobytes per small value.
    """

    name = "memory"
    schemes = ("memory",)
    capabilities = Capabilities(ttl=True, conditional=True, watch=True, nowait=True, bounded=True)

    def __init__(self) -> None:
        self._data: dict[str, bytes] = {}
        self._stamps: dict[str, int] = {}
        self._last_stamp = 0
        self._expires: dict[str, float] = {}  # key -> time.monotonic() deadline, TTL keys only
        self._deadlines: list[tuple[float, str]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._watchers = Watchers()
        self._listening = self._watchers.callbacks

    # -- internals ------------------------------------------------------------------------------

    def _stamp(self) -> int:
        stamp = time.time_ns()
        if stamp <= self._last_stamp:
            stamp = self._last_stamp + 1
        self._last_stamp = stamp
        return stamp

    def _expired(self, key: str) -> bool:
        """True (after dropping it) when ``key`` has outlived its TTL."""
        deadline = self._expires.get(key)
        if deadline is None or deadline > time.monotonic():
            return False
        self._drop(key)
        return True

    def _drop(self, key: str) -> None:
        if self._data.pop(key, None) is not None:
            del self._stamps[key]
            self._expires.pop(key, None)
            if self._listening:
                self._watchers.emit("remove", key)

    def _write(self, key: str, value: bytes, ttl: float | None) -> int:
        stamp = self._stamp()
        self._data[key] = b"%b" % value  # an exact-size copy (see the class docstring)
        self._stamps[key] = stamp
        if ttl is not None:
            deadline = time.monotonic() + ttl
            self._expires[key] = deadline
            self._schedule(key, deadline)
        elif self._expires:
            self._expires.pop(key, None)
        if self._listening:
            self._watchers.emit("update", key)
        return stamp

    def _schedule(self, key: str, deadline: float) -> None:
        heapq.heappush(self._deadlines, (deadline, key))
        if len(self._deadlines) > 2 * len(self._expires) + 1024:
            # Rewrites leave stale heap entries behind; rebuild so the heap stays bounded.
            self._deadlines = [(when, name) for name, when in self._expires.items()]
            heapq.heapify(self._deadlines)
        if self._timer is None or deadline < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._arm(deadline)

    def _arm(self, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        self._timer = loop.call_at(loop.time() + max(0.0, deadline - time.monotonic()), self._sweep)
        self._timer_at = deadline

    def _sweep(self) -> None:
        self._timer = None
        now = time.monotonic()
        while self._deadlines and self._deadlines[0][0] <= now:
            _, key = heapq.heappop(self._deadlines)
            deadline = self._expires.get(key)
            if deadline is not None and deadline <= now:
                self._drop(key)
        if self._deadlines:
            self._arm(self._deadlines[0][0])

    # -- reads ----------------------------------------------------------------------------------

    def get_item_nowait(self, key: str) -> bytes | None:
        value = self._data.get(key)
        if value is not None and self._expires and self._expired(key):
            return None
        return value

    async def get_item(self, key: str) -> bytes | None:
        return self.get_item_nowait(key)

    async def has_item(self, key: str) -> bool:
        return self.get_item_nowait(key) is not None

    async def get_items(self, keys: Sequence[str]) -> list[bytes | None]:
        if not self._expires:
            get = self._data.get
            return [get(key) for key in keys]
        return [self.get_item_nowait(key) for key in keys]

    async def iter_keys(
        self, base: str = "", *, max_depth: int | None = None
    ) -> AsyncIterator[str]:
        for key in await self.get_keys(base, max_depth=max_depth):
            yield key

    async def get_keys(self, base: str = "", *, max_depth: int | None = None) -> list[str]:
        if self._expires:
            now = time.monotonic()
            for key, deadline in list(self._expires.items()):
                if deadline <= now:
                    self._drop(key)
        if not base:
            return list(self._data)
        return [key for key in self._data if key.startswith(base)]

    # The shortcuts and the coroutines share private steps: a subclass overriding one of the
    # coroutines loses the shortcut (`Driver.__init_subclass__`), never the coroutine.
    def get_item_with_etag_nowait(self, key: str) -> tuple[bytes | None, str | None]:
        return self._tagged(key)

    async def get_item_with_etag(self, key: str) -> tuple[bytes | None, str | None]:
        return self._tagged(key)

    def _tagged(self, key: str) -> tuple[bytes | None, str | None]:
        value = self.get_item_nowait(key)
        return value, None if value is None else str(self._stamps[key])

    async def get_meta(self, key: str) -> dict[str, Any]:
        value = self.get_item_nowait(key)
        return {} if value is None else self._meta(key, value)

    async def get_item_with_meta(self, key: str) -> tuple[bytes | None, dict[str, Any]]:
        value = self.get_item_nowait(key)
        return (None, {}) if value is None else (value, self._meta(key, value))

    def _meta(self, key: str, value: bytes) -> dict[str, Any]:
        stamp = self._stamps[key]
        meta: dict[str, Any] = {
            "mtime": datetime.fromtimestamp(stamp / 1e9, timezone.utc),
            "size": len(value),
            "etag": str(stamp),
        }
        deadline = self._expires.get(key)
        if deadline is not None:
            meta["ttl"] = max(0.0, deadline - time.monotonic())
        return meta

    # -- writes ---------------------------------------------------------------------------------

    def set_item_nowait(self, key: str, value: bytes) -> str | None:
        if self._listening or self._expires:
            return str(self._write(key, value, None))
        stamp = time.time_ns()  # _stamp() inlined: this is the hottest write path
        if stamp <= self._last_stamp:
            stamp = self._last_stamp + 1
        self._last_stamp = stamp
        self._data[key] = b"%b" % value  # an exact-size copy (see the class docstring)
        self._stamps[key] = stamp
        return str(stamp)

    async def set_item(self, key: str, value: bytes, *, ttl: float | None = None) -> str | None:
        return str(self._write(key, value, ttl))

    async def set_items(
        self, items: Sequence[tuple[str, bytes]], *, ttl: float | None = None
    ) -> None:
        if ttl is not None or self._listening:
            for key, value in items:
                self._write(key, value, ttl)
            return
        data, stamps, expires = self._data, self._stamps, self._expires
        stamp = self._stamp()
        for key, value in items:  # one stamp per write, no call per item
            data[key] = b"%b" % value
            stamps[key] = stamp
            stamp += 1
            if expires:
                expires.pop(key, None)
        self._last_stamp = stamp

    async def set_item_conditional(
        self,
        key: str,
        value: bytes,
        *,
        ttl: float | None = None,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str | None:
        return self._set_conditional(key, value, ttl, if_match, if_none_match)

    def set_item_conditional_nowait(
        self,
        key: str,
        value: bytes,
        *,
        ttl: float | None = None,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str | None:
        return self._set_conditional(key, value, ttl, if_match, if_none_match)

    def _set_conditional(
        self, key: str, value: bytes, ttl: float | None, if_match: str | None, if_none_match: bool
    ) -> str:
        if if_match is not None or if_none_match:
            self._check(key, if_match, if_none_match)
        return str(self._write(key, value, ttl))

    def _check(self, key: str, if_match: str | None, if_none_match: bool) -> None:
        exists = self.get_item_nowait(key) is not None
        if if_none_match and exists:
            raise ConflictError(key, "the key already exists")
        if if_match is not None and not (
            exists and (if_match == "*" or str(self._stamps[key]) == if_match)
        ):
            raise ConflictError(key)

    async def remove_item(self, key: str) -> None:
        self._drop(key)

    async def remove_item_conditional(self, key: str, *, if_match: str) -> None:
        self._check(key, if_match, False)
        self._drop(key)

    async def increment(self, key: str, by: int, *, ttl: float | None = None) -> int:
        current = self.get_item_nowait(key)
        value = decode_counter(key, current) + by
        if current is None:
            self._write(key, encode_counter(value, key), ttl)
        else:  # keeps its expiry
            deadline = self._expires.get(key)
            self._write(key, encode_counter(value, key), None)
            if deadline is not None:
                self._expires[key] = deadline
                self._schedule(key, deadline)
        return value

    async def touch(self, key: str, ttl: float) -> bool:
        if self.get_item_nowait(key) is None:
            return False
        deadline = time.monotonic() + ttl
        self._expires[key] = deadline
        self._schedule(key, deadline)
        return True

    async def get_item_touch(self, key: str, ttl: float) -> bytes | None:
        value = self.get_item_nowait(key)
        if value is not None:
            await self.touch(key, ttl)
        return value

    async def remove_items(self, keys: Sequence[str]) -> None:
        for key in keys:
            self._drop(key)

    async def clear(self, base: str = "") -> None:
        doomed = list(self._data) if not base else [k for k in self._data if k.startswith(base)]
        for key in doomed:
            self._drop(key)

    # -- lifecycle ------------------------------------------------------------------------------

    async def watch(self, callback: WatchCallback) -> Unwatch:
        return self._watchers.add(callback)

    async def dispose(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._watchers.clear()
        self._data.clear()
        self._stamps.clear()
        self._expires.clear()
        self._deadlines.clear()
