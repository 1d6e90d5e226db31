"""Atomic writes and removals in an fs store: temp file, lock, rename; directories on demand.

Plain functions over a `Tree`. A value is written to a new file in ``tmp`` and renamed
into place under the key's lock, so readers never see a torn value; a failed write leaves no
temporary file behind. Directories are made between two attempts of a write, never while a
lock is held (see drivers._fs_locks: no thread ever waits for a lock while holding one).
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import stat
import threading
import time
from collections.abc import Callable

from drivers._fs_beneath import (
    DIRECTORY,
    MISSING,
    close_unless,
    ensure_dir,
    exchange_at,
    find,
    open_parent,
    prune,
    remove_tree,
)
from drivers._fs_layout import SELF, Place, etag_of
from drivers._fs_tree import Tree

_counter = itertools.count()
#: Attempts of a write whose directories keep disappearing before it fails.
TRIES = 50
# Temporary names start with the pid (so a restart can tell a dead writer's files); getpid is
# a system call, so it is read once, and again in a forked child.
_pid = [os.getpid()]
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=lambda: _pid.__setitem__(0, os.getpid()))


def _unique() -> str:
    return f"{_pid[0]}.{threading.get_ident()}.{next(_counter)}"


def open_temp(tree: Tree) -> tuple[str, int]:
    """A new, empty file in ``tmp``: its name and a descriptor open for writing."""
    name = _unique()
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
    return name, os.open(name, flags, 0o666, dir_fd=tree.tmp)


def seal_temp(tree: Tree, fd: int) -> os.stat_result:
    """Finish a temporary file written through ``fd`` (a unique mtime where the clock is
    coarse, fsync when durable); its stat, whose etag the value will have."""
    if tree.coarse_clock:  # a unique mtime, so that the etag is new (see Tree)
        stamp = time.time_ns() // 1000 * 1000 + next(_counter) % 1000
        os.utime(fd, ns=(stamp, stamp))
    if tree.durable:
        os.fsync(fd)
    return os.fstat(fd)


def write_temp(tree: Tree, value: bytes) -> tuple[str, os.stat_result]:
    """A new file in ``tmp`` holding ``value``; on failure (say, a full disk) it is gone."""
    name, fd = open_temp(tree)
    try:
        view = memoryview(value)
        while view:
            view = view[os.write(fd, view) :]
        info = seal_temp(tree, fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(name, dir_fd=tree.tmp)
        raise
    finally:
        os.close(fd)
    return name, info


def place(
    tree: Tree, key: str, value: bytes, ttl: float | None, check: Callable[[], None] | None
) -> str:
    """Write ``value`` at ``key`` atomically; return its etag (see `FsFiles.set`)."""
    temp, info = write_temp(tree, value)
    return place_temp(tree, key, temp, info, ttl, check)


def place_temp(
    tree: Tree,
    key: str,
    temp: str,
    info: os.stat_result,
    ttl: float | None,
    check: Callable[[], None] | None = None,
    *,
    swap: bool = False,
) -> str:
    """Rename the finished temporary file ``temp`` (whose stat is ``info``) to ``key`` under
    the key's lock, with its TTL sidecar; return its etag. ``check`` runs under the lock first
    (conditional writes); ``swap`` as for `commit`. The temporary file is gone afterwards,
    placed or not."""
    where = tree.layout.place(key)
    placed = False
    locks = tree.locks
    try:
        for _ in range(TRIES):
            stripe = locks.acquire(where.raw)
            try:
                if check is not None:
                    check()
                expires = None if ttl is None else time.time() + ttl
                if commit(tree, key, where, temp, info, expires, swap=swap):
                    placed = True
                    return etag_of(info)
            finally:
                locks.release(stripe)
            make_parents(tree, where.names)
        raise OSError(errno.EAGAIN, f"could not place {where.rel!r}: its directories keep changing")
    finally:
        if not placed:
            with contextlib.suppress(OSError):
                os.unlink(temp, dir_fd=tree.tmp)


def commit(
    tree: Tree,
    key: str,
    where: Place,
    temp: str,
    info: os.stat_result,
    expires: float | None,
    *,
    swap: bool = False,
) -> bool:
    """Under ``key``'s lock (held by the caller): rename ``temp`` to ``where`` with a TTL
    sidecar naming it (``expires`` is a time, None for none) and report the change.

    ``swap`` (for large values written without fsync) exchanges ``temp`` with the value it
    replaces and then unlinks the old one, instead of renaming over it: a rename over a file
    makes ext4 allocate and flush the new file's blocks on the spot (its ``auto_da_alloc``
    help for programs that do not fsync), which took two thirds of a 256 MB stream's time.
    Readers see the old file or the new one at every moment either way.

    False when a directory on the way is missing: the caller releases the lock, calls
    `make_parents` and tries again (the sidecar written meanwhile names ``temp``'s inode, so
    it is ignored until then).
    """
    if expires is not None:
        record = f"{expires!r} {info.st_ino} {info.st_mtime_ns}"
        write_side(tree, where, "%t", record.encode())
    if not _install(tree, temp, where, swap):
        return False
    if tree.on_change is not None:
        tree.on_change("update", key, info.st_ino)
    if expires is None:
        remove_side(tree, where, "%t")
    return True


def _install(tree: Tree, temp: str, where: Place, swap: bool = False) -> bool:
    """Rename ``temp`` to ``where``; False when a directory on the way is missing."""
    root = tree.root
    names = where.names
    parent = _parent(root, where)
    if parent < 0:
        if -parent in MISSING:
            return False
        raise OSError(-parent, os.strerror(-parent), where.rel)
    try:
        try:
            if not (swap and _swap(tree, temp, parent, names[-1])):
                os.replace(temp, names[-1], src_dir_fd=tree.tmp, dst_dir_fd=parent)
        except IsADirectoryError:  # a key that is also a directory: its value is 'name/%'
            inner = os.open(names[-1], DIRECTORY, dir_fd=parent)
            try:
                if not (swap and _swap(tree, temp, inner, SELF)):
                    os.replace(temp, SELF, src_dir_fd=tree.tmp, dst_dir_fd=inner)
                if tree.durable:
                    os.fsync(inner)
            finally:
                os.close(inner)
        if tree.durable:
            os.fsync(parent)
    except OSError as exc:
        if exc.errno in MISSING:
            return False
        raise
    finally:
        close_unless(parent, root)
    return True


def _swap(tree: Tree, temp: str, parent: int, name: str) -> bool:
    """Exchange ``temp`` with the file (or link) ``name`` in ``parent`` and unlink what comes
    back; False, changing nothing, where there is nothing to exchange with (or no renameat2).

    Something that comes back as a directory (put there since it was looked at) is swapped
    back, and the caller's rename then deals with it.
    """
    try:
        info = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except OSError:
        return False
    if stat.S_ISDIR(info.st_mode) or not exchange_at(tree.tmp, temp, parent, name):
        return False
    if stat.S_ISDIR(os.stat(temp, dir_fd=tree.tmp, follow_symlinks=False).st_mode):
        exchange_at(tree.tmp, temp, parent, name)
        return False
    with contextlib.suppress(OSError):  # else left in tmp under our pid, removed on reopen
        os.unlink(temp, dir_fd=tree.tmp)
    return True


def make_parents(tree: Tree, names: list[str]) -> None:
    """Create the directories above ``names`` (no lock held); callers retry if a removal
    races this."""
    root = tree.root
    fd = root
    try:
        for depth, name in enumerate(names[:-1]):
            try:
                inner = ensure_dir(fd, name)
            except OSError as exc:
                if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
                    return
                _make_directory(tree, fd, name, Place.of(names[: depth + 1]).raw)
                try:
                    inner = os.open(name, DIRECTORY, dir_fd=fd)
                except OSError:
                    return
            close_unless(fd, root)
            fd = inner
    finally:
        close_unless(fd, root)


def _make_directory(tree: Tree, parent: int, name: str, lock: bytes) -> None:
    """Turn the file (or link) ``name`` into a directory holding it as ``name/%``."""
    stripe = tree.locks.acquire(lock)
    try:
        try:
            info = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(info.st_mode):
            return
        holder = _unique() + ".d"
        inner = ensure_dir(tree.tmp, holder)
        try:
            try:  # a hard link to the link itself, never to what a link points to
                os.link(name, SELF, src_dir_fd=parent, dst_dir_fd=inner, follow_symlinks=False)
            except OSError:  # no hard links here: move it (readers briefly miss the key)
                os.rename(name, SELF, src_dir_fd=parent, dst_dir_fd=inner)
                os.rename(holder, name, src_dir_fd=tree.tmp, dst_dir_fd=parent)
                return
            # Swapping keeps the value readable at every moment (Linux); else unlink + rename.
            if exchange_at(tree.tmp, holder, parent, name):
                os.unlink(holder, dir_fd=tree.tmp)
            else:
                os.unlink(name, dir_fd=parent)
                os.rename(holder, name, src_dir_fd=tree.tmp, dst_dir_fd=parent)
        finally:
            os.close(inner)
            remove_tree(tree.tmp, holder)  # still there only if something failed
    finally:
        tree.locks.release(stripe)


def write_side(tree: Tree, where: Place, kind: str, data: bytes) -> None:
    """Store a sidecar (``%t`` TTL record, ``%m`` user meta) in the ``side`` tree."""
    temp, _ = write_temp(tree, data)
    side = tree.side
    names = where.names
    target = [*names[:-1], names[-1] + kind]
    try:
        for _ in range(TRIES):
            try:
                parent = open_parent(side, target)
            except OSError as exc:
                if exc.errno not in MISSING:
                    raise
            else:
                try:
                    os.replace(temp, target[-1], src_dir_fd=tree.tmp, dst_dir_fd=parent)
                    return
                except OSError as exc:
                    if exc.errno not in MISSING:
                        raise
                finally:
                    close_unless(parent, side)
            _make_side_parents(side, target)
        raise OSError(errno.EAGAIN, f"could not place the sidecar of {'/'.join(names)!r}")
    finally:
        with contextlib.suppress(OSError):
            os.unlink(temp, dir_fd=tree.tmp)


def _make_side_parents(side: int, target: list[str]) -> None:
    """Create the directories of a sidecar; anything else in their place is removed.

    Sidecar names end in %t or %m, which no directory name does, so a file or link where a
    directory belongs is no sidecar: it is unlinked (the link itself, never its target).
    """
    fd = side
    try:
        for name in target[:-1]:
            try:
                inner = ensure_dir(fd, name)
            except OSError as exc:
                if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
                    return
                with contextlib.suppress(OSError):
                    os.unlink(name, dir_fd=fd)
                return
            close_unless(fd, side)
            fd = inner
    finally:
        close_unless(fd, side)


def remove_side(tree: Tree, where: Place, kind: str) -> None:
    """Delete the sidecar ``kind`` of the key at ``where``, and its emptied directories."""
    side = tree.side
    if side < 0:
        return
    parent = _parent(side, where)
    if parent < 0:
        return  # no directory, no sidecar: the common case
    try:
        os.unlink(where.names[-1] + kind, dir_fd=parent)
    except OSError as exc:
        if exc.errno in MISSING:
            return
        raise
    finally:
        close_unless(parent, side)
    prune(side, where.names[:-1])


def _parent(root: int, where: Place) -> int:
    """The directory holding ``where``'s last name (``root`` itself at the top), or -errno."""
    parent = where.parent
    if not parent:
        return root
    if b"/" in parent:
        return find(root, parent, DIRECTORY)
    try:  # one name: a plain openat with O_NOFOLLOW is safe, and cheaper than ctypes
        return os.open(parent, DIRECTORY, dir_fd=root)
    except OSError as exc:
        return -(exc.errno or errno.EIO)


