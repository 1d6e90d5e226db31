"""`Sessions`: the configuration of every session of one app, and the factories of `Session`."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Generic

from storage import Storage

from .cookies import CookieSettings, SameSite
from .ids import MIN_ID_BYTES, is_valid_id
from .records import Records
from .session import DataT, Session

__all__ = ["Sessions"]


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
        id_bytes: int = 32,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if id_bytes < MIN_ID_BYTES:
            raise ValueError(f"id_bytes must be at least {MIN_ID_BYTES} (128 bits)")
        for label, value in (
            ("idle_timeout", idle_timeout),
            ("absolute_timeout", absolute_timeout),
        ):
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{label} must be a finite number of seconds > 0")
        if touch_interval is None:
            touch_interval = min(60.0, idle_timeout / 2)
        if not 0 <= touch_interval < idle_timeout:
            raise ValueError("touch_interval must be >= 0 and shorter than idle_timeout")
        self.storage = storage.namespace(namespace)
        #: The storage I/O of session records (read, create, update, remove by digest).
        self.records = Records(self.storage)
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
        self.id_bytes = id_bytes
        self.clock = clock

    # -- creating Session objects -----------------------------------------------------------------

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
