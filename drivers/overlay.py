"""The overlay driver: layers of drivers read top-down, with every change kept in the top layer.

A removal writes a *tombstone* in the top layer, so a key removed through the overlay stays
removed even when a lower layer still holds it. The tombstone is a reserved value,
`TOMBSTONE`, that no serializer produces (it starts with a NUL byte); a raw write of exactly
those bytes through an overlay reads back as a removal.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

from storage import (
    Capabilities,
    Driver,
    InvalidArgumentError,
    Layer,
    Unwatch,
    WatchCallback,
    create_driver,
)
from storage.driver import meta_key

__all__ = ["TOMBSTONE", "OverlayDriver"]

#: The value the top layer holds for a key removed through the overlay.
TOMBSTONE = b"\x00\x1funistorage:overlay:removed\x1f\x00"

_CHUNK = 1000


class OverlayDriver(Layer):
    """Reads through ``layers`` (drivers, names or URLs; the first is the top), writes to the top.

    A layer whose inner driver is the top: writes, batches of writes and TTLs go there through
    the `Layer` base. Reads, listing, removal and meta look through every layer. Listing merges
    every layer and hides keys whose top-layer value is a tombstone. The overlay can do what
    its top can for TTL and read-only; it has no atomic conditional writes (a lower layer may
    hold a key the top lacks) and no watch. Disposing the overlay disposes every layer.
    """

    layer_name = "overlay"
    schemes = ("overlay",)

    def __init__(self, *, layers: Iterable[Driver | str]) -> None:
        built: list[Driver] = [create_driver(layer) for layer in layers]
        if not built:
            raise InvalidArgumentError("the overlay driver needs at least one layer")
        top = built[0].capabilities
        bounded = all(layer.capabilities.bounded for layer in built)
        capabilities = Capabilities(ttl=top.ttl, read_only=top.read_only, bounded=bounded)
        super().__init__(built[0], capabilities=capabilities)
        self.layers = built
        self.name = f"overlay({', '.join(layer.name for layer in built)})"

    @property
    def top(self) -> Driver:
        """The layer that receives every write and every tombstone."""
        return self.layers[0]

    async def _find(self, key: str) -> tuple[Driver, bytes] | None:
        for layer in self.layers:
            value = await layer.get_item(key)
            if value is not None:
                return None if value == TOMBSTONE else (layer, value)
        return None

    async def get_item(self, key: str) -> bytes | None:
        found = await self._find(key)
        return None if found is None else found[1]

    async def has_item(self, key: str) -> bool:
        return await self._find(key) is not None

    async def get_item_with_etag(self, key: str) -> tuple[bytes | None, str | None]:
        return await self.get_item(key), None

    def get_item_nowait(self, key: str) -> bytes | None:
        return Driver.get_item_nowait(self, key)

    def set_item_nowait(self, key: str, value: bytes) -> str | None:
        return Driver.set_item_nowait(self, key, value)

    # What reads through every layer, or needs an atomic version across them, is not the
    # top's alone: the base class's answers (reads through `get_item`, or a refusal) apply.

    async def remove_item_conditional(self, key: str, *, if_match: str) -> None:
        await Driver.remove_item_conditional(self, key, if_match=if_match)

    async def increment(self, key: str, by: int, *, ttl: float | None = None) -> int:
        return await Driver.increment(self, key, by, ttl=ttl)

    async def touch(self, key: str, ttl: float) -> bool:
        return await Driver.touch(self, key, ttl)

    async def get_item_touch(self, key: str, ttl: float) -> bytes | None:
        return await Driver.get_item_touch(self, key, ttl)

    async def list_page(
        self,
        base: str = "",
        *,
        limit: int,
        cursor: str | None = None,
        max_depth: int | None = None,
    ) -> tuple[list[str], str | None]:
        return await Driver.list_page(self, base, limit=limit, cursor=cursor, max_depth=max_depth)

    async def read_chunks(self, key: str, chunk_size: int) -> AsyncIterator[bytes] | None:
        return await Driver.read_chunks(self, key, chunk_size)

    async def get_url(self, key: str, *, expires: float, method: str = "GET") -> str:
        return await Driver.get_url(self, key, expires=expires, method=method)

    async def set_item_conditional(
        self,
        key: str,
        value: bytes,
        *,
        ttl: float | None = None,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str | None:
        return await Driver.set_item_conditional(
            self, key, value, ttl=ttl, if_match=if_match, if_none_match=if_none_match
        )

    async def get_items(self, keys: Sequence[str]) -> list[bytes | None]:
        values: list[bytes | None] = [None] * len(keys)
        pending = list(range(len(keys)))
        for layer in self.layers:
            if not pending:
                break
            found = await layer.get_items([keys[index] for index in pending])
            still: list[int] = []
            for index, value in zip(pending, found, strict=True):
                if value is None:
                    still.append(index)
                elif value != TOMBSTONE:
                    values[index] = value
            pending = still
        return values

    async def remove_item(self, key: str) -> None:
        await self.remove_items([key])

    async def remove_items(self, keys: Sequence[str]) -> None:
        if not keys:
            return
        if len(self.layers) == 1:
            await self.top.remove_items(keys)
            return
        # Only keys a lower layer still holds need a tombstone; the rest are simply removed.
        shadowed = await self._lower_holds(keys)
        plain = [key for key in keys if key not in shadowed]
        if plain:
            await self.top.remove_items(plain)
        if shadowed:
            await self.top.set_items([(key, TOMBSTONE) for key in shadowed])

    async def _lower_holds(self, keys: Sequence[str]) -> set[str]:
        held: set[str] = set()
        pending = list(keys)
        for layer in self.layers[1:]:
            if not pending:
                break
            found = await layer.get_items(pending)
            for key, value in zip(pending, found, strict=True):
                if value is not None and value != TOMBSTONE:
                    held.add(key)
            pending = [key for key in pending if key not in held]
        return held

    async def iter_keys(
        self, base: str = "", *, max_depth: int | None = None
    ) -> AsyncIterator[str]:
        seen: set[str] = set()
        for layer in self.layers:
            page: list[str] = []
            async for key in layer.iter_keys(base, max_depth=max_depth):
                if key not in seen:
                    seen.add(key)
                    page.append(key)
                    if len(page) >= _CHUNK:
                        for visible in await self._visible(page):
                            yield visible
                        page = []
            for visible in await self._visible(page):
                yield visible

    async def _visible(self, keys: list[str]) -> list[str]:
        # A key is listed when its topmost value is a real value, not a tombstone.
        if not keys:
            return []
        values = await self.get_items(keys)
        return [key for key, value in zip(keys, values, strict=True) if value is not None]

    async def get_keys(self, base: str = "", *, max_depth: int | None = None) -> list[str]:
        return [key async for key in self.iter_keys(base, max_depth=max_depth)]

    async def clear(self, base: str = "") -> None:
        await self.top.clear(base)
        if len(self.layers) > 1:
            doomed: list[str] = []
            for layer in self.layers[1:]:
                doomed.extend(await layer.get_keys(base))
            for start in range(0, len(doomed), _CHUNK):
                chunk = list(dict.fromkeys(doomed[start : start + _CHUNK]))
                await self.top.set_items([(key, TOMBSTONE) for key in chunk])

    async def get_meta(self, key: str) -> dict[str, Any]:
        for layer in self.layers:
            value = await layer.get_item(key)
            if value is not None:
                return {} if value == TOMBSTONE else await layer.get_meta(key)
        return {}

    # User meta lives in sibling entries, read through the layers like any item.

    async def get_user_meta(self, key: str) -> bytes | None:
        return await Driver.get_user_meta(self, key)

    async def get_user_metas(self, keys: Sequence[str]) -> list[bytes | None]:
        return await self.get_items([meta_key(key) for key in keys])

    async def set_user_meta(self, key: str, data: bytes) -> None:
        await Driver.set_user_meta(self, key, data)

    async def remove_user_meta(self, key: str) -> None:
        await Driver.remove_user_meta(self, key)

    async def watch(self, callback: WatchCallback) -> Unwatch:
        return await Driver.watch(self, callback)

    async def dispose(self) -> None:
        for layer in self.layers:
            await layer.dispose()

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Driver:
        """``overlay://?layers=URL1,URL2`` is not supported; pass ``layers=`` instead."""
        if "layers" not in options:
            raise InvalidArgumentError(
                "the overlay driver is built from drivers: create_driver('overlay', layers=[...])"
            )
        return cls(**options)
