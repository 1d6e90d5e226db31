"""Opening and changing paths below a directory descriptor, never following a link.

Everything the fs driver touches is named relative to a directory it holds open (the store's
root, or its internal ``tmp`` and ``side`` directories), as ``/``-joined names. No call follows
a symbolic link inside the store, wherever it sits and whenever it appears:

- Opening ``a/b/c``. On Linux (5.6 and later) one ``openat2(2)`` with ``RESOLVE_BENEATH |
  RESOLVE_NO_SYMLINKS`` resolves the whole path in the kernel, atomically: a link anywhere in it
  fails with ELOOP, and the walk cannot leave the directory. Python has no binding for it, so it
  is called through ctypes; that costs about 1.0 us against 1.5 us for opening two components
  one by one (bench_fs keys have two). Where it is missing (other systems, old kernels, seccomp
  filters that refuse it), each component is opened relative to the previous one with
  ``O_NOFOLLOW | O_DIRECTORY``: just as safe, slower for deep keys. `open_at` opens a path of
  one name with a plain ``openat`` and ``O_NOFOLLOW``; `find`, for the hot paths (reads and
  sidecar lookups that mostly find nothing), returns ``-errno`` instead of raising.
- Changing a name (unlink, rename, mkdir, link, rmdir): done relative to the descriptor of its
  parent directory, opened as above. None of these calls follows a link in its last name.

So a directory swapped for a link between two calls is refused, never followed: a race can make
an operation miss or fail, never reach outside. Callers read ``MISSING`` errors as "absent".
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import platform
import stat
from typing import Any

#: Errors that mean "nothing there" for a path below the root: absent, a file where a directory
#: was expected, or a link (which is never followed, so never a way in).
MISSING = frozenset({errno.ENOENT, errno.ENOTDIR, errno.ELOOP})

READ = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK  # a FIFO never blocks a read
DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW
# O_PATH opens without reading (no side effect even on a device); elsewhere a plain read open.
STAT: int = getattr(os, "O_PATH", os.O_RDONLY | os.O_NONBLOCK) | os.O_CLOEXEC | os.O_NOFOLLOW

_SYS_OPENAT2 = 437  # the same number on every architecture that has it in the generic table
_GENERIC_TABLE = {"x86_64", "amd64", "aarch64", "arm64", "riscv64", "ppc64le", "s390x"}
_RESOLVE = 0x08 | 0x04 | 0x02  # RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS
_RENAME_EXCHANGE = 2


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


@functools.cache
def _libc() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:  # pragma: no cover - no C library to load
        return None


@functools.cache
def _how(flags: int) -> Any:
    return ctypes.pointer(_OpenHow(flags, 0, _RESOLVE))


def _probe_openat2() -> Any:
    libc = _libc()
    if libc is None or platform.system() != "Linux" or platform.machine() not in _GENERIC_TABLE:
        return None
    syscall = libc.syscall
    fd = syscall(_SYS_OPENAT2, -100, b".", _how(DIRECTORY), 24)  # AT_FDCWD
    if fd < 0:
        return None
    os.close(fd)
    return syscall


_openat2 = _probe_openat2()
#: True when paths are resolved by openat2; tests turn it off to run the portable walk.
OPENAT2 = _openat2 is not None


def open_at(root: int, rel: str, flags: int, mode: int = 0o666) -> int:
    """Open ``rel`` (names joined by ``/``) below the directory ``root``, following no link.

    A link on the way, or as the last name, fails with ELOOP (or ENOTDIR); see `MISSING`.
    Below a missing root (-1: a read-only store without its directory) nothing is found.
    """
    if root < 0:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), rel)
    if "/" not in rel:
        return os.open(rel, flags | os.O_NOFOLLOW, mode, dir_fd=root)
    if OPENAT2 and not flags & os.O_CREAT:
        fd: int = _openat2(
            _SYS_OPENAT2, root, rel.encode("utf-8", "surrogateescape"), _how(flags), 24
        )
        if fd < 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code), rel)
        return fd
    *dirs, last = rel.split("/")
    fd = root
    try:
        for name in dirs:
            inner = os.open(name, DIRECTORY, dir_fd=fd)
            if fd != root:
                os.close(fd)
            fd = inner
        return os.open(last, flags | os.O_NOFOLLOW, mode, dir_fd=fd)
    finally:
        if fd != root:
            os.close(fd)


def find(root: int, raw: bytes, flags: int) -> int:
    """`open_at` for a path given as bytes, returning ``-errno`` instead of raising.

    For the hot paths (reads, sidecar lookups that mostly find nothing): no exception.
    """
    if OPENAT2 and root >= 0:
        fd: int = _openat2(_SYS_OPENAT2, root, raw, _how(flags), 24)
        return fd if fd >= 0 else -ctypes.get_errno()
    try:
        return open_at(root, raw.decode("utf-8", "surrogateescape"), flags)
    except OSError as exc:
        return -(exc.errno or errno.EIO)


def open_parent(root: int, names: list[str]) -> int:
    """The directory holding ``names[-1]``: ``root`` itself for one name (do not close it)."""
    if len(names) == 1:
        return root
    return open_at(root, "/".join(names[:-1]), DIRECTORY)


def close_unless(fd: int, root: int) -> None:
    """Close ``fd`` unless it is ``root`` (as `open_parent` returns)."""
    if fd != root:
        os.close(fd)


def stat_at(root: int, rel: str) -> os.stat_result | None:
    """The stat of ``rel`` below ``root``, or None when it is missing or a link."""
    if "/" not in rel and root >= 0:  # one name: lstat relative to root follows nothing
        try:
            info = os.stat(rel, dir_fd=root, follow_symlinks=False)
        except OSError as exc:
            if exc.errno in MISSING:
                return None
            raise
        return None if stat.S_ISLNK(info.st_mode) else info
    try:
        fd = open_at(root, rel, STAT)
    except OSError as exc:
        if exc.errno in MISSING:
            return None
        raise
    try:
        info = os.fstat(fd)
    finally:
        os.close(fd)
    return None if stat.S_ISLNK(info.st_mode) else info


def is_dir_at(root: int, rel: str) -> bool:
    """True when ``rel`` below ``root`` is a directory reached without a link."""
    info = stat_at(root, rel)
    return info is not None and stat.S_ISDIR(info.st_mode)


def entries(root: int, rel: str = ".") -> list[tuple[str, bool, bool]]:
    """``(name, is_directory, is_regular_file)`` for each entry of the directory ``rel``.

    Types come from the entries themselves (a link is neither); the directory is opened anew,
    so two threads listing one directory never share a read position.
    """
    fd = open_at(root, rel, DIRECTORY)
    try:
        with os.scandir(fd) as scan:
            found = []
            for entry in scan:
                is_dir = entry.is_dir(follow_symlinks=False)
                found.append(
                    (entry.name, is_dir, not is_dir and entry.is_file(follow_symlinks=False))
                )
            return found
    finally:
        os.close(fd)


def ensure_dir(parent: int, name: str) -> int:
    """Open the directory ``name`` in ``parent``, creating it first if needed (never a link)."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(name, dir_fd=parent)
    return os.open(name, DIRECTORY, dir_fd=parent)


