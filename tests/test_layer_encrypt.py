"""The Encrypt layer: sealed at rest, bound to its key, rotating, tamper-evident, keyless repr."""

from __future__ import annotations

import base64
import logging

import pytest

from drivers.memory import MemoryDriver
from drivers.redis import RedisDriver
from storage import ConflictError, Driver, InvalidArgumentError, StorageError, create_storage
from storage.layer import Layer
from storage.layers._encrypt_keys import key_id, parse_key
from storage.layers.encrypt import (
    OVERHEAD,
    DecryptionError,
    Encrypt,
    generate_key,
    keys_from_env,
    rotate,
)

OLD, NEW = generate_key(), generate_key()
SECRET = "attack at dawn, bring the big map"


def _key_id_at_rest(data: bytes | None) -> bytes:
    assert data is not None
    return data[4:8]


# -- at rest ----------------------------------------------------------------------------------


async def test_bytes_at_rest_hold_no_plaintext() -> None:
    inner = MemoryDriver()
    storage = create_storage(Encrypt(inner, keys=[NEW]))
    await storage.set_item("doc", {"note": SECRET})
    await storage.set_items({"batch:1": SECRET, "batch:2": SECRET})
    await storage.set_item_raw("raw", SECRET.encode(), ttl=60)
    for key in ("doc", "batch:1", "batch:2", "raw"):
        stored = await inner.get_item(key)
        assert stored is not None
        assert SECRET.encode() not in stored
        assert b"attack" not in stored
    assert await storage.get_item("doc") == {"note": SECRET}
    assert await storage.get_item_raw("raw") == SECRET.encode()


async def test_bytes_at_rest_on_redis_hold_no_plaintext(driver_redis: RedisDriver) -> None:
    storage = create_storage(Encrypt(driver_redis, keys=[NEW]))
    await storage.set_item("doc", SECRET)
    stored = await driver_redis.get_item("doc")
    assert stored is not None
    assert SECRET.encode() not in stored
    assert await storage.get_item("doc") == SECRET


async def test_user_meta_is_encrypted_at_rest() -> None:
    inner = MemoryDriver()
    storage = create_storage(Encrypt(inner, keys=[NEW]))
    await storage.set_item("doc", 1)
    await storage.set_meta("doc", {"owner": SECRET})
    stored = await inner.get_user_meta("doc")
    assert stored is not None
    assert SECRET.encode() not in stored
    assert (await storage.get_meta("doc"))["owner"] == SECRET
    assert (await storage.get_metas_raw(["doc"]))["doc"] == await storage.get_meta_raw("doc")


async def test_the_envelope_names_the_newest_key_by_a_derived_id() -> None:
    inner = MemoryDriver()
    await Encrypt(inner, keys=[NEW, OLD]).set_item("k", b"v")
    stored = await inner.get_item("k")
    assert stored is not None
    assert stored[:4] == b"\xffEN\x01"
    assert _key_id_at_rest(stored) == key_id(parse_key(NEW))
    assert len(stored) == len(b"v") + OVERHEAD


async def test_meta_size_is_the_plaintext_size() -> None:
    storage = create_storage(Encrypt(MemoryDriver(), keys=[NEW]))
    await storage.set_item_raw("k", b"12345")
    assert (await storage.get_meta("k"))["size"] == 5


# -- bound to its key -------------------------------------------------------------------------


async def test_a_value_copied_to_another_key_does_not_decrypt() -> None:
    inner = MemoryDriver()
    storage = create_storage(Encrypt(inner, keys=[NEW]))
    await storage.set_item("alice:balance", 100)
    stolen = await inner.get_item("alice:balance")
    assert stolen is not None
    await inner.set_item("mallory:balance", stolen)
    with pytest.raises(DecryptionError) as caught:
        await storage.get_item("mallory:balance")
    assert caught.value.key == "mallory:balance"
    assert "mallory:balance" in str(caught.value)


async def test_a_value_copied_into_user_meta_does_not_decrypt() -> None:
    inner = MemoryDriver()
    storage = create_storage(Encrypt(inner, keys=[NEW]))
    await storage.set_item("doc", {"owner": "ann"})
    value = await inner.get_item("doc")
    assert value is not None
    await inner.set_user_meta("doc", value)
    with pytest.raises(DecryptionError):
        await storage.get_meta("doc")


async def test_a_value_written_without_the_layer_is_an_error_naming_the_key() -> None:
    inner = MemoryDriver()
    await inner.set_item("plain", b'"hello"')
    with pytest.raises(DecryptionError, match="not an encrypted envelope") as caught:
        await create_storage(Encrypt(inner, keys=[NEW])).get_item("plain")
    assert caught.value.key == "plain"


# -- tampering --------------------------------------------------------------------------------


