"""Litestar: any unistorage Storage as a Litestar `Store`, and our sessions as a plugin.

`UnistorageStore` makes every driver usable wherever Litestar takes a store (response
caching, rate limiting, its own server-side sessions)::

    store = UnistorageStore(create_storage("redis://localhost"))
    app = Litestar(stores=StoreRegistry(default_factory=store.with_namespace), ...)

`SessionPlugin` puts `SessionMiddleware` in front of the app, provides a ``session``
dependency (the request's `Session`, typed by the handler's annotation) and disposes the
Storage at shutdown::

    app = Litestar(route_handlers=[...], plugins=[SessionPlugin(sessions)])

    @post("/cart")
    async def add(session: NamedDependency[Session[CartData]]) -> None: ...

(``litestar.di.NamedDependency`` since Litestar 2.23; a bare ``Session[CartData]`` works too.)
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from litestar import Request
from litestar.config.app import AppConfig
from litestar.di import Provide
from litestar.plugins import InitPluginProtocol
from litestar.stores.base import NamespacedStore

from storage import Storage, UnsupportedError

from .manager import Sessions
from .middleware import SessionMiddleware
from .session import Session

__all__ = ["SessionPlugin", "UnistorageStore"]


def _seconds(value: int | timedelta | None) -> float | None:
    if isinstance(value, timedelta):
        return value.total_seconds()
    return None if value is None else float(value)


class UnistorageStore(NamespacedStore):
    """A Litestar store over a Storage: values at ``<namespace>:<escaped key>``, raw bytes,
    expiry by the driver's TTL (so it needs a driver with TTL for values that expire).

    Keys are escaped into one key segment (``%XX`` for anything but letters, digits and
    ``-._~``), so Litestar's keys (paths, IPs, IDs) are stored exactly, and a namespace is a
    base of its own: ``delete_all`` clears it and every namespace below it.
    """

    __slots__ = ("_base", "_storage")

    def __init__(self, storage: Storage, namespace: str = "litestar") -> None:
        """``storage``: where values live; ``namespace``: their base in it."""
        self._storage = storage
        self.namespace = namespace
        self._base = namespace

    def with_namespace(self, namespace: str) -> UnistorageStore:
        """A store for the child ``namespace``, cleared with this one by `delete_all`."""
        return UnistorageStore(self._storage, f"{self._base}:{quote(namespace, safe='')}")

    def _key(self, key: str) -> str:
        return f"{self._base}:{quote(key, safe='') or '%'}"

    async def set(
        self, key: str, value: str | bytes, expires_in: int | timedelta | None = None
    ) -> None:
        """Store ``value`` (text as UTF-8) at ``key``, for ``expires_in`` seconds if given."""
        data = value.encode("utf-8") if isinstance(value, str) else value
        await self._storage.set_item_raw(self._key(key), data, ttl=_seconds(expires_in))

    async def get(self, key: str, renew_for: int | timedelta | None = None) -> bytes | None:
        """The bytes at ``key``, or None; ``renew_for`` restarts the expiry of a key that has
        one (a key stored without expiry keeps none)."""
        full = self._key(key)
        seconds = _seconds(renew_for)
        if seconds is None or not (await self._storage.get_native_meta(full)).get("ttl"):
            return await self._storage.get_item_raw(full)
        try:
            return await self._storage.get_item_raw(full, renew_ttl=seconds)
        except UnsupportedError:
            # No atomic renewal on this driver (overlay): write the value back with the TTL.
            data = await self._storage.get_item_raw(full)
            if data is not None:
                await self._storage.set_item_raw(full, data, ttl=seconds)
            return data

    async def delete(self, key: str) -> None:
        """Remove ``key``; a missing key is fine."""
        await self._storage.remove_item(self._key(key))

    async def delete_all(self) -> None:
        """Remove every key of this namespace and of the namespaces below it."""
        await self._storage.clear(self._base)

    async def exists(self, key: str) -> bool:
        """True when ``key`` holds a value that has not expired."""
        return await self._storage.has_item(self._key(key))

    async def expires_in(self, key: str) -> int | None:
        """Whole seconds until ``key`` expires; None when it is missing or never expires."""
        ttl = (await self._storage.get_native_meta(self._key(key))).get("ttl")
        return None if ttl is None else max(0, math.floor(ttl))


class SessionPlugin(InitPluginProtocol):
    """Our sessions in a Litestar app: the middleware, a ``session`` dependency, and the
    Storage disposed at shutdown (``dispose=False`` when the app does not own it)."""

    __slots__ = ("_dispose", "_sessions")

    def __init__(self, sessions: Sessions[Any], *, dispose: bool = True) -> None:
        self._sessions = sessions
        self._dispose = dispose

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        sessions = self._sessions

        async def session(request: Request[Any, Any, Any]) -> Session[Any]:
            return sessions.of(request)

        def middleware(app: Any) -> Any:  # Litestar's ASGI types are its own; ours are plain
            return SessionMiddleware(app, sessions)

        app_config.middleware.insert(0, middleware)
        app_config.dependencies["session"] = Provide(session)
        if self._dispose:
            app_config.on_shutdown.append(self._shutdown)
        return app_config

    async def _shutdown(self) -> None:
        await self._sessions.root.dispose()
