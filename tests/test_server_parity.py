"""Our server beside unstorage's own (1.17 and 2.0 beta, on node): the same requests, the same
answers, except for the differences docs/server.md lists, each checked here as it stands.

Needs ``npm install --prefix tests/node``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.http import ServerThread
from tests.servers import free_port

NODE_DIR = Path(__file__).parent / "node"
OCTET = {"accept": "application/octet-stream"}
UNSTORAGE = ("unstorage1", "unstorage2")


def _unstorage(node: str, major: int) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    process = subprocess.Popen(
        [node, str(NODE_DIR / "interop.mjs"), "serve", str(port)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "UNSTORAGE_MAJOR": str(major)},
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "listening"
    return process, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, httpx.Client]]:
    """A client for each server: ours (over memory), unstorage 1's and unstorage 2's."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed; the parity tests need node >= 18")
    processes = []
    try:
        with ServerThread() as ours:
            urls = {"unistorage": ours.url}
            for major, name in enumerate(UNSTORAGE, start=1):
                process, urls[name] = _unstorage(node, major)
                processes.append(process)
            clients = {name: httpx.Client(base_url=url) for name, url in urls.items()}
            yield clients
            for client in clients.values():
                client.close()
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=10)
            if process.stdout is not None:
                process.stdout.close()


@pytest.fixture
def base() -> str:
    """A fresh key prefix, so that tests sharing the servers never meet."""
    return f"/t{uuid.uuid4().hex[:10]}"


def each(
    servers: dict[str, httpx.Client], method: str, path: str, **options: Any
) -> dict[str, httpx.Response]:
    """The answer of every server to the same request."""
    return {name: client.request(method, path, **options) for name, client in servers.items()}


def bodies(answers: dict[str, httpx.Response]) -> dict[str, bytes]:
    return {name: answer.content for name, answer in answers.items()}


def statuses(answers: dict[str, httpx.Response]) -> set[int]:
    return {answer.status_code for answer in answers.values()}


# -- the same answers -----------------------------------------------------------------------


def test_a_text_value_reads_back_as_its_text_raw_or_not(
    servers: dict[str, httpx.Client], base: str
) -> None:
    each(servers, "PUT", f"{base}/greeting", content=b"hello")
    assert set(bodies(each(servers, "GET", f"{base}/greeting")).values()) == {b"hello"}
    raw = each(servers, "GET", f"{base}/greeting", headers=OCTET)
    assert set(bodies(raw).values()) == {b"hello"}


def test_json_values_read_back_as_the_same_json(
    servers: dict[str, httpx.Client], base: str
) -> None:
    each(servers, "PUT", f"{base}/doc", content=b'{"a":[1,2],"b":null}')
    each(servers, "PUT", f"{base}/num", content=b"42")
    for path in (f"{base}/doc", f"{base}/num"):
        for headers in ({}, OCTET):
            answers = each(servers, "GET", path, headers=headers)
            assert len({str(answer.json()) for answer in answers.values()}) == 1


def test_a_missing_key_is_404_with_unstorages_error_fields(
    servers: dict[str, httpx.Client], base: str
) -> None:
    answers = each(servers, "GET", f"{base}/absent")
    assert statuses(answers) == {404}
    ours = answers["unistorage"].json()
    one, two = answers["unstorage1"].json(), answers["unstorage2"].json()
    assert (ours["statusCode"], ours["statusMessage"]) == (one["statusCode"], one["statusMessage"])
    assert {name: ours[name] for name in two} == two  # status, statusText, message
    assert statuses(each(servers, "HEAD", f"{base}/absent")) == {404}


@pytest.mark.parametrize("method", ["PUT", "HEAD"])
def test_put_and_head_on_a_base_are_400_with_unstorages_message(
    servers: dict[str, httpx.Client], base: str, method: str
) -> None:
    answers = each(servers, method, f"{base}/dir/")
    assert statuses(answers) == {400}
    if method == "PUT":
        field = {"unstorage1": "statusMessage"}
        messages = {
            answer.json()[field.get(name, "statusText")] for name, answer in answers.items()
        }
        assert messages == {f"Invalid key: {method} is not allowed on a base key"}


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_other_methods_on_a_key_are_405_with_unstorages_message(
    servers: dict[str, httpx.Client], base: str, method: str
) -> None:
    answers = each(servers, method, f"{base}/k")
    assert statuses(answers) == {405}
    ours, two = answers["unistorage"].json(), answers["unstorage2"].json()
    assert ours["statusText"] == two["statusText"] == f"Method Not Allowed: {method}"


def test_a_base_lists_the_same_keys_with_slashes(
    servers: dict[str, httpx.Client], base: str
) -> None:
    for key in ("a", "b/c", "odd%20key/%C3%A9t%C3%A9"):
        each(servers, "PUT", f"{base}/dir/{key}", content=b"1")
    prefix = base.strip("/")
    listed = [sorted(answer.json()) for answer in each(servers, "GET", f"{base}/dir/").values()]
    assert set(map(tuple, listed)) == {
        (f"{prefix}/dir/a", f"{prefix}/dir/b/c", f"{prefix}/dir/odd key/été")
    }


