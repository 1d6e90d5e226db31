"""What is special about the s3 driver: paginated listing, key encoding, TTL markers, faults."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from drivers.s3 import S3Driver
from storage import ConflictError, DriverError, create_driver, create_storage
from tests.fixtures.s3 import S3_BUCKET, object_names, seed_objects
from tests.servers import MotoServer, free_port

TRICKY_KEYS = [
    "with space",
    "ünïcödé:日本",
    "100%",
    "%1F",
    "a%25b",
    "star*",
    "what?",
    "[bracket]",
    "quotes:\"double\" 'single'",
    "amp&lt<gt>",
    "+plus=equals",
    "~tilde#hash",
]


async def test_listing_pages_through_thousands_of_keys(
    driver_s3: S3Driver, s3_server: MotoServer
) -> None:
    keys = [f"many:{index:05d}" for index in range(2500)]
    names = [driver_s3._object(key) for key in keys]
    await asyncio.to_thread(seed_objects, s3_server.endpoint_url, names)
    assert sorted(await driver_s3.get_keys("many:")) == keys
    streamed = 0
    async for _ in driver_s3.iter_keys():
        streamed += 1
    assert streamed == 2500
    await driver_s3.clear("many:")
    assert await driver_s3.get_keys() == []


async def test_every_kind_of_key_round_trips(driver_s3: S3Driver) -> None:
    storage = create_storage(driver_s3)
    await storage.set_items({key: key for key in TRICKY_KEYS})
    assert sorted(await storage.get_keys()) == sorted(TRICKY_KEYS)
    assert await storage.get_items(TRICKY_KEYS) == {key: key for key in TRICKY_KEYS}
    await storage.set_meta("100%", {"m": 1})
    assert (await storage.get_meta("100%"))["m"] == 1
    assert sorted(await storage.get_keys()) == sorted(TRICKY_KEYS)


async def test_keys_are_folders_in_the_bucket(driver_s3: S3Driver, s3_shared_client: Any) -> None:
    await driver_s3.set_item("docs:2024:report", b"r")
    assert object_names(s3_shared_client, driver_s3._prefix) == [
        f"{driver_s3._prefix}docs/2024/report"
    ]


async def test_expired_objects_are_hidden_then_deleted(
    driver_s3: S3Driver, s3_shared_client: Any
) -> None:
    await driver_s3.set_item("brief", b"v", ttl=0.3)
    await driver_s3.set_item("kept", b"v", ttl=60)
    await asyncio.sleep(0.5)
    assert await driver_s3.get_keys() == ["kept"]
    # The expired object and its spent marker are gone; the live key keeps its marker.
    names = object_names(s3_shared_client, driver_s3._prefix)
    assert f"{driver_s3._prefix}brief" not in names
    assert len([name for name in names if "%1Fttl/" in name]) == 1


async def test_create_only_write_replaces_an_expired_object(
    driver_s3: S3Driver, s3_shared_client: Any
) -> None:
    await driver_s3.set_item("lock", b"old", ttl=0.2)
    await asyncio.sleep(0.4)
    # The expired object is still in the bucket (nothing read it since), yet the key is free.
    assert object_names(s3_shared_client, driver_s3._object("lock")) == [driver_s3._object("lock")]
    await driver_s3.set_item_conditional("lock", b"new", if_none_match=True)
    assert await driver_s3.get_item("lock") == b"new"
    with pytest.raises(ConflictError):
        await driver_s3.set_item_conditional("lock", b"newer", if_none_match=True)


async def test_url_names_bucket_prefix_and_endpoint(
    s3_server: MotoServer, s3_shared_client: Any
) -> None:
    prefix = f"url-{uuid.uuid4().hex[:8]}"
    driver = create_driver(
        f"s3://{S3_BUCKET}/{prefix}/?endpoint_url={s3_server.endpoint_url}&region=us-east-1"
        "&access_key_id=testing&secret_access_key=testing"
    )
    assert isinstance(driver, S3Driver)
    try:
        await driver.set_item("a:b", b"1")
        assert object_names(s3_shared_client, prefix) == [f"{prefix}/a/b"]
    finally:
        await driver.clear()
        await driver.dispose()


async def test_a_missing_bucket_is_a_driver_error(s3_server: MotoServer) -> None:
    driver = S3Driver("no-such-bucket-here", client=s3_server.client())
    storage = create_storage(driver)
    with pytest.raises(DriverError, match="does not exist") as caught:
        await storage.has_item("k")
    assert caught.value.driver == "s3"
    await storage.dispose()


async def test_an_unreachable_endpoint_is_a_driver_error() -> None:
    driver = S3Driver(
        S3_BUCKET,
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        region="us-east-1",
        access_key_id="testing",
        secret_access_key="testing",
    )
    storage = create_storage(driver)
    with pytest.raises(DriverError, match="cannot reach"):
        await storage.get_item("k")
    with pytest.raises(DriverError, match="cannot reach"):
        await storage.set_items({"a": 1, "b": 2})
    await storage.dispose()


@pytest.fixture
def checking_server() -> Iterator[MotoServer]:
    """A moto server that checks credentials (it knows none, so every key is refused)."""
    server = MotoServer(env={"INITIAL_NO_AUTH_ACTION_COUNT": "0"}).start()
    yield server
    server.close()


async def test_bad_credentials_are_a_driver_error(checking_server: MotoServer) -> None:
    driver = S3Driver(
        S3_BUCKET,
        endpoint_url=checking_server.endpoint_url,
        region="us-east-1",
        access_key_id="AKIAWRONG",
        secret_access_key="wrong",
    )
    storage = create_storage(driver)
    with pytest.raises(DriverError, match="credentials"):
        await storage.get_keys()
    await storage.dispose()


async def test_etags_carry_no_quotes_and_compare_and_set_takes_them(driver_s3: S3Driver) -> None:
    storage = create_storage(driver_s3)
    await storage.set_item("doc", {"v": 1})
    etag = (await storage.get_meta("doc"))["etag"]
    assert '"' not in etag
    await storage.set_item("doc", {"v": 2}, if_match=etag)
    assert await storage.get_item("doc") == {"v": 2}
    with pytest.raises(ConflictError):
        await storage.set_item("doc", {"v": 3}, if_match=etag)


async def test_a_write_read_and_meta_give_one_bare_etag_for_one_version(
    driver_s3: S3Driver,
) -> None:
    written = await driver_s3.set_item_conditional("k", b"one", if_none_match=True)
    data, read = await driver_s3.get_item_with_etag("k")
    assert data == b"one"
    assert written == read == (await driver_s3.get_meta("k"))["etag"]
    assert '"' not in str(written)


async def test_an_etag_given_back_in_quotes_is_accepted(driver_s3: S3Driver) -> None:
    etag = await driver_s3.set_item_conditional("k", b"one", if_none_match=True)
    await driver_s3.set_item_conditional("k", b"two", if_match=f'"{etag}"')
    assert await driver_s3.get_item("k") == b"two"
