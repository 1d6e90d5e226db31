"""``unistorage serve``: build the Storage the flags describe and serve it over HTTP.

The ASGI server is granian when it is installed (it measured fastest: docs/benchmarks.md),
else uvicorn; ``--server`` picks one. Either runs on uvloop when it is installed (1.3x-1.5x the
requests/s of asyncio's own loop under load), else on asyncio's; ``--loop`` picks one.
``--workers N`` runs N processes on the one port, each building its own Storage from the same
flags (checked once, in the parent, before any starts).

Layers come from the driver URLs themselves (``--driver 'redis://host?compress=true'``, see
`storage.layers.options`). ``--metrics-token`` also puts a `storage.layers.Stats` layer on the
root and on every mount and serves their Prometheus text at ``GET /?metrics`` to that token.

Each serving process tunes Python's garbage collector once its app is built (`tune_gc`).
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import errno
import gc
import importlib.util
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence

from .driver import Driver
from .errors import InvalidArgumentError, UnsupportedError
from .factory import create_driver
from .keys import normalize_base
from .layers.stats import Stats, render
from .protocol import check_token
from .server import StorageServer
from .storage import Storage, create_storage

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "DEFAULT_STORE",
    "LOGGERS",
    "LOOPS",
    "METRICS_TOKEN_ENV",
    "SERVERS",
    "TOKEN_ENV",
    "build",
    "choose_loop",
    "choose_server",
    "listen",
    "serve",
    "tune_gc",
    "worker_app",
]

DEFAULT_STORE = "sqlite:///.data/unistorage.db"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8585
TOKEN_ENV = "UNISTORAGE_TOKEN"
METRICS_TOKEN_ENV = "UNISTORAGE_METRICS_TOKEN"
#: The loggers ``--log-level`` sets, besides the ASGI server's (docs/logging.md).
LOGGERS = ("storage", "drivers", "sessions")
#: The ASGI servers ``--server`` may name, fastest first; "auto" is the first one installed.
SERVERS = ("granian", "uvicorn")
#: The event loops ``--loop`` may name, fastest first; "auto" is the first one installed.
LOOPS = ("uvloop", "asyncio")
# The flags, as JSON, for the worker processes (they build their own app from them).
_FLAGS_ENV = "UNISTORAGE_SERVE_FLAGS"
_PR_SET_PDEATHSIG = 1


def _mounts(specs: Sequence[str]) -> list[tuple[str, str]]:
    mounts: list[tuple[str, str]] = []
    for spec in specs:
        base, sep, url = spec.partition("=")
        if not sep or not url:
            raise InvalidArgumentError(f"--mount takes BASE=URL, not {spec!r}")
        if not base.strip(":/\\ "):
            raise InvalidArgumentError(f"--mount {spec!r} names the root: use --driver URL")
        mounts.append((base, url))
    return mounts


def build(args: argparse.Namespace) -> tuple[StorageServer, Storage]:
    """The app and storage ``args`` describe; every check is made before anything opens."""
    tokens = list(args.token)
    if os.environ.get(TOKEN_ENV):
        tokens.append(os.environ[TOKEN_ENV])
    # Refused before anything opens: a token that can never authenticate locks everyone out.
    for token in tokens:
        check_token(token, "--token")
    for token in args.read_token:
        check_token(token, "--read-token")
    metrics_tokens = [t for t in (args.metrics_token or os.environ.get(METRICS_TOKEN_ENV),) if t]
    for token in metrics_tokens:
        check_token(token, "--metrics-token")
    mounts = _mounts(args.mount)
    stats: dict[str, Stats] = {}

    def driver(base: str, url: str) -> Driver | str:
        if not metrics_tokens:
            return url
        stats[normalize_base(base) or "/"] = layer = Stats(create_driver(url))
        return layer

    storage = create_storage(driver("", args.root or DEFAULT_STORE))
    for base, url in mounts:
        storage.mount(base, driver(base, url))
    app = StorageServer(
        storage,
        tokens=tokens,
        read_tokens=args.read_token,
        read_only=args.read_only,
        max_body=args.max_body,
        dispose_on_shutdown=True,
        metrics=(lambda: render(stats)) if stats else None,
        metrics_tokens=metrics_tokens,
    )
    return app, storage


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` for the server, or `InvalidArgumentError` saying which
    flag to change (a port that is taken, a host this machine does not have)."""
    # As uvicorn binds: IPv6 for an address with a colon, else IPv4 (so "localhost" is 127.0.0.1).
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise InvalidArgumentError(
                f"port {port} on {host} is taken (another server listens there): "
                "choose another with --port"
            ) from None
        reason = exc.strerror or str(exc)
        raise InvalidArgumentError(
            f"cannot listen on {host}:{port} ({reason}): change --host or --port"
        ) from None
    sock.set_inheritable(True)
    return sock


