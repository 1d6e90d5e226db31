"""The server's routes for the full storage surface, over real HTTP (uvicorn on a free port):
ETags from PUT, increment, touch, renewed reads, pages of a listing, and streamed bodies."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import httpx
import orjson
import pytest

from drivers.memory import MemoryDriver
from storage import Driver, create_storage
from tests.fixtures.http import ServerThread

RAW = {"content-type": "application/octet-stream"}
OCTET = {"accept": "application/octet-stream"}
MIB = 1024 * 1024


class _FailsMidway(MemoryDriver):
    """Streams the first chunk of a value, then loses its backend."""

    async def read_chunks(self, key: str, chunk_size: int) -> AsyncIterator[bytes] | None:
        value = await self.get_item(key)
        if value is None:
            return None

        async def chunks() -> AsyncIterator[bytes]:
            yield value[:chunk_size]
            raise ConnectionError("backend lost midway")

        return chunks()


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    storage = create_storage(mounts={"flaky": _FailsMidway()})
    with ServerThread(storage, max_body=4 * MIB) as running:
        yield running


@pytest.fixture(scope="module")
def http(server: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url) as client:
        yield client


@pytest.fixture(scope="module")
def guarded() -> Iterator[httpx.Client]:
    with (
        ServerThread(tokens=["writer"], read_tokens=["reader"]) as running,
        httpx.Client(base_url=running.url, headers={"authorization": "Bearer reader"}) as client,
    ):
        yield client


# -- writes answer their version --------------------------------------------------------------


def test_a_put_answers_the_etag_of_what_it_stored(http: httpx.Client) -> None:
    for headers in ({}, RAW, {"if-none-match": "*"}):
        http.delete("/put/k")
        put = http.put("/put/k", content=b"1", headers=headers)
        assert put.status_code == 200
        assert put.headers["etag"] == http.head("/put/k").headers["etag"]


# -- increment --------------------------------------------------------------------------------


def test_increment_creates_at_zero_and_answers_the_new_value(http: httpx.Client) -> None:
    assert http.post("/hits?increment").json() == 1
    assert http.post("/hits?increment=10").json() == 11
    assert http.post("/hits?increment=-20").json() == -9
    assert http.get("/hits").json() == -9


def test_increment_gives_a_new_counter_its_ttl(http: httpx.Client) -> None:
    assert http.post("/window?increment", headers={"x-ttl": "100"}).json() == 1
    assert 90 < float(http.head("/window").headers["x-ttl"]) <= 100


@pytest.mark.parametrize("by", ["1.5", "ten", "1e3", " 1"])
def test_increment_by_anything_but_an_integer_is_400(http: httpx.Client, by: str) -> None:
    response = http.post(f"/bad-by?increment={by}")
    assert (response.status_code, response.json()["code"]) == (400, "invalid_argument")


def test_incrementing_a_value_that_is_not_an_integer_is_400(http: httpx.Client) -> None:
    http.put("/text", content=b"five")
    response = http.post("/text?increment")
    assert (response.status_code, response.json()["code"]) == (400, "invalid_argument")
    assert http.get("/text").text == "five"


# -- sliding expiry ---------------------------------------------------------------------------


def test_touch_renews_a_ttl_and_says_whether_the_key_exists(http: httpx.Client) -> None:
    http.put("/session", content=b"1", headers={"x-ttl": "10"})
    assert http.post("/session?touch", headers={"x-ttl": "100"}).json() == {"found": True}
    assert 90 < float(http.head("/session").headers["x-ttl"]) <= 100
    assert http.post("/absent?touch", headers={"x-ttl": "100"}).json() == {"found": False}


def test_touch_without_a_ttl_is_400(http: httpx.Client) -> None:
    response = http.post("/session?touch")
    assert (response.status_code, response.json()["code"]) == (400, "invalid_argument")


def test_a_get_with_x_renew_ttl_renews_as_it_reads(http: httpx.Client) -> None:
    http.put("/renewed", content=b'"v"', headers={"x-ttl": "10"})
    got = http.get("/renewed", headers={"x-renew-ttl": "100"})
    assert got.text == "v"
    assert got.headers["x-renew-ttl"] == "100"  # the server says it renewed
    assert 90 < float(got.headers["x-ttl"]) <= 100
    assert http.get("/gone", headers={"x-renew-ttl": "100"}).status_code == 404


def test_renewing_reads_and_atomic_operations_need_a_token_that_writes(
    guarded: httpx.Client,
) -> None:
    assert guarded.get("/k", headers={"x-renew-ttl": "5"}).status_code == 403
    assert guarded.post("/k?increment").status_code == 403
    assert guarded.post("/k?touch", headers={"x-ttl": "5"}).status_code == 403
    assert guarded.get("/k").status_code == 404  # reading alone is allowed


def test_post_on_a_key_without_an_operation_is_405(http: httpx.Client) -> None:
    assert http.post("/k").status_code == 405


# -- pages ------------------------------------------------------------------------------------


def test_a_listing_comes_in_pages_that_resume_from_a_cursor(http: httpx.Client) -> None:
    keys = [f"pages/k{n:02d}" for n in range(7)]
    body = {"set": [[key.removeprefix("pages/"), "MQ=="] for key in keys]}
    http.post("/pages/?batch", content=orjson.dumps(body))
    seen: list[str] = []
    params: dict[str, str] = {"limit": "3"}
    while True:
        page = http.get("/pages/", params=params).json()
        assert set(page) == {"keys", "cursor"}
        assert len(page["keys"]) <= 3
        seen.extend(page["keys"])
        if page["cursor"] is None:
            break
        params["cursor"] = page["cursor"]
    assert seen == keys
    assert sorted(http.get("/pages/").json()) == keys  # without ?limit: unstorage's array


@pytest.mark.parametrize(
    "params", [{"limit": "0"}, {"limit": "many"}, {"cursor": "x"}, {"limit": "2", "cursor": "?!"}]
)
def test_a_bad_limit_or_cursor_is_400(http: httpx.Client, params: dict[str, str]) -> None:
    response = http.get("/pages/", params=params)
    assert (response.status_code, response.json()["code"]) == (400, "invalid_argument")


# -- streamed bodies --------------------------------------------------------------------------


def _chunks(count: int, size: int = 64 * 1024) -> Iterator[bytes]:
    for index in range(count):
        yield bytes([index % 256]) * size


def test_a_raw_put_streams_in_and_a_large_raw_get_streams_out(http: httpx.Client) -> None:
    sent = b"".join(_chunks(48))  # 3 MiB, sent chunked (no Content-Length)
    put = http.put("/big", content=_chunks(48), headers=RAW)
    assert put.status_code == 200
    got = http.get("/big", headers=OCTET)
    assert got.content == sent
    assert "content-length" not in got.headers  # streamed, not read whole
    assert got.headers["etag"] == put.headers["etag"] == http.head("/big").headers["etag"]


def test_a_streamed_put_over_the_body_limit_is_413_and_stores_nothing(
    http: httpx.Client,
) -> None:
    http.put("/limited", content=b"old", headers=RAW)
    response = http.put("/limited", content=_chunks(80), headers=RAW)  # 5 MiB > 4 MiB
    assert (response.status_code, response.json()["code"]) == (413, "too_large")
    assert http.get("/limited", headers=OCTET).content == b"old"


def test_a_stream_cut_by_its_backend_drops_the_connection(http: httpx.Client) -> None:
    assert http.put("/flaky/big", content=_chunks(32), headers=RAW).status_code == 200
    with pytest.raises(httpx.RemoteProtocolError):
        http.get("/flaky/big", headers=OCTET)


def test_a_driver_that_streams_is_used_for_values_of_unknown_size() -> None:
    class _NoSize(MemoryDriver):
        async def get_meta(self, key: str) -> dict[str, object]:
            return {
                key: value for key, value in (await super().get_meta(key)).items() if key != "size"
            }

    driver: Driver = _NoSize()
    with (
        ServerThread(create_storage(driver)) as running,
        httpx.Client(base_url=running.url) as http,
    ):
        http.put("/small", content=b"abc", headers=RAW)
        got = http.get("/small", headers=OCTET)
        assert got.content == b"abc"
        assert got.headers["etag"] == http.head("/small").headers["etag"]


class _Endless(MemoryDriver):
    """A value that never ends, counting the chunks read from it."""

    def __init__(self) -> None:
        super().__init__()
        self.produced = 0

    async def get_meta(self, key: str) -> dict[str, object]:
        return {"etag": "1"}  # no size: the server streams it

    async def read_chunks(self, key: str, chunk_size: int) -> AsyncIterator[bytes] | None:
        async def chunks() -> AsyncIterator[bytes]:
            while True:
                self.produced += 1
                yield bytes(chunk_size)
                await asyncio.sleep(0)

        return chunks()


async def test_a_client_that_goes_away_stops_the_stream_it_was_reading() -> None:
    endless = _Endless()
    with ServerThread(create_storage(endless)) as running:
        async with (
            httpx.AsyncClient(base_url=running.url) as http,
            http.stream("GET", "/forever", headers=OCTET) as response,
        ):
            assert response.status_code == 200
            await anext(response.aiter_bytes())
        await asyncio.sleep(0.5)
        stopped_at = endless.produced
        await asyncio.sleep(0.5)
        assert endless.produced == stopped_at
