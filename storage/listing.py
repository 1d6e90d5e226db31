"""Listing and clearing across mounts, and the helpers every multi-mount operation shares."""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

import orjson

from .errors import InvalidArgumentError, ReadOnlyError, fail
from .keys import filter_depth
from .mounts import Listing, Mount, MountTable

__all__ = ["BATCH_CHUNK", "clear_base", "each_group", "list_keys", "list_page", "stream_keys"]

#: Keys per driver call when the core pages through listings or removals.
BATCH_CHUNK = 1000


def _named(full_base: str, prefix: str) -> str | None:
    """A base as the caller's view names it (None for its root)."""
    return full_base[len(prefix) :] or None


async def each_group(
    step: Callable[[Mount, list[str]], Awaitable[None]], groups: dict[Mount, list[str]]
) -> None:
    """Run ``step`` for every mount's group: directly for one, concurrently for several."""
    if len(groups) == 1:
        for mount, group in groups.items():
            await step(mount, group)
    else:
        await asyncio.gather(*(step(mount, group) for mount, group in groups.items()))


def _select(
    part: Listing, found: Iterable[str], full_base: str, max_depth: int | None, strip: int
) -> list[str]:
    """Full keys of ``found`` that are visible, under the base and within depth, less ``strip``."""
    mount_base = part.mount.base
    # Filtering again here keeps a driver's listing bug from leaking keys outside the base.
    keys = filter_depth(
        (
            full
            for key in found
            if part.visible(key) and (full := mount_base + key).startswith(full_base)
        ),
        full_base,
        max_depth,
    )
    return [key[strip:] for key in keys] if strip else keys


async def list_keys(
    table: MountTable, full_base: str, max_depth: int | None, prefix: str
) -> list[str]:
    """Every key under ``full_base`` in every mount, relative to ``prefix``."""
    keys: list[str] = []
    for part in table.plan(full_base, max_depth):
        mount = part.mount
        try:
            found = await mount.driver.get_keys(part.base, max_depth=part.max_depth)
        except Exception as exc:
            fail(mount.driver.name, "get_keys", _named(full_base, prefix), exc)
        keys.extend(_select(part, found, full_base, max_depth, len(prefix)))
    return keys


async def stream_keys(
    table: MountTable, full_base: str, max_depth: int | None, prefix: str
) -> AsyncIterator[str]:
    """`list_keys`, streamed: at most a page of keys is held at a time."""
    for part in table.plan(full_base, max_depth):
        mount = part.mount
        page: list[str] = []
        iterator = mount.driver.iter_keys(part.base, max_depth=part.max_depth)
        while True:
            try:
                key = await anext(iterator)
            except StopAsyncIteration:
                break
            except Exception as exc:
                fail(mount.driver.name, "iter_keys", _named(full_base, prefix), exc)
            page.append(key)
            if len(page) >= BATCH_CHUNK:
                for selected in _select(part, page, full_base, max_depth, len(prefix)):
                    yield selected
                page = []
        for selected in _select(part, page, full_base, max_depth, len(prefix)):
            yield selected


def _encode_cursor(part: int, inner: str | None) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([part, inner])).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[int, str | None]:
    try:
        part, inner = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, TypeError):
        raise InvalidArgumentError(f"not a cursor of this listing: {cursor!r}") from None
    if type(part) is not int or part < 0 or not (inner is None or type(inner) is str):
        raise InvalidArgumentError(f"not a cursor of this listing: {cursor!r}")
    return part, inner


async def list_page(
    table: MountTable,
    full_base: str,
    limit: int,
    cursor: str | None,
    max_depth: int | None,
    prefix: str,
) -> tuple[list[str], str | None]:
    """Up to ``limit`` keys under ``full_base`` after ``cursor``, and the next page's cursor.

    The cursor names a mount of the listing plan (root first) and that driver's own cursor,
    so each page resumes where the last one ended, mount after mount. Pages hold at most
    ``limit`` keys and fewer only at the end; a key hidden by a deeper mount or a meta entry
    is skipped without counting.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InvalidArgumentError(f"limit is an int >= 1, not {limit!r}")
    parts = list(table.plan(full_base, max_depth))
    index, inner = _decode_cursor(cursor) if cursor is not None else (0, None)
    keys: list[str] = []
    while index < len(parts) and len(keys) < limit:
        part = parts[index]
        mount = part.mount
        try:
            found, inner = await mount.driver.list_page(
                part.base, limit=limit - len(keys), cursor=inner, max_depth=part.max_depth
            )
        except Exception as exc:
            fail(mount.driver.name, "list_keys", _named(full_base, prefix), exc)
        keys.extend(_select(part, found, full_base, max_depth, len(prefix)))
        if inner is None:
            index += 1
    if index >= len(parts):
        return keys, None
    return keys, _encode_cursor(index, inner)


async def clear_base(table: MountTable, full_base: str, prefix: str = "") -> None:
    """Remove what `list_keys` would list under ``full_base`` (and its meta), in every mount.

    A mount with deeper mounts inside the cleared area is cleared key by key, so that keys it
    holds under those deeper bases (shadowed, never listed) are left alone.
    """
    parts = list(table.plan(full_base, None))
    for part in parts:
        if part.mount.driver.capabilities.read_only:
            raise ReadOnlyError(full_base[len(prefix) :], part.mount.driver.name)
    for part in parts:
        driver = part.mount.driver
        try:
            if not part.shadows:
                await driver.clear(part.base)
                continue
            doomed = [key for key in await driver.get_keys(part.base) if part.owns(key)]
            for start in range(0, len(doomed), BATCH_CHUNK):
                await driver.remove_items(doomed[start : start + BATCH_CHUNK])
        except Exception as exc:
            fail(driver.name, "clear", _named(full_base, prefix), exc)
