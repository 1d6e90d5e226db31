"""The wire protocol's rules on their own: each writer read back by its reader."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from storage import (
    ConflictError,
    DriverError,
    InvalidArgumentError,
    InvalidKeyError,
    ReadOnlyError,
    SerializationError,
    UnsupportedError,
)
from storage.protocol import (
    JSON,
    MAX_PAGE,
    OCTET,
    TEXT,
    Code,
    EntityTag,
    HttpStatusError,
    ListingReader,
    ListingWriter,
    Preconditions,
    ProtocolError,
    ValueBodies,
    accepts,
    batch_body,
    code_of,
    counter_body,
    error_body,
    error_fields,
    error_of_answer,
    format_etag,
    key_path,
    media_type,
    page_body,
    parse_batch,
    parse_batch_values,
    parse_by,
    parse_counter,
    parse_etag,
    parse_etags,
    parse_limit,
    parse_max_depth,
    parse_page,
    parse_touched,
    parse_ttl,
    read_put_body,
    remove_if,
    status_of,
    touched_body,
    value_body,
)
from storage.values import default_serializer

# -- paths and headers ------------------------------------------------------------------------


def test_a_key_becomes_a_percent_encoded_path() -> None:
    assert key_path("a:b c:é?#") == "/a/b%20c/%C3%A9%3F%23"
    assert key_path("a:b:", base=True) == "/a/b/"
    assert key_path("", base=True) == "/"


def test_media_types_ignore_case_and_parameters() -> None:
    assert media_type("Application/Octet-Stream; charset=x") == "application/octet-stream"
    assert accepts("text/html, APPLICATION/OCTET-STREAM;q=0.9", "application/octet-stream")
    assert not accepts("*/*", "application/octet-stream")


@pytest.mark.parametrize("raw", ["soon", "-1", "inf", "nan", "0.0", "١٢"])
def test_a_bad_x_ttl_is_an_invalid_argument_naming_the_header(raw: str) -> None:
    with pytest.raises(InvalidArgumentError, match="x-ttl"):
        parse_ttl(raw)


def test_no_x_ttl_empty_or_zero_means_no_expiry() -> None:
    assert [parse_ttl(raw) for raw in (None, "", "0")] == [None, None, None]
    assert parse_ttl("1.5") == 1.5


@pytest.mark.parametrize("raw", ["²", "-1", "1.0", "deep", "1" * 12])
def test_max_depth_is_ascii_digits(raw: str) -> None:
    with pytest.raises(InvalidArgumentError, match="max_depth"):
        parse_max_depth(raw)


# -- ETags ------------------------------------------------------------------------------------


@pytest.mark.parametrize("token", ["123", "a-b-c", '"quoted-by-s3"', "has space", 'in"side', "é%"])
def test_an_etag_is_quoted_exactly_once_and_reads_back(token: str) -> None:
    header = format_etag(token)
    assert header[0] == header[-1] == '"'
    assert '"' not in header[1:-1]
    assert all(0x21 <= ord(char) <= 0x7E for char in header)
    assert parse_etag(header) == token.strip('"') if token.startswith('"') else token


def test_conditional_headers_parse_star_lists_and_weak_tags() -> None:
    assert parse_etags(" * ", "If-Match") == "*"
    assert parse_etags('"a", W/"b" ,"c"', "If-Match") == (
        EntityTag("a"),
        EntityTag("b", weak=True),
        EntityTag("c"),
    )


@pytest.mark.parametrize("header", ["a", '"a', '"a" "b"', 'w/"a"', '"a",,x'])
def test_a_malformed_conditional_header_is_an_invalid_argument(header: str) -> None:
    with pytest.raises(InvalidArgumentError, match="If-Match"):
        parse_etags(header, "If-Match")


def _conditions(**headers: str) -> Preconditions:
    return Preconditions.from_headers({name.replace("_", "-"): v for name, v in headers.items()})


@pytest.mark.parametrize(
    ("headers", "exists", "etag", "failed"),
    [
        ({"if_match": "*"}, False, None, "If-Match"),
        ({"if_match": "*"}, True, "1", None),
        ({"if_match": '"2", "1"'}, True, "1", None),
        ({"if_match": 'W/"1"'}, True, "1", "If-Match"),
        ({"if_match": '"1"'}, True, '"1"', None),
        ({"if_none_match": "*"}, True, "1", "If-None-Match"),
        ({"if_none_match": "*"}, False, None, None),
        ({"if_none_match": 'W/"1"'}, True, "1", "If-None-Match"),
        ({"if_none_match": '"2"'}, True, "1", None),
        ({"if_match": '"1"', "if_none_match": '"1"'}, True, "1", "If-None-Match"),
    ],
)
def test_preconditions_follow_rfc_9110(
    headers: dict[str, str], exists: bool, etag: str | None, failed: str | None
) -> None:
    assert _conditions(**headers).failed(exists, etag) == failed


# -- bodies -----------------------------------------------------------------------------------


def test_a_batch_body_reads_back_with_full_keys() -> None:
    body = batch_body("set", items=[("a", b"\x00"), ("b:c", b"")], ttl=5)
    batch = parse_batch(body, "base:")
    assert (batch.op, batch.keys, batch.values, batch.ttl) == (
        "set",
        ("base:a", "base:b:c"),
        (b"\x00", b""),
        5,
    )
    assert parse_batch(batch_body("remove", ["x"]), "").keys == ("x",)


@pytest.mark.parametrize(
    "body", [{"remove": "ab"}, {"get": "abc"}, {"get": [1]}, {"set": [["a", "!"]]}, []]
)
def test_a_malformed_batch_says_what_a_batch_is(body: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="a batch is"):
        parse_batch(orjson.dumps(body), "")


def test_batch_answers_are_checked_by_the_client() -> None:
    assert parse_batch_values(b'{"ok":true,"values":["AA==",null]}', 2) == [b"\x00", None]
    for answer in (b'{"values":["AA=="]}', b'{"values":[1, 2]}', b"[]", b"{"):
        with pytest.raises(ProtocolError):
            parse_batch_values(answer, 2)


def test_a_listing_reads_back_whole_and_cut_short_is_an_error() -> None:
    writer = ListingWriter()
    body = b"".join([writer.key("a:b"), writer.key("c"), writer.end()]).decode()
    reader = ListingReader()
    keys = [key for line in body.splitlines() for key in reader.feed(line)]
    reader.finish()
    assert keys == ["a:b", "c"]
    cut = ListingReader()
    for line in body.splitlines()[:-1]:
        cut.feed(line)
    with pytest.raises(ProtocolError, match="cut the listing short"):
        cut.finish()


@pytest.mark.parametrize("body", ['["a","b/c"]', '[\n  "a",\n  "b/c"\n]', '[\n"a",\n"b/c"]'])
def test_a_listing_from_another_server_reads_too(body: str) -> None:
    reader = ListingReader()
    assert [key for line in body.splitlines() for key in reader.feed(line)] == ["a", "b:c"]
    reader.finish()


def test_a_key_ending_in_a_bracket_does_not_end_a_listing() -> None:
    reader = ListingReader()
    assert reader.feed("[") == []
    assert reader.feed('"a]",') == ["a]"]
    with pytest.raises(ProtocolError):
        reader.finish()


def test_put_bodies_are_bytes_json_or_text() -> None:
    assert read_put_body(b"x", "Application/Octet-Stream").raw
    assert read_put_body(b'{"a": 1}', "application/json").raw
    assert read_put_body(b'{"$tagged": "note"}', None).raw  # not the envelope's shape
    enveloped = read_put_body(b'{"$tagged": 1, "value": 2}', None)
    assert (enveloped.raw, enveloped.value) == (False, {"$tagged": 1, "value": 2})
    assert read_put_body(b"hello", "text/plain").value == "hello"
    with pytest.raises(InvalidArgumentError, match="UTF-8"):
        read_put_body(b"\xff", None)


def test_a_get_body_is_text_json_the_unwrapped_envelope_or_bytes() -> None:
    loads = default_serializer.loads
    assert value_body(b'"hi"', loads) == (b"hi", "text/plain; charset=utf-8")
    assert value_body(b"[1]", loads) == (b"[1]", "application/json")
    assert value_body(b"\xff", loads) == (b"\xff", "application/octet-stream")
    doc = {"$tagged": 1, "value": "x"}
    assert orjson.loads(value_body(default_serializer.dumps(doc), loads)[0]) == doc
    tagged = default_serializer.dumps({1, 2})
    assert value_body(tagged, loads) == (tagged, "application/json")


class _CountingLoads:
    """The serializer's loads, counting its calls (`value_body` calls it for the envelope)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, data: bytes) -> Any:
        self.calls += 1
        return default_serializer.loads(data)


