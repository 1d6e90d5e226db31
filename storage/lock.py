"""`Lock`: a lease on a key, built on create-only writes, TTLs and compare-and-set.

Whoever creates the key holds the lease until it removes it or the TTL runs out. While held,
the lease is renewed in the background (a conditional rewrite every third of the TTL), and
released only if it is still ours (a conditional remove). A lease lost meanwhile (expired
while this process stalled, then taken by another) is reported with `LockLostError`. Works
across processes and machines on every driver with conditional writes and TTL (redis and its
cluster, sqlite, fs, s3, http); the lease value holds a random owner id, so its etag is never
another holder's. Uses only the public Storage API.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from types import TracebackType
from typing import Protocol

import orjson

from .driver import Capabilities
from .errors import (
    ConflictError,
    InvalidArgumentError,
    LockLostError,
    LockUnavailableError,
    StorageError,
    UnsupportedError,
)
from .ttl import TTL, ttl_seconds

__all__ = ["Leases", "Lock"]

_FIRST_PAUSE = 0.005


class Leases(Protocol):
    """The part of the Storage API a lock uses."""

    def capabilities(self, key: str = "") -> Capabilities: ...

    async def set_item_raw(
        self,
        key: str,
        data: bytes,
        *,
        ttl: TTL = None,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str | None: ...

    async def get_item_raw_with_etag(self, key: str) -> tuple[bytes | None, str | None]: ...

    async def remove_item(
        self, key: str, *, remove_meta: bool = False, if_match: str | None = None
    ) -> None: ...


class Lock:
    """``async with storage.lock(key, ttl=30, wait=5) as lock:`` holds the lease on ``key``.

    ``ttl``: seconds the lease lasts without renewal. ``wait``: seconds to keep trying while
    another holder has it (None or 0: try once). ``renew``: renew in the background while
    held. ``token`` is the fencing token: the etag of the lease write that acquired it.
    """

    def __init__(
        self, storage: Leases, key: str, *, ttl: TTL, wait: float | None = None, renew: bool = True
    ) -> None:
        seconds = ttl_seconds(ttl)
        if seconds is None:
            raise InvalidArgumentError("a lock needs a ttl")
        if wait is not None and (isinstance(wait, bool) or not wait >= 0):
            raise InvalidArgumentError(f"wait is seconds >= 0, not {wait!r}")
        capabilities = storage.capabilities(key)
        if not (capabilities.conditional and capabilities.ttl):
            raise UnsupportedError(
                f"a lock needs conditional writes and TTL; the store of {key!r} lacks them"
            )
        self._storage = storage
        self.key = key
        self.ttl = seconds
        self.wait = wait or 0.0
        self.renew = renew
        self.token: str | None = None
        self._owner = uuid.uuid4().hex
        self._count = 0
        self._etag: str | None = None
        self._lost = False
        self._renewer: asyncio.Task[None] | None = None
        self._renewal: asyncio.Future[None] | None = None

    @property
    def held(self) -> bool:
        """True while the lease is ours as far as this process knows."""
        return self._etag is not None and not self._lost

    @property
    def lost(self) -> bool:
        """True once a renewal found the lease gone."""
        return self._lost

    def _value(self) -> bytes:
        self._count += 1
        return orjson.dumps({"owner": self._owner, "n": self._count})

    async def acquire(self) -> str:
        """Take the lease (waiting up to ``wait``); returns the fencing token."""
        deadline = time.monotonic() + self.wait
        pause = _FIRST_PAUSE
        while True:
            value = self._value()
            try:
                etag = await self._storage.set_item_raw(
                    self.key, value, ttl=self.ttl, if_none_match=True
                )
                break
            except ConflictError:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise LockUnavailableError(self.key, self.wait) from None
                await asyncio.sleep(min(left, random.uniform(pause / 2, pause)))
                pause = min(pause * 2, max(self.ttl / 4, _FIRST_PAUSE))
        if etag is None:
            stored, etag = await self._storage.get_item_raw_with_etag(self.key)
            if stored != value or etag is None:
                raise LockLostError(self.key)
        self._etag = self.token = etag
        self._lost = False
        if self.renew:
            self._renewer = asyncio.ensure_future(self._keep())
        return etag

    async def _keep(self) -> None:
        while True:
            await asyncio.sleep(self.ttl / 3)
            # Shielded: a renewal stopped midway may have landed without telling us its etag,
            # so `release` lets one under way finish (and takes its etag) instead of cancelling it.
            self._renewal = asyncio.ensure_future(self.extend())
            try:
                await asyncio.shield(self._renewal)
            except LockLostError:
                return
            except StorageError:
                continue  # a backend hiccup: the next renewal may still be in time

    async def extend(self) -> None:
        """Renew the lease now for another ``ttl``; `LockLostError` if it is no longer ours."""
        if self._etag is None or self._lost:
            raise LockLostError(self.key)
        value = self._value()
        try:
            etag = await self._storage.set_item_raw(
                self.key, value, ttl=self.ttl, if_match=self._etag
            )
        except ConflictError:
            self._lost = True
            raise LockLostError(self.key) from None
        self._etag = etag if etag is not None else self._etag

    async def release(self) -> None:
        """Give the lease back; `LockLostError` if it was lost meanwhile."""
        renewer, self._renewer = self._renewer, None
        if renewer is not None:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
        renewal, self._renewal = self._renewal, None
        if renewal is not None:
            with contextlib.suppress(Exception):  # its outcome is in _etag and _lost
                await renewal
        etag, self._etag = self._etag, None
        if etag is None or self._lost:
            raise LockLostError(self.key)
        try:
            await self._storage.remove_item(self.key, if_match=etag)
        except ConflictError:
            self._lost = True
            raise LockLostError(self.key) from None

    async def __aenter__(self) -> Lock:
        await self.acquire()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            await self.release()
        except LockLostError:
            if exc is None:
                raise
