"""Stats: what it counts, the snapshot's shape, and the Prometheus text it renders."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import pytest

from drivers.memory import MemoryDriver
from storage import Capabilities, ConflictError, DriverError, InvalidArgumentError, create_storage
from storage.layers.stats import DEFAULT_BUCKETS, Stats, render


class _Failing(MemoryDriver):
    """Memory whose async reads fail with OSError while ``down`` (no in-process fast path)."""

    capabilities = Capabilities(ttl=True, conditional=True)

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    async def get_item(self, key: str) -> bytes | None:
        if self.down:
            raise OSError("backend unreachable")
        return await super().get_item(key)


class _Slow(MemoryDriver):
    """Memory whose async writes take ``delay`` seconds."""

    capabilities = Capabilities(ttl=True)

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    async def set_item(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        await asyncio.sleep(self.delay)
        await super().set_item(key, value, ttl=ttl)


@pytest.fixture
async def stats() -> AsyncIterator[Stats]:
    layer = Stats(MemoryDriver())
    yield layer
    await layer.dispose()


def _op(layer: Stats, name: str) -> dict[str, object]:
    found = layer.snapshot()["operations"][name]
    assert isinstance(found, dict)
    return found


async def test_reads_count_hits_misses_and_bytes_on_the_fast_path(stats: Stats) -> None:
    storage = create_storage(stats)
    await storage.set_item("a", "x")
    assert await storage.get_item("a") == "x"
    assert await storage.get_item("missing") is None
    read = _op(stats, "get_item")
    assert (read["calls"], read["hits"], read["misses"], read["bytes_read"]) == (2, 1, 1, 3)
    assert _op(stats, "set_item")["bytes_written"] == 3  # b'"x"'


async def test_batches_count_hits_and_misses_per_key(stats: Stats) -> None:
    storage = create_storage(stats)
    await storage.set_items({"a": 1, "b": 22})
    await storage.get_items(["a", "b", "c"])
    batch = _op(stats, "get_items")
    assert (batch["calls"], batch["hits"], batch["misses"], batch["bytes_read"]) == (1, 2, 1, 3)
    assert _op(stats, "set_items") == {**_op(stats, "set_items"), "calls": 1, "bytes_written": 3}


async def test_has_item_counts_a_hit_when_the_key_exists(stats: Stats) -> None:
    storage = create_storage(stats)
    await storage.set_item("a", 1)
    assert await storage.has_item("a")
    assert not await storage.has_item("b")
    has = _op(stats, "has_item")
    assert (has["hits"], has["misses"], has["bytes_read"]) == (1, 1, 0)


async def test_failures_count_as_calls_and_by_exception_type() -> None:
    inner = _Failing()
    layer = Stats(inner)
    storage = create_storage(layer)
    await storage.set_item("k", 1)
    inner.down = True
    with pytest.raises(DriverError):
        await storage.get_item("k")
    inner.down = False
    assert await storage.get_item("k") == 1
    read = _op(layer, "get_item")
    assert read["calls"] == 2
    assert read["errors"] == {"OSError": 1}
    assert (read["hits"], read["misses"]) == (1, 0)


async def test_a_conflict_is_counted_as_a_conflict_error(stats: Stats) -> None:
    storage = create_storage(stats)
    await storage.set_item("k", 1, if_none_match=True)
    with pytest.raises(ConflictError):
        await storage.set_item("k", 2, if_none_match=True)
    conditional = _op(stats, "set_item_conditional")
    assert conditional["calls"] == 2
    assert conditional["errors"] == {"ConflictError": 1}


async def test_a_cancelled_call_is_not_counted() -> None:
    layer = Stats(_Slow(10.0))
    task = asyncio.create_task(layer.set_item("k", b"v"))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert layer.snapshot()["operations"] == {}


async def test_latency_lands_in_cumulative_buckets() -> None:
    layer = Stats(_Slow(0.02))
    await layer.set_item("k", b"v")
    latency = _op(layer, "set_item")["latency"]
    assert isinstance(latency, dict)
    buckets = latency["buckets"]
    assert list(buckets) == [repr(bound) for bound in DEFAULT_BUCKETS] + ["+Inf"]
    assert buckets["0.01"] == 0  # a 20 ms call is slower than 10 ms ...
    assert buckets["10.0"] == buckets["+Inf"] == latency["count"] == 1  # ... and under 10 s
    counts = list(buckets.values())
    assert counts == sorted(counts)
    assert latency["sum"] >= 0.02


async def test_a_listing_counts_once_even_when_the_caller_stops_early(stats: Stats) -> None:
    storage = create_storage(stats)
    await storage.set_items({"a": 1, "b": 2, "c": 3})
    iterator = stats.iter_keys()
    assert await anext(iterator) in ("a", "b", "c")
    await iterator.aclose()  # type: ignore[attr-defined]
    assert sorted([key async for key in stats.iter_keys()]) == ["a", "b", "c"]
    assert _op(stats, "iter_keys")["calls"] == 2


async def test_the_snapshot_holds_only_operations_called(stats: Stats) -> None:
    await stats.remove_item("k")
    snapshot = stats.snapshot()
    assert snapshot["driver"] == "memory"
    assert list(snapshot["operations"]) == ["remove_item"]
    assert set(snapshot["operations"]["remove_item"]) == {"calls", "errors", "latency"}


async def test_reset_sets_every_counter_back_to_zero(stats: Stats) -> None:
    storage = create_storage(stats)
    await storage.set_item("k", 1)
    await storage.get_item("k")
    stats.reset()
    assert stats.snapshot()["operations"] == {}
    await storage.get_item("k")
    assert _op(stats, "get_item")["hits"] == 1


def test_buckets_must_be_positive_and_increasing() -> None:
    with pytest.raises(InvalidArgumentError):
        Stats(MemoryDriver(), buckets=[0.1, 0.1])
    with pytest.raises(InvalidArgumentError):
        Stats(MemoryDriver(), buckets=[0, 1])
    assert Stats(MemoryDriver(), buckets=[0.5, 2]).buckets == (0.5, 2.0)


# -- Prometheus text ------------------------------------------------------------------------

_SAMPLE = re.compile(
    r'(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)\{(?P<labels>[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
    r'(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*")*)\} (?P<value>\S+)'
)


def _check_exposition(text: str) -> dict[str, str]:
    """Check the text format's rules; return each metric family's type."""
    assert text.endswith("\n")
    types: dict[str, str] = {}
    helped: set[str] = set()
    done: set[str] = set()  # families whose samples have ended
    current = ""
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split(" ", 3)[2]
            assert name not in helped
            helped.add(name)
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert name not in types, f"two TYPE lines for {name}"
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped")
            types[name] = kind
            if current:
                done.add(current)
            current = name
            continue
        match = _SAMPLE.fullmatch(line)
        assert match, line
        family = re.sub(r"_(bucket|sum|count)$", "", match["name"])
        family = family if types.get(family) == "histogram" else match["name"]
        assert family == current, f"{line!r} outside its group"
        assert family not in done, f"{line!r} outside its group"
        float(match["value"])
    return types


def _samples(text: str, name: str) -> dict[str, float]:
    found = {}
    for line in text.splitlines():
        match = _SAMPLE.fullmatch(line)
        if match and match["name"] == name:
            found[match["labels"]] = float(match["value"])
    return found


async def test_prometheus_text_follows_the_exposition_format(stats: Stats) -> None:
    storage = create_storage(stats)
    await storage.set_item("k", 1)
    await storage.get_item("k")
    await storage.get_item("nope")
    text = stats.prometheus()
    types = _check_exposition(text)
    assert types == {
        "unistorage_operations_total": "counter",
        "unistorage_hits_total": "counter",
        "unistorage_misses_total": "counter",
        "unistorage_read_bytes_total": "counter",
        "unistorage_written_bytes_total": "counter",
        "unistorage_errors_total": "counter",
        "unistorage_operation_duration_seconds": "histogram",
    }
    calls = _samples(text, "unistorage_operations_total")
    assert calls['driver="memory",operation="get_item"'] == 2
    buckets = _samples(text, "unistorage_operation_duration_seconds_bucket")
    inf = buckets['driver="memory",operation="get_item",le="+Inf"']
    count = _samples(text, "unistorage_operation_duration_seconds_count")
    assert inf == count['driver="memory",operation="get_item"'] == 2


def test_the_reference_parser_reads_the_text() -> None:
    from prometheus_client import parser  # the reference implementation, a test dependency

    layer = Stats(MemoryDriver())
    layer.set_item_nowait("k", b"v")
    layer.get_item_nowait("k")
    families = {
        family.name: family
        for family in parser.text_string_to_metric_families(layer.prometheus("app"))
    }
    assert families["app_operation_duration_seconds"].type == "histogram"
    assert families["app_operations"].type == "counter"  # the parser drops "_total"
    hits = [s for s in families["app_hits"].samples if s.name == "app_hits_total"]
    assert [(s.labels, s.value) for s in hits] == [
        ({"driver": "memory", "operation": "get_item"}, 1.0)
    ]


async def test_render_shows_several_layers_in_one_group_per_metric() -> None:
    sessions, cache = Stats(MemoryDriver()), Stats(MemoryDriver())
    await sessions.set_item("a", b"1")
    await cache.set_item("b", b"22")
    text = render({"session:": sessions, "cache:": cache}, prefix="app")
    _check_exposition(text)
    written = _samples(text, "app_written_bytes_total")
    assert written == {
        'driver="memory",mount="session:",operation="set_item"': 1,
        'driver="memory",mount="cache:",operation="set_item"': 2,
    }


def test_render_refuses_two_layers_it_cannot_tell_apart() -> None:
    with pytest.raises(InvalidArgumentError, match="mapping"):
        render([Stats(MemoryDriver()), Stats(MemoryDriver())])


def test_render_refuses_a_prefix_that_is_no_metric_name() -> None:
    with pytest.raises(InvalidArgumentError):
        render([], prefix="my-app")


def test_label_values_are_escaped() -> None:
    class Odd(MemoryDriver):
        name = 'a"b\\c\nd'

    layer = Stats(Odd())
    layer.get_item_nowait("k")
    text = layer.prometheus()
    _check_exposition(text)
    assert 'driver="a\\"b\\\\c\\nd"' in text


async def test_errors_are_labelled_by_exception_type() -> None:
    inner = _Failing()
    inner.down = True
    layer = Stats(inner)
    with pytest.raises(OSError, match="unreachable"):
        await layer.get_item("k")
    errors = _samples(layer.prometheus(), "unistorage_errors_total")
    assert errors == {'driver="memory",operation="get_item",error="OSError"': 1}
