"""The memory driver: a dict in this process. The default root of every Storage."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timezone
from typing import Any, Final

from storage import ConflictError, Driver, Unwatch, WatchCallback, Watchers

__all__ = ["MemoryDriver"]


# An entry is a plain tuple (value, expires, mtime, version): building a NamedTuple costs more
# than the rest of a write. expires is a time.monotonic() deadline, 0.0 for never.
_Entry = tuple[bytes, float, float, int]
_VALUE: Final = 0
_EXPIRES: Final = 1
_MTIME: Final = 2
_VERSION: Final = 3


class MemoryDriver(Driver):
    """Keys in a dict, with TTL (expired keys are dropped on a timer, unread), etags and watch."""

    name = "memory"
    schemes = ("memory",)
    supports_ttl = True
    supports_conditional = True
    supports_watch = True
    supports_nowait = True

    def __init__(self, *, read_only: bool = False) -> None:
        self._data: dict[str, _Entry] = {}
        self._versions = itertools.count(1)
        self._deadlines: list[tuple[float, str]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._watchers = Watchers()
        self._listening = self._watchers.callbacks
        self.read_only = read_only

    def _live(self, key: str) -> _Entry | None:
        entry = self._data.get(key)
        if entry is not None and entry[_EXPIRES] and entry[_EXPIRES] <= time.monotonic():
            self._expire(key, entry)
            return None
        return entry

    def _expire(self, key: str, entry: _Entry) -> None:
        if self._data.get(key) is entry:
            del self._data[key]
            if self._listening:
                self._watchers.emit("remove", key)

    def _schedule(self, key: str, deadline: float) -> None:
        heapq.heappush(self._deadlines, (deadline, key))
        if self._timer is None or deadline < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            loop = asyncio.get_running_loop()
            self._timer = loop.call_at(
                loop.time() + max(0.0, deadline - time.monotonic()), self._sweep
            )
            self._timer_at = deadline

    def _sweep(self) -> None:
        self._timer = None
        now = time.monotonic()
        while self._deadlines and self._deadlines[0][0] <= now:
            _, key = heapq.heappop(self._deadlines)
            entry = self._data.get(key)
            if entry is not None and entry[_EXPIRES] and entry[_EXPIRES] <= now:
                self._expire(key, entry)
        if self._deadlines:
            deadline = self._deadlines[0][0]
            loop = asyncio.get_running_loop()
            self._timer = loop.call_at(loop.time() + max(0.0, deadline - now), self._sweep)
            self._timer_at = deadline

    def _write(self, key: str, value: bytes, ttl: float | None) -> _Entry:
        if ttl is None:
            entry = (value, 0.0, time.time(), next(self._versions))
        else:
            deadline = time.monotonic() + ttl
            entry = (value, deadline, time.time(), next(self._versions))
            self._schedule(key, deadline)
        self._data[key] = entry
        if self._listening:
            self._watchers.emit("update", key)
        return entry

    def get_item_nowait(self, key: str) -> bytes | None:
        entry = self._data.get(key)
        if entry is None:
            return None
        if entry[_EXPIRES] and entry[_EXPIRES] <= time.monotonic():
            self._expire(key, entry)
            return None
        return entry[_VALUE]

    def set_item_nowait(self, key: str, value: bytes) -> None:
        if self._listening:
            self._write(key, value, None)
        else:
            self._data[key] = (value, 0.0, time.time(), next(self._versions))

    async def get_item(self, key: str) -> bytes | None:
        entry = self._data.get(key)
        if entry is None:
            return None
        if entry[_EXPIRES] and entry[_EXPIRES] <= time.monotonic():
            self._expire(key, entry)
            return None
        return entry[_VALUE]

    async def has_item(self, key: str) -> bool:
        return self._live(key) is not None

    async def get_items(self, keys: Sequence[str]) -> list[bytes | None]:
        live = self._live
        return [None if (entry := live(key)) is None else entry[_VALUE] for key in keys]

    async def set_item(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        if ttl is None and not self._listening:  # the common write, inlined
            self._data[key] = (value, 0.0, time.time(), next(self._versions))
        else:
            self._write(key, value, ttl)

    async def set_items(
        self, items: Sequence[tuple[str, bytes]], *, ttl: float | None = None
    ) -> None:
        for key, value in items:
            self._write(key, value, ttl)

    async def set_item_conditional(
        self,
        key: str,
        value: bytes,
        *,
        ttl: float | None = None,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str | None:
        current = self._live(key)
        if if_none_match and current is not None:
            raise ConflictError(key, "the key already exists")
        if if_match is not None and (current is None or str(current[_VERSION]) != if_match):
            raise ConflictError(key)
        return str(self._write(key, value, ttl)[_VERSION])

    async def remove_item(self, key: str) -> None:
        if self._data.pop(key, None) is not None and self._listening:
            self._watchers.emit("remove", key)

    async def remove_items(self, keys: Sequence[str]) -> None:
        for key in keys:
            await self.remove_item(key)

    async def iter_keys(
        self, base: str = "", *, max_depth: int | None = None
    ) -> AsyncIterator[str]:
        for key in await self.get_keys(base, max_depth=max_depth):
            yield key

    async def get_keys(self, base: str = "", *, max_depth: int | None = None) -> list[str]:
        now = time.monotonic()
        return [
            key
            for key, entry in list(self._data.items())
            if key.startswith(base) and not (entry[_EXPIRES] and entry[_EXPIRES] <= now)
        ]

    async def clear(self, base: str = "") -> None:
        doomed = [key for key in self._data if key.startswith(base)]
        if not base:
            self._data.clear()
        else:
            for key in doomed:
                del self._data[key]
        self._watchers.emit_many("remove", doomed)

    async def get_meta(self, key: str) -> dict[str, Any]:
        entry = self._live(key)
        if entry is None:
            return {}
        meta: dict[str, Any] = {
            "mtime": datetime.fromtimestamp(entry[_MTIME], timezone.utc),
            "size": len(entry[_VALUE]),
            "etag": str(entry[_VERSION]),
        }
        if entry[_EXPIRES]:
            meta["ttl"] = max(0.0, entry[_EXPIRES] - time.monotonic())
        return meta

    async def watch(self, callback: WatchCallback) -> Unwatch:
        return self._watchers.add(callback)

    async def dispose(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._watchers.clear()
        self._data.clear()
        self._deadlines.clear()
