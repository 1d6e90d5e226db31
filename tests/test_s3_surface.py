"""What is special about s3 in the full storage surface: S3's own conditional requests, the
TTL deadline S3 cannot see, and continuation-token pages. A lock held across processes is
tests/test_across_processes.py's, for s3 as for every store other processes reach."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from drivers.s3 import S3Driver
from storage import ConflictError, create_storage
from tests.fixtures.s3 import S3_BUCKET, object_names, seed_objects
from tests.servers import MotoServer

# -- compare-and-set --------------------------------------------------------------------------


async def test_an_expired_object_still_in_the_bucket_is_no_version_to_match(
    driver_s3: S3Driver, s3_shared_client: Any
) -> None:
    etag = await driver_s3.set_item("brief", b"v", ttl=0.2)
    await asyncio.sleep(0.4)
    assert object_names(s3_shared_client, driver_s3._object("brief"))  # nothing deleted it yet
    with pytest.raises(ConflictError):
        await driver_s3.set_item_conditional("brief", b"w", if_match="*")
    await driver_s3.set_item("brief", b"v", ttl=0.2)
    await asyncio.sleep(0.4)
    with pytest.raises(ConflictError):
        await driver_s3.remove_item_conditional("brief", if_match=etag)


async def test_a_conditional_remove_is_s3s_conditional_delete(
    driver_s3: S3Driver, s3_shared_client: Any
) -> None:
    old = await driver_s3.set_item("k", b"old")
    new = await driver_s3.set_item("k", b"new")
    with pytest.raises(ConflictError):
        await driver_s3.remove_item_conditional("k", if_match=old)
    await driver_s3.remove_item_conditional("k", if_match=f'"{new}"')  # S3's spelling too
    assert object_names(s3_shared_client, driver_s3._object("k")) == []


async def test_renewing_a_ttl_keeps_the_etag_because_s3_etags_hash_the_content(
    driver_s3: S3Driver,
) -> None:
    etag = await driver_s3.set_item("session", b"data", ttl=10)
    assert await driver_s3.get_item_touch("session", 100) == b"data"
    meta = await driver_s3.get_meta("session")
    assert meta["etag"] == etag
    assert meta["ttl"] > 90


async def test_an_increment_keeps_the_counters_deadline_to_the_millisecond(
    driver_s3: S3Driver, s3_shared_client: Any
) -> None:
    def deadline() -> str:
        head = s3_shared_client.head_object(Bucket=S3_BUCKET, Key=driver_s3._object("window"))
        return str(head["Metadata"]["unistorage-expires"])

    await driver_s3.increment("window", 1, ttl=60)
    first = deadline()
    await driver_s3.increment("window", 1, ttl=5)
    assert deadline() == first
    assert await driver_s3.get_item("window") == b"2"


# -- pages ------------------------------------------------------------------------------------


async def test_pages_follow_s3s_continuation_tokens_and_its_thousand_key_pages(
    driver_s3: S3Driver, s3_server: MotoServer
) -> None:
    keys = [f"many:{index:05d}" for index in range(1200)]
    names = [driver_s3._object(key) for key in keys]
    await asyncio.to_thread(seed_objects, s3_server.endpoint_url, names)
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        page, cursor = await driver_s3.list_page("many:", limit=500, cursor=cursor)
        pages.append(page)
        if cursor is None:
            break
    assert [len(page) for page in pages] == [500, 500, 200]
    assert [key for page in pages for key in page] == keys
    # S3 answers at most 1000 keys a request: a larger page comes back short, with a cursor.
    page, cursor = await driver_s3.list_page("many:", limit=5000)
    assert (len(page), cursor is not None) == (1000, True)


async def test_pages_hide_ttl_markers_and_expiredobject_names(driver_s3: S3Driver) -> None:
    await driver_s3.set_item("a", b"1", ttl=0.2)
    await driver_s3.set_item("b", b"2", ttl=60)
    await driver_s3.set_item("c", b"3")
    await asyncio.sleep(0.4)
    storage = create_storage(driver_s3)
    assert await storage.list_keys(limit=10) == (["b", "c"], None)
