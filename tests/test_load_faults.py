"""Load with faults: the server under 500 concurrent clients while its backend crashes.

For each backend, ``unistorage serve`` runs as a real child process. This test is the client
process: 500 concurrent clients, each on its own keep-alive connection (`HttpConnection`:
httpx saturated one core at ~1,000 requests a second and would have measured itself). Each
client PUTs its own keys (``/load/<client>/<n>``, a unique value each) and confirms each with a
GET. A write counts as acknowledged only on a 200 to its PUT; a failed PUT is retried with the
same key and value until acknowledged, so an acknowledged key has exactly one right value.

Meanwhile the backend is broken at least twice per fault kind, and healed:

- redis: SIGKILL of redis-server (AOF, fsync per write), restarted on its port and directory;
  and SIGSTOP for longer than the driver's socket timeout (a hung server), then SIGCONT;
- cluster: SIGKILL of one primary (the URL's own node first), restarted, ``cluster_state:ok``
  awaited;
- s3: moto keeps its data in memory, so a `FaultProxy` between the server and moto refuses
  connections (a partition), then drops every connection (a crash behind a load balancer);
- sqlite and fs: the backend lives in the server process, so the server itself is SIGKILLed
  and restarted on its port (``durable=true``: an acknowledged write is on disk); sqlite also
  meets an exclusive lock, held by another process for longer than the busy timeout.

The contract: every failure is a 502 or 503 carrying an error ``code`` (never a 500, a 5xx
without a code or a wrong value); no request outlives the client's timeout; connections fail
only while the server process itself is down; each fault is survived (acknowledged writes
resume after the heal); every client makes progress; and afterwards, through a fresh server
process and a fresh client, every acknowledged key reads back with its value: zero lost. Each
run prints a one-line summary (docs/robustness.md explains the figures).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import random
import subprocess
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson
import pytest

from tests.faults import (
    FaultProxy,
    HttpConnection,
    ServeProcess,
    freeze,
    hold_sqlite_lock,
    thaw,
)
from tests.servers import MissingServerError, MotoServer, RedisCluster, RedisServer

pytestmark = pytest.mark.slow

CLIENTS = 500
TIMEOUT = 10.0  # seconds per request, connecting included
WARMUP = 1.0  # load before the first fault
HOLD = 1.5  # how long a fault lasts
SETTLE = 1.0  # load after each heal (the recovery wait comes first)
RECOVERY = 10.0  # longest wait for acknowledged writes to resume after a heal
RESUMED = 10  # acknowledged writes after a heal that show the load survived the fault
LOCK_SECONDS = 2.5  # the sqlite lock, held for longer than the server's busy timeout (1 s)
FREEZE = 4.0  # a hung redis, for longer than the driver's socket timeout (2 s)
HUNG = 12.0  # a hung S3 endpoint, for longer than the clients' timeout
READ_BATCH = 500
BUCKET = "unistorage-load"
_RAW_BODY = ["content-type: application/octet-stream"]
_RAW_ANSWER = ["accept: application/octet-stream"]


@dataclass
class Fault:
    """One fault: ``inject`` breaks the backend, ``heal`` repairs it (both block)."""

    name: str
    inject: Callable[[], object]
    heal: Callable[[], object]
    hold: float = HOLD
    settle: float = SETTLE
    kills_server: bool = False


@dataclass
class Backend:
    """The driver URL the server is started with, and the faults to inject."""

    url: str
    faults: list[Fault]


@dataclass
class Tally:
    """What the clients saw; `failures` are the requests that broke the contract."""

    requests: int = 0
    acked: dict[str, bytes] = field(default_factory=dict)
    clients_acked: set[int] = field(default_factory=set)
    clean: Counter[str] = field(default_factory=Counter)  # "502 driver_error" -> count
    connection_errors: Counter[str] = field(default_factory=Counter)
    timeouts: int = 0
    max_latency: float = 0.0
    in_flight: int = 0
    peak_in_flight: int = 0
    failures: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    injected: int = 0
    survived: int = 0
    recovery: float = 0.0  # longest time from a heal to acknowledged writes again
    server_down: int = 0  # faults in progress that take the server process down
    server_up_at: float = float("-inf")  # when the server last came back from such a fault
    unexpected_disconnects: int = 0


class Load:
    """``clients`` concurrent clients, each on its own connection, writing and confirming
    their own keys against the server at ``port``."""

    def __init__(self, port: int, clients: int) -> None:
        self.tally = Tally()
        self.stop = asyncio.Event()
        self._port = port
        self._clients = clients
        # After a heal: the acknowledged count that shows the load survived, and its event.
        self._resume_at: int | None = None
        self._resumed = asyncio.Event()

    async def run(self, faults: list[Fault]) -> None:
        """Run the clients while the faults are injected and healed, then stop them."""
        clients = [asyncio.create_task(self._client(i)) for i in range(self._clients)]
        try:
            await self._inject(faults)
        finally:
            self.stop.set()
            # A client ends after its current request, which its timeout bounds.
            done, pending = await asyncio.wait(clients, timeout=TIMEOUT + 5)
            for task in pending:
                task.cancel()
        assert not pending, f"{len(pending)} clients still hung after the load ended"
        for task in done:
            task.result()

    async def _inject(self, faults: list[Fault]) -> None:
        tally = self.tally
        await asyncio.sleep(WARMUP)
        for fault in faults:
            tally.server_down += fault.kills_server
            await asyncio.to_thread(fault.inject)
            tally.injected += 1
            await asyncio.sleep(fault.hold)
            await asyncio.to_thread(fault.heal)
            tally.server_down -= fault.kills_server
            healed = time.monotonic()
            if fault.kills_server:
                tally.server_up_at = healed
            self._resume_at = len(tally.acked) + RESUMED
            self._resumed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._resumed.wait(), RECOVERY)
                tally.survived += 1
                tally.recovery = max(tally.recovery, time.monotonic() - healed)
            self._resume_at = None
            await asyncio.sleep(fault.settle)

    async def _client(self, index: int) -> None:
        rng = random.Random(index)
        connection = HttpConnection("127.0.0.1", self._port, timeout=TIMEOUT)
        try:
            n = 0
            while not self.stop.is_set():
                n += 1
                key, value = f"{index}/{n}", f"{index}:{n}:{rng.getrandbits(64):016x}".encode()
                put = functools.partial(self._put, connection, key, value)
                if not await self._retry(rng, put):
                    return
                self.tally.acked[key] = value
                self.tally.clients_acked.add(index)
                if self._resume_at is not None and len(self.tally.acked) >= self._resume_at:
                    self._resumed.set()
                confirm = functools.partial(self._confirm, connection, key, value)
                if not await self._retry(rng, confirm):
                    return
        finally:
            connection.close()

    async def _retry(self, rng: random.Random, attempt: Callable[[], Awaitable[bool]]) -> bool:
        """Run ``attempt`` until it answers True (then True) or the load stops (then False)."""
        tries = 0
        while not await attempt():
            if self.stop.is_set():
                return False
            await asyncio.sleep(min(1.0, 0.05 * 2**tries) * rng.uniform(0.5, 1.5))
            tries += 1
        return True

    async def _put(self, connection: HttpConnection, key: str, value: bytes) -> bool:
        answer = await self._send(connection, "PUT", key, value, _RAW_BODY)
        if answer is not None and answer[0] != 200:
            self.tally.failures.append(f"PUT {key}: {answer[0]} {answer[1][:200]!r}")
        return answer is not None and answer[0] == 200

    async def _confirm(self, connection: HttpConnection, key: str, value: bytes) -> bool:
        answer = await self._send(connection, "GET", key, b"", _RAW_ANSWER)
        if answer is not None and answer[0] == 404:
            self.tally.lost.append(f"{key}: 404 right after its PUT was acknowledged")
        elif answer is not None and answer != (200, value):
            self.tally.failures.append(f"GET {key}: {answer[0]} {answer[1][:200]!r}")
        return answer is not None

    async def _send(
        self, connection: HttpConnection, method: str, key: str, body: bytes, headers: list[str]
    ) -> tuple[int, bytes] | None:
        """One request; None for a clean failure or a connection error (both counted)."""
        tally = self.tally
        tally.requests += 1
        tally.in_flight += 1
        tally.peak_in_flight = max(tally.peak_in_flight, tally.in_flight)
        start = time.monotonic()
        try:
            status, content = await connection.request(method, f"/load/{key}", body, headers)
        except TimeoutError:
            tally.timeouts += 1
            tally.failures.append(f"{method} {key}: no answer within {TIMEOUT} s")
            return None
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            tally.connection_errors[type(exc).__name__] += 1
            # Expected only for a request begun before the server came back from its crash.
            if not tally.server_down and start > tally.server_up_at:
                tally.unexpected_disconnects += 1
            return None
        finally:
            tally.in_flight -= 1
            tally.max_latency = max(tally.max_latency, time.monotonic() - start)
        if status < 500:
            return status, content
        code = _code(content)
        if status in (502, 503) and code:
            tally.clean[f"{status} {code}"] += 1
        else:
            tally.failures.append(f"{method} {key}: {status} {content[:200]!r}")
        return None


def _code(content: bytes) -> str | None:
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        return None
    code = body.get("code") if isinstance(body, dict) else None
    return code if isinstance(code, str) and code else None


async def _read_back(url: str, acked: dict[str, bytes]) -> list[str]:
    """The acknowledged keys that do not read back with their value, through a fresh client."""
    wrong: list[str] = []
    keys = list(acked)
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        for start in range(0, len(keys), READ_BATCH):
            chunk = keys[start : start + READ_BATCH]
            response = await http.post("/load/?batch", content=orjson.dumps({"get": chunk}))
            assert response.status_code == 200, response.text
            values = response.json()["values"]
            for key, value in zip(chunk, values, strict=True):
                if value is None:
                    wrong.append(f"{key}: missing")
                elif base64.b64decode(value) != acked[key]:
                    wrong.append(f"{key}: holds another value")
    return wrong


# -- backends and their faults ----------------------------------------------------------------


def _server_kill(server: ServeProcess) -> Fault:
    return Fault("server SIGKILL", server.kill, server.start, kills_server=True)


def _sqlite_lock(path: Path) -> Fault:
    holders: list[subprocess.Popen[str]] = []

    def inject() -> None:
        holders.append(hold_sqlite_lock(path, LOCK_SECONDS))

    def heal() -> None:
        holders.pop().wait(timeout=LOCK_SECONDS + 10)

    return Fault("sqlite exclusive lock", inject, heal, hold=LOCK_SECONDS)


def _redis_kill(node: RedisServer, cluster: RedisCluster | None = None) -> Fault:
    def heal() -> None:
        node.start()
        if cluster is not None:
            cluster.wait_ok()

    return Fault("primary SIGKILL" if cluster else "redis SIGKILL", node.kill, heal)


def _redis_freeze(node: RedisServer) -> Fault:
    def process() -> subprocess.Popen[bytes]:
        assert node.process is not None
        return node.process

    return Fault("redis SIGSTOP", lambda: freeze(process()), lambda: thaw(process()), hold=FREEZE)


@contextlib.contextmanager
def _s3(query: str = "") -> Iterator[tuple[FaultProxy, str]]:
    """moto with a bucket, the fault proxy in front of it, and the driver URL through it."""
    moto = MotoServer().start()
    proxy = FaultProxy("127.0.0.1", moto.port).start()
    try:
        moto.client().create_bucket(Bucket=BUCKET)
        yield (
            proxy,
            (
                f"s3://{BUCKET}/load?endpoint_url={proxy.url}&region=us-east-1"
                f"&access_key_id=testing&secret_access_key=testing{query}"
            ),
        )
    finally:
        proxy.close()
        moto.close()


@contextlib.contextmanager
def _backend(kind: str, tmp_path: Path, server: ServeProcess) -> Iterator[Backend]:
    """The backend ``kind``, started; ``server`` is the (not yet started) load server."""
    if kind == "sqlite":
        db = tmp_path / "store.db"
        kill, lock = _server_kill(server), _sqlite_lock(db)
        yield Backend(f"sqlite:///{db}?durable=true&busy_timeout=1", [kill, lock, kill, lock])
    elif kind == "fs":
        kill = _server_kill(server)
        yield Backend(f"file://{tmp_path / 'store'}?durable=true", [kill, kill])
    elif kind == "redis":
        redis = RedisServer(tmp_path, durable=True)
        try:
            redis.start()
            kill, stop = _redis_kill(redis), _redis_freeze(redis)
            yield Backend(redis.url, [kill, stop, kill, stop])
        finally:
            redis.close()
    elif kind == "redis_cluster":
        cluster = RedisCluster(primaries=3, durable=True).start()
        try:
            # The driver's default pool (50 connections); redis-py 8.1's cluster client used to
            # race at that size (fixed in the driver: it learns its slots before a first
            # burst). While a primary is down, commands for it hold connections until the
            # socket timeout, so a shorter pool_timeout keeps the others' waits well inside
            # the clients' deadline on a loaded machine.
            url = f"{cluster.url}?pool_timeout=2"
            # The URL's own node first: the client must find the cluster through the others.
            yield Backend(url, [_redis_kill(node, cluster) for node in cluster.nodes[:2]])
        finally:
            cluster.close()
    elif kind == "s3":
        with _s3() as (proxy, url):
            refuse = Fault("s3 partition (refused)", proxy.refuse, proxy.passthrough)
            drop = Fault("s3 connections dropped", proxy.drop, proxy.passthrough)
            yield Backend(url, [refuse, drop, refuse, drop])
    else:  # s3_hung: each S3 call gives up within about a second, the endpoint hangs longer
        with _s3("&connect_timeout=1&read_timeout=1&max_attempts=1") as (proxy, url):
            # Load long enough after it for every client to have a write acknowledged.
            heal = proxy.passthrough
            hang = Fault("s3 endpoint hung", proxy.blackhole, heal, hold=HUNG, settle=5)
            yield Backend(url, [hang])


async def _exercise(kind: str, tmp_path: Path) -> tuple[Tally, list[str], Backend]:
    """Run the load with ``kind``'s faults, then read every acknowledged key back through a
    fresh server (after one more crash of the load server); returns the tally and the lost."""
    began = time.monotonic()
    server = ServeProcess("", tmp_path / "serve.log")
    try:
        with _backend(kind, tmp_path, server) as backend:
            server.driver = backend.url
            await asyncio.to_thread(server.start)
            load = Load(server.port, CLIENTS)
            try:
                await load.run(backend.faults)
            finally:
                server.kill()
            fresh = ServeProcess(backend.url, tmp_path / "fresh.log")
            await asyncio.to_thread(fresh.start)
            try:
                wrong = await _read_back(fresh.url, load.tally.acked)
            finally:
                fresh.stop()
    except MissingServerError as exc:
        pytest.fail(str(exc))
    lost = sorted(set(load.tally.lost) | set(wrong))
    print("\n" + _summary(kind, load.tally, backend.faults, len(lost), time.monotonic() - began))
    return load.tally, lost, backend


def _summary(kind: str, tally: Tally, faults: list[Fault], lost: int, seconds: float) -> str:
    """The one-line figures of a run (docs/robustness.md shows a sample)."""
    names = Counter(fault.name for fault in faults)
    clean = ", ".join(f"{n} x {what}" for what, n in sorted(tally.clean.items())) or "none"
    return (
        f"load-faults {kind}: {CLIENTS} clients ({len(tally.clients_acked)} acknowledged, "
        f"peak {tally.peak_in_flight} in flight); faults {tally.survived}/{tally.injected} "
        f"survived ({', '.join(f'{n} x {name}' for name, n in names.items())}); "
        f"{tally.requests} requests; {len(tally.acked)} writes acknowledged, {lost} lost; "
        f"clean failures: {clean}; connection errors while the server was down: "
        f"{sum(tally.connection_errors.values())}; timeouts {tally.timeouts}; "
        f"max latency {tally.max_latency:.2f} s; slowest recovery {tally.recovery:.2f} s; "
        f"{seconds:.1f} s"
    )


def _assert_contract(tally: Tally, lost: list[str], backend: Backend) -> None:
    assert not lost, f"{len(lost)} acknowledged writes lost: {lost[:10]}"
    assert not tally.failures, f"{len(tally.failures)} unclean answers: {tally.failures[:10]}"
    assert tally.max_latency < TIMEOUT
    assert tally.survived == tally.injected == len(backend.faults)
    assert tally.unexpected_disconnects == 0, tally.connection_errors
    assert len(tally.clients_acked) == CLIENTS, "some clients never had a write acknowledged"


@pytest.mark.parametrize("kind", ["sqlite", "fs", "redis", "redis_cluster", "s3"])
async def test_acknowledged_writes_survive_backend_crashes_under_load(
    kind: str, tmp_path: Path
) -> None:
    _assert_contract(*await _exercise(kind, tmp_path))


async def test_a_hung_s3_endpoint_fails_requests_cleanly_within_their_timeout(
    tmp_path: Path,
) -> None:
    _assert_contract(*await _exercise("s3_hung", tmp_path))


async def test_the_fault_proxy_passes_delays_refuses_drops_and_swallows_connections() -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1024):
            writer.write(data)
        writer.close()

    backend = await asyncio.start_server(echo, "127.0.0.1", 0)
    proxy = FaultProxy("127.0.0.1", backend.sockets[0].getsockname()[1]).start()

    async def round_trip() -> tuple[bytes | str, float]:
        start = time.monotonic()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            writer.write(b"ping")
            answer: bytes | str = await asyncio.wait_for(reader.read(4), 1)
            writer.close()
        except (OSError, TimeoutError) as exc:
            answer = type(exc).__name__
        return answer, time.monotonic() - start

    try:
        assert (await round_trip())[0] == b"ping"
        proxy.delay(150)
        answer, took = await round_trip()
        assert answer == b"ping"
        assert took >= 0.3  # 150 ms each way
        proxy.delay(0)
        await asyncio.to_thread(proxy.refuse)
        assert (await round_trip())[0] == "ConnectionRefusedError"
        await asyncio.to_thread(proxy.drop)
        assert (await round_trip())[0] in (b"", "ConnectionResetError")
        await asyncio.to_thread(proxy.blackhole)
        assert (await round_trip())[0] == "TimeoutError"
        await asyncio.to_thread(proxy.passthrough)
        assert (await round_trip())[0] == b"ping"
    finally:
        await asyncio.to_thread(proxy.close)
        backend.close()
