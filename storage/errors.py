"""The error classes every part of unistorage raises; all subclass `StorageError`."""

from __future__ import annotations

from typing import NoReturn

__all__ = [
    "ConflictError",
    "DriverError",
    "InvalidArgumentError",
    "InvalidKeyError",
    "LockLostError",
    "LockUnavailableError",
    "NotFoundError",
    "ReadOnlyError",
    "SerializationError",
    "StorageError",
    "UnsupportedError",
    "fail",
    "own",
]


class StorageError(Exception):
    """Base class of every error unistorage raises on purpose."""


class InvalidArgumentError(StorageError, ValueError):
    """An argument (a TTL, a base, an option) is out of range; raised before any I/O."""


class InvalidKeyError(InvalidArgumentError):
    """A key is empty, holds a control character, or would escape its driver's area."""

    def __init__(self, key: object, reason: str) -> None:
        super().__init__(f"invalid key {key!r}: {reason}")
        self.key = key
        self.reason = reason


class SerializationError(StorageError, TypeError):
    """A value cannot be encoded, or stored bytes cannot be decoded."""

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(f"{message} (key {key!r})" if key is not None else message)
        self.key = key


class ConflictError(StorageError):
    """A conditional write found another version (or an existing key) in place."""

    def __init__(self, key: str, message: str = "the stored version does not match") -> None:
        super().__init__(f"conflict on key {key!r}: {message}")
        self.key = key
        self.detail = message


class UnsupportedError(StorageError, NotImplementedError):
    """The driver cannot do what was asked (say, an atomic conditional write)."""


class ReadOnlyError(StorageError):
    """A write reached a read-only driver or mount."""

    def __init__(self, key: str, driver: str) -> None:
        super().__init__(f"driver {driver!r} is read-only; cannot write {key!r}")
        self.key = key
        self.driver = driver


class NotFoundError(StorageError, LookupError):
    """An operation that needs a value found none (say, a stream opened on a missing key)."""

    def __init__(self, key: str) -> None:
        super().__init__(f"no value at key {key!r}")
        self.key = key


class LockUnavailableError(StorageError):
    """A lock is held by someone else and did not come free within the wait."""

    def __init__(self, key: str, wait: float) -> None:
        super().__init__(f"the lock {key!r} is held elsewhere (waited {wait:g} s)")
        self.key = key


class LockLostError(StorageError):
    """A lock's lease ended while held: it expired, and perhaps another holder took it."""

    def __init__(self, key: str) -> None:
        super().__init__(f"the lock {key!r} was lost while held (its TTL ran out)")
        self.key = key


class DriverError(StorageError):
    """A backend failed; the original exception is chained as ``__cause__``."""

    def __init__(
        self, driver: str, operation: str, key: str | None = None, message: str | None = None
    ) -> None:
        where = f" on key {key!r}" if key is not None else ""
        detail = f": {message}" if message else ""
        super().__init__(f"{driver} driver failed in {operation}{where}{detail}")
        self.driver = driver
        self.operation = operation
        self.key = key


def fail(driver: str, operation: str, key: str | None, exc: BaseException) -> NoReturn:
    """Raise what a driver's failure means to the caller: the one place errors are translated.

    A `StorageError` passes through, named again with the caller's ``key`` where it named the
    mount-relative one the driver saw; anything else becomes a `DriverError` naming
    ``driver``, ``operation`` and ``key``, with ``exc`` chained.
    """
    if isinstance(exc, StorageError):
        named = getattr(exc, "key", None)
        if key is not None and isinstance(named, str) and named != key:
            raise _renamed(exc, named, key) from exc
        raise exc
    if not isinstance(exc, Exception):
        raise exc  # cancellation and interpreter exits are not backend failures
    message = str(exc) or type(exc).__name__
    raise DriverError(driver, operation, key, message) from exc


def own(exc: BaseException) -> BaseException:
    """A copy of ``exc`` for one of several callers failed by the same error (a group commit,
    a shared read): the same type, arguments, attributes, cause and traceback so far.

    One exception instance raised in many tasks collects every task's frames in its traceback:
    under load the chains grow by thousands of frames and logging them stalls the event loop.
    An exotic class that cannot be copied this way is returned as it is.
    """
    try:
        copy = type(exc).__new__(type(exc), *exc.args)
        copy.__dict__.update(exc.__dict__)
        copy.args = exc.args
    except Exception:
        return exc
    copy.__cause__, copy.__context__ = exc.__cause__, exc.__context__
    copy.__suppress_context__ = exc.__suppress_context__
    return copy.with_traceback(exc.__traceback__)


def _renamed(exc: StorageError, old: str, new: str) -> StorageError:
    """A copy of ``exc`` that names key ``new`` where it named ``old`` (message included).

    Built without calling the class's ``__init__`` (whose arguments differ per class): the
    same type, the same attributes, the key and the message's quoted key replaced.
    """
    args = tuple(
        arg.replace(repr(old), repr(new)) if isinstance(arg, str) else arg for arg in exc.args
    )
    try:
        renamed = StorageError.__new__(type(exc), *args)
        renamed.__dict__.update(exc.__dict__)
        renamed.args = args
        renamed.key = new  # type: ignore[attr-defined]
    except Exception:  # an exotic error class: better the mount-relative key than none
        return exc
    return renamed
