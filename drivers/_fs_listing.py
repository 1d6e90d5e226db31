"""Walking an fs store: listing keys, clearing a base, sweeping expired values.

Plain functions over a `Tree` (the store's open directories and layout). Every directory is opened
below the store's root without following a link (drivers._fs_beneath), so a link is never
descended into; nor is it ever a key: only regular files are values. Names that are not the
encoding of a readable key (not UTF-8, ``.``/``..``, control characters, foreign names) are
skipped, and logged once (`Layout.key_of`).
"""

from __future__ import annotations

from collections.abc import Iterator

from drivers import _fs_read as read
from drivers._fs_beneath import MISSING, close_unless, entries, open_parent, remove_tree
from drivers._fs_layout import MORE, SELF, Place
from drivers._fs_tree import Tree
from drivers._fs_write import remove, remove_side


def _scan(root: int, rel: list[str]) -> list[tuple[str, bool, bool]]:
    try:
        return entries(root, "/".join(rel) or ".")
    except OSError as exc:
        if exc.errno in MISSING:
            return []
        raise


def _live(tree: Tree, names: list[str], timed: bool, now: float) -> str | None:
    """The key at ``names`` (None for foreign names, or an expired value, then deleted)."""
    key = tree.layout.key_of(names)
    if key is None or not timed:
        return key
    record = read.ttl_record(tree, names)
    if record is not None and record[0] <= now:
        info = read.value_stat(tree, key)
        if info is not None and (info.st_ino, info.st_mtime_ns) == record[1:]:
            read.drop_expired(tree, key, info)
            return None
    return key


def walk(tree: Tree, base: str, max_depth: int | None, now: float) -> Iterator[str]:
    """Keys under ``base``, reading only its subtree; ``done`` counts finished segments."""
    start = tree.layout.names(base[:-1]) if base else []
    stack: list[tuple[list[str], int]] = [(start, 0)]
    while stack:
        rel, done = stack.pop()
        found = _scan(tree.root, rel)
        if not found:
            continue
        timed = tree.side >= 0 and (not rel or read.has_side_dir(tree, rel))
        for name, is_dir, is_file in found:
            key: str | None = None
            if name == SELF:
                # this directory's own value; its sidecar lives one level up
                if is_file and len(rel) > len(start):
                    key = _live(tree, rel, True, now)
            elif tree.layout.ignored(name) or not (is_dir or is_file):
                continue  # dot-names, and links, FIFOs, sockets: never keys, never followed
            elif is_file:
                key = _live(tree, [*rel, name], timed, now)
            elif name.endswith(MORE):
                stack.append(([*rel, name], done))
            elif max_depth is None or done < max_depth:
                stack.append(([*rel, name], done + 1))
            elif read.holds_value(tree, [*rel, name]):
                key = _live(tree, [*rel, name], True, now)
            if key is not None:
                yield key


def clear(tree: Tree, base: str, now: float) -> list[str]:
    """Delete the keys under ``base`` and the sidecars below it; return the keys deleted."""
    removed = [key for key in walk(tree, base, None, now) if remove(tree, key)]
    if tree.side >= 0:
        if not base:
            remove_tree(tree.side, ".", keep=True)
            return removed
        names = tree.layout.names(base[:-1])
        try:
            parent = open_parent(tree.side, names)
        except OSError as exc:
            if exc.errno in MISSING:
                return removed
            raise
        try:
            remove_tree(parent, names[-1])
        finally:
            close_unless(parent, tree.side)
    return removed


def sweep(tree: Tree, now: float) -> list[str]:
    """Delete expired values and stale TTL records; return the keys deleted."""
    removed: list[str] = []
    if tree.side < 0:
        return removed
    stack: list[list[str]] = [[]]
    while stack:
        rel = stack.pop()
        for name, is_dir, is_file in _scan(tree.side, rel):
            if is_dir:
                stack.append([*rel, name])
                continue
            if not is_file or not name.endswith("%t"):
                continue
            names = [*rel, name[:-2]]
            record = read.ttl_record(tree, names)
            key = tree.layout.key_of(names)
            if record is None or key is None or record[0] > now:
                continue
            info = read.value_stat(tree, key)
            if info is None or read.expiry(tree, key, info) is None:
                remove_side(tree, Place.of(names), "%t")  # its value was rewritten or deleted
            elif read.expired(tree, key, info):
                removed.append(key)
    return removed


def files_in(tree: Tree, names: list[str]) -> Iterator[list[str]]:
    """The names of the value files under the directory ``names`` (for the watcher)."""
    stack = [names]
    while stack:
        rel = stack.pop()
        for name, is_dir, is_file in _scan(tree.root, rel):
            if name == SELF:
                if is_file:
                    yield rel
            elif tree.layout.ignored(name):
                continue
            elif is_dir:
                stack.append([*rel, name])
            elif is_file:
                yield [*rel, name]


def directories(tree: Tree) -> set[str]:
    """The absolute path of every directory of keys in the store, its root included."""
    found: set[str] = set()
    stack: list[list[str]] = [[]]
    while stack:
        rel = stack.pop()
        found.add("/".join([tree.base, *rel]))
        for name, is_dir, _ in _scan(tree.root, rel):
            if is_dir and not tree.layout.ignored(name):
                stack.append([*rel, name])
    return found
