"""The http driver's connection to its server: one httpx pool, the URL of every key, and one way
to send a request (`HttpClient.request`) that turns an error answer into the storage error its
code names (`storage.protocol.error_of_answer`)."""

from __future__ import annotations

import functools
import ssl
from collections.abc import AsyncIterator
from typing import Any

import httpx

from storage.protocol import ProtocolError, error_of_answer, key_path

__all__ = ["HttpClient"]


@functools.cache
def _tls_context() -> ssl.SSLContext:
    # Loading the CA bundle takes tens of milliseconds; one context serves every client.
    return ssl.create_default_context()


class HttpClient:
    """Requests to the server at ``origin`` for keys under ``prefix`` (a normalized base).

    The httpx pool opens on first use and closes with `close`. ``timeout`` bounds each request
    (connecting at most 5 s); at most ``max_connections`` are in flight, the others wait up to
    ``pool_timeout`` seconds for a connection, then fail with a `ConnectionError` saying so.
    """

    def __init__(
        self,
        origin: str,
        prefix: str,
        *,
        headers: dict[str, str],
        timeout: float,
        max_connections: int,
        pool_timeout: float,
    ) -> None:
        self.origin = origin
        self.prefix = prefix
        self._headers = headers
        self._timeout = httpx.Timeout(timeout, connect=min(timeout, 5.0), pool=pool_timeout)
        # Keep-alive for every connection the pool may open: closing the surplus after each
        # burst would churn through sockets under load.
        self._limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        self._client: httpx.AsyncClient | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        """The connection pool, opened on first use."""
        if self._client is None:
            self._client = httpx.AsyncClient(
                headers=self._headers,
                timeout=self._timeout,
                limits=self._limits,
                verify=_tls_context(),
            )
        return self._client

    def url(self, key: str, *, base: bool = False, query: str = "") -> str:
        """The URL of ``key`` (relative to the prefix); ``base`` ends it in ``/``."""
        path = key_path(self.prefix + key, base=base)
        return f"{self.origin}{path}{'?' + query if query else ''}"

    def pool_exhausted(self) -> ConnectionError:
        """The error of a request that found no free connection in time."""
        return ConnectionError(
            f"no free connection to {self.origin} within {self._timeout.pool} s: all "
            f"{self._limits.max_connections} are busy (raise max_connections or pool_timeout)"
        )

    async def send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Send a request and read its answer, whatever its status."""
        try:
            return await self.client.request(method, url, **kwargs)
        except httpx.PoolTimeout as exc:
            raise self.pool_exhausted() from exc

    async def request(
        self,
        method: str,
        key: str,
        *,
        url: str | None = None,
        missing_ok: bool = False,
        **kwargs: Any,
    ) -> httpx.Response | None:
        """A request about ``key``: the answer when 2xx, None for a 404 with ``missing_ok``,
        else the error the answer names."""
        response = await self.send(method, url or self.url(key), **kwargs)
        status = response.status_code
        if status < 300:
            return response
        if status == 404 and missing_ok:
            return None
        raise error_of_answer(status, response.content, key or None, response.headers)

    async def open(self, key: str, chunk_size: int, **kwargs: Any) -> AsyncIterator[bytes] | None:
        """A GET whose body is read as it arrives, ``chunk_size`` at a time; None for a 404.

        A body cut short (the server drops the connection when its backend fails midway)
        raises `ProtocolError` instead of ending early.
        """
        request = self.client.build_request("GET", self.url(key), **kwargs)
        try:
            response = await self.client.send(request, stream=True)
        except httpx.PoolTimeout as exc:
            raise self.pool_exhausted() from exc
        status = response.status_code
        if status >= 300:
            try:
                await response.aread()
            finally:
                await response.aclose()
            if status == 404:
                return None
            raise error_of_answer(status, response.content, key, response.headers)
        return _Body(response, chunk_size)

    async def close(self) -> None:
        """Close the pool (a later request opens a new one)."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None


class _Body:
    """A streamed response body as chunks; closing it gives its connection back, even when no
    chunk was ever read (an unstarted generator's ``finally`` would never run)."""

    def __init__(self, response: httpx.Response, chunk_size: int) -> None:
        self._response = response
        self._chunks = response.aiter_bytes(chunk_size)

    def __aiter__(self) -> _Body:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await anext(self._chunks)
        except StopAsyncIteration:
            await self.aclose()
            raise
        except httpx.TransportError as exc:
            await self.aclose()
            raise ProtocolError("the server cut the value short") from exc

    async def aclose(self) -> None:
        """Give the connection back (harmless when already closed)."""
        await self._response.aclose()
