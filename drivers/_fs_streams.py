"""Large values in an fs store, written and read in chunks, with memory flat both ways.

Writing: a `Spool` is a new file in the store's ``tmp`` directory, as every atomic write
makes. The chunks are appended to it in the worker threads while the next ones arrive (at
most `AHEAD` bytes wait for the write in progress), and when they end the file is renamed
into place under the key's lock, as `set_item` places a value (fsync when durable, the TTL
sidecar, the watch event; without durable, swapped with the value it replaces, see
`drivers._fs_write.commit`). When the chunks fail (the writer's block raised, or the
disk is full), the file is removed and nothing has changed.

Reading: a `ChunkReader` holds the value's open file. A value is replaced by renaming a new
file over it, so the stream reads the version it opened, whole, whatever is written
meanwhile. Each chunk is one positioned read in a worker thread, the next one started as the
last is handed over (one chunk ahead); the file is closed at its end, on `ChunkReader.aclose` (even when no chunk
was read), or when the reader is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

from drivers import _fs_write as write
from drivers._fs_tree import Tree

__all__ = ["AHEAD", "ChunkReader", "Spool"]

#: Runs a blocking call in the store's worker threads (`FsFiles.run`).
Submit = Callable[..., "asyncio.Future[Any]"]
#: Bytes of chunks gathered while the spool writes the ones before.
AHEAD = 512 * 1024
_PREAD: Callable[[int, int, int], bytes] | None = getattr(os, "pread", None)


def _pread(fd: int, size: int, offset: int) -> bytes:
    """Up to ``size`` bytes of ``fd`` from ``offset`` (one reader at a time: see the lock)."""
    if _PREAD is not None:
        return _PREAD(fd, size, offset)
    os.lseek(fd, offset, os.SEEK_SET)  # pragma: no cover - Windows has no pread
    return os.read(fd, size)  # pragma: no cover


def _quiet(future: asyncio.Future[Any]) -> None:
    """Retrieve a background job's outcome, so that an abandoned failure is not logged."""
    if not future.cancelled():
        future.exception()


class Spool:
    """The temporary file a streamed value is written to, until `place` renames it to its key.

    Its calls run in the worker threads, one at a time (a lock orders an `append` still
    running and the `drop` of a cancelled stream); `drop` after `place` does nothing.
    """

    __slots__ = ("_fd", "_lock", "_name", "_settled", "_tree")

    def __init__(self, tree: Tree) -> None:
        self._tree = tree
        self._lock = threading.Lock()
        self._name: str | None = None
        self._fd = -1
        self._settled = False

    async def fill(self, submit: Submit, chunks: AsyncIterator[bytes]) -> None:
        """Append every chunk of ``chunks``, one batch in a worker while the next gathers."""
        batch: list[bytes] = []
        size = 0
        flight: asyncio.Future[Any] | None = None
        async for chunk in chunks:
            if not chunk:
                continue
            batch.append(chunk)
            size += len(chunk)
            if flight is not None:
                if not flight.done() and size < AHEAD:
                    continue
                await flight  # waits while AHEAD bytes are queued; raises a failed append
            flight = submit(self.append, batch)
            flight.add_done_callback(_quiet)
            batch, size = [], 0
        if flight is not None:
            await flight
        if batch:
            await submit(self.append, batch)

    def append(self, chunks: list[bytes]) -> None:
        """Write ``chunks`` at the end of the file (made on the first call)."""
        with self._lock:
            if self._settled:
                raise ValueError("the stream's temporary file was dropped")
            if self._fd < 0:
                self._name, self._fd = write.open_temp(self._tree)
            fd = self._fd
            for chunk in chunks:
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]

    def place(self, key: str, ttl: float | None) -> str:
        """Rename the file (an empty one if nothing came) to ``key``; return its etag."""
        with self._lock:
            if self._settled:
                raise ValueError("the stream's temporary file was dropped")
            if self._fd < 0:
                self._name, self._fd = write.open_temp(self._tree)
            name, fd = self._name, self._fd
            assert name is not None
            self._fd = -1
            try:
                try:
                    info = write.seal_temp(self._tree, fd)
                finally:
                    os.close(fd)
            except BaseException:
                self._discard()
                raise
            self._name = None
            self._settled = True
            tree = self._tree  # placing removes the file on failure
            return write.place_temp(tree, key, name, info, ttl, swap=not tree.durable)

    def drop(self) -> None:
        """Close and remove the file unless it was placed; harmless twice."""
        with self._lock:
            self._discard()

    def _discard(self) -> None:
        self._settled = True
        fd, self._fd = self._fd, -1
        name, self._name = self._name, None
        if fd >= 0:
            os.close(fd)
        if name is not None:
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=self._tree.tmp)


class ChunkReader:
    """The chunks of one open value file, each read in a worker thread; an async iterator.

    A class rather than an async generator so that `aclose` closes the file even when no
    chunk was ever asked for (an unstarted generator's ``finally`` never runs). Chunks are
    ``chunk_size`` bytes, the last one shorter.
    """

    __slots__ = ("_ahead", "_closed", "_fd", "_lock", "_offset", "_size", "_submit")

    def __init__(self, submit: Submit, fd: int, chunk_size: int) -> None:
        self._fd = fd
        self._submit = submit
        self._size = chunk_size
        self._offset = 0
        self._ahead: asyncio.Future[bytes] | None = None
        self._lock = threading.Lock()
        self._closed = False

    def __aiter__(self) -> ChunkReader:
        return self

    async def __anext__(self) -> bytes:
        ahead, self._ahead = self._ahead, None
        if ahead is None:
            if self._closed:
                raise StopAsyncIteration
            ahead = self._start(self._offset)
        try:
            chunk = await ahead
        except BaseException:  # a failed read, or a cancelled caller: the stream ends
            await self.aclose()
            raise
        if len(chunk) < self._size:  # the end of the file
            await self.aclose()
            if not chunk:
                raise StopAsyncIteration
        else:
            self._offset += len(chunk)
            self._ahead = self._start(self._offset)
        return chunk

    def _start(self, offset: int) -> asyncio.Future[bytes]:
        future: asyncio.Future[bytes] = self._submit(self._read, offset)
        future.add_done_callback(_quiet)
        return future

    def _read(self, offset: int) -> bytes:
        """Up to ``chunk_size`` bytes from ``offset`` (short only at the end of the file)."""
        with self._lock:
            if self._fd < 0:
                return b""
            fd, size = self._fd, self._size
            chunk = _pread(fd, size, offset)
            if 0 < len(chunk) < size:  # a short read need not be the end (NFS, FUSE)
                parts = [chunk]
                got = len(chunk)
                while got < size and (more := _pread(fd, size - got, offset + got)):
                    parts.append(more)
                    got += len(more)
                chunk = b"".join(parts)
            return chunk

    async def aclose(self) -> None:
        """Close the file (after a read still running); later calls yield nothing."""
        if self._closed:
            return
        self._closed = True
        self._ahead = None
        try:
            await self._submit(self._close)  # after the read in progress, if any
        except RuntimeError:  # the worker threads are gone: nothing reads any more
            self._close()

    def _close(self) -> None:
        with self._lock:
            fd, self._fd = self._fd, -1
            if fd >= 0:
                os.close(fd)

    def __del__(self) -> None:
        # Dropped unclosed: no read is running (a queued read holds a reference to us).
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)
