"""Storage + fs driver against a naive aiofiles loop (the floor), one thread hop per operation,
and unstorage's fs driver on node, all writing the same JSON value to files; and a 256 MB
value streamed into the store from a file and out of it into one, against copying the file
(shutil.copyfile, and a plain read/write loop), in alternating rounds."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiofiles

from drivers.fs import FsDriver
from storage import create_storage

from . import workload
from .harness import Bench, Body, Sample, Subject
from .node_rounds import NodeRounds, node_available
from .workload import BATCH, BATCHES, SEQ, VALUE

SEQUENTIAL = 3000
ROUNDS = 5
STREAMED_MB = 256
STREAM_IN = "256 MB file in (MB)"
STREAM_OUT = "256 MB file out (MB)"
_READ = 1024 * 1024  # bytes per file read, as a producer of chunks


def _fresh(root: str, name: str) -> str:
    path = os.path.join(root, name)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


Fresh = Callable[[str], Awaitable[int]]


def _in_fresh(root: str, name: str, body: Fresh) -> Body:
    """``body`` in a directory emptied first, untimed (the removal is not the subject's)."""

    async def run() -> Sample:
        base = _fresh(root, name)
        start = time.perf_counter()
        ops = await body(base)
        return Sample(ops, time.perf_counter() - start)

    return run


def _aiofiles(n: int, rounds: int) -> tuple[Fresh, Fresh]:
    async def sequential(base: str) -> int:
        os.makedirs(f"{base}/user", exist_ok=True)
        for i in range(n):
            async with aiofiles.open(f"{base}/user/{i}", "w") as handle:
                await handle.write(json.dumps(VALUE))
            async with aiofiles.open(f"{base}/user/{i}") as handle:
                json.loads(await handle.read())
        return n * 2

    async def batches(base: str) -> int:
        os.makedirs(f"{base}/batch", exist_ok=True)
        for _ in range(rounds):
            for key in BATCH:
                async with aiofiles.open(f"{base}/{key.replace(':', '/')}", "w") as handle:
                    await handle.write(json.dumps(VALUE))
            for key in BATCH:
                async with aiofiles.open(f"{base}/{key.replace(':', '/')}") as handle:
                    json.loads(await handle.read())
        return rounds * 2000

    return sequential, batches


def _to_thread(n: int) -> Fresh:
    def write(path: str, data: str) -> None:
        with open(path, "w") as handle:
            handle.write(data)

    def read(path: str) -> str:
        with open(path) as handle:
            return handle.read()

    async def sequential(base: str) -> int:
        os.makedirs(f"{base}/user", exist_ok=True)
        for i in range(n):
            await asyncio.to_thread(write, f"{base}/user/{i}", json.dumps(VALUE))
            json.loads(await asyncio.to_thread(read, f"{base}/user/{i}"))
        return n * 2

    return sequential


def _unistorage(n: int, rounds: int, **options: Any) -> tuple[Fresh, Fresh]:
    async def sequential(base: str) -> int:
        async with create_storage(FsDriver(base, **options)) as storage:
            return await workload.sequential(storage, n)

    async def batches(base: str) -> int:
        async with create_storage(FsDriver(base, **options)) as storage:
            return await workload.batches(storage, rounds)

    return sequential, batches


def _node(node: NodeRounds, case: str) -> Subject:
    async def body() -> Sample:
        await node.run("fresh")  # a new directory, untimed
        return await node.run(case)

    return Subject("unstorage fs (node)", body)


async def _items(bench: Bench, root: str, n: int, rounds: int) -> None:
    """Sequential pairs and batches, each round in a fresh directory."""
    aio_sequential, aio_batches = _aiofiles(n, rounds)
    ours_sequential, ours_batches = _unistorage(n, rounds)
    pooled_sequential, _ = _unistorage(n, rounds, inline_reads=False)
    node = None
    if node_available():
        node = await NodeRounds("fs.mjs", os.path.join(root, "node"), str(n), str(rounds)).start()
    try:
        sequential = [
            Subject(
                "aiofiles open/write/read", _in_fresh(root, "aiofiles", aio_sequential), floor=True
            ),
            Subject("unistorage fs", _in_fresh(root, "ours", ours_sequential), ours=True),
            Subject(
                "unistorage fs, inline_reads=False", _in_fresh(root, "pooled", pooled_sequential)
            ),
            Subject("to_thread open/write/read", _in_fresh(root, "thread", _to_thread(n))),
        ]
        batches = [
            Subject(
                "aiofiles open/write/read", _in_fresh(root, "aiofiles", aio_batches), floor=True
            ),
            Subject("unistorage fs", _in_fresh(root, "ours", ours_batches), ours=True),
        ]
        if node is not None:
            sequential.append(_node(node, "sequential"))
            batches.append(_node(node, "batches"))
        await bench.rounds(SEQ, sequential)
        await bench.rounds(BATCHES, batches, rounds=5)
    finally:
        if node is not None:
            await node.close()


def _random_file(path: str, megabytes: int) -> None:
    with open(path, "wb") as out:
        for _ in range(megabytes):
            out.write(os.urandom(1024 * 1024))


def _copy_loop(source: str, target: str) -> None:
    with open(source, "rb") as reading, open(target, "wb") as writing:
        while chunk := reading.read(_READ):
            writing.write(chunk)


async def _streams(bench: Bench, root: str, megabytes: int) -> None:
    """A file streamed into the store (`Storage.open_write` fed from it) and out of it
    (`Storage.open_read` written to a file), each against copying the file."""
    directory = _fresh(root, "streams")
    source, target = os.path.join(directory, "source"), os.path.join(directory, "target")
    await asyncio.to_thread(_random_file, source, megabytes)
    storage = create_storage(FsDriver(os.path.join(directory, "store"), sweep_interval=0))
    await storage.set_item("warm", 1)

    async def copyfile() -> int:
        await asyncio.to_thread(shutil.copyfile, source, target)
        return megabytes

    async def copy_loop() -> int:
        await asyncio.to_thread(_copy_loop, source, target)
        return megabytes

    async def ours_in() -> int:
        file = await asyncio.to_thread(open, source, "rb")
        try:
            async with storage.open_write("streamed") as writer:
                while chunk := await asyncio.to_thread(file.read, _READ):
                    await writer.write(chunk)
        finally:
            await asyncio.to_thread(file.close)
        return megabytes

    async def ours_out() -> int:
        file = await asyncio.to_thread(open, target, "wb")
        try:
            async with storage.open_read("streamed", chunk_size=_READ) as reader:
                async for chunk in reader:
                    await asyncio.to_thread(file.write, chunk)
        finally:
            await asyncio.to_thread(file.close)
        return megabytes

    try:
        await ours_in()  # the value ours_out reads
        for case, ours, name in (
            (STREAM_IN, ours_in, "unistorage open_write"),
            (STREAM_OUT, ours_out, "unistorage open_read"),
        ):
            await bench.rounds(
                case,
                [
                    Subject("shutil.copyfile", copyfile, floor=True, unit="MB"),
                    Subject("read/write loop (1 MiB)", copy_loop, unit="MB"),
                    Subject(name, ours, ours=True, unit="MB"),
                ],
                rounds=5,
            )
    finally:
        await storage.dispose()
        shutil.rmtree(directory, ignore_errors=True)


async def run(bench: Bench) -> None:
    n = bench.n(SEQUENTIAL)
    rounds = bench.n(ROUNDS)
    root = tempfile.mkdtemp(prefix="bench-fs-")
    try:
        await _items(bench, root, n, rounds)
        await _streams(bench, root, bench.n(STREAMED_MB))
    finally:
        shutil.rmtree(root, ignore_errors=True)
