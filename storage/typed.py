"""Typed views: the keys under one base, whose values are instances of one model class.

``typed(storage, User, base="users")`` (also ``storage.typed(User, base="users")``) gives a
`TypedView` whose get, set, batches and listing speak ``User``. The model kind is found
automatically: dataclasses, pydantic v2 models, msgspec Structs, attrs classes and TypedDicts;
anything else brings a `Codec`. Values are stored as plain JSON text that any client reads
(through ``get_item_raw``/``set_item_raw``, so the Storage's serializer is not involved), and
a stored value that does not validate raises `SerializationError` naming the key and the
model. See docs/typed.md for the stored form and the validation rules.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Mapping
from typing import Any, Generic, Protocol, TypeVar, overload

from ._typed_codecs import codec_for, describe, dump_json
from .errors import InvalidArgumentError, SerializationError
from .keys import normalize_base
from .ttl import TTL

__all__ = ["Codec", "TypedView", "typed"]

M = TypeVar("M")
D = TypeVar("D")

#: Keys read per batch while `TypedView.values` and `TypedView.items` stream a base.
_BATCH = 256


class Codec(Protocol[M]):
    """Turns instances of a class no built-in kind covers into stored bytes and back."""

    def encode(self, value: M) -> object:
        """``value`` as bytes (stored as they are) or a JSON-able value (stored as JSON text)."""
        ...

    def decode(self, data: bytes) -> M:
        """The instance the stored ``data`` holds; any exception means it holds none."""
        ...


class _Store(Protocol):
    """The public Storage calls a view makes (a `Storage` or a namespace of one)."""

    async def has_item(self, key: str) -> bool: ...

    async def get_item_raw(self, key: str) -> bytes | None: ...

    async def get_item_raw_with_etag(self, key: str) -> tuple[bytes | None, str | None]: ...

    async def get_items_raw(self, keys: Iterable[str]) -> dict[str, bytes | None]: ...

    async def set_item_raw(
        self,
        key: str,
        data: bytes,
        *,
        ttl: TTL = None,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str | None: ...

    async def set_items_raw(self, items: list[tuple[str, bytes]], *, ttl: TTL = None) -> object: ...

    async def remove_item(self, key: str, *, if_match: str | None = None) -> object: ...

    async def get_keys(self, base: str = "", *, max_depth: int | None = None) -> list[str]: ...

    def iter_keys(self, base: str = "", *, max_depth: int | None = None) -> AsyncIterator[str]: ...

    def namespace(self, base: str) -> _Store: ...


def typed(
    storage: _Store, model: type[M], *, base: str = "", codec: Codec[M] | None = None
) -> TypedView[M]:
    """A view of ``storage`` under ``base`` whose values are ``model`` instances.

    Args:
        storage: the Storage (or namespace view) that holds the values.
        model: the class of the values; its kind picks the built-in codec.
        base: the base the view's keys are relative to (the storage's root by default).
        codec: how to encode and decode ``model``, for a class no built-in kind covers.

    Raises `SerializationError` when ``model`` is of no known kind and no codec is given.
    """
    chosen: Codec[M] = codec if codec is not None else codec_for(model)
    store = storage.namespace(base) if normalize_base(base) else storage
    return TypedView(store, model, chosen)


class TypedView(Generic[M]):
    """Keys whose values are ``M`` instances, with the meaning of the Storage calls they mirror.

    Keys are relative to the view's base. Every value is encoded before any I/O; every stored
    value is validated as it is read.
    """

    __slots__ = ("_decode", "_encode", "_model", "_name", "_store")

    def __init__(self, store: _Store, model: type[M], codec: Codec[M]) -> None:
        self._store = store
        self._model = model
        self._name = getattr(model, "__qualname__", repr(model))
        self._encode = codec.encode
        self._decode = codec.decode

    @property
    def model(self) -> type[M]:
        """The class of this view's values."""
        return self._model

    # -- encoding -----------------------------------------------------------------------------

    def _load(self, key: str, data: bytes) -> M:
        try:
            return self._decode(data)
        except Exception as exc:
            raise self._invalid(key, exc) from exc

    def _invalid(self, key: str, exc: Exception) -> SerializationError:
        return SerializationError(
            f"the stored value is not a valid {self._name}: {describe(exc)}", key=key
        )

    def _dump(self, key: str, value: M) -> bytes:
        try:
            data = self._encode(value)
            if isinstance(data, (bytes, bytearray, memoryview)):
                return bytes(data)
            return dump_json(data)
        except Exception as exc:
            raise SerializationError(
                f"cannot store a {type(value).__qualname__} as {self._name}: {describe(exc)}",
                key=key,
            ) from exc

    # -- single items -------------------------------------------------------------------------

    @overload
    async def get(self, key: str) -> M | None: ...

    @overload
    async def get(self, key: str, default: D) -> M | D: ...

    async def get(self, key: str, default: Any = None) -> Any:
        """The instance stored at ``key``, or ``default`` when it is missing."""
        data = await self._store.get_item_raw(key)
        if data is None:
            return default
        try:
            return self._decode(data)
        except Exception as exc:
            raise self._invalid(key, exc) from exc

    async def get_with_etag(self, key: str) -> tuple[M | None, str | None]:
        """The instance at ``key`` (None when missing) and the etag of exactly that version,
        for ``set(..., if_match=etag)``; the etag is None where the driver keeps no versions."""
        data, etag = await self._store.get_item_raw_with_etag(key)
        return (None, None) if data is None else (self._load(key, data), etag)

    async def set(
        self,
        key: str,
        value: M,
        *,
        ttl: TTL = None,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str | None:
        """Store ``value`` at ``key``, optionally expiring after ``ttl`` or only if the stored
        version matches (``if_match``) or is absent (``if_none_match``), as `Storage.set_item`
        does. Returns the new etag where the storage reports one."""
        data = self._dump(key, value)
        return await self._store.set_item_raw(
            key, data, ttl=ttl, if_match=if_match, if_none_match=if_none_match
        )

    async def has(self, key: str) -> bool:
        """True when ``key`` holds a value."""
        return await self._store.has_item(key)

    async def delete(self, key: str, *, if_match: str | None = None) -> None:
        """Remove ``key``; a missing key is fine, unless ``if_match`` (an etag, or ``"*"``)
        asks to remove only that version, as `Storage.remove_item` does."""
        await self._store.remove_item(key, if_match=if_match)

    # -- batches ------------------------------------------------------------------------------

    async def get_many(self, keys: Iterable[str]) -> dict[str, M | None]:
        """Instances by normalized key, in input order (None where missing), one batch per
        mount."""
        found = await self._store.get_items_raw(keys)
        load = self._load
        return {key: None if data is None else load(key, data) for key, data in found.items()}

    async def set_many(
        self, items: Mapping[str, M] | Iterable[tuple[str, M]], *, ttl: TTL = None
    ) -> None:
        """Store many instances, one batch per mount; nothing is written if any fails to
        encode."""
        if isinstance(items, (str, bytes)):
            raise InvalidArgumentError("items are a mapping or (key, value) pairs, not a string")
        pairs = items.items() if isinstance(items, Mapping) else items
        dump = self._dump
        encoded: list[tuple[str, bytes]] = []
        for pair in pairs:
            if isinstance(pair, (str, bytes)) or len(pair) != 2:
                raise InvalidArgumentError(f"items are (key, value) pairs, not {pair!r}")
            key, value = pair
            encoded.append((key, dump(key, value)))
        await self._store.set_items_raw(encoded, ttl=ttl)

    # -- listing ------------------------------------------------------------------------------

    async def keys(self, base: str = "", *, max_depth: int | None = None) -> list[str]:
        """Every key under ``base`` (relative to the view), as `Storage.get_keys` lists them."""
        return await self._store.get_keys(base, max_depth=max_depth)

    def iter_keys(self, base: str = "", *, max_depth: int | None = None) -> AsyncIterator[str]:
        """The keys `keys` lists, streamed page by page."""
        return self._store.iter_keys(base, max_depth=max_depth)

    def items(
        self, base: str = "", *, max_depth: int | None = None
    ) -> AsyncIterator[tuple[str, M]]:
        """``(key, instance)`` for every key under ``base``, read in batches as the keys
        stream; a key removed between listing and reading is skipped."""
        return self._pairs(base, max_depth)

    async def values(self, base: str = "", *, max_depth: int | None = None) -> AsyncIterator[M]:
        """Every instance under ``base``, as `items` reads them."""
        pairs = self._pairs(base, max_depth)
        try:
            async for _, value in pairs:
                yield value
        finally:
            await pairs.aclose()

    async def _pairs(self, base: str, max_depth: int | None) -> AsyncGenerator[tuple[str, M], None]:
        keys = self._store.iter_keys(base, max_depth=max_depth)
        try:
            batch: list[str] = []
            async for key in keys:
                batch.append(key)
                if len(batch) >= _BATCH:
                    for pair in await self._read(batch):
                        yield pair
                    batch = []
            if batch:
                for pair in await self._read(batch):
                    yield pair
        finally:
            close = getattr(keys, "aclose", None)  # the listing stops when the reader does
            if close is not None:
                await close()

    async def _read(self, keys: list[str]) -> list[tuple[str, M]]:
        found = await self._store.get_items_raw(keys)
        load = self._load
        return [(key, load(key, data)) for key, data in found.items() if data is not None]

    def __repr__(self) -> str:
        return f"<TypedView of {self._name} over {self._store!r}>"