def _tagged(n: int) -> bytes:
    return default_serializer.dumps({"$tagged": n, "value": "x"})


def test_value_bodies_answer_as_value_body_and_parse_a_value_once() -> None:
    loads = _CountingLoads()
    bodies = ValueBodies(loads)
    data = _tagged(1)
    assert bodies.get("k", data) == value_body(data, default_serializer.loads)
    assert bodies.get("k", data) == bodies.get("k", bytes(bytearray(data)))  # equal bytes
    assert loads.calls == 1


def test_value_bodies_see_every_change_of_the_stored_bytes() -> None:
    bodies = ValueBodies(default_serializer.loads)
    assert bodies.get("k", b'"hi"') == (b"hi", TEXT)
    assert bodies.get("k", b'"ho"') == (b"ho", TEXT)  # same size, same key: another answer
    assert bodies.get("k", b"[1]") == (b"[1]", JSON)
    assert bodies.get("k", b"\xff") == (b"\xff", OCTET)
    assert bodies.get("other", b"[1]") == (b"[1]", JSON)


def test_value_bodies_keep_a_bounded_number_of_small_values() -> None:
    loads = _CountingLoads()
    bodies = ValueBodies(loads, keys=2, max_bytes=64)
    for key in ("a", "b", "c"):
        bodies.get(key, _tagged(1))
    assert (len(bodies), loads.calls) == (2, 3)
    bodies.get("a", _tagged(1))  # the oldest went first: parsed again
    bodies.get("c", _tagged(1))
    assert loads.calls == 4
    large = default_serializer.dumps({"$tagged": 1, "value": "x" * 64})
    bodies.get("c", large)  # too large to keep: its key's older answer goes too
    bodies.get("c", large)
    assert (len(bodies), loads.calls) == (1, 6)