async def test_a_flipped_bit_anywhere_in_the_envelope_is_an_error_naming_the_key() -> None:
    inner = MemoryDriver()
    layer = Encrypt(inner, keys=[NEW, OLD])
    await layer.set_item("k", b"a short value")
    stored = await inner.get_item("k")
    assert stored is not None
    for bit in range(len(stored) * 8):
        tampered = bytearray(stored)
        tampered[bit // 8] ^= 1 << (bit % 8)
        await inner.set_item("k", bytes(tampered))
        with pytest.raises(DecryptionError) as caught:
            await layer.get_item("k")
        assert caught.value.key == "k", bit


async def test_a_truncated_envelope_is_an_error() -> None:
    inner = MemoryDriver()
    layer = Encrypt(inner, keys=[NEW])
    await layer.set_item("k", b"value")
    stored = await inner.get_item("k")
    assert stored is not None
    for length in (0, 4, 20, len(stored) - 1):
        await inner.set_item("k", stored[:length])
        with pytest.raises(DecryptionError):
            await layer.get_item("k")


async def test_a_value_under_a_dropped_key_names_the_key_and_its_id() -> None:
    inner = MemoryDriver()
    await Encrypt(inner, keys=[OLD]).set_item("k", b"v")
    storage = create_storage(Encrypt(inner, keys=[NEW]))
    with pytest.raises(DecryptionError) as caught:
        await storage.get_item_raw("k")
    assert caught.value.key == "k"
    assert key_id(parse_key(OLD)).hex() in str(caught.value)
    assert isinstance(caught.value, StorageError)


# -- rotation ---------------------------------------------------------------------------------


async def test_a_new_key_list_reads_values_sealed_with_an_older_key() -> None:
    inner = MemoryDriver()
    await create_storage(Encrypt(inner, keys=[OLD])).set_item("k", "v")
    rotated = create_storage(Encrypt(inner, keys=[NEW, OLD]))
    assert await rotated.get_item("k") == "v"
    await rotated.set_item("fresh", "w")
    assert _key_id_at_rest(await inner.get_item("fresh")) == key_id(parse_key(NEW))


async def test_rotate_rewrites_old_values_and_meta_under_the_newest_key() -> None:
    inner = MemoryDriver()
    old = create_storage(Encrypt(inner, keys=[OLD]))
    await old.set_items({f"user:{n}": n for n in range(600)})
    await old.set_meta("user:1", {"owner": "ann"})
    layer = Encrypt(inner, keys=[NEW, OLD])
    await layer.set_item("user:new", b"1")
    assert await rotate(layer) == 601  # 600 values and one user meta; user:new was current
    new_id = key_id(parse_key(NEW))
    for key in await inner.get_keys():
        assert _key_id_at_rest(await inner.get_item(key)) == new_id, key
    only_new = create_storage(Encrypt(inner, keys=[NEW]))
    assert await only_new.get_item("user:599") == 599
    assert (await only_new.get_meta("user:1"))["owner"] == "ann"
    assert await rotate(layer) == 0


async def test_rotate_keeps_the_remaining_ttl(driver_redis: RedisDriver) -> None:
    await create_storage(Encrypt(driver_redis, keys=[OLD])).set_item("k", "v", ttl=100)
    storage = create_storage(Encrypt(driver_redis, keys=[NEW, OLD]))
    assert await rotate(storage) == 1
    assert 90 < (await storage.get_meta("k"))["ttl"] <= 100


async def test_rotate_of_a_storage_covers_only_the_base_and_reports_progress() -> None:
    inner = MemoryDriver()
    old = create_storage(Encrypt(inner, keys=[OLD]))
    await old.set_items({"a:1": 1, "a:2": 2, "b:1": 3})
    storage = create_storage(MemoryDriver()).mount("data", Encrypt(inner, keys=[NEW, OLD]))
    calls: list[tuple[int, int]] = []
    assert (
        await rotate(storage, "data:a", progress=lambda done, total: calls.append((done, total)))
        == 2
    )
    assert calls[0] == (0, 2)
    assert calls[-1] == (2, 2)
    old_id = key_id(parse_key(OLD))
    assert _key_id_at_rest(await inner.get_item("b:1")) == old_id
    assert await rotate(storage.namespace("data"), "b") == 1


async def test_rotate_needs_an_encrypt_layer() -> None:
    with pytest.raises(InvalidArgumentError, match="no Encrypt layer"):
        await rotate(create_storage(MemoryDriver()))


async def test_rotate_finds_encrypt_below_other_layers() -> None:
    inner = MemoryDriver()
    await Encrypt(inner, keys=[OLD]).set_item("k", b"v")
    assert await rotate(Layer(Encrypt(inner, keys=[NEW, OLD]))) == 1


class _RacingWriter(Layer):
    """Lets another writer store a value just before rotation's first compare-and-set."""

    def __init__(self, inner: Driver, writer: Encrypt) -> None:
        super().__init__(inner)
        self.writer = writer
        self.raced = 0

    async def set_item_conditional(
        self,
        key: str,
        value: bytes,
        *,
        ttl: float | None = None,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str | None:
        if not self.raced:
            self.raced += 1
            await self.writer.set_item(key, b"written meanwhile")
        return await super().set_item_conditional(
            key, value, ttl=ttl, if_match=if_match, if_none_match=if_none_match
        )


async def test_rotate_never_overwrites_a_concurrent_write(driver_redis: RedisDriver) -> None:
    await Encrypt(driver_redis, keys=[OLD]).set_item("k", b"old value")
    concurrent = Encrypt(driver_redis, keys=[NEW, OLD])
    layer = Encrypt(_RacingWriter(driver_redis, concurrent), keys=[NEW, OLD])
    assert await rotate(layer) == 0  # the race left the key already under the newest key
    assert await concurrent.get_item("k") == b"written meanwhile"


async def test_conditional_writes_work_through_the_layer(driver_redis: RedisDriver) -> None:
    storage = create_storage(Encrypt(driver_redis, keys=[NEW]))
    await storage.set_item("k", 1, if_none_match=True)
    value, etag = await storage.get_item_with_etag("k")
    assert value == 1
    assert etag is not None
    await storage.set_item("k", 2, if_match=etag)
    with pytest.raises(ConflictError):
        await storage.set_item("k", 3, if_match=etag)
    assert await storage.get_item("k") == 2


# -- key material -----------------------------------------------------------------------------


def test_keys_are_32_bytes_or_base64_text_of_32_bytes() -> None:
    raw = bytes(range(32))
    padded = base64.urlsafe_b64encode(raw).decode()
    assert parse_key(raw) == parse_key(padded) == parse_key(padded.rstrip("=")) == raw
    for bad in (b"short", "not base64 at all!", base64.urlsafe_b64encode(b"x" * 16).decode()):
        with pytest.raises(InvalidArgumentError):
            parse_key(bad)


def test_a_repeated_key_is_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="repeats"):
        Encrypt(MemoryDriver(), keys=[NEW, NEW])
    with pytest.raises(InvalidArgumentError):
        Encrypt(MemoryDriver(), keys=[])


def test_keys_never_appear_in_repr_str_or_errors(caplog: pytest.LogCaptureFixture) -> None:
    raw = parse_key(NEW)
    layer = Encrypt(MemoryDriver(), keys=[NEW, OLD])
    shown = [repr(layer), str(layer), repr(vars(layer)), layer.name]
    for bad in (NEW[:-2] + "!!", NEW + NEW[:4]):
        with pytest.raises(InvalidArgumentError) as caught:
            Encrypt(MemoryDriver(), keys=[bad])
        shown.append(str(caught.value))
    with pytest.raises(InvalidArgumentError) as caught:
        keys_from_env("KEYS", {"KEYS": f"{NEW},{OLD[:10]}"})
    shown.append(str(caught.value))
    shown.extend(record.getMessage() for record in caplog.records)
    for text in shown:
        for secret in (NEW, OLD, NEW.rstrip("="), raw.hex(), repr(raw)):
            assert secret not in text


async def test_rotation_logs_no_key_material(caplog: pytest.LogCaptureFixture) -> None:
    inner = MemoryDriver()
    await Encrypt(inner, keys=[OLD]).set_item("k", b"v")
    with caplog.at_level(logging.DEBUG):
        await rotate(Encrypt(inner, keys=[NEW, OLD]))
    assert caplog.records
    for record in caplog.records:
        assert NEW not in record.getMessage()
        assert OLD not in record.getMessage()


def test_keys_from_env_reads_comma_separated_keys_newest_first() -> None:
    keys = keys_from_env("UNISTORAGE_KEYS", {"UNISTORAGE_KEYS": f" {NEW} , {OLD},"})
    assert keys == [parse_key(NEW), parse_key(OLD)]
    with pytest.raises(InvalidArgumentError, match="UNISTORAGE_KEYS"):
        keys_from_env("UNISTORAGE_KEYS", {})
    with pytest.raises(InvalidArgumentError, match=r"#2 .*ENV_KEYS"):
        keys_from_env("ENV_KEYS", {"ENV_KEYS": f"{NEW},nope"})


async def test_rotate_of_a_storage_skips_keys_shadowed_by_a_mount() -> None:
    root, mounted = MemoryDriver(), MemoryDriver()
    await Encrypt(root, keys=[OLD]).set_item("data:a:1", b"shadowed")
    await Encrypt(mounted, keys=[OLD]).set_item("a:1", b"visible")
    storage = create_storage(Encrypt(root, keys=[NEW, OLD]))
    storage.mount("data", Encrypt(mounted, keys=[NEW, OLD]))
    assert await rotate(storage, "data:a") == 1
    assert _key_id_at_rest(await mounted.get_item("a:1")) == key_id(parse_key(NEW))
    assert _key_id_at_rest(await root.get_item("data:a:1")) == key_id(parse_key(OLD))
    assert await rotate(storage) == 1  # the whole root, shadowed keys included
