"""The Compress layer: small values as they are, big ones framed, old values readable, bombs refused."""

from __future__ import annotations

import hashlib

import orjson
import pytest
import zstandard

from drivers.memory import MemoryDriver
from drivers.redis import RedisDriver
from storage import InvalidArgumentError, create_storage
from storage.layers.compress import Compress, DecompressionError

HEADER = b"\xffZS\x01"


def _json_document(size: int) -> bytes:
    """About ``size`` bytes of JSON records, each with a token that does not compress."""
    rows = [
        {
            "id": n,
            "name": f"user {n}",
            "email": f"user{n}@example.com",
            "active": n % 3 == 0,
            "token": hashlib.sha256(str(n).encode()).hexdigest()[:16],
            "score": n * 7919 % 1000 / 10,
        }
        for n in range(size // 110 + 1)
    ]
    return orjson.dumps(rows)


async def _stored(inner: MemoryDriver | RedisDriver, key: str) -> bytes:
    data = await inner.get_item(key)
    assert data is not None
    return data


async def test_values_under_min_size_are_stored_as_they_are() -> None:
    inner = MemoryDriver()
    storage = create_storage(Compress(inner, min_size=100))
    await storage.set_item("small", {"a": 1})
    await storage.set_item_raw("blob", b"x" * 99)
    assert await _stored(inner, "small") == b'{"a":1}'
    assert await _stored(inner, "blob") == b"x" * 99


async def test_values_from_min_size_on_are_framed() -> None:
    inner = MemoryDriver()
    storage = create_storage(Compress(inner, min_size=100))
    await storage.set_item_raw("blob", b"x" * 100)
    stored = await _stored(inner, "blob")
    assert stored.startswith(HEADER + zstandard.MAGIC_NUMBER.to_bytes(4, "little"))
    assert await storage.get_item_raw("blob") == b"x" * 100


async def _stores_100_kb_of_json_3x_smaller(inner: MemoryDriver | RedisDriver) -> None:
    storage = create_storage(Compress(inner))
    document = _json_document(100_000)
    assert len(document) >= 100_000
    await storage.set_item_raw("doc", document)
    assert len(await _stored(inner, "doc")) * 3 <= len(document)
    assert await storage.get_item_raw("doc") == document
    assert (await storage.get_meta("doc"))["size"] == len(document)


async def test_100_kb_of_json_is_stored_at_least_3x_smaller() -> None:
    await _stores_100_kb_of_json_3x_smaller(MemoryDriver())


async def test_100_kb_of_json_is_stored_at_least_3x_smaller_on_redis(
    driver_redis: RedisDriver,
) -> None:
    await _stores_100_kb_of_json_3x_smaller(driver_redis)


async def test_values_written_before_the_layer_still_read() -> None:
    inner = MemoryDriver()
    own_frame = zstandard.ZstdCompressor().compress(b"the user's own zstd data")
    before = {
        "json": b'{"a": [1, 2, 3]}',
        "text": "héllo".encode(),
        "binary": bytes(range(256)),
        "empty": b"",
        "own_zstd": own_frame,
        "jpeg_like": b"\xff\xd8\xff\xe0" + b"\x00" * 2000,
    }
    for key, data in before.items():
        await inner.set_item(key, data)
    storage = create_storage(Compress(inner, min_size=0))
    for key, data in before.items():
        assert await storage.get_item_raw(key) == data, key
        assert (await storage.get_meta(key))["size"] == len(data), key
    assert await storage.get_item("json") == {"a": [1, 2, 3]}


async def test_a_small_value_that_starts_with_the_header_is_framed_so_it_reads_back() -> None:
    inner = MemoryDriver()
    storage = create_storage(Compress(inner, min_size=1000))
    lookalike = b"\xffZS\x01 not a frame"
    await storage.set_item_raw("k", lookalike)
    assert (await _stored(inner, "k")) != lookalike
    assert await storage.get_item_raw("k") == lookalike


async def test_values_larger_than_max_size_are_stored_as_they_are() -> None:
    inner = MemoryDriver()
    storage = create_storage(Compress(inner, min_size=10, max_size=1000))
    await storage.set_item_raw("big", b"y" * 2000)
    assert await _stored(inner, "big") == b"y" * 2000
    assert await storage.get_item_raw("big") == b"y" * 2000


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: data[:-1], id="truncated"),
        pytest.param(lambda data: data + b"junk", id="trailing-bytes"),
        pytest.param(lambda data: data[:12], id="header-only"),
        pytest.param(lambda data: data[:-8] + bytes([data[-8] ^ 1]) + data[-7:], id="flipped"),
        pytest.param(lambda data: HEADER[:3] + b"\x02" + data[4:], id="unknown-version"),
    ],
)
async def test_a_corrupt_frame_is_an_error_naming_the_key(damage: object) -> None:
    inner = MemoryDriver()
    storage = create_storage(Compress(inner, min_size=0))
    await storage.set_item_raw("users:ann", _json_document(5000))
    stored = await _stored(inner, "users:ann")
    assert callable(damage)
    await inner.set_item("users:ann", damage(stored))
    with pytest.raises(DecompressionError) as caught:
        await storage.get_item_raw("users:ann")
    assert caught.value.key == "users:ann"
    assert "users:ann" in str(caught.value)


