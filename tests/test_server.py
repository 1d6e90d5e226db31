"""The storage server, driven over real HTTP (uvicorn on a free port)."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from drivers.fs import FsDriver
from drivers.memory import MemoryDriver
from storage import Driver, create_storage
from storage.layers import ReadOnly
from tests.fixtures.http import ServerThread

OCTET = {"accept": "application/octet-stream"}


class _BrokenDriver(Driver):
    """A backend that fails on every call (a database that went away)."""

    name = "broken"

    async def get_item(self, key: str) -> bytes | None:
        raise ConnectionError("backend unreachable")

    async def set_item(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        raise ConnectionError("backend unreachable")

    async def remove_item(self, key: str) -> None:
        raise ConnectionError("backend unreachable")

    async def iter_keys(
        self, base: str = "", *, max_depth: int | None = None
    ) -> AsyncIterator[str]:
        raise ConnectionError("backend unreachable")
        yield ""


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    storage = create_storage(mounts={"frozen": ReadOnly(MemoryDriver()), "broken": _BrokenDriver()})
    with ServerThread(storage, max_body=1024) as running:
        yield running


@pytest.fixture(scope="module")
def http(server: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url) as client:
        yield client


@pytest.fixture(scope="module")
def guarded() -> Iterator[httpx.Client]:
    with (
        ServerThread(tokens=["writer-token"], read_tokens=["reader-token"]) as running,
        httpx.Client(base_url=running.url) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def read_only() -> Iterator[httpx.Client]:
    with ServerThread(read_only=True) as running, httpx.Client(base_url=running.url) as client:
        yield client


def _error(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert body["statusCode"] == response.status_code
    return body


# -- values -----------------------------------------------------------------------------------


def test_raw_bytes_round_trip_unchanged(http: httpx.Client) -> None:
    data = bytes(range(256))
    put = http.put("/raw/blob", content=data, headers={"content-type": "application/octet-stream"})
    assert (put.status_code, put.text) == (200, "OK")
    got = http.get("/raw/blob", headers=OCTET)
    assert got.content == data
    assert got.headers["content-type"] == "application/octet-stream"


def test_text_that_is_not_json_is_stored_as_a_string(http: httpx.Client) -> None:
    http.put("/text/plain", content=b"hello world", headers={"content-type": "text/plain"})
    stored = http.get("/text/plain", headers={**OCTET, "x-stored-bytes": "1"})
    assert stored.content == b'"hello world"'
    got = http.get("/text/plain")
    assert got.text == "hello world"
    assert got.headers["content-type"].startswith("text/plain")


def test_a_string_read_raw_is_its_text_as_from_unstorage(http: httpx.Client) -> None:
    http.put("/text/raw", content=b"hello")
    assert http.get("/text/raw", headers=OCTET).content == b"hello"
    http.put("/text/doc", content=b'{"a": "b"}')
    assert http.get("/text/doc", headers=OCTET).content == b'{"a": "b"}'


def test_json_bodies_are_stored_as_json_values(http: httpx.Client) -> None:
    http.put("/json/doc", content=b'{"a": [1, 2]}', headers={"content-type": "application/json"})
    got = http.get("/json/doc")
    assert got.headers["content-type"] == "application/json"
    assert got.json() == {"a": [1, 2]}
    http.put("/json/number", content=b"42")
    assert http.get("/json/number").json() == 42


def test_a_json_string_body_reads_back_as_bare_text(http: httpx.Client) -> None:
    http.put("/json/quoted", content=b'"quoted"')
    assert http.get("/json/quoted").text == "quoted"


def test_missing_keys_are_404_with_a_json_error(http: httpx.Client) -> None:
    response = http.get("/does/not/exist")
    assert response.status_code == 404
    assert _error(response)["statusMessage"] == "KV value not found"
    assert http.head("/does/not/exist").status_code == 404


def test_head_reports_meta_headers(http: httpx.Client) -> None:
    http.put("/meta/k", content=b"12345", headers={"x-ttl": "100"})
    head = http.head("/meta/k")
    assert head.status_code == 200
    assert head.headers["last-modified"].endswith("GMT")
    assert 90 < float(head.headers["x-ttl"]) <= 100
    assert head.headers["cache-control"].startswith("max-age=")
    assert head.headers["etag"].startswith('"')
    assert head.headers["x-size"] == "5"
    assert http.get("/meta/k").headers["etag"] == head.headers["etag"]


def test_a_write_without_ttl_has_no_ttl_header(http: httpx.Client) -> None:
    http.put("/meta/forever", content=b"1", headers={"x-ttl": "0"})
    assert "x-ttl" not in http.head("/meta/forever").headers


@pytest.mark.parametrize("ttl", ["soon", "-1", "inf", "nan"])
def test_bad_ttls_are_400(http: httpx.Client, ttl: str) -> None:
    response = http.put("/meta/bad", content=b"1", headers={"x-ttl": ttl})
    assert response.status_code == 400
    assert "x-ttl" in _error(response)["message"]


# -- keys, listing, removal -------------------------------------------------------------------


def test_paths_are_percent_decoded_and_normalized(http: httpx.Client) -> None:
    http.put("/keys/with%20space/%C3%A9t%C3%A9%3Fq", content=b"1")
    assert http.get("/keys:with space:été?q").status_code == 404  # "?" starts a query here
    assert http.get("/keys:with%20space:%C3%A9t%C3%A9%3Fq").json() == 1
    assert http.get("/keys//with%20space\\%C3%A9t%C3%A9%3Fq").json() == 1


def test_a_trailing_separator_lists_a_base_with_slashes(http: httpx.Client) -> None:
    for key in ("tree/a", "tree/b/c", "tree/b/d/e", "treeish/x"):
        http.put(f"/{key}", content=b"1")
    listed = http.get("/tree/")
    assert listed.headers["content-type"] == "application/json"
    assert sorted(listed.json()) == ["tree/a", "tree/b/c", "tree/b/d/e"]
    assert sorted(http.get("/tree:").json()) == ["tree/a", "tree/b/c", "tree/b/d/e"]
    assert sorted(http.get("/tree/", params={"max_depth": 1}).json()) == ["tree/a", "tree/b/c"]
    assert http.get("/nothing/here/").json() == []


def test_a_long_listing_is_one_json_array(http: httpx.Client) -> None:
    for start in range(0, 2000, 40):
        body = {"set": [[f"k{i:05d}", "MQ=="] for i in range(start, start + 40)]}
        assert http.post("/long/?batch", content=orjson.dumps(body)).status_code == 200
    keys = http.get("/long/").json()
    assert len(keys) == 2000
    assert keys[0].startswith("long/k")


def test_delete_removes_an_item_and_a_base_delete_clears_only_that_base(
    http: httpx.Client,
) -> None:
    for key in ("del/a", "del/b/c", "delx"):
        http.put(f"/{key}", content=b"1")
    assert http.delete("/del/a").text == "OK"
    assert http.get("/del/a").status_code == 404
    assert http.delete("/del/").status_code == 200
    assert http.get("/del/").json() == []
    assert http.get("/delx").json() == 1


def test_bad_max_depth_is_400(http: httpx.Client) -> None:
    assert http.get("/tree/", params={"max_depth": "deep"}).status_code == 400


def test_control_characters_in_keys_are_400(http: httpx.Client) -> None:
    response = http.put("/bad%00key", content=b"1")
    assert response.status_code == 400
    assert "control" in _error(response)["message"]


# -- conditional writes -----------------------------------------------------------------------


def test_if_none_match_star_creates_only_once(http: httpx.Client) -> None:
    star = {"if-none-match": "*"}
    assert http.put("/cas/new", content=b"1", headers=star).status_code == 200
    response = http.put("/cas/new", content=b"2", headers=star)
    assert response.status_code == 412
    _error(response)


def test_if_match_writes_only_over_the_expected_version(http: httpx.Client) -> None:
    http.put("/cas/k", content=b"1")
    etag = http.head("/cas/k").headers["etag"]
    assert http.put("/cas/k", content=b"2", headers={"if-match": etag}).status_code == 200
    assert http.put("/cas/k", content=b"3", headers={"if-match": etag}).status_code == 412
    assert http.get("/cas/k").json() == 2


# -- methods, limits, failures ----------------------------------------------------------------


def test_unknown_methods_are_405(http: httpx.Client) -> None:
    response = http.request("PATCH", "/k", content=b"1")
    assert response.status_code == 405
    assert "PUT" in response.headers["allow"]
    assert http.post("/k", content=b"1").status_code == 405


def test_writing_to_or_heading_a_base_is_400(http: httpx.Client) -> None:
    response = http.put("/base/", content=b"1")
    assert response.status_code == 400
    assert "base key" in _error(response)["message"]
    assert http.head("/base/").status_code == 400


def test_a_declared_body_over_the_limit_is_413(http: httpx.Client) -> None:
    response = http.put("/big", content=b"x" * 1025)
    assert response.status_code == 413
    _error(response)
    assert http.get("/big").status_code == 404


def test_a_streamed_body_over_the_limit_is_413(http: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(8):
            yield b"x" * 200

    assert http.put("/big", content=chunks()).status_code == 413


def test_a_write_into_a_read_only_mount_is_405(http: httpx.Client) -> None:
    response = http.put("/frozen/k", content=b"1")
    assert response.status_code == 405
    assert "read-only" in _error(response)["message"]


def test_a_failing_backend_is_502_naming_the_operation_and_key(http: httpx.Client) -> None:
    response = http.get("/broken/k")
    assert response.status_code == 502
    body = _error(response)
    assert body["code"] == "driver_error"
    assert body["key"] == "broken:k"
    assert body["message"] == "broken driver failed in get_item_with_meta on key 'broken:k'"
    assert http.get("/broken/").status_code == 502


# -- user meta and batches --------------------------------------------------------------------


def test_user_meta_lives_beside_the_item(http: httpx.Client) -> None:
    http.put("/um/doc", content=b"1")
    assert http.get("/um/doc?meta").status_code == 404
    assert http.put("/um/doc?meta", content=b'{"owner":"ann"}').status_code == 200
    assert http.get("/um/doc?meta").json() == {"owner": "ann"}
    assert http.get("/um/").json() == ["um/doc"]
    assert http.put("/um/doc?meta", content=b"[1]").status_code == 400
    assert http.put("/um/doc?meta", content=b"not json").status_code == 400
    assert http.delete("/um/doc?meta").status_code == 200
    assert http.head("/um/doc?meta").status_code == 404


def test_batches_get_set_and_remove_many_keys(http: httpx.Client) -> None:
    body = {"set": [["a", "MQ=="], ["b/c", "Mg=="]], "ttl": 60}
    assert http.post("/batch/?batch", content=orjson.dumps(body)).json() == {"ok": True}
    got = http.post("/batch/?batch", content=orjson.dumps({"get": ["a", "b:c", "zz"]}))
    assert got.json()["values"] == ["MQ==", "Mg==", None]
    assert 0 < float(http.head("/batch/a").headers["x-ttl"]) <= 60
    http.post("/batch/?batch", content=orjson.dumps({"remove": ["a"]}))
    assert http.get("/batch/").json() == ["batch/b/c"]


def test_a_batch_that_is_not_a_json_object_or_not_base64_is_400(http: httpx.Client) -> None:
    assert http.post("/batch/?batch", content=b"[1]").status_code == 400
    assert http.post("/batch/?batch", content=b"{nope").status_code == 400
    assert http.post("/batch/?batch", content=b'{"set": [["a", "!"]]}').status_code == 400


# -- authorization ----------------------------------------------------------------------------


def test_without_a_token_requests_are_401(guarded: httpx.Client) -> None:
    response = guarded.get("/k")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    _error(response)


def test_an_unknown_token_is_401(guarded: httpx.Client) -> None:
    response = guarded.get("/k", headers={"authorization": "Bearer nope"})
    assert response.status_code == 401
    assert guarded.get("/k", headers={"authorization": "Basic writer-token"}).status_code == 401


def test_a_read_token_reads_but_may_not_write(guarded: httpx.Client) -> None:
    reader = {"authorization": "Bearer reader-token"}
    writer = {"authorization": "Bearer writer-token"}
    assert guarded.put("/k", content=b"1", headers=writer).status_code == 200
    assert guarded.get("/k", headers=reader).json() == 1
    assert guarded.put("/k", content=b"2", headers=reader).status_code == 403
    assert guarded.delete("/", headers=reader).status_code == 403
    batch = orjson.dumps({"remove": ["k"]})
    assert guarded.post("/?batch", content=batch, headers=reader).status_code == 403
    assert guarded.post("/?batch", content=batch, headers=writer).status_code == 200


def test_a_read_only_server_refuses_writes_with_405(read_only: httpx.Client) -> None:
    response = read_only.put("/k", content=b"1")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"
    assert read_only.delete("/").status_code == 405
    assert read_only.get("/k").status_code == 404
    assert read_only.get("/").json() == []


def test_the_root_lists_every_key(guarded: httpx.Client) -> None:
    writer = {"authorization": "Bearer writer-token"}
    guarded.put("/r/a", content=b"1", headers=writer)
    guarded.put("/s", content=b"1", headers=writer)
    assert {"r/a", "s"} <= set(guarded.get("/", headers=writer).json())


# -- strict bodies (issue 10, item 8) ---------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"remove": "ab"},
        {"get": "abc"},
        {"get": [1]},
        {"remove": [None]},
        {"set": {"a": "MQ=="}},
        {"set": ["ab"]},
        {"set": [["a"]]},
        {"set": [["a", 1]]},
        {"set": [["a", "MQ==", "extra"]]},
        {"set": [["a", "MQ=="]], "ttl": "60"},
        {"set": [["a", "MQ=="]], "ttl": True},
        {"get": ["a"], "ttl": 5},
        {"get": ["a"], "remove": ["a"]},
        {"get": ["a"], "unknown": 1},
        {},
    ],
)
def test_a_malformed_batch_is_400_and_touches_nothing(http: httpx.Client, body: Any) -> None:
    http.put("/strict/a", content=b"1")
    http.put("/strict/b", content=b"1")
    response = http.post("/strict/?batch", content=orjson.dumps(body))
    assert response.status_code == 400
    assert _error(response)["message"].startswith("a batch is")
    assert sorted(http.get("/strict/").json()) == ["strict/a", "strict/b"]


def test_every_key_of_a_batch_is_checked_before_any_write(http: httpx.Client) -> None:
    body = {"set": [["first", "MQ=="], ["../escape", "MQ=="]]}
    response = http.post("/checked/?batch", content=orjson.dumps(body))
    assert (response.status_code, _error(response)["code"]) == (400, "invalid_key")
    assert http.get("/checked/first").status_code == 404


# -- JSON as other clients write it (issue 10, item 9) ----------------------------------------

ENVELOPED = [{"$tagged": 1, "value": {"$t": "bytes", "v": "aGk="}}, {"$tagged": "note"}]


@pytest.mark.parametrize("doc", ENVELOPED)
def test_json_holding_the_envelope_key_reads_back_as_written_over_http(
    http: httpx.Client, doc: dict[str, Any]
) -> None:
    json = {"content-type": "application/json"}
    assert http.put("/env/doc", content=orjson.dumps(doc), headers=json).status_code == 200
    got = http.get("/env/doc")
    assert got.headers["content-type"] == "application/json"
    assert got.json() == doc


@pytest.mark.parametrize("doc", ENVELOPED)
async def test_json_holding_the_envelope_key_reads_back_as_written_in_python(
    server: ServerThread, doc: dict[str, Any]
) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        await http.put("/env/py", content=orjson.dumps(doc))
    async with create_storage(server.url) as storage:
        assert await storage.get_item("env:py") == doc


@pytest.mark.parametrize("doc", ENVELOPED)
async def test_a_python_dict_holding_the_envelope_key_is_that_json_to_other_clients(
    server: ServerThread, doc: dict[str, Any]
) -> None:
    async with create_storage(server.url) as storage:
        await storage.set_item("env:from-python", doc)
    async with httpx.AsyncClient(base_url=server.url) as http:
        assert (await http.get("/env/from-python")).json() == doc


async def test_values_json_cannot_hold_keep_their_tagged_form_over_http(
    server: ServerThread,
) -> None:
    async with create_storage(server.url) as storage:
        await storage.set_item("env:set", {1, 2})
    async with httpx.AsyncClient(base_url=server.url) as http:
        assert (await http.get("/env/set")).json()["$tagged"] == 1


BIG_JSON = [b"123456789012345678901234567890", b'{"n": [-18446744073709551617, 1.5, "x"]}']


@pytest.mark.parametrize("text", BIG_JSON)
async def test_json_with_ints_beyond_64_bits_reads_back_exactly_from_every_client(
    server: ServerThread, text: bytes
) -> None:
    expected = json.loads(text)
    async with httpx.AsyncClient(base_url=server.url) as http:
        await http.put("/big/n", content=text, headers={"content-type": "application/json"})
        got = await http.get("/big/n")
    assert json.loads(got.content) == expected
    async with create_storage(server.url) as storage:
        assert await storage.get_item("big:n") == expected


async def test_a_value_rewritten_behind_the_server_reads_back_new(tmp_path: Path) -> None:
    """The server remembers GET bodies by the stored bytes, never by a version: a file
    rewritten in place with the same size and mtime (so the same fs etag) still reads new."""
    with ServerThread(create_storage(FsDriver(tmp_path))) as running:
        async with httpx.AsyncClient(base_url=running.url) as http:
            await http.put("/doc", content=b'"first"')
            first = await http.get("/doc")
            stat = (tmp_path / "doc").stat()
            (tmp_path / "doc").write_bytes(b'"other"')
            os.utime(tmp_path / "doc", ns=(stat.st_atime_ns, stat.st_mtime_ns))
            again = await http.get("/doc")
            assert (first.text, again.text) == ("first", "other")
            assert again.headers["etag"] == first.headers["etag"]
            (tmp_path / "doc").write_bytes(b"[1, 2]")
            assert (await http.get("/doc")).json() == [1, 2]
