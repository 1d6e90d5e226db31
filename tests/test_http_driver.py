"""The http driver: what is special about talking to a server (the conformance suite does the rest)."""

from __future__ import annotations

import asyncio
import os
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from drivers.http import HttpDriver
from drivers.memory import MemoryDriver
from drivers.s3 import S3Driver
from storage import (
    Capabilities,
    ConflictError,
    Driver,
    DriverError,
    InvalidKeyError,
    ReadOnlyError,
    UnsupportedError,
    create_driver,
    create_storage,
)
from storage.layers import ReadOnly
from tests.fixtures.http import ServerThread
from tests.fixtures.s3 import S3_BUCKET
from tests.servers import free_port


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    with ServerThread() as running:
        yield running


@pytest.fixture(scope="module")
def guarded() -> Iterator[ServerThread]:
    with ServerThread(tokens=["w"], read_tokens=["r"]) as running:
        yield running


async def test_the_url_path_is_a_key_prefix_on_the_server(server: ServerThread) -> None:
    async with (
        create_storage(f"{server.url}/apps/one") as one,
        create_storage(server.url) as root,
    ):
        await one.set_item("cfg:a", 1)
        assert await one.get_keys() == ["cfg:a"]
        assert await root.get_item("apps:one:cfg:a") == 1
        assert "apps:one:cfg:a" in await root.get_keys("apps")
        await one.clear()
        assert await root.get_keys("apps:one") == []


async def test_values_travel_raw_so_any_bytes_round_trip(server: ServerThread) -> None:
    driver = HttpDriver(base=f"{server.url}/raw")
    await driver.set_item("k", b"\x00\xff not json")
    assert await driver.get_item("k") == b"\x00\xff not json"
    await driver.dispose()


async def test_batches_take_one_request_per_thousand_keys(server: ServerThread) -> None:
    async with create_storage(f"{server.url}/bulk") as storage:
        await storage.set_items({f"k{i}": i for i in range(2500)})
        got = await storage.get_items([f"k{i}" for i in range(2500)])
        assert list(got.values()) == list(range(2500))


async def test_a_token_is_sent_as_a_bearer_token(guarded: ServerThread) -> None:
    async with create_storage(HttpDriver(base=guarded.url, token="w")) as writer:
        await writer.set_item("k", "v")
    async with create_storage(create_driver(guarded.url, token="r")) as reader:
        assert await reader.get_item("k") == "v"
        with pytest.raises(DriverError, match="403"):
            await reader.set_item("k", "w")


async def test_a_missing_token_is_a_driver_error_naming_401(guarded: ServerThread) -> None:
    async with create_storage(guarded.url) as anonymous:
        with pytest.raises(DriverError, match="401"):
            await anonymous.get_item("k")


async def test_a_read_only_server_raises_read_only_error() -> None:
    with ServerThread(read_only=True) as running:
        async with create_storage(running.url) as storage:
            with pytest.raises(ReadOnlyError):
                await storage.set_item("k", 1)
            assert await storage.get_item("k") is None


async def test_a_body_over_the_server_limit_is_a_driver_error() -> None:
    with ServerThread(max_body=64) as running:
        async with create_storage(running.url) as storage:
            await storage.set_items({f"k{i}": "x" * 20 for i in range(4)})  # split, not refused
            assert len(await storage.get_keys()) == 4
            with pytest.raises(DriverError, match="413"):
                await storage.set_item_raw("big", b"x" * 100)


async def test_a_server_that_is_down_fails_fast_with_a_driver_error() -> None:
    async with create_storage(f"http://127.0.0.1:{free_port()}?timeout=2") as storage:
        with pytest.raises(DriverError):
            await storage.get_item("k")


def test_url_query_options_become_driver_options() -> None:
    driver = create_driver("https://example.invalid/base/path?timeout=3&max_connections=7")
    assert isinstance(driver, HttpDriver)
    assert driver.base == "https://example.invalid/base/path/"
    assert driver.capabilities == Capabilities(ttl=True, conditional=True, bounded=True)


