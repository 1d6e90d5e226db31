"""Watching an fs store for changes from any process, through watchfiles' public API."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from drivers import _fs_listing as listing
from drivers import _fs_read as read
from drivers._fs_beneath import DIRECTORY, open_at
from drivers._fs_layout import SELF
from drivers._fs_tree import Tree
from storage import UnsupportedError, Watchers, WatchEvent

logger = logging.getLogger("drivers.fs")

_DELETED = 3  # watchtree.Change.deleted
_OWN_LIMIT = 4096


class FsWatcher:
    """Reports the changes of one store to its `Watchers`, from this process and others.

    Changes made through the driver are queued by `note` (called by the file layer, in its
    threads) and sent by `flush` as soon as the operation returns; watchfiles reports the
    others, batched, from a thread running ``watchtree.watch``, and its echo of our own
    changes is not sent twice. Built idle: `start` begins watching, `stop` ends it (it may
    start again), `close` ends it when the driver is disposed.
    """

    def __init__(self, tree: Tree, watchers: Watchers) -> None:
        self._tree = tree
        self._watchers = watchers
        #: Changes made here, waiting for `flush` (a deque: appended to from worker threads).
        self.pending: collections.deque[tuple[WatchEvent, str]] = collections.deque()
        self._own: dict[str, tuple[int, float]] = {}
        self._dirs: set[str] = set()
        self._stop: threading.Event | None = None
        self._dirs_known = threading.Event()
        self._thread: threading.Thread | None = None
        self._ready: asyncio.Future[None] | None = None

    @property
    def thread(self) -> threading.Thread | None:
        """The thread running watchfiles while watching."""
        return self._thread

    def note(self, event: WatchEvent, key: str, ino: int) -> None:
        """Queue the event of a change made here, and remember the state it left so that
        watchfiles' echo of it is not sent twice. A no-op while not watching."""
        if self._stop is None:
            return
        now = time.monotonic()
        own = self._own
        if len(own) > _OWN_LIMIT:
            for stale in [k for k, (_, at) in list(own.items()) if now - at > 10]:
                own.pop(stale, None)
        own[key] = (ino, now)
        self.pending.append((event, key))

    def flush(self) -> None:
        """Send the queued events of changes made here (on the event loop)."""
        while self.pending:
            event, key = self.pending.popleft()
            self._watchers.emit(event, key)

    async def start(self) -> None:
        """Begin watching; returns once every later change, from any process, is seen."""
        if self._ready is not None:
            await asyncio.shield(self._ready)  # started, or being started by another call
            return
        try:
            from watchfiles import watch  # optional dependency
        except ImportError as exc:
            raise UnsupportedError(
                "fs watch needs watchfiles (pip install 'unistorage[fs]')"
            ) from exc
        loop = asyncio.get_running_loop()
        ready = self._ready = loop.create_future()
        stop = self._stop = threading.Event()
        self._dirs_known.clear()
        self._thread = threading.Thread(
            target=self._watch, args=(watch, stop, loop, ready), name="fs-watch", daemon=True
        )
        self._thread.start()
        try:
            await asyncio.shield(ready)
            self._dirs = await loop.run_in_executor(None, listing.directories, self._tree)
        except BaseException:
            await self.stop()
            raise
        finally:
            self._dirs_known.set()

    async def stop(self) -> None:
        """Stop watching and wait for the thread; harmless when not watching."""
        stop, thread = self._stop, self._thread
        self._stop = self._thread = self._ready = None
        self._own.clear()
        if stop is not None:
            stop.set()
        self._dirs_known.set()
        if thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, thread.join)

    async def close(self) -> None:
        """Stop watching for good (the driver is disposed); harmless twice."""
        await self.stop()
        self.pending.clear()

    def _watch(
        self,
        watch: Callable[..., Iterator[set[tuple[int, str]]]],
        stop: threading.Event,
        loop: asyncio.AbstractEventLoop,
        ready: asyncio.Future[None],
    ) -> None:
        begun = _Begun(stop, lambda: loop.call_soon_threadsafe(_settle, ready, None))
        try:
            for changes in watch(
                self._tree.base,
                watch_filter=None,
                debounce=100,
                step=20,
                stop_event=begun,
                rust_timeout=500,
                raise_interrupt=False,
                ignore_permission_denied=True,
            ):
                self._dirs_known.wait()
                events = self._translate(changes)
                if events and not stop.is_set():
                    with contextlib.suppress(RuntimeError):  # the loop is closed
                        loop.call_soon_threadsafe(self._deliver, events)
        except Exception as exc:
            if begun.fired:
                logger.exception("watching %s failed", self._tree.base)
            else:
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(_settle, ready, exc)

    def _translate(self, changes: set[tuple[int, str]]) -> list[tuple[WatchEvent, str]]:
        """Events for the keys a batch of file changes touched, directories left out.

        A batch is a set, so order is lost: a key both written and deleted in it is reported
        in the order that ends in its current state. A path reached through a link inside
        the store (which watchfiles may follow) is outside it: no event.
        """
        tree = self._tree
        prefix = tree.base + os.sep
        parents = {os.path.dirname(path) for _, path in changes}
        dirs = self._dirs
        seen: dict[str, set[WatchEvent]] = {}
        for change, path in changes:
            if not path.startswith(prefix):
                continue
            names = path[len(prefix) :].split(os.sep)
            if not names[0] or tree.layout.ignored(names[0]) or _through_link(tree.root, names):
                continue  # internal files (temporary ones, sidecars), or reached by a link
            if names[-1] == SELF:
                names.pop()
            elif path in parents or path in dirs or read.is_directory(tree, names):
                if change == _DELETED:
                    dirs.discard(path)
                elif path not in dirs and read.is_directory(tree, names):
                    dirs.add(path)
                    # Files can land in a new directory before it is watched: look inside.
                    for found in listing.files_in(tree, names):
                        if (key := tree.layout.key_of(found)) is not None:
                            seen.setdefault(key, set()).add("update")
                continue
            key = tree.layout.key_of(names) if names else None
            if key is not None:
                seen.setdefault(key, set()).add("remove" if change == _DELETED else "update")
        events: list[tuple[WatchEvent, str]] = []
        for key, kinds in seen.items():
            current = read.value_stat(tree, key)
            own = self._own.get(key)
            if own is not None and own[0] == (0 if current is None else current.st_ino):
                continue  # our own change, already reported
            if len(kinds) == 1:
                events.append((kinds.pop(), key))
            elif current is None:
                events += [("update", key), ("remove", key)]
            else:
                events += [("remove", key), ("update", key)]
        return events

    def _deliver(self, events: list[tuple[WatchEvent, str]]) -> None:
        for event, key in events:
            self._watchers.emit(event, key)


