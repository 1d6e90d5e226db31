"""Error codes and statuses, both ways: what the server answers for a storage error, and
what a client raises for an error answer."""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import orjson

from ..errors import (
    ConflictError,
    DriverError,
    InvalidArgumentError,
    InvalidKeyError,
    ReadOnlyError,
    SerializationError,
    StorageError,
    UnsupportedError,
)
from .conditions import PreconditionFailedError
from .headers import CODE_HEADER

__all__ = [
    "Code",
    "HttpStatusError",
    "ProtocolError",
    "code_of",
    "error_body",
    "error_code",
    "error_fields",
    "error_of_answer",
    "status_of",
]


class Code:
    """The stable ``code`` of an error body; clients branch on it, never on the message."""

    NOT_FOUND = "not_found"
    INVALID_KEY = "invalid_key"
    INVALID_ARGUMENT = "invalid_argument"
    SERIALIZATION = "serialization"
    CONFLICT = "conflict"
    PRECONDITION_FAILED = "precondition_failed"
    READ_ONLY = "read_only"
    UNSUPPORTED = "unsupported"
    DRIVER_ERROR = "driver_error"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    TOO_LARGE = "too_large"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    INTERNAL = "internal"


class ProtocolError(Exception):
    """An answer that does not follow the protocol (a listing cut short, a malformed body)."""


class HttpStatusError(Exception):
    """An error status that no storage error names (401, 403, 413, 502...)."""

    def __init__(self, status: int, code: str | None, message: str) -> None:
        super().__init__(f"HTTP {status}{f' {code}' if code else ''}: {message}")
        self.status = status
        self.code = code


# -- errors, both ways ------------------------------------------------------------------------

_STATUS = {
    Code.NOT_FOUND: 404,
    Code.INVALID_KEY: 400,
    Code.INVALID_ARGUMENT: 400,
    Code.SERIALIZATION: 400,
    Code.CONFLICT: 412,
    Code.PRECONDITION_FAILED: 412,
    Code.READ_ONLY: 405,
    Code.UNSUPPORTED: 501,
    Code.DRIVER_ERROR: 502,
    Code.UNAUTHORIZED: 401,
    Code.FORBIDDEN: 403,
    Code.TOO_LARGE: 413,
    Code.METHOD_NOT_ALLOWED: 405,
    Code.INTERNAL: 500,
}
# What an answer without a code (unstorage's own server) means, by status alone.
_CODE_OF_STATUS = {400: Code.INVALID_ARGUMENT, 412: Code.CONFLICT, 501: Code.UNSUPPORTED}


def status_of(code: str) -> int:
    """The HTTP status that goes with an error code."""
    return _STATUS[code]


def code_of(exc: StorageError) -> str:
    """The error code the server answers for a storage error."""
    if isinstance(exc, InvalidKeyError):
        return Code.INVALID_KEY
    if isinstance(exc, InvalidArgumentError):
        return Code.INVALID_ARGUMENT
    if isinstance(exc, SerializationError):
        return Code.SERIALIZATION
    if isinstance(exc, PreconditionFailedError):
        return Code.PRECONDITION_FAILED
    if isinstance(exc, ConflictError):
        return Code.CONFLICT
    if isinstance(exc, ReadOnlyError):
        return Code.READ_ONLY
    if isinstance(exc, UnsupportedError):
        return Code.UNSUPPORTED
    if isinstance(exc, DriverError):
        return Code.DRIVER_ERROR
    return Code.INTERNAL


def error_fields(exc: StorageError) -> dict[str, Any]:
    """The message and fields of an error body for ``exc``.

    A backend failure is told by operation, key and code only: its own message may hold
    paths, hosts and endpoints, and belongs in the server's log.
    """
    if isinstance(exc, DriverError):
        public = DriverError(exc.driver, exc.operation, exc.key)
        return {"message": str(public), "operation": exc.operation, "key": exc.key}
    if not isinstance(exc, (InvalidArgumentError, SerializationError, ConflictError,
                            ReadOnlyError, UnsupportedError)):  # fmt: skip
        return {"message": "internal server error"}
    fields: dict[str, Any] = {"message": str(exc)}
    key = getattr(exc, "key", None)
    if isinstance(key, str):
        fields["key"] = key
    if isinstance(exc, InvalidKeyError):
        fields["reason"] = exc.reason
    elif isinstance(exc, ConflictError):
        fields["reason"] = exc.detail
    elif isinstance(exc, SerializationError) and exc.key is not None:
        fields["reason"] = str(exc).removesuffix(f" (key {exc.key!r})")
    return fields


def error_body(status: int, code: str, message: str, **fields: Any) -> bytes:
    """An error body in the shapes of both unstorage servers, plus ``code``.

    unstorage 1 (h3) answers ``{"statusCode", "statusMessage"}``, unstorage 2
    ``{"status", "statusText", "message"}``; both put the error's own message, not the HTTP
    reason phrase, in the text field.
    """
    body: dict[str, Any] = {
        "statusCode": status,
        "statusMessage": message,
        "status": status,
        "statusText": message,
        "message": message,
        "code": code,
    }
    body.update({name: value for name, value in fields.items() if value is not None})
    return orjson.dumps(body)


def _payload(content: bytes) -> dict[str, Any]:
    try:
        parsed = orjson.loads(content)
    except orjson.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def error_code(content: bytes, headers: Mapping[str, str]) -> str | None:
    """The ``code`` of an error answer, or None (a server that does not send one)."""
    code = _payload(content).get("code") or headers.get(CODE_HEADER)
    return code if isinstance(code, str) else None


def error_of_answer(
    status: int,
    content: bytes,
    key: str | None,
    headers: Mapping[str, str] | None = None,
    reason: str = "",
) -> Exception:
    """What an error answer means to a client: the storage error its code names, else an
    `HttpStatusError` (a plain exception, which Storage reports as a `DriverError`)."""
    payload = _payload(content)
    code = payload.get("code") or (headers or {}).get(CODE_HEADER)
    if not isinstance(code, str):
        code = _CODE_OF_STATUS.get(status)
    message = payload.get("message") or payload.get("statusMessage") or payload.get("statusText")
    if not isinstance(message, str):
        message = content[:200].decode("utf-8", "replace") or reason or HTTPStatus(status).phrase
    detail = payload.get("reason")
    detail = detail if isinstance(detail, str) else message
    if code in (Code.CONFLICT, Code.PRECONDITION_FAILED):
        return ConflictError(key or "", detail)
    if code == Code.READ_ONLY:
        return ReadOnlyError(key or "", "http")
    if code == Code.INVALID_KEY and key is not None:
        return InvalidKeyError(key, detail)
    if code in (Code.INVALID_KEY, Code.INVALID_ARGUMENT):
        return InvalidArgumentError(message)
    if code == Code.SERIALIZATION:
        return SerializationError(detail, key=key)
    if code == Code.UNSUPPORTED:
        return UnsupportedError(message)
    return HttpStatusError(status, code, message)
