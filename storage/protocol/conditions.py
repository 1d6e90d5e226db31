"""ETags and conditional requests (RFC 9110, section 13): formatting a driver's version token,
parsing ``If-Match`` / ``If-None-Match``, and evaluating them."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote, unquote

from ..errors import (
    ConflictError,
    InvalidArgumentError,
    UnsupportedError,
)

__all__ = [
    "EntityTag",
    "PreconditionFailedError",
    "Preconditions",
    "Probe",
    "Read",
    "Remove",
    "Tags",
    "Write",
    "format_etag",
    "parse_etag",
    "parse_etags",
    "remove_if",
    "write_if",
]

# -- ETags and conditional requests (RFC 9110, section 13) ------------------------------------

#: What an entity-tag may hold (etagc) less "%", which escapes every other character.
_ETAG_SAFE = "".join(chr(code) for code in range(0x21, 0x7F) if chr(code) not in '"%')
#: Tokens `quote` would leave as they are (every character of them in `_ETAG_SAFE`).
_PLAIN_ETAG = re.compile(f"[{re.escape(_ETAG_SAFE)}]*")
_ENTITY_TAG = re.compile(r'\s*(W/)?"([^"]*)"\s*(,|$)')


def _opaque(token: str) -> str:
    # Some backends keep the quotes in their version token (S3 answers '"abc"'): drop them so
    # the header is quoted exactly once.
    return token[1:-1] if len(token) >= 2 and token[0] == token[-1] == '"' else token


def format_etag(token: str) -> str:
    """The ``ETag`` value for a driver's version token: quoted once, always well formed."""
    if token.isalnum() and token.isascii():
        return '"' + token + '"'  # most tokens (digits, hex): no quotes to drop, nothing to escape
    opaque = _opaque(token)
    if _PLAIN_ETAG.fullmatch(opaque):
        return '"' + opaque + '"'  # nothing to escape (base64, dashes, S3's quoted tokens)
    return '"' + quote(opaque, safe=_ETAG_SAFE) + '"'


def parse_etag(header: str | None) -> str | None:
    """The version token in an ``ETag`` value (as `format_etag` wrote it), or None."""
    if not header:
        return None
    found = _ENTITY_TAG.fullmatch(header.strip())
    return unquote(found.group(2)) if found else None


@dataclass(frozen=True, slots=True)
class EntityTag:
    """One entity-tag of an ``If-Match`` / ``If-None-Match`` list."""

    opaque: str
    weak: bool = False


Tags = Literal["*"] | tuple[EntityTag, ...]


def parse_etags(header: str, name: str) -> Tags:
    """``*`` or the entity-tags of a conditional header; `InvalidArgumentError` if malformed."""
    text = header.strip()
    if text == "*":
        return "*"
    tags: list[EntityTag] = []
    position = 0
    while position < len(text):
        found = _ENTITY_TAG.match(text, position)
        if found is None:
            raise InvalidArgumentError(
                f'{name} is "*" or a list of quoted entity-tags ("abc", W/"abc"), not {header!r}'
            )
        tags.append(EntityTag(unquote(found.group(2)), weak=found.group(1) is not None))
        position = found.end()
    return tuple(tags)


@dataclass(frozen=True, slots=True)
class Preconditions:
    """The ``If-Match`` and ``If-None-Match`` of a request, evaluated as RFC 9110 says."""

    if_match: Tags | None = None
    if_none_match: Tags | None = None

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> Preconditions:
        """Parse both headers (lowercase names); malformed ones raise `InvalidArgumentError`."""
        match, none_match = headers.get("if-match"), headers.get("if-none-match")
        if match is None and none_match is None:
            return _NO_CONDITIONS  # most requests: one shared (frozen) instance
        return cls(
            None if match is None else parse_etags(match, "If-Match"),
            None if none_match is None else parse_etags(none_match, "If-None-Match"),
        )

    def __bool__(self) -> bool:
        return self.if_match is not None or self.if_none_match is not None

    @property
    def create_only(self) -> bool:
        """Only ``If-None-Match: *``: a create-only write."""
        return self.if_match is None and self.if_none_match == "*"

    @property
    def any_version(self) -> bool:
        """Only ``If-Match: *``: a write or remove of whatever version exists."""
        return self.if_none_match is None and self.if_match == "*"

    @property
    def expected(self) -> str | None:
        """The version when the request is only ``If-Match`` with one strong tag."""
        tags = self.if_match
        if self.if_none_match is None and isinstance(tags, tuple) and len(tags) == 1:
            return None if tags[0].weak else tags[0].opaque
        return None

    def failed(self, exists: bool, token: str | None) -> str | None:
        """The header that fails against the current state, or None when the request may go on.

        ``exists`` says whether there is a current value, ``token`` is its version (None when
        the driver keeps none). If-Match compares strongly, If-None-Match weakly.
        """
        if self.if_match is None and self.if_none_match is None:
            return None
        current = None if token is None else _opaque(token)
        if self.if_match is not None and not (
            exists
            and (
                self.if_match == "*"
                or any(not tag.weak and tag.opaque == current for tag in self.if_match)
            )
        ):
            return "If-Match"
        if (
            self.if_none_match is not None
            and exists
            and (
                self.if_none_match == "*"
                or any(tag.opaque == current for tag in self.if_none_match)
            )
        ):
            return "If-None-Match"
        return None


