"""The ``unistorage`` command: serve a store over HTTP, and read, write, list and copy any store.

A STORE is a driver URL (``memory://``, ``sqlite:///data.db``, ``redis://...``) or the URL of a
running ``unistorage serve`` (``http://127.0.0.1:8585``). Exit status: 0 success, 1 key not found,
2 usage error, 3 storage or driver error.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, TextIO, TypeVar

import orjson

from .errors import StorageError
from .factory import create_driver
from .keys import normalize_base
from .serve import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    DEFAULT_STORE,
    METRICS_TOKEN_ENV,
    TOKEN_ENV,
    serve,
)
from .storage import Storage, create_storage

__all__ = ["main"]


EXIT_OK, EXIT_NOT_FOUND, EXIT_USAGE, EXIT_ERROR = 0, 1, 2, 3
_COPY_BATCH = 500
_CONCURRENCY = 32
_R = TypeVar("_R")


class _Fail(Exception):
    """A message for stderr and an exit status."""

    def __init__(self, message: str, status: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.status = status


# -- opening stores -----------------------------------------------------------------------------


def _store(url: str, token: str | None) -> Storage:
    options: dict[str, Any] = {}
    if token and url.split("://", 1)[0].lower() in ("http", "https"):
        options["token"] = token
    return create_storage(create_driver(url, **options))


def _open(args: argparse.Namespace) -> Storage:
    return _store(args.store, args.token)


# -- data commands ------------------------------------------------------------------------------


async def _get(args: argparse.Namespace, out: TextIO) -> int:
    async with _open(args) as storage:
        data = await storage.get_item_raw(args.key)
        if data is None:
            raise _Fail(f"not found: {args.key}", EXIT_NOT_FOUND)
        if args.raw:
            out.flush()
            binary = getattr(out, "buffer", None)
            if binary is None:
                raise _Fail("--raw needs a binary stdout")
            binary.write(data)
            binary.flush()
            return EXIT_OK
        try:
            value = storage.serializer.loads(data)
        except Exception:
            raise _Fail(f"{args.key} holds bytes that are not a value; use --raw") from None
        out.write((value if isinstance(value, str) else data.decode("utf-8")) + "\n")
    return EXIT_OK


async def _set(args: argparse.Namespace, out: TextIO) -> int:
    raw = sys.stdin.buffer.read() if args.value is None else args.value.encode("utf-8")
    async with _open(args) as storage:
        if args.raw:
            await storage.set_item_raw(args.key, raw, ttl=args.ttl)
            return EXIT_OK
        text = raw.decode("utf-8")
        if args.value is None and not args.json:
            text = text.removesuffix("\n")  # `echo v | unistorage set` stores "v"
        if args.json:
            try:
                value = orjson.loads(text)
            except orjson.JSONDecodeError as exc:
                raise _Fail(f"--json: the value is not JSON ({exc})", EXIT_USAGE) from None
        else:
            value = text
        await storage.set_item(args.key, value, ttl=args.ttl)
    return EXIT_OK


async def _rm(args: argparse.Namespace, out: TextIO) -> int:
    async with _open(args) as storage:
        await storage.remove_items(args.keys, remove_meta=args.meta)
    return EXIT_OK


async def _keys(args: argparse.Namespace, out: TextIO) -> int:
    async with _open(args) as storage:
        async for key in storage.iter_keys(args.base, max_depth=args.max_depth):
            out.write(key + "\n")
    return EXIT_OK


async def _clear(args: argparse.Namespace, out: TextIO) -> int:
    if not normalize_base(args.base) and not args.all:
        raise _Fail("clearing a whole store needs --all", EXIT_USAGE)
    async with _open(args) as storage:
        await storage.clear(args.base)
    return EXIT_OK


async def _meta(args: argparse.Namespace, out: TextIO) -> int:
    async with _open(args) as storage:
        if not await storage.has_item(args.key):
            raise _Fail(f"not found: {args.key}", EXIT_NOT_FOUND)
        meta = await storage.get_meta(args.key)

    def plain(value: Any) -> Any:
        if isinstance(value, datetime):
            return value.isoformat()
        if isinstance(value, (set, frozenset, tuple)):
            return list(value)
        return str(value)

    out.write(orjson.dumps(meta, default=plain, option=orjson.OPT_SORT_KEYS).decode() + "\n")
    return EXIT_OK


# -- copy ---------------------------------------------------------------------------------------


class _Progress:
    """A one-line progress bar on a terminal stream, redrawn at most ten times a second."""

    def __init__(self, stream: TextIO, total: int | None, enabled: bool) -> None:
        self.stream, self.total, self.enabled = stream, total, enabled
        self.done = self.copied = self.skipped = 0
        self._started = self._drawn = time.monotonic()

    def advance(self, copied: int, skipped: int) -> None:
        self.copied += copied
        self.skipped += skipped
        self.done += copied + skipped
        if self.enabled and time.monotonic() - self._drawn >= 0.1:
            self.draw()

    def draw(self, end: str = "") -> None:
        self._drawn = time.monotonic()
        rate = self.done / max(self._drawn - self._started, 1e-6)
        counts = f"copied {self.copied}, skipped {self.skipped}, {rate:,.0f} keys/s"
        if self.total:
            share = min(self.done / self.total, 1.0)
            bar = "#" * int(share * 30)
            line = f"[{bar:<30}] {share:4.0%} {self.done}/{self.total}  {counts}"
        else:
            line = f"{self.done} keys  {counts}"
        self.stream.write(f"\r{line}\x1b[K{end}")
        self.stream.flush()


async def _copy(args: argparse.Namespace, out: TextIO) -> int:
    base = normalize_base(args.base)
    dest = normalize_base(args.to if args.to is not None else args.base)
    async with (
        _store(args.src, args.token) as source,
        _store(args.dst, args.dst_token or args.token) as target,
    ):
        total = None
        if not args.no_count:
            total = sum([1 async for _ in source.iter_keys(base)])
        show = args.progress if args.progress is not None else sys.stderr.isatty()
        progress = _Progress(sys.stderr, total, show)
        batch: list[str] = []
        async for key in source.iter_keys(base):
            batch.append(key)
            if len(batch) >= args.batch:
                await _copy_batch(source, target, batch, base, dest, args, progress)
                batch = []
        if batch:
            await _copy_batch(source, target, batch, base, dest, args, progress)
        if show:
            progress.draw("\n")
        if not args.quiet:
            out.write(f"copied {progress.copied} keys, skipped {progress.skipped}\n")
    return EXIT_OK


async def _copy_batch(
    source: Storage,
    target: Storage,
    keys: list[str],
    base: str,
    dest: str,
    args: argparse.Namespace,
    progress: _Progress,
) -> None:
    # Values and user meta travel as stored bytes; a TTL is not carried over. Unchanged keys
    # are skipped, so an interrupted copy resumes by running it again.
    values = await source.get_items_raw(keys)
    moved = {dest + key[len(base) :]: value for key, value in values.items() if value is not None}
    items = moved
    if not args.force and items:
        present = await target.get_items_raw(list(items))
        items = {
            key: value
            for key, value in items.items()
            if (old := present[key]) is None or (old != value and not args.skip_existing)
        }
    if items:
        await target.set_items_raw(items)
    metas = {
        dest + key[len(base) :]: meta
        for key, meta in (await source.get_metas_raw(list(values))).items()
        if meta is not None and values[key] is not None
    }
    if metas and not args.force:
        present_metas = await target.get_metas_raw(list(metas))
        metas = {key: meta for key, meta in metas.items() if present_metas[key] != meta}
    await _gather(lambda key: target.set_meta_raw(key, metas[key]), list(metas))
    progress.advance(len(items), len(keys) - len(items))


async def _gather(work: Callable[[str], Awaitable[_R]], keys: list[str]) -> list[_R]:
    """``work`` for every key, a bounded number at a time (one request each over http)."""
    results: list[_R] = []
    for start in range(0, len(keys), _CONCURRENCY):
        chunk = keys[start : start + _CONCURRENCY]
        results.extend(await asyncio.gather(*(work(key) for key in chunk)))
    return results


# -- serve --------------------------------------------------------------------------------------


# -- argument parsing ---------------------------------------------------------------------------


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, not {text!r}")
    return int(text)


def _ttl(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"a TTL is seconds > 0, not {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="unistorage",
        description="Serve a key-value store over HTTP; read, write, list and copy any store.",
        epilog="STORE is a driver URL (memory://, sqlite:///file.db, redis://host, "
        "file:///dir, s3://bucket/prefix) or a server URL (http://127.0.0.1:8585). "
        "Exit status: 0 ok, 1 not found, 2 usage, 3 storage error.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str, *, store: bool = True) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        if store:
            sub.add_argument("store", metavar="STORE", help="driver URL or http(s) server URL")
            sub.add_argument(
                "--token", default=os.environ.get(TOKEN_ENV),
                help=f"bearer token for an http(s) STORE (default: ${TOKEN_ENV})",
            )  # fmt: skip
        return sub

    serve = command("serve", "serve a store over HTTP (unstorage's protocol)", store=False)
    serve.add_argument(
        "--driver", dest="root", metavar="URL", help=f"root driver (default: {DEFAULT_STORE})"
    )
    serve.add_argument("--mount", metavar="BASE=URL", action="append", default=[],
                       help="mount a driver at BASE (repeatable)")  # fmt: skip
    serve.add_argument("--host", default=DEFAULT_HOST, help=f"(default: {DEFAULT_HOST})")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"(default: {DEFAULT_PORT})")
    serve.add_argument("--token", action="append", default=[], metavar="TOKEN",
                       help=f"a read-write bearer token (repeatable; also ${TOKEN_ENV})")  # fmt: skip
    serve.add_argument("--read-token", action="append", default=[], metavar="TOKEN",
                       help="a bearer token that may only read (repeatable)")  # fmt: skip
    serve.add_argument("--read-only", action="store_true", help="refuse every write (405)")
    serve.add_argument("--max-body", type=int, default=32 * 1024 * 1024, metavar="BYTES",
                       help="largest request body (default: 32 MiB)")  # fmt: skip
    serve.add_argument("--metrics-token", metavar="TOKEN",
                       help="serve Prometheus metrics at GET /?metrics to this bearer token "
                       f"(also ${METRICS_TOKEN_ENV}); read-write tokens may read them too")  # fmt: skip
    serve.add_argument("--log-level", default="info",
                       choices=["critical", "error", "warning", "info", "debug"])  # fmt: skip
    serve.set_defaults(run=_serve)

    get = command("get", "print the value of KEY (a string as text, others as JSON)")
    get.add_argument("key", metavar="KEY")
    get.add_argument("--raw", action="store_true", help="write the stored bytes to stdout")
    get.set_defaults(run=_get)

    set_ = command("set", "store VALUE (or stdin) at KEY, as a string unless --json or --raw")
    set_.add_argument("key", metavar="KEY")
    set_.add_argument("value", metavar="VALUE", nargs="?", help="the value (default: stdin)")
    kind = set_.add_mutually_exclusive_group()
    kind.add_argument("--json", action="store_true", help="VALUE is JSON")
    kind.add_argument("--raw", action="store_true", help="store the bytes as they are")
    set_.add_argument("--ttl", type=_ttl, metavar="SECONDS", help="expire after SECONDS")
    set_.set_defaults(run=_set)

    rm = command("rm", "remove KEYs (missing keys are fine)")
    rm.add_argument("keys", metavar="KEY", nargs="+")
    rm.add_argument("--meta", action="store_true", help="remove their user meta too")
    rm.set_defaults(run=_rm)

    keys = command("keys", "list keys under BASE, one per line")
    keys.add_argument("base", metavar="BASE", nargs="?", default="")
    keys.add_argument("--max-depth", type=int, metavar="N", help="at most N separators after BASE")
    keys.set_defaults(run=_keys)

    clear = command("clear", "remove every key under BASE")
    clear.add_argument("base", metavar="BASE", nargs="?", default="")
    clear.add_argument("--all", action="store_true", help="allow clearing the whole store")
    clear.set_defaults(run=_clear)

    meta = command("meta", "print the metadata of KEY as JSON")
    meta.add_argument("key", metavar="KEY")
    meta.set_defaults(run=_meta)

    copy = commands.add_parser(
        "copy", help="copy every key under --base from SRC to DST",
        description="Copy keys (and their user meta) from SRC to DST, streaming. Keys DST already "
        "holds with the same value are skipped, so running an interrupted copy again resumes it.",
    )  # fmt: skip
    copy.add_argument("src", metavar="SRC", help="source driver or server URL")
    copy.add_argument("dst", metavar="DST", help="target driver or server URL")
    copy.add_argument("--base", default="", help="copy only keys under BASE")
    copy.add_argument(
        "--to", metavar="BASE", help="put them under this base in DST (default: --base)"
    )
    copy.add_argument("--skip-existing", action="store_true", help="never overwrite a key DST has")
    copy.add_argument("--force", action="store_true", help="write every key without comparing")
    copy.add_argument(
        "--batch", type=_positive, default=_COPY_BATCH, help=f"keys per batch ({_COPY_BATCH})"
    )
    copy.add_argument("--no-count", action="store_true", help="do not count keys first (no %%)")
    bar = copy.add_mutually_exclusive_group()
    bar.add_argument("--progress", action="store_true", default=None, help="always draw the bar")
    bar.add_argument("--no-progress", dest="progress", action="store_false", help="never draw it")
    copy.add_argument("--quiet", "-q", action="store_true", help="no summary line")
    copy.add_argument("--token", default=os.environ.get(TOKEN_ENV), help="token for http(s) URLs")
    copy.add_argument(
        "--dst-token", metavar="TOKEN", help="token for an http(s) DST, if it differs"
    )
    copy.set_defaults(run=_copy)

    rotate = command("rotate", "re-encrypt every value under BASE with the newest key")
    rotate.add_argument("base", metavar="BASE", nargs="?", default="")
    rotate.add_argument("--keys-env", default="UNISTORAGE_KEYS", metavar="NAME",
                        help="environment variable holding the keys, newest first, "
                        "comma-separated URL-safe base64 (default: UNISTORAGE_KEYS)")  # fmt: skip
    shown = rotate.add_mutually_exclusive_group()
    shown.add_argument("--progress", action="store_true", default=None, help="always draw the bar")
    shown.add_argument("--no-progress", dest="progress", action="store_false", help="never")
    rotate.add_argument("--quiet", "-q", action="store_true", help="no summary line")
    rotate.set_defaults(run=_rotate)

    keygen = command("keygen", "print a new encryption key (URL-safe base64)", store=False)
    keygen.set_defaults(run=_keygen)
    return parser


async def _rotate(args: argparse.Namespace, out: TextIO) -> int:
    from .layers.encrypt import rotate

    separator = "&" if "?" in args.store else "?"
    storage = _store(f"{args.store}{separator}encrypt_keys_env={args.keys_env}", args.token)
    show = args.progress if args.progress is not None else sys.stderr.isatty()
    progress = _Progress(sys.stderr, None, show)

    def advance(done: int, total: int) -> None:
        progress.total = total
        progress.advance(done - progress.done, 0)

    async with storage:
        rewritten = await rotate(storage, normalize_base(args.base), progress=advance)
    if show:
        progress.draw("\n")
    if not args.quiet:
        out.write(f"re-encrypted {rewritten} values under the newest key\n")
    return EXIT_OK


def _keygen(args: argparse.Namespace, out: TextIO) -> int:
    from .layers.encrypt import generate_key

    out.write(generate_key() + "\n")
    return EXIT_OK


def _serve(args: argparse.Namespace, out: TextIO) -> int:
    return serve(args, out)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="unistorage: %(message)s")
    try:
        result = args.run(args, sys.stdout)
        if asyncio.iscoroutine(result):
            result = asyncio.run(result)
        return int(result)
    except _Fail as exc:
        sys.stderr.write(f"unistorage {args.command}: {exc}\n")
        return exc.status
    except StorageError as exc:
        sys.stderr.write(f"unistorage {args.command}: {exc}\n")
        return EXIT_USAGE if isinstance(exc, ValueError) else EXIT_ERROR
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        return 130
    except BrokenPipeError:
        # `unistorage keys ... | head`: the reader left; stop quietly, as shell tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
