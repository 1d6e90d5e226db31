"""`Runner`: the event loop a sync storage runs on, on one daemon thread that it owns.

Every call from any thread is submitted with ``asyncio.run_coroutine_threadsafe`` and waited
on with a bound, so drivers that bind to a loop (httpx pools, redis-py connections, asyncio
locks) always see the same one. Forgotten runners are closed at interpreter exit; a runner
inherited through ``os.fork`` refuses every call (its thread did not survive the fork).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import math
import os
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, NoReturn, TypeVar

from .errors import DriverError, InvalidArgumentError, StorageError

__all__ = [
    "MARGIN",
    "Runner",
    "awaited",
    "check_timeout",
    "on_loop",
    "refuse_running_loop",
]

logger = logging.getLogger("storage.sync")

_T = TypeVar("_T")

#: Seconds a call waits beyond the storage's deadline before it gives up.
MARGIN = 5.0

_live: set[Runner] = set()
_live_lock = threading.Lock()


def check_timeout(timeout: float) -> float | None:
    """``timeout`` as `Runner` takes it: seconds > 0, or None for ``math.inf`` (no bound)."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise InvalidArgumentError(f"timeout is seconds > 0 (math.inf: no bound), not {timeout!r}")
    return None if math.isinf(timeout) else float(timeout)


def _in_running_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def refuse_running_loop(allowed: bool) -> None:
    """Raise the error a sync call inside a running event loop gets, unless ``allowed``."""
    if not allowed and _in_running_loop():
        raise StorageError(
            "the sync storage API was called inside a running event loop, which it would "
            "block (and deadlock, if a backend is served by that loop): in async code use "
            "the async API (storage.create_storage, then `await storage.get_item(...)`); "
            "pass allow_running_loop=True where blocking that loop is fine (a notebook cell)"
        )


