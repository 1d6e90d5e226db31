"""``unistorage copy`` as the installed console script: what it carries, and how it stops and
resumes (a real SIGINT, as Ctrl-C sends)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from storage import create_storage
from tests.fixtures.http import ServerThread

SCRIPT = str(Path(sys.executable).with_name("unistorage"))


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SCRIPT, *args], capture_output=True, text=True, timeout=120, check=False)


async def _fill(url: str, count: int) -> None:
    async with create_storage(url) as storage:
        await storage.set_items_raw({f"k:{index:06}": b"%d" % index for index in range(count)})


async def _count(url: str) -> int:
    async with create_storage(url) as storage:
        return len(await storage.get_keys())


def test_copy_carries_remaining_ttls_and_user_meta(tmp_path: Path) -> None:
    src, dst = f"sqlite:///{tmp_path}/src.db", f"sqlite:///{tmp_path}/dst.db"

    async def fill() -> None:
        async with create_storage(src) as storage:
            await storage.set_item("session", "s", ttl=100)
            await storage.set_item("forever", "f")
            await storage.set_meta("forever", {"owner": "ann"})

    asyncio.run(fill())
    with ServerThread() as server:  # the target is a server: TTLs travel as x-ttl
        assert run("copy", src, server.url, "-q").returncode == 0
        head = httpx.head(f"{server.url}/session")
        assert 90 < int(head.headers["x-ttl"]) <= 100
        assert "x-ttl" not in httpx.head(f"{server.url}/forever").headers
        assert httpx.get(f"{server.url}/forever?meta").json() == {"owner": "ann"}
        # and back from the server, whose TTLs are read through HEAD
        assert run("copy", server.url, dst, "-q").returncode == 0

    async def read() -> tuple[object, object]:
        async with create_storage(dst) as storage:
            return (await storage.get_meta("session")).get("ttl"), await storage.get_meta("forever")

    ttl, meta = asyncio.run(read())
    assert isinstance(ttl, float)
    assert 85 < ttl <= 100
    assert isinstance(meta, dict)
    assert meta["owner"] == "ann"
    assert "ttl" not in meta


def test_copy_reads_its_source_without_creating_it(tmp_path: Path) -> None:
    missing = tmp_path / "nothing-here"
    result = run("copy", f"file://{missing}", f"sqlite:///{tmp_path}/dst.db")
    assert (result.returncode, result.stdout) == (0, "copied 0 keys, skipped 0\n")
    assert not missing.exists()


def test_ctrl_c_says_how_far_the_copy_got_and_running_it_again_resumes(tmp_path: Path) -> None:
    src, dst = f"sqlite:///{tmp_path}/src.db", f"sqlite:///{tmp_path}/dst.db"
    total = 20_000
    asyncio.run(_fill(src, total))
    # One key a batch keeps the copy going for seconds: long enough to be interrupted midway.
    process = subprocess.Popen(
        [SCRIPT, "copy", src, dst, "--batch", "1", "--progress"], stderr=subprocess.PIPE
    )
    assert process.stderr is not None
    seen, deadline = b"", time.monotonic() + 60
    while time.monotonic() < deadline:
        seen += os.read(process.stderr.fileno(), 4096)
        done = [int(n) for n in re.findall(rb"(\d+)/%d" % total, seen)]
        if done and max(done) >= 100:
            break
    assert process.poll() is None, "the copy ended before it could be interrupted"
    process.send_signal(signal.SIGINT)
    _, rest = process.communicate(timeout=30)
    message = (seen + rest).decode()
    assert process.returncode == 130
    found = re.search(
        r"unistorage copy: interrupted after (\d+) of 20000 keys \(copied \1,", message
    )
    assert found is not None, message
    assert "run the same command again to resume" in message
    copied = int(found.group(1))
    assert 100 <= copied < total
    assert "Traceback" not in message

    again = run("copy", src, dst)
    assert again.returncode == 0, again.stderr
    counts = re.fullmatch(r"copied (\d+) keys, skipped (\d+)\n", again.stdout)
    assert counts is not None
    # A batch written as the signal came is skipped now, not written twice.
    assert int(counts.group(2)) >= copied
    assert int(counts.group(1)) + int(counts.group(2)) == total
    assert asyncio.run(_count(dst)) == total


@pytest.mark.parametrize("flag", ["--progress", "--no-progress"])
def test_the_progress_bar_is_drawn_on_stderr_only_when_asked(tmp_path: Path, flag: str) -> None:
    src = f"sqlite:///{tmp_path}/src.db"
    asyncio.run(_fill(src, 3))
    result = run("copy", src, f"sqlite:///{tmp_path}/dst.db", flag)
    assert result.stdout == "copied 3 keys, skipped 0\n"
    assert ("3/3" in result.stderr) is (flag == "--progress")
