"""`Workers`: threads for a blocking client, with a bounded wait for a free one.

A driver over a blocking library (boto3 for s3 and dynamodb) owns one `Workers`: it makes
them in its constructor and closes them in ``dispose``. A call waits at most ``wait`` seconds
for a thread: a backend that hangs holds its threads until the library's own timeouts end
them, and the calls queued behind must fail cleanly instead of waiting for all of those.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from .errors import InvalidArgumentError

__all__ = ["Workers", "WorkersBusyError"]

_T = TypeVar("_T")


class WorkersBusyError(TimeoutError):
    """No thread came free within the wait."""


class Workers:
    """``count`` threads named ``name``; `run` waits at most ``wait`` seconds for one."""

    def __init__(self, count: int, *, name: str, wait: float = 5.0) -> None:
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise InvalidArgumentError(f"a worker count is an int >= 1, not {count!r}")
        if isinstance(wait, bool) or not (isinstance(wait, (int, float)) and wait > 0):
            raise InvalidArgumentError(f"the wait for a worker is seconds > 0, not {wait!r}")
        self.count = count
        self.wait = float(wait)
        self._pool = ThreadPoolExecutor(count, thread_name_prefix=name)
        self._free: asyncio.Semaphore | None = None  # made on first use, in the caller's loop

    async def run(self, call: Callable[[], _T]) -> _T:
        """``call()`` on a thread; `WorkersBusyError` when none is free within the wait."""
        loop = asyncio.get_running_loop()
        free = self._free
        if free is None:
            free = self._free = asyncio.Semaphore(self.count)
        try:
            await asyncio.wait_for(free.acquire(), self.wait)
        except asyncio.TimeoutError:
            raise WorkersBusyError(
                f"no worker came free within {self.wait:g} s (all {self.count} are busy)"
            ) from None
        try:
            work = self._pool.submit(call)
        except BaseException:
            free.release()
            raise

        def done(_: object) -> None:
            # The thread comes back when its call is done, not when a cancelled caller leaves.
            with contextlib.suppress(RuntimeError):  # the loop may be closed by then
                loop.call_soon_threadsafe(free.release)

        work.add_done_callback(done)
        return await asyncio.wrap_future(work)

    def close(self) -> None:
        """Stop the threads; calls queued and not started are dropped."""
        self._pool.shutdown(wait=False, cancel_futures=True)
