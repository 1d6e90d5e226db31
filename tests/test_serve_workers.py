"""``unistorage serve --workers N``: real processes on one port, over one shared store, that
never outlive their parent.

Each test starts the CLI as a child process on a free port (granian, the default when it is
installed, and uvicorn) and reads the kernel's view of who listens on that port from /proc.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.faults import ServeProcess

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads listening sockets from /proc"
)

SERVERS = [
    pytest.param(
        "granian",
        marks=pytest.mark.skipif(
            importlib.util.find_spec("granian") is None, reason="granian not installed"
        ),
    ),
    "uvicorn",
]


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(name):
            continue
        for line in Path(name).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                inodes.add(fields[9])
    return inodes


def _parent_of(pid: str) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _holders(port: int) -> dict[int, int]:
    """pid -> parent pid of every process holding a socket that listens on ``port``."""
    sockets = {f"socket:[{inode}]" for inode in _listening_inodes(port)}
    found: dict[int, int] = {}
    if not sockets:
        return found
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") in sockets:
                    found[int(pid)] = _parent_of(pid)
                    break
        except OSError:  # gone, or not ours to read
            continue
    return found


def _workers(parent: int, port: int, count: int, timeout: float = 20.0) -> set[int]:
    """The children of ``parent`` listening on ``port``, once there are ``count`` of them."""
    deadline = time.monotonic() + timeout
    while True:
        workers = {pid for pid, ppid in _holders(port).items() if ppid == parent}
        if len(workers) >= count or time.monotonic() > deadline:
            return workers
        time.sleep(0.1)


def _port_released(port: int, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while _holders(port) or _listening_inodes(port):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _request(port: int, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    """One request on a connection of its own (so the kernel may hand it to any worker)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, body=body, headers={"connection": "close"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _start(tmp_path: Path, server: str) -> ServeProcess:
    driver = f"sqlite:///{tmp_path / 'shared.db'}"
    args = ["--workers", "2", "--server", server]
    return ServeProcess(driver, tmp_path / "serve.log", args=args).start(timeout=60)


@pytest.mark.parametrize("server", SERVERS)
def test_two_workers_listen_on_the_port_and_serve_one_shared_store(
    tmp_path: Path, server: str
) -> None:
    serve = _start(tmp_path, server)
    try:
        assert serve.process is not None
        workers = _workers(serve.process.pid, serve.port, 2)
        assert len(workers) == 2, f"{workers}: {serve.log_tail()}"
        assert _request(serve.port, "PUT", "/greeting", b'{"hello": "world"}')[0] == 200
        # Fresh connections land on either worker; both read the one sqlite file.
        for _ in range(30):
            assert _request(serve.port, "GET", "/greeting") == (200, b'{"hello": "world"}')
        assert "2 workers" in serve.log_tail()
    finally:
        serve.stop()


@pytest.mark.parametrize("server", SERVERS)
def test_sigterm_of_the_parent_stops_every_worker(tmp_path: Path, server: str) -> None:
    serve = _start(tmp_path, server)
    assert serve.process is not None
    assert len(_workers(serve.process.pid, serve.port, 2)) == 2
    serve.process.send_signal(signal.SIGTERM)
    serve.process.wait(timeout=20)
    assert _port_released(serve.port), _holders(serve.port)


@pytest.mark.parametrize("server", SERVERS)
def test_sigkill_of_the_parent_leaves_no_worker_holding_the_port(
    tmp_path: Path, server: str
) -> None:
    serve = _start(tmp_path, server)
    assert serve.process is not None
    workers = _workers(serve.process.pid, serve.port, 2)
    assert len(workers) == 2
    serve.kill()  # SIGKILL: the parent cannot pass anything on to its workers
    released = _port_released(serve.port)
    for pid in workers:  # never leave one behind, even when the test fails
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert released, f"workers {workers} still hold port {serve.port}"


def test_a_serving_process_freezes_its_startup_objects_and_collects_the_young_less_often() -> None:
    # In a child process: the suite's own collector keeps Python's defaults.
    check = (
        "import gc; from storage.serve import GC_YOUNG, tune_gc; "
        "older = gc.get_threshold()[1:]; tune_gc(); "
        "assert gc.get_freeze_count() > 1000, gc.get_freeze_count(); "
        "assert gc.get_threshold() == (GC_YOUNG, *older), gc.get_threshold()"
    )
    subprocess.run([sys.executable, "-c", check], check=True)
