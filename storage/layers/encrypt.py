"""`Encrypt`: authenticated encryption of values and user meta at rest, with key rotation.

Every value is stored as an envelope (all sizes in bytes)::

    magic FF 45 4E ("\\xffEN") | version 01 | key id (4) | nonce (12) | AES-256-GCM ciphertext + tag (16)

The key id is the first 4 bytes of HMAC-SHA256(key, label), so an envelope names the key that
sealed it without revealing it. The associated data is the envelope's first 8 bytes followed
by the UTF-8 mount-relative storage key (``key + "\\x1fmeta"`` for user meta): a ciphertext
copied to another key, a changed version or key id, and any flipped bit fail to decrypt with
`DecryptionError` naming the key. Keys themselves stay in plain text (listing needs them).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from ..driver import Driver, is_meta_key, meta_key
from ..errors import ConflictError, InvalidArgumentError, SerializationError, fail
from ..keys import normalize_base
from ..layer import Layer, ValueLayer
from ..mounts import Mount
from ._encrypt_keys import KEY_ID_SIZE, KeyMaterial, KeyRing, generate_key, keys_from_env

__all__ = [
    "OVERHEAD",
    "DecryptionError",
    "Encrypt",
    "generate_key",
    "keys_from_env",
    "rotate",
]

logger = logging.getLogger(__name__)

_MAGIC = b"\xffEN"
_VERSION = 1
_HEADER_SIZE = len(_MAGIC) + 1 + KEY_ID_SIZE
_KEY_ID = slice(len(_MAGIC) + 1, _HEADER_SIZE)
_NONCE_SIZE = 12
_TAG_SIZE = 16
_BODY = _HEADER_SIZE + _NONCE_SIZE
#: Bytes an envelope adds to a value: header, nonce and tag.
OVERHEAD = _BODY + _TAG_SIZE

_ROTATE_CHUNK = 256
_ROTATE_PARALLEL = 32
_ROTATE_ATTEMPTS = 5


class DecryptionError(SerializationError):
    """Stored bytes are not an envelope this layer can open: tampered, moved, or keyless."""


class Encrypt(ValueLayer):
    """Values and user meta sealed with AES-256-GCM under the newest key; any key opens.

    ``keys`` is a list of keys, newest first: each 32 bytes or URL-safe base64 text of 32
    bytes (see `generate_key`, `keys_from_env`). ``get_meta()["size"]`` is the plaintext size
    (the stored size minus `OVERHEAD`), the size `get_item_raw` returns; the etag names the
    stored ciphertext. Conditional writes, listing and watch pass through.
    """

    layer_name = "encrypt"

    def __init__(self, inner: Driver, *, keys: Sequence[KeyMaterial]) -> None:
        super().__init__(inner)
        self._ring = KeyRing(keys)
        newest = self._ring.newest
        self._header = _MAGIC + bytes([_VERSION]) + newest.id
        self._seal_with = newest.cipher.encrypt

    # -- the envelope -------------------------------------------------------------------------

    def _seal(self, key: str, data: bytes) -> bytes:
        nonce = os.urandom(_NONCE_SIZE)
        header = self._header
        return b"".join((header, nonce, self._seal_with(nonce, data, header + key.encode())))

    def _open(self, key: str, data: bytes) -> bytes:
        if len(data) < OVERHEAD or not data.startswith(_MAGIC):
            raise DecryptionError(
                "the stored value is not an encrypted envelope (written without the Encrypt "
                "layer, or truncated)",
                key=key,
            )
        if data[len(_MAGIC)] != _VERSION:
            raise DecryptionError(
                f"the stored envelope has unknown version {data[len(_MAGIC)]}", key=key
            )
        found = self._ring.by_id.get(data[_KEY_ID])
        if found is None:
            raise DecryptionError(
                f"the stored value was sealed with key id {data[_KEY_ID].hex()}, which is not among this "
                "layer's keys (was it dropped from the list?)",
                key=key,
            )
        view = memoryview(data)
        try:
            return found.cipher.decrypt(
                view[_HEADER_SIZE:_BODY], view[_BODY:], data[:_HEADER_SIZE] + key.encode()
            )
        except self._ring.invalid_tag:
            raise DecryptionError(
                "the stored value fails authentication: tampered with, corrupted, or copied "
                "from another key",
                key=key,
            ) from None

    def _open_or_none(self, key: str, data: bytes | None) -> bytes | None:
        return None if data is None else self._open(key, data)

    def encode(self, key: str, value: bytes) -> bytes:
        return self._seal(key, value)

    def decode(self, key: str, data: bytes) -> bytes:
        return self._open(key, data)

    def is_stale(self, data: bytes) -> bool:
        """True unless ``data`` is an envelope sealed with the newest key (cheap: no decryption)."""
        return not data.startswith(_MAGIC) or data[_KEY_ID] != self._ring.newest.id

    def reseal(self, key: str, data: bytes) -> bytes | None:
        """``data`` (an envelope stored at ``key``) sealed again under the newest key.

        None when it already is; `DecryptionError` when it cannot be opened.
        """
        plain = self._open(key, data)
        if data[_KEY_ID] == self._ring.newest.id:
            return None
        return self._seal(key, plain)

    # -- items --------------------------------------------------------------------------------

    # -- meta ---------------------------------------------------------------------------------

    async def get_meta(self, key: str) -> dict[str, Any]:
        meta = await self.inner.get_meta(key)
        size = meta.get("size")
        if isinstance(size, int) and size >= OVERHEAD:
            meta = {**meta, "size": size - OVERHEAD}
        return meta

    async def get_user_meta(self, key: str) -> bytes | None:
        return self._open_or_none(meta_key(key), await self.inner.get_user_meta(key))

    async def get_user_metas(self, keys: Sequence[str]) -> list[bytes | None]:
        found = await self.inner.get_user_metas(keys)
        return [
            self._open_or_none(meta_key(key), data) for key, data in zip(keys, found, strict=True)
        ]

    async def set_user_meta(self, key: str, data: bytes) -> None:
        await self.inner.set_user_meta(key, self._seal(meta_key(key), data))

    def __repr__(self) -> str:
        ids = ", ".join(key.id.hex() for key in self._ring.keys)
        return f"<Encrypt {self.name!r} key ids [{ids}]>"


# -- rotation ---------------------------------------------------------------------------------


class _Mounts(Protocol):
    """What `rotate` needs of a `storage.Storage` (named structurally: no import cycle)."""

    @property
    def prefix(self) -> str: ...

    def get_mounts(self, base: str = "", *, parents: bool = False) -> list[Mount]: ...


Progress = Callable[[int, int], Any]


async def rotate(
    target: _Mounts | Driver, base: str = "", *, progress: Progress | None = None
) -> int:
    """Re-encrypt under the newest key every value (and user meta) under ``base`` sealed
    with an older one; return how many were rewritten.

    ``target`` is a Storage (every mount holding keys under ``base`` with an `Encrypt` in its
    stack) or a driver stack holding an `Encrypt`. Where the inner driver has conditional
    writes, each rewrite is a compare-and-set on the etag just read, so a concurrent write is
    never overwritten (it is read again instead); remaining TTLs are kept. ``progress`` is
    called as ``progress(done, total)`` after each chunk of keys.
    """
    relative = normalize_base(base)
    if isinstance(target, Driver):
        jobs = [(layer, relative) for layer in _encrypt_layers(target)]
    else:
        full = target.prefix + relative
        mounts = target.get_mounts(relative, parents=True)  # longest base first
        holders = [mount for mount in mounts if mount.base.startswith(full)]
        if not any(mount.base == full for mount in holders):
            # The longest mount above the base holds its keys; shorter ones only shadowed ones.
            holders.extend([mount for mount in mounts if not mount.base.startswith(full)][:1])
        jobs = [
            (layer, full[len(mount.base) :] if full.startswith(mount.base) else "")
            for mount in holders
            for layer in _encrypt_layers(mount.driver)
        ]
    if not jobs:
        raise InvalidArgumentError(f"no Encrypt layer holds keys under {base!r}")
    total = 0
    if progress is not None:
        for layer, inside in jobs:
            async for _ in layer.inner.iter_keys(inside):
                total += 1
        progress(0, total)
    tally = _Tally(progress, total)
    for layer, inside in jobs:
        await _Rotation(layer, tally).run(inside)
    logger.info(
        "rotated %d of %d values under %r to the newest key", tally.rewritten, tally.done, base
    )
    return tally.rewritten


def _encrypt_layers(driver: Driver) -> list[Encrypt]:
    found: list[Encrypt] = []
    while isinstance(driver, Layer):
        if isinstance(driver, Encrypt):
            found.append(driver)
        driver = driver.inner
    return found


def _meta_is_listed(driver: Driver) -> bool:
    """True when user meta under ``driver`` is a sibling entry that listing returns.

    That is the `Driver` default, which pass-through layers keep; such entries are rotated
    as items (with compare-and-set), the others through the user-meta calls.
    """
    while isinstance(driver, Layer) and type(driver).get_user_meta is Layer.get_user_meta:
        driver = driver.inner
    return type(driver).get_user_meta is Driver.get_user_meta


class _Tally:
    __slots__ = ("done", "progress", "rewritten", "total")

    def __init__(self, progress: Progress | None, total: int) -> None:
        self.progress = progress
        self.total = total
        self.done = 0
        self.rewritten = 0

    def advance(self, done: int, rewritten: int) -> None:
        self.done += done
        self.rewritten += rewritten
        self.total = max(self.total, self.done)
        if self.progress is not None:
            self.progress(self.done, self.total)


class _Rotation:
    """One `Encrypt` layer's rotation: chunks of keys read in batches, old ones rewritten."""

    __slots__ = ("cas", "inner", "layer", "listed_meta", "tally")

    def __init__(self, layer: Encrypt, tally: _Tally) -> None:
        self.layer = layer
        self.inner = layer.inner
        self.cas = layer.inner.capabilities.conditional
        self.listed_meta = _meta_is_listed(layer.inner)
        self.tally = tally

    async def run(self, base: str) -> None:
        chunk: list[str] = []
        async for key in self.inner.iter_keys(base):
            chunk.append(key)
            if len(chunk) >= _ROTATE_CHUNK:
                await self._chunk(chunk)
                chunk = []
        if chunk:
            await self._chunk(chunk)

    async def _chunk(self, keys: list[str]) -> None:
        try:
            values = await self.inner.get_items(keys)
        except Exception as exc:
            fail(self.inner.name, "rotate", keys[0], exc)
        listed_meta, is_stale = self.listed_meta, self.layer.is_stale
        work: list[Callable[[], Awaitable[bool]]] = [
            functools.partial(self._item, key)
            for key, data in zip(keys, values, strict=True)
            if data is not None and is_stale(data) and (listed_meta or not is_meta_key(key))
        ]
        if not listed_meta:
            work.extend(functools.partial(self._meta, key) for key in keys if not is_meta_key(key))
        rewritten = 0
        for start in range(0, len(work), _ROTATE_PARALLEL):
            batch = work[start : start + _ROTATE_PARALLEL]
            # Every rewrite of a batch finishes before the first failure is raised.
            results = await asyncio.gather(*(job() for job in batch), return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException):
                    raise result
                rewritten += result
        self.tally.advance(len(keys), rewritten)

    async def _item(self, key: str) -> bool:
        inner = self.inner
        try:
            for _ in range(_ROTATE_ATTEMPTS):
                data, etag = await inner.get_item_with_etag(key)
                fresh = None if data is None else self.layer.reseal(key, data)
                if fresh is None:
                    return False  # removed, or rewritten under the newest key meanwhile
                ttl = (await inner.get_meta(key)).get("ttl") if inner.capabilities.ttl else None
                if ttl is not None and ttl <= 0:
                    return False
                if not self.cas or etag is None:
                    await inner.set_item(key, fresh, ttl=ttl)
                    return True
                try:
                    await inner.set_item_conditional(key, fresh, ttl=ttl, if_match=etag)
                except ConflictError:
                    continue  # written meanwhile: read it again
                return True
        except Exception as exc:
            fail(inner.name, "rotate", key, exc)
        raise ConflictError(key, "it kept changing while being re-encrypted")

    async def _meta(self, key: str) -> bool:
        try:
            data = await self.inner.get_user_meta(key)
            fresh = None if data is None else self.layer.reseal(meta_key(key), data)
            if fresh is None:
                return False
            await self.inner.set_user_meta(key, fresh)
        except Exception as exc:
            fail(self.inner.name, "rotate", key, exc)
        return True
