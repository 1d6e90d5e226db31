"""Read-modify-write of one key in an fs store, under the key's lock: increment and touch.

Plain functions over a `Tree`. Each takes the key's lock (threads and processes, see
drivers._fs_locks), reads the live value, and changes it before releasing the lock, so no
other writer of the key, in this process or another, comes in between:

- `increment` writes the new counter as any write does (a temporary file renamed into place),
  so readers see the old value or the new one, never a torn one.
- `touch` and `get_touch` rewrite only the TTL sidecar, naming the same value file: the
  value, its mtime and its etag stay as they are.

As everywhere in the file layer, no lock is awaited while one is held: the directories of a
new key are made between two attempts, with the lock released (and the value read again).
"""

from __future__ import annotations

import contextlib
import errno
import os
import time

from drivers import _fs_read as read
from drivers import _fs_write as write
from drivers._fs_tree import Tree
from storage.atomic import decode_counter, encode_counter


def _live(tree: Tree, key: str) -> tuple[bytes, os.stat_result, float | None] | None:
    """The live value of ``key``, its stat and its expiry time (None when missing or expired).

    Deletes nothing: the caller holds the key's lock, which deleting would take again.
    """
    found = read.read_value(tree, key)
    if found is None:
        return None
    data, info = found
    expires = read.expiry(tree, key, info)
    if expires is not None and expires <= time.time():
        return None
    return data, info, expires


def increment(tree: Tree, key: str, by: int, ttl: float | None) -> int:
    """Add ``by`` to the JSON integer at ``key`` and return the new value.

    A missing or expired key counts as 0 and gets ``ttl``; a live one keeps its expiry time.
    A value that is not JSON integer text raises `storage.InvalidArgumentError`, changing
    nothing.
    """
    where = tree.layout.place(key)
    locks = tree.locks
    for _ in range(write.TRIES):
        stripe = locks.acquire(where.raw)
        try:
            current = _live(tree, key)
            if current is None:
                value = by
                expires = None if ttl is None else time.time() + ttl
            else:
                value = decode_counter(key, current[0]) + by
                expires = current[2]
            temp, info = write.write_temp(tree, encode_counter(value))
            placed = False
            try:
                placed = write.commit(tree, key, where, temp, info, expires)
            finally:
                if not placed:
                    with contextlib.suppress(OSError):
                        os.unlink(temp, dir_fd=tree.tmp)
            if placed:
                return value
        finally:
            locks.release(stripe)
        write.make_parents(tree, where.names)
    raise OSError(errno.EAGAIN, f"could not place {where.rel!r}: its directories keep changing")


def get_touch(tree: Tree, key: str, ttl: float, *, value: bool = True) -> bytes | None:
    """Give the live ``key`` the expiry ``ttl`` seconds from now and return its value
    (``b""`` when ``value`` is False: not read); None when missing or expired.

    Only the TTL sidecar changes, so the etag, which names the value file, stays the same.
    """
    where = tree.layout.place(key)
    stale: os.stat_result | None = None
    stripe = tree.locks.acquire(where.raw)
    try:
        data = b""
        info: os.stat_result | None
        if value:
            found = read.read_value(tree, key)
            info = None if found is None else found[1]
            data = b"" if found is None else found[0]
        else:
            info = read.value_stat(tree, key)
        if info is None:
            return None
        expires = read.expiry(tree, key, info)
        if expires is not None and expires <= time.time():
            stale = info
            return None
        record = f"{time.time() + ttl!r} {info.st_ino} {info.st_mtime_ns}"
        write.write_side(tree, where, "%t", record.encode())
        return data
    finally:
        tree.locks.release(stripe)
        if stale is not None:  # with the lock released: deleting takes it again
            read.drop_expired(tree, key, stale)


def touch(tree: Tree, key: str, ttl: float) -> bool:
    """Give the live ``key`` the expiry ``ttl`` seconds from now; False when it is missing
    or expired. The value and its etag are unchanged."""
    return get_touch(tree, key, ttl, value=False) is not None
