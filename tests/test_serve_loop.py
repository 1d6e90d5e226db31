"""``unistorage serve --loop``: the event loop under the ASGI server, named on the serving line.

Real `unistorage serve` processes on free ports, on granian and on uvicorn, each answering a
PUT and a GET. Where uvloop must be missing, the CLI runs in a Python whose ``uvloop`` import
is blocked (``sys.modules["uvloop"] = None``, Python's own way to make a module unimportable).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.servers import free_port

SCRIPT = str(Path(sys.executable).with_name("unistorage"))
#: The console script with uvloop unimportable.
WITHOUT_UVLOOP = (
    "import sys; sys.modules['uvloop'] = None; from storage.cli import main; sys.exit(main())"
)


def _serve(command: list[str], port: int) -> str:
    """Start ``command`` (a serve on ``port``), PUT and GET one key, stop it; its stderr."""
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, process.communicate()[1]
            try:
                put = httpx.put(f"http://127.0.0.1:{port}/greeting", content=b'"hello"')
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.05)
        assert put.status_code == 200
        got = httpx.get(f"http://127.0.0.1:{port}/greeting")
        assert (got.status_code, got.text) == (200, "hello")  # a string reads back as text
    finally:
        process.terminate()
        _, logged = process.communicate(timeout=10)
    return logged


def _flags(port: int, *extra: str) -> list[str]:
    return ["serve", "--driver", "memory://", "--port", str(port), "--log-level", "warning", *extra]


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
@pytest.mark.parametrize("server", ["granian", "uvicorn"])
def test_each_server_serves_on_the_loop_asked_for_and_says_which(server: str, loop: str) -> None:
    port = free_port()
    logged = _serve([SCRIPT, *_flags(port, "--server", server, "--loop", loop)], port)
    assert f"({server}, {loop})" in logged


def test_the_default_loop_is_uvloop_when_it_is_installed() -> None:
    if sys.platform == "win32":
        pytest.skip("the server extra installs uvloop everywhere but on Windows")
    port = free_port()
    assert "(granian, uvloop)" in _serve([SCRIPT, *_flags(port, "--server", "granian")], port)


def test_without_uvloop_the_default_falls_back_to_asyncio() -> None:
    port = free_port()
    logged = _serve([sys.executable, "-c", WITHOUT_UVLOOP, *_flags(port)], port)
    assert ", asyncio)" in logged


def test_asking_for_uvloop_without_it_is_one_line_and_serves_nothing() -> None:
    port = free_port()
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_UVLOOP, *_flags(port, "--loop", "uvloop")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 3  # UnsupportedError, as for a missing ASGI server
    assert result.stderr.splitlines() == [
        "unistorage serve: --loop uvloop needs uvloop: pip install uvloop"
    ]


def test_an_unknown_loop_is_refused_by_the_parser() -> None:
    result = subprocess.run(
        [SCRIPT, *_flags(free_port(), "--loop", "rloop")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "invalid choice: 'rloop'" in result.stderr
