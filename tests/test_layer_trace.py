"""Trace: one span per driver operation, recorded through the OpenTelemetry SDK's exporter."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import NoOpTracer, SpanKind, StatusCode, Tracer

from drivers.memory import MemoryDriver
from storage import Capabilities, DriverError, Storage, create_storage
from storage.layers.trace import Trace

_ROOT = Path(__file__).resolve().parent.parent


class _Exporter:
    """A tracer whose finished spans can be read back."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("test")

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def names(self) -> list[str]:
        return [span.name for span in self.spans()]


class _Broken(MemoryDriver):
    """Memory whose reads fail with an error that names the key (as file errors do)."""

    capabilities = Capabilities(ttl=True)

    async def get_item(self, key: str) -> bytes | None:
        raise OSError(f"cannot open /data/{key}")


@pytest.fixture
def otel() -> _Exporter:
    return _Exporter()


@pytest.fixture
async def traced(otel: _Exporter) -> AsyncIterator[Storage]:
    storage = create_storage(Trace(MemoryDriver(), tracer=otel.tracer))
    yield storage
    await storage.dispose()


async def test_every_operation_gets_a_span_named_after_it(traced: Storage, otel: _Exporter) -> None:
    await traced.set_item("user:1", {"name": "Ada"})
    await traced.get_item("user:1")
    await traced.remove_item("user:1")
    assert otel.names() == ["unistorage.set_item", "unistorage.get_item", "unistorage.remove_item"]
    span = otel.spans()[1]
    assert span.kind is SpanKind.CLIENT
    assert span.status.status_code is StatusCode.UNSET
    assert dict(span.attributes or {}) == {
        "unistorage.operation": "get_item",
        "unistorage.driver": "memory",
    }


async def test_batches_record_how_many_keys(traced: Storage, otel: _Exporter) -> None:
    await traced.set_items({"a": 1, "b": 2, "c": 3})
    await traced.get_items(["a", "b"])
    counts = {
        span.name: (span.attributes or {}).get("unistorage.key_count") for span in otel.spans()
    }
    assert counts == {"unistorage.set_items": 3, "unistorage.get_items": 2}


async def test_listing_and_clearing_record_the_base(traced: Storage, otel: _Exporter) -> None:
    await traced.set_item("cart:1", 1)
    await traced.get_keys("cart")
    await traced.clear("cart")
    bases = {span.name: (span.attributes or {}).get("unistorage.base") for span in otel.spans()}
    assert bases["unistorage.get_keys"] == "cart:"
    assert bases["unistorage.clear"] == "cart:"


async def test_neither_keys_nor_values_are_recorded_by_default(
    traced: Storage, otel: _Exporter
) -> None:
    await traced.set_item("secret-key", "secret-value")
    await traced.get_items(["secret-key"])
    await traced.get_keys("secret-key")
    for span in otel.spans():
        shown = repr(dict(span.attributes or {})) + repr(span.events)
        assert "secret-value" not in shown
        if span.name != "unistorage.get_keys":  # a base is recorded; it is not a key
            assert "secret-key" not in shown


async def test_record_keys_records_the_keys(otel: _Exporter) -> None:
    layer = Trace(MemoryDriver(), tracer=otel.tracer, record_keys=True)
    await layer.set_item("k1", b"v")
    await layer.get_items(["k1", "k2"])
    single, batch = otel.spans()
    assert (single.attributes or {})["unistorage.key"] == "k1"
    assert tuple((batch.attributes or {})["unistorage.keys"]) == ("k1", "k2")  # type: ignore[arg-type]


async def test_an_error_is_recorded_on_the_span_and_re_raised(otel: _Exporter) -> None:
    storage = create_storage(Trace(_Broken(), tracer=otel.tracer))
    with pytest.raises(DriverError, match="cannot open"):
        await storage.get_item("alice@example.com")
    (span,) = otel.spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "OSError"
    (event,) = span.events
    assert event.name == "exception"
    assert (event.attributes or {})["exception.type"] == "builtins.OSError"
    # The message names the key: it is left out unless keys may be recorded.
    assert "alice" not in repr(dict(event.attributes or {}))


