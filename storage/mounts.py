"""The mount table: longest-prefix routing, listing plans, shadowing and watch fan-out.

One `MountTable` is shared by a Storage and all its namespace views.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .driver import META_SUFFIX, Driver, Unwatch, WatchCallback, WatchEvent, has_shortcut
from .errors import InvalidArgumentError, UnsupportedError
from .keys import KeyCache, key_depth

__all__ = ["Mount", "MountTable"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Mount:
    """A driver mounted at ``base`` (``""`` for the root, otherwise ending in ``:``)."""

    base: str
    driver: Driver


@dataclass(slots=True)
class Listing:
    """How one mount takes part in listing or clearing a base."""

    mount: Mount
    base: str  # mount-relative base to ask the driver for
    max_depth: int | None  # mount-relative depth limit
    shadows: tuple[str, ...]  # bases (mount-relative) of deeper mounts that hide keys here

    def visible(self, key: str) -> bool:
        """True for a mount-relative item key that is neither meta nor shadowed."""
        if key.endswith(META_SUFFIX):
            return False
        return not (self.shadows and key.startswith(self.shadows))

    def owns(self, key: str) -> bool:
        """True for any mount-relative key (meta included) that is not shadowed."""
        if key.endswith(META_SUFFIX):
            key = key[: -len(META_SUFFIX)]
        return not (self.shadows and key.startswith(self.shadows))


@dataclass(slots=True)
class _Listener:
    prefix: str
    callback: WatchCallback
    owner: object


class MountTable:
    """Mounts by base, kept longest-first so that the first match routes a key."""

    __slots__ = (
        "_by_base",
        "_listeners",
        "_ordered",
        "_pending",
        "_unwatchers",
        "deadline",
        "keys",
        "nowait",
        "nowait_cas",
        "nowait_etag",
        "nowait_write",
        "only",
        "root",
    )

    def __init__(self, root: Driver, *, deadline: float | None = None) -> None:
        #: Seconds of the default deadline put in front of unbounded drivers mounted later.
        self.deadline = deadline
        self.root = Mount("", root)
        self._by_base: dict[str, Mount] = {"": self.root}
        self._ordered: tuple[Mount, ...] = (self.root,)
        #: The root driver while nothing else is mounted: the core's fast path skips routing.
        self.only: Driver | None = root
        #: `only`, when it also reads without coroutines.
        self.nowait: Driver | None = None
        #: `nowait`, when it may also be written.
        self.nowait_write: Driver | None = None
        #: `nowait`, when it also reads value and etag without a coroutine.
        self.nowait_etag: Driver | None = None
        #: `nowait_write`, when it also writes with a TTL or conditions without a coroutine.
        self.nowait_cas: Driver | None = None
        #: Recently normalized keys, shared by the Storage and its namespace views.
        self.keys = KeyCache()
        self._listeners: list[_Listener] = []
        self._unwatchers: dict[str, Unwatch] = {}
        self._pending: set[asyncio.Future[Any]] = set()
        self._reorder()

    # -- routing ------------------------------------------------------------------------------

    def route(self, key: str) -> Mount:
        """The mount holding ``key``: the one with the longest base that prefixes it."""
        if self.only is not None:
            return self.root  # nothing else mounted: no base to compare
        for mount in self._ordered:
            if key.startswith(mount.base):
                return mount
        return self.root  # unreachable: the root base "" prefixes every key

    def add(self, base: str, driver: Driver) -> Mount:
        if base in self._by_base:
            raise InvalidArgumentError(f"a driver is already mounted at {base!r}")
        mount = Mount(base, driver)
        self._by_base[base] = mount
        self._reorder()
        if self._listeners and driver.capabilities.watch:
            self._spawn(self._watch_mount(mount))
        return mount

    async def remove(self, base: str) -> Mount:
        if not base:
            raise InvalidArgumentError("the root cannot be unmounted")
        mount = self._by_base.pop(base, None)
        if mount is None:
            raise InvalidArgumentError(f"nothing is mounted at {base!r}")
        self._reorder()
        unwatch = self._unwatchers.pop(base, None)
        if unwatch is not None:
            await unwatch()
        return mount

    def _reorder(self) -> None:
        self._ordered = tuple(
            sorted(self._by_base.values(), key=lambda m: len(m.base), reverse=True)
        )
        only = self.only = self.root.driver if len(self._ordered) == 1 else None
        capabilities = None if only is None else only.capabilities
        self.nowait = only if capabilities is not None and capabilities.nowait else None
        self.nowait_write = None if capabilities is None or capabilities.read_only else self.nowait
        nowait, writable = self.nowait, self.nowait_write
        etag = nowait is not None and has_shortcut(nowait, "get_item_with_etag_nowait")
        self.nowait_etag = nowait if etag else None
        cas = writable is not None and has_shortcut(writable, "set_item_conditional_nowait")
        self.nowait_cas = writable if cas else None

    def mounts(self) -> tuple[Mount, ...]:
        """Every mount, longest base first."""
        return self._ordered

    def get(self, base: str) -> Mount | None:
        return self._by_base.get(base)

    # -- listing ------------------------------------------------------------------------------

    def plan(self, base: str, max_depth: int | None) -> Iterator[Listing]:
        """The mounts that hold keys under ``base``, root first, each with what to ask."""
        for mount in reversed(self._ordered):
            if mount.base.startswith(base):
                relative_base = ""
                depth = max_depth
                if depth is not None:
                    depth -= key_depth(mount.base, base)
                    if depth < 0:
                        continue
            elif base.startswith(mount.base):
                relative_base = base[len(mount.base) :]
                depth = max_depth
            else:
                continue
            shadows = tuple(
                other.base[len(mount.base) :]
                for other in self._ordered
                if other is not mount
                and other.base.startswith(mount.base)
                and (other.base.startswith(base) or base.startswith(other.base))
            )
            yield Listing(mount, relative_base, depth, shadows)

    # -- watching -----------------------------------------------------------------------------

    async def listen(self, prefix: str, callback: WatchCallback, owner: object) -> Unwatch:
        if not any(mount.driver.capabilities.watch for mount in self._ordered):
            names = ", ".join(sorted({mount.driver.name for mount in self._ordered}))
            raise UnsupportedError(f"no mounted driver can watch for changes ({names})")
        listener = _Listener(prefix, callback, owner)
        self._listeners.append(listener)
        if len(self._listeners) == 1:
            for mount in self._ordered:
                if mount.driver.capabilities.watch and mount.base not in self._unwatchers:
                    await self._watch_mount(mount)

        async def unwatch() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)
                if not self._listeners:
                    await self._stop_watching()

        return unwatch

    async def unlisten_owner(self, owner: object) -> None:
        self._listeners = [item for item in self._listeners if item.owner is not owner]
        if not self._listeners:
            await self._stop_watching()

    async def _watch_mount(self, mount: Mount) -> None:
        def on_event(event: WatchEvent, key: str) -> None:
            self._dispatch(mount, event, mount.base + key)

        self._unwatchers[mount.base] = await mount.driver.watch(on_event)

    async def _stop_watching(self) -> None:
        unwatchers, self._unwatchers = self._unwatchers, {}
        for unwatch in unwatchers.values():
            await unwatch()

    def _dispatch(self, source: Mount, event: WatchEvent, key: str) -> None:
        if key.endswith(META_SUFFIX) or self.route(key) is not source:
            return  # meta entries and keys shadowed by a deeper mount are not reported
        for listener in list(self._listeners):
            if key.startswith(listener.prefix):
                try:
                    result = listener.callback(event, key[len(listener.prefix) :])
                except Exception:
                    logger.exception("watch callback failed for %s %r", event, key)
                    continue
                if inspect.isawaitable(result):
                    self._spawn(result)

    def _spawn(self, awaitable: Any) -> None:
        future = asyncio.ensure_future(awaitable)
        self._pending.add(future)
        future.add_done_callback(self._finished)

    def _finished(self, future: asyncio.Future[Any]) -> None:
        self._pending.discard(future)
        if not future.cancelled() and future.exception() is not None:
            logger.error("watch task failed", exc_info=future.exception())

    async def dispose(self) -> None:
        """Stop watching, then dispose every distinct driver once."""
        self._listeners.clear()
        await self._stop_watching()
        for future in list(self._pending):
            future.cancel()
        seen: set[int] = set()
        for mount in self._ordered:
            if id(mount.driver) not in seen:
                seen.add(id(mount.driver))
                await mount.driver.dispose()
