"""`Workers`: threads for a blocking client, with a bounded wait for a free one.

A driver over a blocking library (boto3 for s3 and dynamodb) owns one `Workers`: it makes
them in its constructor and closes them in ``dispose``. A call waits for a thread while the
backend makes progress, and fails once ``wait`` seconds pass without a call succeeding: a
backend that hangs holds its threads until the library's own timeouts end them (failures,
not progress), and the calls queued behind must fail cleanly instead of waiting for all of
those. A long queue in front of a slow but working backend (a batch of thousands of keys on a
loaded machine) is not a hang: each call that succeeds starts the wait again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from .errors import InvalidArgumentError

__all__ = ["Workers", "WorkersBusyError"]

_T = TypeVar("_T")


class WorkersBusyError(TimeoutError):
    """No thread came free within the wait."""


class Workers:
    """``count`` threads named ``name``; `run` fails after ``wait`` seconds without progress."""

    def __init__(
        self,
        count: int,
        *,
        name: str,
        wait: float = 5.0,
        answered: Callable[[BaseException], bool] | None = None,
    ) -> None:
        """``answered`` tells a failure that is still an answer from the backend (an HTTP
        error response, say), and so progress, from one that is not (a timeout)."""
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise InvalidArgumentError(f"a worker count is an int >= 1, not {count!r}")
        if isinstance(wait, bool) or not (isinstance(wait, (int, float)) and wait > 0):
            raise InvalidArgumentError(f"the wait for a worker is seconds > 0, not {wait!r}")
        self.count = count
        self.wait = float(wait)
        self._pool = ThreadPoolExecutor(count, thread_name_prefix=name)
        self._free: asyncio.Semaphore | None = None  # made on first use, in the caller's loop
        self._progress = float("-inf")  # loop time a call last succeeded (or was answered)
        self._answered = answered

    async def run(self, call: Callable[[], _T]) -> _T:
        """``call()`` on a thread; `WorkersBusyError` once ``wait`` seconds pass in which no
        call succeeded (counted from the later of this call and the last success)."""
        loop = asyncio.get_running_loop()
        free = self._free
        if free is None:
            free = self._free = asyncio.Semaphore(self.count)
        if not free.locked():
            await free.acquire()  # a free thread: no timer
        else:
            await self._acquire(free, loop.time())
        try:
            work = self._pool.submit(call)
        except BaseException:
            free.release()
            raise

        def freed(succeeded: bool) -> None:
            if succeeded:
                self._progress = loop.time()
            free.release()

        def done(finished: Future[_T]) -> None:
            # The thread comes back when its call is done, not when a cancelled caller leaves.
            failure = None if finished.cancelled() else finished.exception()
            succeeded = not finished.cancelled() and (
                failure is None or (self._answered is not None and self._answered(failure))
            )
            with contextlib.suppress(RuntimeError):  # the loop may be closed by then
                loop.call_soon_threadsafe(freed, succeeded)

        work.add_done_callback(done)
        return await asyncio.wrap_future(work)

    async def _acquire(self, free: asyncio.Semaphore, asked: float) -> None:
        loop = asyncio.get_running_loop()
        while True:
            left = max(asked, self._progress) + self.wait - loop.time()
            if left <= 0:
                raise WorkersBusyError(
                    f"no worker came free within {self.wait:g} s (all {self.count} are busy)"
                )
            try:
                await asyncio.wait_for(free.acquire(), left)
                return
            except asyncio.TimeoutError:
                continue  # a thread may have come free meanwhile (to another caller)

    def close(self) -> None:
        """Stop the threads; calls queued and not started are dropped."""
        self._pool.shutdown(wait=False, cancel_futures=True)
