"""Streams: large values read and written in chunks, never held whole by the core.

`Reader` and `Writer` are what `Storage.open_read` and `Storage.open_write` give. A writer is
atomic: the driver sees the chunks as they are written, but the value becomes visible only when
the ``async with`` block ends without an error; an error (or cancellation) inside the block
throws the partial value away. Memory stays flat: the writer hands the driver at most a few
chunks at a time (backpressure), and drivers that store in parts (fs, s3, sqlite, http) never
join them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType

from .errors import DriverError, InvalidArgumentError, StorageError

__all__ = ["DEFAULT_CHUNK", "Reader", "StreamAbortedError", "Writer"]

#: Bytes per chunk when none is asked for.
DEFAULT_CHUNK = 256 * 1024
_QUEUED_CHUNKS = 4


class StreamAbortedError(StorageError):
    """Raised inside a driver's chunk iterator when the writer's block failed: drop the value."""


class Reader:
    """A value being read: ``await read(n)`` or ``async for chunk in reader``."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""
        self._done = False

    async def _next(self) -> bytes | None:
        if self._done:
            return None
        try:
            return await anext(self._chunks)
        except StopAsyncIteration:
            self._done = True
            return None

    async def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (all that is left for ``n < 0``); ``b""`` at the end."""
        if n < 0:
            parts = [self._buffer]
            while (chunk := await self._next()) is not None:
                parts.append(chunk)
            self._buffer = b""
            return b"".join(parts)
        parts, held = [self._buffer], len(self._buffer)
        while held < n:  # gathered in a list: joined once, not copied chunk after chunk
            chunk = await self._next()
            if chunk is None:
                break
            parts.append(chunk)
            held += len(chunk)
        data = b"".join(parts)
        self._buffer = data[n:]
        return data[:n]

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[bytes]:
        if self._buffer:
            data, self._buffer = self._buffer, b""
            yield data
        while (chunk := await self._next()) is not None:
            if chunk:
                yield chunk

    async def aclose(self) -> None:
        """Stop reading; the driver releases what it holds (a file, a connection)."""
        self._done = True
        closer = getattr(self._chunks, "aclose", None)
        if closer is not None:
            await closer()


class Writer:
    """A value being written: ``await write(data)``; committed when the block ends cleanly.

    ``start`` is called once with the chunk iterator and runs the driver's write; the etag it
    returns is `etag` after the block.
    """

    def __init__(self, start: Callable[[AsyncIterator[bytes]], Awaitable[str | None]]) -> None:
        self._start = start
        self._queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue(_QUEUED_CHUNKS)
        self._task: asyncio.Task[str | None] | None = None
        self._closed = False
        #: The new etag once the block has ended without an error (None where unknown).
        self.etag: str | None = None
        #: Bytes written so far.
        self.size = 0

    async def _chunks(self) -> AsyncIterator[bytes]:
        while True:
            item = await self._queue.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise StreamAbortedError("the writer's block failed; the value is dropped")
            yield item

    def _running(self) -> asyncio.Task[str | None]:
        if self._task is None:
            self._task = asyncio.ensure_future(self._start(self._chunks()))
        return self._task

    async def write(self, data: bytes) -> None:
        """Hand ``data`` to the driver (waiting while it is a few chunks behind)."""
        if self._closed:
            raise InvalidArgumentError("the stream is closed")
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise InvalidArgumentError(f"streams carry bytes, not {type(data).__name__}")
        if not data:
            return
        task = self._running()
        put = asyncio.ensure_future(self._queue.put(bytes(data)))
        done, _ = await asyncio.wait({put, task}, return_when=asyncio.FIRST_COMPLETED)
        if put not in done:  # the driver stopped taking chunks: it failed
            put.cancel()
            await task  # raises the driver's error
            raise DriverError("stream", "write", None, "the driver stopped reading the stream")
        self.size += len(data)

    async def _commit(self) -> None:
        task = self._running()
        await self._queue.put(None)
        self.etag = await task

    async def _abort(self, reason: BaseException) -> None:
        task = self._task
        if task is None:
            return
        if not task.done():
            # The driver takes the chunks queued before the marker, then gets the failure.
            put = asyncio.ensure_future(self._queue.put(reason))
            await asyncio.wait({put, task}, return_when=asyncio.FIRST_COMPLETED)
            put.cancel()
        with contextlib.suppress(BaseException):
            await task

    async def __aenter__(self) -> Writer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._closed = True
        try:
            if exc is None:
                await self._commit()
            else:
                await self._abort(exc)
        except BaseException:
            # Interrupted (cancelled) while handing the driver its last chunk or the failure:
            # stop the driver's write too, so that it never stays waiting for chunks.
            await self._stop()
            raise

    async def _stop(self) -> None:
        task = self._task
        if task is None:
            return
        task.cancel()  # nothing to a task that has ended
        with contextlib.suppress(BaseException):
            await task