def test_read_only_in_the_url_puts_the_read_only_layer_in_front() -> None:
    driver = create_driver("https://example.invalid/base?read_only=true")
    assert isinstance(driver, ReadOnly)
    assert isinstance(driver.inner, HttpDriver)
    assert driver.capabilities.read_only is True


def test_non_http_bases_are_rejected() -> None:
    with pytest.raises(ValueError, match="http"):
        HttpDriver(base="ftp://example.invalid/")


async def test_a_percent_encoded_base_path_is_decoded_once(server: ServerThread) -> None:
    async with (
        create_storage(f"{server.url}/my%20space/x") as spaced,
        create_storage(server.url) as root,
    ):
        await spaced.set_item("k", 1)
        assert await root.get_item("my space:x:k") == 1
        assert await spaced.get_keys() == ["k"]


class _FlakyListing(MemoryDriver):
    """Lists a first page of keys, then loses its backend."""

    async def iter_keys(
        self, base: str = "", *, max_depth: int | None = None
    ) -> AsyncIterator[str]:
        for index in range(1500):  # more than the core's first page, so the answer has begun
            yield f"k{index}"
        raise ConnectionError("backend lost midway")


async def test_a_listing_cut_short_by_the_server_is_an_error_not_a_short_list() -> None:
    with ServerThread(create_storage(_FlakyListing())) as running:
        async with create_storage(running.url) as storage:
            with pytest.raises(DriverError, match="cut the listing short"):
                await storage.get_keys()
        async with create_storage(running.url) as storage:
            with pytest.raises(DriverError, match="502"):
                await storage.get_keys("empty")  # a failure before the first key is a 502


# -- errors are read by code ------------------------------------------------------------------


class _NoTTL(MemoryDriver):
    """A store without expiry."""

    capabilities = Capabilities(conditional=True)


async def test_refusals_come_back_as_the_storage_errors_their_codes_name() -> None:
    storage = create_storage(mounts={"frozen": ReadOnly(MemoryDriver()), "plain": _NoTTL()})
    with ServerThread(storage) as running:
        async with create_storage(running.url) as remote:
            with pytest.raises(ReadOnlyError):
                await remote.set_item("frozen:k", 1)
            with pytest.raises(UnsupportedError):
                await remote.set_item("plain:k", 1, ttl=5)
            await remote.set_item("plain:k", 1, if_none_match=True)
            with pytest.raises(ConflictError):
                await remote.set_item("plain:k", 2, if_none_match=True)
        driver = HttpDriver(base=running.url)
        with pytest.raises(InvalidKeyError):
            await driver.get_item("del\x7f")  # past the client's checks, refused by the server
        await driver.dispose()


async def test_the_etag_from_a_read_makes_a_conditional_write(server: ServerThread) -> None:
    async with create_storage(f"{server.url}/cas") as storage:
        await storage.set_item("k", 1)
        value, etag = await storage.get_item_with_etag("k")
        assert (value, etag) == (1, (await storage.get_meta("k"))["etag"])
        await storage.set_item("k", 2, if_match=etag)
        with pytest.raises(ConflictError):
            await storage.set_item("k", 3, if_match=etag)
        assert await storage.get_item("k") == 2


# -- the connection pool (issue 10, item 11) --------------------------------------------------


class _Slow(MemoryDriver):
    """Takes its time over every read."""

    async def get_item_with_etag(self, key: str) -> tuple[bytes | None, str | None]:
        await asyncio.sleep(1.0)
        return await super().get_item_with_etag(key)

    async def get_meta(self, key: str) -> dict[str, Any]:
        await asyncio.sleep(1.0)
        return await super().get_meta(key)


async def test_three_hundred_concurrent_reads_through_one_driver_all_succeed(
    server: ServerThread,
) -> None:
    driver = create_driver(f"{server.url}/pool?max_connections=50&pool_timeout=30")
    async with create_storage(driver) as storage:
        await storage.set_items({f"k{i}": i for i in range(300)})
        values = await asyncio.gather(*(storage.get_item(f"k{i}") for i in range(300)))
    assert values == list(range(300))


