"""The fill guard of `storage.layers.Cache`: which backend reads may still be kept.

A *fill* is one backend read of one key, shared by every reader that misses while it runs. The
guard knows the fills in flight and the changes in progress (local writes, clears, remote
changes whose cache entries are not removed yet), and marks a fill *stale* when a change of its
key begins while it runs, or was already in progress when it started. A stale fill still
answers its readers but must keep nothing (see the module docstring of `storage.layers.cache`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

__all__ = ["Fill", "FillGuard", "Value"]

Value = bytes | None


class Fill:
    """One backend read of one key; ``stale`` once a change of the key overlapped it."""

    __slots__ = ("future", "stale")

    def __init__(self, future: asyncio.Future[Value], stale: bool) -> None:
        self.future = future
        self.stale = stale


def _consume(future: asyncio.Future[Value]) -> None:
    # A fill whose readers were all cancelled must not log "exception was never retrieved".
    if not future.cancelled():
        future.exception()


class FillGuard:
    """The fills in flight and the changes in progress, per key, for one cache layer.

    ``changed`` holds the keys changed remotely whose entries are still being removed: readers
    bypass the cache for them. Every method is synchronous, so a check and the mark it leads
    to happen with no other task in between.
    """

    __slots__ = ("changed", "clearing", "fills", "writing")

    def __init__(self) -> None:
        self.fills: dict[str, Fill] = {}
        self.writing: dict[str, int] = {}
        self.clearing: list[str] = []
        self.changed: set[str] = set()

    def unsettled(self, key: str) -> bool:
        """True while a write, a clear or a remote change of ``key`` is still in progress."""
        if key in self.writing or key in self.changed:
            return True
        return any(key.startswith(base) for base in self.clearing)

    def join(
        self, keys: Sequence[str], loop: asyncio.AbstractEventLoop
    ) -> tuple[list[asyncio.Future[Value]], dict[str, Fill]]:
        """A future per key (a running fill's where one is shared), and the fills to start."""
        started: dict[str, Fill] = {}
        futures: list[asyncio.Future[Value]] = []
        fills = self.fills
        for key in keys:
            fill = fills.get(key) or started.get(key)
            if fill is None:
                future: asyncio.Future[Value] = loop.create_future()
                future.add_done_callback(_consume)
                fill = started[key] = Fill(future, self.unsettled(key))
                if not fill.stale:
                    fills[key] = fill  # a stale fill is never shared
            futures.append(fill.future)
        return futures, started

    def release(self, key: str, fill: Fill) -> None:
        """The fill is over: readers that miss from now on start a new one."""
        if self.fills.get(key) is fill:
            del self.fills[key]

    def _spoil(self, key: str) -> None:
        fill = self.fills.pop(key, None)
        if fill is not None:
            fill.stale = True

    def begin(self, keys: Sequence[str]) -> None:
        """A local write of ``keys`` begins: their fills are stale, and new ones will be."""
        writing = self.writing
        for key in keys:
            writing[key] = writing.get(key, 0) + 1
            self._spoil(key)

    def end(self, keys: Sequence[str]) -> None:
        """The write of ``keys`` is done and their entries are removed."""
        writing = self.writing
        for key in keys:
            count = writing[key] - 1
            if count:
                writing[key] = count
            else:
                del writing[key]

    def begin_clear(self, base: str) -> None:
        """A clear of ``base`` begins: fills of keys under it are stale, and new ones will be."""
        self.clearing.append(base)
        for key in [key for key in self.fills if key.startswith(base)]:
            self._spoil(key)

    def end_clear(self, base: str) -> None:
        self.clearing.remove(base)

    def change(self, key: str) -> None:
        """Another client changed ``key``: stale until `forget` says its entry is gone."""
        self._spoil(key)
        self.changed.add(key)

    def forget(self, keys: Sequence[str]) -> None:
        """The entries of these remotely changed keys are removed from the cache."""
        self.changed.difference_update(keys)
