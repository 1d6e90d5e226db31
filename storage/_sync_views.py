"""The sync lock and the sync typed view: `Lock` and `TypedView` run on a `Runner`'s loop."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any, Generic, TypeVar, overload

from ._sync_runner import Runner
from ._sync_streams import PageIterator
from .listing import BATCH_CHUNK
from .lock import Lock
from .ttl import TTL
from .typed import TypedView

__all__ = ["SyncLock", "SyncTypedView"]

M = TypeVar("M")
D = TypeVar("D")

#: Values read per round trip while `SyncTypedView.items` and `values` stream a base.
_VALUES_PAGE = 256


class SyncLock:
    """``with storage.lock("jobs:nightly", ttl=30, wait=10) as lock:`` holds the lease.

    The lease is renewed in the background on the storage's loop while held; the meaning of
    every call is `storage.Lock`'s. ``acquire`` waits up to ``wait`` seconds (plus the call
    timeout) for another holder to let go.
    """

    __slots__ = ("_lock", "_runner")

    def __init__(self, runner: Runner, lock: Lock) -> None:
        self._runner = runner
        self._lock = lock

    @property
    def key(self) -> str:
        """The key the lease is held on."""
        return self._lock.key

    @property
    def ttl(self) -> float:
        """Seconds the lease lasts without renewal."""
        return self._lock.ttl

    @property
    def wait(self) -> float:
        """Seconds `acquire` keeps trying while another holder has the lease."""
        return self._lock.wait

    @property
    def renew(self) -> bool:
        """True when the lease is renewed in the background while held."""
        return self._lock.renew

    @property
    def token(self) -> str | None:
        """The fencing token: the etag of the write that acquired the lease."""
        return self._lock.token

    @property
    def held(self) -> bool:
        """True while the lease is ours as far as this process knows."""
        return self._lock.held

    @property
    def lost(self) -> bool:
        """True once a renewal found the lease gone."""
        return self._lock.lost

    def acquire(self) -> str:
        """Take the lease (waiting up to ``wait``); returns the fencing token."""
        lock = self._lock
        return self._runner.call(lock.acquire(), "lock", lock.key, extra=lock.wait)

    def extend(self) -> None:
        """Renew the lease now for another ``ttl``; `LockLostError` if it is no longer ours."""
        self._runner.call(self._lock.extend(), "lock", self._lock.key)

    def release(self) -> None:
        """Give the lease back; `LockLostError` if it was lost meanwhile."""
        self._runner.call(self._lock.release(), "lock", self._lock.key)

    def __enter__(self) -> SyncLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._runner.call(self._lock.__aexit__(exc_type, exc, traceback), "lock", self._lock.key)

    def __repr__(self) -> str:
        return f"<SyncLock {self.key!r} held={self.held}>"


class SyncTypedView(Generic[M]):
    """Keys whose values are ``M`` instances: `storage.TypedView`'s calls, made blocking.

    Keys are relative to the view's base; every value is encoded before any I/O and validated
    as it is read.
    """

    __slots__ = ("_runner", "_view")

    def __init__(self, runner: Runner, view: TypedView[M]) -> None:
        self._runner = runner
        self._view = view

    @property
    def model(self) -> type[M]:
        """The class of this view's values."""
        return self._view.model

    @overload
    def get(self, key: str) -> M | None: ...

    @overload
    def get(self, key: str, default: D) -> M | D: ...

    def get(self, key: str, default: Any = None) -> Any:
        """The instance stored at ``key``, or ``default`` when it is missing."""
        return self._runner.call(self._view.get(key, default), "get", key)

    def get_with_etag(self, key: str) -> tuple[M | None, str | None]:
        """The instance at ``key`` (None when missing) and the etag of that version."""
        return self._runner.call(self._view.get_with_etag(key), "get_with_etag", key)

    def set(
        self,
        key: str,
        value: M,
        *,
        ttl: TTL = None,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str | None:
        """Store ``value`` at ``key`` as `TypedView.set` does; returns the new etag."""
        write = self._view.set(key, value, ttl=ttl, if_match=if_match, if_none_match=if_none_match)
        return self._runner.call(write, "set", key)

    def has(self, key: str) -> bool:
        """True when ``key`` holds a value."""
        return self._runner.call(self._view.has(key), "has", key)

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        """Remove ``key`` (only the version ``if_match`` names, when given)."""
        self._runner.call(self._view.delete(key, if_match=if_match), "delete", key)

    def get_many(self, keys: Iterable[str]) -> dict[str, M | None]:
        """Instances by normalized key, in input order (None where missing)."""
        return self._runner.call(self._view.get_many(keys), "get_many", walking=True)

    def set_many(
        self, items: Mapping[str, M] | Iterable[tuple[str, M]], *, ttl: TTL = None
    ) -> None:
        """Store many instances, one batch per mount; nothing is written if any fails to
        encode."""
        self._runner.call(self._view.set_many(items, ttl=ttl), "set_many", walking=True)

    def keys(self, base: str = "", *, max_depth: int | None = None) -> list[str]:
        """Every key under ``base`` (relative to the view)."""
        listing = self._view.keys(base, max_depth=max_depth)
        return self._runner.call(listing, "keys", base or None, walking=True)

    def iter_keys(self, base: str = "", *, max_depth: int | None = None) -> PageIterator[str]:
        """The keys `keys` lists, fetched page by page."""
        self._runner.check("iter_keys")
        source = self._view.iter_keys(base, max_depth=max_depth)
        return PageIterator(self._runner, source, page=BATCH_CHUNK, operation="iter_keys")

    def items(self, base: str = "", *, max_depth: int | None = None) -> PageIterator[tuple[str, M]]:
        """``(key, instance)`` for every key under ``base``, fetched in pages."""
        self._runner.check("items")
        source = self._view.items(base, max_depth=max_depth)
        return PageIterator(self._runner, source, page=_VALUES_PAGE, operation="items")

    def values(self, base: str = "", *, max_depth: int | None = None) -> PageIterator[M]:
        """Every instance under ``base``, fetched in pages."""
        self._runner.check("values")
        source = self._view.values(base, max_depth=max_depth)
        return PageIterator(self._runner, source, page=_VALUES_PAGE, operation="values")

    def __repr__(self) -> str:
        return f"<SyncTypedView of {self.model.__qualname__}>"
