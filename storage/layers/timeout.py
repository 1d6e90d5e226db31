"""`Timeout`: a deadline on every driver operation, so that no call can hang.

The deadline cancels the inner call inside the caller's own task (``asyncio.timeout``; on
Python 3.10, ``asyncio.wait_for``, which waits for the cancelled call to finish), so nothing
is left running after the error. ``iter_keys`` gets a deadline per key: each step of the
inner iterator (which fetches a page when its buffer runs dry) must finish in time, while the
whole listing may take as long as it needs. The in-process fast calls (``get_item_nowait``,
``set_item_nowait``) never block and pass through without a deadline.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import sys
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import Any, TypeVar

from ..driver import Driver, Unwatch, WatchCallback
from ..errors import DriverError, InvalidArgumentError
from ..layer import Layer

__all__ = ["Timeout"]

_T = TypeVar("_T")


class Timeout(Layer):
    """Every call to ``inner`` must finish within ``seconds``, or it is cancelled.

    On expiry the call raises `storage.DriverError` naming this layer, the operation and the
    key (mount-relative; the base for listing and clearing, the first key of a batch),
    chained from the `TimeoutError`. A timeout of an exception the inner driver raised itself
    (a socket timeout) passes through unchanged. A write that timed out may or may not have
    been applied, a conditional one included: read before deciding.

    ``seconds``: the deadline of each operation (> 0).
    """

    layer_name = "timeout"

    def __init__(self, inner: Driver, *, seconds: float = 5.0) -> None:
        super().__init__(inner, capabilities=dataclasses.replace(inner.capabilities, bounded=True))
        if not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds > 0):
            raise InvalidArgumentError(f"seconds is a deadline > 0, not {seconds!r}")
        self.seconds = float(seconds)

    if sys.version_info >= (3, 11):

        async def _run(self, operation: str, key: str | None, call: Awaitable[_T]) -> _T:
            try:
                async with asyncio.timeout(self.seconds) as deadline:
                    return await call
            except TimeoutError as exc:
                if deadline.expired():
                    raise self._expired(operation, key) from exc
                raise

    else:  # pragma: no cover - Python 3.10: asyncio.TimeoutError is wait_for's own

        async def _run(self, operation: str, key: str | None, call: Awaitable[_T]) -> _T:
            try:
                return await asyncio.wait_for(call, self.seconds)
            except asyncio.TimeoutError as exc:
                raise self._expired(operation, key) from exc

    def _expired(self, operation: str, key: str | None) -> DriverError:
        return DriverError(self.name, operation, key, f"timed out after {self.seconds:g}s")

    # -- items --------------------------------------------------------------------------------

    async def get_item(self, key: str) -> bytes | None:
        return await self._run("get_item", key, self.inner.get_item(key))

    async def set_item(self, key: str, value: bytes, *, ttl: float | None = None) -> str | None:
        return await self._run("set_item", key, self.inner.set_item(key, value, ttl=ttl))

    async def remove_item_conditional(self, key: str, *, if_match: str) -> None:
        call = self.inner.remove_item_conditional(key, if_match=if_match)
        await self._run("remove_item_conditional", key, call)

    async def increment(self, key: str, by: int, *, ttl: float | None = None) -> int:
        return await self._run("increment", key, self.inner.increment(key, by, ttl=ttl))

    async def touch(self, key: str, ttl: float) -> bool:
        return await self._run("touch", key, self.inner.touch(key, ttl))

    async def get_item_touch(self, key: str, ttl: float) -> bytes | None:
        return await self._run("get_item_touch", key, self.inner.get_item_touch(key, ttl))

    async def list_page(
        self,
        base: str = "",
        *,
        limit: int,
        cursor: str | None = None,
        max_depth: int | None = None,
    ) -> tuple[list[str], str | None]:
        call = self.inner.list_page(base, limit=limit, cursor=cursor, max_depth=max_depth)
        return await self._run("list_page", base or None, call)

    async def read_chunks(self, key: str, chunk_size: int) -> AsyncIterator[bytes] | None:
        """The stream is opened within the deadline, and each chunk then arrives within it."""
        chunks = await self._run("read_chunks", key, self.inner.read_chunks(key, chunk_size))
        if chunks is None:
            return None
        return self._each_in_time(key, chunks)

    async def _each_in_time(self, key: str, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        while True:
            try:
                chunk = await self._run("read_chunks", key, anext(chunks))
            except StopAsyncIteration:
                return
            yield chunk

    async def get_url(self, key: str, *, expires: float, method: str = "GET") -> str:
        call = self.inner.get_url(key, expires=expires, method=method)
        return await self._run("get_url", key, call)

    async def remove_item(self, key: str) -> None:
        await self._run("remove_item", key, self.inner.remove_item(key))

    async def has_item(self, key: str) -> bool:
        return await self._run("has_item", key, self.inner.has_item(key))

    async def get_item_with_etag(self, key: str) -> tuple[bytes | None, str | None]:
        return await self._run("get_item_with_etag", key, self.inner.get_item_with_etag(key))

    async def set_item_conditional(
        self,
        key: str,
        value: bytes,
        *,
        ttl: float | None = None,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str | None:
        write = self.inner.set_item_conditional(
            key, value, ttl=ttl, if_match=if_match, if_none_match=if_none_match
        )
        return await self._run("set_item_conditional", key, write)

    # -- batches ------------------------------------------------------------------------------

    async def get_items(self, keys: Sequence[str]) -> list[bytes | None]:
        return await self._run("get_items", _first(keys), self.inner.get_items(keys))

    async def set_items(
        self, items: Sequence[tuple[str, bytes]], *, ttl: float | None = None
    ) -> None:
        first = items[0][0] if items else None
        await self._run("set_items", first, self.inner.set_items(items, ttl=ttl))

    async def remove_items(self, keys: Sequence[str]) -> None:
        await self._run("remove_items", _first(keys), self.inner.remove_items(keys))

    # -- listing ------------------------------------------------------------------------------

    def iter_keys(self, base: str = "", *, max_depth: int | None = None) -> AsyncIterator[str]:
        return self._iter_keys(base, max_depth)

    async def _iter_keys(self, base: str, max_depth: int | None) -> AsyncIterator[str]:
        iterator = self.inner.iter_keys(base, max_depth=max_depth)
        while True:
            try:
                key = await self._run("iter_keys", base, anext(iterator))
            except StopAsyncIteration:
                return
            yield key

    async def get_keys(self, base: str = "", *, max_depth: int | None = None) -> list[str]:
        return await self._run("get_keys", base, self.inner.get_keys(base, max_depth=max_depth))

    async def clear(self, base: str = "") -> None:
        await self._run("clear", base, self.inner.clear(base))

    # -- meta ---------------------------------------------------------------------------------

    async def get_meta(self, key: str) -> dict[str, Any]:
        return await self._run("get_meta", key, self.inner.get_meta(key))

    async def get_user_meta(self, key: str) -> bytes | None:
        return await self._run("get_user_meta", key, self.inner.get_user_meta(key))

    async def get_user_metas(self, keys: Sequence[str]) -> list[bytes | None]:
        return await self._run("get_user_metas", _first(keys), self.inner.get_user_metas(keys))

    async def set_user_meta(self, key: str, data: bytes) -> None:
        await self._run("set_user_meta", key, self.inner.set_user_meta(key, data))

    async def remove_user_meta(self, key: str) -> None:
        await self._run("remove_user_meta", key, self.inner.remove_user_meta(key))

    # -- watching -----------------------------------------------------------------------------

    async def watch(self, callback: WatchCallback) -> Unwatch:
        return await self._run("watch", None, self.inner.watch(callback))


def _first(keys: Sequence[str]) -> str | None:
    return keys[0] if keys else None
