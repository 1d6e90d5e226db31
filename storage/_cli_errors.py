"""The command line's one error path: what each failure says on stderr, and its exit status.

0 success, 1 key not found, 2 usage error (a bad argument, option, key or URL; a port that is
taken), 3 storage or driver error, 130 interrupted. Messages point at the fix: a 401 names
``--token``, keys are shown as they were typed.
"""

from __future__ import annotations

from collections.abc import Sequence

from .errors import (
    DriverError,
    InvalidArgumentError,
    NotFoundError,
    StorageError,
)
from .keys import normalize_key
from .protocol import HttpStatusError

__all__ = [
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_USAGE",
    "READ_COMMANDS",
    "Fail",
    "explain",
]

EXIT_OK, EXIT_NOT_FOUND, EXIT_USAGE, EXIT_ERROR = 0, 1, 2, 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it


class Fail(Exception):
    """A message for stderr and an exit status, raised by a command."""

    def __init__(self, message: str, status: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.status = status


# What to do about an HTTP status a server answered, by command: copy has two stores.
_TOKEN_HINT = {
    401: "give the server's token with --token (or ${env})",
    403: "this token may only read: use a read-write token",
}
_COPY_TOKEN_HINT = {
    401: "give the servers' tokens with --token (SRC, or ${env}) and --dst-token (DST)",
    403: "a read token cannot write to DST: give a read-write one with --dst-token",
}


def explain(
    exc: Exception, command: str, typed: Sequence[str] = (), token_env: str = ""
) -> tuple[str, int]:
    """The line for stderr (without the ``unistorage COMMAND:`` prefix) and the exit status.

    ``typed`` are the keys as the command line gave them: a message naming one by its
    normalized form names it as typed instead.
    """
    if isinstance(exc, Fail):
        return str(exc), exc.status
    if isinstance(exc, StorageError):
        message = _as_typed(str(exc), getattr(exc, "key", None), typed)
        if isinstance(exc, NotFoundError):
            return message, EXIT_NOT_FOUND
        if isinstance(exc, InvalidArgumentError):
            return message, EXIT_USAGE
        hint = _hint(exc, command, token_env)
        return message + (f"; {hint}" if hint else ""), EXIT_ERROR
    if isinstance(exc, OSError):
        # A store that cannot be opened (a path that is a file, a directory without rights).
        return str(exc), EXIT_ERROR
    return f"unexpected {type(exc).__name__}: {exc} (a bug in unistorage: please report it)", 3


#: The commands that open their store read-only (copy: its source).
READ_COMMANDS = frozenset({"get", "keys", "meta", "copy"})


def _hint(exc: StorageError, command: str, token_env: str) -> str:
    if not isinstance(exc, DriverError):
        return ""
    if exc.operation == "open" and command in READ_COMMANDS:
        return f"{command} opens a store read-only and never creates one: is the URL right?"
    cause: BaseException | None = exc.__cause__
    while cause is not None and not isinstance(cause, HttpStatusError):
        cause = cause.__cause__
    if cause is None:
        return ""
    hints = _COPY_TOKEN_HINT if command == "copy" else _TOKEN_HINT
    return hints.get(cause.status, "").replace("${env}", f"${token_env}")


def _as_typed(message: str, named: object, typed: Sequence[str]) -> str:
    if not isinstance(named, str):
        return message
    for key in typed:
        try:
            same = key != named and normalize_key(key) == named
        except StorageError:
            continue
        if same:
            return message.replace(repr(named), repr(key))
    return message
