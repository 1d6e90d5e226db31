"""`ReadOnly`: every write refused, every read passed through."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Sequence

from ..driver import Driver
from ..errors import ReadOnlyError
from ..layer import Layer

__all__ = ["ReadOnly"]


class ReadOnly(Layer):
    """Reads go to ``inner``; writes, removals, clears and meta changes raise `ReadOnlyError`.

    The layer reports ``read_only`` in its capabilities, so Storage refuses a write before it
    reaches the layer; the layer refuses again for callers that hold the driver itself.
    """

    layer_name = "readonly"

    def __init__(self, inner: Driver) -> None:
        super().__init__(
            inner, capabilities=dataclasses.replace(inner.capabilities, read_only=True)
        )

    def _refuse(self, key: str) -> ReadOnlyError:
        return ReadOnlyError(key, self.name)

    async def set_item(self, key: str, value: bytes, *, ttl: float | None = None) -> str | None:
        raise self._refuse(key)

    def set_item_nowait(self, key: str, value: bytes) -> str | None:
        raise self._refuse(key)

    async def remove_item_conditional(self, key: str, *, if_match: str) -> None:
        raise self._refuse(key)

    async def increment(self, key: str, by: int, *, ttl: float | None = None) -> int:
        raise self._refuse(key)

    async def touch(self, key: str, ttl: float) -> bool:
        raise self._refuse(key)

    async def get_item_touch(self, key: str, ttl: float) -> bytes | None:
        raise self._refuse(key)

    async def write_chunks(
        self, key: str, chunks: AsyncIterator[bytes], *, ttl: float | None = None
    ) -> str | None:
        raise self._refuse(key)

    async def get_url(self, key: str, *, expires: float, method: str = "GET") -> str:
        if method != "GET":
            raise self._refuse(key)
        return await self.inner.get_url(key, expires=expires, method=method)

    async def set_item_conditional(
        self,
        key: str,
        value: bytes,
        *,
        ttl: float | None = None,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str | None:
        raise self._refuse(key)

    async def set_items(
        self, items: Sequence[tuple[str, bytes]], *, ttl: float | None = None
    ) -> None:
        raise self._refuse(items[0][0] if items else "")

    async def remove_item(self, key: str) -> None:
        raise self._refuse(key)

    async def remove_items(self, keys: Sequence[str]) -> None:
        raise self._refuse(keys[0] if keys else "")

    async def clear(self, base: str = "") -> None:
        raise self._refuse(base)

    async def set_user_meta(self, key: str, data: bytes) -> None:
        raise self._refuse(key)

    async def remove_user_meta(self, key: str) -> None:
        raise self._refuse(key)
