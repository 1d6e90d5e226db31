"""Every failure of the console script is one line on stderr with its documented exit status
(0 ok, 1 not found, 2 usage, 3 storage error), and the line points at the fix."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from storage import SerializationError, create_storage
from tests.fixtures.http import ServerThread
from tests.servers import free_port

SCRIPT = str(Path(sys.executable).with_name("unistorage"))


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SCRIPT, *args], capture_output=True, text=True, timeout=60, cwd=cwd, check=False
    )


def one_line(result: subprocess.CompletedProcess[str], command: str) -> str:
    """The single line a failure writes to stderr, checked to be one and no traceback."""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"unistorage {command}: ")
    return lines[0]


@pytest.fixture(scope="module")
def guarded() -> Iterator[str]:
    with ServerThread(tokens=["right"], read_tokens=["reader"]) as server:
        yield server.url


# -- stores that cannot be reached or opened ---------------------------------------------------


def test_copy_to_an_unreachable_server_is_a_storage_error(tmp_path: Path) -> None:
    src = f"sqlite:///{tmp_path}/src.db"
    assert run("set", src, "k", "v").returncode == 0
    result = run("copy", src, f"http://127.0.0.1:{free_port()}/?timeout=2")
    assert result.returncode == 3
    assert "http driver failed" in one_line(result, "copy")


def test_a_wrong_token_is_a_storage_error_that_names_the_token_flag(
    guarded: str, tmp_path: Path
) -> None:
    result = run("get", guarded, "k", "--token", "wrong")
    assert result.returncode == 3
    line = one_line(result, "get")
    assert "401" in line
    assert "--token" in line
    assert "$UNISTORAGE_TOKEN" in line


def test_copy_with_a_wrong_target_token_names_dst_token(guarded: str, tmp_path: Path) -> None:
    src = f"sqlite:///{tmp_path}/src.db"
    assert run("set", src, "k", "v").returncode == 0
    result = run("copy", src, guarded, "--dst-token", "wrong")
    assert result.returncode == 3
    assert "--dst-token" in one_line(result, "copy")


def test_a_read_token_that_writes_is_told_to_use_a_read_write_one(guarded: str) -> None:
    result = run("set", guarded, "k", "v", "--token", "reader")
    assert result.returncode == 3
    assert "read-write token" in one_line(result, "set")


def test_an_unknown_url_option_is_a_usage_error_that_names_it() -> None:
    result = run("get", "sqlite:///x.db?bogus=1", "k")
    assert result.returncode == 2
    line = one_line(result, "get")
    assert "no option 'bogus'" in line
    assert "busy_timeout" in line  # and the options it does take


def test_a_directory_that_cannot_be_made_is_a_storage_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    result = run("set", f"file://{tmp_path}/file/store", "k", "v")
    assert result.returncode == 3
    assert "Not a directory" in one_line(result, "set")


# -- read commands never create a store ------------------------------------------------------


def test_reading_a_missing_fs_store_creates_nothing(tmp_path: Path) -> None:
    store = f"file://{tmp_path}/absent"
    result = run("get", store, "k")
    assert (result.returncode, result.stderr) == (1, "unistorage get: not found: k\n")
    assert run("keys", store).returncode == 0
    assert run("meta", store, "k").returncode == 1
    assert not (tmp_path / "absent").exists()


def test_reading_a_missing_sqlite_store_creates_nothing_and_says_so(tmp_path: Path) -> None:
    result = run("get", "sqlite:///nodir/x.db", "k", cwd=tmp_path)
    assert not (tmp_path / "nodir").exists()
    assert result.returncode == 3
    assert "never creates one" in one_line(result, "get")


def test_reading_an_empty_sqlite_file_says_reads_never_create_a_store(tmp_path: Path) -> None:
    (tmp_path / "empty.db").touch()
    result = run("keys", f"sqlite:///{tmp_path}/empty.db")
    assert result.returncode == 3
    assert "opens a store read-only and never creates one" in one_line(result, "keys")


# -- messages ---------------------------------------------------------------------------------


def test_keys_in_messages_are_shown_as_typed() -> None:
    result = run("set", "memory://?read_only=true", "users/ann", "v")
    assert result.returncode == 3
    line = one_line(result, "set")
    assert "'users/ann'" in line
    assert "users:ann" not in line


def test_text_that_is_not_utf8_is_a_usage_error_pointing_at_raw(tmp_path: Path) -> None:
    result = subprocess.run(
        [SCRIPT, "set", f"sqlite:///{tmp_path}/x.db", "k"], input=b"\xff\xfe", capture_output=True
    )
    assert result.returncode == 2
    assert b"--raw" in result.stderr


async def test_get_item_of_raw_bytes_says_to_use_get_item_raw() -> None:
    async with create_storage() as storage:
        await storage.set_item_raw("blob", b"\xff\x00")
        with pytest.raises(SerializationError, match="read with get_item_raw"):
            await storage.get_item("blob")


# -- serve ------------------------------------------------------------------------------------


def test_serve_on_a_taken_port_says_so_names_port_and_serves_nothing(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("serve", "--driver", "memory://", "--port", str(port), cwd=tmp_path)
    assert result.returncode == 2
    line = one_line(result, "serve")
    assert f"port {port} on 127.0.0.1 is taken" in line
    assert "--port" in line
    assert "serving" not in result.stderr


def test_serve_on_a_host_that_is_not_here_names_host(tmp_path: Path) -> None:
    result = run("serve", "--host", "192.0.2.1", "--port", str(free_port()), cwd=tmp_path)
    assert result.returncode == 2
    assert "--host" in one_line(result, "serve")


def _serve_and_log(level: str, tmp_path: Path) -> str:
    """What a server whose store cannot open (a directory for an sqlite file) logs at
    ``level`` while answering one request."""
    port = free_port()
    process = subprocess.Popen(
        [SCRIPT, "serve", "--driver", f"sqlite:///{tmp_path}", "--port", str(port),
         "--log-level", level],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/k")
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.05)
        assert answer.status_code == 502
    finally:
        process.terminate()
        _, logged = process.communicate(timeout=10)
    return logged


def test_the_server_log_level_sets_our_loggers_too(tmp_path: Path) -> None:
    logged = _serve_and_log("warning", tmp_path)
    assert "WARNING  storage.server: GET /k failed" in logged
    assert "unable to open database file" in logged  # the whole story, which the client never sees
    assert "storage.server" not in _serve_and_log("error", tmp_path)
