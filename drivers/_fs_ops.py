"""The file layer of the fs driver: one object that owns a store's files and threads.

`FsFiles` opens the store (a `Tree`: its directories, layout and locks) and a `Pool` of
worker threads; `close` closes both. Its blocking methods each do one whole read, one whole
atomic write or one read-modify-write under a key's lock (plain functions in drivers._fs_read,
_fs_write, _fs_atomic and _fs_listing); `run` hands one to a worker thread, and `peek` alone
runs on the event loop. Streams (drivers._fs_streams) are several such calls in a row.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from drivers import _fs_atomic as atomic
from drivers import _fs_listing as listing
from drivers import _fs_read as read
from drivers import _fs_write as write
from drivers._fs_layout import etag_of
from drivers._fs_pool import Pool
from drivers._fs_read import DEFER
from drivers._fs_tree import Tree
from storage import ConflictError

__all__ = ["DEFER", "FsFiles"]

T = TypeVar("T")


class FsFiles:
    """Reads, atomic writes, sidecars, listing and locks of the store at ``base``.

    Options: ``read_only`` (nothing on disk is created, written or deleted); ``durable``
    (fsync each file and its directory); ``ignore`` (fnmatch patterns of names never listed,
    besides dot-names); ``case_sensitive`` (None probes the file system); ``threads`` (the
    size of the worker pool, started on first use).
    """

    def __init__(
        self,
        base: str | os.PathLike[str],
        *,
        read_only: bool = False,
        durable: bool = False,
        ignore: Sequence[str] = (".*",),
        case_sensitive: bool | None = None,
        threads: int = 4,
    ) -> None:
        #: The open store; ``tree.on_change`` is called for each change made here.
        self.tree = Tree(
            base,
            read_only=read_only,
            durable=durable,
            ignore=ignore,
            case_sensitive=case_sensitive,
        )
        self.base = self.tree.base
        self._pool = Pool(threads)

    # -- lifetime -------------------------------------------------------------------------------

    def run(self, function: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Run ``function(*args)`` in a worker thread; await the result."""
        return self._pool.run(functools.partial(function, *args))

    @property
    def threads(self) -> list[threading.Thread]:
        """The worker threads running now."""
        return self._pool.threads

    async def close(self) -> None:
        """Let queued work finish, stop the threads, close the store; harmless twice."""
        await self._pool.close()
        self.tree.close()

    # -- reads ----------------------------------------------------------------------------------

    def peek(self, key: str, *, stat_only: bool = False) -> bytes | object | None:
        """Read a small live value on the event loop (never waits on a lock); else `DEFER`."""
        return read.peek(self.tree, key, stat_only)

    def get(self, key: str) -> bytes | None:
        """The value of ``key`` (None when missing or expired)."""
        return read.get(self.tree, key)

    def get_with_etag(self, key: str) -> tuple[bytes | None, str | None]:
        """The value of ``key`` and the etag of the very file it was read from."""
        return read.get_with_etag(self.tree, key)

    def has(self, key: str) -> bool:
        """True when ``key`` holds a live value."""
        return read.has(self.tree, key)

    def meta(self, key: str) -> dict[str, Any]:
        """The file's times, size and etag, and the remaining TTL; {} when missing."""
        return read.meta(self.tree, key)

    def get_user_meta(self, key: str) -> bytes | None:
        """The user meta stored beside ``key``."""
        return read.get_user_meta(self.tree, key)

    # -- writes ---------------------------------------------------------------------------------

    def set(
        self, key: str, value: bytes, ttl: float | None, check: Callable[[], None] | None = None
    ) -> str:
        """Write ``value`` atomically (temp file, rename) under ``key``'s lock; the new etag.

        ``check`` runs under the lock, just before the value is placed (conditional writes).
        """
        return write.place(self.tree, key, value, ttl, check)

    def set_conditional(
        self, key: str, value: bytes, ttl: float | None, if_match: str | None, if_none_match: bool
    ) -> str:
        """`set` if the stored etag is ``if_match`` (``"*"``: if the key exists) / the key is
        absent; else ConflictError."""

        def check() -> None:  # under the key's lock, so no other writer comes in between
            info = self._live_stat(key)
            if if_none_match and info is not None:
                raise ConflictError(key, "the key already exists")
            if if_match is not None:
                _check_match(key, info, if_match)

        return self.set(key, value, ttl, check)

    def remove(self, key: str) -> bool:
        """Delete ``key``'s value (whatever file or link holds its name); True if one was."""
        return write.remove(self.tree, key)

    def remove_conditional(self, key: str, if_match: str) -> None:
        """Delete ``key`` if its etag is ``if_match`` (``"*"``: if it exists); else conflict."""
        tree = self.tree
        stripe = tree.locks.acquire(tree.layout.place(key).raw)
        try:
            _check_match(key, self._live_stat(key), if_match)
            write.unlink_value(tree, key)
        finally:
            tree.locks.release(stripe)

    def _live_stat(self, key: str) -> os.stat_result | None:
        """The stat of ``key``'s value unless it is missing or expired (no deletion here)."""
        info = read.value_stat(self.tree, key)
        if info is not None:
            expires = read.expiry(self.tree, key, info)
            if expires is not None and expires <= time.time():
                return None
        return info

    def increment(self, key: str, by: int, ttl: float | None) -> int:
        """Add ``by`` to the JSON integer at ``key`` under its lock (created at 0 with
        ``ttl``; a live key keeps its expiry); the new value."""
        return atomic.increment(self.tree, key, by, ttl)

    def touch(self, key: str, ttl: float) -> bool:
        """Renew the TTL of the live ``key`` (its sidecar alone: value and etag unchanged)."""
        return atomic.touch(self.tree, key, ttl)

    def get_touch(self, key: str, ttl: float) -> bytes | None:
        """`touch`, returning the value renewed (None when missing or expired)."""
        return atomic.get_touch(self.tree, key, ttl)

    def open_value(self, key: str) -> int | None:
        """A descriptor open on the live value of ``key``, for a stream (None when missing)."""
        return read.open_value(self.tree, key)

    def set_user_meta(self, key: str, data: bytes) -> None:
        """Store the user meta of ``key`` beside it."""
        write.write_side(self.tree, self.tree.layout.place(key), "%m", data)

    def remove_user_meta(self, key: str) -> None:
        """Forget the user meta of ``key``."""
        write.remove_side(self.tree, self.tree.layout.place(key), "%m")

    # -- listing --------------------------------------------------------------------------------

    def walk(self, base: str, max_depth: int | None) -> Iterator[str]:
        """The live keys under ``base``, reading only its subtree, never through a link."""
        return listing.walk(self.tree, base, max_depth, time.time())

    def page(
        self, base: str, after: str | None, limit: int, max_depth: int | None
    ) -> tuple[list[str], str | None]:
        """Up to ``limit`` keys under ``base`` after the key ``after``, in key order, and the
        next page's cursor, reading only the directories the page needs."""
        return listing.page(self.tree, base, after, limit, max_depth, time.time())

    def clear(self, base: str) -> list[str]:
        """Delete every key under ``base`` and their sidecars; return the keys deleted."""
        return listing.clear(self.tree, base, time.time())

    def sweep(self) -> list[str]:
        """Delete every expired value and stale TTL record; return the keys deleted."""
        return listing.sweep(self.tree, time.time())


def _check_match(key: str, info: os.stat_result | None, if_match: str) -> None:
    """Raise ConflictError unless the value ``info`` is version ``if_match`` (``"*"``: any)."""
    if info is None:
        raise ConflictError(key, "the key does not exist")
    if if_match != "*" and etag_of(info) != if_match:
        raise ConflictError(key)
