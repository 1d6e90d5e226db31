"""The http driver: a client of `unistorage serve` (unstorage's storage-server protocol), on httpx.

Values travel as raw bytes (``application/octet-stream``), so every value round-trips exactly.
The wire format (paths, headers, ETags, batches, listings, pages, error codes) is
`storage.protocol`, shared with the server; `drivers._http_client.HttpClient` owns the
connections. Batches use the server's ``POST base/?batch`` route, falling back to one request
per key on servers without it (such as unstorage's own). increment, touch and renewed reads use
the server's ``POST ?increment`` / ``POST ?touch`` routes and ``x-renew-ttl``; streams are the
bodies of one GET or PUT, read and sent as they go.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx

from drivers._http_client import HttpClient
from storage import Capabilities, Driver, InvalidArgumentError, UnsupportedError
from storage.driver import parse_url_options
from storage.keys import normalize_base
from storage.protocol import (
    BATCH_BYTES,
    BATCH_KEYS,
    BATCH_QUERY,
    CURSOR_QUERY,
    INCREMENT_QUERY,
    LIMIT_QUERY,
    MAX_DEPTH_QUERY,
    META_QUERY,
    OCTET,
    RENEW_TTL_HEADER,
    STORED_HEADER,
    TOUCH_QUERY,
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
    meta_of_headers,
    parse_batch_values,
    parse_counter,
    parse_etag,
    parse_page,
    parse_touched,
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
        sent = dict(headers or {})
        if token:
            sent["authorization"] = f"Bearer {check_token(token)}"
        self._http = HttpClient(
            urlunsplit((parts.scheme, parts.netloc, "", "", "")),
            # The URL path is a key prefix: decoded and normalized like any base.
            normalize_base(unquote(parts.path)),
            headers=sent,
            timeout=timeout,
            max_connections=max_connections,
            pool_timeout=pool,
        )
        self.base = self._http.url("", base=True)
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
        return self._http.client

    async def _answer(self, method: str, key: str, **kwargs: Any) -> httpx.Response:
        response = await self._http.request(method, key, **kwargs)
        assert response is not None  # only a request with missing_ok answers None
        return response

    # -- items --------------------------------------------------------------------------------

    async def get_item(self, key: str) -> bytes | None:
        response = await self._http.request("GET", key, missing_ok=True, headers=_RAW)
        return None if response is None else response.content

    async def get_item_with_etag(self, key: str) -> tuple[bytes | None, str | None]:
        # One GET: the server's ETag names exactly the body it sends.
        response = await self._http.request("GET", key, missing_ok=True, headers=_RAW)
        if response is None:
            return None, None
        return response.content, parse_etag(response.headers.get("etag"))

    async def has_item(self, key: str) -> bool:
        return await self._http.request("HEAD", key, missing_ok=True) is not None

    async def set_item(self, key: str, value: bytes, *, ttl: float | None = None) -> str | None:
        response = await self._answer("PUT", key, content=value, headers=_put_headers(ttl))
        return parse_etag(response.headers.get("etag"))

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
            headers["if-match"] = _if_match(if_match)
        if if_none_match:
            headers["if-none-match"] = "*"
        response = await self._answer("PUT", key, content=value, headers=headers)
        return parse_etag(response.headers.get("etag"))

    async def remove_item(self, key: str) -> None:
        await self._http.request("DELETE", key)

    async def remove_item_conditional(self, key: str, *, if_match: str) -> None:
        await self._http.request("DELETE", key, headers={"if-match": _if_match(if_match)})

    # -- atomic operations --------------------------------------------------------------------

    async def _post(self, key: str, query: str, ttl: float | None) -> bytes:
        headers = {} if ttl is None else {TTL_HEADER: format_ttl(ttl)}
        response = await self._http.send("POST", self._http.url(key, query=query), headers=headers)
        status = response.status_code
        if status in (404, 405, 501) and error_code(response.content, response.headers) is None:
            route = query.partition("=")[0]
            raise UnsupportedError(f"the server at {self._http.origin} has no ?{route} route")
        if status >= 300:
            raise error_of_answer(status, response.content, key, response.headers)
        return response.content

    async def increment(self, key: str, by: int, *, ttl: float | None = None) -> int:
        return parse_counter(await self._post(key, f"{INCREMENT_QUERY}={by}", ttl))

    async def touch(self, key: str, ttl: float) -> bool:
        return parse_touched(await self._post(key, TOUCH_QUERY, ttl))

    async def get_item_touch(self, key: str, ttl: float) -> bytes | None:
        headers = {**_RAW, RENEW_TTL_HEADER: format_ttl(ttl)}
        response = await self._http.request("GET", key, missing_ok=True, headers=headers)
        if response is None:
            return None
        if RENEW_TTL_HEADER not in response.headers:
            # A server that does not know the header (unstorage's) read without renewing.
            raise UnsupportedError(f"the server at {self._http.origin} does not renew TTLs")
        return response.content

    # -- streams ------------------------------------------------------------------------------

    async def read_chunks(self, key: str, chunk_size: int) -> AsyncIterator[bytes] | None:
        return await self._http.open(key, chunk_size, headers=_RAW)

    async def write_chunks(
        self, key: str, chunks: AsyncIterator[bytes], *, ttl: float | None = None
    ) -> str | None:
        # httpx sends an async iterator as a chunked body; should the chunks fail, the body
        # never ends, and the server drops the partial value.
        response = await self._answer("PUT", key, content=chunks, headers=_put_headers(ttl))
        return parse_etag(response.headers.get("etag"))

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
        response = await self._http.send(
            "POST", self._http.url("", base=True, query=BATCH_QUERY), content=body
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
        prefix = self._http.prefix
        reader = ListingReader()
        url = self._http.url(base, base=True)
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
                        if key.startswith(prefix):
                            yield key[len(prefix) :]
        except httpx.PoolTimeout as exc:
            raise self._http.pool_exhausted() from exc
        reader.finish()

    async def list_page(
        self,
        base: str = "",
        *,
        limit: int,
        cursor: str | None = None,
        max_depth: int | None = None,
    ) -> tuple[list[str], str | None]:
        params = {LIMIT_QUERY: str(limit)}
        if cursor is not None:
            params[CURSOR_QUERY] = cursor
        if max_depth is not None:
            params[MAX_DEPTH_QUERY] = str(max_depth)
        url = self._http.url(base, base=True)
        response = await self._answer("GET", base, url=url, params=params)
        page = parse_page(response.content)
        if page is None:  # a whole listing: the server has no pages (unstorage's)
            return await Driver.list_page(
                self, base, limit=limit, cursor=cursor, max_depth=max_depth
            )
        keys, following = page
        prefix = self._http.prefix
        return [key[len(prefix) :] for key in keys if key.startswith(prefix)], following

    async def clear(self, base: str = "") -> None:
        await self._http.request("DELETE", base, url=self._http.url(base, base=True))

    # -- meta ---------------------------------------------------------------------------------

    async def get_meta(self, key: str) -> dict[str, Any]:
        response = await self._http.request("HEAD", key, missing_ok=True)
        return {} if response is None else meta_of_headers(response.headers)

    async def get_user_meta(self, key: str) -> bytes | None:
        url = self._http.url(key, query=META_QUERY)
        response = await self._http.request("GET", key, url=url, missing_ok=True)
        return None if response is None else response.content

    async def set_user_meta(self, key: str, data: bytes) -> None:
        url = self._http.url(key, query=META_QUERY)
        await self._http.request("PUT", key, url=url, content=data, headers={"content-type": OCTET})

    async def remove_user_meta(self, key: str) -> None:
        await self._http.request("DELETE", key, url=self._http.url(key, query=META_QUERY))

    async def dispose(self) -> None:
        await self._http.close()

    def __repr__(self) -> str:
        return f"<HttpDriver {self.base!r}>"


# The stored bytes exactly: without STORED_HEADER a server sends a stored string as its text.
_RAW = {"accept": OCTET, STORED_HEADER: "1"}


def _if_match(etag: str) -> str:
    return "*" if etag == "*" else format_etag(etag)


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
