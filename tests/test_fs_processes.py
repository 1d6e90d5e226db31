"""Two processes on one fs store: the increment under the key's lock counts exactly, and a lock
(`Storage.lock`) held by one process excludes the other, is renewed while held, and reports a
lease lost to the other process."""

from __future__ import annotations

import asyncio
import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers.fs import INTERNAL
from storage import LockLostError, LockUnavailableError, create_storage

ROOT = Path(__file__).resolve().parent.parent
TASKS = 50
ROUNDS = 10


async def _count(url: str, tasks: str, rounds: str) -> None:
    """In a child process: at the time (``time.time()``) read from stdin, ``tasks`` tasks
    each increment the key "hits:counter" ``rounds`` times; prints the values they got."""
    async with create_storage(url) as storage:
        await storage.has_item("hits:counter")  # the store is open before the race starts
        print("ready", flush=True)
        start = float(await asyncio.to_thread(sys.stdin.readline))
        await asyncio.sleep(start - time.time())  # both processes start together

        async def add() -> list[int]:
            return [await storage.increment("hits:counter") for _ in range(int(rounds))]

        got = await asyncio.gather(*(add() for _ in range(int(tasks))))
        print(json.dumps([value for values in got for value in values]), flush=True)


async def _hold(url: str) -> None:
    """In a child process: a lock holder driven line by line on stdin.

    ``lock KEY TTL WAIT RENEW`` answers ``held`` or ``unavailable``; ``release`` answers
    ``released`` or ``lost``; ``exit`` ends.
    """
    async with create_storage(url) as storage:
        await storage.has_item("warm")
        print("ready", flush=True)
        lock = None
        while command := (await asyncio.to_thread(sys.stdin.readline)).split():
            if command[0] == "lock":
                key, ttl, wait, renew = command[1:]
                lock = storage.lock(key, ttl=float(ttl), wait=float(wait), renew=renew == "yes")
                try:
                    await lock.acquire()
                    print("held", flush=True)
                except LockUnavailableError:
                    print("unavailable", flush=True)
            elif command[0] == "release":
                assert lock is not None
                try:
                    await lock.release()
                    print("released", flush=True)
                except LockLostError:
                    print("lost", flush=True)
            else:
                return


class _Child:
    """A child process running one of the functions above, spoken to by lines."""

    def __init__(self, function: str, *args: str) -> None:
        code = (
            "import asyncio, sys\n"
            f"from tests.test_fs_processes import {function} as run\n"
            "asyncio.run(run(*sys.argv[1:]))\n"
        )
        self.process = subprocess.Popen(
            [sys.executable, "-c", code, *args],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def reply(self, timeout: float = 60) -> str:
        assert self.process.stdout is not None
        assert select.select([self.process.stdout], [], [], timeout)[0], "no reply in time"
        return self.process.stdout.readline().strip()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


@pytest.fixture
def children() -> Iterator[list[_Child]]:
    started: list[_Child] = []
    yield started
    for child in started:
        child.stop()


def _url(tmp_path: Path) -> str:
    return f"file://{tmp_path / 'store'}?sweep_interval=0"


async def _stored(url: str, key: str) -> object:
    async with create_storage(url) as storage:
        return await storage.get_item(key)


def test_fifty_tasks_in_each_of_two_processes_increment_one_key_exactly(
    tmp_path: Path, children: list[_Child]
) -> None:
    url = _url(tmp_path)
    children += [_Child("_count", url, str(TASKS), str(ROUNDS)) for _ in range(2)]
    assert [child.reply() for child in children] == ["ready", "ready"]
    start = time.time() + 0.5
    for child in children:
        child.send(str(start))
    got = [json.loads(child.reply(120)) for child in children]
    total = 2 * TASKS * ROUNDS
    assert sorted(got[0] + got[1]) == list(range(1, total + 1))  # every value handed out once
    assert min(got[0]) < max(got[1])  # the processes really raced: their values interleave
    assert min(got[1]) < max(got[0])
    assert asyncio.run(_stored(url, "hits:counter")) == total
    assert os.listdir(tmp_path / "store" / INTERNAL / "tmp") == []


def test_a_lock_held_in_one_process_excludes_the_other_until_released(
    tmp_path: Path, children: list[_Child]
) -> None:
    first, second = _Child("_hold", _url(tmp_path)), _Child("_hold", _url(tmp_path))
    children += [first, second]
    assert [first.reply(), second.reply()] == ["ready", "ready"]
    first.send("lock jobs:nightly 10 0 yes")
    assert first.reply() == "held"
    second.send("lock jobs:nightly 10 0 yes")
    assert second.reply() == "unavailable"
    second.send("lock jobs:nightly 10 30 yes")  # waits for the holder
    first.send("release")
    assert first.reply() == "released"
    assert second.reply() == "held"
    second.send("release")
    assert second.reply() == "released"
    assert asyncio.run(_stored(_url(tmp_path), "jobs:nightly")) is None


def test_a_held_lock_is_renewed_past_its_ttl_for_the_other_process(
    tmp_path: Path, children: list[_Child]
) -> None:
    first, second = _Child("_hold", _url(tmp_path)), _Child("_hold", _url(tmp_path))
    children += [first, second]
    assert [first.reply(), second.reply()] == ["ready", "ready"]
    first.send("lock job 0.6 0 yes")
    assert first.reply() == "held"
    time.sleep(1.5)
    second.send("lock job 5 0 yes")
    assert second.reply() == "unavailable"
    first.send("release")
    assert first.reply() == "released"


def test_a_lease_lost_to_the_other_process_is_reported_and_theirs_survives(
    tmp_path: Path, children: list[_Child]
) -> None:
    first, second = _Child("_hold", _url(tmp_path)), _Child("_hold", _url(tmp_path))
    children += [first, second]
    assert [first.reply(), second.reply()] == ["ready", "ready"]
    first.send("lock job 0.5 0 no")  # not renewed: the lease runs out while "stalled"
    assert first.reply() == "held"
    second.send("lock job 10 30 yes")
    assert second.reply() == "held"  # taken once the lease expired
    first.send("release")
    assert first.reply() == "lost"
    first.send("lock job 10 0 yes")  # the release left the second's lease alone
    assert first.reply() == "unavailable"
    second.send("release")
    assert second.reply() == "released"
