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

Names that are not the encoding of a key that can be read back (say ``50%off``, a name that
is not UTF-8, or one decoding to ``..`` or holding a newline) are not listed, and are logged
once. Everything internal lives in ``base/.unistorage/``: temporary files (``tmp/``), TTL and
user meta sidecars (``side/<encoded path>%t`` and ``%m``) and the lock file. Writes go to a
temporary file and are renamed into place, under a per-key lock (threads and processes), so
readers never see a torn value and conditional writes are atomic on one machine; a write that
fails (a full disk) removes its temporary file. A TTL sidecar names the inode and mtime of the
value it belongs to, so one left by a crash or by another write is ignored.

Links are never followed. The directory is opened once, and every path is resolved below that
descriptor, refusing a link at any level (drivers._fs_beneath): a link is never a key (not
listed, reads as absent), a write or remove of its name replaces or deletes the link itself,
and a write below it turns it into a directory that keeps the link as its ``%`` entry. So no
operation reads, writes, lists or deletes anything outside ``base``, whatever links or races
there are inside it.

Each operation is one hop to a worker thread doing the whole read or the whole atomic write
(aiofiles takes several hops per file), except reads of small values, done on the event loop
where a cached file is read faster than a thread hop (measured in benchmarks/bench_fs.py).
Watching uses watchfiles; changes made through this driver object are reported as soon as
they return.

The rest of the storage surface is native too (one hop each):

- ``increment`` reads, adds and writes the counter atomically under the key's lock, which
  excludes other threads and processes; ``touch`` and ``get_item_touch`` rewrite only the TTL
  sidecar under that lock, so the value file, its mtime and its etag stay the same (an etag
  read before a touch still matches after it).
- ``list_page`` walks the tree in key order (names decoded, since escapes do not sort as the
  characters they stand for), reading only the directories between the cursor, which is the
  last key returned, and the end of the page (drivers._fs_listing.ordered).
- Streams go through the worker threads a chunk at a time, never whole: a write fills a
  temporary file in ``tmp`` and places it like any write, a read holds the value's open file,
  so it reads one version whole (drivers._fs_streams).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from drivers._fs_layout import INTERNAL, encode_segment
from drivers._fs_locks import HAS_LOCKS
from drivers._fs_ops import DEFER, FsFiles
from drivers._fs_streams import ChunkReader, Spool
from drivers._fs_watch import FsWatcher
from storage import (
    Capabilities,
    Driver,
    InvalidArgumentError,
    Unwatch,
    WatchCallback,
    Watchers,
)
from storage.driver import parse_url_options

