"""`Storage`: one async key-value API in front of mounted drivers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable, Mapping
from types import TracebackType
from typing import Any, NoReturn, TypeVar

import orjson

from .driver import Capabilities, Driver, Unwatch, WatchCallback
from .errors import (
    InvalidArgumentError,
    NotFoundError,
    ReadOnlyError,
    SerializationError,
    UnsupportedError,
    fail,
)
from .factory import create_driver
from .keys import check_max_depth, normalize_base
from .listing import BATCH_CHUNK, clear_base, each_group, list_keys, list_page, stream_keys
from .lock import Lock
from .mounts import Mount, MountTable
from .streams import DEFAULT_CHUNK, Reader, StreamAbortedError, Writer
from .ttl import TTL, ttl_seconds
from .typed import Codec, TypedView
from .typed import typed as typed_view
from .values import ENVELOPE, JSONSerializer, Serializer, default_serializer, is_plain_json

_json_dumps = orjson.dumps
_json_loads = orjson.loads

__all__ = ["Storage", "create_storage"]

_M = TypeVar("_M")


class Storage:
    """Keys and values over mounted drivers; create one with `create_storage`.

    A namespace view (`namespace`) shares the mounts of the storage it came from and sees keys
    relative to its base.
    """

    __slots__ = (
        "_dumps",
        "_json",
        "_known",
        "_loads",
        "_normalize",
        "_owner",
        "_prefix",
        "_serializer",
        "_table",
    )

    def __init__(
        self, table: MountTable, serializer: Serializer, *, prefix: str = "", owner: bool = True
    ) -> None:
        self._table = table
        self._serializer = serializer
        self._dumps = serializer.dumps
        self._loads = serializer.loads
        # With the default serializer, JSON-only values take orjson directly (no Python frame
        # for the serializer): the tagged form still goes through serializer.dumps/loads.
        self._json = type(serializer) is JSONSerializer
        self._prefix = prefix
        self._owner = owner
        # Bound once: the key cache's lookup is the first step of every call.
        self._known = table.keys.get
        self._normalize = table.keys.normalize

    # -- keys and values ------------------------------------------------------------------------

    def _key(self, key: object) -> str:
        full = (type(key) is str and self._known(key)) or self._normalize(key)
        return self._prefix + full if self._prefix else full

    def _caller(self, full: str) -> str:
        """A full key as the caller of this view wrote it (relative to the view's base)."""
        return full[len(self._prefix) :]

    def _base(self, base: object) -> str:
        return self._prefix + normalize_base(base)

    def _encode(self, key: str, value: Any) -> bytes:
        try:
            return self._dumps(value)
        except SerializationError as exc:
            raise SerializationError(str(exc), key=key) from exc.__cause__
        except Exception as exc:
            raise SerializationError(
                f"cannot serialize {type(value).__name__}: {exc}", key=key
            ) from exc

    def _decode(self, key: str, data: bytes) -> Any:
        # Bytes that are no serialized value were almost always written raw: say how to read them.
        hint = "; bytes stored with set_item_raw are read with get_item_raw"
        try:
            return self._loads(data)
        except SerializationError as exc:
            raise SerializationError(f"{exc}{hint}", key=key) from exc.__cause__
        except Exception as exc:
            raise SerializationError(
                f"cannot decode the stored value: {exc}{hint}", key=key
            ) from exc

    def _writable(self, mount: Mount, full: str, ttl: float | None) -> None:
        driver = mount.driver
        capabilities = driver.capabilities
        if capabilities.read_only:
            raise ReadOnlyError(self._caller(full), driver.name)
        if ttl is not None and not capabilities.ttl:
            raise UnsupportedError(
                f"the {driver.name} driver (mounted at {mount.base!r}) has no TTL"
            )

    def _group(self, keys: Iterable[str]) -> dict[Mount, list[str]]:
        table = self._table
        if table.only is not None:  # one mount: nothing to route
            group = list(keys)
            return {table.root: group} if group else {}
        groups: dict[Mount, list[str]] = {}
        route = table.route
        for key in keys:
            groups.setdefault(route(key), []).append(key)
        return groups

    def _fail(self, mount: Mount, operation: str, full: str | None, exc: Exception) -> NoReturn:
        fail(mount.driver.name, operation, None if full is None else self._caller(full), exc)

    # -- single items -------------------------------------------------------------------------

    async def has_item(self, key: str) -> bool:
        """True when ``key`` holds a value."""
        full = self._key(key)
        mount = self._table.route(full)
        try:
            return await mount.driver.has_item(full[len(mount.base) :])
        except Exception as exc:
            self._fail(mount, "has_item", full, exc)

    async def get_item_raw(
        self, key: str, default: bytes | None = None, *, renew_ttl: TTL = None
    ) -> bytes | None:
        """The stored bytes of ``key`` (no serializer), or ``default``; ``renew_ttl`` as for
        `get_item`."""
        full = self._key(key)
        if renew_ttl is not None:
            found = await self._get_renewed(full, renew_ttl)
            return default if found is None else found
        mount = self._table.route(full)
        try:
            data = await mount.driver.get_item(full[len(mount.base) :])
        except Exception as exc:
            self._fail(mount, "get_item", full, exc)
        return default if data is None else data

    async def get_item(self, key: str, default: Any = None, *, renew_ttl: TTL = None) -> Any:
        """The value of ``key``, or ``default`` when it is missing.

        ``renew_ttl`` also gives the key that TTL (a sliding expiry), in the same round trip
        where the backend allows it (redis GETEX).
        """
        full = self._key(key)
        table = self._table
        if renew_ttl is not None:
            data = await self._get_renewed(full, renew_ttl)
        elif table.nowait is not None:  # one in-process mount: no routing, no coroutine
            try:
                data = table.nowait.get_item_nowait(full)
            except Exception as exc:
                self._fail(table.root, "get_item", full, exc)
        else:
            mount = table.route(full)
            try:
                data = await mount.driver.get_item(full[len(mount.base) :])
            except Exception as exc:
                self._fail(mount, "get_item", full, exc)
        return default if data is None else self._load(full, data)

    async def _get_renewed(self, full: str, ttl: TTL) -> bytes | None:
        seconds = ttl_seconds(ttl)
        mount = self._table.route(full)
        self._writable(mount, full, seconds)
        try:
            return await mount.driver.get_item_touch(full[len(mount.base) :], seconds or 0.0)
        except Exception as exc:
            self._fail(mount, "get_item", full, exc)

    async def touch(self, key: str, ttl: TTL) -> bool:
        """Give ``key`` a new TTL (seconds or a timedelta) without changing its value; False
        when the key does not exist."""
        full = self._key(key)
        seconds = ttl_seconds(ttl)
        if seconds is None:
            raise InvalidArgumentError("touch needs a ttl")
        mount = self._table.route(full)
        self._writable(mount, full, seconds)
        try:
            return await mount.driver.touch(full[len(mount.base) :], seconds)
        except Exception as exc:
            self._fail(mount, "touch", full, exc)

    async def increment(self, key: str, by: int = 1, *, ttl: TTL = None) -> int:
        """Add ``by`` to the integer at ``key`` and return the new value, atomically.

        A missing key starts at 0; ``ttl`` is given to a key the increment creates (a fixed
        window, as rate limiters count), an existing key keeps its expiry. The value is plain
        JSON integer text, so `get_item` reads it as an int.
        """
        full = self._key(key)
        if isinstance(by, bool) or not isinstance(by, int):
            raise InvalidArgumentError(f"by is an int, not {by!r}")
        if not self._json:
            raise UnsupportedError(
                "increment stores JSON integer text: it needs the default serializer"
            )
        seconds = ttl_seconds(ttl)
        mount = self._table.route(full)
        self._writable(mount, full, seconds)
        try:
            return await mount.driver.increment(full[len(mount.base) :], by, ttl=seconds)
        except Exception as exc:
            self._fail(mount, "increment", full, exc)

    async def get_item_raw_with_etag(self, key: str) -> tuple[bytes | None, str | None]:
        """The stored bytes of ``key`` (None when missing) and the etag of exactly those bytes.

        The etag is None when the key is missing or the driver has no versions.
        """
        full = self._key(key)
        driver = self._table.nowait_etag
        if driver is not None:
            return self._tagged_nowait(driver, full)
        return await self._tagged(full)

    async def get_item_with_etag(self, key: str, default: Any = None) -> tuple[Any, str | None]:
        """The value of ``key`` (or ``default``) and its etag, for ``set_item(if_match=...)``.

        The etag is None when the key is missing or the driver has no versions.
        """
        full = self._key(key)
        driver = self._table.nowait_etag
        if driver is not None:
            data, etag = self._tagged_nowait(driver, full)
        else:
            data, etag = await self._tagged(full)
        if data is None:
            return default, None
        return self._load(full, data), etag

    async def _tagged(self, full: str) -> tuple[bytes | None, str | None]:
        mount = self._table.route(full)
        try:
            data, etag = await mount.driver.get_item_with_etag(full[len(mount.base) :])
        except Exception as exc:
            self._fail(mount, "get_item_with_etag", full, exc)
        return (None, None) if data is None else (data, etag)

    def _tagged_nowait(self, driver: Driver, full: str) -> tuple[bytes | None, str | None]:
        try:  # one in-process mount: no routing, no coroutine
            data, etag = driver.get_item_with_etag_nowait(full)
        except Exception as exc:
            self._fail(self._table.root, "get_item_with_etag", full, exc)
        return (None, None) if data is None else (data, etag)

    async def set_item(
        self,
        key: str,
        value: Any,
        *,
        ttl: TTL = None,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str | None:
        """Store ``value`` at ``key``; optionally expiring, or only if the version matches.

        ``if_match`` is an etag (``"*"``: only if the key exists); ``if_none_match=True``: only
        if it does not. Otherwise `ConflictError`. Returns the new etag (None where the driver
        has no versions).
        """
        full = self._key(key)
        data = self._dump(full, value)
        table = self._table
        driver = table.nowait_write
        if driver is None or ttl is not None or if_match is not None or if_none_match:
            cas = table.nowait_cas
            if cas is not None:  # a TTL or a condition, still without a coroutine
                return self._set_nowait(cas, full, data, ttl, if_match, if_none_match)
            return await self._set(full, data, ttl, if_match, if_none_match)
        try:  # one writable in-process mount: no routing, no coroutine
            return driver.set_item_nowait(full, data)
        except Exception as exc:
            self._fail(table.root, "set_item", full, exc)

    async def set_item_raw(
        self,
        key: str,
        data: bytes,
        *,
        ttl: TTL = None,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str | None:
        """Store bytes at ``key`` as they are (no serializer); returns the new etag."""
        full = self._key(key)
        stored = _raw(full, data)
        driver = self._table.nowait_write
        if driver is None or ttl is not None or if_match is not None or if_none_match:
            return await self._set(full, stored, ttl, if_match, if_none_match)
        try:  # one writable in-process mount: no routing, no coroutine
            return driver.set_item_nowait(full, stored)
        except Exception as exc:
            self._fail(self._table.root, "set_item", full, exc)

    async def _set(
        self, full: str, data: bytes, ttl: TTL, if_match: str | None, if_none_match: bool
    ) -> str | None:
        cas = self._table.nowait_cas
        if cas is not None:
            return self._set_nowait(cas, full, data, ttl, if_match, if_none_match)
        seconds = None if ttl is None else ttl_seconds(ttl)
        mount = self._table.route(full)
        driver = mount.driver
        self._writable(mount, full, seconds)
        key = full[len(mount.base) :]
        if if_match is None and not if_none_match:
            try:
                return await driver.set_item(key, data, ttl=seconds)
            except Exception as exc:
                self._fail(mount, "set_item", full, exc)
        _check_conditions(driver, if_match, if_none_match)
        try:
            return await driver.set_item_conditional(
                key, data, ttl=seconds, if_match=if_match, if_none_match=bool(if_none_match)
            )
        except Exception as exc:
            self._fail(mount, "set_item_conditional", full, exc)

    def _set_nowait(
        self,
        driver: Driver,
        full: str,
        data: bytes,
        ttl: TTL,
        if_match: str | None,
        if_none_match: bool,
    ) -> str | None:
        """`_set` on the one in-process mount: the same checks, no routing, no driver
        coroutine."""
        seconds = None if ttl is None else ttl_seconds(ttl)
        root = self._table.root
        self._writable(root, full, seconds)
        conditional = if_match is not None or if_none_match
        if conditional:
            _check_conditions(driver, if_match, if_none_match)
        try:
            return driver.set_item_conditional_nowait(
                full, data, ttl=seconds, if_match=if_match, if_none_match=bool(if_none_match)
            )
        except Exception as exc:
            self._fail(root, "set_item_conditional" if conditional else "set_item", full, exc)

    async def remove_item(
        self, key: str, *, remove_meta: bool = False, if_match: str | None = None
    ) -> None:
        """Remove ``key`` (and its user meta with ``remove_meta=True``); missing keys are fine.

        With ``if_match`` (an etag, or ``"*"`` for any version), only that version is removed:
        otherwise, a missing key included, `ConflictError`.
        """
        full = self._key(key)
        mount = self._table.route(full)
        self._writable(mount, full, None)
        relative = full[len(mount.base) :]
        if if_match is not None:
            if not (isinstance(if_match, str) and if_match):
                raise InvalidArgumentError(f"if_match is an etag string, not {if_match!r}")
            if not mount.driver.capabilities.conditional:
                raise UnsupportedError(
                    f"the {mount.driver.name} driver has no atomic conditional removes"
                )
        try:
            if if_match is not None:
                await mount.driver.remove_item_conditional(relative, if_match=if_match)
            else:
                await mount.driver.remove_item(relative)
            if remove_meta:
                await mount.driver.remove_user_meta(relative)
        except Exception as exc:
            self._fail(mount, "remove_item", full, exc)

    # -- batches ------------------------------------------------------------------------------

    def _keys(self, keys: Iterable[str]) -> list[str]:
        """Full normalized keys, every one validated before any I/O."""
        if isinstance(keys, (str, bytes)):
            raise InvalidArgumentError(
                f"keys are an iterable of keys, not one {type(keys).__name__}"
            )
        # `_key` inlined: in a batch a call per key costs more than the lookup itself.
        known, normalize = self._known, self._normalize
        fulls = [(type(key) is str and known(key)) or normalize(key) for key in keys]
        prefix = self._prefix
        return [prefix + key for key in fulls] if prefix else fulls

    def _load(self, full: str, data: bytes) -> Any:
        """Decode stored bytes: JSON-only values straight through orjson, the rest by the
        serializer; a failure raises a SerializationError naming the key."""
        if self._json:
            try:
                value = _json_loads(data)
            except Exception:
                return self._decode(full, data)  # raises a SerializationError naming the key
            if type(value) is dict and ENVELOPE in value:
                return self._decode(full, data)
            return value
        return self._decode(full, data)

    def _dump(self, full: str, value: Any) -> bytes:
        """Encode ``value`` the way `_load` reads it back; failures name the key.

        orjson's output sits in a buffer of at least 4 KiB; it is copied at once into bytes of
        its exact size, so that the buffer is freed (and reused by the next call) instead of
        travelling on: a batch of them freed together costs the allocator more than the copy.
        """
        try:
            if self._json and is_plain_json(value):
                return b"%b" % _json_dumps(value)
            return self._dumps(value)
        except Exception:
            return self._encode(full, value)  # raises a SerializationError naming the key

    async def _fetch(self, fulls: list[str]) -> dict[str, bytes | None]:
        """Stored bytes of ``fulls`` by full key, one driver call per mount."""
        only = self._table.only
        if only is not None:  # one mount: one call, keys already relative
            try:
                values = await only.get_items(fulls)
            except Exception as exc:
                self._fail(self._table.root, "get_items", fulls[0] if fulls else None, exc)
            return dict(zip(fulls, values, strict=True))
        found: dict[str, bytes | None] = {}

        async def fetch(mount: Mount, group: list[str]) -> None:
            start = len(mount.base)
            try:
                values = await mount.driver.get_items([key[start:] for key in group])
            except Exception as exc:
                self._fail(mount, "get_items", group[0], exc)
            found.update(zip(group, values, strict=True))

        await each_group(fetch, self._group(dict.fromkeys(fulls)))
        return found

    async def get_items(self, keys: Iterable[str]) -> dict[str, Any]:
        """Values of ``keys`` by normalized key, in input order (None where missing)."""
        fulls = self._keys(keys)
        found = await self._fetch(fulls)
        strip = len(self._prefix)
        load = self._load
        return {
            full[strip:]: None if (data := found[full]) is None else load(full, data)
            for full in fulls
        }

    async def get_items_raw(self, keys: Iterable[str]) -> dict[str, bytes | None]:
        """Stored bytes of ``keys`` by normalized key, in input order (None where missing)."""
        fulls = self._keys(keys)
        found = await self._fetch(fulls)
        strip = len(self._prefix)
        return {full[strip:]: found[full] for full in fulls}

    async def set_items(
        self, items: Mapping[str, Any] | Iterable[tuple[str, Any]], *, ttl: TTL = None
    ) -> None:
        """Store many values, one batch per mount; nothing is written if any value fails."""
        seconds = ttl_seconds(ttl)
        pairs = _pairs(items)
        fulls = self._keys(key for key, _ in pairs)
        dump = self._dump
        encoded = {full: dump(full, value) for full, (_, value) in zip(fulls, pairs, strict=True)}
        await self._set_many(encoded, seconds)

    async def set_items_raw(
        self, items: Mapping[str, bytes] | Iterable[tuple[str, bytes]], *, ttl: TTL = None
    ) -> None:
        """Store many byte values as they are, one batch per mount."""
        seconds = ttl_seconds(ttl)
        pairs = _pairs(items)
        fulls = self._keys(key for key, _ in pairs)
        encoded = {full: _raw(full, data) for full, (_, data) in zip(fulls, pairs, strict=True)}
        await self._set_many(encoded, seconds)

    async def _set_many(self, encoded: dict[str, bytes], seconds: float | None) -> None:
        groups = self._group(encoded)
        for mount, group in groups.items():
            self._writable(mount, group[0], seconds)

        async def store(mount: Mount, group: list[str]) -> None:
            start = len(mount.base)
            try:
                await mount.driver.set_items(
                    [(key[start:], encoded[key]) for key in group], ttl=seconds
                )
            except Exception as exc:
                self._fail(mount, "set_items", group[0], exc)

        await each_group(store, groups)

    async def remove_items(self, keys: Iterable[str], *, remove_meta: bool = False) -> None:
        """Remove many keys, one batch per mount."""
        groups = self._group(dict.fromkeys(self._keys(keys)))
        for mount, group in groups.items():
            self._writable(mount, group[0], None)

        async def remove(mount: Mount, group: list[str]) -> None:
            start = len(mount.base)
            relative = [key[start:] for key in group]
            try:
                await mount.driver.remove_items(relative)
                if remove_meta:
                    await asyncio.gather(*(mount.driver.remove_user_meta(key) for key in relative))
            except Exception as exc:
                self._fail(mount, "remove_items", group[0], exc)

        await each_group(remove, groups)

    # -- meta ---------------------------------------------------------------------------------

    async def get_meta(self, key: str) -> dict[str, Any]:
        """User meta of ``key`` overlaid with the driver's own fields (mtime, size, ttl, etag...)."""
        full = self._key(key)
        mount = self._table.route(full)
        relative = full[len(mount.base) :]
        try:  # awaited in turn: gathering would cost two tasks, more than a local lookup
            native = await mount.driver.get_meta(relative)
            raw = await mount.driver.get_user_meta(relative)
        except Exception as exc:
            self._fail(mount, "get_meta", full, exc)
        meta: dict[str, Any] = {}
        if raw is not None:
            user = self._decode(full, raw)
            if isinstance(user, dict):
                meta.update(user)
        meta.update(native)
        return meta

    async def get_native_meta(self, key: str) -> dict[str, Any]:
        """Only the driver's own fields of ``key`` (``mtime``, ``size``, ``ttl``, ``etag``...).

        An empty dict when the key is missing or the driver keeps no metadata.
        """
        full = self._key(key)
        mount = self._table.route(full)
        try:
            return await mount.driver.get_meta(full[len(mount.base) :])
        except Exception as exc:
            self._fail(mount, "get_meta", full, exc)

    async def get_item_raw_with_meta(self, key: str) -> tuple[bytes | None, dict[str, Any]]:
        """The stored bytes of ``key`` and its native meta in one call (``(None, {})`` when
        missing): what a server answering a GET sends. The meta's ``etag`` names exactly
        those bytes; its other fields may be of a write that landed in between
        (`Driver.get_item_with_meta`).
        """
        full = self._key(key)
        mount = self._table.route(full)
        try:
            return await mount.driver.get_item_with_meta(full[len(mount.base) :])
        except Exception as exc:
            self._fail(mount, "get_item_with_meta", full, exc)

    async def get_meta_raw(self, key: str) -> bytes | None:
        """The encoded user meta of ``key`` as stored (None when there is none)."""
        full = self._key(key)
        mount = self._table.route(full)
        try:
            return await mount.driver.get_user_meta(full[len(mount.base) :])
        except Exception as exc:
            self._fail(mount, "get_meta", full, exc)

    async def get_metas_raw(self, keys: Iterable[str]) -> dict[str, bytes | None]:
        """The encoded user meta of many keys by normalized key, in input order, one batch per
        mount (None where a key has none)."""
        fulls = self._keys(keys)
        found: dict[str, bytes | None] = {}

        async def fetch(mount: Mount, group: list[str]) -> None:
            start = len(mount.base)
            try:
                metas = await mount.driver.get_user_metas([key[start:] for key in group])
            except Exception as exc:
                self._fail(mount, "get_meta", group[0], exc)
            found.update(zip(group, metas, strict=True))

        await each_group(fetch, self._group(dict.fromkeys(fulls)))
        strip = len(self._prefix)
        return {full[strip:]: found[full] for full in fulls}

    async def set_meta(self, key: str, meta: Mapping[str, Any]) -> None:
        """Store user meta beside ``key`` (never listed as a key)."""
        full = self._key(key)
        if not isinstance(meta, Mapping):
            raise InvalidArgumentError(f"meta is a mapping, not {type(meta).__name__}")
        await self._set_meta(full, self._encode(full, dict(meta)))

    async def set_meta_raw(self, key: str, data: bytes) -> None:
        """Store encoded user meta beside ``key``; it must decode to a mapping."""
        full = self._key(key)
        data = _raw(full, data)
        try:
            decoded = self._loads(data)
        except Exception:
            decoded = None
        if not isinstance(decoded, dict):
            raise SerializationError("user meta must decode to a mapping", key=self._caller(full))
        await self._set_meta(full, data)

    async def _set_meta(self, full: str, data: bytes) -> None:
        mount = self._table.route(full)
        self._writable(mount, full, None)
        try:
            await mount.driver.set_user_meta(full[len(mount.base) :], data)
        except Exception as exc:
            self._fail(mount, "set_meta", full, exc)

    async def remove_meta(self, key: str) -> None:
        """Forget the user meta of ``key``."""
        full = self._key(key)
        mount = self._table.route(full)
        self._writable(mount, full, None)
        try:
            await mount.driver.remove_user_meta(full[len(mount.base) :])
        except Exception as exc:
            self._fail(mount, "remove_meta", full, exc)

    def typed(
        self, model: type[_M], *, base: str = "", codec: Codec[_M] | None = None
    ) -> TypedView[_M]:
        """A view of the keys under ``base`` whose values are ``model`` instances (dataclasses,
        pydantic models, msgspec Structs, attrs classes, TypedDicts, or any class with a
        ``codec``), stored as plain JSON and validated as they are read (docs/typed.md)."""
        return typed_view(self, model, base=base, codec=codec)

    def lock(self, key: str, *, ttl: TTL, wait: float | None = None, renew: bool = True) -> Lock:
        """A lease on ``key``: ``async with storage.lock("jobs:nightly", ttl=30, wait=10):``.

        Built on a create-only write with ``ttl`` seconds, renewed in the background while
        held, released only if still ours; ``wait`` seconds to wait for another holder (None:
        fail at once with `LockUnavailableError`); `LockLostError` when the lease was lost
        while held. ``lock.token`` is a fencing token. Needs conditional writes and TTL.
        """
        return Lock(self, key, ttl=ttl, wait=wait, renew=renew)

    # -- streams and URLs -----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def open_read(
        self, key: str, *, chunk_size: int = DEFAULT_CHUNK
    ) -> AsyncIterator[Reader]:
        """``async with storage.open_read(key) as reader``: the stored bytes of ``key`` in
        chunks (``await reader.read(n)``, ``async for chunk in reader``), never held whole
        where the driver reads in parts. `NotFoundError` when the key holds nothing."""
        full = self._key(key)
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise InvalidArgumentError(f"chunk_size is an int >= 1, not {chunk_size!r}")
        mount = self._table.route(full)
        driver = mount.driver
        try:
            chunks = await driver.read_chunks(full[len(mount.base) :], chunk_size)
        except Exception as exc:
            self._fail(mount, "open_read", full, exc)
        if chunks is None:
            raise NotFoundError(self._caller(full))

        async def translated(inner: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
            try:
                async for chunk in inner:
                    yield chunk
            except Exception as exc:
                self._fail(mount, "open_read", full, exc)

        reader = Reader(translated(chunks))
        try:
            yield reader
        finally:
            try:
                await reader.aclose()
            finally:
                # The wrapper may never have started: the driver's own iterator is closed too,
                # so that what it holds (a file, a pooled connection) goes back.
                closer = getattr(chunks, "aclose", None)
                if closer is not None:
                    await closer()

    def open_write(self, key: str, *, ttl: TTL = None) -> Writer:
        """``async with storage.open_write(key) as writer``: ``await writer.write(data)`` as
        often as needed; the value replaces the old one only when the block ends without an
        error (then ``writer.etag`` is its etag), and is dropped otherwise."""
        full = self._key(key)
        seconds = ttl_seconds(ttl)
        mount = self._table.route(full)
        self._writable(mount, full, seconds)
        relative = full[len(mount.base) :]

        async def start(chunks: AsyncIterator[bytes]) -> str | None:
            try:
                return await mount.driver.write_chunks(relative, chunks, ttl=seconds)
            except StreamAbortedError:
                raise
            except Exception as exc:
                self._fail(mount, "open_write", full, exc)

        return Writer(start)

    async def get_url(self, key: str, *, expires: TTL, method: str = "GET") -> str:
        """A URL that lets its holder ``GET`` (or ``PUT``) ``key`` without credentials until
        ``expires`` (seconds or a timedelta) has passed: presigned on s3, `UnsupportedError`
        where a driver cannot sign one. The URL reaches the bytes as stored (raw)."""
        full = self._key(key)
        seconds = ttl_seconds(expires)
        if seconds is None:
            raise InvalidArgumentError("get_url needs expires")
        if method not in ("GET", "PUT"):
            raise InvalidArgumentError(f"method is GET or PUT, not {method!r}")
        mount = self._table.route(full)
        if method == "PUT":
            self._writable(mount, full, None)
        try:
            return await mount.driver.get_url(
                full[len(mount.base) :], expires=seconds, method=method
            )
        except Exception as exc:
            self._fail(mount, "get_url", full, exc)

    def capabilities(self, key: str = "") -> Capabilities:
        """What the driver serving ``key`` can do (for ``""``, the mount at this view's base)."""
        only = self._table.only
        if only is not None and type(key) is str and self._known(key):
            return only.capabilities  # one mount serves every key (this one known valid)
        return self.get_mount(key).driver.capabilities

    # -- listing and clearing -----------------------------------------------------------------

    async def get_keys(self, base: str = "", *, max_depth: int | None = None) -> list[str]:
        """Every key under ``base``, from every mount at or under it; shadowed keys hidden."""
        full_base = self._base(base)
        return await list_keys(self._table, full_base, check_max_depth(max_depth), self._prefix)

    def iter_keys(self, base: str = "", *, max_depth: int | None = None) -> AsyncIterator[str]:
        """The keys `get_keys` lists, streamed page by page from each mount."""
        full_base = self._base(base)
        return stream_keys(self._table, full_base, check_max_depth(max_depth), self._prefix)

    async def list_keys(
        self,
        base: str = "",
        *,
        limit: int,
        cursor: str | None = None,
        max_depth: int | None = None,
    ) -> tuple[list[str], str | None]:
        """One page of the keys `get_keys` lists: at most ``limit`` keys, and an opaque cursor
        to pass back for the next page (None after the last).

        Each backend's own cursor is used (a key range on memory, sqlite and fs; continuation
        tokens on s3; SCAN on redis, per primary on a cluster). A key present for the whole
        listing is listed once on key-range and token backends, at least once on redis
        (SCAN may repeat a key); keys written or removed meanwhile may or may not appear.
        """
        full_base = self._base(base)
        return await list_page(
            self._table, full_base, limit, cursor, check_max_depth(max_depth), self._prefix
        )

    async def clear(self, base: str = "") -> None:
        """Remove exactly the keys `get_keys(base)` lists (with their meta), in every mount."""
        await clear_base(self._table, self._base(base), self._prefix)

    # -- snapshots ----------------------------------------------------------------------------

    async def snapshot(self, base: str = "") -> dict[str, Any]:
        """Every value under ``base``, by key relative to ``base``."""
        normalized = normalize_base(base)
        keys = await self.get_keys(normalized)
        values: dict[str, Any] = {}
        for start in range(0, len(keys), BATCH_CHUNK):
            values.update(await self.get_items(keys[start : start + BATCH_CHUNK]))
        return {key[len(normalized) :]: value for key, value in values.items() if value is not None}

    async def restore_snapshot(self, data: Mapping[str, Any], base: str = "") -> None:
        """Write a `snapshot` back, under ``base``."""
        normalized = normalize_base(base)
        await self.set_items({normalized + key: value for key, value in data.items()})

    # -- mounts -------------------------------------------------------------------------------

    def mount(self, base: str, driver: Driver | str) -> Storage:
        """Mount ``driver`` (a driver, a registered name or a URL) at ``base``; returns self."""
        full_base = self._base(base)
        if not full_base:
            raise InvalidArgumentError("the root is mounted by create_storage(driver)")
        self._table.add(full_base, _guarded(create_driver(driver), self._table.deadline))
        return self

    async def unmount(self, base: str, *, dispose: bool = True) -> None:
        """Remove the mount at ``base``; dispose its driver unless ``dispose=False``."""
        mount = await self._table.remove(self._base(base))
        if dispose:
            await mount.driver.dispose()

    def get_mount(self, key: str = "") -> Mount:
        """The mount that holds ``key``."""
        return self._table.route(self._key(key) if key else self._prefix)

    def get_mounts(self, base: str = "", *, parents: bool = False) -> list[Mount]:
        """Mounts at or under ``base`` (and, with ``parents``, those above it), longest first."""
        full_base = self._base(base)
        return [
            mount
            for mount in self._table.mounts()
            if mount.base.startswith(full_base) or (parents and full_base.startswith(mount.base))
        ]

    # -- watching -----------------------------------------------------------------------------

    async def watch(self, callback: WatchCallback) -> Unwatch:
        """Call ``callback(event, key)`` ("update" or "remove") for changes under this storage."""
        return await self._table.listen(self._prefix, callback, self)

    async def unwatch(self) -> None:
        """Stop every watch this storage started."""
        await self._table.unlisten_owner(self)

    # -- views and lifecycle --------------------------------------------------------------------

    def namespace(self, base: str) -> Storage:
        """A view whose keys are relative to ``base``; it shares this storage's mounts."""
        prefix = self._base(base)
        if not prefix:
            raise InvalidArgumentError("a namespace needs a non-empty base")
        return Storage(self._table, self._serializer, prefix=prefix, owner=False)

    @property
    def prefix(self) -> str:
        """The base of this namespace view (``""`` for a storage made by `create_storage`)."""
        return self._prefix

    @property
    def serializer(self) -> Serializer:
        """The serializer that turns values into bytes for this storage."""
        return self._serializer

    async def dispose(self) -> None:
        """Dispose every mounted driver. On a namespace view this only stops its watches."""
        if self._owner:
            await self._table.dispose()
        else:
            await self.unwatch()

    async def __aenter__(self) -> Storage:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.dispose()

    # Short aliases.
    get = get_item
    set = set_item
    has = has_item
    delete = remove_item
    keys = get_keys

    def __repr__(self) -> str:
        bases = ", ".join(repr(mount.base) for mount in self._table.mounts())
        return f"<Storage prefix={self._prefix!r} mounts=[{bases}]>"


def _check_conditions(driver: Driver, if_match: str | None, if_none_match: bool) -> None:
    """The arguments of a conditional write, checked before any I/O."""
    if if_match is not None and not (isinstance(if_match, str) and if_match):
        raise InvalidArgumentError(f"if_match is an etag string, not {if_match!r}")
    if if_match is not None and if_none_match:
        raise InvalidArgumentError("if_match and if_none_match cannot both hold")
    if not driver.capabilities.conditional:
        raise UnsupportedError(f"the {driver.name} driver has no atomic conditional writes")


def _raw(full: str, data: object) -> bytes:
    if type(data) is bytes:
        return data
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise SerializationError(f"raw values are bytes, not {type(data).__name__}", key=full)


def _pairs(items: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> list[tuple[str, Any]]:
    if isinstance(items, Mapping):
        return list(items.items())
    if isinstance(items, (str, bytes)):
        raise InvalidArgumentError("items are a mapping or (key, value) pairs, not a string")
    pairs = list(items)
    for pair in pairs:
        if isinstance(pair, (str, bytes)) or len(pair) != 2:
            raise InvalidArgumentError(f"items are (key, value) pairs, not {pair!r}")
    return pairs


#: Seconds any call may take on a driver that does not bound its own calls (see
#: `Capabilities.bounded`): a backstop against a hang, not a latency goal.
DEFAULT_DEADLINE = 30.0


def _guarded(driver: Driver, deadline: float | None) -> Driver:
    """``driver``, behind a `Timeout` of ``deadline`` seconds unless it bounds its own calls."""
    capabilities = driver.capabilities
    if deadline is None or capabilities.bounded or capabilities.nowait:
        return driver
    from .layers.timeout import Timeout

    guard = Timeout(driver, seconds=deadline)
    guard.name = driver.name  # a backstop the user did not ask for: errors name their driver
    return guard


def create_storage(
    driver: Driver | str | None = None,
    *,
    serializer: Serializer | None = None,
    mounts: Mapping[str, Driver | str] | None = None,
    deadline: float | None = DEFAULT_DEADLINE,
) -> Storage:
    """A Storage whose root is ``driver`` (memory by default) with optional extra mounts.

    Every built-in driver bounds its own calls (socket, pool and busy timeouts); a driver that
    does not say so in its capabilities (``bounded``) gets a `storage.layers.Timeout` of
    ``deadline`` seconds in front of it, so that no call can hang forever (None: none).
    """
    if deadline is not None and not (isinstance(deadline, (int, float)) and deadline > 0):
        raise InvalidArgumentError(f"deadline is seconds > 0 or None, not {deadline!r}")
    root = _guarded(create_driver(driver if driver is not None else "memory"), deadline)
    chosen = serializer if serializer is not None else default_serializer
    if not (callable(getattr(chosen, "dumps", None)) and callable(getattr(chosen, "loads", None))):
        raise InvalidArgumentError("a serializer needs dumps(value) -> bytes and loads(bytes)")
    storage = Storage(MountTable(root, deadline=deadline), chosen)
    for base, mounted in (mounts or {}).items():
        storage.mount(base, mounted)
    return storage
