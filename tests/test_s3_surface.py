"""What is special about s3 in the full storage surface: S3's own conditional requests, the
TTL deadline S3 cannot see, continuation-token pages, and a lock held across processes."""

from __future__ import annotations

import asyncio
import select
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from drivers.s3 import S3Driver
from storage import ConflictError, create_driver, create_storage
from tests.fixtures.s3 import S3_BUCKET, seed_objects
from tests.servers import MotoServer

ROOT = Path(__file__).resolve().parents[1]


def _objects(client: Any, prefix: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=S3_BUCKET, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


# -- compare-and-set --------------------------------------------------------------------------


async def test_an_expired_object_still_in_the_bucket_is_no_version_to_match(
    driver_s3: S3Driver, s3_shared_client: Any
) -> None:
    etag = await driver_s3.set_item("brief", b"v", ttl=0.2)
    await asyncio.sleep(0.4)
    assert _objects(s3_shared_client, driver_s3._object("brief"))  # nothing deleted it yet
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
    assert _objects(s3_shared_client, driver_s3._object("k")) == []


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


async def test_pages_hide_ttl_markers_and_expired_objects(driver_s3: S3Driver) -> None:
    await driver_s3.set_item("a", b"1", ttl=0.2)
    await driver_s3.set_item("b", b"2", ttl=60)
    await driver_s3.set_item("c", b"3")
    await asyncio.sleep(0.4)
    storage = create_storage(driver_s3)
    assert await storage.list_keys(limit=10) == (["b", "c"], None)


# -- a lock across processes ------------------------------------------------------------------


async def _count_under_lock(url: str, rounds: str) -> None:
    """In a child process: after "go" on stdin, ``rounds`` times take the lock "job", read
    "counter", pause, write it plus one, release: a lost update means the lock let two in."""
    storage = create_storage(create_driver(url))
    try:
        await storage.has_item("counter")  # connected before the race starts
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        await asyncio.to_thread(sys.stdin.readline)
        for _ in range(int(rounds)):
            async with storage.lock("job", ttl=10, wait=60):
                value = await storage.get_item("counter", default=0)
                await asyncio.sleep(0.01)
                await storage.set_item("counter", value + 1)
        sys.stdout.write("done\n")
    finally:
        await storage.dispose()


_COUNTER = (
    "import asyncio, sys; from tests.test_s3_surface import _count_under_lock as count; "
    "asyncio.run(count(*sys.argv[1:]))"
)


def _race(url: str, processes: int, rounds: int) -> list[str]:
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _COUNTER, url, str(rounds)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    try:
        for child in children:
            assert child.stdout is not None
            assert select.select([child.stdout], [], [], 60)[0], "a child did not start"
            assert child.stdout.readline() == "ready\n"
        outputs = []
        for child in children:
            out, _ = child.communicate("go\n", timeout=120)
            assert child.returncode == 0
            outputs.append(out.strip())
        return outputs
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()


async def test_a_lock_held_by_one_process_excludes_another(s3_server: MotoServer) -> None:
    prefix = f"lock-{uuid.uuid4().hex[:8]}"
    url = (
        f"s3://{S3_BUCKET}/{prefix}?endpoint_url={s3_server.endpoint_url}&region=us-east-1"
        "&access_key_id=testing&secret_access_key=testing"
    )
    assert await asyncio.to_thread(_race, url, 2, 15) == ["done", "done"]
    async with create_storage(create_driver(url)) as storage:
        assert await storage.get_item("counter") == 30
        assert await storage.has_item("job") is False
        await storage.clear()
