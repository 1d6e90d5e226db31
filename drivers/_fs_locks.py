"""Per-key write locks of an fs store, shared by the threads of a process and by processes.

A key's lock is one of ``STRIPES`` stripes: a thread lock, then one byte of the store's lock
file locked with fcntl. No cycle of waits can form, in one process or between several:

- A thread holds at most one stripe at a time: the fs file layer never takes a lock while it
  holds one (a key's directories are made, and a value file turned into a directory, between
  two attempts of a write, not inside one).
- On Linux the byte locks are open-file-description locks (``F_OFD_SETLKW``), owned by the
  lock file's descriptor, not by the process. Classic POSIX locks (``lockf``) are owned by the
  whole process: with several threads of two processes each holding one stripe and waiting for
  another, the kernel saw a cycle between the processes that was no deadlock and failed a write
  with EDEADLK ("Resource deadlock avoided"). OFD locks get no such deadlock detection, and
  with the rule above they need none.
- Elsewhere (no OFD locks), only one thread of a process holds a byte lock at a time: a process
  waiting for one then holds none, so the kernel's detection never sees a cycle either.
"""

from __future__ import annotations

import os
import struct
import threading
import zlib

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

STRIPES = 64
#: Cross-process locks are available (so conditional writes are atomic across processes).
HAS_LOCKS = fcntl is not None
_OFD: int | None = getattr(fcntl, "F_OFD_SETLKW", None)
# One process-wide lock for systems without OFD locks (see the module docstring).
_ONE_AT_A_TIME = threading.Lock()


def _flock(kind: int, stripe: int) -> bytes:
    # struct flock: l_type, l_whence, l_start, l_len, l_pid (0 for OFD locks), native layout.
    return struct.pack("hhqqi4x", kind, os.SEEK_SET, stripe, 1, 0)


class Locks:
    """The write locks of one store; ``path`` is its lock file (None: this process only)."""

    __slots__ = ("_fd", "_lock", "_threads", "_unlock")

    def __init__(self, path: str | None = None, *, dir_fd: int | None = None) -> None:
        self._threads = [threading.Lock() for _ in range(STRIPES)]
        self._fd = -1
        if fcntl is not None and path is not None:
            flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
            self._fd = os.open(path, flags, 0o666, dir_fd=dir_fd)
        if _OFD is not None:
            self._lock = [_flock(fcntl.F_WRLCK, stripe) for stripe in range(STRIPES)]
            self._unlock = [_flock(fcntl.F_UNLCK, stripe) for stripe in range(STRIPES)]

    def acquire(self, name: bytes) -> int:
        """Wait for the lock of ``name`` (a key's relative path); return it for `release`."""
        stripe = zlib.crc32(name) % STRIPES
        self._threads[stripe].acquire()
        if self._fd < 0:
            return stripe
        try:
            if _OFD is not None:
                fcntl.fcntl(self._fd, _OFD, self._lock[stripe])
            else:
                _ONE_AT_A_TIME.acquire()
                try:
                    fcntl.lockf(self._fd, fcntl.LOCK_EX, 1, stripe)
                except BaseException:
                    _ONE_AT_A_TIME.release()
                    raise
        except BaseException:
            self._threads[stripe].release()
            raise
        return stripe

    def release(self, stripe: int) -> None:
        """Release a lock `acquire` returned."""
        try:
            if self._fd >= 0:
                if _OFD is not None:
                    fcntl.fcntl(self._fd, _OFD, self._unlock[stripe])
                else:
                    try:
                        fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, stripe)
                    finally:
                        _ONE_AT_A_TIME.release()
        finally:
            self._threads[stripe].release()

    def close(self) -> None:
        """Close the lock file (releasing anything still held); harmless twice."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
