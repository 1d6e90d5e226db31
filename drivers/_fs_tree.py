"""The open directories of one fs store: what every file operation of the driver works on."""

from __future__ import annotations

import contextlib
import fnmatch
import os
import re
from collections.abc import Callable, Sequence

from drivers._fs_beneath import DIRECTORY, ensure_dir, entries, open_at, remove_tree, stat_at
from drivers._fs_layout import INTERNAL, Layout, pid_alive
from drivers._fs_locks import Locks
from storage import WatchEvent

ChangeListener = Callable[[WatchEvent, str, int], None]
_CLOCK_PROBES = 8


class Tree:
    """The store at ``base``, opened once; everything below is named relative to ``root``.

    Options: ``read_only`` (nothing on disk is created, written or deleted: the directory may
    be on a read-only mount); ``durable`` (fsync each file and its directory); ``ignore``
    (fnmatch patterns of names never listed, besides dot-names); ``case_sensitive`` (None
    probes the file system). `close` closes the directories and the lock file.
    """

    __slots__ = (
        "base",
        "coarse_clock",
        "durable",
        "layout",
        "locks",
        "on_change",
        "read_only",
        "root",
        "side",
        "tmp",
    )

    def __init__(
        self,
        base: str | os.PathLike[str],
        *,
        read_only: bool = False,
        durable: bool = False,
        ignore: Sequence[str] = (".*",),
        case_sensitive: bool | None = None,
    ) -> None:
        self.base = os.path.abspath(os.fspath(base))
        self.read_only = read_only
        self.durable = durable
        #: Called with ``(event, key, inode)``, in the thread that made it, for each change.
        self.on_change: ChangeListener | None = None
        #: Descriptors of the store's root and of its internal ``tmp`` and ``side``
        #: directories (-1 when absent: a read-only store may have none, or no directory).
        self.root = self.tmp = self.side = -1
        #: The per-key write locks (cross-process once the lock file is open).
        self.locks = Locks()
        #: New files can get equal mtimes (see `_coarse_clock`): writes then set a unique one.
        self.coarse_clock = False
        pattern = re.compile("|".join(fnmatch.translate(p) for p in ignore) or "(?!)")
        try:
            fold = self._open(case_sensitive)
        except BaseException:
            self.close()
            raise
        self.layout = Layout(fold=fold, ignore=pattern)

    def _open(self, case_sensitive: bool | None) -> bool:
        """Open the directories; return whether names must be case-folded."""
        if not self.read_only:
            os.makedirs(self.base, exist_ok=True)
        # The base path is the caller's choice: a link in it is followed, once, here.
        try:
            self.root = os.open(self.base, DIRECTORY & ~os.O_NOFOLLOW)
        except FileNotFoundError:
            if not self.read_only:
                raise
            return case_sensitive is False  # nothing there: every read finds nothing
        if self.read_only:
            with contextlib.suppress(OSError):
                self.side = open_at(self.root, f"{INTERNAL}/side", DIRECTORY)
            return case_sensitive is False
        internal = ensure_dir(self.root, INTERNAL)
        try:
            self.tmp = ensure_dir(internal, "tmp")
            self.side = ensure_dir(internal, "side")
            self.locks = Locks("lock", dir_fd=internal)
        finally:
            os.close(internal)
        self._clean_temp_files()
        self.coarse_clock = self._coarse_clock()
        return not (self._probe_case() if case_sensitive is None else case_sensitive)

    def close(self) -> None:
        """Close the directories and the lock file; harmless twice."""
        for fd in (self.tmp, self.side, self.root):
            if fd >= 0:
                os.close(fd)
        self.root = self.tmp = self.side = -1
        self.locks.close()

    def _probe_case(self) -> bool:
        probe = f"case-probe-{os.getpid()}"
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, dir_fd=self.tmp))
        try:
            return stat_at(self.tmp, probe.upper()) is None
        finally:
            os.unlink(probe, dir_fd=self.tmp)

    def _coarse_clock(self) -> bool:
        """True when files written one after another can get the same mtime.

        An etag is inode, mtime and size. The inode of a replaced value is soon reused, so
        with a coarse clock (one tick per jiffy, as on kernels before multigrain timestamps)
        two writes of equal size in one tick could give a new value an old etag. Then each
        write sets a unique mtime itself; that costs one more journaled inode update per
        write (sequential writes to a busy ext4 measured 10-15% slower), so it is done only
        where the clock needs it.
        """
        stamps = set()
        for number in range(_CLOCK_PROBES):
            probe = f"{os.getpid()}.clock-probe.{number}"
            fd = os.open(
                probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, dir_fd=self.tmp
            )
            try:
                os.write(fd, b"x")
                stamps.add(os.fstat(fd).st_mtime_ns)
            finally:
                os.close(fd)
                os.unlink(probe, dir_fd=self.tmp)
        return len(stamps) < _CLOCK_PROBES

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
