"""Atomic read-modify-write built from compare-and-set: the drivers' default `increment`,
`touch` and conditional remove where a backend offers nothing more direct.

Each loop reads a value with its etag and writes conditioned on that etag, so a concurrent
writer makes the write fail and the loop read again: nothing is ever overwritten unseen.
Contention backs off with jitter. The functions take anything with the two calls they need,
so they serve every driver and layer alike.
"""

from __future__ import annotations

import asyncio
import random
import re
from typing import Any, Protocol

from .errors import ConflictError, InvalidArgumentError

__all__ = [
    "CAS_ATTEMPTS",
    "VersionedStore",
    "cas_increment",
    "cas_touch",
    "decode_counter",
    "encode_counter",
]

#: Attempts before a contended loop gives up with `ConflictError`.
CAS_ATTEMPTS = 64
_PAUSE = 0.0005
_MAX_PAUSE = 0.05


class VersionedStore(Protocol):
    """The calls a compare-and-set loop needs (every driver has them)."""

    async def get_item_with_etag(self, key: str) -> tuple[bytes | None, str | None]: ...

    async def get_meta(self, key: str) -> dict[str, Any]: ...

    async def set_item_conditional(
        self,
        key: str,
        value: bytes,
        *,
        ttl: float | None = None,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str | None: ...


#: JSON's integer grammar; counters are signed 64-bit, as Redis' INCRBY keeps them.
_INTEGER = re.compile(rb"-?(?:0|[1-9][0-9]{0,18})")
COUNTER_MIN, COUNTER_MAX = -(2**63), 2**63 - 1


def decode_counter(key: str, data: bytes | None) -> int:
    """The int a counter's stored JSON text holds (0 when absent); `InvalidArgumentError` when
    the value is not JSON integer text within 64 bits."""
    if data is None:
        return 0
    if _INTEGER.fullmatch(data):
        value = int(data)
        if COUNTER_MIN <= value <= COUNTER_MAX:
            return value
    raise InvalidArgumentError(
        f"{key!r} does not hold a 64-bit integer, so it cannot be incremented"
    )


def encode_counter(value: int, key: str = "") -> bytes:
    """A counter's stored form: JSON integer text, as the default serializer writes it;
    `InvalidArgumentError` past the signed 64-bit range (no counter silently overflows)."""
    if not COUNTER_MIN <= value <= COUNTER_MAX:
        where = f" {key!r}" if key else ""
        raise InvalidArgumentError(f"incrementing{where} would pass the 64-bit range")
    return str(value).encode()


async def _pause(attempt: int) -> None:
    await asyncio.sleep(random.uniform(0, min(_MAX_PAUSE, _PAUSE * 2**attempt)))


async def cas_increment(store: VersionedStore, key: str, by: int, ttl: float | None) -> int:
    """Add ``by`` to the integer at ``key`` (created at 0) and return the new value.

    ``ttl`` is given to a key the increment creates; an existing key keeps its expiry (its
    remaining TTL, read from the meta, goes with the rewrite).
    """
    for attempt in range(CAS_ATTEMPTS):
        data, etag = await store.get_item_with_etag(key)
        value = decode_counter(key, data) + by
        try:
            if data is None:
                await store.set_item_conditional(
                    key, encode_counter(value, key), ttl=ttl, if_none_match=True
                )
            else:
                remaining = (await store.get_meta(key)).get("ttl")
                keep = remaining if isinstance(remaining, (int, float)) and remaining > 0 else None
                await store.set_item_conditional(
                    key, encode_counter(value, key), ttl=keep, if_match=etag or "*"
                )
        except ConflictError:
            await _pause(attempt)
            continue
        return value
    raise ConflictError(key, f"still contended after {CAS_ATTEMPTS} attempts")


async def cas_touch(store: VersionedStore, key: str, ttl: float) -> bool:
    """Give ``key`` a new TTL of ``ttl`` seconds without changing its value; False if absent."""
    for attempt in range(CAS_ATTEMPTS):
        data, etag = await store.get_item_with_etag(key)
        if data is None:
            return False
        try:
            await store.set_item_conditional(key, data, ttl=ttl, if_match=etag or "*")
        except ConflictError:
            await _pause(attempt)
            continue
        return True
    raise ConflictError(key, f"still contended after {CAS_ATTEMPTS} attempts")
