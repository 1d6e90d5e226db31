"""Sync iterators and streams over a `Runner`: listings page by page, values chunk by chunk.

Each one holds a `Pinned` task on the runner's loop, so the async iterator or stream under it
is always resumed in the task that opened it. A listing is fetched a page at a time (one
round trip per page, not per key), so memory stays flat however many keys there are.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Generic, TypeVar

from ._sync_pinned import Pinned
from ._sync_runner import Runner
from .errors import StorageError
from .streams import Reader, Writer

__all__ = ["PageIterator", "SyncReader", "SyncWriter"]

_T = TypeVar("_T")


class PageIterator(Generic[_T]):
    """A sync iterator over an async one, fetching up to ``page`` items per round trip.

    ``for key in storage.iter_keys("users"):`` streams; `close` (or leaving a ``with`` block)
    stops the listing early; an iterator dropped unfinished is closed when collected.
    """

    __slots__ = ("_buffer", "_ended", "_name", "_page", "_pinned", "_runner", "_source")

    def __init__(
        self, runner: Runner, source: AsyncIterator[_T], *, page: int, operation: str
    ) -> None:
        self._runner = runner
        self._source = source
        self._page = page
        self._name = operation
        self._buffer: deque[_T] = deque()
        self._ended = False
        self._pinned: Pinned | None = None  # started by the first page

    def __iter__(self) -> PageIterator[_T]:
        return self

    def __next__(self) -> _T:
        if not self._buffer:
            if self._ended:
                raise StopIteration
            if self._pinned is None:
                closer = getattr(self._source, "aclose", None)
                self._pinned = Pinned(self._runner, self._name, cleanup=closer)
            try:
                items, self._ended = self._pinned.run(self._take, self._name, walking=True)
            except BaseException:
                self._ended = True
                self._pinned.close()
                raise
            self._buffer.extend(items)
            if self._ended:
                self._pinned.close()
            if not self._buffer:
                raise StopIteration
        return self._buffer.popleft()

    async def _take(self) -> tuple[list[_T], bool]:
        items: list[_T] = []
        source, page = self._source, self._page
        try:
            while len(items) < page:
                items.append(await anext(source))
        except StopAsyncIteration:
            return items, True
        return items, False

    def close(self) -> None:
        """Stop the listing; the driver lets go of what it holds (a cursor, a connection)."""
        self._ended = True
        self._buffer.clear()
        if self._pinned is not None:
            self._pinned.close(getattr(self._source, "aclose", None), self._name)

    def __enter__(self) -> PageIterator[_T]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class SyncReader:
    """``with storage.open_read(key) as reader:``: ``reader.read(n)`` or ``for chunk in
    reader``; `NotFoundError` on entering when the key holds nothing."""

    __slots__ = ("_chunks", "_key", "_open", "_opened", "_pinned", "_reader", "_runner")

    def __init__(
        self, runner: Runner, key: str, opener: Callable[[], AbstractAsyncContextManager[Reader]]
    ) -> None:
        self._runner = runner
        self._key = key
        self._open = opener
        self._opened: AbstractAsyncContextManager[Reader] | None = None
        self._reader: Reader | None = None
        self._chunks: AsyncIterator[bytes] | None = None
        self._pinned: Pinned | None = None

    def __enter__(self) -> SyncReader:
        if self._pinned is not None:
            raise StorageError("a reader is entered once")
        self._pinned = Pinned(self._runner, "open_read", self._key)
        try:
            self._reader = self._pinned.run(self._enter, "open_read", self._key)
        except BaseException:
            self._pinned.close()
            raise
        return self

    async def _enter(self) -> Reader:
        self._opened = self._open()
        return await self._opened.__aenter__()

    def _step(self, step: Callable[[], Awaitable[_T]]) -> _T:
        if self._pinned is None:
            raise StorageError("read inside `with storage.open_read(key) as reader:`")
        return self._pinned.run(step, "open_read", self._key, walking=True)

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (all that is left for ``n < 0``); ``b""`` at the end."""
        reader = self._reader
        if reader is None:
            raise StorageError("read inside `with storage.open_read(key) as reader:`")
        return self._step(lambda: reader.read(n))

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self._step(self._next_chunk):
            yield chunk

    async def _next_chunk(self) -> bytes:
        if self._chunks is None:
            assert self._reader is not None
            self._chunks = aiter(self._reader)
        try:
            return await anext(self._chunks)
        except StopAsyncIteration:
            return b""

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        pinned, opened = self._pinned, self._opened
        self._reader = None
        if pinned is None or opened is None:
            return

        async def leave() -> None:
            await opened.__aexit__(exc_type, exc, traceback)

        pinned.close(leave, "open_read", self._key)


class SyncWriter:
    """``with storage.open_write(key) as writer: writer.write(data)``: the value replaces the
    old one when the block ends without an error (then `etag` is its etag), else it is
    dropped."""

    __slots__ = ("_key", "_pinned", "_writer")

    def __init__(self, runner: Runner, key: str, make: Callable[[], Writer]) -> None:
        self._key = key
        self._pinned = Pinned(runner, "open_write", key)

        async def made() -> Writer:
            return make()

        try:
            self._writer = self._pinned.run(made, "open_write", key)
        except BaseException:
            self._pinned.close()
            raise

    @property
    def etag(self) -> str | None:
        """The new value's etag once the block has ended cleanly (None where unknown)."""
        return self._writer.etag

    @property
    def size(self) -> int:
        """Bytes written so far."""
        return self._writer.size

    def __enter__(self) -> SyncWriter:
        self._pinned.run(self._writer.__aenter__, "open_write", self._key)
        return self

    def write(self, data: bytes) -> None:
        """Hand ``data`` to the driver (waiting while it is a few chunks behind)."""
        writer = self._writer
        self._pinned.run(lambda: writer.write(data), "write", self._key)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        writer = self._writer

        async def leave() -> None:
            await writer.__aexit__(exc_type, exc, traceback)

        self._pinned.close(leave, "open_write", self._key)
