"""What is special about the dynamodb driver: its key layout and Query-only listing of bases,
native counters, TTL and deadlines DynamoDB has not acted on yet, the 400 KB item limit,
unprocessed batch work, tables and URLs, and failing fast."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from drivers._dynamodb_batch import get_all, write_all
from drivers.dynamodb import DynamoDriver
from storage import (
    ConflictError,
    DriverError,
    InvalidArgumentError,
    create_storage,
)
from tests.servers import free_port
from tests.servers_dynamodb import MotoDynamoServer


@pytest.fixture
def operations(dynamodb_client: Any) -> Iterator[list[str]]:
    """The names of the DynamoDB operations the shared client sends during the test."""
    seen: list[str] = []

    def record(model: Any, **_: Any) -> None:
        seen.append(model.name)

    dynamodb_client.meta.events.register("before-call.dynamodb", record)
    yield seen
    dynamodb_client.meta.events.unregister("before-call.dynamodb", record)


def _raw(client: Any, driver: DynamoDriver, pk: bytes, sk: bytes) -> dict[str, Any]:
    found = client.get_item(TableName=driver.table, Key={"pk": {"B": pk}, "sk": {"B": sk}})
    item: dict[str, Any] = found.get("Item", {})
    return item


# -- key layout and listing -------------------------------------------------------------------


async def test_an_item_is_keyed_by_its_first_segment_and_its_whole_key(
    driver_dynamodb: DynamoDriver, dynamodb_client: Any
) -> None:
    etag = await driver_dynamodb.set_item("users:ann:profile", b"{}")
    item = _raw(dynamodb_client, driver_dynamodb, b"users", b"users:ann:profile")
    assert item["value"] == {"B": b"{}"}
    assert item["version"] == {"S": etag}
    assert "key" not in item  # the sort key is the key itself


async def test_listing_a_base_is_a_query_of_one_partition_never_a_scan(
    driver_dynamodb: DynamoDriver, operations: list[str]
) -> None:
    storage = create_storage(driver_dynamodb)
    await storage.set_items({f"{first}:{n}:x": n for first in ("a", "b", "c") for n in range(30)})
    operations.clear()
    assert len(await storage.get_keys("b")) == 30
    assert [key async for key in storage.iter_keys("b:7")] == ["b:7:x"]
    keys, cursor = await storage.list_keys("c", limit=10)
    while cursor is not None:
        page, cursor = await storage.list_keys("c", limit=10, cursor=cursor)
        keys += page
    assert len(keys) == 30
    await storage.clear("a")
    assert "Scan" not in operations
    assert set(operations) == {"Query", "BatchWriteItem"}
    operations.clear()
    assert len(await storage.get_keys()) == 60
    assert operations == ["Scan"]  # the root is the whole table


async def test_keys_past_dynamodbs_key_limits_round_trip_and_list_exactly(
    driver_dynamodb: DynamoDriver,
) -> None:
    storage = create_storage(driver_dynamodb)
    head = "h:" + "é" * 600  # 1202 bytes: past the 1024 a sort key holds
    keys = [head + ":1", head + ":2:deep", head + "x:3", "x" * 3000 + ":a", "y" * 3000]
    await storage.set_items({key: key for key in keys})
    assert await storage.get_items(keys) == {key: key for key in keys}
    assert sorted(await storage.get_keys()) == sorted(keys)
    assert sorted(await storage.get_keys(head)) == [head + ":1", head + ":2:deep"]
    assert await storage.get_keys("x" * 3000) == ["x" * 3000 + ":a"]
    assert await storage.increment(head + ":count", 3) == 3  # an item UpdateItem creates
    assert sorted(await storage.get_keys(head, max_depth=0)) == [head + ":1", head + ":count"]
    await storage.remove_item(head + ":count")
    await storage.remove_item(head + ":1")
    assert sorted(await storage.get_keys("h")) == [head + ":2:deep", head + "x:3"]


async def test_a_cursor_of_another_base_is_refused(driver_dynamodb: DynamoDriver) -> None:
    await driver_dynamodb.set_items([(f"a:{n}", b"1") for n in range(3)])
    _, cursor = await driver_dynamodb.list_page("a:", limit=1)
    assert cursor is not None
    with pytest.raises(InvalidArgumentError):
        await driver_dynamodb.list_page("b:", limit=1, cursor=cursor)


# -- native counters and expiry ---------------------------------------------------------------


async def test_a_counter_is_a_native_number_read_as_json_text(
    driver_dynamodb: DynamoDriver, dynamodb_client: Any, operations: list[str]
) -> None:
    assert await driver_dynamodb.increment("hits", 5) == 5
    operations.clear()
    assert await driver_dynamodb.increment("hits", 2) == 7
    assert operations == ["UpdateItem"]  # one ADD
    item = _raw(dynamodb_client, driver_dynamodb, b"hits", b"hits")
    assert item["counter"] == {"N": "7"}
    assert "value" not in item
    assert await driver_dynamodb.get_item("hits") == b"7"
    assert (await driver_dynamodb.get_meta("hits"))["size"] == 1


async def test_a_counter_written_as_text_becomes_a_number(
    driver_dynamodb: DynamoDriver, dynamodb_client: Any
) -> None:
    await driver_dynamodb.set_item("n", b"41")
    assert await driver_dynamodb.increment("n", 1) == 42
    assert _raw(dynamodb_client, driver_dynamodb, b"n", b"n")["counter"] == {"N": "42"}


async def test_counters_are_exact_to_64_bits_and_refuse_to_leave_them(
    driver_dynamodb: DynamoDriver,
) -> None:
    top = 2**63 - 1
    assert await driver_dynamodb.increment("c", top - 1) == top - 1
    assert await driver_dynamodb.increment("c", 1) == top
    with pytest.raises(InvalidArgumentError, match="64-bit"):
        await driver_dynamodb.increment("c", 1)
    assert await driver_dynamodb.get_item("c") == str(top).encode()
    assert await driver_dynamodb.increment("c", -top) == 0
    assert await driver_dynamodb.increment("c", -(2**63)) == -(2**63)
    with pytest.raises(InvalidArgumentError, match="64-bit"):
        await driver_dynamodb.increment("c", 2**63)


async def test_concurrent_increments_creating_a_key_with_a_ttl_count_exactly(
    driver_dynamodb: DynamoDriver,
) -> None:
    # One create-only write wins; the others find its counter and ADD to it.
    results = await asyncio.gather(*(driver_dynamodb.increment("w", 1, ttl=60) for _ in range(30)))
    assert sorted(results) == list(range(1, 31))
    assert 50 < (await driver_dynamodb.get_meta("w"))["ttl"] <= 60


async def test_create_true_turns_on_dynamodbs_ttl_on_expires(
    driver_dynamodb: DynamoDriver, dynamodb_client: Any
) -> None:
    await driver_dynamodb.set_item("k", b"v", ttl=100)
    described = dynamodb_client.describe_time_to_live(TableName=driver_dynamodb.table)
    assert described["TimeToLiveDescription"]["AttributeName"] == "expires"
    assert described["TimeToLiveDescription"]["TimeToLiveStatus"] == "ENABLED"
    expires = float(_raw(dynamodb_client, driver_dynamodb, b"k", b"k")["expires"]["N"])
    assert 95 < expires - time.time() <= 100


async def test_items_past_their_deadline_that_dynamodb_keeps_are_absent(
    driver_dynamodb: DynamoDriver, dynamodb_client: Any
) -> None:
    await driver_dynamodb.set_items([("live", b"1"), ("p:live", b"2")])
    past = f"{time.time() - 5:.3f}"
    for key, extra in [("gone", {}), ("p:gone", {}), ("count", {"counter": {"N": "9"}})]:
        item = {
            "pk": {"B": key.partition(":")[0].encode()},
            "sk": {"B": key.encode()},
            "value": {"B": b"old"},
            "version": {"S": "v0"},
            "mtime": {"N": past},
            "expires": {"N": past},
            **extra,
        }
        dynamodb_client.put_item(TableName=driver_dynamodb.table, Item=item)
    assert await driver_dynamodb.get_item("gone") is None
    assert await driver_dynamodb.has_item("p:gone") is False
    assert await driver_dynamodb.get_item_with_etag("gone") == (None, None)
    assert await driver_dynamodb.get_meta("gone") == {}
    assert await driver_dynamodb.get_items(["gone", "live"]) == [None, b"1"]
    assert sorted(await driver_dynamodb.get_keys()) == ["live", "p:live"]
    assert await driver_dynamodb.list_page("p:", limit=10) == (["p:live"], None)
    assert await driver_dynamodb.touch("gone", 30) is False
    with pytest.raises(ConflictError):
        await driver_dynamodb.set_item_conditional("gone", b"new", if_match="v0")
    with pytest.raises(ConflictError):
        await driver_dynamodb.remove_item_conditional("gone", if_match="*")
    assert _raw(dynamodb_client, driver_dynamodb, b"gone", b"gone")  # still there, unseen
    await driver_dynamodb.set_item_conditional("gone", b"new", if_none_match=True)
    assert await driver_dynamodb.get_item("gone") == b"new"
    assert await driver_dynamodb.increment("count", 1) == 1


async def test_touch_moves_the_deadline_alone_in_one_request(
    driver_dynamodb: DynamoDriver, operations: list[str]
) -> None:
    etag = await driver_dynamodb.set_item("k", b"v", ttl=10)
    mtime = (await driver_dynamodb.get_meta("k"))["mtime"]
    operations.clear()
    assert await driver_dynamodb.get_item_touch("k", 100) == b"v"
    assert operations == ["UpdateItem"]
    meta = await driver_dynamodb.get_meta("k")
    assert 90 < meta["ttl"] <= 100
    assert (meta["etag"], meta["mtime"]) == (etag, mtime)


# -- the item size limit and batches ----------------------------------------------------------


async def test_an_item_over_400_kb_is_refused_before_any_request(
    driver_dynamodb: DynamoDriver, operations: list[str]
) -> None:
    with pytest.raises(InvalidArgumentError, match="400 KB"):
        await driver_dynamodb.set_item("big", b"x" * (400 * 1024))
    # The key and the attribute names count too.
    with pytest.raises(InvalidArgumentError, match="400 KB"):
        await driver_dynamodb.set_item("k" * 10_000, b"x" * 400_000)
    with pytest.raises(InvalidArgumentError, match="'huge'"):
        await driver_dynamodb.set_items([("small", b"1"), ("huge", b"x" * 500_000)])
    with pytest.raises(InvalidArgumentError):
        await driver_dynamodb.set_item_conditional("big", b"x" * 500_000, if_none_match=True)
    assert operations == []
    assert await driver_dynamodb.get_keys() == []
    await driver_dynamodb.set_item("fits", b"x" * 390_000)
    assert await driver_dynamodb.get_item("fits") == b"x" * 390_000


async def test_keys_a_batch_read_leaves_unprocessed_are_read_again(
    driver_dynamodb: DynamoDriver, operations: list[str]
) -> None:
    # 100 values of 180 KB: past the 16 MB one BatchGetItem answers, so part comes back
    # as UnprocessedKeys (moto does this too).
    items = [(f"blob:{n:03d}", bytes([n]) * 180_000) for n in range(100)]
    await driver_dynamodb.set_items(items)
    operations.clear()
    assert await driver_dynamodb.get_items([key for key, _ in items]) == [v for _, v in items]
    assert operations.count("BatchGetItem") >= 2


async def test_writes_a_batch_leaves_unprocessed_are_sent_again() -> None:
    # moto applies every batch write whole, so a stand-in for the request plays throttled
    # DynamoDB: it leaves the last two writes of each round unprocessed, twice.
    rounds: list[list[dict[str, Any]]] = []

    async def send(action: str, *, RequestItems: dict[str, Any]) -> dict[str, Any]:
        requests = RequestItems["t"]
        rounds.append(requests)
        left = requests[-2:] if len(rounds) <= 2 else []
        return {"UnprocessedItems": {"t": left} if left else {}}

    requests = [{"PutRequest": {"Item": {"n": {"N": str(n)}}}} for n in range(5)]
    await write_all(send, "t", requests, "set_items")
    assert [len(sent) for sent in rounds] == [5, 2, 2]
    assert rounds[1] == requests[-2:]


async def test_a_batch_that_never_gets_done_fails_in_bounded_rounds() -> None:
    calls = 0

    async def stalled(action: str, *, RequestItems: dict[str, Any]) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if action == "batch_get_item":
            return {"Responses": {"t": []}, "UnprocessedKeys": RequestItems}
        return {"UnprocessedItems": RequestItems}

    with pytest.raises(DriverError, match="still unprocessed after 3 rounds"):
        await write_all(stalled, "t", [{"DeleteRequest": {"Key": {}}}], "remove_items", rounds=3)
    with pytest.raises(DriverError, match="1 keys still unprocessed"):
        await get_all(stalled, "t", {"Keys": [{}]}, "get_items", rounds=3)
    assert calls == 6


# -- tables, URLs and failures ----------------------------------------------------------------


async def test_a_url_names_the_table_and_its_options(dynamodb_server: MotoDynamoServer) -> None:
    table = f"url-{uuid.uuid4().hex[:8]}"
    url = (
        f"dynamodb://{table}?endpoint_url={dynamodb_server.endpoint_url}&region=us-east-1"
        "&access_key_id=testing&secret_access_key=123&create=true&consistent_reads=false"
    )
    async with create_storage(url) as storage:
        await storage.set_item("a:b", {"v": 1})
        assert await storage.get_item("a:b") == {"v": 1}
    with pytest.raises(InvalidArgumentError):
        DynamoDriver.from_url("dynamodb://table/with/path")
    with pytest.raises(InvalidArgumentError):
        DynamoDriver("no")  # table names have 3 to 255 characters


async def test_a_missing_table_is_a_driver_error_without_create(dynamodb_client: Any) -> None:
    driver = DynamoDriver("no-such-table-here", client=dynamodb_client)
    with pytest.raises(DriverError, match="does not exist") as caught:
        await create_storage(driver).get_item("k")
    assert caught.value.driver == "dynamodb"
    await driver.dispose()


async def test_a_table_with_another_key_schema_is_refused(dynamodb_client: Any) -> None:
    table = f"foreign-{uuid.uuid4().hex[:8]}"
    dynamodb_client.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    driver = DynamoDriver(table, client=dynamodb_client, create=True)
    with pytest.raises(DriverError, match="not a unistorage table"):
        await driver.set_item("k", b"v")
    await driver.dispose()
    dynamodb_client.delete_table(TableName=table)


def test_a_driver_without_a_region_is_refused_when_built(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    with pytest.raises(InvalidArgumentError, match="region"):
        DynamoDriver("table", endpoint_url="http://127.0.0.1:1")


def _driver_at(endpoint_url: str, **options: Any) -> DynamoDriver:
    return DynamoDriver(
        "table",
        endpoint_url=endpoint_url,
        region="us-east-1",
        access_key_id="testing",
        secret_access_key="testing",
        **options,
    )


async def test_an_unreachable_endpoint_is_a_driver_error_within_seconds() -> None:
    storage = create_storage(_driver_at(f"http://127.0.0.1:{free_port()}"))
    # wait_for bounds the call against hanging; it measures nothing.
    with pytest.raises(DriverError, match="cannot reach"):
        await asyncio.wait_for(storage.get_item("k"), 15)
    with pytest.raises(DriverError, match="cannot reach"):
        await asyncio.wait_for(storage.set_items({"a": 1, "b": 2}), 15)
    await storage.dispose()


async def test_an_endpoint_that_never_answers_is_a_driver_error_after_its_timeouts() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # accepts connections, never answers
        port = silent.getsockname()[1]
        driver = _driver_at(f"http://127.0.0.1:{port}", read_timeout=0.5, max_attempts=1)
        with pytest.raises(DriverError, match="cannot reach"):
            await asyncio.wait_for(create_storage(driver).get_item("k"), 15)
        await driver.dispose()
