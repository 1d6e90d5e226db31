"""`Retry`: idempotent calls tried again after a transient backend failure.

What is retried: reads (``get_item``, ``get_items``, ``has_item``, ``get_item_with_etag``),
listing (``get_keys``; ``iter_keys`` until its first key), meta reads and writes, the
unconditional writes ``set_item`` / ``set_items``, and ``remove_item`` / ``remove_items`` /
``clear``: each leaves the same state however often it runs. Never retried:
``set_item_conditional`` (a failure, a timeout above all, does not say whether the write was
applied, and a second attempt could then overwrite a newer version or fail a create that in
fact succeeded), ``watch`` and ``dispose``.

What counts as transient: any exception from the inner driver that is not a
`storage.StorageError` (a backend's connection error, a socket timeout, an ``OSError``), and a
`storage.DriverError` raised by a layer below (a `Timeout`, say). Never a refusal that
another attempt would repeat: `ConflictError`, `InvalidArgumentError`, `ReadOnlyError`,
`UnsupportedError`, `SerializationError`. Cancellation is never retried.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

from ..driver import Driver
from ..errors import DriverError, InvalidArgumentError, StorageError
from ..layer import Layer

__all__ = ["Retry", "is_retryable"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")


def is_retryable(exc: BaseException) -> bool:
    """True for a failure another attempt may not repeat (see the module docstring)."""
    if not isinstance(exc, Exception):
        return False
    return isinstance(exc, DriverError) or not isinstance(exc, StorageError)


class Retry(Layer):
    """Idempotent calls to ``inner`` retried on transient failures, within a time budget.

    Before attempt ``n + 1`` the layer sleeps a random time between 0 and
    ``min(max_backoff, backoff * 2 ** (n - 1))`` (exponential backoff, full jitter). It gives
    up, re-raising the last failure unchanged, after ``attempts`` attempts or when the next
    sleep would end past ``budget`` seconds after the first attempt started. The budget does
    not cut an attempt short: stack a `Timeout` below for that (``Retry(Timeout(driver))``).

    ``attempts``: attempts in all, the first included (>= 1). ``backoff``: seconds, the
    largest first sleep. ``max_backoff``: seconds, the cap on any sleep. ``budget``: seconds,
    the total time after which no new attempt starts.
    """

    layer_name = "retry"

    def __init__(
        self,
        inner: Driver,
        *,
        attempts: int = 3,
        backoff: float = 0.05,
        max_backoff: float = 1.0,
        budget: float = 5.0,
    ) -> None:
        super().__init__(inner)
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise InvalidArgumentError(f"attempts is a whole number >= 1, not {attempts!r}")
        for name, seconds in (("backoff", backoff), ("max_backoff", max_backoff)):
            if not math.isfinite(seconds) or seconds < 0:
                raise InvalidArgumentError(f"{name} is seconds >= 0, not {seconds!r}")
        if not budget > 0:
            raise InvalidArgumentError(f"budget is seconds > 0, not {budget!r}")
        self.attempts = attempts
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.budget = float(budget)

    async def _again(
        self, operation: str, started: float, error: Exception, call: Callable[[], Awaitable[_T]]
    ) -> _T:
        """Attempts 2.. of ``call`` after the first failed with ``error`` (already retryable)."""
        for attempt in range(1, self.attempts):
            delay = random.uniform(0, min(self.max_backoff, self.backoff * 2 ** (attempt - 1)))
            if time.monotonic() - started + delay > self.budget:
                break
            logger.debug(
                "%s: %s failed (%s), attempt %d in %.3f s",
                self.name,
                operation,
                type(error).__name__,
                attempt + 1,
                delay,
            )
            await asyncio.sleep(delay)
            try:
                return await call()
            except Exception as exc:
                if not is_retryable(exc):
                    raise
                error = exc
        raise error

    # -- items --------------------------------------------------------------------------------

    async def get_item(self, key: str) -> bytes | None:
        started = time.monotonic()
        try:
            return await self.inner.get_item(key)
        except Exception as exc:
            if not is_retryable(exc):
                raise
            return await self._again("get_item", started, exc, lambda: self.inner.get_item(key))

    async def set_item(self, key: str, value: bytes, *, ttl: float | None = None) -> str | None:
        started = time.monotonic()
        try:
            return await self.inner.set_item(key, value, ttl=ttl)
        except Exception as exc:
            if not is_retryable(exc):
                raise
            return await self._again(
                "set_item", started, exc, lambda: self.inner.set_item(key, value, ttl=ttl)
            )

    async def _idempotent(self, name: str, call: Callable[[], Awaitable[_T]]) -> _T:
        started = time.monotonic()
        try:
            return await call()
        except Exception as exc:
            if not is_retryable(exc):
                raise
            return await self._again(name, started, exc, call)

    # `increment`, `remove_item_conditional` and `write_chunks` are never retried (the base
    # forwards them once): a repeat could count twice, remove a newer version, or find its
    # stream already consumed.

    async def touch(self, key: str, ttl: float) -> bool:
        return await self._idempotent("touch", lambda: self.inner.touch(key, ttl))

    async def get_item_touch(self, key: str, ttl: float) -> bytes | None:
        return await self._idempotent("get_item_touch", lambda: self.inner.get_item_touch(key, ttl))

    async def list_page(
        self,
        base: str = "",
        *,
        limit: int,
        cursor: str | None = None,
        max_depth: int | None = None,
    ) -> tuple[list[str], str | None]:
        return await self._idempotent(
            "list_page",
            lambda: self.inner.list_page(base, limit=limit, cursor=cursor, max_depth=max_depth),
        )

    async def get_url(self, key: str, *, expires: float, method: str = "GET") -> str:
        return await self._idempotent(
            "get_url", lambda: self.inner.get_url(key, expires=expires, method=method)
        )

    async def remove_item(self, key: str) -> None:
        started = time.monotonic()
        try:
            await self.inner.remove_item(key)
        except Exception as exc:
            if not is_retryable(exc):
                raise
            await self._again("remove_item", started, exc, lambda: self.inner.remove_item(key))

    async def has_item(self, key: str) -> bool:
        started = time.monotonic()
        try:
            return await self.inner.has_item(key)
        except Exception as exc:
            if not is_retryable(exc):
                raise
            return await self._again("has_item", started, exc, lambda: self.inner.has_item(key))

    async def get_item_with_etag(self, key: str) -> tuple[bytes | None, str | None]:
        started = time.monotonic()
        try:
            return await self.inner.get_item_with_etag(key)
        except Exception as exc:
            if not is_retryable(exc):
                raise
            return await self._again(
                "get_item_with_etag", started, exc, lambda: self.inner.get_item_with_etag(key)
            )

    # set_item_conditional is the base's: one attempt, never repeated (see the module docstring).

    # -- batches ------------------------------------------------------------------------------

    async def get_items(self, keys: Sequence[str]) -> list[bytes | None]:
        started = time.monotonic()
        try:
            return await self.inner.get_items(keys)
        except Exception as exc:
            if not is_retryable(exc):
                raise
            return await self._again("get_items", started, exc, lambda: self.inner.get_items(keys))

    async def set_items(
        self, items: Sequence[tuple[str, bytes]], *, ttl: float | None = None
    ) -> None:
        started = time.monotonic()
        try:
            await self.inner.set_items(items, ttl=ttl)
        except Exception as exc:
            if not is_retryable(exc):
                raise
            await self._again(
                "set_items", started, exc, lambda: self.inner.set_items(items, ttl=ttl)
            )

    async def remove_items(self, keys: Sequence[str]) -> None:
        started = time.monotonic()
        try:
            await self.inner.remove_items(keys)
        except Exception as exc:
            if not is_retryable(exc):
                raise
            await self._again("remove_items", started, exc, lambda: self.inner.remove_items(keys))

    # -- listing ------------------------------------------------------------------------------

    def iter_keys(self, base: str = "", *, max_depth: int | None = None) -> AsyncIterator[str]:
        return self._iter_keys(base, max_depth)

    async def _iter_keys(self, base: str, max_depth: int | None) -> AsyncIterator[str]:
        # Retried only until the first key is out: after that a fresh listing would repeat
        # keys the caller already has, so a later failure reaches the caller.
        async def first() -> tuple[AsyncIterator[str], str | None]:
            iterator = self.inner.iter_keys(base, max_depth=max_depth)
            try:
                return iterator, await anext(iterator)
            except StopAsyncIteration:
                return iterator, None

        started = time.monotonic()
        try:
            iterator, key = await first()
        except Exception as exc:
            if not is_retryable(exc):
                raise
            iterator, key = await self._again("iter_keys", started, exc, first)
        if key is None:
            return
        yield key
        async for key in iterator:
            yield key

    async def get_keys(self, base: str = "", *, max_depth: int | None = None) -> list[str]:
        started = time.monotonic()
        try:
            return await self.inner.get_keys(base, max_depth=max_depth)
        except Exception as exc:
            if not is_retryable(exc):
                raise
            return await self._again(
                "get_keys", started, exc, lambda: self.inner.get_keys(base, max_depth=max_depth)
            )

    async def clear(self, base: str = "") -> None:
        started = time.monotonic()
        try:
            await self.inner.clear(base)
        except Exception as exc:
            if not is_retryable(exc):
                raise
            await self._again("clear", started, exc, lambda: self.inner.clear(base))

    # -- meta ---------------------------------------------------------------------------------

    async def get_meta(self, key: str) -> dict[str, Any]:
        started = time.monotonic()
        try:
            return await self.inner.get_meta(key)
        except Exception as exc:
            if not is_retryable(exc):
                raise
            return await self._again("get_meta", started, exc, lambda: self.inner.get_meta(key))

    async def get_user_meta(self, key: str) -> bytes | None:
        started = time.monotonic()
        try:
            return await self.inner.get_user_meta(key)
        except Exception as exc:
            if not is_retryable(exc):
                raise
            return await self._again(
                "get_user_meta", started, exc, lambda: self.inner.get_user_meta(key)
            )

    async def get_user_metas(self, keys: Sequence[str]) -> list[bytes | None]:
        started = time.monotonic()
        try:
            return await self.inner.get_user_metas(keys)
        except Exception as exc:
            if not is_retryable(exc):
                raise
            return await self._again(
                "get_user_metas", started, exc, lambda: self.inner.get_user_metas(keys)
            )

    async def set_user_meta(self, key: str, data: bytes) -> None:
        started = time.monotonic()
        try:
            await self.inner.set_user_meta(key, data)
        except Exception as exc:
            if not is_retryable(exc):
                raise
            await self._again(
                "set_user_meta", started, exc, lambda: self.inner.set_user_meta(key, data)
            )

    async def remove_user_meta(self, key: str) -> None:
        started = time.monotonic()
        try:
            await self.inner.remove_user_meta(key)
        except Exception as exc:
            if not is_retryable(exc):
                raise
            await self._again(
                "remove_user_meta", started, exc, lambda: self.inner.remove_user_meta(key)
            )
