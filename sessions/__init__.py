"""Server-side web sessions over any unistorage Storage.

A session ID lives only in an HttpOnly cookie; its data lives in a Storage under a digest of
the ID. Configure once with `Sessions`, wrap the app in `SessionMiddleware`, and use the
`Session` at ``scope["session"]`` (``request.session`` in Starlette).

Concurrent requests to one session: changes to different keys are merged (the same key: the
last commit wins), no acknowledged change is lost, and a destroyed session is never written
back by a request still in flight. Within one process this holds on every driver (updates
of one record take turns). Across processes it holds where the driver has atomic conditional
writes (``storage.capabilities(key).conditional``: fs with ``fcntl``, sqlite, redis and
valkey, s3, and http when its server's driver has them); there, conflicts are retried after
a jittered exponential backoff. On a driver without them
(overlay, fs where ``fcntl`` is missing, a third-party driver that does not declare them),
run the app in one process, or a change made in another process at the same moment can be
lost or a destroyed session written back.
"""

from .cookies import CookieSettings
from .guard import SessionUsageError
from .ids import is_valid_id, new_id
from .manager import Sessions
from .middleware import SessionMiddleware
from .session import FlashMessage, Session
from .users import UserSession

__all__ = [
    "CookieSettings",
    "FlashMessage",
    "Session",
    "SessionMiddleware",
    "SessionUsageError",
    "Sessions",
    "UserSession",
    "is_valid_id",
    "new_id",
]
