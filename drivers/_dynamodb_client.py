"""The blocking side of the dynamodb driver: one boto3 client and the threads that call it.

boto3 blocks, so every request runs on a bounded thread pool. `DynamoClient` owns both (a
client given to it is used and left open): `request` is the one way in, where a backend failure
becomes a `DriverError` (or, for a conditional request, a `ConflictError`) exactly once, and
`close` the one way out. Before the first request it checks the table once: that it exists
(or, with ``create``, creates it on demand and turns on native TTL) and has this driver's keys.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    HTTPClientError,
    NoCredentialsError,
)

from storage import ConflictError, DriverError
from storage.workers import WorkersBusyError

from ._aws import aws_client

__all__ = ["DynamoClient", "Send"]

logger = logging.getLogger(__name__)

#: The key schema of a table this driver writes: binary ``pk`` (hash) and ``sk`` (range).
_KEY_SCHEMA = [
    {"AttributeName": "pk", "KeyType": "HASH"},
    {"AttributeName": "sk", "KeyType": "RANGE"},
]
_ATTRIBUTES = [
    {"AttributeName": "pk", "AttributeType": "B"},
    {"AttributeName": "sk", "AttributeType": "B"},
]
#: One request with its operation and key bound: ``send(action, **params)`` -> the response
#: (`DynamoClient.request` through ``functools.partial``, or a stand-in in tests).
Send = Callable[..., Awaitable[dict[str, Any]]]
_BATCH_ACTIONS = frozenset({"batch_get_item", "batch_write_item"})
_DENIED = frozenset(
    {
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "ExpiredTokenException",
    }
)
_THROTTLED = frozenset(
    {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"}
)
#: How long ``create`` waits for a new table to become ACTIVE (AWS takes seconds).
_CREATE_TIMEOUT = 60.0


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class DynamoClient:
    """Requests to one DynamoDB ``table`` through one boto3 client.

    ``client`` is used as is (and left open by `close`); otherwise one is built from the
    endpoint, credentials and timeouts, with few attempts so that a dead endpoint fails within
    seconds. ``max_workers`` threads send requests and as many pooled connections serve them
    (fewer threads when a given client has a smaller pool); a request waits at most
    ``pool_timeout`` seconds for a free one, then fails with `DriverError`. ``create`` creates
    a missing table (on-demand billing, TTL on ``expires``) instead of failing.
    """

    def __init__(
        self,
        table: str,
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
        create: bool = False,
        pool_timeout: float = 5.0,
    ) -> None:
        self.table = table
        self.create = create
        self._owned = client is None
        client, self._workers = aws_client(
            "dynamodb",
            client=client,
            endpoint_url=endpoint_url,
            region=region,
            access_key_id=access_key_id,
            secret_access_key=secret_access_key,
            session_token=session_token,
            profile=profile,
            max_workers=max_workers,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_attempts=max_attempts,
            pool_timeout=pool_timeout,
        )
        #: The boto3 client itself.
        self.api: Any = client
        self._checked = False
        self._check_lock = asyncio.Lock()

    # -- the way in and the way out ---------------------------------------------------------

    async def request(
        self,
        operation: str,
        key: str | None,
        action: str,
        /,
        *,
        conditional: bool = False,
        **params: Any,
    ) -> dict[str, Any]:
        """Send one request: ``action`` names the client method (``"put_item"``), ``params``
        its parameters (``TableName`` is added). A failed condition is a `ConflictError` when
        ``conditional``; every other failure a `DriverError` naming ``operation`` and ``key``.
        """
        if not self._checked:
            async with self._check_lock:  # one check, not one per call of the first batch
                if not self._checked:
                    await self._check_table(operation, key)
        if action not in _BATCH_ACTIONS:
            params["TableName"] = self.table
        try:
            return await self._send(action, params)
        except ClientError as exc:
            if conditional and key is not None and _code(exc) == "ConditionalCheckFailedException":
                raise ConflictError(key) from exc
            raise DriverError("dynamodb", operation, key, self._explain(exc)) from exc
        except BotoCoreError as exc:
            raise DriverError("dynamodb", operation, key, self._explain(exc)) from exc
        except WorkersBusyError as exc:
            raise DriverError(
                "dynamodb", operation, key, f"{exc}: a slow or hung endpoint (or raise max_workers)"
            ) from exc

    def close(self) -> None:
        """Stop the threads (queued requests are dropped) and close the client if it is ours."""
        self._workers.close()
        if self._owned:
            self.api.close()

    async def _send(self, action: str, params: dict[str, Any]) -> dict[str, Any]:
        call = functools.partial(getattr(self.api, action), **params)
        response: dict[str, Any] = await self._workers.run(call)
        return response

    def _explain(self, exc: Exception) -> str:
        if isinstance(exc, ClientError):
            code = _code(exc)
            if code == "ResourceNotFoundException":
                return f"table {self.table!r} does not exist (create=true creates it)"
            if code in _DENIED:
                return f"access to table {self.table!r} denied ({code}): check the credentials"
            if code in _THROTTLED:
                return f"throttled by DynamoDB ({code}): {exc}"
            return str(exc)
        if isinstance(exc, (ConnectionError, HTTPClientError)):
            return f"cannot reach {self.api.meta.endpoint_url}: {exc}"
        if isinstance(exc, NoCredentialsError):
            return f"{exc}: pass access_key_id= and secret_access_key=, or configure boto3"
        return str(exc)

    # -- the table --------------------------------------------------------------------------

    async def _check_table(self, operation: str, key: str | None) -> None:
        try:
            table = await self._describe()
            if table is None and self.create:
                table = await self._create(operation, key)
            if table is None:
                raise DriverError(
                    "dynamodb",
                    operation,
                    key,
                    f"table {self.table!r} does not exist (create=true creates it)",
                )
        except ClientError as exc:
            raise DriverError("dynamodb", operation, key, self._explain(exc)) from exc
        except BotoCoreError as exc:
            raise DriverError("dynamodb", operation, key, self._explain(exc)) from exc
        schema = [(k["AttributeName"], k["KeyType"]) for k in table["KeySchema"]]
        types = {a["AttributeName"]: a["AttributeType"] for a in table["AttributeDefinitions"]}
        if schema != [("pk", "HASH"), ("sk", "RANGE")] or (types["pk"], types["sk"]) != ("B", "B"):
            raise DriverError(
                "dynamodb",
                operation,
                key,
                f"table {self.table!r} is not a unistorage table: its key is {schema} "
                f"({types}), not binary pk (hash) and sk (range)",
            )
        self._checked = True

    async def _describe(self) -> dict[str, Any] | None:
        try:
            found = await self._send("describe_table", {"TableName": self.table})
        except ClientError as exc:
            if _code(exc) == "ResourceNotFoundException":
                return None
            raise
        table: dict[str, Any] = found["Table"]
        return table

    async def _create(self, operation: str, key: str | None) -> dict[str, Any]:
        """Create the table (another process may be creating it too), wait until it is
        ACTIVE, and turn native TTL on for ``expires``."""
        try:
            await self._send(
                "create_table",
                {
                    "TableName": self.table,
                    "KeySchema": _KEY_SCHEMA,
                    "AttributeDefinitions": _ATTRIBUTES,
                    "BillingMode": "PAY_PER_REQUEST",
                },
            )
            logger.info("created DynamoDB table %r", self.table)
        except ClientError as exc:
            if _code(exc) != "ResourceInUseException":
                raise
        deadline = time.monotonic() + _CREATE_TIMEOUT
        pause = 0.05
        while True:
            table = await self._describe()
            if table is not None and table.get("TableStatus") == "ACTIVE":
                break
            if time.monotonic() > deadline:
                raise DriverError(
                    "dynamodb",
                    operation,
                    key,
                    f"table {self.table!r} not ACTIVE after {_CREATE_TIMEOUT:g} s",
                )
            await asyncio.sleep(pause)
            pause = min(pause * 2, 2.0)
        try:
            await self._send(
                "update_time_to_live",
                {
                    "TableName": self.table,
                    "TimeToLiveSpecification": {"Enabled": True, "AttributeName": "expires"},
                },
            )
        except ClientError as exc:
            # Another creator turned it on first; reads filter expired items either way.
            logger.debug("TTL of %r not turned on here: %s", self.table, exc)
        return table
