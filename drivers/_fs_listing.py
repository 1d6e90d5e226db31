"""Walking an fs store: listing keys (all of them, or a page in key order), clearing a base,
sweeping expired values.

Plain functions over a `Tree` (the store's open directories and layout). Every directory is opened
below the store's root without following a link (drivers._fs_beneath), so a link is never
descended into; nor is it ever a key: only regular files are values. Names that are not the
encoding of a readable key (not UTF-8, ``.``/``..``, control characters, foreign names) are
skipped, and logged once (`Layout.key_of`).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator

from drivers import _fs_read as read
from drivers._fs_beneath import MISSING, close_unless, entries, open_parent, remove_tree
from drivers._fs_layout import MORE, SELF, Place, decode_name
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


def page(
    tree: Tree, base: str, after: str | None, limit: int, max_depth: int | None, now: float
) -> tuple[list[str], str | None]:
    """Up to ``limit`` live keys under ``base`` greater than ``after``, in key order, and the
    cursor of the next page (its last key; None when nothing follows)."""
    keys = list(itertools.islice(ordered(tree, base, after, max_depth, now), limit + 1))
    if len(keys) > limit:
        return keys[:limit], keys[limit - 1]
    return keys, None


# What an entry of the walk's heap stands for. A directory ``s`` is two entries: the key
# ``s`` itself (its ``%`` file) sorts as ``s``, the keys below it as ``s:``, and keys such as
# ``s-x`` or ``s0`` (characters below ``:``) come between the two.
_FILE, _TIMED_FILE, _OWN_VALUE, _DIRECTORY, _CHAIN = range(5)


def ordered(
    tree: Tree, base: str, after: str | None, max_depth: int | None, now: float
) -> Iterator[str]:
    """The live keys under ``base`` greater than ``after`` (all for None), in key order.

    File names do not sort as the keys they encode (``%2E``, an escaped ``.``, sorts before
    ``-``), so each directory's names are decoded, and a heap keyed by the key text each
    entry starts with yields the keys in order: a file's text is its key, a directory's is
    the prefix of every key below it, which is read only when that prefix comes up. A
    directory whose keys all sort at or before ``after`` is never read, and the walk stops as
    soon as the caller has the keys it wants: a page reads the directories on its way and
    those it lists, never the whole tree.
    """
    layout = tree.layout
    heap: list[tuple[str, int, int, list[str], int]] = []
    order = itertools.count()

    def wanted(prefix: str) -> bool:  # may a key starting with ``prefix`` follow ``after``?
        return after is None or prefix > after or after.startswith(prefix)

    def expand(rel: list[str], prefix: str, done: int) -> None:
        timed = tree.side >= 0 and (not rel or read.has_side_dir(tree, rel))
        found: list[tuple[str, int, int, list[str], int]] = []
        for name, is_dir, is_file in _scan(tree.root, rel):
            if name == SELF or layout.ignored(name) or not (is_dir or is_file):
                continue  # its own value is its parent's entry; links and FIFOs are no keys
            chain = is_dir and name.endswith(MORE)
            try:
                text = prefix + decode_name(name[:-2] if chain else name)
            except UnicodeDecodeError:
                if is_file:
                    layout.key_of([*rel, name])  # logged once as a foreign name
                continue  # no key lies below a name that is not UTF-8
            names = [*rel, name]
            if is_file:
                if after is None or text > after:
                    found.append((text, next(order), _TIMED_FILE if timed else _FILE, names, 0))
            elif chain:  # the next chunk of a long name: the segment goes on in there
                if wanted(text):
                    found.append((text, next(order), _CHAIN, names, done))
            else:
                if after is None or text > after:
                    found.append((text, next(order), _OWN_VALUE, names, 0))
                if (max_depth is None or done < max_depth) and wanted(text + ":"):
                    found.append((text + ":", next(order), _DIRECTORY, names, done + 1))
        if len(found) > len(heap):
            heap.extend(found)
            heapq.heapify(heap)
        else:
            for entry in found:
                heapq.heappush(heap, entry)

    expand(layout.names(base[:-1]) if base else [], base, 0)
    while heap:
        text, _, kind, names, done = heapq.heappop(heap)
        key: str | None = None
        if kind <= _TIMED_FILE:  # _FILE or _TIMED_FILE
            key = _live(tree, names, kind == _TIMED_FILE, now)
        elif kind == _OWN_VALUE:
            if read.holds_value(tree, names):
                key = _live(tree, names, True, now)
        else:
            expand(names, text, done)
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
