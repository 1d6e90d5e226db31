"""The HTTP servers the server suites load: ``unistorage serve``, the raw ASGI floor on the
same server software, and unstorage's own server on node, each its own process on a free port.

`start_servers` starts the ones asked for over one kind of store (``memory`` or ``sqlite``,
each server with its own database file in ``directory``) and waits until each answers; every
`Served` is stopped by `Served.stop`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.faults import ServeProcess
from tests.servers import free_port

from .node_rounds import NODE_DIR

__all__ = ["Served", "floor_server", "node_server", "ours_server"]

_SOURCE = str(Path(__file__).resolve().parent.parent)


@dataclass
class Served:
    """One running server: its name in the tables, its base URL and how to stop it."""

    name: str
    url: str
    process: subprocess.Popen[bytes] | None = None
    serve: ServeProcess | None = None

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s)."""
        if self.serve is not None:
            self.serve.stop()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _wait(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            urllib.request.urlopen(f"{url}/probe", timeout=1).close()
            return
        except urllib.error.HTTPError:
            return  # any answer: it is up
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within 30 s")


def _spawn(name: str, command: list[str], port: int, log: Path, cwd: str) -> Served:
    with log.open("ab") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, cwd=cwd,
            env={**os.environ, "PYTHONPATH": _SOURCE},
        )  # fmt: skip
    served = Served(name, f"http://127.0.0.1:{port}", process=process)
    try:
        _wait(served.url, process, log)
    except BaseException:
        served.stop()
        raise
    return served


def _store(kind: str, directory: Path, name: str) -> Path:
    return directory / f"{name}.sqlite" if kind == "sqlite" else directory


def _loop_name(loop: str) -> str:
    """How a subject's name says its event loop: nothing for the default (``auto``)."""
    return "" if loop == "auto" else f", {loop} loop"


def ours_server(
    kind: str, server: str, directory: Path, workers: int = 1, loop: str = "auto"
) -> Served:
    """``unistorage serve`` over ``kind`` on ``server`` (granian or uvicorn), on ``loop``
    (as ``--loop``)."""
    path = _store(kind, directory, f"ours-{server}-{workers}-{loop}")
    driver = "memory://" if kind == "memory" else f"sqlite:///{path}"
    args = ["--server", server, "--workers", str(workers), "--loop", loop]
    serve = ServeProcess(driver, directory / f"ours-{server}-{loop}.log", args=args).start()
    suffix = f", {workers} workers" if workers > 1 else ""
    return Served(f"unistorage serve ({server}{_loop_name(loop)}{suffix})", serve.url, serve=serve)


def floor_server(kind: str, server: str, directory: Path, loop: str = "auto") -> Served:
    """The raw ASGI key-value app (`benchmarks.asgi_floor`) over ``kind`` on ``server``, on
    ``loop`` (as ``--loop``)."""
    port = free_port()
    name = f"floor-{server}-{loop}"
    spec = "memory" if kind == "memory" else f"sqlite:{_store(kind, directory, name)}"
    command = [sys.executable, "-m", "benchmarks.asgi_floor", server, str(port), spec, loop]
    return _spawn(
        f"raw ASGI kv app ({server}{_loop_name(loop)})",
        command,
        port,
        directory / f"{name}.log",
        _SOURCE,
    )


def node_server(kind: str, directory: Path) -> Served:
    """unstorage's createStorageServer on node:http over its memory or db0 (sqlite) driver."""
    port = free_port()
    command = ["node", str(NODE_DIR / "server.mjs"), str(port), kind]
    if kind == "sqlite":
        command.append(str(_store(kind, directory, "node")))
    return _spawn("unstorage server (node)", command, port, directory / "node.log", str(NODE_DIR))
