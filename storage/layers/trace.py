"""`Trace`: an OpenTelemetry span around every driver operation.

Needs ``opentelemetry-api`` (the ``otel`` extra). Without it the layer forwards every call as
the bare `storage.Layer` does, after one ``is None`` test: no span, no wrapper around
``iter_keys``, nothing imported.
"""

from __future__ import annotations

import traceback
from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import AbstractContextManager, nullcontext
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from ..driver import Driver
from ..errors import InvalidArgumentError
from ..layer import Layer

try:
    from opentelemetry import context as _context
    from opentelemetry import trace as _otel
except ImportError:  # the otel extra is not installed
    _otel = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer

_T = TypeVar("_T")
__all__ = ["Trace"]

#: With ``record_keys``, how many keys of a batch a span names.
MAX_RECORDED_KEYS = 100

_NO_SPAN = nullcontext()


class _Scope:
    """Makes ``span`` current for one call, records the call's failure on it, and ends it.

    A class, not a generator context manager: it is entered on every traced call.
    """

    __slots__ = ("layer", "span", "token")

    def __init__(self, layer: Trace, span: Span) -> None:
        self.layer = layer
        self.span = span

    def __enter__(self) -> Span:
        self.token = _context.attach(_otel.set_span_in_context(self.span))
        return self.span

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if isinstance(exc, Exception):
                self.layer.record_error(self.span, exc)
        finally:
            _context.detach(self.token)
            self.span.end()


