"""The unistorage command line: in-process through `main`, and as the installed console script."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from drivers.memory import MemoryDriver
from storage import create_storage
from storage.cli import main
from tests.fixtures.http import ServerThread
from tests.servers import free_port

SCRIPT = str(Path(sys.executable).with_name("unistorage"))


def run(
    *args: str, stdin: bytes = b"", cwd: Path | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [SCRIPT, *args], input=stdin, capture_output=True, timeout=60, cwd=cwd, check=False
    )


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/store.db"


def out(capsys: pytest.CaptureFixture[str]) -> str:
    return capsys.readouterr().out


# -- reading and writing ----------------------------------------------------------------------


def test_set_stores_a_string_and_get_prints_it(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["set", db, "greeting", "hello world"]) == 0
    assert main(["get", db, "greeting"]) == 0
    assert out(capsys) == "hello world\n"


def test_json_values_are_printed_as_json(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["set", db, "doc", '{"a": [1, 2]}', "--json"]) == 0
    assert main(["set", db, "num", "42"]) == 0  # without --json a value is a string
    main(["get", db, "doc"])
    main(["get", db, "num"])
    assert out(capsys) == '{"a":[1,2]}\n42\n'
    main(["meta", db, "num"])
    assert orjson.loads(out(capsys))["size"] == 4  # '"42"'


def test_invalid_json_is_a_usage_error(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["set", db, "k", "{nope", "--json"]) == 2
    assert "not JSON" in capsys.readouterr().err


def test_a_missing_key_exits_1_with_a_message_on_stderr(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["set", db, "present", "1"]) == 0
    assert main(["get", db, "absent"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "unistorage get: not found: absent\n"
    assert main(["meta", db, "absent"]) == 1


def test_an_invalid_key_is_a_usage_error(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["get", db, "a/../b"]) == 2
    assert "'..'" in capsys.readouterr().err


def test_an_unknown_driver_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["get", "nosuch://x", "k"]) == 2
    assert "no driver" in capsys.readouterr().err


def test_ttl_and_meta(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["set", db, "k", "v", "--ttl", "100"]) == 0
    assert main(["meta", db, "k"]) == 0
    meta = orjson.loads(out(capsys))
    assert 90 < meta["ttl"] <= 100
    assert meta["mtime"].startswith("20")


def test_keys_lists_a_base_with_depth(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    for key in ("a:x", "a:y:z", "b"):
        main(["set", db, key, "1"])
    main(["keys", db])
    assert sorted(out(capsys).split()) == ["a:x", "a:y:z", "b"]
    main(["keys", db, "a", "--max-depth", "0"])
    assert out(capsys) == "a:x\n"


def test_rm_and_clear(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    for key in ("a:x", "a:y", "b", "c"):
        main(["set", db, key, "1"])
    assert main(["rm", db, "b", "missing"]) == 0
    assert main(["clear", db, "a"]) == 0
    main(["keys", db])
    assert out(capsys) == "c\n"
    assert main(["clear", db]) == 2  # the whole store needs --all
    assert main(["clear", db, "--all"]) == 0
    main(["keys", db])
    assert out(capsys) == ""


def test_raw_bytes_and_stdin_through_the_console_script(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/raw.db"
    data = bytes(range(256))
    assert run("set", store, "blob", "--raw", stdin=data).returncode == 0
    assert run("get", store, "blob", "--raw").stdout == data
    assert run("set", store, "line", stdin=b"piped\n").returncode == 0
    assert run("get", store, "line").stdout == b"piped\n"
    refused = run("get", store, "blob")
    assert refused.returncode == 3
    assert b"--raw" in refused.stderr


@pytest.mark.parametrize(
    "command", [[], ["serve"], ["get"], ["set"], ["rm"], ["keys"], ["clear"], ["meta"], ["copy"]]
)
def test_every_command_has_help(command: list[str]) -> None:
    result = run(*command, "--help")
    assert result.returncode == 0
    assert result.stdout.startswith(b"usage: unistorage")


def test_missing_arguments_are_usage_errors() -> None:
    result = run("get")
    assert result.returncode == 2
    assert b"usage:" in result.stderr
    assert run().returncode == 2


# -- a running server -------------------------------------------------------------------------


def test_commands_work_against_a_running_server(capsys: pytest.CaptureFixture[str]) -> None:
    with ServerThread(tokens=["secret"]) as server:
        assert main(["set", server.url, "k", "v", "--token", "secret"]) == 0
        assert main(["get", server.url, "k", "--token", "secret"]) == 0
        assert out(capsys) == "v\n"
        assert main(["get", server.url, "k"]) == 3
        assert "401" in capsys.readouterr().err


class _DeniedMeta(MemoryDriver):
    """Items are served, metadata is refused (as S3 refuses a denied HEAD)."""

    name = "denied"

    async def get_meta(self, key: str) -> dict[str, Any]:
        raise PermissionError("access denied")


def test_a_backend_failure_behind_a_server_is_one_unrepeated_message(
    capsys: pytest.CaptureFixture[str],
) -> None:
    storage = create_storage(_DeniedMeta())
    with ServerThread(storage) as server:
        assert main(["set", server.url, "k", "v"]) == 0
        assert main(["get", server.url, "k"]) == 3
    err = capsys.readouterr().err
    assert err.count("failed in get_meta on key 'k'") == 1
    assert "access denied" not in err


# -- copy -------------------------------------------------------------------------------------


def _fill(store: str, count: int) -> None:
    for index in range(count):
        assert main(["set", store, f"src:k{index}", f"v{index}"]) == 0


def test_copy_copies_every_key_under_a_base(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, dst = f"sqlite:///{tmp_path}/src.db", f"sqlite:///{tmp_path}/dst.db"
    _fill(src, 5)
    main(["set", src, "other", "x"])
    assert main(["copy", src, dst, "--base", "src", "--batch", "2"]) == 0
    assert out(capsys) == "copied 5 keys, skipped 0\n"
    main(["keys", dst])
    assert sorted(out(capsys).split()) == [f"src:k{i}" for i in range(5)]


def test_copying_again_skips_unchanged_keys_so_a_copy_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, dst = f"sqlite:///{tmp_path}/src.db", f"sqlite:///{tmp_path}/dst.db"
    _fill(src, 2)
    main(["copy", src, dst])  # a first run that stopped after two keys
    _fill(src, 4)
    main(["set", src, "src:k0", "changed"])
    capsys.readouterr()
    assert main(["copy", src, dst]) == 0
    assert out(capsys) == "copied 3 keys, skipped 1\n"
    main(["get", dst, "src:k0"])
    assert out(capsys) == "changed\n"


def test_skip_existing_never_overwrites(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src, dst = f"sqlite:///{tmp_path}/src.db", f"sqlite:///{tmp_path}/dst.db"
    main(["set", src, "k", "new"])
    main(["set", dst, "k", "old"])
    main(["copy", src, dst, "--skip-existing", "-q"])
    main(["get", dst, "k"])
    assert out(capsys) == "old\n"


def test_copy_moves_keys_to_another_base_with_their_meta(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = f"sqlite:///{tmp_path}/src.db"
    main(["set", src, "a:doc", "1"])
    with ServerThread() as server:

        async def add_meta() -> None:
            async with create_storage(src) as storage:
                await storage.set_meta("a:doc", {"owner": "ann"})

        asyncio.run(add_meta())
        assert main(["copy", src, server.url, "--base", "a", "--to", "b", "--progress"]) == 0
        err = capsys.readouterr().err
        assert "100%" in err
        assert "1/1" in err
        assert httpx.get(f"{server.url}/b/doc").text == "1"
        assert httpx.get(f"{server.url}/b/doc?meta").json() == {"owner": "ann"}


def test_copy_from_a_server_carries_user_meta(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dst = f"sqlite:///{tmp_path}/dst.db"
    with ServerThread() as server:
        httpx.put(f"{server.url}/doc", content=b"1")
        httpx.put(f"{server.url}/doc?meta", content=b'{"owner": "ann"}')
        httpx.put(f"{server.url}/plain", content=b"2")
        assert main(["copy", server.url, dst, "-q"]) == 0

    async def meta() -> tuple[object, object]:
        async with create_storage(dst) as storage:
            return await storage.get_meta_raw("doc"), await storage.get_meta_raw("plain")

    assert asyncio.run(meta()) == (b'{"owner": "ann"}', None)


# -- serve ------------------------------------------------------------------------------------


@contextlib.contextmanager
def serving(*args: str, cwd: Path) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [SCRIPT, "serve", "--port", str(port), "--log-level", "warning", *args],
        cwd=cwd, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stderr:
            process.stderr.close()


def test_serve_defaults_to_an_sqlite_file_under_dot_data(tmp_path: Path) -> None:
    with serving(cwd=tmp_path) as url:
        assert httpx.put(f"{url}/greeting", content=b"hello").text == "OK"
        assert httpx.get(f"{url}/greeting").text == "hello"
    assert (tmp_path / ".data" / "unistorage.db").exists()
    assert (
        run("get", "sqlite:///.data/unistorage.db", "greeting", cwd=tmp_path).stdout == b"hello\n"
    )


def test_serve_with_a_driver_mounts_tokens_and_read_only(tmp_path: Path) -> None:
    mount = f"cache=sqlite:///{tmp_path}/cache.db"
    args = ["--driver", "memory://", "--mount", mount, "--read-token", "r", "--read-only"]
    with serving(*args, cwd=tmp_path) as url:
        reader = {"authorization": "Bearer r"}
        assert httpx.get(f"{url}/", headers=reader).json() == []
        assert httpx.put(f"{url}/k", content=b"1", headers=reader).status_code == 403
        assert httpx.get(f"{url}/").status_code == 401
    with serving("--driver", "memory://", "--mount", mount, "--token", "w", cwd=tmp_path) as url:
        writer = {"authorization": "Bearer w"}
        assert httpx.put(f"{url}/cache/k", content=b"1", headers=writer).status_code == 200
    assert run("keys", f"sqlite:///{tmp_path}/cache.db").stdout == b"k\n"


def test_a_bad_mount_is_a_usage_error(tmp_path: Path) -> None:
    result = run("serve", "--mount", "nobase", cwd=tmp_path)
    assert result.returncode == 2
    assert b"BASE=URL" in result.stderr


@pytest.mark.parametrize("token", ["two words", "tök", "newline\n"])
def test_serve_refuses_a_token_that_could_never_authenticate(
    token: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["serve", "--token", token]) == 2
    assert "--token may hold only visible ASCII" in capsys.readouterr().err
    assert not (tmp_path / ".data").exists()  # refused before anything opened
