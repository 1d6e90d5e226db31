"""Watching an fs store for changes from any process, through watchfiles."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

from drivers._fs_layout import SELF
from drivers._fs_ops import FsFiles
from storage import UnsupportedError, Unwatch, WatchCallback, Watchers, WatchEvent

logger = logging.getLogger("drivers.fs")


class FsWatch(FsFiles):
    """Reports changes from watchfiles, and those made through this object at once."""

    _watchers: Watchers
    _watch_stop: threading.Event | None
    _watch_thread: threading.Thread | None
    _changed: collections.deque[tuple[WatchEvent, str]]
    _own: dict[str, tuple[int, float]]

    def _note(self, event: WatchEvent, key: str, ino: int) -> None:
        """Queue the event of a change made here (sent when the operation returns), and
        remember the state it left so that watchfiles' echo of it is not sent twice."""
        if self._watch_stop is None:
            return
        now = time.monotonic()
        if len(self._own) > 4096:
            for stale in [k for k, (_, at) in list(self._own.items()) if now - at > 10]:
                self._own.pop(stale, None)
        self._own[key] = (ino, now)
        self._changed.append((event, key))

    async def watch(self, callback: WatchCallback) -> Unwatch:
        """Report changes from any process (through watchfiles); events arrive batched."""
        if self._watch_stop is None:
            try:
                from watchfiles._rust_notify import RustNotify  # optional dependency
            except ImportError as exc:
                raise UnsupportedError(
                    "fs watch needs watchfiles (pip install 'unistorage[fs]')"
                ) from exc
            loop = asyncio.get_running_loop()
            stop = self._watch_stop = threading.Event()
            try:
                notify = await loop.run_in_executor(
                    None, RustNotify, [self.base], False, False, 300, True, True
                )
                dirs = await loop.run_in_executor(None, self._directories)
            except BaseException:
                self._watch_stop = None
                raise
            self._watch_thread = threading.Thread(
                target=self._watch_loop, args=(notify, dirs, stop, loop), daemon=True
            )
            self._watch_thread.start()
        remove = self._watchers.add(callback)

        async def unwatch() -> None:
            await remove()
            if not self._watchers:
                await self._stop_watching()

        return unwatch

    def _directories(self) -> set[str]:
        """Every directory under base (so that their later removal is not taken for a key's)."""
        found: set[str] = set()
        for directory, subdirs, _ in os.walk(self.base):
            subdirs[:] = [name for name in subdirs if not self._ignore.match(name)]
            found.add(directory)
        return found

    def _watch_loop(
        self, notify: Any, dirs: set[str], stop: threading.Event, loop: asyncio.AbstractEventLoop
    ) -> None:
        while not stop.is_set():
            try:
                changes = notify.watch(100, 20, 500, stop)
            except Exception:
                logger.exception("watching %s failed", self.base)
                return
            if isinstance(changes, str):
                continue
            events = self._translate(changes, dirs)
            if events and not stop.is_set():
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(self._deliver, events)
        with contextlib.suppress(Exception):
            notify.close()

    def _translate(
        self, changes: set[tuple[int, str]], dirs: set[str]
    ) -> list[tuple[WatchEvent, str]]:
        """Events for the keys a batch of file changes touched, directories left out.

        A batch is a set, so order is lost: a key both written and deleted in it is reported
        in the order that ends in its current state.
        """
        prefix = self.base + os.sep
        parents = {os.path.dirname(path) for _, path in changes}
        seen: dict[str, set[WatchEvent]] = {}
        for change, path in changes:
            if not path.startswith(prefix):
                continue
            names = path[len(prefix) :].split(os.sep)
            if names[-1] == SELF:
                names.pop()
            elif path in parents or path in dirs or os.path.isdir(path):
                if change == 3:
                    dirs.discard(path)
                elif path not in dirs and os.path.isdir(path):
                    dirs.add(path)
                    # Files can land in a new directory before it is watched: look inside.
                    for found in self._files_in(path):
                        if (key := self._key_of(found)) is not None:
                            seen.setdefault(key, set()).add("update")
                continue
            key = self._key_of(names) if names else None
            if key is not None:
                seen.setdefault(key, set()).add("remove" if change == 3 else "update")
        events: list[tuple[WatchEvent, str]] = []
        for key, kinds in seen.items():
            current = self._stat(self._path(key))
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

    def _files_in(self, directory: str) -> Iterator[list[str]]:
        """The relative names of the value files under ``directory``."""
        start = len(self.base) + 1
        for folder, subdirs, files in os.walk(directory):
            subdirs[:] = [name for name in subdirs if not self._ignore.match(name)]
            rel = folder[start:].split(os.sep)
            for name in files:
                if name == SELF:
                    yield rel
                elif not self._ignore.match(name):
                    yield [*rel, name]

    def _deliver(self, events: list[tuple[WatchEvent, str]]) -> None:
        for event, key in events:
            self._watchers.emit(event, key)

    async def _stop_watching(self) -> None:
        stop, thread = self._watch_stop, self._watch_thread
        self._watch_stop = self._watch_thread = None
        if stop is not None and thread is not None:
            stop.set()
            await asyncio.get_running_loop().run_in_executor(None, thread.join)