def remove(tree: Tree, key: str) -> bool:
    """Delete ``key``'s value (whatever file or link holds its name) under its lock."""
    stripe = tree.locks.acquire(tree.layout.place(key).raw)
    try:
        return unlink_value(tree, key)
    finally:
        tree.locks.release(stripe)


def unlink_value(tree: Tree, key: str) -> bool:
    """Delete ``key``'s value file (under its lock, held by the caller); True if one was."""
    where = tree.layout.place(key)
    names = where.names
    root = tree.root
    parent = _parent(root, where)
    if parent < 0:
        if -parent in MISSING:
            return False
        raise OSError(-parent, os.strerror(-parent), where.rel)
    try:
        try:
            os.unlink(names[-1], dir_fd=parent)
            empty = names[:-1]
        except (IsADirectoryError, PermissionError):  # macOS says EPERM for a directory
            inner = os.open(names[-1], DIRECTORY, dir_fd=parent)
            try:
                os.unlink(SELF, dir_fd=inner)
            finally:
                os.close(inner)
            empty = names
    except OSError as exc:
        if exc.errno in MISSING:
            return False
        raise
    finally:
        close_unless(parent, root)
    if tree.on_change is not None:
        tree.on_change("remove", key, 0)
    prune(root, empty)
    remove_side(tree, where, "%t")
    return True