async def test_a_request_that_finds_no_free_connection_in_time_fails_clearly() -> None:
    with ServerThread(create_storage(_Slow())) as running:
        url = f"{running.url}?max_connections=1&pool_timeout=0.2"
        async with create_storage(url) as storage:
            results = await asyncio.gather(
                storage.get_item("a"), storage.get_item("b"), return_exceptions=True
            )
    assert None in results
    (failure,) = [result for result in results if isinstance(result, BaseException)]
    assert isinstance(failure, DriverError)
    assert "no free connection" in str(failure)


@pytest.mark.parametrize("options", ["max_connections=0", "max_connections=x", "pool_timeout=0"])
def test_pool_options_out_of_range_are_refused(options: str) -> None:
    with pytest.raises(ValueError, match=r"max_connections|pool_timeout"):
        create_driver(f"http://127.0.0.1:1/?{options}")


# -- the full surface over the protocol (issue 12) --------------------------------------------


async def test_increment_touch_and_renewed_reads_are_one_request_each(
    server: ServerThread,
) -> None:
    async with create_storage(f"{server.url}/atomic") as storage:
        assert await storage.increment("hits", 5, ttl=100) == 5
        assert await storage.increment("hits", -2) == 3
        assert 90 < (await storage.get_meta("hits"))["ttl"] <= 100
        await storage.set_item("session", {"user": 1}, ttl=10)
        assert await storage.touch("session", 200) is True
        assert await storage.get_item("session", renew_ttl=300) == {"user": 1}
        assert 290 < (await storage.get_meta("session"))["ttl"] <= 300
        assert await storage.touch("absent", 5) is False


async def test_pages_come_from_the_servers_own_pages(server: ServerThread) -> None:
    async with (
        create_storage(f"{server.url}/paged") as storage,
        create_storage(server.url) as root,
    ):
        await storage.set_items({f"k{n:02d}": n for n in range(25)})
        await root.set_item("pagedx", 1)  # beside the prefix, never in its pages
        keys, cursor = await storage.list_keys(limit=10)
        assert keys == [f"k{n:02d}" for n in range(10)]
        assert cursor is not None
        rest, end = await storage.list_keys(limit=100, cursor=cursor)
        assert (rest, end) == ([f"k{n:02d}" for n in range(10, 25)], None)


class _Counting(Driver):
    """Keeps only the size of a value streamed into it, and streams that many bytes back."""

    name = "counting"
    capabilities = Capabilities(bounded=True)

    def __init__(self) -> None:
        self.sizes: dict[str, int] = {}

    async def get_item(self, key: str) -> bytes | None:
        size = self.sizes.get(key)
        return None if size is None else bytes(size)

    async def set_item(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        self.sizes[key] = len(value)

    async def remove_item(self, key: str) -> None:
        self.sizes.pop(key, None)

    async def iter_keys(
        self, base: str = "", *, max_depth: int | None = None
    ) -> AsyncIterator[str]:
        for key in list(self.sizes):
            yield key

    async def get_meta(self, key: str) -> dict[str, Any]:
        return {"size": self.sizes[key]} if key in self.sizes else {}

    async def read_chunks(self, key: str, chunk_size: int) -> AsyncIterator[bytes] | None:
        size = self.sizes.get(key)
        if size is None:
            return None

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, size, chunk_size):
                yield bytes(min(chunk_size, size - start))

        return chunks()

    async def write_chunks(
        self, key: str, chunks: AsyncIterator[bytes], *, ttl: float | None = None
    ) -> str | None:
        self.sizes[key] = sum([len(chunk) async for chunk in chunks])
        return None


