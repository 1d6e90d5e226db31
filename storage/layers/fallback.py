"""`Fallback`: reads that go to a secondary driver while the primary fails.

**What falls back.** A read (``get_item``, ``get_items``, ``has_item``, ``get_item_with_etag``,
``get_meta``, user meta, ``get_keys``, ``iter_keys``) goes to the primary; when the primary fails
with a backend error (any exception that is not a `StorageError`, or a `DriverError` from a
layer below), the same read goes to the secondary. Other `StorageError`s (a conflict, an
invalid argument, a read-only refusal) are answers, not failures: they are raised as they are.
Each read tries the primary again, so answers come from the primary as soon as it is back. A
hung primary is a failure only once it times out: put a timeout below this layer.

**Listing falls back as a whole**, never a mix of both drivers: ``get_keys`` is the primary's
list or the secondary's; ``iter_keys`` streams the secondary's keys only when the primary fails
before its first key, and raises when it fails part-way.

**Writes** never go to the secondary alone: a write the primary cannot take fails, so the
secondary never holds a change the primary lacks, and no write is lost when the primary comes
back. ``write="primary"`` (the default) writes to the primary only: the secondary is a replica
kept by someone else (a backup restored into it, a read replica), and reads during an outage
see that replica's state. ``write="both"`` also copies every successful write (removals, clears
and user meta included) to the secondary, best effort: a failure there is logged, not raised.
The copy is not atomic with the primary's write: it lags writes made while it was down or made
by other clients straight to the primary, and two concurrent writers may reach the two drivers
in different orders.

**Conditional writes** are decided by the primary alone, under either policy, so they stay
atomic and the capability is the primary's. An etag read from the secondary is marked
(`SECONDARY_ETAG`), and a write conditioned on it is refused with `ConflictError` before any
I/O: it names the secondary's version, which the primary never checked.

**Capabilities** are those that stay true whichever driver answers: TTL the primary's (and,
with ``write="both"``, the secondary's too), conditional writes and watch the primary's (watch
reports the primary's changes; writes fail while it is down), native depth listing only when
both have it, no no-coroutine calls, read-only the primary's.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import Any, Literal

from ..driver import Capabilities, Driver
from ..errors import ConflictError, DriverError, InvalidArgumentError, StorageError
from ..layer import Layer

__all__ = ["SECONDARY_ETAG", "Fallback"]

logger = logging.getLogger(__name__)

#: Starts a listing cursor that belongs to the secondary (the listing began there).
_SECONDARY_CURSOR = "secondary~"

#: Prefix of an etag that names the secondary's version of a key (see the module docstring).
SECONDARY_ETAG = "secondary~"

WritePolicy = Literal["primary", "both"]


class Fallback(Layer):
    """Reads from ``primary``, or from ``secondary`` while the primary fails; writes by policy.

    ``primary`` is the driver of record (the layer's ``inner``). ``secondary`` answers reads
    while the primary fails. ``write`` is ``"primary"`` (writes to the primary only, the default)
    or ``"both"`` (the primary, then a best-effort copy to the secondary). Disposing disposes both.
    """

    layer_name = "fallback"

    def __init__(
        self, primary: Driver, secondary: Driver, *, write: WritePolicy = "primary"
    ) -> None:
        if write not in ("primary", "both"):
            raise InvalidArgumentError(f"write is 'primary' or 'both', not {write!r}")
        if not isinstance(secondary, Driver):
            raise InvalidArgumentError(f"the secondary is a storage.Driver, not {secondary!r}")
        first, second = primary.capabilities, secondary.capabilities
        if write == "both" and second.read_only:
            raise InvalidArgumentError(f"write='both' needs a writable secondary, not {secondary}")
        super().__init__(
            primary,
            capabilities=Capabilities(
                ttl=first.ttl and (second.ttl or write == "primary"),
                conditional=first.conditional,
                watch=first.watch,
                native_max_depth=first.native_max_depth and second.native_max_depth,
                nowait=False,
                read_only=first.read_only,
                bounded=first.bounded and second.bounded,
            ),
        )
        self.secondary = secondary
        self.write = write
        self.name = f"fallback({primary.name}, {secondary.name})"
        self._copies = write == "both"
        self._primary_up = True

    def _falls_back(self, exc: Exception, operation: str) -> bool:
        """True when ``exc`` is a backend failure the secondary should answer for."""
        if isinstance(exc, StorageError) and not isinstance(exc, DriverError):
            return False
        if self._primary_up:
            self._primary_up = False
            logger.warning(
                "%s: the primary failed in %s (%s); reading from %s until it answers",
                self.name,
                operation,
                exc,
                self.secondary.name,
            )
        return True

    def _answered(self) -> None:
        if not self._primary_up:
            self._primary_up = True
            logger.warning("%s: the primary answers again", self.name)

    # -- reads --------------------------------------------------------------------------------

    async def get_item(self, key: str) -> bytes | None:
        try:
            value = await self.inner.get_item(key)
        except Exception as exc:
            if not self._falls_back(exc, "get_item"):
                raise
            return await self.secondary.get_item(key)
        self._answered()
        return value

    async def has_item(self, key: str) -> bool:
        try:
            found = await self.inner.has_item(key)
        except Exception as exc:
            if not self._falls_back(exc, "has_item"):
                raise
            return await self.secondary.has_item(key)
        self._answered()
        return found

    async def get_items(self, keys: Sequence[str]) -> list[bytes | None]:
        try:
            values = await self.inner.get_items(keys)
        except Exception as exc:
            if not self._falls_back(exc, "get_items"):
                raise
            return await self.secondary.get_items(keys)
        self._answered()
        return values

    async def get_item_with_etag(self, key: str) -> tuple[bytes | None, str | None]:
        try:
            found = await self.inner.get_item_with_etag(key)
        except Exception as exc:
            if not self._falls_back(exc, "get_item_with_etag"):
                raise
            value, etag = await self.secondary.get_item_with_etag(key)
            if etag is None or not self.capabilities.conditional:
                return value, None
            return value, SECONDARY_ETAG + etag
        self._answered()
        return found

    async def get_meta(self, key: str) -> dict[str, Any]:
        try:
            meta = await self.inner.get_meta(key)
        except Exception as exc:
            if not self._falls_back(exc, "get_meta"):
                raise
            meta = dict(await self.secondary.get_meta(key))
            if isinstance(meta.get("etag"), str):
                meta["etag"] = SECONDARY_ETAG + meta["etag"]
            return meta
        self._answered()
        return meta

    async def get_user_meta(self, key: str) -> bytes | None:
        try:
            data = await self.inner.get_user_meta(key)
        except Exception as exc:
            if not self._falls_back(exc, "get_user_meta"):
                raise
            return await self.secondary.get_user_meta(key)
        self._answered()
        return data

    async def get_keys(self, base: str = "", *, max_depth: int | None = None) -> list[str]:
        try:
            keys = await self.inner.get_keys(base, max_depth=max_depth)
        except Exception as exc:
            if not self._falls_back(exc, "get_keys"):
                raise
            return await self.secondary.get_keys(base, max_depth=max_depth)
        self._answered()
        return keys

    async def iter_keys(
        self, base: str = "", *, max_depth: int | None = None
    ) -> AsyncIterator[str]:
        primary: AsyncIterator[str] | None = None
        try:
            try:
                primary = aiter(self.inner.iter_keys(base, max_depth=max_depth))
                first = await anext(primary)
            except StopAsyncIteration:
                self._answered()
                return
            except Exception as exc:
                if not self._falls_back(exc, "iter_keys"):
                    raise
                async for key in self.secondary.iter_keys(base, max_depth=max_depth):
                    yield key
                return
            self._answered()
            yield first
            # Past the first key the listing is the primary's: a failure now is raised.
            async for key in primary:
                yield key
        finally:
            close = getattr(primary, "aclose", None)  # an async generator's; others hold nothing
            if close is not None:
                await close()

    async def list_page(
        self,
        base: str = "",
        *,
        limit: int,
        cursor: str | None = None,
        max_depth: int | None = None,
    ) -> tuple[list[str], str | None]:
        """A listing stays with the driver that gave its first page (never a mix)."""
        if cursor is not None and cursor.startswith(_SECONDARY_CURSOR):
            keys, following = await self.secondary.list_page(
                base, limit=limit, cursor=cursor[len(_SECONDARY_CURSOR) :], max_depth=max_depth
            )
            return keys, None if following is None else _SECONDARY_CURSOR + following
        try:
            page = await self.inner.list_page(base, limit=limit, cursor=cursor, max_depth=max_depth)
        except Exception as exc:
            if cursor is not None or not self._falls_back(exc, "list_page"):
                raise
            keys, following = await self.secondary.list_page(base, limit=limit, max_depth=max_depth)
            return keys, None if following is None else _SECONDARY_CURSOR + following
        self._answered()
        return page

    async def read_chunks(self, key: str, chunk_size: int) -> AsyncIterator[bytes] | None:
        try:
            chunks = await self.inner.read_chunks(key, chunk_size)
        except Exception as exc:
            if not self._falls_back(exc, "read_chunks"):
                raise
            return await self.secondary.read_chunks(key, chunk_size)
        self._answered()
        return chunks

    async def get_item_touch(self, key: str, ttl: float) -> bytes | None:
        # A renewal is a write: it goes to the primary, as writes do.
        value = await self.inner.get_item_touch(key, ttl)
        if self._copies and value is not None:
            await self._copy("touch", self.secondary.touch(key, ttl))
        return value

    def get_item_nowait(self, key: str) -> bytes | None:
        return Driver.get_item_nowait(self, key)

    def set_item_nowait(self, key: str, value: bytes) -> str | None:
        return Driver.set_item_nowait(self, key, value)

    # -- writes: the primary decides, the secondary gets a copy under write="both" -------------

    async def _copy(self, operation: str, call: Awaitable[object]) -> None:
        try:
            await call
        except Exception:
            logger.warning(
                "%s: the secondary failed to copy %s", self.name, operation, exc_info=True
            )

    async def set_item(self, key: str, value: bytes, *, ttl: float | None = None) -> str | None:
        etag = await self.inner.set_item(key, value, ttl=ttl)
        if self._copies:
            await self._copy("set_item", self.secondary.set_item(key, value, ttl=ttl))
        return etag

    async def remove_item_conditional(self, key: str, *, if_match: str) -> None:
        if if_match.startswith(SECONDARY_ETAG):
            raise ConflictError(key, "the etag names the secondary's version, not the primary's")
        await self.inner.remove_item_conditional(key, if_match=if_match)
        if self._copies:
            await self._copy("remove_item", self.secondary.remove_item(key))

    async def increment(self, key: str, by: int, *, ttl: float | None = None) -> int:
        value = await self.inner.increment(key, by, ttl=ttl)
        if self._copies:
            await self._copy("increment", self._copy_item(key))
        return value

    async def touch(self, key: str, ttl: float) -> bool:
        found = await self.inner.touch(key, ttl)
        if self._copies and found:
            await self._copy("touch", self.secondary.touch(key, ttl))
        return found

    async def write_chunks(
        self, key: str, chunks: AsyncIterator[bytes], *, ttl: float | None = None
    ) -> str | None:
        etag = await self.inner.write_chunks(key, chunks, ttl=ttl)
        if self._copies:
            await self._copy("write_chunks", self._copy_item(key, ttl, streamed=True))
        return etag

    async def _copy_item(
        self, key: str, ttl: float | None = None, *, streamed: bool = False
    ) -> None:
        """The primary's value of ``key`` written to the secondary (streamed when large)."""
        if streamed:
            chunks = await self.inner.read_chunks(key, 256 * 1024)
            if chunks is not None:
                await self.secondary.write_chunks(key, chunks, ttl=ttl)
            return
        value = await self.inner.get_item(key)
        if value is not None:
            remaining = (await self.inner.get_meta(key)).get("ttl")
            keep = remaining if isinstance(remaining, (int, float)) and remaining > 0 else None
            await self.secondary.set_item(key, value, ttl=keep)

    async def set_item_conditional(
        self,
        key: str,
        value: bytes,
        *,
        ttl: float | None = None,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str | None:
        if if_match is not None and if_match.startswith(SECONDARY_ETAG):
            raise ConflictError(key, "the etag names the secondary's version, not the primary's")
        etag = await self.inner.set_item_conditional(
            key, value, ttl=ttl, if_match=if_match, if_none_match=if_none_match
        )
        if self._copies:
            await self._copy("set_item", self.secondary.set_item(key, value, ttl=ttl))
        return etag

    async def set_items(
        self, items: Sequence[tuple[str, bytes]], *, ttl: float | None = None
    ) -> None:
        await self.inner.set_items(items, ttl=ttl)
        if self._copies:
            await self._copy("set_items", self.secondary.set_items(items, ttl=ttl))

    async def remove_item(self, key: str) -> None:
        await self.inner.remove_item(key)
        if self._copies:
            await self._copy("remove_item", self.secondary.remove_item(key))

    async def remove_items(self, keys: Sequence[str]) -> None:
        await self.inner.remove_items(keys)
        if self._copies:
            await self._copy("remove_items", self.secondary.remove_items(keys))

    async def clear(self, base: str = "") -> None:
        await self.inner.clear(base)
        if self._copies:
            await self._copy("clear", self.secondary.clear(base))

    async def set_user_meta(self, key: str, data: bytes) -> None:
        await self.inner.set_user_meta(key, data)
        if self._copies:
            await self._copy("set_user_meta", self.secondary.set_user_meta(key, data))

    async def remove_user_meta(self, key: str) -> None:
        await self.inner.remove_user_meta(key)
        if self._copies:
            await self._copy("remove_user_meta", self.secondary.remove_user_meta(key))

    # -- lifecycle ----------------------------------------------------------------------------

    async def dispose(self) -> None:
        """Dispose the primary, then the secondary (even when the primary's dispose fails)."""
        try:
            await self.inner.dispose()
        finally:
            await self.secondary.dispose()
