"""The ``unistorage`` command line's arguments: every command, flag and default, in one place.

docs/server.md lists the same flags; each subcommand's ``command`` names the function that
`storage.cli` runs for it.
"""

from __future__ import annotations

import argparse
import os

from .serve import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    DEFAULT_STORE,
    LOOPS,
    METRICS_TOKEN_ENV,
    SERVERS,
    TOKEN_ENV,
)

__all__ = ["COPY_BATCH", "KEYS_ENV", "LOG_LEVELS", "parser"]

COPY_BATCH = 500
KEYS_ENV = "UNISTORAGE_KEYS"
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, not {text!r}")
    return int(text)


def _depth(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, not {text!r}")
    return int(text)


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"a port is an integer from 0 to 65535, not {text!r}")
    return int(text)


def _ttl(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"a TTL is seconds > 0, not {text!r}")
    return value


def _progress_flags(sub: argparse.ArgumentParser) -> None:
    bar = sub.add_mutually_exclusive_group()
    bar.add_argument("--progress", action="store_true", default=None,
                     help="always draw the progress bar (default: only on a terminal)")  # fmt: skip
    bar.add_argument("--no-progress", dest="progress", action="store_false", help="never draw it")
    sub.add_argument("--quiet", "-q", action="store_true", help="no summary line on stdout")


def parser() -> argparse.ArgumentParser:
    """The argument parser of ``unistorage``."""
    top = argparse.ArgumentParser(
        prog="unistorage",
        description="Serve a key-value store over HTTP; read, write, list and copy any store.",
        epilog="STORE is a driver URL (memory://, sqlite:///file.db, redis://host, "
        "file:///dir, s3://bucket/prefix) or a server URL (http://127.0.0.1:8585). "
        "Exit status: 0 ok, 1 not found, 2 usage, 3 storage error, 130 interrupted.",
    )
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

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
    serve.add_argument(
        "--port", type=_port, default=DEFAULT_PORT, help=f"(default: {DEFAULT_PORT})"
    )
    serve.add_argument("--token", action="append", default=[], metavar="TOKEN",
                       help=f"a read-write bearer token (repeatable; also ${TOKEN_ENV})")  # fmt: skip
    serve.add_argument("--read-token", action="append", default=[], metavar="TOKEN",
                       help="a bearer token that may only read (repeatable)")  # fmt: skip
    serve.add_argument("--read-only", action="store_true", help="refuse every write (405)")
    serve.add_argument("--max-body", type=_positive, default=32 * 1024 * 1024, metavar="BYTES",
                       help="largest request body (default: 32 MiB)")  # fmt: skip
    serve.add_argument("--metrics-token", metavar="TOKEN",
                       help="serve Prometheus metrics at GET /?metrics to this bearer token "
                       f"(also ${METRICS_TOKEN_ENV}); read-write tokens may read them too")  # fmt: skip
    serve.add_argument("--workers", type=_positive, default=1, metavar="N",
                       help="worker processes on the one port, for more cores (default: 1)")  # fmt: skip
    serve.add_argument("--server", default="auto", choices=("auto", *SERVERS),
                       help="the ASGI server (default: granian if installed, else uvicorn)")  # fmt: skip
    serve.add_argument("--loop", default="auto", choices=("auto", *LOOPS),
                       help="the event loop (default: uvloop if installed, else asyncio)")  # fmt: skip
    serve.add_argument("--log-level", default="info", choices=LOG_LEVELS,
                       help="for uvicorn and the storage.*, drivers.* and sessions.* loggers "
                       "(default: info)")  # fmt: skip

    get = command("get", "print the value of KEY (a string as text, others as JSON)")
    get.add_argument("key", metavar="KEY")
    get.add_argument("--raw", action="store_true", help="write the stored bytes to stdout")

    set_ = command("set", "store VALUE (or stdin) at KEY, as a string unless --json or --raw")
    set_.add_argument("key", metavar="KEY")
    set_.add_argument("value", metavar="VALUE", nargs="?", help="the value (default: stdin)")
    kind = set_.add_mutually_exclusive_group()
    kind.add_argument("--json", action="store_true", help="VALUE is JSON")
    kind.add_argument("--raw", action="store_true", help="store the bytes as they are")
    set_.add_argument("--ttl", type=_ttl, metavar="SECONDS", help="expire after SECONDS")

    rm = command("rm", "remove KEYs (missing keys are fine)")
    rm.add_argument("keys", metavar="KEY", nargs="+")
    rm.add_argument("--meta", action="store_true", help="remove their user meta too")

    keys = command("keys", "list keys under BASE, one per line")
    keys.add_argument("base", metavar="BASE", nargs="?", default="")
    keys.add_argument("--max-depth", type=_depth, metavar="N",
                      help="at most N separators after BASE")  # fmt: skip

    clear = command("clear", "remove every key under BASE")
    clear.add_argument("base", metavar="BASE", nargs="?", default="")
    clear.add_argument("--all", action="store_true", help="allow clearing the whole store")

    meta = command("meta", "print the metadata of KEY as JSON")
    meta.add_argument("key", metavar="KEY")

    copy = commands.add_parser(
        "copy", help="copy every key under --base from SRC to DST",
        description="Copy keys with their user meta and remaining TTL from SRC to DST, in "
        "batches. Keys DST already holds with the same value are skipped, so running an "
        "interrupted copy again resumes it.",
    )  # fmt: skip
    copy.add_argument("src", metavar="SRC", help="source driver or server URL (only read)")
    copy.add_argument("dst", metavar="DST", help="target driver or server URL")
    copy.add_argument("--base", default="", help="copy only keys under BASE")
    copy.add_argument(
        "--to", metavar="BASE", help="put them under this base in DST (default: --base)"
    )
    copy.add_argument("--skip-existing", action="store_true", help="never overwrite a key DST has")
    copy.add_argument("--force", action="store_true", help="write every key without comparing")
    copy.add_argument("--batch", type=_positive, default=COPY_BATCH, metavar="N",
                      help=f"keys per batch (default: {COPY_BATCH})")  # fmt: skip
    copy.add_argument("--no-count", action="store_true",
                      help="do not count the keys first (the bar shows no percentage)")  # fmt: skip
    _progress_flags(copy)
    copy.add_argument("--token", default=os.environ.get(TOKEN_ENV),
                      help=f"bearer token for http(s) URLs (default: ${TOKEN_ENV})")  # fmt: skip
    copy.add_argument("--dst-token", metavar="TOKEN",
                      help="bearer token for an http(s) DST, if it differs from --token")  # fmt: skip

    rotate = command("rotate", "re-encrypt every value under BASE with the newest key")
    rotate.add_argument("base", metavar="BASE", nargs="?", default="")
    rotate.add_argument("--keys-env", default=KEYS_ENV, metavar="NAME",
                        help="environment variable holding the keys, newest first, "
                        f"comma-separated URL-safe base64 (default: {KEYS_ENV})")  # fmt: skip
    _progress_flags(rotate)

    command("keygen", "print a new encryption key (URL-safe base64)", store=False)
    return top