async def test_every_flipped_byte_of_a_small_frame_is_an_error() -> None:
    inner = MemoryDriver()
    layer = Compress(inner, min_size=0)
    await layer.set_item("k", b"compress me, compress me, compress me")
    stored = await _stored(inner, "k")
    for index in range(len(HEADER), len(stored)):
        tampered = bytearray(stored)
        tampered[index] ^= 0x40
        await inner.set_item("k", bytes(tampered))
        with pytest.raises(DecompressionError):
            await layer.get_item("k")


async def test_a_frame_that_declares_more_than_max_size_is_refused() -> None:
    inner = MemoryDriver()
    bomb = zstandard.ZstdCompressor().compress(b"\x00" * 50_000_000)
    assert len(bomb) < 5000
    await inner.set_item("bomb", HEADER + bomb)
    storage = create_storage(Compress(inner, max_size=1_000_000))
    with pytest.raises(DecompressionError, match="more than max_size") as caught:
        await storage.get_item_raw("bomb")
    assert caught.value.key == "bomb"
    with pytest.raises(DecompressionError):
        await storage.get_meta("bomb")


async def test_a_frame_without_a_declared_size_is_refused() -> None:
    inner = MemoryDriver()
    unsized = zstandard.ZstdCompressor(write_content_size=False).compressobj()
    frame = unsized.compress(b"\x00" * 10_000) + unsized.flush()
    await inner.set_item("k", HEADER + frame)
    with pytest.raises(DecompressionError, match="does not declare its size"):
        await create_storage(Compress(inner)).get_item_raw("k")


async def test_batches_and_conditional_writes_go_through_the_frame(
    driver_redis: RedisDriver,
) -> None:
    storage = create_storage(Compress(driver_redis, min_size=0))
    await storage.set_items({"a": "x" * 500, "b": [1] * 300})
    assert await storage.get_items(["a", "b"]) == {"a": "x" * 500, "b": [1] * 300}
    _, etag = await storage.get_item_with_etag("a")
    assert etag is not None
    await storage.set_item("a", "y" * 500, if_match=etag)
    assert (await _stored(driver_redis, "a")).startswith(HEADER)
    assert await storage.get_item("a") == "y" * 500


@pytest.mark.parametrize(
    "options",
    [{"min_size": -1}, {"level": 23}, {"level": 1.5}, {"max_size": 0}, {"min_size": True}],
)
def test_bad_options_are_refused(options: dict[str, object]) -> None:
    with pytest.raises(InvalidArgumentError):
        Compress(MemoryDriver(), **options)  # type: ignore[arg-type]
