"""moto's server serving DynamoDB, as a separate process on a free port: `MotoServer` (its
start, address, client and clean-up) for the dynamodb service, one request at a time."""

from __future__ import annotations

from typing import Any, ClassVar

from tests.servers import MotoServer

__all__ = ["MotoDynamoServer"]


class MotoDynamoServer(MotoServer):
    """moto's DynamoDB server on a free port; `start`, `client` and `close` as for S3.

    moto's backend is not thread-safe (two concurrent UpdateItems of one item can both add to
    the old value), while DynamoDB applies each request to an item atomically: requests are
    handled one at a time, over connections that stay concurrent.
    """

    service: ClassVar[str] = "dynamodb"
    serial: ClassVar[bool] = True
    client_config: ClassVar[dict[str, Any]] = {}
