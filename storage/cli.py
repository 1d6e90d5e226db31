"""The ``unistorage`` command: serve a store over HTTP, and read, write, list and copy any store.

A STORE is a driver URL (``memory://``, ``sqlite:///data.db``, ``redis://...``) or the URL of a
running ``unistorage serve`` (``http://127.0.0.1:8585``). Read commands (``get``, ``keys``,
``meta``, and the source of ``copy``) open it read-only, so they never create one. Every
failure goes through `storage._cli_errors.explain`: exit status 0 success, 1 key not found,
2 usage error, 3 storage or driver error, 130 interrupted. The arguments are in
`storage._cli_parser`, ``copy`` and ``rotate`` in `storage._cli_copy`, ``serve`` in
`storage.serve`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import traceback
from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime
from typing import Any, TextIO

import orjson

from . import __version__
from ._cli_copy import copy, rotate
from ._cli_errors import (
    EXIT_INTERRUPTED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_USAGE,
    Fail,
    explain,
)
from ._cli_parser import parser
from ._cli_stores import open_store
from .errors import StorageError
from .keys import normalize_base
from .serve import TOKEN_ENV, serve
from .storage import Storage

__all__ = ["main"]


def _open(args: argparse.Namespace, *, read_only: bool = False) -> Storage:
    return open_store(args.store, args.token, read_only=read_only)


async def _get(args: argparse.Namespace, out: TextIO) -> int:
    async with _open(args, read_only=True) as storage:
        data = await storage.get_item_raw(args.key)
        if data is None:
            raise Fail(f"not found: {args.key}", EXIT_NOT_FOUND)
        if args.raw:
            out.flush()
            binary = getattr(out, "buffer", None)
            if binary is None:
                raise Fail("--raw needs a binary stdout")
            binary.write(data)
            binary.flush()
            return EXIT_OK
        try:
            value = storage.serializer.loads(data)
        except Exception:
            raise Fail(f"{args.key} holds bytes that are not a value; use --raw") from None
        out.write((value if isinstance(value, str) else data.decode("utf-8")) + "\n")
    return EXIT_OK


async def _set(args: argparse.Namespace, out: TextIO) -> int:
    raw = sys.stdin.buffer.read() if args.value is None else args.value.encode("utf-8")
    value: Any = raw
    if not args.raw:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise Fail("the value is not UTF-8 text; store bytes with --raw", EXIT_USAGE) from None
        if args.value is None and not args.json:
            text = text.removesuffix("\n")  # `echo v | unistorage set` stores "v"
        value = text
        if args.json:
            try:
                value = orjson.loads(text)
            except orjson.JSONDecodeError as exc:
                raise Fail(f"--json: the value is not JSON ({exc})", EXIT_USAGE) from None
    async with _open(args) as storage:
        if args.raw:
            await storage.set_item_raw(args.key, raw, ttl=args.ttl)
        else:
            await storage.set_item(args.key, value, ttl=args.ttl)
    return EXIT_OK


async def _rm(args: argparse.Namespace, out: TextIO) -> int:
    async with _open(args) as storage:
        await storage.remove_items(args.keys, remove_meta=args.meta)
    return EXIT_OK


async def _keys(args: argparse.Namespace, out: TextIO) -> int:
    async with _open(args, read_only=True) as storage:
        async for key in storage.iter_keys(args.base, max_depth=args.max_depth):
            out.write(key + "\n")
    return EXIT_OK


async def _clear(args: argparse.Namespace, out: TextIO) -> int:
    if not normalize_base(args.base) and not args.all:
        raise Fail("clearing a whole store needs --all", EXIT_USAGE)
    async with _open(args) as storage:
        await storage.clear(args.base)
    return EXIT_OK


async def _meta(args: argparse.Namespace, out: TextIO) -> int:
    async with _open(args, read_only=True) as storage:
        if not await storage.has_item(args.key):
            raise Fail(f"not found: {args.key}", EXIT_NOT_FOUND)
        meta = await storage.get_meta(args.key)

    def plain(value: Any) -> Any:
        if isinstance(value, datetime):
            return value.isoformat()
        if isinstance(value, (set, frozenset, tuple)):
            return list(value)
        return str(value)

    out.write(orjson.dumps(meta, default=plain, option=orjson.OPT_SORT_KEYS).decode() + "\n")
    return EXIT_OK


async def _keygen(args: argparse.Namespace, out: TextIO) -> int:
    from .layers.encrypt import generate_key

    out.write(generate_key() + "\n")
    return EXIT_OK


_Command = Callable[[argparse.Namespace, TextIO], Coroutine[Any, Any, int]]
_COMMANDS: dict[str, _Command] = {
    "get": _get,
    "set": _set,
    "rm": _rm,
    "keys": _keys,
    "clear": _clear,
    "meta": _meta,
    "copy": copy,
    "rotate": rotate,
    "keygen": _keygen,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    command_line = parser()
    command_line.add_argument("--version", action="version", version=f"unistorage {__version__}")
    args = command_line.parse_args(argv)
    if args.command != "serve":  # the server sets up its own logging (--log-level)
        logging.basicConfig(level=logging.WARNING, format="unistorage: %(message)s")
    typed = [args.key] if hasattr(args, "key") else list(getattr(args, "keys", []))
    try:
        if args.command == "serve":
            return serve(args)
        return asyncio.run(_COMMANDS[args.command](args, sys.stdout))
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `unistorage keys ... | head`: the reader left; stop quietly, as shell tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:
        message, status = explain(exc, args.command, typed, TOKEN_ENV)
        if not isinstance(exc, (Fail, StorageError, OSError)):
            traceback.print_exc()  # a bug: the whole story helps whoever fixes it
        sys.stderr.write(f"unistorage {args.command}: {message}\n")
        return status


if __name__ == "__main__":
    sys.exit(main())
