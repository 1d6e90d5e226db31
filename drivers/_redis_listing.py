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


class _Density:
    """How many of the keys SCAN visits match, as seen so far in one page: it sets the COUNT
    of the next call, so that a base holding few of a server's keys takes a few round trips
    rather than one per few keys, and a dense one pages about ``limit`` keys at a time.

    Only calls that did not end a server's scan are counted: the last one visits just the
    table's tail, whatever its COUNT.
    """

    __slots__ = ("_asked", "_found", "_most")

    def __init__(self, most: int) -> None:
        self._most = most
        self._asked = 0
        self._found = 0

    def saw(self, asked: int, found: int) -> None:
        """Record one SCAN call that asked for ``asked`` and matched ``found`` keys."""
        self._asked += asked
        self._found += found

    def count(self, remaining: int) -> int:
        """The COUNT that should match about ``remaining`` keys: at least ``remaining``, ten
        times what was asked while nothing matched, at most ``most``."""
        if not self._asked:
            wanted = remaining
        elif not self._found:
            wanted = self._asked * 10
        else:
            wanted = math.ceil(remaining * self._asked / self._found)
        return max(1, min(self._most, max(remaining, wanted)))


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
    density = _Density(most)
    count = density.count(limit)
    while True:
        position, found = await client.scan(position, match=pattern, count=count)
        names.extend(cast("list[bytes]", found))
        if position == 0:
            return names, None
        if len(names) >= limit:
            return names, str(position)
        density.saw(count, len(found))
        count = density.count(limit - len(names))


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
    density = _Density(most)
    count = density.count(limit)
    while True:
        node = primaries[index]
        # A cluster client answers with {node name: position} and the names it found.
        positions, found = cast(
            "tuple[dict[str, int], list[bytes]]",
            await client.scan(position, match=pattern, count=count, target_nodes=node),
        )
        position = int(positions[node.name])
        names.extend(found)
        if position == 0:
            index += 1
            if index == len(primaries):
                return names, None
        else:
            density.saw(count, len(found))
        if len(names) >= limit:
            return names, f"{fingerprint}/{primaries[index].name}/{position}"
        count = density.count(limit - len(names))


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
