"""Server-side web sessions over any unistorage Storage.

A session ID lives only in an HttpOnly cookie; its data lives in a Storage under a digest of
the ID. Configure once with `Sessions`, wrap the app in `SessionMiddleware`, and use the
`Session` at ``scope["session"]`` (``request.session`` in Starlette).
"""

from .cookies import CookieSettings
from .ids import is_valid_id, new_id
from .manager import Sessions
from .middleware import SessionMiddleware
from .session import Session

__all__ = ["CookieSettings", "Session", "SessionMiddleware", "Sessions", "is_valid_id", "new_id"]
