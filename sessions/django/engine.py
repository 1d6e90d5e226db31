"""``SESSION_ENGINE = "sessions.django.engine"``: Django sessions in any unistorage driver.

Each session is one value at ``<UNISTORAGE_SESSION_NAMESPACE>:<sha256 of the session key>``
(namespace default ``django-session``), so storage keys never hold session keys; it expires
by the driver's TTL after Django's ``get_expiry_age()``. Creation is create-only and saving
an existing session updates only a session that still exists (where the driver has
conditional writes), as Django's own backends do: a session deleted by a concurrent logout
is not written back (Django answers ``SessionInterrupted``).
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.conf import settings
from django.contrib.sessions.backends.base import CreateError, SessionBase, UpdateError

from storage import ConflictError

from . import storage_for

__all__ = ["SessionStore"]


class SessionStore(SessionBase):
    """A Django session backed by the SyncStorage of the ``UNISTORAGE_STORAGE`` setting."""

    def __init__(self, session_key: str | None = None) -> None:
        super().__init__(session_key)
        self._store = storage_for(getattr(settings, "UNISTORAGE_SESSION_STORAGE", None))
        self._namespace = getattr(settings, "UNISTORAGE_SESSION_NAMESPACE", "django-session")

    def _key(self, session_key: str) -> str:
        return f"{self._namespace}:{hashlib.sha256(session_key.encode()).hexdigest()}"

    def load(self) -> dict[str, Any]:
        """The stored data, or a new empty session when the key is unknown or expired."""
        data = self._store.get_item(self._key(self.session_key)) if self.session_key else None
        if not isinstance(data, dict):
            self._session_key = None
            return {}
        return data

    def exists(self, session_key: str) -> bool:
        return bool(session_key) and self._store.has_item(self._key(session_key))

    def create(self) -> None:
        while True:
            self._session_key = self._get_new_session_key()  # type: ignore[attr-defined]
            try:
                self.save(must_create=True)
            except CreateError:
                continue
            self.modified = True
            return

    def save(self, must_create: bool = False) -> None:
        if self.session_key is None:
            return self.create()
        key = self._key(self.session_key)
        data = self._get_session(no_load=must_create)  # type: ignore[attr-defined]
        ttl = max(self.get_expiry_age(), 1)
        conditional = self._store.capabilities(key).conditional
        try:
            if must_create:
                if not conditional and self._store.has_item(key):
                    raise CreateError
                self._store.set_item(key, data, ttl=ttl, if_none_match=conditional)
            elif conditional:
                self._store.set_item(key, data, ttl=ttl, if_match="*")
            elif self._store.has_item(key):
                self._store.set_item(key, data, ttl=ttl)
            else:
                raise UpdateError
        except ConflictError as exc:
            raise CreateError if must_create else UpdateError from exc
        return None

    def delete(self, session_key: str | None = None) -> None:
        session_key = session_key or self.session_key
        if session_key:
            self._store.remove_item(self._key(session_key))

    @classmethod
    def clear_expired(cls) -> None:
        """Nothing to do: expired sessions are dropped by the driver's TTL."""
