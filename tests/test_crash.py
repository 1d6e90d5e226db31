"""Crash safety of the fs and sqlite drivers, with real processes.

A writer subprocess is killed with SIGKILL in the middle of rewriting many keys, many times; then
every key holds a whole value of some generation (never a torn one), listings hold only the keys,
and the store opens and writes normally. Two processes writing at once lose no acknowledged
write, and compare-and-set from two processes counts exactly. On fs, a stream killed half-way
leaves the old value (its temporary file goes when the store reopens), and an incrementer
killed half-way leaves a whole counter and no lock held.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from drivers.fs import INTERNAL
from storage import Driver, create_driver, create_storage
from tests.crash_writer import KEYS, generation_of, value_of

ROOT = Path(__file__).resolve().parent.parent
KILLS = 12


def _url(kind: str, tmp_path: Path) -> str:
    if kind == "fs":
        return f"file://{tmp_path / 'store'}"
    return f"sqlite:///{tmp_path / 'store.db'}"


def _spawn(url: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.crash_writer", url, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )


def _open(url: str) -> Driver:
    return create_driver(url, sweep_interval=0)


async def _check_whole(driver: Driver, floor: int) -> int:
    """Every key holds an untorn value of generation >= floor; return the highest one."""
    values = await driver.get_items(KEYS)
    generations = []
    for key, value in zip(KEYS, values, strict=True):
        assert value is not None, key
        generations.append(generation_of(value))
    assert min(generations) >= floor
    assert sorted(await driver.get_keys()) == sorted(KEYS)
    return max(generations)


def _kill_after_progress(process: subprocess.Popen[str], delay: float) -> int:
    """Wait for the writer to finish a first round, let it run ``delay`` more, SIGKILL it."""
    assert process.stdout is not None
    first = process.stdout.readline()
    assert first.strip(), "the writer died before finishing a round"
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.wait()
    return int(first)


@pytest.mark.parametrize("kind", ["fs", "sqlite"])
async def test_killed_writers_never_leave_torn_values_or_stray_files(
    kind: str, tmp_path: Path
) -> None:
    url = _url(kind, tmp_path)
    driver = _open(url)
    await driver.set_items([(key, value_of(0)) for key in KEYS])
    await driver.dispose()
    rng = random.Random(7)
    for _ in range(KILLS):
        process = _spawn(url, "stream")
        completed = await asyncio.to_thread(_kill_after_progress, process, rng.uniform(0.0, 0.15))
        driver = _open(url)
        if kind == "fs":  # the dead writer's temporary files are gone once the store reopens
            assert os.listdir(tmp_path / "store" / INTERNAL / "tmp") == []
        try:
            # Every value written by the completed first round is acknowledged and durable.
            await _check_whole(driver, completed)
            await driver.set_item("probe", b"x")  # not locked
            await driver.remove_item("probe")
        finally:
            await driver.dispose()
        # Rounds restart at generation 1, so the store is reset to 0 between kills.
        driver = _open(url)
        await driver.set_items([(key, value_of(0)) for key in KEYS])
        await driver.dispose()
    if kind == "fs":
        top = sorted(os.listdir(tmp_path / "store"))
        assert top == [INTERNAL, "item"]
    else:
        with sqlite3.connect(tmp_path / "store.db") as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


async def _run_all(url: str, runs: list[list[str]]) -> list[str]:
    def run(args: list[str]) -> str:
        process = _spawn(url, *args)
        out, _ = process.communicate(timeout=60)
        assert process.returncode == 0
        return out.strip()

    return list(await asyncio.gather(*(asyncio.to_thread(run, args) for args in runs)))


@pytest.mark.parametrize("kind", ["fs", "sqlite"])
async def test_two_processes_writing_at_once_lose_no_acknowledged_write(
    kind: str, tmp_path: Path
) -> None:
    url = _url(kind, tmp_path)
    outputs = await _run_all(url, [["own", "a", "150"], ["own", "b", "150"]])
    assert outputs == ["done", "done"]
    driver = _open(url)
    try:
        keys = set(await driver.get_keys())
        expected: Callable[[str], set[str]] = lambda p: {f"{p}:{i}" for i in range(150)}  # noqa: E731
        assert keys == expected("a") | expected("b")
        assert await driver.get_item("b:149") == b"149"
    finally:
        await driver.dispose()


@pytest.mark.parametrize("kind", ["fs", "sqlite"])
async def test_compare_and_set_from_two_processes_counts_exactly(kind: str, tmp_path: Path) -> None:
    url = _url(kind, tmp_path)
    outputs = await _run_all(url, [["count", "40"], ["count", "40"]])
    assert outputs == ["done", "done"]
    driver = _open(url)
    try:
        assert await driver.get_item("counter") == b"80"
    finally:
        await driver.dispose()


async def test_a_key_and_its_children_written_from_two_processes_all_land(tmp_path: Path) -> None:
    url = _url("fs", tmp_path)
    outputs = await _run_all(url, [["repeat", "x", "150"], ["own", "x", "150"]])
    assert outputs == ["done", "done"]
    driver = _open(url)
    try:
        assert set(await driver.get_keys()) == {"x"} | {f"x:{i}" for i in range(150)}
        assert await driver.get_item("x") == b"149"
    finally:
        await driver.dispose()


@pytest.mark.parametrize("run", range(4))
async def test_fs_processes_writing_hundreds_of_keys_at_once_never_fail(
    run: int, tmp_path: Path
) -> None:
    # Each process has several threads holding and waiting for key locks at once: the kernel's
    # deadlock detection for process-owned fcntl locks used to fail such writes with EDEADLK.
    url = _url("fs", tmp_path)
    runs = [["gather", "q", str(start), "300"] for start in (0, 300, 600)]
    outputs = await _run_all(url, runs)
    assert outputs == ["done"] * len(runs)
    driver = _open(url)
    try:
        assert len(await driver.get_keys("q:")) == 900
        assert await driver.get_item("q:899") == b"q:899"
    finally:
        await driver.dispose()


async def test_fs_etag_reads_and_conditional_writes_from_two_processes_count_exactly(
    tmp_path: Path,
) -> None:
    url = _url("fs", tmp_path)
    outputs = await _run_all(url, [["cas", "10", "10"], ["cas", "10", "10"]])
    assert outputs == ["done", "done"]
    driver = _open(url)
    try:
        assert await driver.get_item("counter") == b"200"
    finally:
        await driver.dispose()


_STREAMER = """
import asyncio, sys
from storage import create_storage

