"""The driver contract: what a backend implements, and correct defaults for the rest.

A driver speaks only to its backend, over mount-relative normalized keys and ``bytes`` values.
Routing, key normalization, serialization, hiding meta keys and event fan-out live in the
core (`storage.Storage`). A driver is registered under the entry-point group
``unistorage.drivers`` (name -> class) and, for each URL scheme it reads, ``unistorage.schemes``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, ClassVar, Literal
from urllib.parse import parse_qsl, urlsplit

from .errors import InvalidArgumentError, UnsupportedError

__all__ = [
    "META_SUFFIX",
    "Driver",
    "Unwatch",
    "WatchCallback",
    "WatchEvent",
    "Watchers",
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


class Driver:
    """Base class of every driver. Subclasses implement the four required methods.

    Capability flags are class attributes the core checks instead of guessing:
    ``supports_ttl``, ``supports_conditional``, ``supports_watch``, ``native_max_depth``,
    ``supports_nowait``; ``read_only`` may also be set per instance.
    """

    name: ClassVar[str] = "driver"
    schemes: ClassVar[tuple[str, ...]] = ()
    supports_ttl: ClassVar[bool] = False
    supports_conditional: ClassVar[bool] = False
    supports_watch: ClassVar[bool] = False
    native_max_depth: ClassVar[bool] = False
    #: True when ``get_item_nowait`` / ``set_item_nowait`` exist and never block (in-process
    #: drivers): the core then skips a coroutine per call on its single-mount fast path.
    supports_nowait: ClassVar[bool] = False
    read_only: bool = False

    # -- required ---------------------------------------------------------------------------

    async def get_item(self, key: str) -> bytes | None:
        """The stored bytes of ``key``, or None when it is missing (or expired)."""
        raise NotImplementedError

    async def set_item(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        """Store ``value`` at ``key``; ``ttl`` is seconds (> 0) or None for no expiry."""
        raise NotImplementedError

    async def remove_item(self, key: str) -> None:
        """Remove ``key``; a missing key is not an error."""
        raise NotImplementedError

    def iter_keys(self, base: str = "", *, max_depth: int | None = None) -> AsyncIterator[str]:
        """Yield every stored key under ``base`` (``""`` or ending in ``:``), meta keys included.

        ``max_depth`` is a hint; the core filters by depth again unless ``native_max_depth``.
        """
        raise NotImplementedError

    # -- optional, with defaults ------------------------------------------------------------

    def get_item_nowait(self, key: str) -> bytes | None:
        """`get_item` without a coroutine; only called when ``supports_nowait`` is True."""
        raise UnsupportedError(f"the {self.name} driver has no synchronous reads")

    def set_item_nowait(self, key: str, value: bytes) -> None:
        """`set_item` (no TTL) without a coroutine; only called when ``supports_nowait``."""
        raise UnsupportedError(f"the {self.name} driver has no synchronous writes")

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
        """Store ``value`` only if the stored etag is ``if_match`` / the key is absent.

        Raise `storage.ConflictError` otherwise; return the new etag when known. Drivers that
        cannot do this atomically keep this default, which refuses.
        """
        raise UnsupportedError(f"the {self.name} driver has no atomic conditional writes")

    async def get_item_with_etag(self, key: str) -> tuple[bytes | None, str | None]:
        """The value of ``key`` and its etag (None where unknown), for compare-and-set loops.

        The default reads the etag first, then the value: should the value change in between,
        a write conditioned on that etag fails instead of overwriting the newer value. Drivers
        that can read both at once override this.
        """
        etag = (await self.get_meta(key)).get("etag") if self.supports_conditional else None
        value = await self.get_item(key)
        return value, etag if isinstance(etag, str) and value is not None else None

    async def get_user_meta(self, key: str) -> bytes | None:
        """The encoded user meta of ``key``, kept by default in a sibling entry."""
        return await self.get_item(meta_key(key))

    async def set_user_meta(self, key: str, data: bytes) -> None:
        """Store the encoded user meta of ``key``."""
        await self.set_item(meta_key(key), data)

    async def remove_user_meta(self, key: str) -> None:
        """Forget the user meta of ``key``."""
        await self.remove_item(meta_key(key))

    async def watch(self, callback: WatchCallback) -> Unwatch:
        """Call ``callback(event, key)`` on every change; return a coroutine function to stop."""
        raise UnsupportedError(f"the {self.name} driver cannot watch for changes")

    async def dispose(self) -> None:
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
