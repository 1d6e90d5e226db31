"""``unistorage copy`` and ``unistorage rotate``: every key under a base, in batches, with a
progress bar on stderr (tqdm's).

A copy moves values and user meta as stored bytes, with each key's remaining TTL, through the
public Storage API of both stores; it skips keys the target holds with the same value, so
running an interrupted copy again resumes it, and Ctrl-C says how far it got.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

from ._cli_errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, Fail
from ._cli_stores import open_store
from .keys import normalize_base
from .storage import Storage

if TYPE_CHECKING:
    from tqdm import tqdm

__all__ = ["copy", "rotate"]

_CONCURRENCY = 32
# A remaining TTL shorter than this is a key about to expire: it is not copied.
_EXPIRING = 0.001
_R = TypeVar("_R")


@dataclass(slots=True)
class _Tally:
    """How far a copy got."""

    copied: int = 0
    skipped: int = 0
    total: int | None = None

    @property
    def done(self) -> int:
        return self.copied + self.skipped

    def interrupted(self) -> str:
        of = f" of {self.total}" if self.total is not None else ""
        return (
            f"interrupted after {self.done}{of} keys (copied {self.copied}, skipped "
            f"{self.skipped}); run the same command again to resume: keys already copied "
            "are skipped"
        )


def _bar(progress: bool | None) -> tqdm[Any] | None:
    """A bar on stderr with ``--progress``, or by default when stderr is a terminal; else None.

    tqdm comes with the ``cli`` and ``server`` extras; without it no bar is drawn, and asking
    for one is a usage error that names the extra.
    """
    show = progress if progress is not None else sys.stderr.isatty()
    if not show:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        if progress:
            raise Fail("--progress needs tqdm: pip install 'unistorage[cli]'", EXIT_USAGE) from None
        return None
    bar: tqdm[Any] = tqdm(unit="key", file=sys.stderr, dynamic_ncols=True)
    return bar


def _advance(bar: tqdm[Any] | None, keys: int, tally: _Tally) -> None:
    if bar is not None:
        bar.set_postfix_str(f"copied {tally.copied}, skipped {tally.skipped}", refresh=False)
        bar.update(keys)


async def copy(args: argparse.Namespace, out: TextIO) -> int:
    """Copy every key under ``--base`` of SRC to ``--to`` (default: the same base) in DST."""
    base = normalize_base(args.base)
    dest = normalize_base(args.to if args.to is not None else args.base)
    tally = _Tally()
    bar = _bar(args.progress)
    async with (
        open_store(args.src, args.token, read_only=True) as source,
        open_store(args.dst, args.dst_token or args.token) as target,
    ):
        try:
            if not args.no_count:
                tally.total = sum([1 async for _ in source.iter_keys(base)])
                if bar is not None:
                    bar.reset(total=tally.total)
            batch: list[str] = []
            async for key in source.iter_keys(base):
                batch.append(key)
                if len(batch) >= args.batch:
                    await _copy_batch(source, target, batch, base, dest, args, tally)
                    _advance(bar, len(batch), tally)
                    batch = []
            if batch:
                await _copy_batch(source, target, batch, base, dest, args, tally)
                _advance(bar, len(batch), tally)
        except (asyncio.CancelledError, KeyboardInterrupt):
            # Ctrl-C (asyncio.run cancels the command): say how far it got, on a line of its own.
            if bar is not None:
                bar.close()
            elif sys.stderr.isatty():
                sys.stderr.write("\n")
            raise Fail(tally.interrupted(), EXIT_INTERRUPTED) from None
        finally:
            if bar is not None:
                bar.close()
    if not args.quiet:
        out.write(f"copied {tally.copied} keys, skipped {tally.skipped}\n")
    return EXIT_OK


async def _copy_batch(
    source: Storage,
    target: Storage,
    keys: list[str],
    base: str,
    dest: str,
    args: argparse.Namespace,
    tally: _Tally,
) -> None:
    values = await source.get_items_raw(keys)
    found: dict[str, bytes] = {}
    origin: dict[str, str] = {}  # where each key in the target comes from in the source
    for key, value in values.items():
        if value is not None:
            found[dest + key[len(base) :]] = value
            origin[dest + key[len(base) :]] = key
    present = {} if args.force or not found else await target.get_items_raw(list(found))
    same = [key for key, value in found.items() if present.get(key) == value]
    items = {
        key: value
        for key, value in found.items()
        if args.force or (old := present[key]) is None or (old != value and not args.skip_existing)
    }
    ttls = await _remaining_ttls(source, [origin[key] for key in items])
    plain = {key: value for key, value in items.items() if origin[key] not in ttls}
    timed = [key for key in items if ttls.get(origin[key], 0) > _EXPIRING]
    if plain:
        await target.set_items_raw(plain)
    await _gather(lambda key: target.set_item_raw(key, items[key], ttl=ttls[origin[key]]), timed)
    # User meta goes with every key whose value the target now shares with the source.
    carried = [*plain, *timed, *same]
    stored = await source.get_metas_raw([origin[key] for key in carried])
    metas = {key: meta for key in carried if (meta := stored[origin[key]]) is not None}
    if metas and not args.force:
        present_metas = await target.get_metas_raw(list(metas))
        metas = {key: meta for key, meta in metas.items() if present_metas[key] != meta}
    await _gather(lambda key: target.set_meta_raw(key, metas[key]), list(metas))
    tally.copied += len(plain) + len(timed)
    tally.skipped += len(keys) - len(plain) - len(timed)


async def _remaining_ttls(source: Storage, keys: list[str]) -> dict[str, float]:
    """The remaining TTL of each key that has one (only asked where the mount keeps TTLs)."""
    asked = [key for key in keys if source.capabilities(key).ttl]
    metas = await _gather(source.get_native_meta, asked)
    ttls: dict[str, float] = {}
    for key, meta in zip(asked, metas, strict=True):
        ttl = meta.get("ttl")
        if isinstance(ttl, (int, float)) and not isinstance(ttl, bool):
            ttls[key] = float(ttl)
    return ttls


async def _gather(work: Callable[[str], Awaitable[_R]], keys: list[str]) -> list[_R]:
    """``work`` for every key, a bounded number at a time (one request each over http)."""
    results: list[_R] = []
    for start in range(0, len(keys), _CONCURRENCY):
        chunk = keys[start : start + _CONCURRENCY]
        results.extend(await asyncio.gather(*(work(key) for key in chunk)))
    return results


async def rotate(args: argparse.Namespace, out: TextIO) -> int:
    """Re-encrypt every value under BASE sealed with an older key under the newest one."""
    from .layers.encrypt import rotate as rotate_keys

    separator = "&" if "?" in args.store else "?"
    storage = open_store(f"{args.store}{separator}encrypt_keys_env={args.keys_env}", args.token)
    bar = _bar(args.progress)

    def advance(done: int, total: int) -> None:
        if bar is not None:
            if bar.total != total:
                bar.reset(total=total)
            bar.update(done - bar.n)

    try:
        async with storage:
            rewritten = await rotate_keys(storage, normalize_base(args.base), progress=advance)
    finally:
        if bar is not None:
            bar.close()
    if not args.quiet:
        out.write(f"re-encrypted {rewritten} values under the newest key\n")
    return EXIT_OK
