"""`storage.workers.Workers`: threads for blocking calls, and a bounded wait for one."""

from __future__ import annotations

import asyncio
import functools
import threading
import time

import pytest

from storage import InvalidArgumentError
from storage.workers import Workers, WorkersBusyError


async def test_calls_run_on_the_threads_and_return_their_result() -> None:
    workers = Workers(2, name="test-workers", wait=1)
    try:
        names = await asyncio.gather(
            *(workers.run(lambda: threading.current_thread().name) for _ in range(6))
        )
        assert all(name.startswith("test-workers") for name in names)
    finally:
        workers.close()


async def test_a_call_that_finds_no_free_thread_in_time_fails_instead_of_waiting() -> None:
    workers = Workers(1, name="test-workers", wait=0.2)
    release = threading.Event()
    try:
        busy = asyncio.ensure_future(workers.run(lambda: release.wait(5)))
        await asyncio.sleep(0.05)
        started = time.monotonic()
        with pytest.raises(WorkersBusyError):
            await workers.run(lambda: 1)
        assert time.monotonic() - started < 2
        release.set()
        assert await busy is True
        assert await workers.run(lambda: 2) == 2  # the slot came back
    finally:
        release.set()
        workers.close()


async def test_a_cancelled_caller_does_not_free_a_thread_still_working() -> None:
    workers = Workers(1, name="test-workers", wait=0.2)
    release = threading.Event()
    try:
        waiting = asyncio.ensure_future(workers.run(lambda: release.wait(5)))
        await asyncio.sleep(0.05)
        waiting.cancel()
        with pytest.raises(WorkersBusyError):  # the thread is still busy with that call
            await workers.run(lambda: 1)
        release.set()
        await asyncio.sleep(0.05)
        assert await workers.run(lambda: 3) == 3
    finally:
        release.set()
        workers.close()


@pytest.mark.parametrize(("count", "wait"), [(0, 1), (1, 0), (True, 1), (2, -1)])
def test_bad_counts_and_waits_are_refused(count: int, wait: float) -> None:
    with pytest.raises(InvalidArgumentError):
        Workers(count, name="x", wait=wait)


async def test_a_queue_longer_than_the_wait_is_served_while_the_threads_make_progress() -> None:
    # 40 calls of 0.05 s on 2 threads take about 1 s, five times the wait: the last ones
    # queue for longer than it, but threads keep coming free, so none fails (an s3 batch of
    # thousands of keys on a loaded machine failed this way).
    workers = Workers(2, name="test-workers", wait=0.2)

    def slow(n: int) -> int:
        time.sleep(0.05)
        return n

    try:
        results = await asyncio.gather(
            *(workers.run(functools.partial(slow, n)) for n in range(40))
        )
        assert results == list(range(40))
    finally:
        workers.close()


@pytest.mark.parametrize("answered", [False, True])
async def test_calls_failing_without_an_answer_are_no_progress(answered: bool) -> None:
    # A hung endpoint frees its threads only as their timeouts fire: the calls queued behind
    # must still fail within the wait, unless the failures are the backend's own answers.
    workers = Workers(
        1, name="test-workers", wait=0.25, answered=lambda exc: isinstance(exc, KeyError)
    )

    def fails() -> None:
        time.sleep(0.1)
        raise KeyError("answered") if answered else TimeoutError("no answer")

    try:
        results = await asyncio.gather(
            *(workers.run(fails) for _ in range(8)), return_exceptions=True
        )
        busy = [result for result in results if isinstance(result, WorkersBusyError)]
        assert (len(busy) == 0) if answered else (len(busy) >= 4)
    finally:
        workers.close()
