"""Fault tools for tests and benchmarks: a fault-injecting TCP proxy, process helpers and a
lean HTTP client for load.

`FaultProxy` sits between a client and a backend on a free local port and can be switched,
while connections are open, between passing bytes through, refusing connections (a partition
or a dead host), dropping them (a crash behind a load balancer), swallowing them (a hung
backend) and adding latency (a distant one). `ServeProcess` runs ``unistorage serve`` as a
child process that can be SIGKILLed and started again on the same port; `freeze` and `thaw`
hang any child process and let it go. `hold_sqlite_lock` holds an exclusive lock on an SQLite
database from another process. `HttpConnection` is one client's keep-alive connection, cheap
enough that one process keeps hundreds of them busy.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Coroutine, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from tests.servers import free_port

__all__ = [
    "FaultProxy",
    "HttpConnection",
    "Mode",
    "ServeProcess",
    "freeze",
    "hold_sqlite_lock",
    "small_disk",
    "thaw",
]

Mode = Literal["pass", "refuse", "drop", "blackhole"]

_HOST = "127.0.0.1"
_CHUNK = 64 * 1024
_SCRIPT = str(Path(sys.executable).with_name("unistorage"))
# The server imports the source tree these tests run from (a worktree, too), not wherever the
# package happens to be installed from.
_SOURCE = str(Path(__file__).resolve().parent.parent)


class _Link:
    """One proxied connection: the client side, the upstream side and the tasks pumping them."""

    __slots__ = ("tasks", "writers")

    def __init__(self) -> None:
        self.writers: list[asyncio.StreamWriter] = []
        self.tasks: list[asyncio.Task[None]] = []

    def cut(self) -> None:
        """End both sides at once, dropping whatever is still buffered (a fault)."""
        for task in self.tasks:
            task.cancel()
        for writer in self.writers:
            writer.transport.abort()

    def close(self) -> None:
        """End both sides after what is buffered has gone out (the streams ended)."""
        for writer in self.writers:
            writer.close()


class FaultProxy:
    """A TCP proxy from a free local port to ``target_host:target_port``, with faults.

    Modes (switch at any time, from any thread):

    - ``pass``: bytes go through unchanged, plus `delay` milliseconds each way if set.
    - ``refuse``: open connections are cut and the port stops listening, so new connections
      are refused (a partition, or a backend host that is down).
    - ``drop``: the port listens, but every connection, open or new, is closed at once.
    - ``blackhole``: open connections are cut; new ones are accepted and never answered
      (a hung backend: only the client's own timeouts end them).

    The proxy runs its own event loop in a daemon thread, so a busy caller does not slow it.
    """

    def __init__(self, target_host: str, target_port: int, *, port: int | None = None) -> None:
        self.target = (target_host, target_port)
        self.port = port or free_port()
        #: Connections accepted, forwarded to the target, and cut by a fault.
        self.accepted = self.forwarded = self.cut = 0
        self._mode: Mode = "pass"
        self._delay = 0.0
        self._links: set[_Link] = set()
        self._server: asyncio.Server | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def url(self) -> str:
        """``http://host:port`` of the proxy, for HTTP backends such as S3."""
        return f"http://{_HOST}:{self.port}"

    def start(self) -> FaultProxy:
        """Start listening (in ``pass`` mode)."""
        self._thread.start()
        self._call(self._listen())
        return self

    def passthrough(self) -> None:
        """Heal: forward bytes again (keeping any `delay`)."""
        self._call(self._switch("pass"))

    def refuse(self) -> None:
        """Cut every connection and refuse new ones."""
        self._call(self._switch("refuse"))

    def drop(self) -> None:
        """Cut every connection and close each new one as soon as it is accepted."""
        self._call(self._switch("drop"))

    def blackhole(self) -> None:
        """Cut every connection and hold new ones open without ever answering."""
        self._call(self._switch("blackhole"))

    def delay(self, milliseconds: float) -> None:
        """Add ``milliseconds`` of latency to every chunk, each way, from now on (0 for none)."""
        self._delay = milliseconds / 1000

    def close(self) -> None:
        """Cut every connection, stop listening and end the thread."""
        if not self._thread.is_alive():
            return
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    # -- inside the proxy's loop --------------------------------------------------------------

    def _call(self, coroutine: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)

    async def _listen(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(
                self._accept, _HOST, self.port, reuse_address=True, backlog=1024
            )

    async def _switch(self, mode: Mode) -> None:
        self._mode = mode
        if mode != "pass":
            for link in list(self._links):
                link.cut()
                self.cut += 1
            self._links.clear()
        if mode == "refuse":
            if self._server is not None:
                self._server.close()
                self._server = None
        else:
            await self._listen()

    async def _shutdown(self) -> None:
        await self._switch("refuse")
        others = asyncio.all_tasks() - {asyncio.current_task()}
        if others:
            await asyncio.wait(others, timeout=5)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        link = _Link()
        link.writers.append(writer)
        if self._mode in ("drop", "refuse"):
            link.cut()
            return
        self._links.add(link)
        try:
            if self._mode == "blackhole":
                while await reader.read(_CHUNK):
                    pass
                return
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.target)
            except OSError:
                return
            link.writers.append(up_writer)
            self.forwarded += 1
            link.tasks = [
                asyncio.ensure_future(self._pump(reader, up_writer)),
                asyncio.ensure_future(self._pump(up_reader, writer)),
            ]
            # Each direction ends on its own (an end of stream is passed on as one), so a
            # response sent just before the backend closes still reaches the client.
            await asyncio.wait(link.tasks)
        except OSError:
            link.cut()
        finally:
            self._links.discard(link)
            link.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copy one direction; with a delay, each chunk leaves ``delay`` after it arrived
        (latency added without limiting throughput)."""
        due: deque[tuple[float, bytes]] = deque()
        ready = asyncio.Event()
        sender = asyncio.ensure_future(self._send_due(due, ready, writer))
        try:
            while (chunk := await reader.read(_CHUNK)) and not sender.done():
                if self._delay <= 0 and not due:
                    writer.write(chunk)
                    await writer.drain()
                    continue
                due.append((time.monotonic() + self._delay, chunk))
                ready.set()
            due.append((0.0, b""))  # end of stream, after what is still due
            ready.set()
            await sender
        except OSError:
            pass
        finally:
            sender.cancel()

    async def _send_due(
        self, due: deque[tuple[float, bytes]], ready: asyncio.Event, writer: asyncio.StreamWriter
    ) -> None:
        while True:
            await ready.wait()
            while due:
                when, chunk = due[0]
                wait = when - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                due.popleft()
                if not chunk:
                    with contextlib.suppress(OSError):
                        writer.write_eof()
                    return
                writer.write(chunk)
                await writer.drain()
            ready.clear()


class ServeProcess:
    """``unistorage serve --driver URL`` as a child process on one port for its whole life.

    `start` returns once the server answers HTTP; `kill` is a SIGKILL (a crash), after which
    `start` brings a new process up on the same port. Output goes to ``log`` (appended).
    """

    def __init__(
        self, driver: str, log: Path, *, port: int | None = None, args: Sequence[str] = ()
    ) -> None:
        self.driver = driver
        self.log = log
        self.port = port or free_port()
        self.args = list(args)
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        """The server's base URL."""
        return f"http://{_HOST}:{self.port}"

    def start(self, timeout: float = 20.0) -> ServeProcess:
        """Start the server and wait until it answers an HTTP request."""
        command = [_SCRIPT, "serve", "--driver", self.driver, "--port", str(self.port)]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [*command, "--log-level", "warning", *self.args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONPATH": _SOURCE, "PYTHONUNBUFFERED": "1"},
            )
        self.starts += 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"unistorage serve exited: {self.log_tail()}")
            if self._answers():
                return self
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"unistorage serve did not answer within {timeout} s: {self.log_tail()}")

    def _answers(self) -> bool:
        connection = http.client.HTTPConnection(_HOST, self.port, timeout=2)
        try:
            # Any answer will do (404, or 502 while the backend is down): the server is up.
            connection.request("HEAD", "/unistorage-probe")
            connection.getresponse().read()
        except OSError:
            return False
        finally:
            connection.close()
        return True

    def kill(self) -> None:
        """SIGKILL the server, as a crash would, and reap it."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None

    def stop(self) -> None:
        """Stop the server gracefully (SIGTERM; SIGKILL after 10 s)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.process = None

    def log_tail(self, lines: int = 40) -> str:
        """The end of the server's output, for failure messages."""
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


