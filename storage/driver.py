"""The driver contract: what a backend implements, and correct defaults for the rest.

A driver speaks only to its backend, over mount-relative normalized keys and ``bytes`` values.
Routing, key normalization, serialization, hiding meta keys and event fan-out live in the
core (`storage.Storage`). A driver is registered under the entry-point group
``unistorage.drivers`` (name -> class) and, for each URL scheme it reads, ``unistorage.schemes``.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal
from urllib.parse import parse_qsl, urlsplit

from .atomic import cas_increment, cas_touch
from .errors import InvalidArgumentError, UnsupportedError

__all__ = [
    "META_SUFFIX",
    "Capabilities",
    "Driver",
    "Unwatch",
    "WatchCallback",
    "WatchEvent",
    "Watchers",
    "has_shortcut",
    "is_meta_key",
    "meta_key",
]

logger = logging.getLogger(__name__)

WatchEvent = Literal["update", "remove"]
WatchCallback = Callable[[WatchEvent, str], Any]
Unwatch = Callable[[], Awaitable[None]]

#: Appended to a key to name the sibling entry that holds its user meta. Keys cannot hold
#: control characters, so no user key can collide with a meta key.
META_SUFFIX = "\x1fmeta"

_CLEAR_CHUNK = 1000


def meta_key(key: str) -> str:
    """The sibling key under which the default implementation keeps ``key``'s user meta."""
    return key + META_SUFFIX


def is_meta_key(key: str) -> bool:
    """True for the internal keys that hold user meta (never shown as keys)."""
    return key.endswith(META_SUFFIX)


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a driver can do, as the core checks it instead of guessing.

    Instance data: a layer reports its inner driver's capabilities (changed where it changes
    them), so one driver class can have different capabilities per instance.
    """

    #: Keys expire after a TTL (natively or lazily).
    ttl: bool = False
    #: ``set_item_conditional`` is atomic (compare-and-set on the etag, create-only).
    conditional: bool = False
    #: ``watch`` reports changes.
    watch: bool = False
    #: ``iter_keys`` honours ``max_depth`` itself (the core still filters otherwise).
    native_max_depth: bool = False
    #: ``get_item_nowait`` / ``set_item_nowait`` exist and never block (in-process drivers).
    nowait: bool = False
    #: Every write is refused with `storage.ReadOnlyError`.
    read_only: bool = False
    #: Every call ends on its own within a bounded time (the driver has its own timeouts, or
    #: never waits). Storage puts a default deadline (`storage.layers.Timeout`) in front of a
    #: driver that does not say so.
    bounded: bool = False


#: The driver's shortcuts, each with the methods whose work it does in one step.
_SHORTCUTS = {
    "get_item_with_meta": ("get_item", "get_item_with_etag", "get_meta"),
    "get_item_with_etag_nowait": ("get_item", "get_item_with_etag"),
    "set_item_conditional_nowait": ("set_item", "set_item_conditional"),
}


def has_shortcut(driver: Driver, name: str) -> bool:
    """True when ``driver``'s class overrides the optional shortcut ``name`` of `Driver`."""
    return getattr(type(driver), name) is not getattr(Driver, name)


