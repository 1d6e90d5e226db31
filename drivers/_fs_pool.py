"""The worker threads of an fs store: whole file operations, one queue hop per call."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class Pool:
    """A few threads, started on first use, that run whole file operations.

    Cheaper than ``run_in_executor`` (no concurrent.futures layer): measured in bench_fs.
    `close` stops and joins them; a closed pool refuses new work.
    """

    __slots__ = ("_closed", "_name", "_queue", "_size", "_threads")

    def __init__(self, size: int, name: str = "fs") -> None:
        self._size = size
        self._name = name
        self._queue: queue.SimpleQueue[tuple[Callable[[], Any], asyncio.Future[Any]] | None]
        self._queue = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._closed = False

    @property
    def threads(self) -> list[threading.Thread]:
        """The running threads (none before the first call and after `close`)."""
        return list(self._threads)

    def run(self, function: Callable[[], T]) -> asyncio.Future[T]:
        """Run ``function`` in a worker thread; the future settles on the caller's loop."""
        if not self._threads:
            if self._closed:
                raise RuntimeError("the fs worker threads are closed (the driver was disposed)")
            for number in range(self._size):
                thread = threading.Thread(
                    target=self._serve, name=f"{self._name}-{number}", daemon=True
                )
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
            # An idle thread must not keep the last job's data alive (a stream's chunks).
            del job, function, future, outcome

    async def close(self) -> None:
        """Let queued work finish, stop every thread and wait for them; harmless twice."""
        self._closed = True
        threads, self._threads = self._threads, []
        for _ in threads:
            self._queue.put(None)
        loop = asyncio.get_running_loop()
        for thread in threads:
            await loop.run_in_executor(None, thread.join)


def _settle(future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if future.cancelled():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)
