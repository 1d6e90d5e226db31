"""Django: a session engine and a cache backend over any unistorage driver (sync API).

::

    UNISTORAGE_STORAGE = "redis://localhost:6379"          # any driver URL (or a SyncStorage)
    SESSION_ENGINE = "sessions.django.engine"
    CACHES = {"default": {"BACKEND": "sessions.django.cache.UnistorageCache",
                          "LOCATION": "redis://localhost:6379"}}   # LOCATION: else the setting

Both run through `storage.sync` (a `SyncStorage`: the Storage API on its own loop thread), so
Django's views, its test client and its management commands need no event loop.
"""

from __future__ import annotations

import threading

from storage.sync import SyncStorage, create_storage

__all__ = ["storage_for"]

#: One SyncStorage per URL, shared by every engine and cache that names it; each closes
#: itself at exit (storage.sync's atexit handling).
_opened: dict[str, SyncStorage] = {}
_lock = threading.Lock()


def storage_for(location: str | SyncStorage | None = None) -> SyncStorage:
    """The SyncStorage at ``location`` (a driver URL), else the ``UNISTORAGE_STORAGE`` setting."""
    if location is None or location == "":
        from django.conf import settings

        location = getattr(settings, "UNISTORAGE_STORAGE", "memory://")
    if isinstance(location, SyncStorage):
        return location
    with _lock:
        found = _opened.get(location)
        if found is None:
            found = _opened[location] = create_storage(location)
        return found
