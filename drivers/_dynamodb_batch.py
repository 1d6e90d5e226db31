"""Batches for the dynamodb driver: BatchGetItem and BatchWriteItem, with what DynamoDB leaves
unprocessed sent again.

DynamoDB may answer a batch having done only part of it (throttling, or 16 MB of reads) and
return the rest as ``UnprocessedKeys`` / ``UnprocessedItems``. Each function here sends the
rest again, pausing with jittered exponential backoff while a round makes no progress, and
gives up with `DriverError` after ``rounds`` rounds, so a batch ends in bounded time. The
request itself is a callable (`DynamoClient.request`, bound), so the loop is testable alone.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from drivers._dynamodb_client import Send
from storage import DriverError

__all__ = ["GET_CHUNK", "WRITE_CHUNK", "get_all", "write_all"]

#: The most keys one BatchGetItem takes, and the most requests one BatchWriteItem takes.
GET_CHUNK = 100
WRITE_CHUNK = 25
_ROUNDS = 8
_PAUSE = 0.02
_MAX_PAUSE = 1.0


async def _pause(stalled: int) -> None:
    await asyncio.sleep(random.uniform(0, min(_MAX_PAUSE, _PAUSE * 2**stalled)))


async def get_all(
    send: Send, table: str, request: dict[str, Any], operation: str, *, rounds: int = _ROUNDS
) -> list[dict[str, Any]]:
    """Every item one BatchGetItem ``request`` (``{"Keys": [...], ...}``, at most 100 keys)
    finds, after as many rounds as the unprocessed keys need."""
    found: list[dict[str, Any]] = []
    pending: dict[str, Any] | None = request
    stalled = 0
    for _ in range(rounds):
        response = await send("batch_get_item", RequestItems={table: pending})
        items = response.get("Responses", {}).get(table, [])
        found.extend(items)
        pending = response.get("UnprocessedKeys", {}).get(table)
        if not pending or not pending.get("Keys"):
            return found
        stalled = 0 if items else stalled + 1
        await _pause(stalled)
    left = len(pending["Keys"]) if pending else 0
    raise DriverError(
        "dynamodb", operation, None, f"{left} keys still unprocessed after {rounds} rounds"
    )


async def write_all(
    send: Send, table: str, requests: list[dict[str, Any]], operation: str, *, rounds: int = _ROUNDS
) -> None:
    """Apply one BatchWriteItem's ``requests`` (at most 25 ``PutRequest`` / ``DeleteRequest``),
    after as many rounds as the unprocessed items need."""
    pending = requests
    stalled = 0
    for _ in range(rounds):
        response = await send("batch_write_item", RequestItems={table: pending})
        left = response.get("UnprocessedItems", {}).get(table) or []
        if not left:
            return
        stalled = 0 if len(left) < len(pending) else stalled + 1
        pending = left
        await _pause(stalled)
    raise DriverError(
        "dynamodb",
        operation,
        None,
        f"{len(pending)} writes still unprocessed after {rounds} rounds",
    )
