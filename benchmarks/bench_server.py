"""The HTTP server: requests/s and p50/p99 latency of GET and PUT of 1 KB JSON values at 1, 64
and 512 connections, over memory and sqlite, in alternating rounds of wrk (its own process).

Subjects, each one process on one core's worth of workers: ``unistorage serve`` on the chosen
ASGI server, the floor (a raw ASGI key-value app, `benchmarks.asgi_floor`, on the same server
software and settings) and unstorage's own server on node (createStorageServer on node:http,
the same kind of store). A first case picks the ASGI server and the event loop: ours and the
floor on granian and on uvicorn (with httptools when installed) on the default loop (uvloop
when installed), and on granian with asyncio's own loop, in the same rounds.
Goals (issue 16): at least 0.8x the floor, and ahead of unstorage's server on node.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from storage.serve import SERVERS, choose_loop, choose_server

from .harness import Bench, Sample, Subject
from .http_servers import Served, floor_server, node_server, ours_server
from .loadgen import Wrk, wrk_available
from .node_rounds import node_available

CONNECTIONS = (1, 64, 512)
KINDS = ("memory", "sqlite")
#: Seconds of load per round, and the connections of the server-choice case.
SECONDS = 2
CHOICE_CONNECTIONS = 64
ROUNDS = 5


def _subject(
    wrk: Wrk, served: Served, method: str, connections: int, seconds: int, **flags: bool
) -> Subject:
    async def body() -> Sample:
        return await wrk.run(served.url, method, connections, seconds)

    return Subject(served.name, body, unit="req", **flags)


async def _server_choice(bench: Bench, wrk: Wrk, directory: Path, seconds: int) -> None:
    """Ours and the floor on every installed ASGI server, memory, GET and PUT; and on the
    first server with asyncio's own loop when the default is another one (uvloop)."""
    installed = [server for server in SERVERS if _installed(server)]
    runs = [(server, "auto") for server in installed]
    if installed and choose_loop("auto") != "asyncio":
        runs.append((installed[0], "asyncio"))
    served: list[Served] = []
    try:
        floors = [floor_server("memory", server, directory, loop) for server, loop in runs]
        served += floors
        ours = [ours_server("memory", server, directory, loop=loop) for server, loop in runs]
        served += ours
        for method in ("PUT", "GET"):
            subjects = [
                _subject(wrk, floors[0], method, CHOICE_CONNECTIONS, seconds, floor=True),
                *(_subject(wrk, s, method, CHOICE_CONNECTIONS, seconds) for s in floors[1:]),
                *(
                    _subject(wrk, s, method, CHOICE_CONNECTIONS, seconds, ours=i == 0)
                    for i, s in enumerate(ours)
                ),
            ]
            await bench.rounds(
                f"ASGI servers: memory {method} 1 KB, {CHOICE_CONNECTIONS} conns",
                subjects,
                rounds=ROUNDS,
            )
    finally:
        for server in served:
            server.stop()


def _installed(server: str) -> bool:
    try:
        return choose_server(server) == server
    except Exception:
        return False


async def _kind(
    bench: Bench, wrk: Wrk, kind: str, directory: Path, seconds: int, node: bool
) -> None:
    server = choose_server("auto")
    served: list[Served] = []
    try:
        floor = floor_server(kind, server, directory)
        served.append(floor)
        ours = ours_server(kind, server, directory)
        served.append(ours)
        if node:
            served.append(node_server(kind, directory))
        for method in ("PUT", "GET"):  # PUT first: the GETs find the keys
            for connections in CONNECTIONS:
                subjects = [
                    _subject(wrk, floor, method, connections, seconds, floor=True),
                    _subject(wrk, ours, method, connections, seconds, ours=True),
                    *(_subject(wrk, s, method, connections, seconds) for s in served[2:]),
                ]
                await bench.rounds(
                    f"{kind} {method} 1 KB, {connections} conns", subjects, rounds=ROUNDS
                )
    finally:
        for each in served:
            each.stop()


async def run(bench: Bench) -> None:
    if not wrk_available():
        return
    seconds = SECONDS if bench.scale >= 1 else 1
    node = node_available("db0", "better-sqlite3")
    directory = Path(tempfile.mkdtemp(prefix="bench-server-"))
    wrk = Wrk()
    try:
        await _server_choice(bench, wrk, directory, seconds)
        for kind in KINDS:
            await _kind(bench, wrk, kind, directory, seconds, node)
    finally:
        wrk.close()
        shutil.rmtree(directory, ignore_errors=True)