async def test_with_record_keys_the_error_message_is_recorded(otel: _Exporter) -> None:
    layer = Trace(_Broken(), tracer=otel.tracer, record_keys=True)
    with pytest.raises(OSError, match="cannot open"):
        await layer.get_item("alice")
    (span,) = otel.spans()
    assert span.status.description == "OSError: cannot open /data/alice"
    assert (span.events[0].attributes or {})["exception.message"] == "cannot open /data/alice"


async def test_spans_are_children_of_the_callers_span(traced: Storage, otel: _Exporter) -> None:
    with otel.tracer.start_as_current_span("request") as request:
        await traced.get_item("k")
    child = otel.spans()[0]
    assert child.parent is not None
    assert child.parent.span_id == request.get_span_context().span_id


async def test_a_listing_is_one_span_that_never_parents_the_callers_work(
    traced: Storage, otel: _Exporter
) -> None:
    await traced.set_items({"a": 1, "b": 2})
    otel.exporter.clear()
    async for _ in traced.iter_keys():
        with otel.tracer.start_as_current_span("caller-work"):
            pass
    listing = [span for span in otel.spans() if span.name == "unistorage.iter_keys"]
    assert len(listing) == 1
    assert (listing[0].attributes or {})["unistorage.base"] == ""
    for span in otel.spans():
        if span.name == "caller-work":
            assert span.parent is None


async def test_a_listing_stopped_early_still_ends_its_span(otel: _Exporter) -> None:
    layer = Trace(MemoryDriver(), tracer=otel.tracer)
    await layer.set_items([("a", b"1"), ("b", b"2")])
    iterator = layer.iter_keys()
    await anext(iterator)
    await iterator.aclose()  # type: ignore[attr-defined]
    listing = otel.spans()[-1]
    assert listing.name == "unistorage.iter_keys"
    assert listing.status.status_code is StatusCode.UNSET


async def test_in_process_fast_calls_are_traced_too(otel: _Exporter) -> None:
    layer = Trace(MemoryDriver(), tracer=otel.tracer)
    assert layer.capabilities.nowait
    storage = create_storage(layer)
    await storage.set_item("k", 1)
    assert await storage.get_item("k") == 1
    assert otel.names() == ["unistorage.set_item", "unistorage.get_item"]


_WITHOUT_OTEL = """
    import asyncio, sys
    sys.modules["opentelemetry"] = None  # as if the otel extra were not installed
    from drivers.memory import MemoryDriver
    from storage import InvalidArgumentError, create_storage
    from storage.layers.trace import Trace

    async def main():
        inner = MemoryDriver()
        layer = Trace(inner)
        assert layer.tracer is None
        storage = create_storage(layer)
        await storage.set_item("k", 1)
        await storage.set_item("t", 2, ttl=60)
        assert await storage.get_item("k") == 1
        assert await storage.get_keys() == ["k", "t"]
        # iter_keys hands out the inner driver's own iterator: no wrapper in between.
        assert layer.iter_keys().__qualname__ == "MemoryDriver.iter_keys"
        try:
            Trace(inner, tracer=object())
        except InvalidArgumentError:
            pass
        else:
            raise AssertionError("a tracer without opentelemetry was accepted")
        assert not any(name.startswith("opentelemetry.") for name in sys.modules)
        print("ok")

    asyncio.run(main())
"""


def test_without_opentelemetry_the_layer_forwards_every_call() -> None:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_WITHOUT_OTEL)],
        cwd=_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


@pytest.mark.parametrize(
    "tracer",
    [NoOpTracer(), TracerProvider(sampler=ALWAYS_OFF).get_tracer("off")],
    ids=["api-without-sdk", "sampled-out"],
)
async def test_spans_that_record_nothing_leave_calls_working(tracer: Tracer) -> None:
    storage = create_storage(Trace(_Broken(), tracer=tracer))
    await storage.set_item("k", 1)
    assert await storage.get_keys() == ["k"]
    with pytest.raises(DriverError, match="cannot open"):
        await storage.get_item("k")
