"""The null driver: accepts every write and keeps nothing (a sink for tests and benchmarks)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from storage import Capabilities, Driver

__all__ = ["NullDriver"]


class NullDriver(Driver):
    """Writes succeed and vanish; reads find nothing; listings are empty."""

    name = "null"
    schemes = ("null",)
    # A TTL is accepted (and discarded like the value), so code written for expiring stores
    # runs unchanged against this sink.
    capabilities = Capabilities(ttl=True, bounded=True)

    async def get_item(self, key: str) -> bytes | None:
        return None

    async def has_item(self, key: str) -> bool:
        return False

    async def get_items(self, keys: Sequence[str]) -> list[bytes | None]:
        return [None] * len(keys)

    async def set_item(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        return None

    async def set_items(
        self, items: Sequence[tuple[str, bytes]], *, ttl: float | None = None
    ) -> None:
        return None

    async def remove_item(self, key: str) -> None:
        return None

    async def remove_items(self, keys: Sequence[str]) -> None:
        return None

    async def iter_keys(
        self, base: str = "", *, max_depth: int | None = None
    ) -> AsyncIterator[str]:
        return
        yield  # makes this an async generator that yields nothing

    async def get_keys(self, base: str = "", *, max_depth: int | None = None) -> list[str]:
        return []

    async def clear(self, base: str = "") -> None:
        return None