async def test_streaming_through_server_and_driver_keeps_memory_flat() -> None:
    allowed = 4 * 1024 * 1024
    size = 20 * allowed
    chunk = 256 * 1024
    backend = _Counting()
    with ServerThread(create_storage(backend), max_body=size) as running:
        async with create_storage(running.url) as storage:
            await storage.has_item("big")  # the connection (and TLS defaults) set up first
            tracemalloc.start()  # the server's thread is traced too
            try:
                async with storage.open_write("big") as writer:
                    for _ in range(size // chunk):
                        await writer.write(bytes(chunk))  # a new chunk each time
                write_peak = tracemalloc.get_traced_memory()[1]
                tracemalloc.reset_peak()
                read = 0
                async with storage.open_read("big") as reader:
                    async for part in reader:
                        read += len(part)
                read_peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
    assert backend.sizes["big"] == read == size
    assert write_peak < allowed, f"writing grew {write_peak / 2**20:.1f} MiB"
    assert read_peak < allowed, f"reading grew {read_peak / 2**20:.1f} MiB"


async def test_a_stream_over_the_servers_body_limit_is_a_driver_error_and_stores_nothing() -> None:
    with ServerThread(max_body=1024 * 1024) as running:
        async with create_storage(running.url) as storage:
            await storage.set_item_raw("blob", b"old")

            async def stream_too_much() -> None:
                async with storage.open_write("blob") as writer:
                    for _ in range(40):  # 2.5 MiB
                        await writer.write(bytes(64 * 1024))

            with pytest.raises(DriverError):
                await stream_too_much()
            assert await storage.get_item_raw("blob") == b"old"


async def test_a_stream_through_the_server_lands_in_s3_in_parts(s3_shared_client: Any) -> None:
    backend = S3Driver(
        S3_BUCKET, f"t-{uuid.uuid4().hex[:12]}", client=s3_shared_client, part_size=5 * 2**20
    )
    payload = os.urandom(11 * 2**20)
    with ServerThread(create_storage(backend), max_body=len(payload)) as running:
        async with create_storage(running.url) as storage:
            async with storage.open_write("video") as writer:
                for start in range(0, len(payload), 1 << 20):
                    await writer.write(payload[start : start + (1 << 20)])
            assert writer.etag is not None
            assert writer.etag.endswith("-3")  # S3's multipart ETag, through the server
            async with storage.open_read("video") as reader:
                assert await reader.read() == payload
            await storage.clear()


# -- against a server that speaks only unstorage's protocol -----------------------------------


async def test_against_unstorages_server_atomic_operations_are_unsupported(
    unstorage_origin: str,
) -> None:
    async with create_storage(unstorage_origin) as storage:
        await storage.set_item("k", 1, ttl=60)
        with pytest.raises(UnsupportedError):
            await storage.increment("n")
        with pytest.raises(UnsupportedError):
            await storage.touch("k", 60)
        with pytest.raises(UnsupportedError):
            await storage.get_item("k", renew_ttl=60)  # never a read that silently did not renew
        await storage.clear()


async def test_against_unstorages_server_pages_and_streams_still_work(
    unstorage_origin: str,
) -> None:
    async with create_storage(unstorage_origin) as storage:
        await storage.set_items({f"p:{n}": n for n in range(5)})
        keys, cursor = await storage.list_keys("p", limit=3)
        rest, end = await storage.list_keys("p", limit=3, cursor=cursor)
        assert (sorted(keys + rest), end) == ([f"p:{n}" for n in range(5)], None)
        async with storage.open_write("blob") as writer:
            await writer.write(b"streamed ")
            await writer.write(b"bytes")
        async with storage.open_read("blob") as reader:
            assert await reader.read() == b"streamed bytes"
        await storage.clear()


async def test_a_stream_opened_and_left_unread_gives_its_connection_back(
    server: ServerThread,
) -> None:
    async with create_storage(f"{server.url}/unread?max_connections=1&pool_timeout=2") as storage:
        await storage.set_item_raw("big", b"x" * 100_000)
        for _ in range(3):
            async with storage.open_read("big"):
                pass  # left without reading a byte
        assert await storage.get_item_raw("big") == b"x" * 100_000
