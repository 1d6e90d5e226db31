"""The server suite's load generator (benchmarks/loadgen.py) sends what it says it sends.

The suite's PUTs are meant to measure the path of a JSON value. wrk formats every body in its
Lua script; a body that is not valid JSON (a zero-padded number such as ``0000000042`` was
one) is stored by our server as a string of text, another and slower path, so the figures
measured the wrong thing. Here real wrk loads a real `unistorage serve` for a moment, and the
stored values are read back.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import httpx
import orjson
import pytest

from benchmarks.loadgen import KEYS, VALUE_BYTES, Wrk, put_body
from tests.faults import ServeProcess


def test_every_put_body_is_a_json_object_of_the_value_size() -> None:
    for n in (0, 1, 42, 999, 10**9, 2**31):
        body = put_body(n)
        assert len(body) == VALUE_BYTES
        value = orjson.loads(body)
        assert type(value) is dict
        assert int(value["id"]) == n


def test_wrk_puts_json_objects_that_the_server_stores_as_json(tmp_path: Path) -> None:
    if shutil.which("wrk") is None:
        pytest.fail("wrk is missing: scripts/test.sh installs it (apt-get install wrk)")
    server = ServeProcess("memory://", tmp_path / "serve.log").start()
    wrk = Wrk()
    try:
        # One connection: the requests go one after another, so the first `sample.ops` keys
        # were written, however slow the machine is.
        sample = asyncio.run(wrk.run(server.url, "PUT", 1, 1))
        assert sample.ops >= 1
        for key in ("k1", f"k{min(sample.ops, KEYS - 1)}"):
            answer = httpx.get(f"{server.url}/bench/{key}")
            assert answer.status_code == 200
            assert answer.headers["content-type"].startswith("application/json")
            value = answer.json()
            assert type(value) is dict, f"stored as {type(value).__name__}: {answer.text[:60]}"
            assert set(value) == {"id", "data"}
            assert len(answer.content) == VALUE_BYTES  # the bytes as sent, kept raw
    finally:
        wrk.close()
        server.stop()