class Runner:
    """One event loop on one daemon thread; `call` is the one way in, `close` the way out.

    ``timeout``: seconds a call waits for its answer (None: no bound). ``allow_running_loop``:
    accept calls from a thread that runs another event loop (they block it while they wait).
    """

    __slots__ = (
        "__weakref__",
        "_closed",
        "_forked",
        "_ident",
        "_lock",
        "_pending",
        "_thread",
        "allow_running_loop",
        "loop",
        "on_close",
        "timeout",
    )

    def __init__(self, *, timeout: float | None, allow_running_loop: bool = False) -> None:
        self.timeout = timeout
        self.allow_running_loop = allow_running_loop
        #: What `close` awaits on the loop before stopping it (the storage's ``dispose``).
        self.on_close: Callable[[], Awaitable[None]] | None = None
        self.loop = asyncio.new_event_loop()
        self._closed = False
        self._forked = False
        self._lock = threading.Lock()
        self._pending: set[concurrent.futures.Future[Any]] = set()
        started = threading.Event()
        self._thread = threading.Thread(
            target=_serve, args=(self.loop, started), name="unistorage-sync", daemon=True
        )
        self._thread.start()
        started.wait()
        self._ident = self._thread.ident
        with _live_lock:
            _live.add(self)

    @property
    def closed(self) -> bool:
        """True once `close` has begun (or the process forked): every call is refused."""
        return self._closed

    def check(self, operation: str) -> None:
        """Raise the error ``operation`` gets now, if any: closed, forked, or a deadlock."""
        if (
            self._closed
            or threading.get_ident() == self._ident
            or (not self.allow_running_loop and _in_running_loop())
        ):
            self._refuse(operation)

    def _refuse(self, operation: str) -> NoReturn:
        if self._forked:
            raise StorageError(
                f"{operation}: this sync storage was made before os.fork(), and its event "
                "loop thread stayed in the parent: make one in each process (under gunicorn, "
                "in the worker, not at import with --preload)"
            )
        if self._closed:
            raise StorageError(f"{operation}: the sync storage is closed")
        if threading.get_ident() == self._ident:
            raise StorageError(
                f"{operation} was called on the sync storage's own event-loop thread (in a "
                "watch callback?), where it would wait for itself forever: hand the work to "
                "another thread"
            )
        refuse_running_loop(self.allow_running_loop)
        raise StorageError(f"{operation}: the sync storage's event loop has stopped")

    def call(
        self,
        coro: Coroutine[Any, Any, _T],
        operation: str,
        key: str | None = None,
        *,
        walking: bool = False,
        extra: float = 0.0,
    ) -> _T:
        """Run ``coro`` on the loop and return its result, or raise what it raised.

        A call waits at most ``timeout`` (+ ``extra``) seconds, then is cancelled with a
        `DriverError`. A ``walking`` call (one that may make any number of bounded driver
        calls: a batch, a listing) waits as long as the loop keeps answering within
        ``timeout``.
        """
        if (
            self._closed
            or threading.get_ident() == self._ident
            or (not self.allow_running_loop and _in_running_loop())
        ):
            coro.close()
            self._refuse(operation)
        return self._wait(coro, operation, key, walking, extra)

    def _wait(
        self,
        coro: Coroutine[Any, Any, _T],
        operation: str,
        key: str | None,
        walking: bool,
        extra: float,
    ) -> _T:
        try:
            future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        except RuntimeError:  # the loop closed since the caller's check
            coro.close()
            self._refuse(operation)
        self._pending.add(future)
        limit = None if self.timeout is None else self.timeout + extra
        try:
            while True:
                try:
                    error = future.exception(limit)
                    break
                except concurrent.futures.TimeoutError as exc:
                    if future.done():
                        continue
                    if not walking:
                        message = f"no answer within {limit:g} s"
                        raise DriverError("sync", operation, key, message) from exc
                    if not self._answers():
                        message = f"the event loop thread was blocked for over {limit:g} s"
                        raise DriverError("sync", operation, key, message) from exc
            if error is None:
                return future.result()
            try:  # raised here, the traceback reads: the caller, this call, the loop's frames
                raise error
            finally:
                del error  # no cycle through this frame
        except concurrent.futures.CancelledError:
            if self._closed:
                raise StorageError(f"{operation}: the sync storage was closed meanwhile") from None
            raise
        except BaseException:
            future.cancel()  # a timeout or Ctrl-C: the call stops on the loop too
            raise
        finally:
            self._pending.discard(future)

    def _answers(self) -> bool:
        """True when the loop runs a no-op within ``timeout``: it is not blocked."""
        probe = asyncio.run_coroutine_threadsafe(_nothing(), self.loop)
        try:
            probe.result(self.timeout)
        except concurrent.futures.TimeoutError:
            probe.cancel()
            return False
        return True

    def close(self) -> None:
        """Await `on_close` on the loop, stop it and end the thread; later calls are refused.

        Idempotent and safe from any thread but the loop's own. Calls still waiting get a
        `StorageError`. An error of `on_close` is raised once the thread has ended.
        """
        with self._lock:
            if self._closed:
                return
            if threading.get_ident() == self._ident:
                self._refuse("close")
            self._closed = True
        with _live_lock:
            _live.discard(self)
        if self._forked:
            return
        try:
            if self.on_close is not None:  # bounded: a close that hangs must still end
                self._wait(awaited(self.on_close), "close", None, False, 0.0)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(self.timeout)
            for future in list(self._pending):
                future.cancel()

    def forget_after_fork(self) -> None:
        """In a forked child: refuse every call; the loop thread is the parent's."""
        self._forked = self._closed = True
        self._lock = threading.Lock()


def _serve(loop: asyncio.AbstractEventLoop, started: threading.Event) -> None:
    """The loop thread: run until stopped, then cancel what is left and close the loop."""
    asyncio.set_event_loop(loop)
    loop.call_soon(started.set)
    try:
        loop.run_forever()
        for _ in range(3):  # lock renewals, watchers, abandoned streams (and what they spawn)
            if not (tasks := asyncio.all_tasks(loop)):
                break
            for task in tasks:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        loop.close()


async def _nothing() -> None:
    pass


async def awaited(function: Callable[..., Awaitable[_T]], *args: Any) -> _T:
    """Await ``function(*args)``, called on the loop thread (it may bind to the running loop)."""
    return await function(*args)


async def on_loop(function: Callable[..., _T], *args: Any) -> _T:
    """Call ``function(*args)`` on the loop thread (it may bind to the running loop)."""
    return function(*args)


def _close_forgotten() -> None:
    """At interpreter exit: close every runner still open (its storage disposed first)."""
    with _live_lock:
        forgotten = list(_live)
    for runner in forgotten:
        try:
            runner.close()
        except Exception:
            logger.exception("closing a forgotten sync storage at exit failed")


def _after_fork_in_child() -> None:
    global _live_lock
    _live_lock = threading.Lock()  # another parent thread may have held it at the fork
    inherited = list(_live)
    _live.clear()
    for runner in inherited:
        runner.forget_after_fork()


atexit.register(_close_forgotten)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
