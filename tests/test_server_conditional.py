"""Conditional requests on the server (RFC 9110, section 13), and compare-and-set under load."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from drivers.memory import MemoryDriver
from storage import ConflictError, Driver, Storage, create_storage
from storage.server import StorageServer
from tests.fixtures.http import ServerThread

OCTET = {"accept": "application/octet-stream"}
RAW = {"content-type": "application/octet-stream"}


class _QuotedEtags(MemoryDriver):
    """Versions spelled with their quotes, as S3 answers them (``"abc"``)."""

    async def get_item_with_etag(self, key: str) -> tuple[bytes | None, str | None]:
        value, etag = await super().get_item_with_etag(key)
        return value, None if etag is None else f'"{etag}"'

    async def get_meta(self, key: str) -> dict[str, object]:
        meta = await super().get_meta(key)
        if "etag" in meta:
            meta["etag"] = f'"{meta["etag"]}"'
        return meta

    async def set_item_conditional(
        self,
        key: str,
        value: bytes,
        *,
        ttl: float | None = None,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str | None:
        if if_match is not None:
            if not (if_match.startswith('"') and if_match.endswith('"')):
                raise ConflictError(key)  # its own spelling only, as strict as a backend may be
            if_match = if_match[1:-1]
        return await super().set_item_conditional(
            key, value, ttl=ttl, if_match=if_match, if_none_match=if_none_match
        )

    async def remove_item_conditional(self, key: str, *, if_match: str) -> None:
        if if_match != "*":
            if not (if_match.startswith('"') and if_match.endswith('"')):
                raise ConflictError(key)
            if_match = if_match[1:-1]
        await super().remove_item_conditional(key, if_match=if_match)


class _Unversioned(Driver):
    """A driver that keeps no versions: no atomic conditional writes."""

    name = "unversioned"

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    async def get_item(self, key: str) -> bytes | None:
        return self.data.get(key)

    async def set_item(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        self.data[key] = value

    async def remove_item(self, key: str) -> None:
        self.data.pop(key, None)

    async def iter_keys(
        self, base: str = "", *, max_depth: int | None = None
    ) -> AsyncIterator[str]:
        for key in list(self.data):
            if key.startswith(base):
                yield key


@contextlib.asynccontextmanager
async def _served(storage: Storage | None = None) -> AsyncIterator[httpx.AsyncClient]:
    app = StorageServer(storage if storage is not None else create_storage())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://storage") as client:
        yield client


async def _etag(http: httpx.AsyncClient, path: str) -> str:
    return (await http.head(path)).headers["etag"]


# -- PUT --------------------------------------------------------------------------------------


async def test_if_none_match_with_the_current_etag_refuses_the_write() -> None:
    async with _served() as http:
        await http.put("/k", content=b"1")
        etag = await _etag(http, "/k")
        response = await http.put("/k", content=b"2", headers={"if-none-match": etag})
        assert response.status_code == 412
        assert response.json()["code"] == "precondition_failed"
        assert (await http.get("/k")).json() == 1


async def test_if_none_match_with_another_etag_writes() -> None:
    async with _served() as http:
        await http.put("/k", content=b"1")
        response = await http.put("/k", content=b"2", headers={"if-none-match": '"other"'})
        assert response.status_code == 200
        assert (await http.get("/k")).json() == 2


async def test_if_none_match_compares_weakly() -> None:
    async with _served() as http:
        await http.put("/k", content=b"1")
        weak = "W/" + await _etag(http, "/k")
        assert (
            await http.put("/k", content=b"2", headers={"if-none-match": weak})
        ).status_code == 412


async def test_if_none_match_star_creates_only_once() -> None:
    async with _served() as http:
        star = {"if-none-match": "*"}
        assert (await http.put("/k", content=b"1", headers=star)).status_code == 200
        response = await http.put("/k", content=b"2", headers=star)
        assert (response.status_code, response.json()["code"]) == (412, "conflict")


async def test_if_match_star_writes_only_over_an_existing_value() -> None:
    async with _served() as http:
        star = {"if-match": "*"}
        assert (await http.put("/k", content=b"1", headers=star)).status_code == 412
        assert (await http.get("/k")).status_code == 404
        await http.put("/k", content=b"1")
        assert (await http.put("/k", content=b"2", headers=star)).status_code == 200
        assert (await http.get("/k")).json() == 2


async def test_if_match_accepts_a_list_of_etags() -> None:
    async with _served() as http:
        await http.put("/k", content=b"1")
        listed = f'"stale", {await _etag(http, "/k")}'
        assert (await http.put("/k", content=b"2", headers={"if-match": listed})).status_code == 200
        assert (await http.put("/k", content=b"3", headers={"if-match": listed})).status_code == 412
        assert (await http.get("/k")).json() == 2


async def test_a_weak_etag_never_satisfies_if_match() -> None:
    async with _served() as http:
        await http.put("/k", content=b"1")
        weak = "W/" + await _etag(http, "/k")
        assert (await http.put("/k", content=b"2", headers={"if-match": weak})).status_code == 412


async def test_if_match_and_if_none_match_together_must_both_hold() -> None:
    async with _served() as http:
        await http.put("/k", content=b"1")
        etag = await _etag(http, "/k")
        both = {"if-match": etag, "if-none-match": etag}
        assert (await http.put("/k", content=b"2", headers=both)).status_code == 412
        both = {"if-match": etag, "if-none-match": '"other"'}
        assert (await http.put("/k", content=b"2", headers=both)).status_code == 200


@pytest.mark.parametrize("header", ["abc", '"unterminated', '"a" "b"', "W/abc"])
async def test_a_malformed_conditional_header_is_400(header: str) -> None:
    async with _served() as http:
        response = await http.put("/k", content=b"1", headers={"if-match": header})
        assert (response.status_code, response.json()["code"]) == (400, "invalid_argument")
        assert (await http.get("/k")).status_code == 404


async def test_conditional_writes_on_a_driver_without_versions_are_501() -> None:
    async with _served(create_storage(_Unversioned())) as http:
        await http.put("/k", content=b"1")
        for headers in ({"if-none-match": "*"}, {"if-match": "*"}, {"if-match": '"1"'}):
            response = await http.put("/k", content=b"2", headers=headers)
            assert (response.status_code, response.json()["code"]) == (501, "unsupported")
        assert (await http.get("/k")).json() == 1


# -- GET and HEAD -----------------------------------------------------------------------------


async def test_get_and_head_with_a_matching_if_none_match_are_304() -> None:
    async with _served() as http:
        await http.put("/k", content=b"1")
        etag = await _etag(http, "/k")
        for method in ("GET", "HEAD"):
            for header in (etag, f'"x", W/{etag}', "*"):
                response = await http.request(method, "/k", headers={"if-none-match": header})
                assert response.status_code == 304
                assert response.content == b""
                assert response.headers["etag"] == etag
        assert (await http.get("/k", headers={"if-none-match": '"x"'})).json() == 1


async def test_get_with_a_failing_if_match_is_412() -> None:
    async with _served() as http:
        await http.put("/k", content=b"1")
        assert (await http.get("/k", headers={"if-match": '"x"'})).status_code == 412
        assert (await http.get("/k", headers={"if-match": "*"})).json() == 1


# -- DELETE -----------------------------------------------------------------------------------


async def test_delete_if_none_match_star_removes_only_what_is_absent() -> None:
    async with _served() as http:
        await http.put("/k", content=b"1")
        assert (await http.delete("/k", headers={"if-none-match": "*"})).status_code == 412
        assert (await http.get("/k")).json() == 1
        assert (await http.delete("/gone", headers={"if-none-match": "*"})).status_code == 200


async def test_delete_with_if_match_removes_only_that_version() -> None:
    async with _served() as http:
        await http.put("/k", content=b"1")
        old = await _etag(http, "/k")
        await http.put("/k", content=b"2")
        response = await http.delete("/k", headers={"if-match": old})
        assert (response.status_code, response.json()["code"]) == (412, "precondition_failed")
        assert (await http.get("/k")).json() == 2
        current = await _etag(http, "/k")
        assert (await http.delete("/k", headers={"if-match": current})).status_code == 200
        assert (await http.get("/k")).status_code == 404
        assert (await http.delete("/k", headers={"if-match": current})).status_code == 412


async def test_delete_with_if_match_star_removes_only_an_existing_key() -> None:
    async with _served() as http:
        star = {"if-match": "*"}
        response = await http.delete("/k", headers=star)
        assert (response.status_code, response.json()["code"]) == (412, "conflict")
        await http.put("/k", content=b"1")
        assert (await http.delete("/k", headers=star)).status_code == 200
        assert (await http.get("/k")).status_code == 404


async def test_delete_with_a_list_of_etags_removes_any_of_those_versions() -> None:
    async with _served(create_storage(_QuotedEtags())) as http:
        await http.put("/k", content=b"1")
        listed = f'"stale", {await _etag(http, "/k")}'
        assert (await http.delete("/k", headers={"if-match": listed})).status_code == 200
        assert (await http.get("/k")).status_code == 404


async def test_delete_if_none_match_with_the_current_etag_removes_nothing() -> None:
    async with _served() as http:
        await http.put("/k", content=b"1")
        etag = await _etag(http, "/k")
        assert (await http.delete("/k", headers={"if-none-match": etag})).status_code == 412
        assert (await http.delete("/k", headers={"if-none-match": '"x"'})).status_code == 200
        assert (await http.get("/k")).status_code == 404


async def test_conditional_deletes_on_a_driver_without_versions_are_501() -> None:
    async with _served(create_storage(_Unversioned())) as http:
        await http.put("/k", content=b"1")
        for headers in ({"if-match": "*"}, {"if-match": '"1"'}):
            response = await http.delete("/k", headers=headers)
            assert (response.status_code, response.json()["code"]) == (501, "unsupported")
        assert (await http.get("/k")).json() == 1


async def test_a_base_is_never_cleared_conditionally() -> None:
    async with _served() as http:
        assert (await http.delete("/", headers={"if-match": "*"})).status_code == 501


# -- ETags ------------------------------------------------------------------------------------


async def test_etags_a_driver_spells_with_quotes_are_quoted_once_and_still_match() -> None:
    async with _served(create_storage(_QuotedEtags())) as http:
        await http.put("/k", content=b"1")
        etag = await _etag(http, "/k")
        assert etag.count('"') == 2
        assert (await http.get("/k")).headers["etag"] == etag
        assert (await http.put("/k", content=b"2", headers={"if-match": etag})).status_code == 200
        assert (await http.put("/k", content=b"3", headers={"if-match": etag})).status_code == 412
        assert (await http.get("/k")).json() == 2


async def test_the_etag_of_a_get_names_the_body_it_comes_with() -> None:
    async with _served() as http:
        await http.put("/k", content=b"1")
        first = await http.get("/k")
        await http.put("/k", content=b"2")
        second = await http.get("/k")
        assert first.headers["etag"] != second.headers["etag"]
        stale = {"if-match": first.headers["etag"]}
        assert (await http.put("/k", content=b"3", headers=stale)).status_code == 412


# -- compare-and-set under load (issue 10, item 3) --------------------------------------------

_CLIENTS = 20
_ROUNDS = 3


def _store_url(kind: str, tmp_path: Path) -> str:
    return {
        "memory": "memory://",
        "sqlite": f"sqlite:///{tmp_path}/cas.db",
        "fs": f"file://{tmp_path}/cas",
    }[kind]


@pytest.mark.parametrize("kind", ["memory", "sqlite", "fs"])
async def test_twenty_clients_incrementing_one_counter_with_if_match_lose_nothing(
    kind: str, tmp_path: Path
) -> None:
    with ServerThread(create_storage(_store_url(kind, tmp_path))) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            assert (await http.put("/counter", content=b"0", headers=RAW)).status_code == 200

            async def client() -> int:
                retries = 0
                for _ in range(_ROUNDS):
                    while True:
                        got = await http.get("/counter", headers=OCTET)
                        headers = {**RAW, "if-match": got.headers["etag"]}
                        body = str(int(got.content) + 1).encode()
                        put = await http.put("/counter", content=body, headers=headers)
                        if put.status_code == 200:
                            break
                        assert put.status_code == 412, put.text
                        retries += 1
                return retries

            await asyncio.gather(*(client() for _ in range(_CLIENTS)))
            final = await http.get("/counter", headers=OCTET)
    assert int(final.content) == _CLIENTS * _ROUNDS
