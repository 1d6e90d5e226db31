"""`Layer`: a driver in front of another driver.

The base forwards every call to ``inner`` once and reports its capabilities, so a subclass
overrides only what it changes (a read-only layer refuses writes, a compression layer changes
values). Layers work on bytes, under the serializer: etags, listing, watch and conditional
writes pass through untouched unless a layer means to change them. Layers stack in any order,
and a layer's ``name`` shows the stack (``readonly(redis)``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any, ClassVar

from .driver import Capabilities, Driver, Unwatch, WatchCallback
from .errors import InvalidArgumentError

__all__ = ["Layer", "ValueLayer"]


class Layer(Driver):
    """Forwards every driver call to ``inner``; subclass it and override what changes.

    ``layer_name`` names the layer in ``name`` (``f"{layer_name}({inner.name})"``). A subclass
    that changes what the inner driver can do passes ``capabilities`` to ``__init__`` (say,
    ``dataclasses.replace(inner.capabilities, read_only=True)``). Disposing a layer disposes
    its inner driver: the layer owns what it wraps.
    """

    layer_name: ClassVar[str] = "layer"
    #: True for a layer whose stored bytes differ from the bytes it is given (encryption,
    #: compression). Calls that work on stored bytes then run through the layer's own reads
    #: and writes instead of being forwarded: `increment` by compare-and-set, streams whole.
    transforms_values: ClassVar[bool] = False

    def __init__(self, inner: Driver, *, capabilities: Capabilities | None = None) -> None:
        if not isinstance(inner, Driver):
            raise InvalidArgumentError(f"a layer wraps a storage.Driver, not {inner!r}")
        self.inner = inner
        self.name = f"{self.layer_name}({inner.name})"
        self.capabilities = inner.capabilities if capabilities is None else capabilities

    # -- items --------------------------------------------------------------------------------

    async def get_item(self, key: str) -> bytes | None:
        return await self.inner.get_item(key)

    async def set_item(self, key: str, value: bytes, *, ttl: float | None = None) -> str | None:
        return await self.inner.set_item(key, value, ttl=ttl)

    async def remove_item(self, key: str) -> None:
        await self.inner.remove_item(key)

    async def has_item(self, key: str) -> bool:
        return await self.inner.has_item(key)

    def get_item_nowait(self, key: str) -> bytes | None:
        return self.inner.get_item_nowait(key)

    def set_item_nowait(self, key: str, value: bytes) -> str | None:
        return self.inner.set_item_nowait(key, value)

    async def get_item_with_etag(self, key: str) -> tuple[bytes | None, str | None]:
        return await self.inner.get_item_with_etag(key)

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
            key, value, ttl=ttl, if_match=if_match, if_none_match=if_none_match
        )

    async def remove_item_conditional(self, key: str, *, if_match: str) -> None:
        await self.inner.remove_item_conditional(key, if_match=if_match)

    async def increment(self, key: str, by: int, *, ttl: float | None = None) -> int:
        if self.transforms_values:
            return await Driver.increment(self, key, by, ttl=ttl)
        return await self.inner.increment(key, by, ttl=ttl)

    async def touch(self, key: str, ttl: float) -> bool:
        return await self.inner.touch(key, ttl)

    async def get_item_touch(self, key: str, ttl: float) -> bytes | None:
        if self.transforms_values:
            return await Driver.get_item_touch(self, key, ttl)
        return await self.inner.get_item_touch(key, ttl)

    async def read_chunks(self, key: str, chunk_size: int) -> AsyncIterator[bytes] | None:
        if self.transforms_values:
            return await Driver.read_chunks(self, key, chunk_size)
        return await self.inner.read_chunks(key, chunk_size)

    async def write_chunks(
        self, key: str, chunks: AsyncIterator[bytes], *, ttl: float | None = None
    ) -> str | None:
        if self.transforms_values:
            return await Driver.write_chunks(self, key, chunks, ttl=ttl)
        return await self.inner.write_chunks(key, chunks, ttl=ttl)

    async def get_url(self, key: str, *, expires: float, method: str = "GET") -> str:
        if self.transforms_values:
            return await Driver.get_url(self, key, expires=expires, method=method)
        return await self.inner.get_url(key, expires=expires, method=method)

    # -- batches ------------------------------------------------------------------------------

    async def get_items(self, keys: Sequence[str]) -> list[bytes | None]:
        return await self.inner.get_items(keys)

    async def set_items(
        self, items: Sequence[tuple[str, bytes]], *, ttl: float | None = None
    ) -> None:
        await self.inner.set_items(items, ttl=ttl)

    async def remove_items(self, keys: Sequence[str]) -> None:
        await self.inner.remove_items(keys)

    # -- listing ------------------------------------------------------------------------------

    def iter_keys(self, base: str = "", *, max_depth: int | None = None) -> AsyncIterator[str]:
        return self.inner.iter_keys(base, max_depth=max_depth)

    async def get_keys(self, base: str = "", *, max_depth: int | None = None) -> list[str]:
        return await self.inner.get_keys(base, max_depth=max_depth)

    async def list_page(
        self,
        base: str = "",
        *,
        limit: int,
        cursor: str | None = None,
        max_depth: int | None = None,
    ) -> tuple[list[str], str | None]:
        return await self.inner.list_page(base, limit=limit, cursor=cursor, max_depth=max_depth)

    async def clear(self, base: str = "") -> None:
        await self.inner.clear(base)

    # -- meta ---------------------------------------------------------------------------------

    async def get_meta(self, key: str) -> dict[str, Any]:
        return await self.inner.get_meta(key)

    async def get_user_meta(self, key: str) -> bytes | None:
        return await self.inner.get_user_meta(key)

    async def get_user_metas(self, keys: Sequence[str]) -> list[bytes | None]:
        return await self.inner.get_user_metas(keys)

    async def set_user_meta(self, key: str, data: bytes) -> None:
        await self.inner.set_user_meta(key, data)

    async def remove_user_meta(self, key: str) -> None:
        await self.inner.remove_user_meta(key)

    # -- watching and lifecycle ---------------------------------------------------------------

    async def watch(self, callback: WatchCallback) -> Unwatch:
        return await self.inner.watch(callback)

    async def dispose(self) -> None:
        await self.inner.dispose()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


class ValueLayer(Layer):
    """A layer that stores other bytes than it is given (encryption, compression).

    A subclass implements `encode` (the bytes to store for a value) and `decode` (the value
    back from stored bytes, raising a `StorageError` naming the key when they are not its
    own); every item and batch call goes through them. User meta passes untouched unless the
    subclass overrides the meta calls. Counters and streams work through the layer's own reads
    and writes (``transforms_values``).
    """

    transforms_values = True

    def encode(self, key: str, value: bytes) -> bytes:
        """The bytes to store at ``key`` for ``value``."""
        raise NotImplementedError

    def decode(self, key: str, data: bytes) -> bytes:
        """The value ``data`` stored at ``key`` holds."""
        raise NotImplementedError

    def _decoded(self, key: str, data: bytes | None) -> bytes | None:
        return None if data is None else self.decode(key, data)

    async def get_item(self, key: str) -> bytes | None:
        return self._decoded(key, await self.inner.get_item(key))

    def get_item_nowait(self, key: str) -> bytes | None:
        return self._decoded(key, self.inner.get_item_nowait(key))

    async def set_item(self, key: str, value: bytes, *, ttl: float | None = None) -> str | None:
        return await self.inner.set_item(key, self.encode(key, value), ttl=ttl)

    def set_item_nowait(self, key: str, value: bytes) -> str | None:
        return self.inner.set_item_nowait(key, self.encode(key, value))

    async def get_item_with_etag(self, key: str) -> tuple[bytes | None, str | None]:
        data, etag = await self.inner.get_item_with_etag(key)
        return self._decoded(key, data), etag

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
            key, self.encode(key, value), ttl=ttl, if_match=if_match, if_none_match=if_none_match
        )

    async def get_items(self, keys: Sequence[str]) -> list[bytes | None]:
        values = await self.inner.get_items(keys)
        return [self._decoded(key, data) for key, data in zip(keys, values, strict=True)]

    async def set_items(
        self, items: Sequence[tuple[str, bytes]], *, ttl: float | None = None
    ) -> None:
        await self.inner.set_items(
            [(key, self.encode(key, value)) for key, value in items], ttl=ttl
        )