# -- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InvalidKeyError("k", "why"), Code.INVALID_KEY),
        (InvalidArgumentError("bad"), Code.INVALID_ARGUMENT),
        (SerializationError("no", key="k"), Code.SERIALIZATION),
        (ConflictError("k"), Code.CONFLICT),
        (ReadOnlyError("k", "memory"), Code.READ_ONLY),
        (UnsupportedError("no"), Code.UNSUPPORTED),
    ],
)
def test_a_storage_error_crosses_the_wire_and_comes_back_typed(error: Exception, code: str) -> None:
    assert isinstance(error, (InvalidArgumentError, SerializationError, ConflictError,
                              ReadOnlyError, UnsupportedError))  # fmt: skip
    assert code_of(error) == code
    fields = error_fields(error)
    body = error_body(status_of(code), code, fields.pop("message"), **fields)
    back = error_of_answer(status_of(code), body, "k")
    assert type(back) is type(error)
    if isinstance(back, ReadOnlyError):
        assert (back.key, back.driver) == ("k", "http")  # refused behind the http driver
    else:
        assert str(back) == str(error)


def test_a_driver_error_crosses_the_wire_without_its_detail() -> None:
    error = DriverError("redis", "get_item", "k", "connection to 10.0.0.7:6379 refused")
    fields = error_fields(error)
    assert fields == {"message": "redis driver failed in get_item on key 'k'",
                      "operation": "get_item", "key": "k"}  # fmt: skip
    body = error_body(502, Code.DRIVER_ERROR, fields.pop("message"), **fields)
    back = error_of_answer(502, body, "k")
    assert isinstance(back, HttpStatusError)
    assert (back.status, back.code) == (502, "driver_error")


