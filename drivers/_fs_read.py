"""Reads in an fs store: values, their stat and etag, TTL and meta sidecars.

Plain functions over a `Tree`, each opening its file below the store's root without following
a link (drivers._fs_beneath). Only regular files are values: a FIFO, socket or device someone
put in the store reads as absent. An expired value is deleted when read.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from datetime import datetime, timezone
from typing import Any

from drivers import _fs_write as write
from drivers._fs_beneath import MISSING, READ, find, is_dir_at, stat_at
from drivers._fs_layout import SELF, Place, etag_of
from drivers._fs_tree import Tree

_INLINE_MAX = 64 * 1024
_ABSENT = frozenset({errno.ENOENT, errno.ENOTDIR})  # a link (ELOOP) is left to the worker
#: What `peek` returns when the read is better done by a worker thread.
DEFER = object()


def _read_fd(fd: int) -> tuple[bytes, os.stat_result] | None:
    """The whole content and stat of the open file ``fd`` (or of its ``%`` if a directory)."""
    info = os.fstat(fd)
    if stat.S_ISDIR(info.st_mode):  # a key that is also a directory keeps its value in '%'
        try:
            inner = os.open(SELF, READ, dir_fd=fd)
        except OSError as exc:
            if exc.errno in MISSING:
                return None
            raise
        try:
            return None if stat.S_ISDIR(os.fstat(inner).st_mode) else _read_fd(inner)
        finally:
            os.close(inner)
    if not stat.S_ISREG(info.st_mode):
        return None
    # A short read of a regular file means end of file: one read for most values.
    want = info.st_size + 1
    chunks = [os.read(fd, want)]
    while len(chunks[-1]) == want:
        want = 1 << 20
        chunks.append(os.read(fd, want))
    return (chunks[0] if len(chunks) == 1 else b"".join(chunks)), info


def _read_at(root: int, raw: bytes) -> tuple[bytes, os.stat_result] | None:
    fd = find(root, raw, READ)
    if fd < 0:
        if -fd in MISSING:
            return None
        raise OSError(-fd, os.strerror(-fd), os.fsdecode(raw))
    try:
        return _read_fd(fd)
    finally:
        os.close(fd)


def read_value(tree: Tree, key: str) -> tuple[bytes, os.stat_result] | None:
    """The content of ``key``'s value file and the stat of that very file, expired or not."""
    return _read_at(tree.root, tree.layout.place(key).raw)


def open_value(tree: Tree, key: str) -> int | None:
    """A descriptor open on ``key``'s live value file (None when missing or expired).

    Values are replaced by renaming a new file over them, so the descriptor goes on reading
    the version it opened, whole, whatever is written or removed meanwhile.
    """
    fd = find(tree.root, tree.layout.place(key).raw, READ)
    if fd < 0:
        if -fd in MISSING:
            return None
        raise OSError(-fd, os.strerror(-fd), key)
    keep = False
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):  # a key that is also a directory: its value is '%'
            outer = fd
            try:
                fd = os.open(SELF, READ, dir_fd=outer)
            except OSError as exc:
                fd = -1
                if exc.errno in MISSING:
                    return None
                raise
            finally:
                os.close(outer)
            info = os.fstat(fd)
        keep = stat.S_ISREG(info.st_mode) and not expired(tree, key, info)
    finally:
        if not keep and fd >= 0:
            os.close(fd)
    return fd if keep else None


def value_stat(tree: Tree, key: str) -> os.stat_result | None:
    """The stat of the file holding ``key``'s value (None when there is none)."""
    rel = tree.layout.place(key).rel
    info = stat_at(tree.root, rel)
    if info is not None and stat.S_ISDIR(info.st_mode):
        info = stat_at(tree.root, rel + "/" + SELF)
    return info if info is not None and stat.S_ISREG(info.st_mode) else None


def read_side(tree: Tree, raw: bytes) -> bytes | None:
    """The sidecar at ``raw`` (a key's path plus ``%t`` or ``%m``) in the ``side`` tree."""
    if tree.side < 0:
        return None
    found = _read_at(tree.side, raw)
    return None if found is None else found[0]


def ttl_at(tree: Tree, raw: bytes) -> tuple[float, int, int] | None:
    """The TTL record (expiry, inode, mtime_ns) of the key at ``raw``; most keys have none."""
    found = read_side(tree, raw + b"%t")
    if found is None:
        return None
    try:
        expires, ino, mtime = found.split()
        return float(expires), int(ino), int(mtime)
    except ValueError:
        return None


