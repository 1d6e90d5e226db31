"""The blocking file operations of the fs driver; they run in its worker threads."""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import re
import stat
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

from drivers._fs_layout import (
    MORE,
    SELF,
    Locks,
    decode_name,
    encode_segment,
    etag_of,
    exchange_paths,
    fsync_dir,
)
from storage import ConflictError, WatchEvent

_counter = itertools.count()
_INLINE_MAX = 64 * 1024
DEFER = object()


class FsFiles:
    """Key paths, atomic writes, sidecars and reads: the part of FsDriver that blocks."""

    base: str
    read_only: bool
    durable: bool
    _ignore: re.Pattern[str]
    _tmp: str
    _side: str
    _fold: bool
    _locks: Locks
    _names: dict[str, list[str]]

    def _note(self, event: WatchEvent, key: str, ino: int) -> None:
        """Record a change made here; the watching part reports it."""

    # -- paths ----------------------------------------------------------------------------------

    def _rel(self, key: str) -> list[str]:
        names = self._names.get(key)
        if names is None:
            names = [
                name for segment in key.split(":") for name in encode_segment(segment, self._fold)
            ]
            if len(self._names) > 8192:
                self._names.clear()
            self._names[key] = names
        return names

    def _path(self, key: str) -> str:
        return self.base + "/" + "/".join(self._rel(key))

    def _sidecar(self, key: str, kind: str) -> str:
        return self._side + "/" + "/".join(self._rel(key)) + kind

    def _key_of(self, names: Sequence[str]) -> str | None:
        """The key a relative path holds, or None for names that are not our encoding."""
        parts: list[str] = []
        pending = ""
        for name in names:
            if self._ignore.match(name):
                return None
            try:
                if name.endswith(MORE):
                    pending += decode_name(name[:-2])
                    continue
                parts.append(pending + decode_name(name))
            except UnicodeDecodeError:
                return None
            pending = ""
        if pending or not parts or any(not part for part in parts):
            return None
        key = ":".join(parts)
        return key if self._rel(key) == list(names) else None

    # -- blocking primitives (run in a worker thread) -----------------------------------------

    def _read_value(self, path: str) -> tuple[bytes, os.stat_result] | None:
        try:
            fd = os.open(path, os.O_RDONLY)
        except (FileNotFoundError, NotADirectoryError):
            return None
        try:
            info = os.fstat(fd)
            if stat.S_ISDIR(info.st_mode):
                return self._read_value(path + "/" + SELF)
            # A short read of a regular file means end of file: one read for most values.
            want = info.st_size + 1
            chunks = [os.read(fd, want)]
            while len(chunks[-1]) == want:
                want = 1 << 20
                chunks.append(os.read(fd, want))
            return (chunks[0] if len(chunks) == 1 else b"".join(chunks)), info
        finally:
            os.close(fd)

    def _stat(self, path: str) -> os.stat_result | None:
        try:
            info = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        if stat.S_ISDIR(info.st_mode):
            return self._stat(path + "/" + SELF)
        return info

    def _ttl_record(self, key: str) -> tuple[float, int, int] | None:
        """The sidecar's (expiry, inode, mtime_ns), or None: most keys have no sidecar."""
        try:
            fd = os.open(self._sidecar(key, "%t"), os.O_RDONLY)
        except (FileNotFoundError, NotADirectoryError):
            return None
        try:
            expires, ino, mtime = os.read(fd, 256).split()
            return float(expires), int(ino), int(mtime)
        except ValueError:
            return None
        finally:
            os.close(fd)

    def _expiry(self, key: str, info: os.stat_result) -> float | None:
        """The expiry time of the value whose stat is ``info``, if a live sidecar names it."""
        record = self._ttl_record(key)
        if record is not None and record[1] == info.st_ino and record[2] == info.st_mtime_ns:
            return record[0]
        return None

    def _expired(self, key: str, info: os.stat_result) -> bool:
        expires = self._expiry(key, info)
        if expires is None or expires > time.time():
            return False
        self._drop_expired(key, info)
        return True

    def _drop_expired(self, key: str, info: os.stat_result) -> None:
        if self.read_only:
            return
        with self._locks.hold(self._path(key)):
            current = self._stat(self._path(key))
            if current is not None and current.st_ino == info.st_ino:
                self._unlink_value(key)

    def _peek(self, key: str, *, stat_only: bool = False) -> bytes | object | None:
        """Read a small live value right here (never waits on a lock); else `DEFER`.

        Runs on the event loop: it costs less than a thread hop while the file is small and
        cached. Directories, big files and expired values are left to the worker threads.
        """
        try:
            fd = os.open(self._path(key), os.O_RDONLY)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError:
            return DEFER
        try:
            info = os.fstat(fd)
            if stat.S_ISDIR(info.st_mode) or info.st_size > _INLINE_MAX:
                return DEFER
            data = b"" if stat_only else os.read(fd, info.st_size + 1)
            if len(data) > info.st_size:
                return DEFER  # grew while read: someone writes it in place
        except OSError:
            return DEFER
        finally:
            os.close(fd)
        record = self._ttl_record(key)
        mine = record is not None and record[1:] == (info.st_ino, info.st_mtime_ns)
        if mine and record is not None and record[0] <= time.time():
            return DEFER  # expired: the worker deletes it
        return data

    def _get(self, key: str) -> bytes | None:
        found = self._read_value(self._path(key))
        if found is None or self._expired(key, found[1]):
            return None
        return found[0]

    def _get_with_etag(self, key: str) -> tuple[bytes | None, str | None]:
        # The stat comes from the descriptor the bytes were read from, and writes always
        # rename a new file into place: the etag names exactly the value returned.
        found = self._read_value(self._path(key))
        if found is None or self._expired(key, found[1]):
            return None, None
        return found[0], etag_of(found[1])

    def _has(self, key: str) -> bool:
        info = self._stat(self._path(key))
        return info is not None and not self._expired(key, info)

    def _temp(self, value: bytes) -> tuple[str, os.stat_result]:
        path = f"{self._tmp}/{os.getpid()}.{threading.get_ident()}.{next(_counter)}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            view = memoryview(value)
            while view:
                view = view[os.write(fd, view) :]
            if self.durable:
                os.fsync(fd)
            return path, os.fstat(fd)
        finally:
            os.close(fd)

    def _set(
        self, key: str, value: bytes, ttl: float | None, check: Callable[[], None] | None = None
    ) -> str:
        temp, info = self._temp(value)
        path = self._path(key)
        placed = False
        try:
            for _ in range(50):
                with self._locks.hold(path):
                    if check is not None:
                        check()
                    if ttl is not None:
                        expires = time.time() + ttl
                        self._write_sidecar(
                            key, "%t", f"{expires!r} {info.st_ino} {info.st_mtime_ns}".encode()
                        )
                    if self._install(temp, path):
                        placed = True
                        self._note("update", key, info.st_ino)
                        if ttl is None:
                            self._unlink_quietly(self._sidecar(key, "%t"))
                        if self.durable:
                            fsync_dir(os.path.dirname(path))
                        return etag_of(info)
                self._make_parents(self._rel(key))
            raise OSError(errno.EAGAIN, f"could not place {path!r}: its directories keep changing")
        finally:
            if not placed:
                self._unlink_quietly(temp)

    def _install(self, temp: str, path: str) -> bool:
        try:
            os.replace(temp, path)
        except IsADirectoryError:
            try:
                os.replace(temp, path + "/" + SELF)
            except (FileNotFoundError, NotADirectoryError):
                return False
        except (FileNotFoundError, NotADirectoryError):
            return False
        return True

    def _make_parents(self, names: Sequence[str], root: str | None = None) -> None:
        """Create the directories above ``names``; callers retry if a removal races this."""
        root = self.base if root is None else root
        try:
            os.makedirs(root + "/" + "/".join(names[:-1]), exist_ok=True)
            return
        except (FileExistsError, NotADirectoryError):
            pass
        path = root
        try:
            for name in names[:-1]:
                path += "/" + name
                with contextlib.suppress(FileExistsError):
                    os.mkdir(path)
                if not os.path.isdir(path):
                    self._make_directory(path)
        except FileNotFoundError:
            return

    def _make_directory(self, path: str) -> None:
        """Turn the value file at ``path`` into a directory holding it as ``path/%``."""
        with self._locks.hold(path):
            if os.path.isdir(path) or not os.path.exists(path):
                return
            holder = f"{self._tmp}/{os.getpid()}.{threading.get_ident()}.{next(_counter)}.d"
            os.mkdir(holder)
            try:
                os.link(path, holder + "/" + SELF)
            except OSError:  # no hard links here: move it (readers briefly miss the key)
                os.rename(path, holder + "/" + SELF)
                os.rename(holder, path)
                return
            # Swapping keeps the value readable at every moment (Linux); else unlink + rename.
            if exchange_paths(holder, path):
                os.unlink(holder)
            else:
                os.unlink(path)
                os.rename(holder, path)

    def _write_sidecar(self, key: str, kind: str, data: bytes) -> None:
        temp, _ = self._temp(data)
        target = self._sidecar(key, kind)
        try:
            for _ in range(50):
                with contextlib.suppress(FileNotFoundError):
                    os.replace(temp, target)
                    return
                self._make_parents([*self._rel(key)[:-1], "x"], self._side)
        finally:
            self._unlink_quietly(temp)

    def _remove_sidecar(self, path: str) -> None:
        if self._unlink_quietly(path):
            self._prune(os.path.dirname(path), self._side)

    def _unlink_quietly(self, path: str) -> bool:
        try:
            os.unlink(path)
        except (FileNotFoundError, NotADirectoryError):
            return False
        return True

    def _unlink_value(self, key: str) -> bool:
        path = self._path(key)
        try:
            os.unlink(path)
        except (IsADirectoryError, PermissionError):
            if not self._unlink_quietly(path + "/" + SELF):
                return False
            path += "/" + SELF
        except (FileNotFoundError, NotADirectoryError):
            return False
        self._note("remove", key, 0)
        self._prune(os.path.dirname(path), self.base)
        self._remove_sidecar(self._sidecar(key, "%t"))
        return True

    def _prune(self, path: str, root: str) -> None:
        while len(path) > len(root):
            try:
                os.rmdir(path)
            except OSError:
                return
            path = os.path.dirname(path)

    def _remove(self, key: str) -> bool:
        with self._locks.hold(self._path(key)):
            return self._unlink_value(key)

    def _set_conditional(
        self, key: str, value: bytes, ttl: float | None, if_match: str | None, if_none_match: bool
    ) -> str:
        def check() -> None:
            info = self._stat(self._path(key))
            if info is not None:
                expires = self._expiry(key, info)
                if expires is not None and expires <= time.time():
                    info = None
            if if_none_match and info is not None:
                raise ConflictError(key, "the key already exists")
            if if_match is not None and (info is None or etag_of(info) != if_match):
                raise ConflictError(key)

        return self._set(key, value, ttl, check)

    def _meta(self, key: str) -> dict[str, Any]:
        info = self._stat(self._path(key))
        if info is None:
            return {}
        expires = self._expiry(key, info)
        if expires is not None and expires <= time.time():
            self._drop_expired(key, info)
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
