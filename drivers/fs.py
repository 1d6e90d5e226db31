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

Names that are not the encoding of some key (say, ``50%off``) are not listed. Everything
internal lives in ``base/.unistorage/``: temporary files (``tmp/``), TTL and user meta sidecars
(``side/<encoded path>%t`` and ``%m``) and the lock file. Writes go to a temporary file and are
renamed into place, under a per-key lock (threads and processes), so readers never see a torn
value and conditional writes are atomic on one machine. A TTL sidecar names the inode and
mtime of the value it belongs to, so one left by a crash or by another write is ignored.

Each operation is one hop to a worker thread doing the whole read or the whole atomic write
(aiofiles takes several hops per file), except reads of small values, done on the event loop
where a cached file is read faster than a thread hop (measured in benchmarks/bench_fs.py). Watching uses
watchfiles; changes made through this driver object are reported as soon as they return.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import errno
import fnmatch
import functools
import itertools
import logging
import os
import queue
import re
import stat
import threading
import time
import zlib
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from datetime import datetime, timezone
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from storage import (
    ConflictError,
    Driver,
    InvalidArgumentError,
    UnsupportedError,
    Unwatch,
    WatchCallback,
    Watchers,
    WatchEvent,
)
from storage.driver import parse_url_options

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["FsDriver"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
INTERNAL = ".unistorage"
_SELF = "%"
_MORE = "%+"
_LIMIT = 240
_STRIPES = 64
_PAGE = 1000
_ALWAYS = frozenset('%<>"|?*')
_counter = itertools.count()
_INLINE_MAX = 64 * 1024
_DEFER = object()


def _escape(char: str) -> str:
    return "".join(f"%{byte:02X}" for byte in char.encode())


def encode_segment(segment: str, fold: bool = False) -> list[str]:
    """The file names (chunks) that hold one key segment; see the module docstring."""
    if (
        len(segment) <= _LIMIT // 4
        and segment[0] != "."
        and segment[-1] not in ". "
        and not _ALWAYS.intersection(segment)
        and (not fold or (segment.isascii() and segment == segment.lower()))
    ):
        return [segment]
    names: list[str] = []
    chunk: list[str] = []
    size = 0
    for char in segment:
        special = char in _ALWAYS or (fold and (not char.isascii() or char != char.lower()))
        piece = _escape(char) if special or (char == "." and not chunk) else char
        width = len(piece.encode())
        if size + width > _LIMIT:
            names.append("".join(chunk) + _MORE)
            chunk, size = [], 0
            piece = _escape(char) if char == "." else piece
            width = len(piece.encode())
        chunk.append(piece)
        size += width
    if chunk[-1] in (".", " "):
        chunk[-1] = _escape(chunk[-1])
    names.append("".join(chunk))
    return names


def _decode(name: str) -> str:
    return unquote(name, errors="strict") if "%" in name else name


class _Locks:
    """Per-key write locks shared by the threads of this process and by other processes."""

    def __init__(self, path: str | None) -> None:
        self._threads = [threading.Lock() for _ in range(_STRIPES)]
        self._fd = -1
        if fcntl is not None and path is not None:
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)

    @contextlib.contextmanager
    def hold(self, path: str) -> Iterator[None]:
        stripe = zlib.crc32(path.encode()) % _STRIPES
        with self._threads[stripe]:
            if self._fd < 0:
                yield
                return
            fcntl.lockf(self._fd, fcntl.LOCK_EX, 1, stripe)
            try:
                yield
            finally:
                fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, stripe)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class _Pool:
    """A few threads that run whole file operations; one queue hop per call.

    Cheaper than ``run_in_executor`` (no concurrent.futures layer): measured in bench_fs.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._queue: queue.SimpleQueue[tuple[Callable[[], Any], asyncio.Future[Any]] | None]
        self._queue = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []

    def run(self, function: Callable[[], T]) -> asyncio.Future[T]:
        if not self._threads:
            for number in range(self._size):
                thread = threading.Thread(target=self._serve, name=f"fs-{number}", daemon=True)
                thread.start()
                self._threads.append(thread)
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put((function, future))
        return future

    def _serve(self) -> None:
        while (job := self._queue.get()) is not None:
            function, future = job
            try:
                outcome: tuple[Any, BaseException | None] = (function(), None)
            except BaseException as exc:  # handed to the caller
                outcome = (None, exc)
            with contextlib.suppress(RuntimeError):  # the caller's loop is closed
                future.get_loop().call_soon_threadsafe(_settle, future, *outcome)

    def stop(self) -> list[threading.Thread]:
        threads, self._threads = self._threads, []
        for _ in threads:
            self._queue.put(None)
        return threads


def _settle(future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if future.cancelled():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)


def _exchange(first: str, second: str) -> bool:
    """Swap two paths atomically (Linux renameat2); False when the system cannot."""
    rename = getattr(_libc(), "renameat2", None)
    if rename is None:
        return False
    at_fdcwd, exchange = -100, 2
    return bool(rename(at_fdcwd, first.encode(), at_fdcwd, second.encode(), exchange) == 0)


@functools.cache
def _libc() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:  # pragma: no cover
        return None


class FsDriver(Driver):
    """Files under ``base``: atomic writes, TTL and meta sidecars, cross-process locks, watch.

    Options: ``base`` directory; ``read_only`` (nothing on disk is touched); ``durable`` (fsync
    every file and its directory); ``ignore`` (fnmatch patterns of names never listed, besides
    dot-names, which no key maps to); ``sweep_interval`` (seconds between deletions of expired
    files, 0 for none); ``case_sensitive`` (None probes the file system); ``inline_reads``
    (read values up to 64 KiB on the event loop, where that is cheaper than a thread hop; turn
    it off for slow or network file systems).
    """

    name = "fs"
    schemes = ("file", "fs")
    supports_ttl = True
    supports_conditional = fcntl is not None
    supports_watch = True
    native_max_depth = True

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
        self.base = os.path.abspath(os.fspath(base))
        self.read_only = read_only
        self.durable = durable
        self.sweep_interval = sweep_interval
        self.inline_reads = inline_reads
        self._ignore = re.compile("|".join(fnmatch.translate(p) for p in ignore) or "(?!)")
        self._internal = f"{self.base}/{INTERNAL}"
        self._tmp = f"{self._internal}/tmp"
        self._side = f"{self._internal}/side"
        if read_only:  # touch nothing: the directory may be on a read-only mount
            self._fold = case_sensitive is False
            self._locks = _Locks(None)
        else:
            os.makedirs(self._tmp, exist_ok=True)
            os.makedirs(self._side, exist_ok=True)
            self._clean_temp_files()
            self._fold = not (self._probe_case() if case_sensitive is None else case_sensitive)
            self._locks = _Locks(f"{self._internal}/lock")
        self._names: dict[str, list[str]] = {}
        self._watchers = Watchers()
        self._watch_stop: threading.Event | None = None
        self._watch_thread: threading.Thread | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._pool = _Pool(4)
        self._changed: collections.deque[tuple[WatchEvent, str]] = collections.deque()
        self._own: dict[str, tuple[int, float]] = {}

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

    def _probe_case(self) -> bool:
        probe = f"{self._tmp}/case-probe-{os.getpid()}"
        with open(probe, "w"):
            pass
        try:
            return not os.path.exists(probe.upper().replace(self._tmp.upper(), self._tmp))
        finally:
            os.unlink(probe)

    def _clean_temp_files(self) -> None:
        for entry in os.scandir(self._tmp):
            pid = entry.name.partition(".")[0]
            if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
                with contextlib.suppress(OSError):
                    if entry.is_dir(follow_symlinks=False):
                        for inner in os.scandir(entry.path):
                            os.unlink(inner.path)
                        os.rmdir(entry.path)
                    else:
                        os.unlink(entry.path)

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
                if name.endswith(_MORE):
                    pending += _decode(name[:-2])
                    continue
                parts.append(pending + _decode(name))
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
                return self._read_value(path + "/" + _SELF)
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
            return self._stat(path + "/" + _SELF)
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
        """Read a small live value right here (never waits on a lock); else `_DEFER`.

        Runs on the event loop: it costs less than a thread hop while the file is small and
        cached. Directories, big files and expired values are left to the worker threads.
        """
        try:
            fd = os.open(self._path(key), os.O_RDONLY)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError:
            return _DEFER
        try:
            info = os.fstat(fd)
            if stat.S_ISDIR(info.st_mode) or info.st_size > _INLINE_MAX:
                return _DEFER
            data = b"" if stat_only else os.read(fd, info.st_size + 1)
            if len(data) > info.st_size:
                return _DEFER  # grew while read: someone writes it in place
        except OSError:
            return _DEFER
        finally:
            os.close(fd)
        record = self._ttl_record(key)
        mine = record is not None and record[1:] == (info.st_ino, info.st_mtime_ns)
        if mine and record is not None and record[0] <= time.time():
            return _DEFER  # expired: the worker deletes it
        return data

    def _get(self, key: str) -> bytes | None:
        found = self._read_value(self._path(key))
        if found is None or self._expired(key, found[1]):
            return None
        return found[0]

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
                            _fsync_dir(os.path.dirname(path))
                        return _etag(info)
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
                os.replace(temp, path + "/" + _SELF)
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
                os.link(path, holder + "/" + _SELF)
            except OSError:  # no hard links here: move it (readers briefly miss the key)
                os.rename(path, holder + "/" + _SELF)
                os.rename(holder, path)
                return
            # Swapping keeps the value readable at every moment (Linux); else unlink + rename.
            if _exchange(holder, path):
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
            if not self._unlink_quietly(path + "/" + _SELF):
                return False
            path += "/" + _SELF
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
            if if_match is not None and (info is None or _etag(info) != if_match):
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
            "etag": _etag(info),
        }
        if expires is not None:
            meta["ttl"] = max(0.0, expires - time.time())
        return meta

    # -- listing ----------------------------------------------------------------------------------

    def _walk(self, base: str, max_depth: int | None) -> Iterator[str]:
        """Keys under ``base``, reading only its subtree; ``done`` counts finished segments."""
        names = self._rel(base[:-1]) if base else []
        now = time.time()
        stack: list[tuple[list[str], int]] = [(names, 0)]
        while stack:
            rel, done = stack.pop()
            directory = "/".join([self.base, *rel])
            try:
                entries = list(os.scandir(directory))
            except (FileNotFoundError, NotADirectoryError):
                continue
            timed = os.path.isdir("/".join([self._side, *rel]))
            for entry in entries:
                name = entry.name
                if name == _SELF:
                    # this directory's own value; its sidecar lives one level up
                    if len(rel) > len(names):
                        yield from self._live(rel, entry.path, True, now)
                    continue
                if name[0] == "." or self._ignore.match(name):  # no key maps to a dot-name
                    continue
                if not entry.is_dir(follow_symlinks=False):
                    yield from self._live([*rel, name], entry.path, timed, now)
                elif name.endswith(_MORE):
                    stack.append(([*rel, name], done))
                elif max_depth is None or done < max_depth:
                    stack.append(([*rel, name], done + 1))
                elif os.path.exists(entry.path + "/" + _SELF):
                    yield from self._live([*rel, name], entry.path + "/" + _SELF, True, now)

    def _live(self, rel: list[str], path: str, timed: bool, now: float) -> Iterator[str]:
        """The key at ``rel`` (none for foreign names or an expired value, which is deleted)."""
        key = self._key_of(rel)
        if key is None:
            return
        if timed and (record := self._ttl_record(key)) is not None and record[0] <= now:
            info = self._stat(path)
            if info is not None and (info.st_ino, info.st_mtime_ns) == record[1:]:
                self._drop_expired(key, info)
                return
        yield key

    def _clear(self, base: str) -> list[str]:
        removed = [key for key in self._walk(base, None) if self._remove(key)]
        if base:
            names = self._rel(base[:-1])
            side = self._side + "/" + "/".join(names)
        else:
            side = self._side
        _remove_tree(side, keep=not base)
        return removed

    def _sweep_once(self) -> list[str]:
        removed: list[str] = []
        now = time.time()
        for directory, _, files in os.walk(self._side):
            for name in files:
                if not name.endswith("%t"):
                    continue
                path = f"{directory}/{name}"
                rel = path[len(self._side) + 1 : -2].split("/")
                key = self._key_of(rel)
                try:
                    with open(path, "rb") as handle:
                        expires = float(handle.read().split()[0])
                except (OSError, ValueError, IndexError):
                    continue
                if key is None or expires > now:
                    continue
                info = self._stat(self._path(key))
                if info is None or self._expiry(key, info) is None:
                    self._unlink_quietly(path)
                elif self._expired(key, info):
                    removed.append(key)
        return removed

    # -- the async API ----------------------------------------------------------------------------

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        if self._sweeper is None and self.sweep_interval > 0 and not self.read_only:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())
        try:
            return await self._pool.run(functools.partial(function, *args))
        finally:
            while self._changed:
                event, key = self._changed.popleft()
                self._watchers.emit(event, key)

    async def get_item(self, key: str) -> bytes | None:
        if self.inline_reads:
            found = self._peek(key)
            if found is not _DEFER:
                return found  # type: ignore[return-value]
        return await self._run(self._get, key)

    async def has_item(self, key: str) -> bool:
        if self.inline_reads:
            found = self._peek(key, stat_only=True)
            if found is not _DEFER:
                return found is not None
        return await self._run(self._has, key)

    async def get_items(self, keys: Sequence[str]) -> list[bytes | None]:
        return await self._run(lambda: [self._get(key) for key in keys])

    async def set_item(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        await self._run(self._set, key, value, ttl)

    async def set_items(
        self, items: Sequence[tuple[str, bytes]], *, ttl: float | None = None
    ) -> None:
        await self._run(lambda: [self._set(key, value, ttl) for key, value in items])

    async def set_item_conditional(
        self,
        key: str,
        value: bytes,
        *,
        ttl: float | None = None,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str | None:
        return await self._run(self._set_conditional, key, value, ttl, if_match, if_none_match)

    async def remove_item(self, key: str) -> None:
        await self._run(self._remove, key)

    async def remove_items(self, keys: Sequence[str]) -> None:
        await self._run(lambda: [self._remove(key) for key in keys])

    async def iter_keys(
        self, base: str = "", *, max_depth: int | None = None
    ) -> AsyncIterator[str]:
        walker = self._walk(base, max_depth)
        while page := await self._run(lambda: list(itertools.islice(walker, _PAGE))):
            for key in page:
                yield key

    async def get_keys(self, base: str = "", *, max_depth: int | None = None) -> list[str]:
        return await self._run(lambda: list(self._walk(base, max_depth)))

    async def clear(self, base: str = "") -> None:
        await self._run(self._clear, base)

    async def get_meta(self, key: str) -> dict[str, Any]:
        return await self._run(self._meta, key)

    async def get_user_meta(self, key: str) -> bytes | None:
        found = await self._run(self._read_value, self._sidecar(key, "%m"))
        return None if found is None else found[0]

    async def set_user_meta(self, key: str, data: bytes) -> None:
        await self._run(self._write_sidecar, key, "%m", data)

    async def remove_user_meta(self, key: str) -> None:
        await self._run(self._remove_sidecar, self._sidecar(key, "%m"))

    async def sweep(self) -> list[str]:
        """Delete every expired value now; return their keys."""
        return await self._run(self._sweep_once)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_interval)
            try:
                await self._run(self._sweep_once)
            except Exception:
                logger.exception("fs sweep of %s failed", self.base)

    # -- watching ---------------------------------------------------------------------------------

    def _note(self, event: WatchEvent, key: str, ino: int) -> None:
        """Queue the event of a change made here (sent when the operation returns), and
        remember the state it left so that watchfiles' echo of it is not sent twice."""
        if self._watch_stop is None:
            return
        now = time.monotonic()
        if len(self._own) > 4096:
            for stale in [k for k, (_, at) in list(self._own.items()) if now - at > 10]:
                self._own.pop(stale, None)
        self._own[key] = (ino, now)
        self._changed.append((event, key))

    async def watch(self, callback: WatchCallback) -> Unwatch:
        """Report changes from any process (through watchfiles); events arrive batched."""
        if self._watch_stop is None:
            try:
                from watchfiles._rust_notify import RustNotify  # optional dependency
            except ImportError as exc:
                raise UnsupportedError(
                    "fs watch needs watchfiles (pip install 'unistorage[fs]')"
                ) from exc
            loop = asyncio.get_running_loop()
            stop = self._watch_stop = threading.Event()
            try:
                notify = await loop.run_in_executor(
                    None, RustNotify, [self.base], False, False, 300, True, True
                )
                dirs = await loop.run_in_executor(None, self._directories)
            except BaseException:
                self._watch_stop = None
                raise
            self._watch_thread = threading.Thread(
                target=self._watch_loop, args=(notify, dirs, stop, loop), daemon=True
            )
            self._watch_thread.start()
        remove = self._watchers.add(callback)

        async def unwatch() -> None:
            await remove()
            if not self._watchers:
                await self._stop_watching()

        return unwatch

    def _directories(self) -> set[str]:
        """Every directory under base (so that their later removal is not taken for a key's)."""
        found: set[str] = set()
        for directory, subdirs, _ in os.walk(self.base):
            subdirs[:] = [name for name in subdirs if not self._ignore.match(name)]
            found.add(directory)
        return found

    def _watch_loop(
        self, notify: Any, dirs: set[str], stop: threading.Event, loop: asyncio.AbstractEventLoop
    ) -> None:
        while not stop.is_set():
            try:
                changes = notify.watch(100, 20, 500, stop)
            except Exception:
                logger.exception("watching %s failed", self.base)
                return
            if isinstance(changes, str):
                continue
            events = self._translate(changes, dirs)
            if events and not stop.is_set():
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(self._deliver, events)
        with contextlib.suppress(Exception):
            notify.close()

    def _translate(
        self, changes: set[tuple[int, str]], dirs: set[str]
    ) -> list[tuple[WatchEvent, str]]:
        """Events for the keys a batch of file changes touched, directories left out.

        A batch is a set, so order is lost: a key both written and deleted in it is reported
        in the order that ends in its current state.
        """
        prefix = self.base + os.sep
        parents = {os.path.dirname(path) for _, path in changes}
        seen: dict[str, set[WatchEvent]] = {}
        for change, path in changes:
            if not path.startswith(prefix):
                continue
            names = path[len(prefix) :].split(os.sep)
            if names[-1] == _SELF:
                names.pop()
            elif path in parents or path in dirs or os.path.isdir(path):
                if change == 3:
                    dirs.discard(path)
                elif path not in dirs and os.path.isdir(path):
                    dirs.add(path)
                    # Files can land in a new directory before it is watched: look inside.
                    for found in self._files_in(path):
                        if (key := self._key_of(found)) is not None:
                            seen.setdefault(key, set()).add("update")
                continue
            key = self._key_of(names) if names else None
            if key is not None:
                seen.setdefault(key, set()).add("remove" if change == 3 else "update")
        events: list[tuple[WatchEvent, str]] = []
        for key, kinds in seen.items():
            current = self._stat(self._path(key))
            own = self._own.get(key)
            if own is not None and own[0] == (0 if current is None else current.st_ino):
                continue  # our own change, already reported
            if len(kinds) == 1:
                events.append((kinds.pop(), key))
            elif current is None:
                events += [("update", key), ("remove", key)]
            else:
                events += [("remove", key), ("update", key)]
        return events

    def _files_in(self, directory: str) -> Iterator[list[str]]:
        """The relative names of the value files under ``directory``."""
        start = len(self.base) + 1
        for folder, subdirs, files in os.walk(directory):
            subdirs[:] = [name for name in subdirs if not self._ignore.match(name)]
            rel = folder[start:].split(os.sep)
            for name in files:
                if name == _SELF:
                    yield rel
                elif not self._ignore.match(name):
                    yield [*rel, name]

    def _deliver(self, events: list[tuple[WatchEvent, str]]) -> None:
        for event, key in events:
            self._watchers.emit(event, key)

    async def _stop_watching(self) -> None:
        stop, thread = self._watch_stop, self._watch_thread
        self._watch_stop = self._watch_thread = None
        if stop is not None and thread is not None:
            stop.set()
            await asyncio.get_running_loop().run_in_executor(None, thread.join)

    async def dispose(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        self._watchers.clear()
        await self._stop_watching()
        for thread in self._pool.stop():
            await asyncio.get_running_loop().run_in_executor(None, thread.join)
        self._locks.close()


def _etag(info: os.stat_result) -> str:
    return f"{info.st_ino:x}-{info.st_mtime_ns:x}-{info.st_size:x}"


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_tree(path: str, *, keep: bool) -> None:
    for directory, dirs, files in os.walk(path, topdown=False):
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{directory}/{name}")
        for name in dirs:
            with contextlib.suppress(OSError):
                os.rmdir(f"{directory}/{name}")
    if not keep:
        with contextlib.suppress(OSError):
            os.rmdir(path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
