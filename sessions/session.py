"""`Session`: one visitor's server-side data, loaded lazily and written at commit."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Generic, Literal

from .cookies import read_cookie

if TYPE_CHECKING:
    from typing_extensions import TypeVar

    from .manager import Sessions, _Place
else:
    from typing import TypeVar

__all__ = ["DataT", "Session"]

if TYPE_CHECKING:
    DataT = TypeVar("DataT", bound=Mapping[str, object], default=dict[str, Any])
else:
    DataT = TypeVar("DataT", bound=Mapping[str, object])

#: Marks a key deleted in `Session._changes`.
_DELETED: Any = object()

CookieAction = Literal["set", "expire"] | None


class Session(Generic[DataT]):
    """The data of one visitor. Nothing is read until first use; nothing is written until commit.

    `get`/`has`/`keys` load the session on first use; `set`/`delete` record changes that are
    merged into the freshest stored state at commit. Declare the data's shape with a TypedDict,
    ``Session[CartData]``, and the mypy plugin ``sessions.mypy_plugin`` checks keys and values.
    """

    __slots__ = (
        "_accessed",
        "_changes",
        "_cookie",
        "_created",
        "_data",
        "_doomed",
        "_headers",
        "_id",
        "_loaded",
        "_manager",
        "_new",
        "_place",
        "_presented",
        "_stored",
        "_touch",
        "_version",
    )

    def __init__(
        self,
        manager: Sessions[DataT],
        presented: str | None = None,
        *,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        self._manager = manager
        # Raw request headers are kept and only parsed when the session is used.
        self._headers = headers
        self._presented = presented
        self._id: str | None = None
        self._loaded = False
        self._stored = False
        self._new = False
        self._touch = False
        self._version: str | None = None
        self._place: _Place | None = None
        self._data: dict[str, Any] = {}
        self._changes: dict[str, Any] = {}
        self._created = 0.0
        self._accessed = 0.0
        self._doomed: list[str] = []
        self._cookie: CookieAction = None

    @property
    def id(self) -> str | None:
        """The session ID once the session is known to exist (loaded or created), else None."""
        return self._id

    @property
    def used(self) -> bool:
        """True when this request loaded, changed, regenerated or destroyed the session."""
        return self._loaded or bool(self._doomed) or self._cookie is not None

    @property
    def pending(self) -> bool:
        """True when changes await a commit (data, a new ID, or entries to remove)."""
        return bool(self._changes or self._new or self._doomed or self._cookie)

    def _presented_id(self) -> str | None:
        """The well-formed ID the client sent, if any (malformed values are already dropped)."""
        if self._headers is not None:
            value = read_cookie(self._headers, self._manager.cookie.name)
            self._headers = None
            self._presented = value if self._manager.valid_id(value) else None
        return self._presented

    async def _ensure(self) -> None:
        if not self._loaded:
            await self._manager._load_into(self)

    async def get(self, key: str, default: Any = None) -> Any:
        """The value stored at ``key``, or ``default``."""
        if not self._loaded:
            await self._manager._load_into(self)
        return self._data.get(key, default)

    async def has(self, key: str) -> bool:
        """True when ``key`` holds a value."""
        await self._ensure()
        return key in self._data

    async def keys(self) -> list[str]:
        """The keys this session holds."""
        await self._ensure()
        return list(self._data)

    async def items(self) -> dict[str, Any]:
        """A copy of every key and value this session holds."""
        await self._ensure()
        return dict(self._data)

    async def set(self, key: str, value: Any) -> None:
        """Store ``value`` at ``key``; the session (and its cookie) is created if needed.

        Raises `storage.SerializationError` naming the key when the value cannot be stored.
        """
        self._manager._check_value(key, value)
        if not self._loaded:
            await self._manager._load_into(self)
        if self._id is None:
            self._manager._start(self)
        self._data[key] = value
        self._changes[key] = value

    async def delete(self, key: str) -> None:
        """Remove ``key``; a missing key is fine."""
        await self._ensure()
        if key in self._data:
            del self._data[key]
            if self._id is not None:
                self._changes[key] = _DELETED

    async def regenerate(self) -> None:
        """Give the session a new ID (keeping its data); the old entry is removed at commit."""
        await self._ensure()
        if self._id is not None and self._stored:
            self._doomed.append(self._id)
        created = self._created if self._id is not None else 0.0
        self._manager._start(self)
        if created:
            # The absolute timeout counts from the first creation, not from the new ID.
            self._created = created

    async def destroy(self) -> None:
        """Remove the session's data and expire its cookie; needs no prior load."""
        target = self._id if self._loaded else self._presented_id()
        if target is not None and target not in self._doomed:
            self._doomed.append(target)
        self._id = None
        self._loaded = True
        self._stored = False
        self._new = False
        self._touch = False
        self._version = None
        self._place = None
        self._data = {}
        self._changes = {}
        self._cookie = "expire"

    def __repr__(self) -> str:
        state = "loaded" if self._loaded else "lazy"
        return f"<Session {state} keys={len(self._data)}>"
