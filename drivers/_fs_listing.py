"""Walking an fs store: listing keys, clearing a base, sweeping expired values.

Plain functions over an `FsFiles` (its descriptors and layout). Every directory is opened
below the store's root without following a link (drivers._fs_beneath), so a link is never
descended into; nor is it ever a key: only regular files are values. Names that are not the
encoding of a readable key (not UTF-8, ``.``/``..``, control characters, foreign names) are
skipped, and logged once (`Layout.key_of`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from drivers._fs_beneath import MISSING, close_unless, entries, open_parent, remove_tree
from drivers._fs_layout import MORE, SELF, Place
from drivers._fs_write import remove_side

if TYPE_CHECKING:
    from drivers._fs_ops import FsFiles


def _scan(root: int, rel: list[str]) -> list[tuple[str, bool, bool]]:
    try:
        return entries(root, "/".join(rel) or ".")
    except OSError as exc:
        if exc.errno in MISSING:
            return []
        raise


def _live(files: FsFiles, names: list[str], timed: bool, now: float) -> str | None:
    """The key at ``names`` (None for foreign names, or an expired value, then deleted)."""
    key = files.layout.key_of(names)
    if key is None or not timed:
        return key
    record = files.ttl_record(names)
    if record is not None and record[0] <= now:
        info = files.value_stat(key)
        if info is not None and (info.st_ino, info.st_mtime_ns) == record[1:]:
            files.drop_expired(key, info)
            return None
    return key


def walk(files: FsFiles, base: str, max_depth: int | None, now: float) -> Iterator[str]:
    """Keys under ``base``, reading only its subtree; ``done`` counts finished segments."""
    start = files.layout.names(base[:-1]) if base else []
    stack: list[tuple[list[str], int]] = [(start, 0)]
    while stack:
        rel, done = stack.pop()
        found = _scan(files.root, rel)
        if not found:
            continue
        timed = files.side >= 0 and (not rel or files.has_side_dir(rel))
        for name, is_dir, is_file in found:
            key: str | None = None
            if name == SELF:
                # this directory's own value; its sidecar lives one level up
                if is_file and len(rel) > len(start):
                    key = _live(files, rel, True, now)
            elif files.layout.ignored(name) or not (is_dir or is_file):
                continue  # dot-names, and links, FIFOs, sockets: never keys, never followed
            elif is_file:
                key = _live(files, [*rel, name], timed, now)
            elif name.endswith(MORE):
                stack.append(([*rel, name], done))
            elif max_depth is None or done < max_depth:
                stack.append(([*rel, name], done + 1))
            elif files.holds_value([*rel, name]):
                key = _live(files, [*rel, name], True, now)
            if key is not None:
                yield key


def clear(files: FsFiles, base: str, now: float) -> list[str]:
    """Delete the keys under ``base`` and the sidecars below it; return the keys deleted."""
    removed = [key for key in walk(files, base, None, now) if files.remove(key)]
    if files.side >= 0:
        if not base:
            remove_tree(files.side, ".", keep=True)
            return removed
        names = files.layout.names(base[:-1])
        try:
            parent = open_parent(files.side, names)
        except OSError as exc:
            if exc.errno in MISSING:
                return removed
            raise
        try:
            remove_tree(parent, names[-1])
        finally:
            close_unless(parent, files.side)
    return removed


def sweep(files: FsFiles, now: float) -> list[str]:
    """Delete expired values and stale TTL records; return the keys deleted."""
    removed: list[str] = []
    if files.side < 0:
        return removed
    stack: list[list[str]] = [[]]
    while stack:
        rel = stack.pop()
        for name, is_dir, is_file in _scan(files.side, rel):
            if is_dir:
                stack.append([*rel, name])
                continue
            if not is_file or not name.endswith("%t"):
                continue
            names = [*rel, name[:-2]]
            record = files.ttl_record(names)
            key = files.layout.key_of(names)
            if record is None or key is None or record[0] > now:
                continue
            info = files.value_stat(key)
            if info is None or files.expiry(key, info) is None:
                remove_side(files, Place.of(names), "%t")  # its value was rewritten or deleted
            elif files.expired(key, info):
                removed.append(key)
    return removed


def files_in(files: FsFiles, names: list[str]) -> Iterator[list[str]]:
    """The names of the value files under the directory ``names`` (for the watcher)."""
    stack = [names]
    while stack:
        rel = stack.pop()
        for name, is_dir, is_file in _scan(files.root, rel):
            if name == SELF:
                if is_file:
                    yield rel
            elif files.layout.ignored(name):
                continue
            elif is_dir:
                stack.append([*rel, name])
            elif is_file:
                yield [*rel, name]


def directories(files: FsFiles) -> set[str]:
    """The absolute path of every directory of keys in the store, its root included."""
    found: set[str] = set()
    stack: list[list[str]] = [[]]
    while stack:
        rel = stack.pop()
        found.add("/".join([files.base, *rel]))
        for name, is_dir, _ in _scan(files.root, rel):
            if is_dir and not files.layout.ignored(name):
                stack.append([*rel, name])
    return found