def test_the_client_reads_codes_never_messages() -> None:
    body = orjson.dumps({"statusCode": 405, "message": "the server is read-only"})
    assert isinstance(error_of_answer(405, body, "k"), HttpStatusError)
    coded = error_of_answer(405, b"", "k", {"x-error-code": "read_only"})
    assert isinstance(coded, ReadOnlyError)


def test_an_answer_without_a_code_is_read_by_its_status() -> None:
    assert isinstance(error_of_answer(412, b"", "k"), ConflictError)
    assert isinstance(error_of_answer(400, b"{}", "k"), InvalidArgumentError)
    assert isinstance(error_of_answer(501, b"", "k"), UnsupportedError)
    assert isinstance(error_of_answer(500, b"oops", "k"), HttpStatusError)


# -- the storage surface (issue 12) -----------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "by"), [("", 1), ("5", 5), ("-7", -7), ("+2", 2), ("9" * 40, int("9" * 40))]
)
def test_an_increment_takes_any_integer_and_defaults_to_one(raw: str, by: int) -> None:
    assert parse_by(raw) == by


@pytest.mark.parametrize("raw", ["1.5", "x", "1e3", " 1", "--1"])
def test_an_increment_by_anything_else_is_an_invalid_argument(raw: str) -> None:
    with pytest.raises(InvalidArgumentError):
        parse_by(raw)


def test_counter_and_touch_answers_read_back() -> None:
    for value in (0, -3, 2**70):
        assert parse_counter(counter_body(value)) == value
    assert parse_touched(touched_body(True)) is True
    assert parse_touched(touched_body(False)) is False
    with pytest.raises(ProtocolError):
        parse_counter(b'"1"')
    with pytest.raises(ProtocolError):
        parse_touched(b'{"found": 1}')


def test_a_page_reads_back_and_a_whole_listing_is_told_apart() -> None:
    body = page_body(["a:b", "c"], "next")
    assert orjson.loads(body) == {"keys": ["a/b", "c"], "cursor": "next"}
    assert parse_page(body) == (["a:b", "c"], "next")
    assert parse_page(page_body([], None)) == ([], None)
    assert parse_page(b'["a", "b"]') is None  # a server without pages ignored ?limit
    for malformed in (b'{"keys": [1]}', b'{"keys": [], "cursor": 3}', b"nope"):
        with pytest.raises(ProtocolError):
            parse_page(malformed)


@pytest.mark.parametrize("raw", ["0", "-1", "ten", "1" * 10])
def test_a_page_limit_is_a_positive_integer(raw: str) -> None:
    assert parse_limit("25") == 25
    assert MAX_PAGE >= 1000
    with pytest.raises(InvalidArgumentError):
        parse_limit(raw)


class _Versions:
    """One key's state for `remove_if`: whether it exists, its version, the removes asked."""

    def __init__(self, etag: str | None) -> None:
        self.etag = etag
        self.removes: list[str | None] = []

    async def probe(self) -> tuple[bool, str | None]:
        return self.etag is not None, self.etag

    async def remove(self, if_match: str | None) -> None:
        if if_match not in (None, "*", self.etag) or (if_match and self.etag is None):
            raise ConflictError("k")
        self.removes.append(if_match)
        self.etag = None


@pytest.mark.parametrize(
    ("headers", "etag", "removes", "fails"),
    [
        ({}, "1", [None], False),
        ({"if-match": '"1"'}, "1", ["1"], False),
        ({"if-match": '"2"'}, "1", [], True),
        ({"if-match": "*"}, "1", ["*"], False),
        ({"if-match": "*"}, None, [], True),
        ({"if-match": '"0", "1"'}, "1", ["1"], False),
        ({"if-none-match": "*"}, "1", [], True),
        ({"if-none-match": "*"}, None, [], False),
        ({"if-none-match": '"2"'}, "1", ["1"], False),
    ],
)
async def test_a_conditional_remove_removes_only_what_its_headers_allow(
    headers: dict[str, str], etag: str | None, removes: list[str | None], fails: bool
) -> None:
    key = _Versions(etag)
    conditions = Preconditions.from_headers(headers)
    if fails:
        with pytest.raises(ConflictError):
            await remove_if("k", conditions, key.probe, key.remove)
    else:
        await remove_if("k", conditions, key.probe, key.remove)
    assert key.removes == removes
