"""`Sessions`: the configuration of every session of one app, and the factories of `Session`."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, MutableMapping
from contextvars import ContextVar
from typing import Any, Generic, Protocol

from storage import Storage

from .cookies import CookieSettings, SameSite
from .ids import MIN_ID_BYTES, is_valid_id
from .records import Record, Records
from .session import DataT, Session
from .users import UserIndex, UserSession

__all__ = ["Sessions"]


class _HasScope(Protocol):
    """A framework's request or connection object that carries its ASGI scope."""

    @property
    def scope(self) -> Any: ...


class Sessions(Generic[DataT]):
    """How sessions are stored, identified, timed out and sent to the client.

    One session is one value at ``<namespace>:<sha256 of the ID>`` in ``storage``. Defaults
    follow OWASP: 256-bit IDs, strict (unknown IDs are never adopted), 30 min idle and 8 h
    absolute timeouts enforced from stored timestamps, HttpOnly + Secure + SameSite=Lax cookie.
    """

    def __init__(
        self,
        storage: Storage,
        *,
        namespace: str = "session",
        cookie_name: str = "session",
        secure: bool = True,
        same_site: SameSite = "lax",
        cookie_path: str = "/",
        cookie_domain: str | None = None,
        cookie_max_age: int | None = None,
        idle_timeout: float = 30 * 60,
        absolute_timeout: float = 8 * 60 * 60,
        touch_interval: float | None = None,
        regenerate_grace: float = 60.0,
        id_bytes: int = 32,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if id_bytes < MIN_ID_BYTES:
            raise ValueError(f"id_bytes must be at least {MIN_ID_BYTES} (128 bits)")
        for label, value in (
            ("idle_timeout", idle_timeout),
            ("absolute_timeout", absolute_timeout),
            ("regenerate_grace", regenerate_grace),
        ):
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{label} must be a finite number of seconds > 0")
        if touch_interval is None:
            touch_interval = min(60.0, idle_timeout / 2)
        if not 0 <= touch_interval < idle_timeout:
            raise ValueError("touch_interval must be >= 0 and shorter than idle_timeout")
        #: The Storage the app gave (its owner disposes it), and the sessions' namespace in it.
        self.root = storage
        self.storage = storage.namespace(namespace)
        #: The storage I/O of session records (read, create, update, remove by digest).
        self.records = Records(self.storage)
        #: The index from users to their live sessions (`login`, `revoke_all`).
        self.users = UserIndex(self.storage, self.records, self._expired_now)
        self.cookie = CookieSettings(
            name=cookie_name,
            secure=secure,
            same_site=same_site,
            path=cookie_path,
            domain=cookie_domain,
            max_age=cookie_max_age,
        )
        self.idle_timeout = float(idle_timeout)
        self.absolute_timeout = float(absolute_timeout)
        self.touch_interval = float(touch_interval)
        #: Seconds an ID replaced by `Session.regenerate` is remembered, so that requests still
        #: carrying it neither expire the new cookie nor start another session.
        self.regenerate_grace = float(regenerate_grace)
        self.id_bytes = id_bytes
        self.clock = clock
        #: The session of the request this context serves: set by `SessionMiddleware` for the
        #: time the app runs, read by `current` (each request runs in a context of its own).
        self.active: ContextVar[Session[DataT] | None] = ContextVar(
            "unistorage_session", default=None
        )

    def expired(self, record: Record, now: float) -> bool:
        """True when ``record`` has passed its idle or absolute timeout at ``now``."""
        return (
            now - record.accessed >= self.idle_timeout
            or now - record.created >= self.absolute_timeout
        )

    def _expired_now(self, record: Record) -> bool:
        return self.expired(record, self.clock())

    # -- creating Session objects -----------------------------------------------------------------

    def of(self, request: _HasScope | MutableMapping[str, Any]) -> Session[DataT]:
        """The session `SessionMiddleware` put on ``request`` (a Starlette, FastAPI or Litestar
        request, or an ASGI scope), typed ``Session[DataT]`` (``request.session`` is typed as
        a dict by Starlette, which it is not).

        Raises RuntimeError when no `SessionMiddleware` runs in front of the app.
        """
        scope = request if isinstance(request, MutableMapping) else request.scope
        session = scope.get("session")
        if not isinstance(session, Session):
            raise RuntimeError(
                "no unistorage session on this request: wrap the app in "
                "sessions.SessionMiddleware(app, sessions)"
            )
        return session

    def current(self) -> Session[DataT]:
        """The session of the request being served here, found through `active` without the
        request: the one this `Sessions`' middleware made, even under another `Sessions`'
        middleware nested inside it (which `of`, reading the scope, would return instead).

        Raises RuntimeError outside a request that a `SessionMiddleware` of these sessions serves.
        """
        session = self.active.get()
        if session is None:
            raise RuntimeError(
                "no unistorage session in this context: serve the app through "
                "sessions.SessionMiddleware(app, sessions)"
            )
        return session

    def valid_id(self, value: object) -> bool:
        """True when ``value`` is shaped like an ID this app issues (no storage call)."""
        return is_valid_id(value, self.id_bytes)

    def from_headers(self, headers: list[tuple[bytes, bytes]]) -> Session[DataT]:
        """A lazy session for raw ASGI request headers; the cookie is parsed on first use."""
        return Session(self, headers=headers)

    def from_cookie(self, value: str | None) -> Session[DataT]:
        """A lazy session for a cookie value read by other means; malformed values are dropped."""
        return Session(self, value if self.valid_id(value) else None)

    async def load(self, session_id: str) -> Session[DataT]:
        """Resume the session ``session_id`` now (say, from a WebSocket handshake).

        Strict like cookies: an unknown or expired ID gives an empty session whose ``id`` is None.
        """
        session = self.from_cookie(session_id)
        await session.ensure_loaded()
        return session

    async def commit(self, session: Session[DataT]) -> list[tuple[str, str]]:
        """Write what ``session`` changed; return the response headers to add (Set-Cookie...).

        Raises `storage.StorageError` when the backend fails, so the app answers with an error
        instead of silently dropping the visitor's session.
        """
        return await session.commit()

    # -- users ----------------------------------------------------------------------------------

    async def user_sessions(self, user_id: str) -> list[UserSession]:
        """The live sessions of ``user_id`` (since `Session.login`), oldest first."""
        return await self.users.sessions(user_id)

    async def revoke(self, user_id: str, handle: str) -> None:
        """End one session of ``user_id`` by its `UserSession.handle` (log out one device)."""
        await self.users.revoke(user_id, handle)

    async def revoke_all(self, user_id: str, *, keep: str | None = None) -> int:
        """End every session of ``user_id`` (log out everywhere, say after a password change),
        but the one whose handle is ``keep``; return how many were ended. Requests in flight
        bring none of them back."""
        return await self.users.revoke_all(user_id, keep=keep)
