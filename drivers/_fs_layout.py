"""How the fs driver lays keys out on disk, and the low-level pieces it is built from.

Key segments become file names (see ``encode_segment`` and the docstring of drivers.fs); writes
are serialized per key by ``Locks``; whole file operations run on the threads of a ``Pool``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import os
import queue
import threading
import zlib
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import unquote

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

T = TypeVar("T")
INTERNAL = ".unistorage"
SELF = "%"
MORE = "%+"
_LIMIT = 240
_STRIPES = 64
_ALWAYS = frozenset('%<>"|?*')
HAS_LOCKS = fcntl is not None


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
            names.append("".join(chunk) + MORE)
            chunk, size = [], 0
            piece = _escape(char) if char == "." else piece
            width = len(piece.encode())
        chunk.append(piece)
        size += width
    if chunk[-1] in (".", " "):
        chunk[-1] = _escape(chunk[-1])
    names.append("".join(chunk))
    return names


def decode_name(name: str) -> str:
    return unquote(name, errors="strict") if "%" in name else name


class Locks:
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


class Pool:
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


def exchange_paths(first: str, second: str) -> bool:
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


def etag_of(info: os.stat_result) -> str:
    return f"{info.st_ino:x}-{info.st_mtime_ns:x}-{info.st_size:x}"


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_tree(path: str, *, keep: bool) -> None:
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


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
