"""An fs write (whole or streamed) that fails half-way leaves no temporary file behind
(issue 10, defect 13).

For real: a tiny tmpfs that fills up (needs root, as in CI), and a file-size limit
(RLIMIT_FSIZE, which makes a write fail with EFBIG) in a subprocess, which needs nothing.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers.fs import INTERNAL, FsDriver
from storage import DriverError, Storage, create_storage
from tests import faults

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs, mounted for the test."""
    with faults.small_disk(tmp_path, "64k") as mount:
        yield mount


async def test_a_write_that_fills_the_disk_removes_its_temporary_file(small_disk: Path) -> None:
    driver = FsDriver(small_disk / "store", sweep_interval=0)
    try:
        await driver.set_item("small", b"fits")
        with pytest.raises(OSError, match="No space left") as raised:
            await driver.set_item("big", os.urandom(1024 * 1024))
        assert raised.value.errno == errno.ENOSPC
        assert os.listdir(small_disk / "store" / INTERNAL / "tmp") == []
        assert await driver.get_item("big") is None
        await driver.set_item("small", b"still writes")  # the space came back
        assert await driver.get_item("small") == b"still writes"
    finally:
        await driver.dispose()


async def _stream(storage: Storage, key: str, size: int) -> None:
    async with storage.open_write(key) as writer:
        for _ in range(size // (64 * 1024)):
            await writer.write(os.urandom(64 * 1024))


async def test_a_stream_that_fills_the_disk_fails_cleanly_and_changes_nothing(
    small_disk: Path,
) -> None:
    async with create_storage(FsDriver(small_disk / "store", sweep_interval=0)) as storage:
        await storage.set_item_raw("big", b"old")
        with pytest.raises(DriverError, match="No space left"):
            await _stream(storage, "big", 16 * 64 * 1024)
        assert os.listdir(small_disk / "store" / INTERNAL / "tmp") == []
        assert await storage.get_item_raw("big") == b"old"
        async with storage.open_write("big") as writer:  # the space came back
            await writer.write(b"new")
        assert await storage.get_item_raw("big") == b"new"


_LIMITED = """
import asyncio, errno, os, resource, signal, sys
from drivers.fs import INTERNAL, FsDriver

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))

async def main():
    driver = FsDriver(sys.argv[1], sweep_interval=0)
    try:
        await driver.set_item("big", os.urandom(1024 * 1024))
    except OSError as exc:
        print(errno.errorcode[exc.errno])
    finally:
        await driver.dispose()
    print(len(os.listdir(os.path.join(sys.argv[1], INTERNAL, "tmp"))))

asyncio.run(main())
"""


def test_a_write_past_the_file_size_limit_removes_its_temporary_file(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _LIMITED, str(tmp_path / "store")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert done.stdout.split() == ["EFBIG", "0"]