class Driver(ABC):
    """Base class of every driver. Subclasses implement the four abstract methods.

    ``capabilities`` is a frozen `Capabilities` value. By default it is read once from the
    class flags ``supports_ttl``, ``supports_conditional``, ``supports_watch``,
    ``native_max_depth``, ``supports_nowait`` and the ``read_only`` attribute, so a driver
    written against those flags keeps working; a driver or layer may instead assign
    ``self.capabilities`` in its constructor.
    """

    name: str = "driver"
    schemes: ClassVar[tuple[str, ...]] = ()
    supports_ttl: ClassVar[bool] = False
    supports_conditional: ClassVar[bool] = False
    supports_watch: ClassVar[bool] = False
    native_max_depth: ClassVar[bool] = False
    #: True when ``get_item_nowait`` / ``set_item_nowait`` exist and never block (in-process
    #: drivers): the core then skips a coroutine per call on its single-mount fast path.
    supports_nowait: ClassVar[bool] = False
    read_only: bool = False
    _capabilities: Capabilities | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # A subclass that changes how values, etags or meta are read or written (a test
        # double over the memory driver, a driver over sqlite's) must not have a shortcut of
        # its parent answer past its own methods: it gets the default, made of those methods
        # (for the nowait ones: none, so the core takes the coroutines).
        own = cls.__dict__
        for shortcut, methods in _SHORTCUTS.items():
            if shortcut not in own and any(name in own for name in methods):
                setattr(cls, shortcut, getattr(Driver, shortcut))

    @property
    def capabilities(self) -> Capabilities:
        """What this driver can do (see `Capabilities`)."""
        found = self._capabilities
        if found is None:
            found = Capabilities(
                ttl=self.supports_ttl,
                conditional=self.supports_conditional,
                watch=self.supports_watch,
                native_max_depth=self.native_max_depth,
                nowait=self.supports_nowait,
                read_only=self.read_only,
            )
            # A driver with __slots__ and no room for the cache gets it computed each time.
            with contextlib.suppress(AttributeError):
                self._capabilities = found
        return found

    @capabilities.setter
    def capabilities(self, value: Capabilities) -> None:
        if not isinstance(value, Capabilities):
            raise InvalidArgumentError(f"capabilities are a Capabilities value, not {value!r}")
        self._capabilities = value

    # -- required ---------------------------------------------------------------------------

    @abstractmethod
    async def get_item(self, key: str) -> bytes | None:
        """The stored bytes of ``key``, or None when it is missing (or expired)."""
        raise NotImplementedError

    @abstractmethod
    async def set_item(self, key: str, value: bytes, *, ttl: float | None = None) -> str | None:
        """Store ``value`` at ``key``; ``ttl`` is seconds (> 0) or None for no expiry.

        Returns the new etag where the driver knows it (every driver with conditional writes
        does), else None.
        """
        raise NotImplementedError

    @abstractmethod
    async def remove_item(self, key: str) -> None:
        """Remove ``key``; a missing key is not an error."""
        raise NotImplementedError

    @abstractmethod
    def iter_keys(self, base: str = "", *, max_depth: int | None = None) -> AsyncIterator[str]:
        """Yield every stored key under ``base`` (``""`` or ending in ``:``), meta keys included.

        ``max_depth`` is a hint; the core filters by depth again unless ``native_max_depth``.
        """
        raise NotImplementedError

    # -- optional, with defaults ------------------------------------------------------------

    def get_item_nowait(self, key: str) -> bytes | None:
        """`get_item` without a coroutine; only called when ``capabilities.nowait``."""
        raise UnsupportedError(f"the {self.name} driver has no synchronous reads")

    def set_item_nowait(self, key: str, value: bytes) -> str | None:
        """`set_item` (no TTL) without a coroutine; only called when ``capabilities.nowait``."""
        raise UnsupportedError(f"the {self.name} driver has no synchronous writes")

    def get_item_with_etag_nowait(self, key: str) -> tuple[bytes | None, str | None]:
        """`get_item_with_etag` without a coroutine. Optional for ``nowait`` drivers: the core
        uses it only where a driver class overrides it."""
        raise UnsupportedError(f"the {self.name} driver has no synchronous versioned reads")

    def set_item_conditional_nowait(
        self,
        key: str,
        value: bytes,
        *,
        ttl: float | None = None,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str | None:
        """A write with a TTL or conditions (`set_item_conditional`) without a coroutine.
        Optional for ``nowait`` drivers: the core uses it only where a driver class overrides
        it."""
        raise UnsupportedError(f"the {self.name} driver has no synchronous conditional writes")

    async def has_item(self, key: str) -> bool:
        """True when ``key`` holds a value."""
        return await self.get_item(key) is not None

    async def get_items(self, keys: Sequence[str]) -> list[bytes | None]:
        """The values of ``keys``, in order (None where missing)."""
        if len(keys) == 1:
            return [await self.get_item(keys[0])]
        return list(await asyncio.gather(*(self.get_item(key) for key in keys)))

    async def set_items(
        self, items: Sequence[tuple[str, bytes]], *, ttl: float | None = None
    ) -> None:
        """Store every ``(key, value)`` pair."""
        await asyncio.gather(*(self.set_item(key, value, ttl=ttl) for key, value in items))

    async def remove_items(self, keys: Sequence[str]) -> None:
        """Remove every key in ``keys``."""
        await asyncio.gather(*(self.remove_item(key) for key in keys))

    async def get_keys(self, base: str = "", *, max_depth: int | None = None) -> list[str]:
        """Every key under ``base``, as a list."""
        return [key async for key in self.iter_keys(base, max_depth=max_depth)]

    async def clear(self, base: str = "") -> None:
        """Remove every key under ``base`` (meta keys included)."""
        keys = await self.get_keys(base)
        for start in range(0, len(keys), _CLEAR_CHUNK):
            await self.remove_items(keys[start : start + _CLEAR_CHUNK])

    async def list_page(
        self,
        base: str = "",
        *,
        limit: int,
        cursor: str | None = None,
        max_depth: int | None = None,
    ) -> tuple[list[str], str | None]:
        """Up to ``limit`` keys under ``base`` (meta keys included) after ``cursor``, and the
        cursor of the next page (None after the last).

        The default lists every key, sorts them and resumes after the last key returned: a key
        present for the whole listing is listed exactly once, whatever changes meanwhile.
        Drivers with their own cursors (a key range, SCAN, continuation tokens) override it.
        """
        keys = sorted(await self.get_keys(base, max_depth=max_depth))
        start = bisect.bisect_right(keys, cursor) if cursor is not None else 0
        page = keys[start : start + limit]
        return page, page[-1] if page and start + limit < len(keys) else None

    async def read_chunks(self, key: str, chunk_size: int) -> AsyncIterator[bytes] | None:
        """The value of ``key`` as chunks of at most ``chunk_size`` bytes, or None when it is
        missing. The default reads it whole; drivers that can read in parts override it."""
        value = await self.get_item(key)
        return None if value is None else _chunked(value, chunk_size)

    async def write_chunks(
        self, key: str, chunks: AsyncIterator[bytes], *, ttl: float | None = None
    ) -> str | None:
        """Store the bytes ``chunks`` yields at ``key``, atomically: nothing is visible unless
        every chunk arrives. Returns the new etag where known. The default gathers the chunks
        and writes once; drivers that can write in parts override it."""
        parts = [chunk async for chunk in chunks]
        return await self.set_item(key, b"".join(parts), ttl=ttl)

    async def get_url(self, key: str, *, expires: float, method: str = "GET") -> str:
        """A URL that lets anyone holding it ``GET`` (or ``PUT``) ``key`` for ``expires``
        seconds, without credentials; only drivers that can sign one (s3) override this."""
        raise UnsupportedError(f"the {self.name} driver cannot give out URLs to its values")

    async def get_meta(self, key: str) -> dict[str, Any]:
        """Native metadata of ``key`` (``mtime``, ``atime``, ``size``, ``ttl``, ``etag``...)."""
        return {}

    async def set_item_conditional(
        self,
        key: str,
        value: bytes,
        *,
        ttl: float | None = None,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str | None:
        """Store ``value`` only if the stored etag is ``if_match`` (``"*"``: only if the key
        exists) / only if the key is absent (``if_none_match``).

        Raise `storage.ConflictError` otherwise; return the new etag. Drivers that cannot do
        this atomically keep this default, which refuses.
        """
        raise UnsupportedError(f"the {self.name} driver has no atomic conditional writes")

    async def remove_item_conditional(self, key: str, *, if_match: str) -> None:
        """Remove ``key`` only if its etag is ``if_match`` (``"*"``: only if it exists).

        Raise `storage.ConflictError` otherwise (a missing key is a conflict too). Part of the
        ``conditional`` capability: drivers without it keep this default, which refuses.
        """
        raise UnsupportedError(f"the {self.name} driver has no atomic conditional removes")

    async def increment(self, key: str, by: int, *, ttl: float | None = None) -> int:
        """Add ``by`` to the integer stored at ``key`` as JSON text (created at 0) and return
        the new value, atomically. ``ttl`` is given to a key the increment creates.

        The default is a compare-and-set loop (`storage.atomic`), on drivers with conditional
        writes; drivers with a native counter override it.
        """
        if not self.capabilities.conditional:
            raise UnsupportedError(f"the {self.name} driver has no atomic increment")
        return await cas_increment(self, key, by, ttl)

    async def touch(self, key: str, ttl: float) -> bool:
        """Give ``key`` a new TTL of ``ttl`` seconds, keeping its value; False when absent.

        The default rewrites the value by compare-and-set (drivers with TTL and conditional
        writes); drivers that can change an expiry alone override it.
        """
        if not (self.capabilities.ttl and self.capabilities.conditional):
            raise UnsupportedError(f"the {self.name} driver cannot renew a TTL atomically")
        return await cas_touch(self, key, ttl)

    async def get_item_touch(self, key: str, ttl: float) -> bytes | None:
        """`get_item` that also renews the key's TTL to ``ttl`` (one round trip where the
        backend can, as redis GETEX); the default reads, then touches."""
        value = await self.get_item(key)
        if value is not None:
            await self.touch(key, ttl)
        return value

    async def get_item_with_etag(self, key: str) -> tuple[bytes | None, str | None]:
        """The value of ``key`` and its etag (None where unknown), for compare-and-set loops.

        The default reads the etag first, then the value: should the value change in between,
        a write conditioned on that etag fails instead of overwriting the newer value. Drivers
        that can read both at once override this.
        """
        etag = (await self.get_meta(key)).get("etag") if self.capabilities.conditional else None
        value = await self.get_item(key)
        return value, etag if isinstance(etag, str) and value is not None else None

    async def get_item_with_meta(self, key: str) -> tuple[bytes | None, dict[str, Any]]:
        """The value of ``key`` and its native meta, as a server answering a GET needs them:
        ``(None, {})`` when missing. The meta's ``etag`` names exactly the bytes returned (it
        is left out where unknown); its other fields may describe a write that landed in
        between where the driver cannot read both at once.

        The default is `get_item_with_etag`, then `get_meta`; drivers that keep both in one
        place override it with one read.
        """
        value, etag = await self.get_item_with_etag(key)
        if value is None:
            return None, {}
        meta = dict(await self.get_meta(key))
        if etag is None:
            meta.pop("etag", None)  # it may name a newer value than the one read
        else:
            meta["etag"] = etag
        return value, meta

    async def get_user_meta(self, key: str) -> bytes | None:
        """The encoded user meta of ``key``, kept by default in a sibling entry."""
        return await self.get_item(meta_key(key))

    async def get_user_metas(self, keys: Sequence[str]) -> list[bytes | None]:
        """The encoded user meta of each of ``keys``, in order (None where there is none).

        Where user meta lives in sibling entries (the default), this is one `get_items`;
        a driver that keeps meta its own way gets its `get_user_meta` once per key.
        """
        if type(self).get_user_meta is Driver.get_user_meta:
            return await self.get_items([meta_key(key) for key in keys])
        return list(await asyncio.gather(*(self.get_user_meta(key) for key in keys)))

    async def set_user_meta(self, key: str, data: bytes) -> None:
        """Store the encoded user meta of ``key``."""
        await self.set_item(meta_key(key), data)

    async def remove_user_meta(self, key: str) -> None:
        """Forget the user meta of ``key``."""
        await self.remove_item(meta_key(key))

    async def watch(self, callback: WatchCallback) -> Unwatch:
        """Call ``callback(event, key)`` on every change; return a coroutine function to stop."""
        raise UnsupportedError(f"the {self.name} driver cannot watch for changes")

    async def dispose(self) -> None:  # noqa: B027 - optional: most drivers hold nothing
        """Release connections, files and tasks; the driver is not used afterwards."""

    # -- construction -----------------------------------------------------------------------

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Driver:
        """Build a driver from a URL of one of its ``schemes``.

        The default reads the query string as keyword options (``true``/``false`` and numbers
        converted); drivers with a meaningful host or path override it.
        """
        parts = urlsplit(url)
        if cls.schemes and parts.scheme not in cls.schemes:
            raise InvalidArgumentError(f"the {cls.name} driver does not read {parts.scheme!r} URLs")
        return cls(**{**parse_url_options(parts.query), **options})

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


async def _chunked(value: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(value), size):
        yield value[start : start + size]


def parse_url_options(query: str) -> dict[str, Any]:
    """Read a URL query string as keyword options, converting booleans and numbers."""
    options: dict[str, Any] = {}
    for name, raw in parse_qsl(query, keep_blank_values=True):
        options[name] = _convert(raw)
    return options


def _convert(raw: str) -> Any:
    lowered = raw.lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    return raw


class Watchers:
    """The callbacks watching one driver; for drivers that see their own changes."""

    __slots__ = ("_callbacks",)

    def __init__(self) -> None:
        self._callbacks: list[WatchCallback] = []

    def __bool__(self) -> bool:
        return bool(self._callbacks)

    @property
    def callbacks(self) -> list[WatchCallback]:
        """The live list of callbacks; hot paths test it directly instead of calling bool()."""
        return self._callbacks

    def add(self, callback: WatchCallback) -> Unwatch:
        """Register ``callback``; the returned coroutine function removes it."""
        self._callbacks.append(callback)

        async def unwatch() -> None:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

        return unwatch

    def emit(self, event: WatchEvent, key: str) -> None:
        """Call every callback; one that raises is logged and does not stop the others."""
        for callback in list(self._callbacks):
            try:
                callback(event, key)
            except Exception:
                logger.exception("watch callback failed for %s %r", event, key)

    def clear(self) -> None:
        """Drop every callback."""
        self._callbacks.clear()
