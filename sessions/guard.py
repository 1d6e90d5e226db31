"""Loud failures for a session used as if it were synchronous.

Frameworks hand the session out where a dict is expected (Starlette types ``request.session``
as ``dict[str, Any]``), so ``request.session.get("user")`` is easy to write without ``await``.
A coroutine would pass silently (it is truthy, prints as ``<coroutine ...>``) and fail far
away; the `Awaiting` the session's readers return raises `SessionUsageError` naming the fix
instead, at the first synchronous use.
"""

from __future__ import annotations

from collections.abc import Coroutine, Generator
from typing import Any, Generic, NoReturn, TypeVar

__all__ = ["Awaiting", "SessionUsageError", "refuse"]

T = TypeVar("T")

_HINT = (
    "unistorage sessions are asynchronous: write `await session.{what}`; "
    "in Starlette and FastAPI get the typed session with `sessions.of(request)` "
    "(or the `sessions.fastapi` dependency) rather than `request.session`"
)


class SessionUsageError(TypeError):
    """A session (or the result of one of its methods) was used without ``await``."""


def refuse(what: str) -> NoReturn:
    """Raise the `SessionUsageError` for a synchronous use of ``session.<what>``."""
    raise SessionUsageError(_HINT.format(what=what))


class Awaiting(Generic[T]):
    """The result of a session read: ``await`` it. Any other use raises `SessionUsageError`."""

    __slots__ = ("_coroutine", "_what")

    def __init__(self, coroutine: Coroutine[Any, Any, T], what: str) -> None:
        self._coroutine = coroutine
        self._what = what

    def __await__(self) -> Generator[Any, None, T]:
        return self._coroutine.__await__()

    def _refuse(self) -> NoReturn:
        self._coroutine.close()  # never started: no "never awaited" warning on top
        refuse(self._what)

    def __bool__(self) -> bool:
        self._refuse()

    def __iter__(self) -> NoReturn:
        self._refuse()

    def __len__(self) -> int:
        self._refuse()

    def __contains__(self, item: object) -> bool:
        self._refuse()

    def __getitem__(self, item: object) -> NoReturn:
        self._refuse()

    def __str__(self) -> str:
        self._refuse()

    def __eq__(self, other: object) -> bool:
        self._refuse()

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return f"<awaitable session.{self._what}: use await>"
