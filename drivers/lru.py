"""The lru driver: a bounded in-process store that forgets the least recently used keys."""

from __future__ import annotations

import itertools
import sys
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timezone
from typing import Any, NamedTuple

from storage import (
    Capabilities,
    ConflictError,
    Driver,
    InvalidArgumentError,
    Unwatch,
    WatchCallback,
    Watchers,
)
from storage.atomic import decode_counter, encode_counter

__all__ = ["LruDriver"]


class _Entry(NamedTuple):
    value: bytes
    expires: float  # time.monotonic() deadline, 0.0 for never
    mtime: float  # time.time() of the write
    version: int


#: Bytes one entry costs beyond its key and value objects: its slot and link in the ordered
#: dict (with the hash table's slack), the entry tuple, its mtime float and version int
#: (measured with tracemalloc on 64-bit CPython 3.11; tests/test_lru.py checks that the bound
#: holds for the memory really held).
ENTRY_OVERHEAD = 280


def entry_cost(key: str, value: bytes) -> int:
    """What holding ``value`` at ``key`` costs, as counted against ``max_bytes``."""
    return sys.getsizeof(key) + sys.getsizeof(value) + ENTRY_OVERHEAD


class LruDriver(Driver):
    """Keys in memory, bounded by ``max_entries`` and/or ``max_bytes`` of memory held.

    A read or a write makes a key the most recently used; a write that goes over a bound
    evicts the least recently used keys (reported to watchers as removals). Expired keys are
    dropped lazily. User meta entries count towards the bounds like any other entry.

    ``max_bytes`` bounds what the entries really hold: each counts its key object, its value
    object (an exact-size copy of the bytes written) and `ENTRY_OVERHEAD`, so a bound of 1 MB
    holds about 1 MB whatever the sizes of the values.
    """

    name = "lru"
    schemes = ("lru",)
    capabilities = Capabilities(ttl=True, conditional=True, watch=True, bounded=True)

    def __init__(
        self,
        *,
        max_entries: int | None = 1000,
        max_bytes: int | None = None,
    ) -> None:
        for label, bound in (("max_entries", max_entries), ("max_bytes", max_bytes)):
            if bound is not None and (
                isinstance(bound, bool) or not isinstance(bound, int) or bound < 1
            ):
                raise InvalidArgumentError(f"{label} must be None or an int >= 1, not {bound!r}")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._data: OrderedDict[str, _Entry] = OrderedDict()
        self._bytes = 0
        self._versions = itertools.count(1)
        self._watchers = Watchers()

    @property
    def size(self) -> int:
        """Number of entries held now (expired ones not yet dropped included)."""
        return len(self._data)

    @property
    def total_bytes(self) -> int:
        """Memory the entries held now cost (see `entry_cost`), as bounded by ``max_bytes``."""
        return self._bytes

    def _live(self, key: str, *, touch: bool = True) -> _Entry | None:
        entry = self._data.get(key)
        if entry is None:
            return None
        if entry.expires and entry.expires <= time.monotonic():
            self._drop(key)
            return None
        if touch:
            self._data.move_to_end(key)
        return entry

    def _drop(self, key: str) -> bool:
        entry = self._data.pop(key, None)
        if entry is None:
            return False
        self._bytes -= entry_cost(key, entry.value)
        if self._watchers:
            self._watchers.emit("remove", key)
        return True

    def _write(self, key: str, value: bytes, ttl: float | None) -> _Entry:
        # An exact-size copy: a serializer's output buffer may be far larger than its bytes.
        value = b"%b" % value
        cost = entry_cost(key, value)
        if self.max_bytes is not None and cost > self.max_bytes:
            # A value larger than the whole cache is not kept, and must not leave a stale one.
            self._drop(key)
            return _Entry(value, 0.0, time.time(), next(self._versions))
        expires = time.monotonic() + ttl if ttl is not None else 0.0
        entry = _Entry(value, expires, time.time(), next(self._versions))
        old = self._data.pop(key, None)
        if old is not None:
            self._bytes -= entry_cost(key, old.value)
        self._data[key] = entry
        self._bytes += cost
        if self._watchers:
            self._watchers.emit("update", key)
        self._evict()
        return entry

    def _evict(self) -> None:
        while self._data and (
            (self.max_entries is not None and len(self._data) > self.max_entries)
            or (self.max_bytes is not None and self._bytes > self.max_bytes)
        ):
            self._drop(next(iter(self._data)))

    async def get_item(self, key: str) -> bytes | None:
        entry = self._live(key)
        return None if entry is None else entry.value

    async def has_item(self, key: str) -> bool:
        return self._live(key, touch=False) is not None

    async def get_items(self, keys: Sequence[str]) -> list[bytes | None]:
        live = self._live
        return [None if (entry := live(key)) is None else entry.value for key in keys]

    async def set_item(self, key: str, value: bytes, *, ttl: float | None = None) -> str | None:
        return str(self._write(key, value, ttl).version)

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
        self._check(key, if_match, if_none_match)
        return str(self._write(key, value, ttl).version)

    def _check(self, key: str, if_match: str | None, if_none_match: bool) -> _Entry | None:
        current = self._live(key, touch=False)
        if if_none_match and current is not None:
            raise ConflictError(key, "the key already exists")
        if if_match is not None and not (
            current is not None and (if_match == "*" or str(current.version) == if_match)
        ):
            raise ConflictError(key)
        return current

    async def remove_item(self, key: str) -> None:
        self._drop(key)

    async def remove_item_conditional(self, key: str, *, if_match: str) -> None:
        self._check(key, if_match, False)
        self._drop(key)

    async def increment(self, key: str, by: int, *, ttl: float | None = None) -> int:
        current = self._live(key, touch=False)
        value = decode_counter(key, None if current is None else current.value) + by
        if current is None:
            self._write(key, encode_counter(value, key), ttl)
        else:  # the same expiry
            left = current.expires - time.monotonic() if current.expires else None
            entry = self._write(key, encode_counter(value, key), None)
            if left is not None:
                self._data[key] = entry._replace(expires=time.monotonic() + left)
        return value

    async def touch(self, key: str, ttl: float) -> bool:
        current = self._live(key, touch=False)
        if current is None:
            return False
        self._data[key] = current._replace(expires=time.monotonic() + ttl)
        return True

    async def get_item_touch(self, key: str, ttl: float) -> bytes | None:
        current = self._live(key)
        if current is None:
            return None
        self._data[key] = current._replace(expires=time.monotonic() + ttl)
        return current.value

    async def remove_items(self, keys: Sequence[str]) -> None:
        for key in keys:
            self._drop(key)

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
            if key.startswith(base) and not (entry.expires and entry.expires <= now)
        ]

    async def clear(self, base: str = "") -> None:
        for key in [key for key in self._data if key.startswith(base)]:
            self._drop(key)

    async def get_meta(self, key: str) -> dict[str, Any]:
        entry = self._live(key, touch=False)
        if entry is None:
            return {}
        meta: dict[str, Any] = {
            "mtime": datetime.fromtimestamp(entry.mtime, timezone.utc),
            "size": len(entry.value),
            "etag": str(entry.version),
        }
        if entry.expires:
            meta["ttl"] = max(0.0, entry.expires - time.monotonic())
        return meta

    async def watch(self, callback: WatchCallback) -> Unwatch:
        return self._watchers.add(callback)

    async def dispose(self) -> None:
        self._watchers.clear()
        self._data.clear()
        self._bytes = 0
