"""The redis driver across processes: counters and locks shared by real separate processes.

Each test runs against a standalone redis-server, the 3-primary Redis cluster and a standalone
valkey-server (not also the Valkey cluster: these tests take seconds each, and the cluster
client is the same redis-py code on both engines, which test_redis_concurrency.py runs on
Valkey's cluster too). The child processes run `_child` from this module (over a `valkey://`
URL for Valkey); they talk to the test over stdin and stdout, one word a line, so that every
step of a race starts when the test says so.
"""

from __future__ import annotations

import asyncio
import select
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage import LockLostError, LockUnavailableError, create_storage
from tests.servers import RedisCluster, RedisServer

ROOT = Path(__file__).resolve().parent.parent
_RUN_CHILD = (
    "import asyncio, sys; from tests.test_redis_processes import _child; "
    "asyncio.run(_child(*sys.argv[1:]))"
)
_LINE_TIMEOUT = 60.0


async def _child(url: str, mode: str, *args: str) -> None:
    """In a child process: say "ready", wait for "go", do ``mode``'s work, report on stdout.

    ``count TASKS ROUNDS``: TASKS tasks each increment "hits" ROUNDS times.
    ``exclusive TASKS ROUNDS``: TASKS tasks each, ROUNDS times, take the lock "job" and add
    one to "shared" by a plain read then write, which only the lock keeps from losing updates.
    ``hold TTL``: take the lock "job" (renewed in the background), say "held", and on the
    next line try to release it, saying "released" or "lost".
    """
    storage = create_storage(url)

    def say(word: str) -> None:
        sys.stdout.write(word + "\n")
        sys.stdout.flush()

    async def hear() -> str:
        line: str = await asyncio.to_thread(sys.stdin.readline)
        return line.strip()

    async def count(rounds: int) -> None:
        for _ in range(rounds):
            await storage.increment("hits")

    async def exclusive(rounds: int) -> None:
        for _ in range(rounds):
            async with storage.lock("job", ttl=10, wait=60):
                value = await storage.get_item("shared", 0)
                await asyncio.sleep(0.002)  # a window for a second holder to interleave
                await storage.set_item("shared", value + 1)

    try:
        await storage.has_item("warm")  # connected (and the cluster's slots known) before "go"
        say("ready")
        if await hear() != "go":
            return
        if mode == "count":
            await asyncio.gather(*(count(int(args[1])) for _ in range(int(args[0]))))
        elif mode == "exclusive":
            await asyncio.gather(*(exclusive(int(args[1])) for _ in range(int(args[0]))))
        elif mode == "hold":
            lock = storage.lock("job", ttl=float(args[0]))
            await lock.acquire()
            say("held")
            await hear()
            try:
                await lock.release()
                say("released")
            except LockLostError:
                say("lost")
            return
        say("done")
    finally:
        await storage.dispose()


class Child:
    """One child process running `_child`, spoken to a line at a time."""

    def __init__(self, url: str, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", _RUN_CHILD, url, *args],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def say(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def hear(self, timeout: float = _LINE_TIMEOUT) -> str:
        stdout = self.process.stdout
        assert stdout is not None
        assert select.select([stdout], [], [], timeout)[0], "the child said nothing in time"
        return stdout.readline().strip()

    def finish(self) -> int:
        return self.process.wait(timeout=_LINE_TIMEOUT)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture(params=["redis_server", "redis_cluster", "valkey_server"])
def url(request: pytest.FixtureRequest) -> str:
    """A URL of a standalone server or of a cluster, with a base of this test's own."""
    servers: RedisServer | RedisCluster = request.getfixturevalue(request.param)
    return f"{servers.url}?base=p{uuid.uuid4().hex[:12]}"


@pytest.fixture
def spawn(url: str) -> Iterator[list[Child]]:
    """Children started by the test (``spawn.append(Child(url, ...))``), killed if left."""
    children: list[Child] = []
    yield children
    for child in children:
        child.kill()


def _start(spawn: list[Child], url: str, *args: str) -> Child:
    child = Child(url, *args)
    spawn.append(child)
    assert child.hear() == "ready"
    return child


def _race(children: list[Child]) -> list[str]:
    """Start every child at once; what each said when done."""
    for child in children:
        child.say("go")
    said = [child.hear(timeout=120) for child in children]
    assert [child.finish() for child in children] == [0] * len(children)
    return said


async def test_fifty_tasks_in_each_of_two_processes_count_one_key_exactly(
    url: str, spawn: list[Child]
) -> None:
    children = [_start(spawn, url, "count", "50", "20") for _ in range(2)]
    assert await asyncio.to_thread(_race, children) == ["done", "done"]
    async with create_storage(url) as storage:
        assert await storage.get_item("hits") == 2 * 50 * 20
        await storage.clear()


async def test_a_lock_keeps_two_processes_from_interleaving_their_updates(
    url: str, spawn: list[Child]
) -> None:
    children = [_start(spawn, url, "exclusive", "3", "10") for _ in range(2)]
    assert await asyncio.to_thread(_race, children) == ["done", "done"]
    async with create_storage(url) as storage:
        assert await storage.get_item("shared") == 2 * 3 * 10
        assert await storage.has_item("job") is False, "every lease was released"
        await storage.clear()


async def test_a_lock_held_by_one_process_is_unavailable_to_another_until_released(
    url: str, spawn: list[Child]
) -> None:
    holder = _start(spawn, url, "hold", "10")
    holder.say("go")
    assert holder.hear() == "held"
    async with create_storage(url) as storage:
        with pytest.raises(LockUnavailableError):
            await storage.lock("job", ttl=10, wait=0.3).acquire()
        holder.say("release")
        assert holder.hear() == "released"
        async with storage.lock("job", ttl=10) as lock:
            assert lock.held
        await storage.clear()
    assert holder.finish() == 0


async def test_a_stalled_process_loses_its_lease_to_another_and_is_told(
    url: str, spawn: list[Child]
) -> None:
    holder = _start(spawn, url, "hold", "1")
    holder.say("go")
    assert holder.hear() == "held"
    async with create_storage(url) as storage:
        holder.process.send_signal(signal.SIGSTOP)  # no renewal while it is stopped
        try:
            lock = storage.lock("job", ttl=30, wait=10)
            await lock.acquire()
        finally:
            holder.process.send_signal(signal.SIGCONT)
        holder.say("release")
        assert holder.hear() == "lost"
        assert lock.held
        assert await storage.has_item("job"), "the stale holder removed nothing"
        await lock.release()
        await storage.clear()
    assert holder.finish() == 0