_LOCKER = """
import sqlite3, sys, time
connection = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
connection.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
connection.execute("ROLLBACK")
"""


def hold_sqlite_lock(path: Path, seconds: float) -> subprocess.Popen[str]:
    """Start a process that holds ``BEGIN EXCLUSIVE`` on the database at ``path`` for
    ``seconds``; returns once the lock is held (the caller waits for the process to end)."""
    process = subprocess.Popen(
        [sys.executable, "-c", _LOCKER, str(path), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if line.strip() != "locked":
        process.kill()
        process.wait()
        raise RuntimeError("the lock holder could not take the lock")
    return process


class HttpConnection:
    """One client's HTTP/1.1 keep-alive connection to ``host:port``: one request at a time.

    For load tests: httpx spends about 1 ms of CPU a request (measured here at ~1,000 requests
    a second for 500 clients in one process, the client saturating first); this spends a small
    fraction of that. The whole exchange, connecting included, is bounded by ``timeout``
    (`TimeoutError`). A connection the server closed is replaced before the next request; any
    failure (`OSError`, `asyncio.IncompleteReadError`, `ValueError`) closes it. Answers need a
    ``content-length``, as the unistorage server sends for every route but a listing.
    """

    __slots__ = ("_reader", "_writer", "host", "port", "timeout")

    def __init__(self, host: str, port: int, *, timeout: float) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: Sequence[str] = ()
    ) -> tuple[int, bytes]:
        """Send one request and return its status and body."""
        try:
            return await asyncio.wait_for(self._exchange(method, path, body, headers), self.timeout)
        except BaseException:
            self.close()
            raise

    async def _exchange(
        self, method: str, path: str, body: bytes, headers: Sequence[str]
    ) -> tuple[int, bytes]:
        if self._reader is None or self._reader.at_eof() or self._writer is None:
            self.close()
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        head = [f"{method} {path} HTTP/1.1", f"host: {self.host}:{self.port}", *headers]
        head.append(f"content-length: {len(body)}")
        self._writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        raw = await self._reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").lower().split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        fields = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
        if "content-length" not in fields:
            raise ValueError("an answer without a content-length")
        content = await self._reader.readexactly(int(fields["content-length"]))
        if fields.get("connection") == "close":
            self.close()
        return status, content

    def close(self) -> None:
        """Close the connection (the next request opens a new one)."""
        if self._writer is not None:
            self._writer.transport.abort()
        self._reader = self._writer = None


def freeze(process: subprocess.Popen[bytes]) -> None:
    """SIGSTOP ``process``: its sockets stay open and nothing answers (a hung server)."""
    process.send_signal(signal.SIGSTOP)


def thaw(process: subprocess.Popen[bytes]) -> None:
    """SIGCONT ``process`` after `freeze`."""
    process.send_signal(signal.SIGCONT)


@contextlib.contextmanager
def small_disk(directory: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (``64k``, ``2m``) mounted at ``directory/small`` while in the block:
    a disk that really fills up. Needs root: skipped for another user, a failure for root (as
    CI runs) when the mount does not work."""
    import pytest

    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = directory / "small"
    mount.mkdir()
    command = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)]
    done = subprocess.run(command, capture_output=True, check=False)
    if done.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs at {mount}: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)
