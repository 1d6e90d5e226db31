"""How the s3 driver names things in S3: keys as object names, and etags without S3's quotes.

Key ``a:b`` is the object ``a/b``; ``%`` and control characters are percent-encoded, because
S3 listings and batch deletes travel as XML 1.0, which cannot carry control characters (and
the meta suffix holds one). An etag leaves the driver bare, as an opaque token the HTTP server
quotes itself, and goes back to S3 quoted, as its ``If-Match`` header needs.
"""

from __future__ import annotations

import re

__all__ = ["bare_etag", "escape", "quoted_etag", "unescape"]

_UNSAFE = re.compile(r"[%\x00-\x1f]")
_ESCAPED = re.compile(r"%([0-9A-F]{2})")


def escape(key: str) -> str:
    """``key`` with ``%`` and control characters percent-encoded."""
    if "%" not in key and not _UNSAFE.search(key):
        return key
    return _UNSAFE.sub(lambda match: f"%{ord(match.group()):02X}", key)


def unescape(name: str) -> str:
    """The key that `escape` turned into ``name``."""
    if "%" not in name:
        return name
    return _ESCAPED.sub(lambda match: chr(int(match.group(1), 16)), name)


def bare_etag(etag: str) -> str:
    """S3's ETag without the quotes it wears on the wire."""
    return etag[1:-1] if len(etag) >= 2 and etag[0] == etag[-1] == '"' else etag


def quoted_etag(etag: str) -> str:
    """An etag as S3's ``If-Match`` needs it; one already quoted is taken as it is."""
    return etag if etag.startswith('"') else f'"{etag}"'