class Trace(Layer):
    """One span per call to ``inner``, named ``unistorage.<operation>`` (kind CLIENT).

    Attributes: ``unistorage.operation``, ``unistorage.driver`` (the inner stack's name,
    ``retry(redis)``), ``unistorage.key_count`` for batches and ``unistorage.base`` for
    listing and clearing. Values are never recorded. An exception is recorded on the span
    (status ERROR and an ``exception`` event) and re-raised unchanged.

    ``tracer``: the OpenTelemetry tracer to use (default: ``get_tracer("unistorage")`` of the
    global provider). ``record_keys``: also record ``unistorage.key`` (and
    ``unistorage.keys``, at most `MAX_RECORDED_KEYS` of a batch) and exception messages, which
    name keys. Off by default: keys often hold user names, e-mail addresses or tokens, and spans
    leave the process for a tracing backend with its own readers and retention.
    """

    layer_name = "trace"

    def __init__(
        self, inner: Driver, *, tracer: Tracer | None = None, record_keys: bool = False
    ) -> None:
        super().__init__(inner)
        if _otel is None and tracer is not None:
            raise InvalidArgumentError("a tracer needs opentelemetry-api (the otel extra)")
        if tracer is None and _otel is not None:
            tracer = _otel.get_tracer("unistorage")
        self.tracer = tracer
        self.record_keys = record_keys

    def _span(
        self,
        operation: str,
        *,
        key: str | None = None,
        keys: Sequence[str] | None = None,
        base: str | None = None,
    ) -> AbstractContextManager[object]:
        """The span of one call, to be entered around it: current while the call runs."""
        assert self.tracer is not None
        assert _otel is not None
        attributes: dict[str, Any] = {
            "unistorage.operation": operation,
            "unistorage.driver": self.inner.name,
        }
        if keys is not None:
            attributes["unistorage.key_count"] = len(keys)
        if base is not None:
            attributes["unistorage.base"] = base
        if self.record_keys:
            if key is not None:
                attributes["unistorage.key"] = key
            if keys is not None:
                attributes["unistorage.keys"] = list(keys[:MAX_RECORDED_KEYS])
        span = self.tracer.start_span(
            f"unistorage.{operation}", kind=_otel.SpanKind.CLIENT, attributes=attributes
        )
        if not span.get_span_context().is_valid:
            return _NO_SPAN  # the API without an SDK: nothing is recorded, nothing to pass on
        return _Scope(self, span)

    def record_error(self, span: Span, exc: Exception) -> None:
        """Mark ``span`` failed by ``exc``: status ERROR and an ``exception`` event, which
        holds the message only with ``record_keys`` (messages name keys)."""
        assert _otel is not None
        kind = type(exc).__qualname__
        if self.record_keys:
            span.record_exception(exc, escaped=True)
            span.set_status(_otel.Status(_otel.StatusCode.ERROR, f"{kind}: {exc}"))
            return
        # Messages of storage errors (and of file or network errors) name keys: frames only.
        frames = "".join(traceback.format_tb(exc.__traceback__))
        span.add_event(
            "exception",
            {"exception.type": f"{type(exc).__module__}.{kind}", "exception.stacktrace": frames},
        )
        span.set_status(_otel.Status(_otel.StatusCode.ERROR, kind))

    # -- items --------------------------------------------------------------------------------

    async def get_item(self, key: str) -> bytes | None:
        if self.tracer is None:
            return await self.inner.get_item(key)
        with self._span("get_item", key=key):
            return await self.inner.get_item(key)

    def get_item_nowait(self, key: str) -> bytes | None:
        if self.tracer is None:
            return self.inner.get_item_nowait(key)
        with self._span("get_item", key=key):
            return self.inner.get_item_nowait(key)

    async def set_item(self, key: str, value: bytes, *, ttl: float | None = None) -> str | None:
        if self.tracer is None:
            return await self.inner.set_item(key, value, ttl=ttl)
        with self._span("set_item", key=key):
            return await self.inner.set_item(key, value, ttl=ttl)

    def set_item_nowait(self, key: str, value: bytes) -> str | None:
        if self.tracer is None:
            return self.inner.set_item_nowait(key, value)
        with self._span("set_item", key=key):
            return self.inner.set_item_nowait(key, value)

    async def _traced(self, operation: str, key: str | None, call: Awaitable[_T]) -> _T:
        if self.tracer is None:
            return await call
        with self._span(operation, key=key):
            return await call

    async def remove_item_conditional(self, key: str, *, if_match: str) -> None:
        call = self.inner.remove_item_conditional(key, if_match=if_match)
        await self._traced("remove_item_conditional", key, call)

    async def increment(self, key: str, by: int, *, ttl: float | None = None) -> int:
        return await self._traced("increment", key, self.inner.increment(key, by, ttl=ttl))

    async def touch(self, key: str, ttl: float) -> bool:
        return await self._traced("touch", key, self.inner.touch(key, ttl))

    async def get_item_touch(self, key: str, ttl: float) -> bytes | None:
        return await self._traced("get_item_touch", key, self.inner.get_item_touch(key, ttl))

    async def list_page(
        self,
        base: str = "",
        *,
        limit: int,
        cursor: str | None = None,
        max_depth: int | None = None,
    ) -> tuple[list[str], str | None]:
        call = self.inner.list_page(base, limit=limit, cursor=cursor, max_depth=max_depth)
        if self.tracer is None:
            return await call
        with self._span("list_page", base=base):
            return await call

    async def read_chunks(self, key: str, chunk_size: int) -> AsyncIterator[bytes] | None:
        return await self._traced("read_chunks", key, self.inner.read_chunks(key, chunk_size))

    async def write_chunks(
        self, key: str, chunks: AsyncIterator[bytes], *, ttl: float | None = None
    ) -> str | None:
        call = self.inner.write_chunks(key, chunks, ttl=ttl)
        return await self._traced("write_chunks", key, call)

    async def get_url(self, key: str, *, expires: float, method: str = "GET") -> str:
        call = self.inner.get_url(key, expires=expires, method=method)
        return await self._traced("get_url", key, call)

    async def remove_item(self, key: str) -> None:
        if self.tracer is None:
            return await self.inner.remove_item(key)
        with self._span("remove_item", key=key):
            await self.inner.remove_item(key)

    async def has_item(self, key: str) -> bool:
        if self.tracer is None:
            return await self.inner.has_item(key)
        with self._span("has_item", key=key):
            return await self.inner.has_item(key)

    async def get_item_with_etag(self, key: str) -> tuple[bytes | None, str | None]:
        if self.tracer is None:
            return await self.inner.get_item_with_etag(key)
        with self._span("get_item_with_etag", key=key):
            return await self.inner.get_item_with_etag(key)

    async def set_item_conditional(
        self,
        key: str,
        value: bytes,
        *,
        ttl: float | None = None,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str | None:
        if self.tracer is None:
            return await self.inner.set_item_conditional(
                key, value, ttl=ttl, if_match=if_match, if_none_match=if_none_match
            )
        with self._span("set_item_conditional", key=key):
            return await self.inner.set_item_conditional(
                key, value, ttl=ttl, if_match=if_match, if_none_match=if_none_match
            )

    # -- batches ------------------------------------------------------------------------------

    async def get_items(self, keys: Sequence[str]) -> list[bytes | None]:
        if self.tracer is None:
            return await self.inner.get_items(keys)
        with self._span("get_items", keys=keys):
            return await self.inner.get_items(keys)

    async def set_items(
        self, items: Sequence[tuple[str, bytes]], *, ttl: float | None = None
    ) -> None:
        if self.tracer is None:
            return await self.inner.set_items(items, ttl=ttl)
        with self._span("set_items", keys=[key for key, _ in items]):
            await self.inner.set_items(items, ttl=ttl)

    async def remove_items(self, keys: Sequence[str]) -> None:
        if self.tracer is None:
            return await self.inner.remove_items(keys)
        with self._span("remove_items", keys=keys):
            await self.inner.remove_items(keys)

    # -- listing ------------------------------------------------------------------------------

    def iter_keys(self, base: str = "", *, max_depth: int | None = None) -> AsyncIterator[str]:
        if self.tracer is None:
            return self.inner.iter_keys(base, max_depth=max_depth)
        return self._iter_keys(base, max_depth)

    async def _iter_keys(self, base: str, max_depth: int | None) -> AsyncIterator[str]:
        # One span for the whole listing, current only while the inner driver runs: a span
        # left current across a yield would become the parent of the caller's own spans.
        assert self.tracer is not None
        assert _otel is not None
        span = self.tracer.start_span(
            "unistorage.iter_keys",
            kind=_otel.SpanKind.CLIENT,
            attributes={
                "unistorage.operation": "iter_keys",
                "unistorage.driver": self.inner.name,
                "unistorage.base": base,
            },
        )
        try:
            iterator = self.inner.iter_keys(base, max_depth=max_depth)
            while True:
                token = _context.attach(_otel.set_span_in_context(span))
                try:
                    key = await anext(iterator)
                except StopAsyncIteration:
                    break
                finally:
                    _context.detach(token)
                yield key
        except Exception as exc:
            self.record_error(span, exc)
            raise
        finally:
            span.end()

    async def get_keys(self, base: str = "", *, max_depth: int | None = None) -> list[str]:
        if self.tracer is None:
            return await self.inner.get_keys(base, max_depth=max_depth)
        with self._span("get_keys", base=base):
            return await self.inner.get_keys(base, max_depth=max_depth)

    async def clear(self, base: str = "") -> None:
        if self.tracer is None:
            return await self.inner.clear(base)
        with self._span("clear", base=base):
            await self.inner.clear(base)

    # -- meta ---------------------------------------------------------------------------------

    async def get_meta(self, key: str) -> dict[str, Any]:
        if self.tracer is None:
            return await self.inner.get_meta(key)
        with self._span("get_meta", key=key):
            return await self.inner.get_meta(key)

    async def get_user_meta(self, key: str) -> bytes | None:
        if self.tracer is None:
            return await self.inner.get_user_meta(key)
        with self._span("get_user_meta", key=key):
            return await self.inner.get_user_meta(key)

    async def get_user_metas(self, keys: Sequence[str]) -> list[bytes | None]:
        if self.tracer is None:
            return await self.inner.get_user_metas(keys)
        with self._span("get_user_metas", keys=keys):
            return await self.inner.get_user_metas(keys)

    async def set_user_meta(self, key: str, data: bytes) -> None:
        if self.tracer is None:
            return await self.inner.set_user_meta(key, data)
        with self._span("set_user_meta", key=key):
            await self.inner.set_user_meta(key, data)

    async def remove_user_meta(self, key: str) -> None:
        if self.tracer is None:
            return await self.inner.remove_user_meta(key)
        with self._span("remove_user_meta", key=key):
            await self.inner.remove_user_meta(key)
