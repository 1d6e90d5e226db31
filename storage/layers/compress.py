"""`Compress`: values stored as zstd frames behind a header, small ones as they are.

A compressed value is stored as ``FF 5A 53 01`` (``"\\xffZS"`` and header version 1) followed by
one zstd frame that records its content size and a checksum. No JSON or UTF-8 text starts with
the byte FF, and a zstd frame a user stored themselves starts with 28 B5 2F FD, so a value
written before the layer was added reads as it is.

The rule that keeps this unambiguous: a value written through the layer that starts with
``FF 5A 53`` is always stored framed, whatever its size. A value stored *before* the layer was
added that starts with those three bytes is read as a frame: it fails with
`DecompressionError` naming its key, and should be rewritten through the layer.
"""

from __future__ import annotations

from typing import Any

from ..driver import Driver
from ..errors import InvalidArgumentError, SerializationError, UnsupportedError
from ..layer import ValueLayer

__all__ = ["Compress", "DecompressionError"]

_PREFIX = b"\xffZS"
_VERSION = 1
_HEADER = _PREFIX + bytes([_VERSION])
# A zstd frame is at least a 4-byte magic, a 2-byte header and a 3-byte block header.
_SMALLEST = len(_HEADER) + 9
_MIN_LEVEL = -(1 << 17)
_DEFAULT_MAX_SIZE = 64 * 1024 * 1024
_MAX_WINDOW = 1 << 27


class DecompressionError(SerializationError):
    """A stored frame is corrupt, truncated, or would decompress beyond ``max_size``."""


class Compress(ValueLayer):
    """Values of ``min_size`` bytes or more stored zstd-compressed; smaller ones as they are.

    ``min_size`` is in bytes (default 1024); ``level`` is zstd's (default 3; 1-22, negative for
    faster); ``max_size`` bounds a decompressed value (default 64 MiB): a frame that declares
    more is refused, and a larger value is stored uncompressed. ``get_meta()["size"]`` is the
    original size, the size `get_item_raw` returns (read from the frame header, so
    ``get_meta`` reads the value); user meta is stored as it is.
    """

    layer_name = "compress"

    def __init__(
        self,
        inner: Driver,
        *,
        min_size: int = 1024,
        level: int = 3,
        max_size: int = _DEFAULT_MAX_SIZE,
    ) -> None:
        try:
            import zstandard
        except ImportError as exc:
            raise UnsupportedError(
                "the Compress layer needs the zstandard package: pip install 'unistorage[compress]'"
            ) from exc
        if not _is_int(min_size) or min_size < 0:
            raise InvalidArgumentError(f"min_size is a number of bytes >= 0, not {min_size!r}")
        if not _is_int(level) or not _MIN_LEVEL <= level <= zstandard.MAX_COMPRESSION_LEVEL:
            raise InvalidArgumentError(
                f"level is a zstd level up to {zstandard.MAX_COMPRESSION_LEVEL}, not {level!r}"
            )
        if not _is_int(max_size) or max_size < 1:
            raise InvalidArgumentError(f"max_size is a number of bytes > 0, not {max_size!r}")
        super().__init__(inner)
        self.min_size = min_size
        self.level = level
        self.max_size = max_size
        self._zstd_error: type[Exception] = zstandard.ZstdError
        self._content_size = zstandard.frame_content_size
        # One compressor and decompressor per layer: neither may be used by two threads at once,
        # which a layer (called on its event loop) never does.
        self._compress = zstandard.ZstdCompressor(
            level=level, write_checksum=True, write_content_size=True
        ).compress
        window = min(_MAX_WINDOW, max(1 << 10, 1 << (max_size - 1).bit_length()))
        self._decompressor = zstandard.ZstdDecompressor(max_window_size=window)

    # -- the frame ----------------------------------------------------------------------------

    def _pack(self, key: str, value: bytes) -> bytes:
        size = len(value)
        if size < self.min_size or size > self.max_size:
            if not value.startswith(_PREFIX):
                return value
            if size > self.max_size:
                raise InvalidArgumentError(
                    f"a value of {size} bytes starting with the compression header cannot be "
                    f"stored: more than max_size ({self.max_size}) (key {key!r})"
                )
        return _HEADER + self._compress(value)

    def _unpack(self, key: str, data: bytes) -> bytes:
        if not data.startswith(_PREFIX):
            return data
        if len(data) < _SMALLEST or data[len(_PREFIX)] != _VERSION:
            raise DecompressionError(
                "the stored value has a compression header but no readable frame", key=key
            )
        frame = memoryview(data)[len(_HEADER) :]
        size = self._declared_size(key, frame)
        reader = self._decompressor.decompressobj()
        try:
            value = reader.decompress(frame)
        except self._zstd_error as exc:
            raise DecompressionError(f"the stored frame is corrupt: {exc}", key=key) from exc
        if not reader.eof or reader.unused_data or len(value) != size:
            raise DecompressionError(
                "the stored frame is truncated or followed by other bytes", key=key
            )
        return value

    def _declared_size(self, key: str, frame: memoryview) -> int:
        try:
            size = self._content_size(frame)
        except self._zstd_error as exc:
            raise DecompressionError(f"the stored frame is corrupt: {exc}", key=key) from exc
        if size < 0:
            raise DecompressionError("the stored frame does not declare its size", key=key)
        if size > self.max_size:
            raise DecompressionError(
                f"the stored frame would decompress to {size} bytes, more than max_size "
                f"({self.max_size})",
                key=key,
            )
        return int(size)

    def encode(self, key: str, value: bytes) -> bytes:
        return self._pack(key, value)

    def decode(self, key: str, data: bytes) -> bytes:
        return self._unpack(key, data)

    # -- meta ---------------------------------------------------------------------------------

    async def get_meta(self, key: str) -> dict[str, Any]:
        meta = await self.inner.get_meta(key)
        size = meta.get("size")
        if not isinstance(size, int) or size < _SMALLEST:
            return meta  # too small to hold a frame: stored as it is
        data = await self.inner.get_item(key)
        if data is None:
            return {}  # removed between the two reads
        if data.startswith(_PREFIX):
            size = self._declared_size(key, memoryview(data)[len(_HEADER) :])
        else:
            size = len(data)
        return {**meta, "size": size}


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
