"""How the fs driver lays keys out on disk: key segments as file names, and back.

See the docstring of drivers.fs for the encoding. `Layout` holds one store's choices (case
folding, ignored names) and answers both ways: the names of a key, and the key of some names,
refusing every name that is not the encoding of a key that can be read back.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from urllib.parse import unquote

from storage import InvalidKeyError, normalize_key

INTERNAL = ".unistorage"
SELF = "%"
MORE = "%+"
_LIMIT = 240
_ALWAYS = frozenset('%<>"|?*')
# A lone surrogate cannot be a file name byte: such characters are escaped (as the bytes
# "surrogatepass" gives them), and a raw name that decodes to one (not UTF-8) is no key.
_SURROGATE = re.compile("[\ud800-\udfff]")
# A key whose every segment encode_segment keeps as it is (its fast path, for a whole key).
_PLAIN = r'(?!\.)[^:%<>"|?*\ud800-\udfff]{1,60}(?<![. ])'
_PLAIN_KEY = re.compile(f"{_PLAIN}(?::{_PLAIN})*")
_CACHE = 8192
_LOGGED = 1024

logger = logging.getLogger("drivers.fs")


def _escape(char: str) -> str:
    return "".join(f"%{byte:02X}" for byte in char.encode("utf-8", "surrogatepass"))


def encode_segment(segment: str, fold: bool = False) -> list[str]:
    """The file names (chunks) that hold one key segment; see the docstring of drivers.fs."""
    if (
        len(segment) <= _LIMIT // 4
        and segment[0] != "."
        and segment[-1] not in ". "
        and not _ALWAYS.intersection(segment)
        and (segment.isascii() or (not fold and not _SURROGATE.search(segment)))
        and (not fold or segment == segment.lower())
    ):
        return [segment]
    names: list[str] = []
    chunk: list[str] = []
    size = 0
    for char in segment:
        special = (
            char in _ALWAYS
            or "\ud800" <= char <= "\udfff"
            or (fold and (not char.isascii() or char != char.lower()))
        )
        piece = _escape(char) if special or (char == "." and not chunk) else char
        width = len(piece.encode())
        if size + width > _LIMIT:
            names.append("".join(chunk) + MORE)
            chunk, size = [], 0
            piece = _escape(char) if char == "." else piece
            width = len(piece.encode())
        chunk.append(piece)
        size += width
    if chunk[-1] in (".", " "):
        chunk[-1] = _escape(chunk[-1])
    names.append("".join(chunk))
    return names


def decode_name(name: str) -> str:
    """The text a file name holds (UnicodeDecodeError when its escapes are not UTF-8)."""
    return unquote(name, errors="surrogatepass") if "%" in name else name


def etag_of(info: os.stat_result) -> str:
    """The version of a value file: a write always renames a new file (new inode or mtime)."""
    return f"{info.st_ino:x}-{info.st_mtime_ns:x}-{info.st_size:x}"


class Place:
    """Where a key lives below the store's root (computed once per key: the layout caches it)."""

    __slots__ = ("names", "parent", "raw", "rel")

    def __init__(self, names: list[str]) -> None:
        #: Its file names, one per directory level.
        self.names = names
        #: The names joined by ``/``.
        self.rel = "/".join(names)
        #: ``rel`` as bytes, as the system calls take it.
        self.raw = self.rel.encode("utf-8", "surrogateescape")
        #: The directory holding the last name, as bytes (``b""`` for the root itself).
        self.parent = self.raw.rpartition(b"/")[0]

    @classmethod
    def of(cls, names: list[str]) -> Place:
        """The place of these names."""
        return cls(names)


class Layout:
    """The file names of one store's keys, both ways, with a cache of recent keys.

    ``fold`` escapes uppercase and non-ASCII characters (for case-insensitive file systems);
    ``ignore`` matches names that are never keys (dot-names, user patterns).
    """

    __slots__ = ("_cache", "_ignore", "_logged", "fold")

    def __init__(self, *, fold: bool, ignore: re.Pattern[str]) -> None:
        self.fold = fold
        self._ignore = ignore
        self._cache: dict[str, Place] = {}
        self._logged: set[tuple[str, ...]] = set()

    def place(self, key: str) -> Place:
        """Where ``key`` lives below the store's root."""
        found = self._cache.get(key)
        if found is None:
            fold = self.fold
            if _PLAIN_KEY.fullmatch(key) and (not fold or (key.isascii() and key == key.lower())):
                names = key.split(":")  # every segment is its own file name: most keys
            else:
                names = [name for part in key.split(":") for name in encode_segment(part, fold)]
            if len(self._cache) >= _CACHE:
                self._cache.clear()
            found = self._cache[key] = Place(names)
        return found

    def names(self, key: str) -> list[str]:
        """The names of ``key`` below the store's root."""
        return self.place(key).names

    def ignored(self, name: str) -> bool:
        """True for names that never hold keys (dot-names and the ``ignore`` patterns)."""
        return name[0] == "." or self._ignore.match(name) is not None

    def key_of(self, names: Sequence[str]) -> str | None:
        """The key these names hold, or None (logged once) when they are not a key's encoding.

        Only keys that can be read back are returned: the names must be exactly what
        `place` gives for the key, and the key must be a valid normalized key (no ``.`` or
        ``..`` segment, no control character, no separator), so a hand-made file named
        ``a\\nb``, ``%2E.`` or with bytes that are not UTF-8 is skipped.
        """
        parts: list[str] = []
        pending = ""
        for name in names:
            if self.ignored(name):
                return None
            try:
                if name.endswith(MORE):
                    pending += decode_name(name[:-2])
                    continue
                parts.append(pending + decode_name(name))
            except UnicodeDecodeError:
                return self._foreign(names)
            pending = ""
        if pending or not parts or not all(parts):
            return self._foreign(names)
        key = ":".join(parts)
        if self.place(key).names != list(names):
            return self._foreign(names)
        try:
            if normalize_key(key) != key:
                return self._foreign(names)
        except InvalidKeyError:
            return self._foreign(names)
        return key

    def _foreign(self, names: Sequence[str]) -> str | None:
        found = tuple(names)
        if found not in self._logged and len(self._logged) < _LOGGED:
            self._logged.add(found)
            shown = "/".join(
                os.fsencode(name).decode("utf-8", "backslashreplace") for name in names
            )
            logger.warning("fs: %r is not the file name of a key; it is not listed", shown)
        return None


def pid_alive(pid: int) -> bool:
    """True when a process ``pid`` exists (its temporary files are not stale)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
