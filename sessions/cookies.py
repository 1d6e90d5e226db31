"""The session cookie: safe attribute defaults, validation of prefixed names, header building."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

__all__ = ["CookieSettings", "SameSite", "read_cookie"]

SameSite = Literal["lax", "strict", "none"]

# RFC 6265 cookie-name token: visible ASCII without separators.
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_EXPIRED = "Thu, 01 Jan 1970 00:00:00 GMT"
_OWS = b" \t"
_DQUOTE = ord('"')


@dataclass(frozen=True, slots=True)
class CookieSettings:
    """Attributes of the session cookie. HttpOnly is always set; Domain is unset by default.

    Raises ValueError when the combination is unsafe or invalid for browsers (``__Host-`` needs
    Secure, Path=/ and no Domain; ``__Secure-`` and SameSite=None need Secure).
    """

    name: str = "session"
    secure: bool = True
    same_site: SameSite = "lax"
    path: str = "/"
    domain: str | None = None
    max_age: int | None = None

    def __post_init__(self) -> None:
        if not _TOKEN.match(self.name):
            raise ValueError(f"invalid cookie name {self.name!r}")
        if self.same_site not in ("lax", "strict", "none"):
            raise ValueError(f"same_site is 'lax', 'strict' or 'none', not {self.same_site!r}")
        if self.same_site == "none" and not self.secure:
            raise ValueError("SameSite=None cookies must be Secure")
        if not self.path.startswith("/") or any(c in self.path for c in ";\r\n"):
            raise ValueError(f"invalid cookie path {self.path!r}")
        if self.domain is not None and not re.match(r"^\.?[A-Za-z0-9.-]+$", self.domain):
            raise ValueError(f"invalid cookie domain {self.domain!r}")
        if self.max_age is not None and self.max_age <= 0:
            raise ValueError("max_age is a positive number of seconds, or None")
        lowered = self.name.lower()
        if lowered.startswith("__secure-") and not self.secure:
            raise ValueError("a __Secure- cookie must be Secure")
        if lowered.startswith("__host-") and (
            not self.secure or self.path != "/" or self.domain is not None
        ):
            raise ValueError("a __Host- cookie must be Secure, with Path=/ and no Domain")

    def _attributes(self) -> str:
        parts = [f"Path={self.path}"]
        if self.domain is not None:
            parts.append(f"Domain={self.domain}")
        parts.append("HttpOnly")
        if self.secure:
            parts.append("Secure")
        parts.append(f"SameSite={self.same_site.capitalize()}")
        return "; ".join(parts)

    def set_header(self, session_id: str) -> str:
        """The Set-Cookie value that hands ``session_id`` to the client."""
        lifetime = f"; Max-Age={self.max_age}" if self.max_age is not None else ""
        return f"{self.name}={session_id}{lifetime}; {self._attributes()}"

    def expire_header(self) -> str:
        """The Set-Cookie value that removes the cookie (same Path and Domain as when set)."""
        return f"{self.name}=; Max-Age=0; Expires={_EXPIRED}; {self._attributes()}"


def read_cookie(headers: Iterable[tuple[bytes, bytes]], name: str) -> str | None:
    """The value of cookie ``name`` in raw ASGI ``headers``, or None.

    A strict RFC 6265 section 4.2 reading, written here because no parser at hand fits:
    `http.cookies.SimpleCookie` splits a pair at a space (so ``pref=a session=X`` yields a
    ``session`` cookie) and drops every cookie after one it cannot parse, and Starlette's
    ``cookie_parser`` lets the last duplicate win (and is a framework's, not a library's).

    - The header is a list of pairs separated by ``;``, nothing else: a name inside another
      cookie's value is part of that value. Several Cookie headers (HTTP/2 sends them split)
      are read as one list, in order.
    - Whitespace (SP, HTAB) around a pair, its name and its value is ignored; names compare
      exactly (``__host-sid`` is not ``__Host-sid``); one pair of enclosing double quotes is
      removed from the value. Pairs without ``=`` are skipped.
    - A name sent more than once with different values gives None: the browser gives no way to
      tell which one this site set, and taking either lets a cookie planted from a sibling
      domain or with a longer path win (cookie tossing). A fresh session is safer than a
      fixated one.
    """
    wanted = name.encode("latin-1")
    found: bytes | None = None
    for header, value in headers:
        if header != b"cookie" or wanted not in value:
            continue
        for pair in value.split(b";"):
            pair_name, equals, raw = pair.partition(b"=")
            if not equals or pair_name.strip(_OWS) != wanted:
                continue
            raw = raw.strip(_OWS)
            if len(raw) >= 2 and raw[0] == _DQUOTE and raw[-1] == _DQUOTE:
                raw = raw[1:-1]
            if found is None:
                found = raw
            elif found != raw:
                return None
    return None if found is None else found.decode("latin-1")
