"""Resumable SCAN pages for the redis driver, on one server or across a cluster's primaries.

A page's cursor is SCAN's own: the position in one server's key table. On a cluster it also
names the primary being scanned (by address) and a fingerprint of the set of primaries, and
moves to the next primary, in address order, once one is done. SCAN returns every key present
for the whole scan at least once, and may return a key twice (when the server resizes its
table). If the set of primaries changes between two pages (a failover, a node added), the
cursor no longer means anything: the listing starts again from the first primary, which keeps
"at least once" true, and logs a warning. Slots moving between unchanged primaries while a
listing runs may hide the keys they carry from it.
"""

from __future__ import annotations

import hashlib
import logging
import math
from typing import cast

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster

from storage import InvalidArgumentError

__all__ = ["scan_page"]

logger = logging.getLogger(__name__)


def _next_count(remaining: int, examined: int, found: int, most: int) -> int:
    """The COUNT for the next SCAN call: about what should yield ``remaining`` more keys at
    the density seen so far, never below ``remaining`` nor above ``most``.

    A base holding few of a server's keys would otherwise take a round trip per few keys.
    """
    wanted = math.ceil(remaining * examined / found) if found else examined * 10
    return max(1, min(most, max(remaining, wanted)))


def _position(text: str) -> int:
    try:
        position = int(text)
    except ValueError:
        position = -1
    if position < 0:
        raise InvalidArgumentError("not a cursor of this redis listing")
    return position


def _fingerprint(primaries: list[ClusterNode]) -> str:
    names = "\n".join(node.name for node in primaries)
    return hashlib.sha1(names.encode(), usedforsecurity=False).hexdigest()[:12]


async def scan_page(
    client: Redis | RedisCluster, pattern: str, limit: int, cursor: str | None, most: int
) -> tuple[list[bytes], str | None]:
    """Key names matching ``pattern`` from ``cursor`` on: at least ``limit`` of them unless
    the scan ends first, and the cursor of the rest (None once every server is done).

    ``most`` bounds the COUNT of each SCAN call (the driver's ``scan_count``). A page may hold
    somewhat more than ``limit`` names: SCAN answers with what it finds in the part of the
    table it visits, and what it found cannot be held back for the next page.
    """
    if isinstance(client, RedisCluster):
        return await _cluster_page(client, pattern, limit, cursor, most)
    position = 0 if cursor is None else _position(cursor)
    names: list[bytes] = []
    count = min(limit, most)
    examined = 0
    while True:
        position, found = await client.scan(position, match=pattern, count=count)
        names.extend(cast("list[bytes]", found))
        examined += count
        if position == 0:
            return names, None
        if len(names) >= limit:
            return names, str(position)
        count = _next_count(limit - len(names), examined, len(names), most)


async def _cluster_page(
    client: RedisCluster, pattern: str, limit: int, cursor: str | None, most: int
) -> tuple[list[bytes], str | None]:
    await client.initialize()
    primaries = sorted(client.get_primaries(), key=lambda node: node.name)
    fingerprint = _fingerprint(primaries)
    index, position = 0, 0
    if cursor is not None:
        index, position = _resume(cursor, fingerprint, primaries)
    names: list[bytes] = []
    count = min(limit, most)
    examined = 0
    while True:
        node = primaries[index]
        # A cluster client answers with {node name: position} and the names it found.
        positions, found = cast(
            "tuple[dict[str, int], list[bytes]]",
            await client.scan(position, match=pattern, count=count, target_nodes=node),
        )
        position = int(positions[node.name])
        names.extend(found)
        examined += count
        if position == 0:
            index += 1
            if index == len(primaries):
                return names, None
        if len(names) >= limit:
            return names, f"{fingerprint}/{primaries[index].name}/{position}"
        count = _next_count(limit - len(names), examined, len(names), most)


def _resume(cursor: str, fingerprint: str, primaries: list[ClusterNode]) -> tuple[int, int]:
    """The primary (its index) and SCAN position a cluster cursor names."""
    seen, _, rest = cursor.partition("/")
    name, _, position = rest.rpartition("/")
    if not name:
        raise InvalidArgumentError("not a cursor of this redis cluster listing")
    start = _position(position)
    if seen != fingerprint:
        logger.warning(
            "the cluster's primaries changed during a listing; it starts again from the first "
            "primary, so keys already listed may be listed again"
        )
        return 0, 0
    for index, node in enumerate(primaries):
        if node.name == name:
            return index, start
    raise InvalidArgumentError("not a cursor of this redis cluster listing")
