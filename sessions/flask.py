"""Flask: server-side sessions in any unistorage driver, as a Flask `SessionInterface`.

::

    app.session_interface = UnistorageSessionInterface(storage.sync.create_storage(url))

``session`` stays Flask's dict-like object; its data lives at ``<namespace>:<sha256 of the
ID>`` (namespace default ``flask-session``), the cookie holds only a random ID. Strict: an
unknown ID is never adopted (a new one is issued on the first write). A session is saved
only when changed (or on every request with ``SESSION_REFRESH_EACH_REQUEST`` for permanent
sessions), with the driver's TTL set to ``PERMANENT_SESSION_LIFETIME``; an emptied session is
removed and its cookie expired. ``session.regenerate()`` gives it a new ID at login.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Request, Response
from flask.sessions import SessionInterface, SessionMixin
from werkzeug.datastructures import CallbackDict

from storage.sync import SyncStorage

from .ids import is_valid_id, new_id, storage_digest

__all__ = ["ServerSession", "UnistorageSessionInterface"]


class ServerSession(CallbackDict[str, Any], SessionMixin):
    """Flask's session, kept server-side under a random ID."""

    def __init__(self, initial: dict[str, Any] | None, sid: str | None) -> None:
        def changed(_: Any) -> None:
            self.modified = True

        super().__init__(initial, changed)
        self.sid = sid
        self.replaced: str | None = None
        self.modified = False

    def regenerate(self) -> None:
        """Move the data to a new ID at the end of this request (say, at login)."""
        if self.sid is not None and self.replaced is None:
            self.replaced = self.sid
        self.sid = None
        self.modified = True


class UnistorageSessionInterface(SessionInterface):
    """Flask sessions in a `SyncStorage` (one shared by the app's workers' threads)."""

    def __init__(self, storage: SyncStorage, *, namespace: str = "flask-session") -> None:
        self.storage = storage
        self.namespace = namespace

    def _key(self, sid: str) -> str:
        return f"{self.namespace}:{storage_digest(sid)}"

    def open_session(self, app: Flask, request: Request) -> ServerSession:
        sid = request.cookies.get(self.get_cookie_name(app))
        if not is_valid_id(sid):
            return ServerSession(None, None)
        assert sid is not None
        data = self.storage.get_item(self._key(sid))
        return ServerSession(data, sid) if isinstance(data, dict) else ServerSession(None, None)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        assert isinstance(session, ServerSession)
        name, domain, path = (
            self.get_cookie_name(app),
            self.get_cookie_domain(app),
            self.get_cookie_path(app),
        )
        if session.replaced is not None:
            self.storage.remove_item(self._key(session.replaced))
        if not session:
            if session.modified and session.sid is not None:
                self.storage.remove_item(self._key(session.sid))
                response.delete_cookie(name, domain=domain, path=path)
            return
        if not (session.modified or self.should_set_cookie(app, session)):
            return
        fresh = session.sid is None
        if fresh:
            session.sid = new_id()
        assert session.sid is not None
        lifetime = app.permanent_session_lifetime.total_seconds()
        self.storage.set_item(self._key(session.sid), dict(session), ttl=lifetime)
        if fresh or self.should_set_cookie(app, session):
            response.set_cookie(
                name,
                session.sid,
                expires=self.get_expiration_time(app, session),
                httponly=True,
                domain=domain,
                path=path,
                secure=self.get_cookie_secure(app),
                samesite=self.get_cookie_samesite(app) or "Lax",
            )
            response.headers["Cache-Control"] = "no-store"
