"""Child processes sharing one store with a test: the commands a child runs, and `Child`, which
starts one and speaks to it a line at a time.

``python -m tests.processes URL`` opens the store at URL, says ``ready``, then runs one command
a line, answering each with one line; an empty line or the end of its input ends it:

- ``count KEY TASKS ROUNDS AT``: at the time AT (``time.time()``), TASKS tasks each increment
  KEY ROUNDS times; answers, as JSON, the values they got and when the tasks began and ended
  (``{"values": [...], "began": t, "ended": t}``).
- ``exclusive KEY TASKS ROUNDS AT``: at the time AT, TASKS tasks each, ROUNDS times, take the
  lock ``KEY:lock`` and add one to KEY by a plain read then write, which only the lock keeps
  from losing updates; answers ``done``.
- ``lock KEY TTL WAIT``: takes the lock KEY (renewed in the background); answers ``held`` or
  ``unavailable``.
- ``release``: gives the last lock taken back; answers ``released`` or ``lost``.

Every step of a race starts when the test says so, and a common start time makes the children
run their tasks at once rather than one after the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from storage import Lock, LockLostError, LockUnavailableError, Storage, create_storage

__all__ = ["Child", "children", "race"]

ROOT = Path(__file__).resolve().parent.parent
#: Seconds a child may take to answer one line (a race of many tasks answers once, at its end).
REPLY_TIMEOUT = 120.0


async def _at(start: str) -> None:
    await asyncio.sleep(float(start) - time.time())


async def _count(storage: Storage, key: str, tasks: str, rounds: str, start: str) -> str:
    async def add() -> list[int]:
        return [await storage.increment(key) for _ in range(int(rounds))]

    await _at(start)
    began = time.time()
    got = await asyncio.gather(*(add() for _ in range(int(tasks))))
    values = [value for values in got for value in values]
    return json.dumps({"values": values, "began": began, "ended": time.time()})


async def _exclusive(storage: Storage, key: str, tasks: str, rounds: str, start: str) -> str:
    async def add() -> None:
        for _ in range(int(rounds)):
            async with storage.lock(f"{key}:lock", ttl=2, wait=60):
                value = await storage.get_item(key, default=0)
                await asyncio.sleep(0.005)  # a window for a second holder to interleave
                await storage.set_item(key, value + 1)

    await _at(start)
    await asyncio.gather(*(add() for _ in range(int(tasks))))
    return "done"


async def _serve(url: str) -> None:
    async with create_storage(url) as storage:
        await storage.has_item("warm")  # connected (a cluster's slots known) before the first line
        print("ready", flush=True)
        lock: Lock | None = None
        while command := (await asyncio.to_thread(sys.stdin.readline)).split():
            name, *args = command
            if name == "count":
                answer = await _count(storage, *args)
            elif name == "exclusive":
                answer = await _exclusive(storage, *args)
            elif name == "lock":
                key, ttl, wait = args
                lock = storage.lock(key, ttl=float(ttl), wait=float(wait))
                try:
                    await lock.acquire()
                    answer = "held"
                except LockUnavailableError:
                    answer = "unavailable"
            else:
                assert name == "release", command
                assert lock is not None, "release before lock"
                try:
                    await lock.release()
                    answer = "released"
                except LockLostError:
                    answer = "lost"
            print(answer, flush=True)


class Child:
    """A child process on the store at ``url``, spoken to a line at a time; `close` ends it."""

    def __init__(self, url: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.processes", url],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def send(self, line: str) -> None:
        """Send one command without waiting for its answer."""
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def reply(self, timeout: float = REPLY_TIMEOUT) -> str:
        """The next line the child says."""
        stdout = self.process.stdout
        assert stdout is not None
        assert select.select([stdout], [], [], timeout)[0], "the child said nothing in time"
        line = stdout.readline()
        assert line, f"the child ended (status {self.process.wait()}): see its stderr"
        return line.strip()

    def ask(self, line: str) -> str:
        """Send one command and wait for its answer."""
        self.send(line)
        return self.reply()

    def pause(self) -> None:
        """SIGSTOP the child: it runs nothing (and renews no lease) until `resume`."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def close(self) -> int:
        """End the child (killed if it does not end on its own); its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                return self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait()


@contextlib.contextmanager
def children(url: str, count: int) -> Iterator[list[Child]]:
    """``count`` children on the store at ``url``, started together and each ready; ended after."""
    started = [Child(url) for _ in range(count)]
    try:
        assert [child.reply() for child in started] == ["ready"] * count
        yield started
    finally:
        for child in started:
            child.close()


def race(started: list[Child], command: str) -> list[str]:
    """Run ``command`` (``count ...`` or ``exclusive ...``) in every child from the same
    moment; what each answered."""
    start = time.time() + 0.5  # each is waiting on a line already, even on a loaded machine
    for child in started:
        child.send(f"{command} {start}")
    return [child.reply() for child in started]


if __name__ == "__main__":
    asyncio.run(_serve(sys.argv[1]))
