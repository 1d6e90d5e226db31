"""`Stats`: counts, hits and misses, errors, bytes and latency histograms per driver operation.

Each call costs one ``time.perf_counter()`` pair, a bisection into the fixed bucket bounds and
a few integer increments. The counters are plain attributes, updated between two awaits, so
the layer needs no lock as long as one event loop uses it (the usual case). A driver shared by
several threads, each running its own loop, would have its counts raced (never corrupted, but
an increment may be lost): give each loop its own `Stats`.

Several `Stats` (one per mount, say) render as one Prometheus exposition with `render`;
`Stats.prometheus` is `render` of the one layer.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left
from collections.abc import AsyncIterator, Awaitable, Iterable, Mapping, Sequence
from itertools import pairwise
from time import perf_counter
from typing import Any, TypeVar

from ..driver import Driver
from ..errors import InvalidArgumentError
from ..layer import Layer
from ._stats_counters import Counters
from ._stats_prometheus import Series, exposition

__all__ = ["DEFAULT_BUCKETS", "PROMETHEUS_CONTENT_TYPE", "Stats", "render"]

#: Upper bounds (seconds) of the latency buckets: from 10 µs (an in-process hit) to 10 s (a
#: backend about to time out).
DEFAULT_BUCKETS: tuple[float, ...] = (
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005,
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip

#: The ``Content-Type`` of what `render` returns (Prometheus text format 0.0.4).
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")

# Which counters an operation keeps besides calls, errors and latency.
_T = TypeVar("_T")

_READS = (
    "get_item", "get_item_with_etag", "has_item", "get_items", "get_user_meta", "get_user_metas",
    "get_item_touch",
)  # fmt: skip
_WRITES = ("set_item", "set_item_conditional", "set_items", "set_user_meta")
_OTHERS = (
    "remove_item", "remove_items", "remove_user_meta", "clear", "iter_keys", "get_keys", "get_meta",
    "remove_item_conditional", "increment", "touch", "list_page", "read_chunks", "write_chunks",
    "get_url",
)  # fmt: skip


class Stats(Layer):
    """Counts every call to ``inner``: calls, errors by exception type, latency, and for reads
    hits, misses and bytes read, for writes bytes written.

    A failed call counts as a call, in the latency histogram and under its exception's type
    name; a cancelled one is not counted. Latency is the time spent in the inner driver
    (for ``iter_keys``, summed over the keys it yields). In-process fast calls
    (``get_item_nowait``, ``set_item_nowait``) count as ``get_item`` and ``set_item``.

    ``buckets``: the latency buckets' upper bounds in seconds, increasing (default
    `DEFAULT_BUCKETS`); a ``+Inf`` bucket is always added.
    """

    layer_name = "stats"

    def __init__(self, inner: Driver, *, buckets: Sequence[float] = DEFAULT_BUCKETS) -> None:
        super().__init__(inner)
        bounds = tuple(float(bound) for bound in buckets)
        if not bounds or any(not math.isfinite(b) or b <= 0 for b in bounds):
            raise InvalidArgumentError(f"buckets are positive finite seconds, not {buckets!r}")
        if any(a >= b for a, b in pairwise(bounds)):
            raise InvalidArgumentError(f"buckets must increase, not {buckets!r}")
        self.buckets = bounds
        self._ops: dict[str, Counters] = {}
        for kind, names in (("read", _READS), ("write", _WRITES), ("other", _OTHERS)):
            for name in names:
                self._ops[name] = Counters(kind, bounds)
        ops = self._ops
        self._get, self._set, self._has = ops["get_item"], ops["set_item"], ops["has_item"]

    # -- reading the numbers ------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The numbers so far, as plain data (the shape is in docs/layers-operations.md).

        ``{"driver": inner.name, "operations": {name: {...}}}``, only operations called at
        least once; each has ``calls``, ``errors`` ({type name: count}) and ``latency``
        (``count``, ``sum`` in seconds, cumulative ``buckets`` keyed by upper bound as
        Prometheus writes it, ``"+Inf"`` last); reads add ``hits``, ``misses``,
        ``bytes_read``; writes add ``bytes_written``.
        """
        return {
            "driver": self.inner.name,
            "operations": {name: op.snapshot() for name, op in self._ops.items() if any(op.counts)},
        }

    def prometheus(self, prefix: str = "unistorage") -> str:
        """This layer's numbers in Prometheus text format (`render` of this layer alone).

        ``prefix``: the start of every metric name.
        """
        return render([self], prefix=prefix)

    def reset(self) -> None:
        """Set every counter back to zero."""
        for op in self._ops.values():
            op.reset()

    # -- items --------------------------------------------------------------------------------

    async def get_item(self, key: str) -> bytes | None:
        start = perf_counter()
        try:
            value = await self.inner.get_item(key)
        except Exception as exc:
            self._get.failed(perf_counter() - start, exc)
            raise
        self._get.read(perf_counter() - start, value)
        return value

    def get_item_nowait(self, key: str) -> bytes | None:
        start = perf_counter()
        try:
            value = self.inner.get_item_nowait(key)
        except Exception as exc:
            self._get.failed(perf_counter() - start, exc)
            raise
        elapsed = perf_counter() - start
        # `Counters.read` inlined: on an in-process driver the call would cost as much.
        op = self._get
        op.counts[bisect_left(op.bounds, elapsed)] += 1
        op.seconds += elapsed
        if value is None:
            op.misses += 1
        else:
            op.hits += 1
            op.bytes += len(value)
        return value

    async def set_item(self, key: str, value: bytes, *, ttl: float | None = None) -> str | None:
        start = perf_counter()
        try:
            etag = await self.inner.set_item(key, value, ttl=ttl)
        except Exception as exc:
            self._set.failed(perf_counter() - start, exc)
            raise
        self._set.wrote(perf_counter() - start, len(value))
        return etag

    def set_item_nowait(self, key: str, value: bytes) -> str | None:
        start = perf_counter()
        try:
            etag = self.inner.set_item_nowait(key, value)
        except Exception as exc:
            self._set.failed(perf_counter() - start, exc)
            raise
        elapsed = perf_counter() - start
        op = self._set
        op.counts[bisect_left(op.bounds, elapsed)] += 1
        op.seconds += elapsed
        op.bytes += len(value)
        return etag

    async def _observed(self, name: str, call: Awaitable[_T]) -> _T:
        op, start = self._ops[name], perf_counter()
        try:
            result = await call
        except Exception as exc:
            op.failed(perf_counter() - start, exc)
            raise
        op.observe(perf_counter() - start)
        return result

    async def remove_item_conditional(self, key: str, *, if_match: str) -> None:
        await self._observed(
            "remove_item_conditional", self.inner.remove_item_conditional(key, if_match=if_match)
        )

    async def increment(self, key: str, by: int, *, ttl: float | None = None) -> int:
        return await self._observed("increment", self.inner.increment(key, by, ttl=ttl))

    async def touch(self, key: str, ttl: float) -> bool:
        return await self._observed("touch", self.inner.touch(key, ttl))

    async def get_item_touch(self, key: str, ttl: float) -> bytes | None:
        op, start = self._ops["get_item_touch"], perf_counter()
        try:
            value = await self.inner.get_item_touch(key, ttl)
        except Exception as exc:
            op.failed(perf_counter() - start, exc)
            raise
        op.read(perf_counter() - start, value)
        return value

    async def list_page(
        self,
        base: str = "",
        *,
        limit: int,
        cursor: str | None = None,
        max_depth: int | None = None,
    ) -> tuple[list[str], str | None]:
        return await self._observed(
            "list_page",
            self.inner.list_page(base, limit=limit, cursor=cursor, max_depth=max_depth),
        )

    async def read_chunks(self, key: str, chunk_size: int) -> AsyncIterator[bytes] | None:
        return await self._observed("read_chunks", self.inner.read_chunks(key, chunk_size))

    async def write_chunks(
        self, key: str, chunks: AsyncIterator[bytes], *, ttl: float | None = None
    ) -> str | None:
        return await self._observed("write_chunks", self.inner.write_chunks(key, chunks, ttl=ttl))

    async def get_url(self, key: str, *, expires: float, method: str = "GET") -> str:
        return await self._observed(
            "get_url", self.inner.get_url(key, expires=expires, method=method)
        )

    async def has_item(self, key: str) -> bool:
        start = perf_counter()
        try:
            found = await self.inner.has_item(key)
        except Exception as exc:
            self._has.failed(perf_counter() - start, exc)
            raise
        self._has.read(perf_counter() - start, b"" if found else None)
        return found

    async def get_item_with_etag(self, key: str) -> tuple[bytes | None, str | None]:
        op, start = self._ops["get_item_with_etag"], perf_counter()
        try:
            found = await self.inner.get_item_with_etag(key)
        except Exception as exc:
            op.failed(perf_counter() - start, exc)
            raise
        op.read(perf_counter() - start, found[0])
        return found

    async def set_item_conditional(
        self,
        key: str,
        value: bytes,
        *,
        ttl: float | None = None,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str | None:
        op, start = self._ops["set_item_conditional"], perf_counter()
        try:
            etag = await self.inner.set_item_conditional(
                key, value, ttl=ttl, if_match=if_match, if_none_match=if_none_match
            )
        except Exception as exc:
            op.failed(perf_counter() - start, exc)
            raise
        op.wrote(perf_counter() - start, len(value))
        return etag

    async def remove_item(self, key: str) -> None:
        op, start = self._ops["remove_item"], perf_counter()
        try:
            await self.inner.remove_item(key)
        except Exception as exc:
            op.failed(perf_counter() - start, exc)
            raise
        op.observe(perf_counter() - start)

    # -- batches ------------------------------------------------------------------------------

    async def get_items(self, keys: Sequence[str]) -> list[bytes | None]:
        op, start = self._ops["get_items"], perf_counter()
        try:
            values = await self.inner.get_items(keys)
        except Exception as exc:
            op.failed(perf_counter() - start, exc)
            raise
        op.observe(perf_counter() - start)
        op.batch(values)
        return values

    async def set_items(
        self, items: Sequence[tuple[str, bytes]], *, ttl: float | None = None
    ) -> None:
        op, start = self._ops["set_items"], perf_counter()
        try:
            await self.inner.set_items(items, ttl=ttl)
        except Exception as exc:
            op.failed(perf_counter() - start, exc)
            raise
        op.wrote(perf_counter() - start, sum(len(value) for _, value in items))

    async def remove_items(self, keys: Sequence[str]) -> None:
        op, start = self._ops["remove_items"], perf_counter()
        try:
            await self.inner.remove_items(keys)
        except Exception as exc:
            op.failed(perf_counter() - start, exc)
            raise
        op.observe(perf_counter() - start)

    # -- listing ------------------------------------------------------------------------------

    def iter_keys(self, base: str = "", *, max_depth: int | None = None) -> AsyncIterator[str]:
        return self._iter_keys(base, max_depth)

    async def _iter_keys(self, base: str, max_depth: int | None) -> AsyncIterator[str]:
        op, spent = self._ops["iter_keys"], 0.0
        start = perf_counter()
        try:
            iterator = self.inner.iter_keys(base, max_depth=max_depth)
            while True:
                try:
                    key = await anext(iterator)
                except StopAsyncIteration:
                    break
                spent += perf_counter() - start
                yield key
                start = perf_counter()
        except Exception as exc:
            op.failed(spent + perf_counter() - start, exc)
            raise
        except GeneratorExit:  # the caller stopped early: the listing still happened
            op.observe(spent)
            raise
        op.observe(spent + perf_counter() - start)

    async def get_keys(self, base: str = "", *, max_depth: int | None = None) -> list[str]:
        op, start = self._ops["get_keys"], perf_counter()
        try:
            keys = await self.inner.get_keys(base, max_depth=max_depth)
        except Exception as exc:
            op.failed(perf_counter() - start, exc)
            raise
        op.observe(perf_counter() - start)
        return keys

    async def clear(self, base: str = "") -> None:
        op, start = self._ops["clear"], perf_counter()
        try:
            await self.inner.clear(base)
        except Exception as exc:
            op.failed(perf_counter() - start, exc)
            raise
        op.observe(perf_counter() - start)

    # -- meta ---------------------------------------------------------------------------------

    async def get_meta(self, key: str) -> dict[str, Any]:
        op, start = self._ops["get_meta"], perf_counter()
        try:
            meta = await self.inner.get_meta(key)
        except Exception as exc:
            op.failed(perf_counter() - start, exc)
            raise
        op.observe(perf_counter() - start)
        return meta

    async def get_user_meta(self, key: str) -> bytes | None:
        op, start = self._ops["get_user_meta"], perf_counter()
        try:
            data = await self.inner.get_user_meta(key)
        except Exception as exc:
            op.failed(perf_counter() - start, exc)
            raise
        op.read(perf_counter() - start, data)
        return data

    async def get_user_metas(self, keys: Sequence[str]) -> list[bytes | None]:
        op, start = self._ops["get_user_metas"], perf_counter()
        try:
            found = await self.inner.get_user_metas(keys)
        except Exception as exc:
            op.failed(perf_counter() - start, exc)
            raise
        op.observe(perf_counter() - start)
        op.batch(found)
        return found

    async def set_user_meta(self, key: str, data: bytes) -> None:
        op, start = self._ops["set_user_meta"], perf_counter()
        try:
            await self.inner.set_user_meta(key, data)
        except Exception as exc:
            op.failed(perf_counter() - start, exc)
            raise
        op.wrote(perf_counter() - start, len(data))

    async def remove_user_meta(self, key: str) -> None:
        op, start = self._ops["remove_user_meta"], perf_counter()
        try:
            await self.inner.remove_user_meta(key)
        except Exception as exc:
            op.failed(perf_counter() - start, exc)
            raise
        op.observe(perf_counter() - start)


def render(layers: Iterable[Stats] | Mapping[str, Stats], *, prefix: str = "unistorage") -> str:
    """Several `Stats` layers as one Prometheus text exposition (one HELP/TYPE per metric).

    ``layers``: the layers to show; each series is labelled ``driver`` (the inner driver's
    name) and ``operation``. A mapping also labels each layer's series with ``mount`` (its
    key, typically the mount base), which tells apart two layers over drivers of one name;
    without it such layers are refused. ``prefix`` starts every metric name.
    """
    if not _NAME.fullmatch(prefix):
        raise InvalidArgumentError(f"{prefix!r} is not a Prometheus metric name prefix")
    if isinstance(layers, Mapping):
        labelled = [({"mount": str(mount)}, layer) for mount, layer in layers.items()]
    else:
        labelled = [({}, layer) for layer in layers]
    series: list[Series] = []
    seen: set[tuple[tuple[str, str], ...]] = set()
    for extra, layer in labelled:
        if not isinstance(layer, Stats):
            raise InvalidArgumentError(f"render shows Stats layers, not {layer!r}")
        labels = {"driver": layer.inner.name, **extra}
        identity = tuple(sorted(labels.items()))
        if identity in seen:
            raise InvalidArgumentError(
                f"two Stats layers have the labels {labels}; pass a mapping of mount -> layer"
            )
        seen.add(identity)
        series.append((labels, layer.snapshot()["operations"]))
    return exposition(series, prefix)