def _through_link(root: int, names: list[str]) -> bool:
    """True when the directory holding ``names`` is reached through a link."""
    if len(names) < 2:
        return False
    try:
        os.close(open_at(root, "/".join(names[:-1]), DIRECTORY))
    except OSError as exc:
        return exc.errno == errno.ELOOP
    return False


class _Begun:
    """The stop event handed to ``watchtree.watch``, whose first poll says watching began.

    ``watchtree.watch`` builds its watcher inside the generator, so no call returns when it
    is ready. Its watcher subscribes to the whole tree before the watch loop starts, and only
    that loop polls ``is_set()``: the first poll is the moment from which every change is
    seen. `FsWatcher.start` waits for it, so a change made after ``watch()`` returns is always
    reported (the private ``RustNotify`` class, constructed directly, is no longer needed).
    """

    __slots__ = ("_begun", "_stop", "fired")

    def __init__(self, stop: threading.Event, begun: Callable[[], Any]) -> None:
        self._stop = stop
        self._begun = begun
        self.fired = False

    def is_set(self) -> bool:
        if not self.fired:
            self.fired = True
            self._begun()
        return self._stop.is_set()


def _settle(future: asyncio.Future[None], exc: BaseException | None) -> None:
    if future.done():
        return
    if exc is None:
        future.set_result(None)
    else:
        future.set_exception(exc)
