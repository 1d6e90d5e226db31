"""What the server answers when things go wrong: one clear error, never a leak, never a
half-answer that looks whole."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from drivers.memory import MemoryDriver
from storage import DriverError, InvalidArgumentError, Storage, create_storage
from storage.server import StorageServer
from tests.fixtures.http import ServerThread

OCTET = "application/octet-stream"


class _DeniedMeta(MemoryDriver):
    """Items are served, metadata is refused (as S3 refuses a denied HEAD)."""

    name = "denied"

    async def get_meta(self, key: str) -> dict[str, Any]:
        raise PermissionError("access denied")


class _Leaky(MemoryDriver):
    """A backend whose failures name a server path and a host:port, as real ones do."""

    name = "leaky"
    detail = "[Errno 13] Permission denied: '/srv/store/.tmp-4711-139' (10.0.0.7:6379)"

    async def get_item(self, key: str) -> bytes | None:
        raise PermissionError(self.detail)

    async def get_item_with_etag(self, key: str) -> tuple[bytes | None, str | None]:
        raise PermissionError(self.detail)

    async def set_item(self, key: str, value: bytes, *, ttl: float | None = None) -> str:
        raise PermissionError(self.detail)


class _FailsMidListing(MemoryDriver):
    """Lists more than a page of keys, then loses its backend."""

    async def iter_keys(
        self, base: str = "", *, max_depth: int | None = None
    ) -> AsyncIterator[str]:
        for index in range(1500):
            yield f"k{index}"
        raise ConnectionError("backend lost midway")


@contextlib.asynccontextmanager
async def _served(storage: Storage) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=StorageServer(storage))
    async with httpx.AsyncClient(transport=transport, base_url="http://storage") as client:
        yield client


# -- one error, said once (issue 9) -----------------------------------------------------------


async def test_a_driver_failing_in_get_meta_is_one_driver_error_through_storage() -> None:
    storage = create_storage(_DeniedMeta())
    await storage.set_item("k", 1)
    with pytest.raises(DriverError) as caught:
        await storage.get_meta("k")
    assert str(caught.value) == "denied driver failed in get_meta on key 'k': access denied"


async def test_a_driver_failing_in_get_meta_is_one_unrepeated_502_from_the_server() -> None:
    storage = create_storage(_DeniedMeta())
    await storage.set_item("k", 1)
    async with _served(storage) as http:
        response = await http.get("/k")
    assert response.status_code == 502
    body = response.json()
    assert body["message"] == "denied driver failed in get_item_with_meta on key 'k'"
    assert body["code"] == "driver_error"


async def test_a_driver_failing_in_get_meta_is_one_driver_error_through_the_http_driver() -> None:
    storage = create_storage(_DeniedMeta())
    await storage.set_item("k", 1)
    with ServerThread(storage) as server:
        async with create_storage(server.url) as remote:
            with pytest.raises(DriverError) as caught:
                await remote.get_item("k")  # a GET sends the meta headers too
    message = str(caught.value)
    assert message.count("failed in get_meta") == 1
    assert "access denied" not in message


# -- nothing leaks (issue 10, item 10) --------------------------------------------------------


async def test_a_backend_failure_answers_operation_key_and_code_but_no_detail(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with _served(create_storage(mounts={"data": _Leaky()})) as http:
        with caplog.at_level(logging.WARNING, logger="storage.server"):
            got = await http.get("/data/doc")
            put = await http.put("/data/doc", content=b"1")
    for response, operation in ((got, "get_item_with_meta"), (put, "set_item")):
        assert response.status_code == 502
        body = response.json()
        assert (body["code"], body["operation"], body["key"]) == (
            "driver_error",
            operation,
            "data:doc",
        )
        assert "/srv/store" not in response.text
        assert "10.0.0.7" not in response.text
        assert "Permission denied" not in response.text
    assert _Leaky.detail in caplog.text  # the whole story is in the server's log


# -- listings that fail midway (issue 10, item 7) ---------------------------------------------


def test_a_listing_that_fails_midway_is_cut_off_not_completed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with (
        ServerThread(create_storage(_FailsMidListing())) as server,
        caplog.at_level(logging.ERROR, logger="storage.server"),
    ):
        with pytest.raises(httpx.RemoteProtocolError):
            httpx.get(f"{server.url}/")
        assert httpx.get(f"{server.url}/k1").status_code == 404  # the server lives on
    assert "failed after" in caplog.text


# -- small ones (issue 10, item 13) -----------------------------------------------------------


async def test_a_max_depth_of_non_ascii_digits_is_400() -> None:
    async with _served(create_storage()) as http:
        response = await http.get("/tree/", params={"max_depth": "²"})
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_argument"


async def test_content_types_are_compared_without_case() -> None:
    async with _served(create_storage()) as http:
        headers = {"content-type": "Application/Octet-Stream"}
        assert (await http.put("/k", content=b"hello", headers=headers)).status_code == 200
        got = await http.get("/k", headers={"accept": "Application/Octet-Stream"})
    assert got.content == b"hello"
    assert got.headers["content-type"] == OCTET


async def test_a_non_ascii_digit_content_length_is_not_a_500() -> None:
    async with _served(create_storage()) as http:
        response = await http.put(
            "/k", content=b"1", headers=[(b"content-length", "¹".encode("latin-1"))]
        )
    assert response.status_code < 500


@pytest.mark.parametrize("token", ["tök", "secret\n", "two words", "tab\there", ""])
def test_a_token_that_could_never_authenticate_is_refused_at_start(token: str) -> None:
    with pytest.raises(InvalidArgumentError, match="token") as caught:
        StorageServer(create_storage(), tokens=[token])
    if token:
        assert token not in str(caught.value)  # a secret is not echoed
    with pytest.raises(InvalidArgumentError, match="read token"):
        StorageServer(create_storage(), read_tokens=[token])


async def test_an_error_body_has_the_fields_of_unstorage_1_and_2_and_adds_a_code() -> None:
    async with _served(create_storage()) as http:
        response = await http.get("/missing")
    assert response.json() == {
        "statusCode": 404,  # unstorage 1 (h3)
        "statusMessage": "KV value not found",
        "status": 404,  # unstorage 2
        "statusText": "KV value not found",
        "message": "KV value not found",
        "code": "not_found",
        "key": "missing",
    }