__all__ = ["INTERNAL", "FsDriver", "encode_segment"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
_PAGE = 1000


class FsDriver(Driver):
    """Files under ``base``: atomic writes, TTL and meta sidecars, cross-process locks, watch.

    Options: ``base`` directory; ``read_only`` (nothing on disk is touched); ``durable`` (fsync
    every file and its directory); ``ignore`` (fnmatch patterns of names never listed, besides
    dot-names, which no key maps to); ``sweep_interval`` (seconds between deletions of expired
    files, 0 for none); ``case_sensitive`` (None probes the file system); ``inline_reads``
    (read values up to 64 KiB on the event loop, where that is cheaper than a thread hop; turn
    it off for slow or network file systems).

    It holds two objects, made here and closed by `dispose`: the file layer (`FsFiles`: the
    directory, the worker threads and the locks) and the watcher (`FsWatcher`).
    """

    name = "fs"
    schemes = ("file", "fs")

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
        self._files = FsFiles(
            base,
            read_only=read_only,
            durable=durable,
            ignore=ignore,
            case_sensitive=case_sensitive,
        )
        self.base = self._files.base
        self.read_only = read_only
        self.durable = durable
        self.sweep_interval = sweep_interval
        self.inline_reads = inline_reads
        self.capabilities = Capabilities(
            ttl=True,
            conditional=HAS_LOCKS,
            watch=True,
            native_max_depth=True,
            read_only=read_only,
            bounded=True,
        )
        self._watchers = Watchers()
        self._watcher = FsWatcher(self._files.tree, self._watchers)
        self._files.tree.on_change = self._watcher.note
        self._sweeper: asyncio.Task[None] | None = None

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

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        if self._sweeper is None and self.sweep_interval > 0 and not self.read_only:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())
        try:
            return await self._files.run(function, *args)
        finally:
            if self._watcher.pending:
                self._watcher.flush()

    async def get_item(self, key: str) -> bytes | None:
        if self.inline_reads:
            found = self._files.peek(key)
            if found is not DEFER:
                return found  # type: ignore[return-value]
        return await self._run(self._files.get, key)

    async def get_item_with_etag(self, key: str) -> tuple[bytes | None, str | None]:
        """The value of ``key`` and the etag of that very file, read in one thread hop."""
        if not self.capabilities.conditional:
            return await self.get_item(key), None
        return await self._run(self._files.get_with_etag, key)

    async def has_item(self, key: str) -> bool:
        if self.inline_reads:
            found = self._files.peek(key, stat_only=True)
            if found is not DEFER:
                return found is not None
        return await self._run(self._files.has, key)

    async def get_items(self, keys: Sequence[str]) -> list[bytes | None]:
        get = self._files.get
        return await self._run(lambda: [get(key) for key in keys])

    async def set_item(self, key: str, value: bytes, *, ttl: float | None = None) -> str | None:
        return await self._run(self._files.set, key, value, ttl)

    async def set_items(
        self, items: Sequence[tuple[str, bytes]], *, ttl: float | None = None
    ) -> None:
        put = self._files.set
        await self._run(lambda: [put(key, value, ttl) for key, value in items])

    async def set_item_conditional(
        self,
        key: str,
        value: bytes,
        *,
        ttl: float | None = None,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str | None:
        return await self._run(
            self._files.set_conditional, key, value, ttl, if_match, if_none_match
        )

    async def increment(self, key: str, by: int, *, ttl: float | None = None) -> int:
        """Read, add and rewrite atomically under the key's lock (threads and processes)."""
        if not self.capabilities.conditional:
            return await super().increment(key, by, ttl=ttl)  # refused: no cross-process lock
        return await self._run(self._files.increment, key, by, ttl)

    async def touch(self, key: str, ttl: float) -> bool:
        """Rewrite the TTL sidecar alone, under the key's lock: the value, its mtime and its
        etag stay as they are (an etag taken before still matches)."""
        if not self.capabilities.conditional:
            return await super().touch(key, ttl)
        return await self._run(self._files.touch, key, ttl)

    async def get_item_touch(self, key: str, ttl: float) -> bytes | None:
        """Read the value and renew its TTL sidecar in one thread hop, under the key's lock."""
        if not self.capabilities.conditional:
            return await super().get_item_touch(key, ttl)
        return await self._run(self._files.get_touch, key, ttl)

    async def read_chunks(self, key: str, chunk_size: int) -> AsyncIterator[bytes] | None:
        """The open value file read a chunk per worker hop (see drivers._fs_streams); the
        version opened is read whole, whatever is written meanwhile."""
        files = self._files
        opening = files.run(files.open_value, key)
        try:
            fd = await asyncio.shield(opening)
        except asyncio.CancelledError:  # the file may open after all: close it then
            opening.add_done_callback(_close_opened)
            raise
        return None if fd is None else ChunkReader(files.run, fd, chunk_size)

    async def write_chunks(
        self, key: str, chunks: AsyncIterator[bytes], *, ttl: float | None = None
    ) -> str:
        """Append the chunks to a temporary file in the store's ``tmp`` directory and rename
        it into place when they end, as `set_item` does; when they fail, it is removed."""
        files = self._files
        spool = Spool(files.tree)
        try:
            await spool.fill(files.run, chunks)
            return await self._run(spool.place, key, ttl)
        except BaseException:
            # A placing cancelled midway still runs in its worker, and the drop waits for its
            # lock: a failed or cancelled stream ends with nothing left in tmp.
            try:
                await files.run(spool.drop)  # after an append or a placing still running
            except RuntimeError:  # the worker threads are gone: nothing appends now
                spool.drop()
            raise

    async def remove_item(self, key: str) -> None:
        await self._run(self._files.remove, key)

    async def remove_item_conditional(self, key: str, *, if_match: str) -> None:
        await self._run(self._files.remove_conditional, key, if_match)

    async def remove_items(self, keys: Sequence[str]) -> None:
        remove = self._files.remove
        await self._run(lambda: [remove(key) for key in keys])

    async def iter_keys(
        self, base: str = "", *, max_depth: int | None = None
    ) -> AsyncIterator[str]:
        walker = self._files.walk(base, max_depth)
        while page := await self._run(lambda: list(itertools.islice(walker, _PAGE))):
            for key in page:
                yield key

    async def list_page(
        self,
        base: str = "",
        *,
        limit: int,
        cursor: str | None = None,
        max_depth: int | None = None,
    ) -> tuple[list[str], str | None]:
        """A sorted walk of only the directories the page needs, resuming after ``cursor``
        (the last key of the page before): a key present for the whole listing is listed
        exactly once, whatever is written meanwhile (see drivers._fs_listing.ordered)."""
        return await self._run(self._files.page, base, cursor, limit, max_depth)

    async def get_keys(self, base: str = "", *, max_depth: int | None = None) -> list[str]:
        return await self._run(lambda: list(self._files.walk(base, max_depth)))

    async def clear(self, base: str = "") -> None:
        await self._run(self._files.clear, base)

    async def get_meta(self, key: str) -> dict[str, Any]:
        return await self._run(self._files.meta, key)

    async def get_user_meta(self, key: str) -> bytes | None:
        return await self._run(self._files.get_user_meta, key)

    async def set_user_meta(self, key: str, data: bytes) -> None:
        await self._run(self._files.set_user_meta, key, data)

    async def remove_user_meta(self, key: str) -> None:
        await self._run(self._files.remove_user_meta, key)

    async def watch(self, callback: WatchCallback) -> Unwatch:
        """Report changes from any process (through watchfiles); events arrive batched."""
        await self._watcher.start()
        remove = self._watchers.add(callback)

        async def unwatch() -> None:
            await remove()
            if not self._watchers:
                await self._watcher.stop()

        return unwatch

    async def sweep(self) -> list[str]:
        """Delete every expired value now; return their keys."""
        return await self._run(self._files.sweep)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_interval)
            try:
                await self._run(self._files.sweep)
            except Exception:
                logger.exception("fs sweep of %s failed", self.base)

    async def dispose(self) -> None:
        """Stop the sweeper, the watcher and the file layer (threads, directory, locks)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        self._watchers.clear()
        await self._watcher.close()
        await self._files.close()


def _close_opened(opening: asyncio.Future[int | None]) -> None:
    """Close the descriptor a cancelled `FsDriver.read_chunks` opened after all."""
    if not opening.cancelled() and opening.exception() is None:
        fd = opening.result()
        if fd is not None:
            os.close(fd)