def _log_to_stderr(level: str) -> None:
    """Our loggers at ``level`` on stderr, beside uvicorn's own; other libraries at warning."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)-8s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    for name in LOGGERS:
        logging.getLogger(name).setLevel(level.upper())


def choose_server(name: str) -> str:
    """The ASGI server to run: ``name``, or for "auto" the first of `SERVERS` installed;
    `UnsupportedError` saying what to install when it is not there."""
    for server in SERVERS if name == "auto" else (name,):
        if importlib.util.find_spec(server) is not None:
            return server
    wanted = "granian or uvicorn" if name == "auto" else name
    raise UnsupportedError(f"serving needs {wanted}: pip install 'unistorage[server]'")


def choose_loop(name: str) -> str:
    """The event loop to run: ``name``, or for "auto" uvloop when it imports, else asyncio;
    `UnsupportedError` saying what to install when uvloop is asked for and missing."""
    if name == "asyncio":
        return name
    try:
        importlib.import_module("uvloop")
    except ImportError:
        if name == "uvloop":
            raise UnsupportedError("--loop uvloop needs uvloop: pip install uvloop") from None
        return "asyncio"
    return "uvloop"


def _die_with_parent() -> None:
    # A worker whose supervisor was killed (SIGKILL, a crash) must not keep the port.
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() == 1:  # the parent was already gone
            os._exit(1)


#: Allocations between two collections of the youngest generation in a serving process.
GC_YOUNG = 10_000


def tune_gc() -> None:
    """Set the garbage collector of a serving process, once its app is built: what exists by
    then lives as long as the process, so collections stop scanning it (`gc.freeze`); and the
    youngest generation is collected every `GC_YOUNG` allocations instead of 700. Each request
    allocates dozens of containers and most are freed by reference counting, yet at Python's
    default every ~20 requests paid a collection that walked those of every request in
    flight: 8% of the requests/s of PUT at 64 connections (docs/benchmarks.md). The garbage
    of start-up is collected first, so that none of it is frozen for good."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG, older, oldest)


def worker_app() -> StorageServer:
    """The app of one worker process, built from the flags its parent checked."""
    _die_with_parent()
    args = argparse.Namespace(**json.loads(os.environ[_FLAGS_ENV]))
    _log_to_stderr(args.log_level)
    app = build(args)[0]
    tune_gc()
    return app


def _run(server: str, app: StorageServer, sock: socket.socket, args: argparse.Namespace) -> None:
    workers = getattr(args, "workers", 1)
    if server == "uvicorn" and workers == 1:
        import uvicorn

        config = uvicorn.Config(app, log_level=args.log_level, lifespan="on", loop=args.loop)
        tune_gc()
        uvicorn.Server(config).run(sockets=[sock])
        return
    # The workers build their own storage; this one only proved that the flags hold.
    asyncio.run(app.storage.dispose())
    os.environ[_FLAGS_ENV] = json.dumps(vars(args))
    target = f"{__name__}:worker_app"
    if server == "uvicorn":
        import uvicorn

        uvicorn.run(
            target, factory=True, fd=sock.fileno(), workers=workers, log_level=args.log_level,
            lifespan="on", loop=args.loop,
        )  # fmt: skip
        return
    from granian import Granian
    from granian.constants import Interfaces, Loops
    from granian.log import LogLevels

    sock.close()  # granian binds the port itself; listen() checked that it can
    Granian(
        target, address=args.host, port=args.port, interface=Interfaces.ASGI, workers=workers,
        log_level=LogLevels(args.log_level), factory=True, backlog=2048, loop=Loops(args.loop),
    ).serve()  # fmt: skip


def serve(args: argparse.Namespace) -> int:
    """Run the server until interrupted; returns the exit status.

    Every check (tokens, mounts, URLs, the port, the server software) is made before the
    "serving" line and before anything opens, so a refused start leaves nothing behind.
    """
    server = choose_server(getattr(args, "server", "auto"))
    args.loop = choose_loop(getattr(args, "loop", "auto"))
    _log_to_stderr(args.log_level)
    sock = listen(args.host, args.port)
    try:
        app, _ = build(args)
        tokens = bool(args.token or os.environ.get(TOKEN_ENV) or args.read_token)
        access = "read-only" if args.read_only else "read-write"
        guard = "bearer tokens" if tokens else "no tokens: anyone who can connect"
        store = args.root or DEFAULT_STORE
        workers = getattr(args, "workers", 1)
        on = f"{server}, {args.loop}" + (f", {workers} workers" if workers > 1 else "")
        sys.stderr.write(
            f"unistorage: serving {store} ({access}, {guard}) on http://{args.host}:{args.port}"
            f" ({on})\n"
        )
        if workers > 1 and store.startswith("memory:"):
            sys.stderr.write(
                "unistorage: warning: memory:// with several workers: each worker holds its "
                "own data; use a shared store (sqlite, redis, ...)\n"
            )
        if not tokens and args.host not in ("127.0.0.1", "localhost", "::1"):
            sys.stderr.write(
                "unistorage: warning: an open server on a public address; use --token\n"
            )
        _run(server, app, sock, args)
    finally:
        sock.close()
    return 0
