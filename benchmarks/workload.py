"""The one workload every suite measures: the issue's small dict, sequential and in batches.

Suites import the value, the batch keys and the case names from here, and drive unistorage
through `sequential` and `batches`, so every backend runs exactly the same loop.
"""

from __future__ import annotations

from typing import Any

from storage import Storage

VALUE: dict[str, Any] = {"id": 1, "name": "user-1", "tags": ["a", "b"], "score": 1.5}
BATCH = [f"batch:{i}" for i in range(1000)]
SEQ = "sequential set+get"
BATCHES = "batches of 1000"


async def sequential(storage: Storage, n: int) -> int:
    """``n`` set_item + get_item pairs of `VALUE`; returns the operations done."""
    for i in range(n):
        await storage.set_item(f"user:{i}", VALUE)
        await storage.get_item(f"user:{i}")
    return n * 2


async def batches(storage: Storage, rounds: int) -> int:
    """``rounds`` of set_items + get_items over the 1000 keys of `BATCH`."""
    items = dict.fromkeys(BATCH, VALUE)
    for _ in range(rounds):
        await storage.set_items(items)
        await storage.get_items(BATCH)
    return rounds * 2000
