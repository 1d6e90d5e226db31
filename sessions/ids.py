"""Session IDs: random, opaque, validated before any storage call, and never stored as keys."""

from __future__ import annotations

import hashlib
import re
import secrets

__all__ = ["MIN_ID_BYTES", "id_length", "is_valid_id", "new_id", "storage_digest"]

#: OWASP asks for at least 64 bits of entropy; we refuse anything under 128.
MIN_ID_BYTES = 16

# The base64url alphabet, ASCII only (no IGNORECASE, no \w or \d, which match beyond it).
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+").fullmatch


def id_length(nbytes: int) -> int:
    """The length in characters of an ID made of ``nbytes`` random bytes (unpadded base64url)."""
    return (nbytes * 4 + 2) // 3


def new_id(nbytes: int = 32) -> str:
    """A fresh ID: ``nbytes`` bytes from `secrets`, as unpadded base64url text."""
    return secrets.token_urlsafe(nbytes)


def is_valid_id(value: object, nbytes: int = 32) -> bool:
    """True when ``value`` has exactly the shape `new_id` produces; checked before any I/O."""
    # Length first: a 5 KB cookie is refused without scanning it.
    return (
        isinstance(value, str)
        and len(value) == (nbytes * 4 + 2) // 3  # id_length(nbytes), without the call
        and _BASE64URL(value) is not None
    )


def storage_digest(session_id: str) -> str:
    """The storage key part for ``session_id``: a SHA-256 hex digest, so keys never hold IDs."""
    return hashlib.sha256(session_id.encode("ascii")).hexdigest()
