"""`Pinned`: one task on a `Runner`'s loop that runs the steps of one stream, in order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ._sync_runner import Runner
from .errors import StorageError

__all__ = ["Pinned"]

logger = logging.getLogger("storage.sync")

_T = TypeVar("_T")

_Step = tuple[Callable[[], Awaitable[Any]] | None, "asyncio.Future[Any] | None"]


class Pinned:
    """One task on a runner's loop that runs the steps of one stream or iterator, in order.

    An async iterator or context manager is then always resumed in the task that started it,
    as in async code: task-bound scopes and context variables (a tracing span) hold across
    steps. ``cleanup`` runs in that task when the owner is dropped without `close`.
    """

    __slots__ = ("__weakref__", "_finalizer", "_inbox", "_runner", "_task")

    def __init__(
        self,
        runner: Runner,
        operation: str,
        key: str | None = None,
        cleanup: Callable[[], Awaitable[Any]] | None = None,
    ) -> None:
        self._runner = runner
        self._inbox, self._task = runner.call(_start(), operation, key)
        self._finalizer = weakref.finalize(self, _abandon, runner.loop, self._inbox, cleanup)

    def run(
        self,
        step: Callable[[], Awaitable[_T]],
        operation: str,
        key: str | None = None,
        *,
        walking: bool = False,
    ) -> _T:
        """Await ``step()`` in the pinned task; bounded as `Runner.call` is."""
        if not self._finalizer.alive:
            raise StorageError(f"{operation}: the stream is closed")
        return self._runner.call(self._ask(step), operation, key, walking=walking)

    async def _ask(self, step: Callable[[], Awaitable[_T]]) -> _T:
        reply: asyncio.Future[_T] = asyncio.get_running_loop().create_future()
        self._inbox.put_nowait((step, reply))
        try:
            return await reply
        except asyncio.CancelledError:
            self._task.cancel()  # the caller gave up (a timeout, Ctrl-C): the stream ends
            self._finalizer.detach()
            raise

    def close(
        self,
        last: Callable[[], Awaitable[_T]] | None = None,
        operation: str = "close",
        key: str | None = None,
    ) -> _T | None:
        """End the task, after awaiting ``last()`` in it (its result is returned)."""
        if self._finalizer.detach() is None:
            return None
        try:
            if last is not None and not self._runner.closed:
                return self._runner.call(self._ask(last), operation, key, walking=True)
            return None
        finally:
            with contextlib.suppress(RuntimeError):  # a closed loop cancelled the task already
                self._runner.loop.call_soon_threadsafe(self._inbox.put_nowait, (None, None))


async def _start() -> tuple[asyncio.Queue[_Step], asyncio.Task[None]]:
    inbox: asyncio.Queue[_Step] = asyncio.Queue()
    return inbox, asyncio.get_running_loop().create_task(_work(inbox))


async def _work(inbox: asyncio.Queue[_Step]) -> None:
    while True:
        step, reply = await inbox.get()
        if step is None:
            return
        await _run(step, reply)
        del step, reply  # held while waiting, they would keep a dropped owner alive


async def _run(step: Callable[[], Awaitable[Any]], reply: asyncio.Future[Any] | None) -> None:
    try:
        value = await step()
    except Exception as exc:
        if reply is None:
            logger.warning("cleaning up an abandoned sync stream failed", exc_info=exc)
        elif not reply.done():
            reply.set_exception(exc)
    except BaseException:
        if reply is not None and not reply.done():
            reply.cancel()
        raise
    else:
        if reply is not None and not reply.done():
            reply.set_result(value)


def _abandon(
    loop: asyncio.AbstractEventLoop,
    inbox: asyncio.Queue[_Step],
    cleanup: Callable[[], Awaitable[Any]] | None,
) -> None:
    """A pinned task's owner was dropped unclosed: run ``cleanup`` in it, then end it."""
    if loop.is_closed():
        return
    try:
        if cleanup is not None:
            loop.call_soon_threadsafe(inbox.put_nowait, (cleanup, None))
        loop.call_soon_threadsafe(inbox.put_nowait, (None, None))
    except RuntimeError:  # the loop closed meanwhile: its shutdown cancelled the task
        pass
