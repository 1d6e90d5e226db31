"""Key rules: normalization, bases, joining and depth.

A normalized key uses ``:`` as its only separator (``/`` and ``\\`` become ``:``, runs collapse,
ends are stripped) and is otherwise kept exactly as given. A *base* is a normalized key with a
trailing ``:``; the empty base is the root. Segments ``.`` and ``..`` and control characters
(C0, DEL and C1: U+0000-U+001F and U+007F-U+009F) are rejected, so no key can name anything outside a driver's area.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from .errors import InvalidArgumentError, InvalidKeyError

__all__ = [
    "KeyCache",
    "filter_depth",
    "join_keys",
    "key_depth",
    "normalize_base",
    "normalize_key",
]

# C0 controls, DEL and C1 controls: none of them can be typed, shown or put in a file name
# safely, so no key holds one.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SEPARATORS = re.compile(r"[:/\\]+")


def _normalize(key: object) -> str:
    if not isinstance(key, str):
        raise InvalidKeyError(key, f"keys are str, not {type(key).__name__}")
    if not key.isascii():
        try:
            key.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidKeyError(key, "lone surrogates are not Unicode text") from None
    if _CONTROL.search(key):
        raise InvalidKeyError(
            key, "control characters (U+0000-U+001F, U+007F-U+009F) are not allowed"
        )
    normalized = _SEPARATORS.sub(":", key).strip(":")
    if normalized:
        for segment in normalized.split(":"):
            if segment == ".." or segment == ".":
                raise InvalidKeyError(key, f"the segment {segment!r} is not allowed")
    return normalized


def _fast_normalize(key: object) -> str:
    if type(key) is str and (
        # Most keys are already normalized: recognize them with a few C-level string checks.
        key.isprintable()
        and "/" not in key
        and "\\" not in key
        and "::" not in key
        and "." not in key
        and key[:1] != ":"
        and key[-1:] != ":"
        and key
    ):
        return key
    normalized = _normalize(key)
    if not normalized:
        raise InvalidKeyError(key, "the key is empty")
    return normalized


def normalize_key(key: object) -> str:
    """Return the normalized form of an item key; raise `InvalidKeyError` if it is empty or unsafe."""
    return _fast_normalize(key)


class KeyCache:
    """Recently normalized keys of one Storage (shared with its namespace views).

    Keys repeat (a set, then gets of the same key), and one dict lookup is cheaper than even
    the fast checks of `normalize_key`. Bounded (about 100 bytes per entry beyond the key
    itself, so under a megabyte by default): cleared whole when full. Each Storage owns its
    cache, so one Storage's traffic never evicts another's keys.
    """

    __slots__ = ("_known", "get", "limit")

    def __init__(self, limit: int = 8192) -> None:
        self._known: dict[str, str] = {}
        self.limit = limit
        #: The normalized form of a str key seen recently, or None (a C-level lookup).
        self.get = self._known.get

    def normalize(self, key: object) -> str:
        """`normalize_key`, remembering the answer for str keys."""
        normalized = _fast_normalize(key)
        if type(key) is str:
            known = self._known
            if len(known) >= self.limit:
                known.clear()
            known[key] = normalized
        return normalized

    def __len__(self) -> int:
        return len(self._known)


def normalize_base(base: object) -> str:
    """Return ``base`` as a base: normalized with one trailing ``:``, or ``""`` for the root."""
    if base is None:
        return ""
    normalized = _normalize(base)
    return normalized + ":" if normalized else ""


def join_keys(*parts: str) -> str:
    """Join key fragments with ``:`` and normalize the result (empty parts are skipped)."""
    return normalize_key(":".join(part for part in parts if part))


def key_depth(key: str, base: str = "") -> int:
    """Number of separators in ``key`` after ``base`` (a direct child of ``base`` has depth 0)."""
    return key.count(":", len(base))


def filter_depth(keys: Iterable[str], base: str, max_depth: int | None) -> list[str]:
    """Keep the keys with at most ``max_depth`` separators after ``base``."""
    if max_depth is None:
        return list(keys)
    start = len(base)
    return [key for key in keys if key.count(":", start) <= max_depth]


def check_max_depth(max_depth: int | None) -> int | None:
    """Validate a ``max_depth`` argument (None, or an int >= 0)."""
    if max_depth is None:
        return None
    if isinstance(max_depth, bool) or not isinstance(max_depth, int) or max_depth < 0:
        raise InvalidArgumentError(f"max_depth must be None or an int >= 0, not {max_depth!r}")
    return max_depth
