"""`SessionMiddleware`: puts a lazy `Session` at ``scope["session"]`` and commits it in time."""

from __future__ import annotations

import logging
from typing import Any

from storage.asgi import ASGIApp, Message, Receive, Scope, Send

from .manager import Sessions

logger = logging.getLogger(__name__)

__all__ = ["SessionMiddleware"]


class SessionMiddleware:
    """Pure ASGI middleware for Starlette, FastAPI or any ASGI app.

    HTTP: the session is committed just before the response starts, and its Set-Cookie (with
    ``Cache-Control: no-store``) is added to that response. WebSocket: the session is readable
    at ``scope["session"]``; commit it yourself with `Sessions.commit` if you change it.
    """

    def __init__(self, app: ASGIApp, sessions: Sessions[Any]) -> None:
        self.app = app
        self.sessions = sessions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        session = self.sessions.from_headers(scope["headers"])
        scope["session"] = session

        async def send_with_session(message: Message) -> None:
            if message["type"] == "http.response.start" and session.used:
                extra = await session.commit()
                if extra:
                    headers = [
                        (name, value)
                        for name, value in message.get("headers", ())
                        if name.lower() != b"cache-control"
                    ]
                    headers.extend(
                        (name.encode(), value.encode("latin-1")) for name, value in extra
                    )
                    message["headers"] = headers
            await send(message)

        # A WebSocket's session is committed by the app itself: its messages pass untouched.
        token = self.sessions.active.set(session)
        try:
            await self.app(scope, receive, send_with_session if kind == "http" else send)
        finally:
            self.sessions.active.reset(token)
        if session.pending and kind == "http":
            # The response had started before these changes: no cookie could carry them.
            logger.warning("session changes made after the response started were not saved")