def test_delete_removes_a_key(servers: dict[str, httpx.Client], base: str) -> None:
    each(servers, "PUT", f"{base}/gone", content=b"x")
    assert set(bodies(each(servers, "DELETE", f"{base}/gone")).values()) == {b"OK"}
    assert statuses(each(servers, "GET", f"{base}/gone")) == {404}


# -- the differences docs/server.md lists ---------------------------------------------------


def test_an_empty_put_stores_an_empty_string_as_unstorage_2_does_1_skips_it(
    servers: dict[str, httpx.Client], base: str
) -> None:
    each(servers, "PUT", f"{base}/empty", content=b"")
    answers = each(servers, "GET", f"{base}/empty")
    assert {name: answer.status_code for name, answer in answers.items()} == {
        "unistorage": 200,
        "unstorage1": 404,
        "unstorage2": 200,
    }
    assert answers["unistorage"].content == answers["unstorage2"].content == b""


def test_delete_of_a_base_clears_it_here_and_not_on_unstorages_server(
    servers: dict[str, httpx.Client], base: str
) -> None:
    each(servers, "PUT", f"{base}/dir/a", content=b"1")
    assert statuses(each(servers, "DELETE", f"{base}/dir/")) == {200}
    answers = each(servers, "GET", f"{base}/dir/")
    assert answers["unistorage"].json() == []
    for name in UNSTORAGE:  # its clear(base) reaches only drivers mounted under the base
        assert answers[name].json() == [f"{base.strip('/')}/dir/a"]


def test_max_depth_is_honoured_here_and_ignored_by_unstorage(
    servers: dict[str, httpx.Client], base: str
) -> None:
    each(servers, "PUT", f"{base}/deep/a", content=b"1")
    each(servers, "PUT", f"{base}/deep/b/c", content=b"1")
    answers = each(servers, "GET", f"{base}/deep/?max_depth=0")
    assert answers["unistorage"].json() == [f"{base.strip('/')}/deep/a"]
    for name in UNSTORAGE:
        assert len(answers[name].json()) == 2


def test_a_json_string_sent_as_text_reads_raw_without_its_quotes_here(
    servers: dict[str, httpx.Client], base: str
) -> None:
    # unistorage stores the text '"quoted"' as the string it spells, and a string as its JSON
    # text: from the bytes alone it cannot tell "quoted" sent quoted from sent bare.
    each(servers, "PUT", f"{base}/quoted", content=b'"quoted"')
    assert set(bodies(each(servers, "GET", f"{base}/quoted")).values()) == {b"quoted"}
    raw = bodies(each(servers, "GET", f"{base}/quoted", headers=OCTET))
    assert raw == {"unistorage": b"quoted", "unstorage1": b'"quoted"', "unstorage2": b'"quoted"'}


def test_x_ttl_is_whole_seconds_as_unstorages_http_driver_reads_it(
    servers: dict[str, httpx.Client], base: str
) -> None:
    # unstorage's memory driver reports no TTL, so only ours sends x-ttl here; unstorage's
    # http driver reads it with parseInt (tests/test_unstorage_interop.py reads it back).
    each(servers, "PUT", f"{base}/ttl", content=b"v", headers={"x-ttl": "100"})
    head = servers["unistorage"].head(f"{base}/ttl")
    seconds, max_age = head.headers["x-ttl"], head.headers["cache-control"].removeprefix("max-age=")
    assert seconds.isdigit()
    assert 95 <= int(seconds) <= 100  # 99.9... seconds left is 100: rounded up
    assert int(max_age) == int(seconds) - 1  # and rounded down for caches
    for name in UNSTORAGE:
        assert "x-ttl" not in servers[name].head(f"{base}/ttl").headers


@pytest.mark.parametrize("segment", ["%01b", "%2E%2E/b", "..%2Fb"])
def test_keys_with_control_characters_or_dot_segments_are_always_refused_here(
    servers: dict[str, httpx.Client], base: str, segment: str
) -> None:
    # unstorage refuses some of these and stores others, depending on its version and on
    # how the path was encoded; a key that can climb out of its base is refused here however
    # it is spelled.
    answer = servers["unistorage"].put(f"{base}/{segment}", content=b"x")
    assert answer.status_code == 400
    assert answer.json()["code"] == "invalid_key"


def test_a_string_over_1_mib_read_raw_is_streamed_as_stored_here(
    servers: dict[str, httpx.Client], base: str
) -> None:
    text = b"y" * (2 * 1024 * 1024)
    each(servers, "PUT", f"{base}/big", content=text)
    raw = bodies(each(servers, "GET", f"{base}/big", headers=OCTET))
    assert raw == {"unistorage": b'"' + text + b'"', "unstorage1": text, "unstorage2": text}
