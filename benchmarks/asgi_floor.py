"""The floor of the Python HTTP stack: the least an ASGI app can do to serve GET and PUT of
keys (no routing, no checks, no headers beyond the length), over a dict or one sqlite3
connection used inline (WAL, synchronous=NORMAL, as the sqlite driver opens its file).

Served by the same server software and settings as ``unistorage serve``, it is what the
server suite compares our server with: whatever it costs is the server software's.
``UNISTORAGE_FLOOR=memory`` or ``sqlite:PATH`` picks the store; ``app`` is the ASGI app.
"""

from __future__ import annotations

import os
import sqlite3
import sys
from collections.abc import Callable

from storage.asgi import Receive, Scope, Send
from storage.serve import choose_loop, tune_gc

__all__ = ["app", "create", "main"]

_OK = {"type": "http.response.body", "body": b"OK"}
_MISSING = {"type": "http.response.body", "body": b"not found"}


def _head(status: int, length: int) -> dict[str, object]:
    return {
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-length", str(length).encode())],
    }


def _store(spec: str) -> tuple[Callable[[str], bytes | None], Callable[[str, bytes], None]]:
    if spec == "memory":
        data: dict[str, bytes] = {}
        return data.get, data.__setitem__
    path = spec.removeprefix("sqlite:")
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    db.execute("CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB)")

    def get(key: str) -> bytes | None:
        row = db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def put(key: str, value: bytes) -> None:
        db.execute(
            "INSERT INTO kv (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    return get, put


def create(spec: str) -> Callable[[Scope, Receive, Send], object]:
    """The floor app over the store ``spec`` names (``memory`` or ``sqlite:PATH``)."""
    get, put = _store(spec)

    async def floor(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        key = scope["path"]
        if scope["method"] == "PUT":
            body = b""
            more = True
            while more:
                message = await receive()
                body += message.get("body", b"")
                more = message.get("more_body", False)
            put(key, body)
            await send(_head(200, 2))
            await send(_OK)
            return
        value = get(key)
        if value is None:
            await send(_head(404, 9))
            await send(_MISSING)
            return
        await send(_head(200, len(value)))
        await send({"type": "http.response.body", "body": value})

    return floor


app = create(os.environ.get("UNISTORAGE_FLOOR", "memory"))
tune_gc()  # as `unistorage serve` sets up each of its processes


def main(argv: list[str] | None = None) -> None:
    """``python -m benchmarks.asgi_floor SERVER PORT STORE [LOOP]``: serve the floor app on
    SERVER (granian or uvicorn) with the settings ``unistorage serve`` gives it (one worker,
    ASGI, lifespan on, backlog 2048, warnings only, LOOP as ``--loop``: auto by default, the
    garbage collector tuned by `storage.serve.tune_gc`)."""
    server, port, spec, *rest = argv or sys.argv[1:]
    loop = choose_loop(rest[0] if rest else "auto")
    os.environ["UNISTORAGE_FLOOR"] = spec
    if server == "uvicorn":
        import uvicorn

        uvicorn.run(
            create(spec), port=int(port), log_level="warning", lifespan="on", backlog=2048,
            loop=loop,
        )  # fmt: skip
        return
    from granian import Granian
    from granian.constants import Interfaces, Loops
    from granian.log import LogLevels

    Granian(
        "benchmarks.asgi_floor:app", port=int(port), interface=Interfaces.ASGI, workers=1,
        log_level=LogLevels.warning, backlog=2048, loop=Loops(loop),
    ).serve()  # fmt: skip


if __name__ == "__main__":
    main()
