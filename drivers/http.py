"""The http driver: a client of `unistorage serve` (unstorage's storage-server protocol), on httpx.

Values travel as raw bytes (``application/octet-stream``), so every value round-trips exactly.
The wire format (paths, headers, ETags, batches, listings, error codes) is `storage.protocol`,
shared with the server. Batches use the server's ``POST base/?batch`` route, falling back to
one request per key on servers without it (such as unstorage's own).
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx

from storage import Capabilities, Driver, InvalidArgumentError
from storage.driver import parse_url_options
from storage.keys import normalize_base
from storage.protocol import (
    BATCH_BYTES,
    BATCH_KEYS,
    BATCH_QUERY,
    MAX_DEPTH_QUERY,
    META_QUERY,
    OCTET,
    TTL_HEADER,
    HttpStatusError,
    ListingReader,
    ProtocolError,
    batch_body,
    check_token,
    error_code,
    error_of_answer,
    format_etag,
    format_ttl,
    key_path,
    meta_of_headers,
    parse_batch_values,
    parse_etag,
)

__all__ = ["HttpDriver", "HttpStatusError"]

_CONCURRENCY = 32
_T = TypeVar("_T")
_R = TypeVar("_R")


class HttpDriver(Driver):
    """Keys under ``base`` (a URL; its path is a key prefix) on a storage server.

    ``token`` is sent as a bearer token; ``headers`` are added to every request. ``timeout``
    bounds each request (connecting included), so a server that is down fails quickly. At
    most ``max_connections`` requests are in flight; the others wait for a free connection up
    to ``pool_timeout`` seconds (default: ``timeout``), then fail with a clear error.
    """

    name = "http"
    schemes = ("http", "https")
    # Bounded: the request timeout and the pool timeout end every call.
    capabilities = Capabilities(ttl=True, conditional=True, bounded=True)

    def __init__(
        self,
        *,
        base: str,
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 30.0,
        max_connections: int = 100,
        pool_timeout: float | None = None,
    ) -> None:
        parts = urlsplit(base)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise InvalidArgumentError(f"the http driver needs an http(s) URL, not {base!r}")
        if isinstance(max_connections, bool) or not isinstance(max_connections, int):
            raise InvalidArgumentError(f"max_connections is an int >= 1, not {max_connections!r}")
        if max_connections < 1:
            raise InvalidArgumentError(f"max_connections is an int >= 1, not {max_connections!r}")
        pool = timeout if pool_timeout is None else pool_timeout
        if not isinstance(pool, (int, float)) or not 0 < pool < float("inf"):
            raise InvalidArgumentError(f"pool_timeout is seconds > 0, not {pool_timeout!r}")
        self._origin = urlunsplit((parts.scheme, parts.netloc, "", "", ""))
        # The URL path is a key prefix: decoded and normalized like any base.
        self._prefix = normalize_base(unquote(parts.path))
        self.base = self._url("", base=True)
        self._headers = dict(headers or {})
        if token:
            self._headers["authorization"] = f"Bearer {check_token(token)}"
        self._timeout = httpx.Timeout(timeout, connect=min(timeout, 5.0), pool=pool)
        # Keep-alive for every connection the pool may open: closing the surplus after each
        # burst would churn through sockets under load.
        self._limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        self._client: httpx.AsyncClient | None = None
        self._batches = True

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Driver:
        """``http://host:port/prefix?timeout=5&max_connections=100&pool_timeout=10``."""
        parts = urlsplit(url)
        base = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
        return cls(base=base, **{**parse_url_options(parts.query), **options})

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

    def _url(self, key: str, *, base: bool = False, query: str = "") -> str:
        path = key_path(self._prefix + key, base=base)
        return f"{self._origin}{path}{'?' + query if query else ''}"

    async def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self.client.request(method, url, **kwargs)
        except httpx.PoolTimeout as exc:
            raise self._pool_exhausted() from exc

    def _pool_exhausted(self) -> ConnectionError:
        return ConnectionError(
            f"no free connection to {self._origin} within {self._timeout.pool} s: all "
            f"{self._limits.max_connections} are busy (raise max_connections or pool_timeout)"
        )

    async def _request(
        self,
        method: str,
        key: str,
        *,
        url: str | None = None,
        missing_ok: bool = False,
        **kwargs: Any,
    ) -> httpx.Response | None:
        response = await self._send(method, url or self._url(key), **kwargs)
        status = response.status_code
        if status < 300:
            return response
        if status == 404 and missing_ok:
            return None
        raise error_of_answer(status, response.content, key or None, response.headers)

    # -- items --------------------------------------------------------------------------------

    async def get_item(self, key: str) -> bytes | None:
        response = await self._request("GET", key, missing_ok=True, headers={"accept": OCTET})
        return None if response is None else response.content

    async def get_item_with_etag(self, key: str) -> tuple[bytes | None, str | None]:
        # One GET: the server's ETag names exactly the body it sends.
        response = await self._request("GET", key, missing_ok=True, headers={"accept": OCTET})
        if response is None:
            return None, None
        return response.content, parse_etag(response.headers.get("etag"))

    async def has_item(self, key: str) -> bool:
        return await self._request("HEAD", key, missing_ok=True) is not None

    async def set_item(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        await self._request("PUT", key, content=value, headers=_put_headers(ttl))

    async def set_item_conditional(
        self,
        key: str,
        value: bytes,
        *,
        ttl: float | None = None,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str | None:
        headers = _put_headers(ttl)
        if if_match is not None:
            headers["if-match"] = format_etag(if_match)
        if if_none_match:
            headers["if-none-match"] = "*"
        await self._request("PUT", key, content=value, headers=headers)
        return None

    async def remove_item(self, key: str) -> None:
        await self._request("DELETE", key)

    # -- batches ------------------------------------------------------------------------------

    async def get_items(self, keys: Sequence[str]) -> list[bytes | None]:
        if len(keys) > 1 and self._batches:
            values: list[bytes | None] = []
            for start in range(0, len(keys), BATCH_KEYS):
                chunk = keys[start : start + BATCH_KEYS]
                answer = await self._batch(batch_body("get", chunk), chunk[0])
                if answer is None:
                    break
                values.extend(parse_batch_values(answer.content, len(chunk)))
            else:
                return values
        return await _bounded(self.get_item, keys)

    async def set_items(
        self, items: Sequence[tuple[str, bytes]], *, ttl: float | None = None
    ) -> None:
        if len(items) > 1 and self._batches:
            done = 0
            while done < len(items):
                chunk: list[tuple[str, bytes]] = []
                size = 0
                for key, value in items[done:]:
                    if chunk and (len(chunk) >= BATCH_KEYS or size + len(value) > BATCH_BYTES):
                        break
                    chunk.append((key, value))
                    size += len(value)
                body = batch_body("set", items=chunk, ttl=ttl)
                if await self._batch(body, chunk[0][0], splittable=len(chunk) > 1) is None:
                    break
                done += len(chunk)
            else:
                return
            items = items[done:]

        async def put(item: tuple[str, bytes]) -> None:
            await self.set_item(item[0], item[1], ttl=ttl)

        await _bounded(put, items)

    async def remove_items(self, keys: Sequence[str]) -> None:
        if len(keys) > 1 and self._batches:
            done = 0
            while done < len(keys):
                chunk = keys[done : done + BATCH_KEYS]
                if await self._batch(batch_body("remove", chunk), chunk[0]) is None:
                    break
                done += len(chunk)
            else:
                return
            keys = keys[done:]
        await _bounded(self.remove_item, keys)

    async def _batch(
        self, body: bytes, first: str, *, splittable: bool = False
    ) -> httpx.Response | None:
        """POST a batch; None when it must go key by key (no batch route, or too big)."""
        response = await self._send(
            "POST", self._url("", base=True, query=BATCH_QUERY), content=body
        )
        status = response.status_code
        if status in (404, 405, 501) and error_code(response.content, response.headers) is None:
            # Not a unistorage server (no error code): one request per key from now on.
            self._batches = False
            return None
        if status == 413 and splittable:
            return None  # over the server's body limit: these items go one by one
        if status >= 300:
            raise error_of_answer(status, response.content, first, response.headers)
        return response

    # -- listing ------------------------------------------------------------------------------

    async def iter_keys(
        self, base: str = "", *, max_depth: int | None = None
    ) -> AsyncIterator[str]:
        params = {} if max_depth is None else {MAX_DEPTH_QUERY: str(max_depth)}
        strip = len(self._prefix)
        reader = ListingReader()
        url = self._url(base, base=True)
        try:
            async with self.client.stream("GET", url, params=params) as response:
                if response.status_code >= 300:
                    await response.aread()
                    raise error_of_answer(
                        response.status_code, response.content, base or None, response.headers
                    )
                lines = response.aiter_lines()
                while True:
                    try:
                        line = await anext(lines)
                    except StopAsyncIteration:
                        break
                    except httpx.TransportError as exc:
                        # The server dropped the connection midway (it does when its backend
                        # fails after the 200 went out).
                        raise ProtocolError("the server cut the listing short") from exc
                    for key in reader.feed(line):
                        if key.startswith(self._prefix):
                            yield key[strip:]
        except httpx.PoolTimeout as exc:
            raise self._pool_exhausted() from exc
        reader.finish()

    async def clear(self, base: str = "") -> None:
        await self._request("DELETE", base, url=self._url(base, base=True))

    # -- meta ---------------------------------------------------------------------------------

    async def get_meta(self, key: str) -> dict[str, Any]:
        response = await self._request("HEAD", key, missing_ok=True)
        return {} if response is None else meta_of_headers(response.headers)

    async def get_user_meta(self, key: str) -> bytes | None:
        url = self._url(key, query=META_QUERY)
        response = await self._request("GET", key, url=url, missing_ok=True)
        return None if response is None else response.content

    async def set_user_meta(self, key: str, data: bytes) -> None:
        url = self._url(key, query=META_QUERY)
        await self._request("PUT", key, url=url, content=data, headers={"content-type": OCTET})

    async def remove_user_meta(self, key: str) -> None:
        await self._request("DELETE", key, url=self._url(key, query=META_QUERY))

    async def dispose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def __repr__(self) -> str:
        return f"<HttpDriver {self.base!r}>"


@functools.cache
def _tls_context() -> ssl.SSLContext:
    # Loading the CA bundle takes tens of milliseconds; one context serves every client.
    return ssl.create_default_context()


def _put_headers(ttl: float | None) -> dict[str, str]:
    headers = {"content-type": OCTET}
    if ttl is not None:
        headers[TTL_HEADER] = format_ttl(ttl)
    return headers


async def _bounded(work: Callable[[_T], Awaitable[_R]], items: Sequence[_T]) -> list[_R]:
    # A bounded number of requests in flight keeps large batches from exhausting the pool.
    results: list[_R] = []
    for start in range(0, len(items), _CONCURRENCY):
        chunk = items[start : start + _CONCURRENCY]
        results.extend(await asyncio.gather(*(work(item) for item in chunk)))
    return results