def ttl_record(tree: Tree, names: list[str]) -> tuple[float, int, int] | None:
    """The TTL record of the key at ``names`` (for walks, which have names, not keys)."""
    return ttl_at(tree, Place.of(names).raw)


def expiry(tree: Tree, key: str, info: os.stat_result) -> float | None:
    """The expiry time of the value whose stat is ``info``, if a live sidecar names it."""
    record = ttl_at(tree, tree.layout.place(key).raw)
    if record is not None and record[1] == info.st_ino and record[2] == info.st_mtime_ns:
        return record[0]
    return None


def expired(tree: Tree, key: str, info: os.stat_result) -> bool:
    """True (and the value deleted) when the value file ``info`` has expired."""
    expires = expiry(tree, key, info)
    if expires is None or expires > time.time():
        return False
    drop_expired(tree, key, info)
    return True


def drop_expired(tree: Tree, key: str, info: os.stat_result) -> None:
    """Delete ``key``'s value if it is still the expired file ``info`` names."""
    if tree.read_only:
        return
    stripe = tree.locks.acquire(tree.layout.place(key).raw)
    try:
        current = value_stat(tree, key)
        if current is not None and current.st_ino == info.st_ino:
            write.unlink_value(tree, key)
    finally:
        tree.locks.release(stripe)


def peek(tree: Tree, key: str, stat_only: bool = False) -> bytes | object | None:
    """Read a small live value right here (never waits on a lock); else `DEFER`.

    Runs on the event loop: it costs less than a thread hop while the file is small and
    cached. Directories, big files and expired values are left to the worker threads.
    """
    raw = tree.layout.place(key).raw
    fd = find(tree.root, raw, READ)
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
    record = ttl_at(tree, raw)
    mine = record is not None and record[1:] == (info.st_ino, info.st_mtime_ns)
    if mine and record is not None and record[0] <= time.time():
        return DEFER  # expired: the worker deletes it
    return data


def get(tree: Tree, key: str) -> bytes | None:
    """The value of ``key`` (None when missing or expired)."""
    found = _read_at(tree.root, tree.layout.place(key).raw)
    if found is None or expired(tree, key, found[1]):
        return None
    return found[0]


def get_with_etag(tree: Tree, key: str) -> tuple[bytes | None, str | None]:
    """The value of ``key`` and the etag of the very file it was read from."""
    # The stat comes from the descriptor the bytes were read from, and every write renames a
    # new file (new inode, unique mtime) into place: the etag names exactly the value returned.
    found = _read_at(tree.root, tree.layout.place(key).raw)
    if found is None or expired(tree, key, found[1]):
        return None, None
    return found[0], etag_of(found[1])


def has(tree: Tree, key: str) -> bool:
    """True when ``key`` holds a live value."""
    info = value_stat(tree, key)
    return info is not None and not expired(tree, key, info)


def meta(tree: Tree, key: str) -> dict[str, Any]:
    """The file's times, size and etag, and the remaining TTL; {} when missing."""
    info = value_stat(tree, key)
    if info is None:
        return {}
    expires = expiry(tree, key, info)
    if expires is not None and expires <= time.time():
        drop_expired(tree, key, info)
        return {}
    found: dict[str, Any] = {
        "mtime": datetime.fromtimestamp(info.st_mtime, timezone.utc),
        "atime": datetime.fromtimestamp(info.st_atime, timezone.utc),
        "size": info.st_size,
        "etag": etag_of(info),
    }
    if expires is not None:
        found["ttl"] = max(0.0, expires - time.time())
    return found


def get_user_meta(tree: Tree, key: str) -> bytes | None:
    """The user meta stored beside ``key``."""
    return read_side(tree, tree.layout.place(key).raw + b"%m")


def is_directory(tree: Tree, names: list[str]) -> bool:
    """True when ``names`` is a directory of the store (reached without a link)."""
    return is_dir_at(tree.root, "/".join(names))


def has_side_dir(tree: Tree, names: list[str]) -> bool:
    """True when the ``side`` tree has the directory ``names`` (some sidecar below it)."""
    return is_dir_at(tree.side, "/".join(names))


def holds_value(tree: Tree, names: list[str]) -> bool:
    """True when the directory ``names`` holds its own value (a ``%`` file)."""
    info = stat_at(tree.root, "/".join([*names, SELF]))
    return info is not None and stat.S_ISREG(info.st_mode)
