"""``BACKEND = "sessions.django.cache.UnistorageCache"``: a Django cache over any driver.

``LOCATION`` is a driver URL (else the ``UNISTORAGE_STORAGE`` setting); ``OPTIONS``:
``{"namespace": "django-cache"}``. Keys are Django's (prefix, version, key) escaped into one
key segment, so any key Django allows is stored exactly; values go through the Storage's
serializer (no pickle: a value it cannot store raises `storage.SerializationError`).
Timeouts follow Django: None is forever, 0 or less expires at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache

from storage import ConflictError

from . import storage_for

__all__ = ["UnistorageCache"]


class UnistorageCache(BaseCache):
    """Django's cache API over a SyncStorage."""

    def __init__(self, location: str, params: dict[str, Any]) -> None:
        super().__init__(params)
        self._store = storage_for(location or None)
        options = params.get("OPTIONS", {})
        self._base = options.get("namespace", "django-cache")

    def _key(self, key: str, version: int | None) -> str:
        return f"{self._base}:{quote(self.make_and_validate_key(key, version), safe='')}"

    def _ttl(self, timeout: float | object | None) -> float | None:
        """Seconds to live; 0 for 'expire now'."""
        if timeout is DEFAULT_TIMEOUT:
            timeout = self.default_timeout
        if timeout is None:
            return None
        assert isinstance(timeout, (int, float))
        return max(float(timeout), 0.0)

    def add(
        self, key: str, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        full, ttl = self._key(key, version), self._ttl(timeout)
        if ttl == 0:
            return not self._store.has_item(full)
        if self._store.capabilities(full).conditional:
            try:
                self._store.set_item(full, value, ttl=ttl, if_none_match=True)
            except ConflictError:
                return False
            return True
        if self._store.has_item(full):
            return False
        self._store.set_item(full, value, ttl=ttl)
        return True

    def get(self, key: str, default: Any = None, version: int | None = None) -> Any:
        full = self._key(key, version)
        found, etag = self._store.get_item_with_etag(full)
        if found is None and etag is None and not self._store.has_item(full):
            return default
        return found

    def set(
        self, key: str, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> None:
        full, ttl = self._key(key, version), self._ttl(timeout)
        if ttl == 0:
            self._store.remove_item(full)
        else:
            self._store.set_item(full, value, ttl=ttl)

    def touch(self, key: str, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        full, ttl = self._key(key, version), self._ttl(timeout)
        if ttl == 0:
            existed = self._store.has_item(full)
            self._store.remove_item(full)
            return existed
        if ttl is None:
            value = self._store.get_item(full)
            if value is None and not self._store.has_item(full):
                return False
            self._store.set_item(full, value)
            return True
        return bool(self._store.touch(full, ttl))

    def delete(self, key: str, version: int | None = None) -> bool:
        full = self._key(key, version)
        existed = self._store.has_item(full)
        self._store.remove_item(full)
        return existed

    def has_key(self, key: str, version: int | None = None) -> bool:
        return self._store.has_item(self._key(key, version))

    def get_many(self, keys: Iterable[str], version: int | None = None) -> dict[str, Any]:
        names = {self._key(key, version): key for key in keys}
        found = self._store.get_items(list(names))
        return {names[full]: value for full, value in found.items() if value is not None}

    def set_many(
        self, data: Mapping[str, Any], timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> list[str]:
        ttl = self._ttl(timeout)
        items = {self._key(key, version): value for key, value in data.items()}
        if ttl == 0:
            self._store.remove_items(list(items))
        elif items:
            self._store.set_items(items, ttl=ttl)
        return []

    def delete_many(self, keys: Iterable[str], version: int | None = None) -> None:
        self._store.remove_items([self._key(key, version) for key in keys])

    def clear(self) -> None:
        self._store.clear(self._base)