def prune(root: int, names: list[str]) -> None:
    """Remove the directory ``names`` below ``root`` and then its parents, while empty."""
    while names:
        try:
            parent = open_parent(root, names)
        except OSError:
            return
        try:
            os.rmdir(names[-1], dir_fd=parent)
        except OSError:
            return
        finally:
            close_unless(parent, root)
        names = names[:-1]


def remove_tree(parent: int, name: str, *, keep: bool = False) -> None:
    """Delete the directory ``name`` in ``parent`` and all it holds; ``keep`` keeps it, empty.

    Each directory is opened with O_NOFOLLOW from its parent's descriptor, so a link inside is
    removed itself, never followed, even if it replaces a directory while this runs.
    """
    try:
        fd = os.open(name, DIRECTORY, dir_fd=parent)
    except OSError:
        return
    try:
        for entry, is_dir, _ in entries(fd):
            if is_dir:
                remove_tree(fd, entry)
            else:
                with contextlib.suppress(OSError):
                    os.unlink(entry, dir_fd=fd)
    except OSError:
        pass  # gone meanwhile
    finally:
        os.close(fd)
    if not keep:
        with contextlib.suppress(OSError):
            os.rmdir(name, dir_fd=parent)


def exchange_at(first_dir: int, first: str, second_dir: int, second: str) -> bool:
    """Swap two names atomically (Linux renameat2); False when the system cannot."""
    rename = getattr(_libc(), "renameat2", None)
    if rename is None:
        return False
    encoded = (os.fsencode(first), os.fsencode(second))
    return bool(rename(first_dir, encoded[0], second_dir, encoded[1], _RENAME_EXCHANGE) == 0)
