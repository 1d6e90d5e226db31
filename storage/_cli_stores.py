"""How the command line opens a STORE: a driver URL, or the URL of a running server."""

from __future__ import annotations

from typing import Any

from .factory import create_driver
from .storage import Storage, create_storage

__all__ = ["open_store"]


def open_store(url: str, token: str | None, *, read_only: bool = False) -> Storage:
    """The Storage at ``url``; ``token`` goes to an http(s) server.

    ``read_only`` opens it without writing anything: fs and sqlite create no directory, file
    or table, and any other driver sits behind the ReadOnly layer.
    """
    options: dict[str, Any] = {}
    if token and url.split("://", 1)[0].lower() in ("http", "https"):
        options["token"] = token
    if read_only:
        options["read_only"] = True
    return create_storage(create_driver(url, **options))
