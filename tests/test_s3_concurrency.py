"""The s3 driver under load: calls beyond its threads queue, and each thread has a connection."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import boto3
import pytest
from botocore.config import Config

from drivers.s3 import S3Driver
from storage import Storage, create_storage
from tests.fixtures.s3 import S3_BUCKET
from tests.servers import MotoServer

# What urllib3 logs when a call finds botocore's connection pool full: the connection it had
# to open is thrown away afterwards, so the pool and the threads disagree.
_POOL_FULL = "Connection pool is full"


async def _burst(storage: Storage, calls: int) -> list[Any]:
    async def write_then_read(index: int) -> Any:
        await storage.set_item(f"k:{index}", {"n": index})
        return await storage.get_item(f"k:{index}")

    return await asyncio.gather(*(write_then_read(index) for index in range(calls)))


async def test_300_concurrent_calls_through_one_storage_all_succeed(
    s3_server: MotoServer, s3_shared_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    driver = S3Driver(
        S3_BUCKET,
        f"t-{uuid.uuid4().hex[:12]}",
        endpoint_url=s3_server.endpoint_url,
        region="us-east-1",
        access_key_id="testing",
        secret_access_key="testing",
    )
    storage = create_storage(driver)
    try:
        with caplog.at_level(logging.WARNING, logger="urllib3.connectionpool"):
            assert await _burst(storage, 300) == [{"n": index} for index in range(300)]
        assert not [r for r in caplog.records if _POOL_FULL in r.getMessage()]
    finally:
        await storage.clear()
        await storage.dispose()


async def test_a_given_client_with_a_small_pool_gets_no_more_threads_than_connections(
    s3_server: MotoServer, s3_shared_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=s3_server.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(max_pool_connections=4),
    )
    storage = create_storage(S3Driver(S3_BUCKET, f"t-{uuid.uuid4().hex[:12]}", client=client))
    try:
        with caplog.at_level(logging.WARNING, logger="urllib3.connectionpool"):
            assert await _burst(storage, 300) == [{"n": index} for index in range(300)]
        assert not [r for r in caplog.records if _POOL_FULL in r.getMessage()]
    finally:
        await storage.clear()
        await storage.dispose()
        client.close()
