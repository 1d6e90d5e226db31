"""The fs driver: one plain file per key under a base directory.

Key ``a:b:c`` is the file ``base/a/b/c``. Each ``:``-segment becomes a file name, percent-encoded
only where a name could not hold it or would mean something else:

- ``%`` is the escape: ``%XX`` is one UTF-8 byte. Always escaped: ``%``, ``<>"|?*`` (not
  allowed on Windows, so a store can be copied there), a ``.`` starting a name (no key ever
  maps to a hidden name, so ``.unistorage/`` and user dot-files never collide with keys) and a
  ``.`` or space ending one. On a case-insensitive file system (probed at start), uppercase and
  non-ASCII characters are escaped too, so names that differ only by case stay apart.
- A name longer than 240 bytes is split into chunks; every chunk but the last is a directory
  whose name ends in ``%+`` (continued, no separator).
- A key that is also a "directory" of other keys (``a`` and ``a:b`` both stored) keeps its
  value in the file ``base/a/%``.

Names that are not the encoding of some key (say, ``50%off``) are not listed. Everything
internal lives in ``base/.unistorage/``: temporary files (``tmp/``), TTL and user meta sidecars
(``side/<encoded path>%t`` and ``%m``) and the lock file. Writes go to a temporary file and are
renamed into place, under a per-key lock (threads and processes), so readers never see a torn
value and conditional writes are atomic on one machine. A TTL sidecar names the inode and
mtime of the value it belongs to, so one left by a crash or by another write is ignored.

Each operation is one hop to a worker thread doing the whole read or the whole atomic write
(aiofiles takes several hops per file), except reads of small values, done on the event loop
where a cached file is read faster than a thread hop (measured in benchmarks/bench_fs.py). Watching uses
watchfiles; changes made through this driver object are reported as soon as they return.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fnmatch
import functools
import itertools
import logging
import os
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from drivers._fs_layout import (
    HAS_LOCKS,
    INTERNAL,
    MORE,
    SELF,
    Locks,
    Pool,
    encode_segment,
    pid_alive,
    remove_tree,
)
from drivers._fs_ops import DEFER
from drivers._fs_watch import FsWatch
from storage import Driver, InvalidArgumentError, Watchers, WatchEvent
from storage.driver import parse_url_options

__all__ = ["INTERNAL", "FsDriver", "encode_segment"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
_PAGE = 1000


class FsDriver(FsWatch, Driver):
    """Files under ``base``: atomic writes, TTL and meta sidecars, cross-process locks, watch.

    Options: ``base`` directory; ``read_only`` (nothing on disk is touched); ``durable`` (fsync
    every file and its directory); ``ignore`` (fnmatch patterns of names never listed, besides
    dot-names, which no key maps to); ``sweep_interval`` (seconds between deletions of expired
    files, 0 for none); ``case_sensitive`` (None probes the file system); ``inline_reads``
    (read values up to 64 KiB on the event loop, where that is cheaper than a thread hop; turn
    it off for slow or network file systems).
    """

    name = "fs"
    schemes = ("file", "fs")
    supports_ttl = True
    supports_conditional = HAS_LOCKS
    supports_watch = True
    native_max_depth = True

    def __init__(
        self,
        base: str | os.PathLike[str] = ".data/fs",
        *,
        read_only: bool = False,
        durable: bool = False,
        ignore: Sequence[str] = (".*",),
        sweep_interval: float = 60.0,
        case_sensitive: bool | None = None,
        inline_reads: bool = True,
    ) -> None:
        self.base = os.path.abspath(os.fspath(base))
        self.read_only = read_only
        self.durable = durable
        self.sweep_interval = sweep_interval
        self.inline_reads = inline_reads
        self._ignore = re.compile("|".join(fnmatch.translate(p) for p in ignore) or "(?!)")
        self._internal = f"{self.base}/{INTERNAL}"
        self._tmp = f"{self._internal}/tmp"
        self._side = f"{self._internal}/side"
        if read_only:  # touch nothing: the directory may be on a read-only mount
            self._fold = case_sensitive is False
            self._locks = Locks(None)
        else:
            os.makedirs(self._tmp, exist_ok=True)
            os.makedirs(self._side, exist_ok=True)
            self._clean_temp_files()
            self._fold = not (self._probe_case() if case_sensitive is None else case_sensitive)
            self._locks = Locks(f"{self._internal}/lock")
        self._names: dict[str, list[str]] = {}
        self._watchers = Watchers()
        self._watch_stop: threading.Event | None = None
        self._watch_thread: threading.Thread | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._pool = Pool(4)
        self._changed: collections.deque[tuple[WatchEvent, str]] = collections.deque()
        self._own: dict[str, tuple[int, float]] = {}

    @classmethod
    def from_url(cls, url: str, **options: Any) -> FsDriver:
        """``file:///abs/dir`` or ``fs://rel/dir``, with options in the query string."""
        parts = urlsplit(url)
        if parts.scheme not in cls.schemes:
            raise InvalidArgumentError(f"the fs driver does not read {parts.scheme!r} URLs")
        host = "" if parts.netloc == "localhost" else parts.netloc
        path = unquote(host + parts.path)  # file://data/x is the relative directory data/x
        if not path:
            raise InvalidArgumentError(f"no directory in {url!r}")
        return cls(path, **{**parse_url_options(parts.query), **options})

    def _probe_case(self) -> bool:
        probe = f"{self._tmp}/case-probe-{os.getpid()}"
        with open(probe, "w"):
            pass
        try:
            return not os.path.exists(probe.upper().replace(self._tmp.upper(), self._tmp))
        finally:
            os.unlink(probe)

    def _clean_temp_files(self) -> None:
        for entry in os.scandir(self._tmp):
            pid = entry.name.partition(".")[0]
            if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
                with contextlib.suppress(OSError):
                    if entry.is_dir(follow_symlinks=False):
                        for inner in os.scandir(entry.path):
                            os.unlink(inner.path)
                        os.rmdir(entry.path)
                    else:
                        os.unlink(entry.path)

    # -- listing ----------------------------------------------------------------------------------

    def _walk(self, base: str, max_depth: int | None) -> Iterator[str]:
        """Keys under ``base``, reading only its subtree; ``done`` counts finished segments."""
        names = self._rel(base[:-1]) if base else []
        now = time.time()
        stack: list[tuple[list[str], int]] = [(names, 0)]
        while stack:
            rel, done = stack.pop()
            directory = "/".join([self.base, *rel])
            try:
                entries = list(os.scandir(directory))
            except (FileNotFoundError, NotADirectoryError):
                continue
            timed = os.path.isdir("/".join([self._side, *rel]))
            for entry in entries:
                name = entry.name
                if name == SELF:
                    # this directory's own value; its sidecar lives one level up
                    if len(rel) > len(names):
                        yield from self._live(rel, entry.path, True, now)
                    continue
                if name[0] == "." or self._ignore.match(name):  # no key maps to a dot-name
                    continue
                if not entry.is_dir(follow_symlinks=False):
                    yield from self._live([*rel, name], entry.path, timed, now)
                elif name.endswith(MORE):
                    stack.append(([*rel, name], done))
                elif max_depth is None or done < max_depth:
                    stack.append(([*rel, name], done + 1))
                elif os.path.exists(entry.path + "/" + SELF):
                    yield from self._live([*rel, name], entry.path + "/" + SELF, True, now)

    def _live(self, rel: list[str], path: str, timed: bool, now: float) -> Iterator[str]:
        """The key at ``rel`` (none for foreign names or an expired value, which is deleted)."""
        key = self._key_of(rel)
        if key is None:
            return
        if timed and (record := self._ttl_record(key)) is not None and record[0] <= now:
            info = self._stat(path)
            if info is not None and (info.st_ino, info.st_mtime_ns) == record[1:]:
                self._drop_expired(key, info)
                return
        yield key

    def _clear(self, base: str) -> list[str]:
        removed = [key for key in self._walk(base, None) if self._remove(key)]
        if base:
            names = self._rel(base[:-1])
            side = self._side + "/" + "/".join(names)
        else:
            side = self._side
        remove_tree(side, keep=not base)
        return removed

    def _sweep_once(self) -> list[str]:
        removed: list[str] = []
        now = time.time()
        for directory, _, files in os.walk(self._side):
            for name in files:
                if not name.endswith("%t"):
                    continue
                path = f"{directory}/{name}"
                rel = path[len(self._side) + 1 : -2].split("/")
                key = self._key_of(rel)
                try:
                    with open(path, "rb") as handle:
                        expires = float(handle.read().split()[0])
                except (OSError, ValueError, IndexError):
                    continue
                if key is None or expires > now:
                    continue
                info = self._stat(self._path(key))
                if info is None or self._expiry(key, info) is None:
                    self._unlink_quietly(path)
                elif self._expired(key, info):
                    removed.append(key)
        return removed

    # -- the async API ----------------------------------------------------------------------------

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        if self._sweeper is None and self.sweep_interval > 0 and not self.read_only:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())
        try:
            return await self._pool.run(functools.partial(function, *args))
        finally:
            while self._changed:
                event, key = self._changed.popleft()
                self._watchers.emit(event, key)

    async def get_item(self, key: str) -> bytes | None:
        if self.inline_reads:
            found = self._peek(key)
            if found is not DEFER:
                return found  # type: ignore[return-value]
        return await self._run(self._get, key)

    async def get_item_with_etag(self, key: str) -> tuple[bytes | None, str | None]:
        """The value of ``key`` and the etag of that very file, read in one thread hop."""
        if not self.capabilities.conditional:
            return await self.get_item(key), None
        return await self._run(self._get_with_etag, key)

    async def has_item(self, key: str) -> bool:
        if self.inline_reads:
            found = self._peek(key, stat_only=True)
            if found is not DEFER:
                return found is not None
        return await self._run(self._has, key)

    async def get_items(self, keys: Sequence[str]) -> list[bytes | None]:
        return await self._run(lambda: [self._get(key) for key in keys])

    async def set_item(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        await self._run(self._set, key, value, ttl)

    async def set_items(
        self, items: Sequence[tuple[str, bytes]], *, ttl: float | None = None
    ) -> None:
        await self._run(lambda: [self._set(key, value, ttl) for key, value in items])

    async def set_item_conditional(
        self,
        key: str,
        value: bytes,
        *,
        ttl: float | None = None,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str | None:
        return await self._run(self._set_conditional, key, value, ttl, if_match, if_none_match)

    async def remove_item(self, key: str) -> None:
        await self._run(self._remove, key)

    async def remove_items(self, keys: Sequence[str]) -> None:
        await self._run(lambda: [self._remove(key) for key in keys])

    async def iter_keys(
        self, base: str = "", *, max_depth: int | None = None
    ) -> AsyncIterator[str]:
        walker = self._walk(base, max_depth)
        while page := await self._run(lambda: list(itertools.islice(walker, _PAGE))):
            for key in page:
                yield key

    async def get_keys(self, base: str = "", *, max_depth: int | None = None) -> list[str]:
        return await self._run(lambda: list(self._walk(base, max_depth)))

    async def clear(self, base: str = "") -> None:
        await self._run(self._clear, base)

    async def get_meta(self, key: str) -> dict[str, Any]:
        return await self._run(self._meta, key)

    async def get_user_meta(self, key: str) -> bytes | None:
        found = await self._run(self._read_value, self._sidecar(key, "%m"))
        return None if found is None else found[0]

    async def set_user_meta(self, key: str, data: bytes) -> None:
        await self._run(self._write_sidecar, key, "%m", data)

    async def remove_user_meta(self, key: str) -> None:
        await self._run(self._remove_sidecar, self._sidecar(key, "%m"))

    async def sweep(self) -> list[str]:
        """Delete every expired value now; return their keys."""
        return await self._run(self._sweep_once)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_interval)
            try:
                await self._run(self._sweep_once)
            except Exception:
                logger.exception("fs sweep of %s failed", self.base)

    async def dispose(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        self._watchers.clear()
        await self._stop_watching()
        for thread in self._pool.stop():
            await asyncio.get_running_loop().run_in_executor(None, thread.join)
        self._locks.close()
