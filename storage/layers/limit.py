"""`Limit`: bounds on value size, key length and TTL, checked before any I/O.

Only writes are checked (reads of any key pass through). A batch is checked whole before any of
it is written, so a refused item means nothing of the batch was stored.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Sequence
from typing import Literal

from ..driver import Driver
from ..errors import InvalidArgumentError, InvalidKeyError, UnsupportedError
from ..layer import Layer
from ..ttl import TTL, ttl_seconds

__all__ = ["Limit", "LimitError"]

TTLPolicy = Literal["refuse", "clamp"]


class LimitError(InvalidArgumentError):
    """A write exceeds one of a `Limit` layer's bounds (value size or TTL); names the key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"cannot write {key!r}: {message}")
        self.key = key


class Limit(Layer):
    """Refuses writes beyond its bounds with `LimitError` / `InvalidKeyError`, or clamps TTLs.

    ``max_value_size``: bytes of a value (or of user meta) as this layer receives it, that is
    after the serializer and before any layer below (say, before compression).
    ``max_key_length``: bytes of the mount-relative key in UTF-8 (``"é"`` counts 2).
    ``min_ttl`` / ``max_ttl``: seconds. A write without a TTL never expires, so with
    ``max_ttl`` set it is out of range too.
    ``ttl_policy``: ``"refuse"`` (the default) raises for a TTL out of range; ``"clamp"``
    writes it with the nearest bound instead (``max_ttl`` for a write without a TTL).
    """

    layer_name = "limit"

    def __init__(
        self,
        inner: Driver,
        *,
        max_value_size: int | None = None,
        max_key_length: int | None = None,
        min_ttl: TTL = None,
        max_ttl: TTL = None,
        ttl_policy: TTLPolicy = "refuse",
    ) -> None:
        for name, bound in (("max_value_size", max_value_size), ("max_key_length", max_key_length)):
            if bound is not None and (
                not isinstance(bound, int) or isinstance(bound, bool) or bound < 1
            ):
                raise InvalidArgumentError(f"{name} is a number of bytes > 0, not {bound!r}")
        low, high = ttl_seconds(min_ttl), ttl_seconds(max_ttl)
        if low is not None and high is not None and low > high:
            raise InvalidArgumentError(f"min_ttl ({low}) is more than max_ttl ({high})")
        if ttl_policy not in ("refuse", "clamp"):
            raise InvalidArgumentError(f"ttl_policy is 'refuse' or 'clamp', not {ttl_policy!r}")
        if high is not None and not inner.capabilities.ttl:
            raise UnsupportedError(f"the {inner.name} driver has no TTL for max_ttl to bound")
        capabilities = inner.capabilities
        if high is not None:
            # A write without a coroutine carries no TTL, which max_ttl refuses or replaces.
            capabilities = dataclasses.replace(capabilities, nowait=False)
        super().__init__(inner, capabilities=capabilities)
        self.max_value_size = max_value_size
        self.max_key_length = max_key_length
        self.min_ttl = low
        self.max_ttl = high
        self.ttl_policy: TTLPolicy = ttl_policy

    # -- checks -------------------------------------------------------------------------------

    def _check(self, key: str, value: bytes, what: str = "value") -> None:
        limit = self.max_key_length
        # UTF-8 takes at most 4 bytes a character: only a key that may be too long is encoded.
        if limit is not None and len(key) * 4 > limit and len(encoded := key.encode()) > limit:
            raise InvalidKeyError(
                key, f"it is {len(encoded)} bytes long in UTF-8; this store allows {limit}"
            )
        limit = self.max_value_size
        if limit is not None and len(value) > limit:
            raise LimitError(key, f"the {what} is {len(value)} bytes; this store allows {limit}")

    def _ttl(self, key: str, ttl: float | None) -> float | None:
        low, high = self.min_ttl, self.max_ttl
        if low is not None and ttl is not None and ttl < low:
            if self.ttl_policy == "clamp":
                return low
            raise LimitError(key, f"a TTL of {ttl} s is shorter than min_ttl ({low} s)")
        if high is not None and (ttl is None or ttl > high):
            if self.ttl_policy == "clamp":
                return high
            given = "no TTL (it would never expire)" if ttl is None else f"a TTL of {ttl} s"
            raise LimitError(key, f"{given} is longer than max_ttl ({high} s)")
        return ttl

    # -- writes -------------------------------------------------------------------------------

    async def set_item(self, key: str, value: bytes, *, ttl: float | None = None) -> str | None:
        self._check(key, value)
        return await self.inner.set_item(key, value, ttl=self._ttl(key, ttl))

    def set_item_nowait(self, key: str, value: bytes) -> str | None:
        if self.max_ttl is not None:
            raise UnsupportedError(f"the {self.name} layer writes through coroutines only")
        self._check(key, value)
        return self.inner.set_item_nowait(key, value)

    async def increment(self, key: str, by: int, *, ttl: float | None = None) -> int:
        self._check(key, b"")
        if ttl is not None or self.max_ttl is not None:
            ttl = self._ttl(key, ttl)
        return await self.inner.increment(key, by, ttl=ttl)

    async def touch(self, key: str, ttl: float) -> bool:
        renewed = self._ttl(key, ttl)
        return await self.inner.touch(key, ttl if renewed is None else renewed)

    async def get_item_touch(self, key: str, ttl: float) -> bytes | None:
        renewed = self._ttl(key, ttl)
        return await self.inner.get_item_touch(key, ttl if renewed is None else renewed)

    async def write_chunks(
        self, key: str, chunks: AsyncIterator[bytes], *, ttl: float | None = None
    ) -> str | None:
        self._check(key, b"")
        limit = self.max_value_size

        async def counted() -> AsyncIterator[bytes]:
            size = 0
            async for chunk in chunks:
                size += len(chunk)
                if limit is not None and size > limit:
                    # Raised inside the driver's read of the stream: it drops the partial value.
                    raise LimitError(key, f"the streamed value passes {limit} bytes")
                yield chunk

        return await self.inner.write_chunks(key, counted(), ttl=self._ttl(key, ttl))

    async def set_item_conditional(
        self,
        key: str,
        value: bytes,
        *,
        ttl: float | None = None,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str | None:
        self._check(key, value)
        return await self.inner.set_item_conditional(
            key, value, ttl=self._ttl(key, ttl), if_match=if_match, if_none_match=if_none_match
        )

    async def set_items(
        self, items: Sequence[tuple[str, bytes]], *, ttl: float | None = None
    ) -> None:
        for key, value in items:
            self._check(key, value)
        if items:
            ttl = self._ttl(items[0][0], ttl)
        await self.inner.set_items(items, ttl=ttl)

    async def set_user_meta(self, key: str, data: bytes) -> None:
        self._check(key, data, "user meta")
        await self.inner.set_user_meta(key, data)
