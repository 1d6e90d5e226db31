"""`DefaultTTL`: writes without a TTL expire after a default one."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Sequence

from ..driver import Driver
from ..errors import UnsupportedError
from ..layer import Layer
from ..ttl import ttl_seconds

__all__ = ["DefaultTTL"]


class DefaultTTL(Layer):
    """Every value written without a TTL gets ``ttl`` seconds (an explicit TTL wins).

    User meta is written without a TTL. In-process drivers lose their no-coroutine fast path
    under this layer, since a fast write cannot carry a TTL.
    """

    layer_name = "ttl"

    def __init__(self, inner: Driver, *, ttl: float) -> None:
        seconds = ttl_seconds(ttl)
        if seconds is None:
            raise UnsupportedError("DefaultTTL needs a ttl")
        if not inner.capabilities.ttl:
            raise UnsupportedError(f"the {inner.name} driver has no TTL to default")
        super().__init__(inner, capabilities=dataclasses.replace(inner.capabilities, nowait=False))
        self.ttl = seconds

    async def set_item(self, key: str, value: bytes, *, ttl: float | None = None) -> str | None:
        return await self.inner.set_item(key, value, ttl=self.ttl if ttl is None else ttl)

    def set_item_nowait(self, key: str, value: bytes) -> str | None:
        raise UnsupportedError(f"the {self.name} layer writes through coroutines only")

    async def increment(self, key: str, by: int, *, ttl: float | None = None) -> int:
        return await self.inner.increment(key, by, ttl=self.ttl if ttl is None else ttl)

    async def write_chunks(
        self, key: str, chunks: AsyncIterator[bytes], *, ttl: float | None = None
    ) -> str | None:
        return await self.inner.write_chunks(key, chunks, ttl=self.ttl if ttl is None else ttl)

    async def set_item_conditional(
        self,
        key: str,
        value: bytes,
        *,
        ttl: float | None = None,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str | None:
        return await self.inner.set_item_conditional(
            key,
            value,
            ttl=self.ttl if ttl is None else ttl,
            if_match=if_match,
            if_none_match=if_none_match,
        )

    async def set_items(
        self, items: Sequence[tuple[str, bytes]], *, ttl: float | None = None
    ) -> None:
        await self.inner.set_items(items, ttl=self.ttl if ttl is None else ttl)
