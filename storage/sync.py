"""`SyncStorage`: the whole Storage API, blocking, for scripts, notebooks and WSGI apps.

``with storage.sync.create_storage("redis://localhost") as s: s.set_item("k", 1)``. Each
SyncStorage owns one event loop on one daemon thread; its drivers are built and run only
there, so a driver bound to a loop (httpx, redis-py, asyncio locks) always sees the same
one. Any number of threads may call it at once. Errors are the async API's own classes. See
docs/sync.md.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, TypeVar

from ._sync_runner import MARGIN, Runner, awaited, check_timeout, on_loop, refuse_running_loop
from ._sync_streams import PageIterator, SyncReader, SyncWriter
from ._sync_views import SyncLock, SyncTypedView
from .driver import Capabilities, Driver, WatchCallback
from .errors import InvalidArgumentError
from .listing import BATCH_CHUNK
from .mounts import Mount
from .storage import DEFAULT_DEADLINE, Storage
from .storage import create_storage as create_async_storage
from .streams import DEFAULT_CHUNK
from .ttl import TTL
from .typed import Codec
from .values import Serializer

__all__ = [
    "PageIterator",
    "SyncLock",
    "SyncReader",
    "SyncStorage",
    "SyncTypedView",
    "SyncWriter",
    "create_storage",
]

_M = TypeVar("_M")


class SyncStorage:
    """Blocking calls over a `Storage` that lives on this object's own event-loop thread.

    Make one with `create_storage`, `SyncStorage.build` or `SyncStorage.wrap`. Every method
    means what the `Storage` method of the same name means. A call waits at most the call
    timeout (the storage's deadline + 5 s by default) for calls on one key; a call that walks
    many keys (batches, listing, clear, snapshot) waits as long as its loop keeps answering.
    A call on the loop thread itself (a watch callback), or inside a running event loop,
    raises `StorageError` instead of deadlocking; so does any call after `close`.
    """

    __slots__ = ("_owner", "_runner", "_storage")

    def __init__(self, runner: Runner, storage: Storage, *, owner: bool = True) -> None:
        self._runner = runner
        self._storage = storage
        self._owner = owner

    # -- construction -----------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        factory: Callable[[], Storage | Awaitable[Storage]],
        *,
        timeout: float | None = None,
        allow_running_loop: bool = False,
    ) -> SyncStorage:
        """A SyncStorage over the Storage ``factory()`` makes (it may be a coroutine
        function), called on the new loop thread, so that drivers binding to the running loop
        when built bind to that one.

        ``timeout``: seconds a call on one key waits (default: `DEFAULT_DEADLINE` + 5;
        ``math.inf``: no bound). ``allow_running_loop``: accept calls from a thread running an
        event loop, which they block while they wait (a notebook cell).
        """
        refuse_running_loop(allow_running_loop)
        limit = check_timeout(DEFAULT_DEADLINE + MARGIN if timeout is None else timeout)
        runner = Runner(timeout=limit, allow_running_loop=allow_running_loop)
        try:
            storage = runner.call(_made(factory), "create_storage", walking=True)
            if not isinstance(storage, Storage):
                raise InvalidArgumentError(f"the factory made {storage!r}, not a Storage")
        except BaseException:
            runner.close()
            raise
        runner.on_close = storage.dispose
        return cls(runner, storage)

    @classmethod
    def wrap(
        cls, storage: Storage, *, timeout: float | None = None, allow_running_loop: bool = False
    ) -> SyncStorage:
        """A SyncStorage that takes over ``storage`` (`close` disposes it). The storage must
        not have run on another event loop: its drivers would stay bound to that one."""
        if not isinstance(storage, Storage):
            raise InvalidArgumentError(f"wrap takes a Storage, not {storage!r}")
        return cls.build(lambda: storage, timeout=timeout, allow_running_loop=allow_running_loop)

    # -- single items -------------------------------------------------------------------------

    def has_item(self, key: str) -> bool:
        """True when ``key`` holds a value."""
        return self._runner.call(self._storage.has_item(key), "has_item", key)

    def get_item(self, key: str, default: Any = None, *, renew_ttl: TTL = None) -> Any:
        """The value of ``key``, or ``default``; ``renew_ttl`` also gives it that TTL."""
        read = self._storage.get_item(key, default, renew_ttl=renew_ttl)
        return self._runner.call(read, "get_item", key)

    def get_item_raw(
        self, key: str, default: bytes | None = None, *, renew_ttl: TTL = None
    ) -> bytes | None:
        """The stored bytes of ``key`` (no serializer), or ``default``."""
        read = self._storage.get_item_raw(key, default, renew_ttl=renew_ttl)
        return self._runner.call(read, "get_item_raw", key)

    def get_item_with_etag(self, key: str, default: Any = None) -> tuple[Any, str | None]:
        """The value of ``key`` (or ``default``) and its etag, for ``if_match``."""
        read = self._storage.get_item_with_etag(key, default)
        return self._runner.call(read, "get_item_with_etag", key)

    def get_item_raw_with_etag(self, key: str) -> tuple[bytes | None, str | None]:
        """The stored bytes of ``key`` (None when missing) and the etag of those bytes."""
        read = self._storage.get_item_raw_with_etag(key)
        return self._runner.call(read, "get_item_raw_with_etag", key)

    def set_item(
        self,
        key: str,
        value: Any,
        *,
        ttl: TTL = None,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str | None:
        """Store ``value`` at ``key`` (conditionally with ``if_match`` / ``if_none_match``,
        else `ConflictError`); returns the new etag."""
        write = self._storage.set_item(
            key, value, ttl=ttl, if_match=if_match, if_none_match=if_none_match
        )
        return self._runner.call(write, "set_item", key)

    def set_item_raw(
        self,
        key: str,
        data: bytes,
        *,
        ttl: TTL = None,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str | None:
        """Store bytes at ``key`` as they are (no serializer); returns the new etag."""
        write = self._storage.set_item_raw(
            key, data, ttl=ttl, if_match=if_match, if_none_match=if_none_match
        )
        return self._runner.call(write, "set_item_raw", key)

    def remove_item(
        self, key: str, *, remove_meta: bool = False, if_match: str | None = None
    ) -> None:
        """Remove ``key`` (only the version ``if_match`` names, when given)."""
        remove = self._storage.remove_item(key, remove_meta=remove_meta, if_match=if_match)
        self._runner.call(remove, "remove_item", key)

    def increment(self, key: str, by: int = 1, *, ttl: TTL = None) -> int:
        """Add ``by`` to the integer at ``key`` atomically; returns the new value."""
        return self._runner.call(self._storage.increment(key, by, ttl=ttl), "increment", key)

    def touch(self, key: str, ttl: TTL) -> bool:
        """Give ``key`` a new TTL, value unchanged; False when the key does not exist."""
        return self._runner.call(self._storage.touch(key, ttl), "touch", key)

    def get_url(self, key: str, *, expires: TTL, method: str = "GET") -> str:
        """A URL that lets its holder GET (or PUT) ``key`` until ``expires`` (presigned)."""
        sign = self._storage.get_url(key, expires=expires, method=method)
        return self._runner.call(sign, "get_url", key)

    # -- batches ------------------------------------------------------------------------------

    def get_items(self, keys: Iterable[str]) -> dict[str, Any]:
        """Values of ``keys`` by normalized key, in input order (None where missing)."""
        return self._runner.call(self._storage.get_items(keys), "get_items", walking=True)

    def get_items_raw(self, keys: Iterable[str]) -> dict[str, bytes | None]:
        """Stored bytes of ``keys`` by normalized key, in input order."""
        return self._runner.call(self._storage.get_items_raw(keys), "get_items_raw", walking=True)

    def set_items(
        self, items: Mapping[str, Any] | Iterable[tuple[str, Any]], *, ttl: TTL = None
    ) -> None:
        """Store many values, one batch per mount; nothing is written if any value fails."""
        self._runner.call(self._storage.set_items(items, ttl=ttl), "set_items", walking=True)

    def set_items_raw(
        self, items: Mapping[str, bytes] | Iterable[tuple[str, bytes]], *, ttl: TTL = None
    ) -> None:
        """Store many byte values as they are, one batch per mount."""
        write = self._storage.set_items_raw(items, ttl=ttl)
        self._runner.call(write, "set_items_raw", walking=True)

    def remove_items(self, keys: Iterable[str], *, remove_meta: bool = False) -> None:
        """Remove many keys, one batch per mount."""
        remove = self._storage.remove_items(keys, remove_meta=remove_meta)
        self._runner.call(remove, "remove_items", walking=True)

    # -- meta ---------------------------------------------------------------------------------

    def get_meta(self, key: str) -> dict[str, Any]:
        """User meta of ``key`` overlaid with the driver's own fields (mtime, ttl, etag...)."""
        return self._runner.call(self._storage.get_meta(key), "get_meta", key)

    def get_item_raw_with_meta(self, key: str) -> tuple[bytes | None, dict[str, Any]]:
        """`Storage.get_item_raw_with_meta`."""
        read = self._storage.get_item_raw_with_meta(key)
        return self._runner.call(read, "get_item_raw_with_meta", key)

    def get_native_meta(self, key: str) -> dict[str, Any]:
        """Only the driver's own fields of ``key`` (empty when missing)."""
        return self._runner.call(self._storage.get_native_meta(key), "get_native_meta", key)

    def get_meta_raw(self, key: str) -> bytes | None:
        """The encoded user meta of ``key`` as stored (None when there is none)."""
        return self._runner.call(self._storage.get_meta_raw(key), "get_meta_raw", key)

    def get_metas_raw(self, keys: Iterable[str]) -> dict[str, bytes | None]:
        """The encoded user meta of many keys by normalized key, in input order."""
        return self._runner.call(self._storage.get_metas_raw(keys), "get_metas_raw", walking=True)

    def set_meta(self, key: str, meta: Mapping[str, Any]) -> None:
        """Store user meta beside ``key`` (never listed as a key)."""
        self._runner.call(self._storage.set_meta(key, meta), "set_meta", key)

    def set_meta_raw(self, key: str, data: bytes) -> None:
        """Store encoded user meta beside ``key``; it must decode to a mapping."""
        self._runner.call(self._storage.set_meta_raw(key, data), "set_meta_raw", key)

    def remove_meta(self, key: str) -> None:
        """Forget the user meta of ``key``."""
        self._runner.call(self._storage.remove_meta(key), "remove_meta", key)

    # -- locks, streams, typed views ----------------------------------------------------------

    def lock(
        self, key: str, *, ttl: TTL, wait: float | None = None, renew: bool = True
    ) -> SyncLock:
        """A lease on ``key``: ``with storage.lock("jobs:nightly", ttl=30, wait=10):``."""
        self._runner.check("lock")
        return SyncLock(self._runner, self._storage.lock(key, ttl=ttl, wait=wait, renew=renew))

    def open_read(self, key: str, *, chunk_size: int = DEFAULT_CHUNK) -> SyncReader:
        """``with storage.open_read(key) as reader``: the bytes of ``key`` in chunks."""
        self._runner.check("open_read")
        storage = self._storage
        return SyncReader(self._runner, key, lambda: storage.open_read(key, chunk_size=chunk_size))

    def open_write(self, key: str, *, ttl: TTL = None) -> SyncWriter:
        """``with storage.open_write(key) as writer``: an atomic write, chunk by chunk."""
        self._runner.check("open_write")
        storage = self._storage
        return SyncWriter(self._runner, key, lambda: storage.open_write(key, ttl=ttl))

    def typed(
        self, model: type[_M], *, base: str = "", codec: Codec[_M] | None = None
    ) -> SyncTypedView[_M]:
        """A view of the keys under ``base`` whose values are ``model`` instances."""
        self._runner.check("typed")
        view = self._storage.typed(model, base=base, codec=codec)
        return SyncTypedView(self._runner, view)

    # -- listing and clearing -----------------------------------------------------------------

    def get_keys(self, base: str = "", *, max_depth: int | None = None) -> list[str]:
        """Every key under ``base``, from every mount at or under it; shadowed keys hidden."""
        listing = self._storage.get_keys(base, max_depth=max_depth)
        return self._runner.call(listing, "get_keys", base or None, walking=True)

    def iter_keys(self, base: str = "", *, max_depth: int | None = None) -> PageIterator[str]:
        """The keys `get_keys` lists, fetched a page (1000 keys) per round trip."""
        self._runner.check("iter_keys")
        source = self._storage.iter_keys(base, max_depth=max_depth)
        return PageIterator(self._runner, source, page=BATCH_CHUNK, operation="iter_keys")

    def list_keys(
        self,
        base: str = "",
        *,
        limit: int,
        cursor: str | None = None,
        max_depth: int | None = None,
    ) -> tuple[list[str], str | None]:
        """One page of keys (at most ``limit``) and the cursor of the next (None after the
        last)."""
        page = self._storage.list_keys(base, limit=limit, cursor=cursor, max_depth=max_depth)
        return self._runner.call(page, "list_keys", base or None, walking=True)

    def clear(self, base: str = "") -> None:
        """Remove exactly the keys `get_keys(base)` lists (with their meta)."""
        self._runner.call(self._storage.clear(base), "clear", base or None, walking=True)

    def snapshot(self, base: str = "") -> dict[str, Any]:
        """Every value under ``base``, by key relative to ``base``."""
        return self._runner.call(self._storage.snapshot(base), "snapshot", walking=True)

    def restore_snapshot(self, data: Mapping[str, Any], base: str = "") -> None:
        """Write a `snapshot` back, under ``base``."""
        restore = self._storage.restore_snapshot(data, base)
        self._runner.call(restore, "restore_snapshot", walking=True)

    # -- mounts -------------------------------------------------------------------------------

    def mount(self, base: str, driver: Driver | str) -> SyncStorage:
        """Mount ``driver`` (built on the loop thread from a name or URL) at ``base``."""
        self._runner.call(on_loop(self._storage.mount, base, driver), "mount", base)
        return self

    def unmount(self, base: str, *, dispose: bool = True) -> None:
        """Remove the mount at ``base``; dispose its driver unless ``dispose=False``."""
        remove = self._storage.unmount(base, dispose=dispose)
        self._runner.call(remove, "unmount", base, walking=True)

    def get_mount(self, key: str = "") -> Mount:
        """The mount that holds ``key``."""
        self._runner.check("get_mount")
        return self._storage.get_mount(key)

    def get_mounts(self, base: str = "", *, parents: bool = False) -> list[Mount]:
        """Mounts at or under ``base`` (and, with ``parents``, those above it)."""
        self._runner.check("get_mounts")
        return self._storage.get_mounts(base, parents=parents)

    def capabilities(self, key: str = "") -> Capabilities:
        """What the driver serving ``key`` can do."""
        self._runner.check("capabilities")
        return self._storage.capabilities(key)

    # -- watching -----------------------------------------------------------------------------

    def watch(self, callback: WatchCallback) -> Callable[[], None]:
        """Call ``callback(event, key)`` for changes; returns a function that stops it.

        The callback runs on the storage's loop thread: keep it short, and hand work that
        calls this storage to another thread (a call from there raises `StorageError`).
        """
        unwatch = self._runner.call(self._storage.watch(callback), "watch", walking=True)
        runner = self._runner

        def stop() -> None:
            if not runner.closed:  # closing the storage ended the watch already
                runner.call(awaited(unwatch), "unwatch", walking=True)

        return stop

    def unwatch(self) -> None:
        """Stop every watch this storage started."""
        self._runner.call(self._storage.unwatch(), "unwatch", walking=True)

    # -- views and lifecycle --------------------------------------------------------------------

    def namespace(self, base: str) -> SyncStorage:
        """A view whose keys are relative to ``base``; it shares this storage's loop and
        mounts, and its `close` only stops its own watches."""
        self._runner.check("namespace")
        return SyncStorage(self._runner, self._storage.namespace(base), owner=False)

    @property
    def prefix(self) -> str:
        """The base of this namespace view (``""`` for a storage made by `create_storage`)."""
        return self._storage.prefix

    @property
    def serializer(self) -> Serializer:
        """The serializer that turns values into bytes for this storage."""
        return self._storage.serializer

    @property
    def closed(self) -> bool:
        """True once this storage (or, for a view, the storage it came from) is closed."""
        return self._runner.closed

    def close(self) -> None:
        """Dispose every driver on the loop, then stop the loop thread; idempotent.

        On a namespace view, only stop its watches. Any call after this raises `StorageError`.
        """
        if not self._owner:
            if not self._runner.closed:
                self.unwatch()
            return
        self._runner.close()

    dispose = close

    def __enter__(self) -> SyncStorage:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # Short aliases.
    get = get_item
    set = set_item
    has = has_item
    delete = remove_item
    keys = get_keys

    def __repr__(self) -> str:
        state = " closed" if self._runner.closed else ""
        return f"<SyncStorage{state} prefix={self._storage.prefix!r}>"


def create_storage(
    driver: Driver | str | None = None,
    *,
    serializer: Serializer | None = None,
    mounts: Mapping[str, Driver | str] | None = None,
    deadline: float | None = DEFAULT_DEADLINE,
    timeout: float | None = None,
    allow_running_loop: bool = False,
) -> SyncStorage:
    """A `SyncStorage` made as `storage.create_storage` makes a Storage, on its loop thread.

    Drivers named by a name or URL are built on that thread. ``timeout``: seconds a call on
    one key waits for its answer (default: ``deadline`` + 5; ``math.inf``: no bound).
    ``allow_running_loop``: as for `SyncStorage.build`.
    """
    if timeout is None and isinstance(deadline, (int, float)):
        timeout = deadline + MARGIN  # a wrong deadline is refused by the async create_storage

    def make() -> Storage:
        return create_async_storage(driver, serializer=serializer, mounts=mounts, deadline=deadline)

    return SyncStorage.build(make, timeout=timeout, allow_running_loop=allow_running_loop)


async def _made(factory: Callable[[], Storage | Awaitable[Storage]]) -> Storage:
    made = factory()
    return await made if inspect.isawaitable(made) else made
