"""The HTTP load generator of the server suites: wrk, in its own process, one run per round.

`Wrk.run` drives ``connections`` keep-alive connections at a server for ``seconds`` with GETs
or PUTs of a 1 KB JSON value over 1,000 keys and returns the round as a `Sample`: requests,
seconds, and wrk's p50 and p99 latency. Each PUT sends new bytes (its number is in the value):
SQLite skips rewriting a row whose bytes are unchanged, so a constant body made the floor's
writes no-ops. Every body is valid JSON (`put_body`, checked by tests/test_bench_loadgen.py):
a zero-padded number such as ``0000000042`` is not, and a JSON server stores such a body as a
string of text instead, another (slower) path than the one measured. wrk comes from Debian's
package (scripts/bench.sh installs it); one wrk thread leaves the other cores to the server.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from pathlib import Path

from .harness import Sample

__all__ = ["KEYS", "PUT_FORMAT", "VALUE_BYTES", "Wrk", "put_body", "wrk_available"]

#: The size of the JSON value every PUT sends, and how many keys the requests go round.
VALUE_BYTES = 1024
KEYS = 1000
#: The JSON text of every PUT, as a format for Lua's ``string.format`` (as for Python's ``%``):
#: the request's number, zero-padded inside a string (a zero-padded JSON number is invalid),
#: and the filler.
PUT_FORMAT = '{"id":"%010d","data":"%s"}'

_SCRIPT = """
wrk.method = "%(method)s"
wrk.headers["content-type"] = "application/json"
local filler = %(filler)s
local n = 0
request = function()
  n = n + 1
  local path = "/bench/k" .. (n %% %(keys)d)
  if wrk.method == "GET" then
    return wrk.format(nil, path)
  end
  -- Every PUT sends new bytes: a store that finds the same bytes may skip the write.
  return wrk.format(nil, path, nil, string.format(%(body)s, n, filler))
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %%d, "micros": %%d, "p50": %%d, "p99": %%d, "errors": %%d, "bad": %%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
end
"""


def wrk_available() -> bool:
    """True when wrk is installed; prints why the suite skips otherwise."""
    if shutil.which("wrk") is None:
        print("  (wrk missing: `bash scripts/bench.sh` installs it)", flush=True)
        return False
    return True


def _filler() -> str:
    """The ``data`` string of every PUT: the value, with its 10-digit id, is `VALUE_BYTES`."""
    return "x" * (VALUE_BYTES - len(PUT_FORMAT % (0, "")))


def put_body(n: int) -> bytes:
    """The body wrk's script sends as the ``n``-th PUT (the same format, done by Python)."""
    return (PUT_FORMAT % (n, _filler())).encode()


class Wrk:
    """wrk with a GET script and a PUT script written once to a temporary directory (removed
    by `close`)."""

    def __init__(self) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="unistorage-wrk-"))
        for method in ("GET", "PUT"):
            script = _SCRIPT % {
                "method": method,
                "filler": json.dumps(_filler()),
                "body": json.dumps(PUT_FORMAT),  # a JSON string of ASCII is a Lua string
                "keys": KEYS,
            }
            (self._dir / f"{method}.lua").write_text(script)

    async def run(self, url: str, method: str, connections: int, seconds: int) -> Sample:
        """One round: ``connections`` connections sending ``method`` requests for ``seconds``."""
        process = await asyncio.create_subprocess_exec(
            "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
            "-s", str(self._dir / f"{method}.lua"), url,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await process.communicate()
        line = next((x for x in out.decode().splitlines() if x.startswith("{")), None)
        if line is None:
            raise RuntimeError(f"wrk gave no summary: {err.decode()[-500:]}")
        found = json.loads(line)
        if found["errors"] or found["bad"]:
            print(f"    ({url} {method} x{connections}: {found['errors']} socket errors, "
                  f"{found['bad']} non-2xx answers)", flush=True)  # fmt: skip
        return Sample(
            found["requests"], found["micros"] / 1e6, found["p50"] / 1000, found["p99"] / 1000
        )

    def close(self) -> None:
        """Remove the scripts."""
        shutil.rmtree(self._dir, ignore_errors=True)
