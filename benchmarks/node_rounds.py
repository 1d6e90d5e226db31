"""unstorage on node as a benchmark subject that takes turns with Python ones.

`NodeRounds` keeps one node process (``benchmarks/node/rounds.mjs`` over a subject script)
running for a whole suite; each call of `NodeRounds.run` asks it for one round of a case and
returns the round's `Sample` as node timed it, so node rounds alternate with Python rounds in
`Bench.rounds` and get per-round ratios like any other subject.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

from .harness import Sample, Subject

__all__ = ["NODE_DIR", "NodeRounds", "node_available"]

NODE_DIR = Path(__file__).parent / "node"
_MISSING = "  (node or benchmarks/node/node_modules missing: `bash scripts/bench.sh` installs them)"


def node_available(*packages: str) -> bool:
    """True when node and the npm packages of ``benchmarks/node`` (unstorage, and
    ``packages``) are installed; prints why not otherwise."""
    found = shutil.which("node") is not None and all(
        (NODE_DIR / "node_modules" / name).is_dir() for name in ("unstorage", *packages)
    )
    if not found:
        print(_MISSING, flush=True)
    return found


class NodeRounds:
    """One node process serving rounds of the cases that ``script`` sets up (its own
    process: node and Python never share a core's time slice within a round).

    The constructor starts nothing; `start` starts the process, `close` ends it.
    """

    def __init__(self, script: str, *args: str) -> None:
        self.script = script
        self.args = args
        self.cases: list[str] = []
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> NodeRounds:
        """Start node and wait until the script has set its cases up."""
        self._process = await asyncio.create_subprocess_exec(
            "node",
            str(NODE_DIR / "rounds.mjs"),
            self.script,
            *self.args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=NODE_DIR,
        )
        self.cases = (await self._reply())["ready"]
        return self

    async def _reply(self) -> dict[str, Any]:
        assert self._process is not None
        assert self._process.stdout is not None
        while True:
            line = await self._process.stdout.readline()
            if not line:
                raise RuntimeError(f"node {self.script} exited (its stderr has the reason)")
            if line.startswith(b"{"):
                reply: dict[str, Any] = json.loads(line)
                if "error" in reply:
                    raise RuntimeError(f"node {self.script}: {reply['error']}")
                return reply

    async def run(self, case: str, **options: Any) -> Sample:
        """One round of ``case`` in node, timed by node."""
        assert self._process is not None
        assert self._process.stdin is not None
        self._process.stdin.write(json.dumps({"case": case, **options}).encode() + b"\n")
        await self._process.stdin.drain()
        reply = await self._reply()
        return Sample(reply["ops"], reply["seconds"], reply.get("p50_ms"), reply.get("p99_ms"))

    def subject(self, case: str, name: str, **options: Any) -> Subject:
        """A `Subject` whose every round is one round of ``case`` in node."""

        async def body() -> Sample:
            return await self.run(case, **options)

        return Subject(name, body)

    async def close(self) -> None:
        """Let the script clean up and exit (killed after 10 s)."""
        process, self._process = self._process, None
        if process is None or process.stdin is None:
            return
        process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()