_NO_CONDITIONS = Preconditions()


class PreconditionFailedError(ConflictError):
    """An ``If-Match`` or ``If-None-Match`` does not hold for the current value (a 412)."""

    def __init__(self, key: str, header: str) -> None:
        super().__init__(key, f"{header} does not hold")


Read = Callable[[], Awaitable[tuple[bytes | None, str | None]]]
Write = Callable[[str | None, bool], Awaitable[str | None]]
Probe = Callable[[], Awaitable[tuple[bool, str | None]]]
Remove = Callable[[str | None], Awaitable[None]]
# Rounds of read-then-compare-and-set; each lost round means another writer won, so this
# bounds only a hot key under constant writes.
_ROUNDS = 64


async def write_if(key: str, conditions: Preconditions, read: Read, write: Write) -> str | None:
    """Write only while ``conditions`` hold, without a race; the new etag (None if unknown).

    ``write(if_match, if_none_match)`` is the storage's compare-and-set, ``read()`` the current
    value and its version. Conditions a compare-and-set cannot say directly (lists,
    ``If-None-Match`` with tags) are checked against a read, and the write is then conditioned
    on the version read, so it lands only if nothing changed in between.
    """
    if not conditions:
        return await write(None, False)
    if conditions.create_only:
        return await write(None, True)
    if conditions.any_version:
        return await write("*", False)
    if conditions.expected is not None:
        try:
            return await write(conditions.expected, False)
        except ConflictError:
            pass  # or the driver spells its version differently (quoted): compare below
    for _ in range(_ROUNDS):
        data, etag = await read()
        if data is not None and etag is None:
            raise UnsupportedError(f"the driver serving {key!r} keeps no versions to compare")
        failed = conditions.failed(data is not None, etag)
        if failed is not None:
            raise PreconditionFailedError(key, failed)
        try:
            return await write(etag, data is None)
        except ConflictError:
            continue  # another writer came in between: check the conditions again
    raise ConflictError(key, f"the key changed {_ROUNDS} times while writing")


async def remove_if(key: str, conditions: Preconditions, probe: Probe, remove: Remove) -> None:
    """Remove only while ``conditions`` hold, without a race.

    ``remove(if_match)`` is the storage's remove (conditional on a version, or ``"*"``: any),
    ``probe()`` tells whether the key exists and its version. ``If-None-Match: *`` removes
    nothing (it holds only while the key is absent); other lists are checked against a probe
    and the remove is conditioned on the version seen.
    """
    if not conditions:
        await remove(None)
        return
    if conditions.any_version:
        await remove("*")
        return
    if conditions.expected is not None:
        try:
            await remove(conditions.expected)
            return
        except ConflictError:
            pass  # a missing key, another version, or another spelling of it: compare below
    for _ in range(_ROUNDS):
        exists, etag = await probe()
        failed = conditions.failed(exists, etag)
        if failed is not None:
            raise PreconditionFailedError(key, failed)
        if not exists:
            return  # the conditions hold and there is nothing to remove
        if etag is None:
            raise UnsupportedError(f"the driver serving {key!r} keeps no versions to compare")
        try:
            await remove(etag)
            return
        except ConflictError:
            continue
    raise ConflictError(key, f"the key changed {_ROUNDS} times while removing")
