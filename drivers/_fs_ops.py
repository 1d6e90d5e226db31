"""The file layer of the fs driver: one object that owns a store's files, threads and locks.

`FsFiles` opens the store's directory once and names everything relative to that descriptor,
never following a link (drivers._fs_beneath). Its blocking methods do one whole read or one
whole atomic write each; `run` hands one to its worker threads (`peek` alone runs on the event
loop). `close` stops the threads and closes the directory and the lock file.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fnmatch
import functools
import os
import re
import stat
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from typing import Any, TypeVar

from drivers import _fs_listing as listing
from drivers import _fs_write as write
from drivers._fs_beneath import (
    DIRECTORY,
    MISSING,
    READ,
    ensure_dir,
    entries,
    find,
    is_dir_at,
    open_at,
    remove_tree,
    stat_at,
)
from drivers._fs_layout import INTERNAL, SELF, Layout, Place, etag_of, pid_alive
from drivers._fs_locks import Locks
from drivers._fs_pool import Pool
from storage import ConflictError, WatchEvent

T = TypeVar("T")
ChangeListener = Callable[[WatchEvent, str, int], None]

_INLINE_MAX = 64 * 1024
_ABSENT = frozenset({errno.ENOENT, errno.ENOTDIR})  # a link (ELOOP) is left to the worker
#: What `FsFiles.peek` returns when the read is better done by a worker thread.
DEFER = object()


def _missing(exc: OSError) -> bool:
    return exc.errno in MISSING


class FsFiles:
    """Reads, atomic writes, sidecars, listing and locks of the store at ``base``.

    Options: ``read_only`` (nothing on disk is created, written or deleted); ``durable``
    (fsync each file and its directory); ``ignore`` (fnmatch patterns of names never listed,
    besides dot-names); ``case_sensitive`` (None probes the file system); ``threads``.
    ``on_change(event, key, inode)`` is called, in the thread that made it, for each change.
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
        self.base = os.path.abspath(os.fspath(base))
        self.read_only = read_only
        self.durable = durable
        self.on_change: ChangeListener | None = None
        #: Descriptors of the store's root and of its internal ``tmp`` and ``side``
        #: directories (-1 when absent: a read-only store may have none).
        self.root = self.tmp = self.side = -1
        #: The per-key write locks (cross-process once the lock file is open).
        self.locks = Locks()
        pattern = re.compile("|".join(fnmatch.translate(p) for p in ignore) or "(?!)")
        try:
            if read_only:  # touch nothing: the directory may be on a read-only mount
                self.root = os.open(self.base, DIRECTORY & ~os.O_NOFOLLOW)
                with contextlib.suppress(OSError):
                    self.side = open_at(self.root, f"{INTERNAL}/side", DIRECTORY)
                fold = case_sensitive is False
            else:
                # The base path is the caller's choice: a link in it is followed, once, here.
                os.makedirs(self.base, exist_ok=True)
                self.root = os.open(self.base, DIRECTORY & ~os.O_NOFOLLOW)
                internal = ensure_dir(self.root, INTERNAL)
                try:
                    self.tmp = ensure_dir(internal, "tmp")
                    self.side = ensure_dir(internal, "side")
                    self.locks = Locks("lock", dir_fd=internal)
                finally:
                    os.close(internal)
                self._clean_temp_files()
                fold = not (self._probe_case() if case_sensitive is None else case_sensitive)
        except BaseException:
            self._close_files()
            raise
        self.layout = Layout(fold=fold, ignore=pattern)
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
        """Stop the threads, then close the directory and the lock file; harmless twice."""
        await self._pool.close()
        self._close_files()

    def _close_files(self) -> None:
        for name in ("tmp", "side", "root"):
            fd = getattr(self, name)
            if fd >= 0:
                setattr(self, name, -1)
                os.close(fd)
        self.locks.close()

    def _probe_case(self) -> bool:
        probe = f"case-probe-{os.getpid()}"
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, dir_fd=self.tmp))
        try:
            return stat_at(self.tmp, probe.upper()) is None
        finally:
            os.unlink(probe, dir_fd=self.tmp)

    def _clean_temp_files(self) -> None:
        """Remove what writers that died left in ``tmp`` (names start with their pid)."""
        for name, is_dir, _ in entries(self.tmp):
            pid = name.partition(".")[0]
            if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
                with contextlib.suppress(OSError):
                    if is_dir:
                        remove_tree(self.tmp, name)
                    else:
                        os.unlink(name, dir_fd=self.tmp)

    # -- reads ----------------------------------------------------------------------------------

    @staticmethod
    def _read_fd(fd: int) -> tuple[bytes, os.stat_result] | None:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):  # a key that is also a directory keeps its value in '%'
            try:
                inner = os.open(SELF, READ, dir_fd=fd)
            except OSError as exc:
                if _missing(exc):
                    return None
                raise
            try:
                return (
                    FsFiles._read_fd(inner) if not stat.S_ISDIR(os.fstat(inner).st_mode) else None
                )
            finally:
                os.close(inner)
        if not stat.S_ISREG(info.st_mode):
            return None  # a FIFO, socket or device someone put here is no value
        # A short read of a regular file means end of file: one read for most values.
        want = info.st_size + 1
        chunks = [os.read(fd, want)]
        while len(chunks[-1]) == want:
            want = 1 << 20
            chunks.append(os.read(fd, want))
        return (chunks[0] if len(chunks) == 1 else b"".join(chunks)), info

    def _read_value(self, key: str) -> tuple[bytes, os.stat_result] | None:
        fd = find(self.root, self.layout.place(key).raw, READ)
        if fd < 0:
            if -fd in MISSING:
                return None
            raise OSError(-fd, os.strerror(-fd), key)
        try:
            return self._read_fd(fd)
        finally:
            os.close(fd)

    def value_stat(self, key: str) -> os.stat_result | None:
        """The stat of the file holding ``key``'s value (None when there is none)."""
        rel = self.layout.place(key).rel
        info = stat_at(self.root, rel)
        if info is not None and stat.S_ISDIR(info.st_mode):
            info = stat_at(self.root, rel + "/" + SELF)
        return info if info is not None and stat.S_ISREG(info.st_mode) else None

    def ttl_record(self, names: list[str]) -> tuple[float, int, int] | None:
        """The TTL sidecar's (expiry, inode, mtime_ns) of the key at ``names``, or None."""
        return self._ttl_at(Place.of(names).raw)

    def _ttl_at(self, raw: bytes) -> tuple[float, int, int] | None:
        found = self._read_side(raw + b"%t")
        if found is None:  # most keys have no sidecar
            return None
        try:
            expires, ino, mtime = found.split()
            return float(expires), int(ino), int(mtime)
        except ValueError:
            return None

    def _read_side(self, raw: bytes) -> bytes | None:
        if self.side < 0:
            return None
        fd = find(self.side, raw, READ)
        if fd < 0:
            if -fd in MISSING:
                return None
            raise OSError(-fd, os.strerror(-fd), os.fsdecode(raw))
        try:
            found = self._read_fd(fd)
        finally:
            os.close(fd)
        return None if found is None else found[0]

    def expiry(self, key: str, info: os.stat_result) -> float | None:
        """The expiry time of the value whose stat is ``info``, if a live sidecar names it."""
        record = self._ttl_at(self.layout.place(key).raw)
        if record is not None and record[1] == info.st_ino and record[2] == info.st_mtime_ns:
            return record[0]
        return None

    def expired(self, key: str, info: os.stat_result) -> bool:
        """True (and the value deleted) when the value file ``info`` has expired."""
        expires = self.expiry(key, info)
        if expires is None or expires > time.time():
            return False
        self.drop_expired(key, info)
        return True

    def drop_expired(self, key: str, info: os.stat_result) -> None:
        """Delete ``key``'s value if it is still the expired file ``info`` names."""
        if self.read_only:
            return
        stripe = self.locks.acquire(self.layout.place(key).rel)
        try:
            current = self.value_stat(key)
            if current is not None and current.st_ino == info.st_ino:
                write.unlink_value(self, key)
        finally:
            self.locks.release(stripe)

    def peek(self, key: str, *, stat_only: bool = False) -> bytes | object | None:
        """Read a small live value right here (never waits on a lock); else `DEFER`.

        Runs on the event loop: it costs less than a thread hop while the file is small and
        cached. Directories, big files and expired values are left to the worker threads.
        """
        raw = self.layout.place(key).raw
        fd = find(self.root, raw, READ)
        if fd < 0:
            return None if -fd in _ABSENT else DEFER
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_size > _INLINE_MAX:
                return DEFER
            data = b"" if stat_only else os.read(fd, info.st_size + 1)
            if len(data) > info.st_size:
                return DEFER  # grew while read: someone writes it in place
        except OSError:
            return DEFER
        finally:
            os.close(fd)
        record = self._ttl_at(raw)
        mine = record is not None and record[1:] == (info.st_ino, info.st_mtime_ns)
        if mine and record is not None and record[0] <= time.time():
            return DEFER  # expired: the worker deletes it
        return data

    def get(self, key: str) -> bytes | None:
        """The value of ``key`` (None when missing or expired)."""
        found = self._read_value(key)
        if found is None or self.expired(key, found[1]):
            return None
        return found[0]

    def get_with_etag(self, key: str) -> tuple[bytes | None, str | None]:
        """The value of ``key`` and the etag of the very file it was read from."""
        # The stat comes from the descriptor the bytes were read from, and writes always
        # rename a new file into place: the etag names exactly the value returned.
        found = self._read_value(key)
        if found is None or self.expired(key, found[1]):
            return None, None
        return found[0], etag_of(found[1])

    def has(self, key: str) -> bool:
        """True when ``key`` holds a live value."""
        info = self.value_stat(key)
        return info is not None and not self.expired(key, info)

    def meta(self, key: str) -> dict[str, Any]:
        """The file's times, size and etag, and the remaining TTL; {} when missing."""
        info = self.value_stat(key)
        if info is None:
            return {}
        expires = self.expiry(key, info)
        if expires is not None and expires <= time.time():
            self.drop_expired(key, info)
            return {}
        meta: dict[str, Any] = {
            "mtime": datetime.fromtimestamp(info.st_mtime, timezone.utc),
            "atime": datetime.fromtimestamp(info.st_atime, timezone.utc),
            "size": info.st_size,
            "etag": etag_of(info),
        }
        if expires is not None:
            meta["ttl"] = max(0.0, expires - time.time())
        return meta

    def get_user_meta(self, key: str) -> bytes | None:
        """The user meta stored beside ``key``."""
        return self._read_side(self.layout.place(key).raw + b"%m")

    # -- writes (drivers._fs_write) -------------------------------------------------------------

    def set(
        self, key: str, value: bytes, ttl: float | None, check: Callable[[], None] | None = None
    ) -> str:
        """Write ``value`` atomically (temp file, rename) under ``key``'s lock; the new etag.

        ``check`` runs under the lock, just before the value is placed (conditional writes).
        """
        return write.place(self, key, value, ttl, check)

    def set_conditional(
        self, key: str, value: bytes, ttl: float | None, if_match: str | None, if_none_match: bool
    ) -> str:
        """`set` if the stored etag is ``if_match`` / the key is absent; else ConflictError."""

        def check() -> None:  # under the key's lock, so no other writer comes in between
            info = self.value_stat(key)
            if info is not None:
                expires = self.expiry(key, info)
                if expires is not None and expires <= time.time():
                    info = None
            if if_none_match and info is not None:
                raise ConflictError(key, "the key already exists")
            if if_match is not None and (info is None or etag_of(info) != if_match):
                raise ConflictError(key)

        return self.set(key, value, ttl, check)

    def remove(self, key: str) -> bool:
        """Delete ``key``'s value (whatever file or link holds its name); True if one was."""
        stripe = self.locks.acquire(self.layout.place(key).rel)
        try:
            return write.unlink_value(self, key)
        finally:
            self.locks.release(stripe)

    def set_user_meta(self, key: str, data: bytes) -> None:
        """Store the user meta of ``key`` beside it."""
        write.write_side(self, self.layout.place(key), "%m", data)

    def remove_user_meta(self, key: str) -> None:
        """Forget the user meta of ``key``."""
        write.remove_side(self, self.layout.place(key), "%m")

    # -- listing --------------------------------------------------------------------------------

    def walk(self, base: str, max_depth: int | None) -> Iterator[str]:
        """The live keys under ``base``, reading only its subtree, never through a link."""
        return listing.walk(self, base, max_depth, time.time())

    def clear(self, base: str) -> list[str]:
        """Delete every key under ``base`` and their sidecars; return the keys deleted."""
        return listing.clear(self, base, time.time())

    def is_directory(self, names: list[str]) -> bool:
        """True when ``names`` is a directory of the store (reached without a link)."""
        return is_dir_at(self.root, "/".join(names))

    def has_side_dir(self, names: list[str]) -> bool:
        """True when the ``side`` tree has the directory ``names`` (some sidecar below it)."""
        return is_dir_at(self.side, "/".join(names))

    def holds_value(self, names: list[str]) -> bool:
        """True when the directory ``names`` holds its own value (a ``%`` file)."""
        info = stat_at(self.root, "/".join([*names, SELF]))
        return info is not None and stat.S_ISREG(info.st_mode)

    def sweep(self) -> list[str]:
        """Delete every expired value and stale TTL record; return the keys deleted."""
        return listing.sweep(self, time.time())