async def main():
    async with create_storage(sys.argv[1]) as storage:
        async with storage.open_write("streamed") as writer:
            for number in range(1_000_000):
                await writer.write(b"n" * 65536)
                if number == 16:
                    print("streaming", flush=True)

asyncio.run(main())
"""

_INCREMENTER = """
import asyncio, sys
from storage import create_storage

async def main():
    async with create_storage(sys.argv[1]) as storage:
        async def add():
            while True:
                await storage.increment("counter")
        tasks = [asyncio.ensure_future(add()) for _ in range(8)]
        await asyncio.sleep(0.2)
        print("counting", flush=True)
        await asyncio.gather(*tasks)

asyncio.run(main())
"""


def _start_then_kill(script: str, url: str, delay: float) -> None:
    """Run ``script`` on ``url`` until it prints its first line, ``delay`` more, SIGKILL it."""
    process = subprocess.Popen(
        [sys.executable, "-c", script, url], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip(), "the child died before it began"
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.wait()


async def test_fs_a_stream_killed_midway_leaves_the_old_value_and_no_temporary_file(
    tmp_path: Path,
) -> None:
    url = _url("fs", tmp_path)
    rng = random.Random(3)
    for _ in range(4):
        driver = _open(url)
        await driver.set_item("streamed", b"old")
        await driver.dispose()
        await asyncio.to_thread(_start_then_kill, _STREAMER, url, rng.uniform(0.0, 0.1))
        driver = _open(url)  # the dead writer's temporary file goes as the store opens
        try:
            assert os.listdir(tmp_path / "store" / INTERNAL / "tmp") == []
            assert await driver.get_item("streamed") == b"old"
        finally:
            await driver.dispose()


async def test_fs_an_incrementer_killed_midway_leaves_a_whole_counter_and_no_lock_held(
    tmp_path: Path,
) -> None:
    url = _url("fs", tmp_path)
    for delay in (0.0, 0.05, 0.1):
        await asyncio.to_thread(_start_then_kill, _INCREMENTER, url, delay)
        async with create_storage(url) as storage:
            before = await storage.get_item("counter")
            assert isinstance(before, int)
            assert before > 0
            assert await storage.increment("counter") == before + 1  # no lock left held
        assert os.listdir(tmp_path / "store" / INTERNAL / "tmp") == []
