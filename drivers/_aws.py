"""One boto3 client on a bounded pool of threads: what the s3 and dynamodb drivers share.

`aws_client` builds the client (credentials, region, timeouts, few attempts so that a dead
endpoint fails within seconds) or takes a given one, and sizes the threads that call it to its
connection pool, so that every thread has a connection and none is opened only to be dropped.
"""

from __future__ import annotations

from typing import Any

import boto3
import boto3.session
from botocore.config import Config
from botocore.exceptions import ClientError, NoRegionError

from storage import InvalidArgumentError
from storage.workers import Workers

__all__ = ["aws_client"]


def aws_client(
    service: str,
    *,
    client: Any = None,
    endpoint_url: str | None = None,
    region: str | None = None,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
    session_token: str | None = None,
    profile: str | None = None,
    max_workers: int = 16,
    connect_timeout: float = 2.0,
    read_timeout: float = 5.0,
    max_attempts: int = 2,
    pool_timeout: float = 5.0,
    **config: Any,
) -> tuple[Any, Workers]:
    """The boto3 client of ``service`` (``client`` as is, when given) and the `Workers` that
    call it; ``config`` goes to botocore's `Config` (say, checksum or signature settings)."""
    if client is None:
        session = boto3.session.Session(
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            aws_session_token=session_token,
            region_name=region,
            profile_name=profile,
        )
        try:
            make: Any = session.client  # typed per service name; the name is a parameter here
            client = make(
                service,
                endpoint_url=endpoint_url,
                config=Config(
                    connect_timeout=connect_timeout,
                    read_timeout=read_timeout,
                    # Few attempts: an unreachable endpoint must fail within seconds.
                    retries={"max_attempts": max_attempts, "mode": "standard"},
                    max_pool_connections=max_workers,
                    **config,
                ),
            )
        except NoRegionError:
            raise InvalidArgumentError(
                f"the {service} driver needs a region: pass region= (?region= in a URL) "
                "or set AWS_DEFAULT_REGION"
            ) from None
    else:
        # More threads than pooled connections would open and drop a connection per call.
        max_workers = min(max_workers, client.meta.config.max_pool_connections)
    # An error response is the service answering (progress); a timeout is not.
    workers = Workers(
        max_workers,
        name=f"unistorage-{service}",
        wait=pool_timeout,
        answered=lambda exc: isinstance(exc, ClientError),
    )
    return client, workers
