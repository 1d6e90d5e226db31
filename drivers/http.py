"""The http driver: a client of `unistorage serve` (unstorage's storage-server protocol), on httpx.

Values travel as raw bytes (``application/octet-stream``), so every value round-trips exactly.
Keys become percent-encoded paths under the base URL; ``x-ttl`` carries expiry, ``HEAD`` the
metadata, ``If-Match``/``If-None-Match`` conditional writes and ``?meta`` user meta. Batches
use the server's ``POST base/?batch`` route, falling back to one request per key on servers
without it (such as unstorage's own).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl
from base64 import b64decode, b64encode
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import httpx
import orjson

from storage import (
    ConflictError,
    Driver,
    InvalidArgumentError,
    ReadOnlyError,
    UnsupportedError,
)
from storage.driver import parse_url_options
from storage.keys import normalize_base

__all__ = ["HttpDriver"]

_OCTET = "application/octet-stream"
_CONCURRENCY = 32
_BATCH_KEYS = 1000
_BATCH_BYTES = 4 * 1024 * 1024
_T = TypeVar("_T")
_R = TypeVar("_R")


class HttpStatusError(RuntimeError):
    """The server answered with an error status the storage errors do not name."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


class HttpDriver(Driver):
    """Keys under ``base`` (a URL; its path is a key prefix) on a storage server.

    ``token`` is sent as a bearer token; ``headers`` are added to every request. ``timeout``
    bounds each request (connecting included), so a server that is down fails quickly.
    """

    name = "http"
    schemes = ("http", "https")
    supports_ttl = True
    supports_conditional = True

    def __init__(
        self,
        *,
        base: str,
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 30.0,
        read_only: bool = False,
    ) -> None:
        parts = urlsplit(base)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise InvalidArgumentError(f"the http driver needs an http(s) URL, not {base!r}")
        self._origin = urlunsplit((parts.scheme, parts.netloc, "", "", ""))
        # The URL path is a key prefix: decoded and normalized like any base.
        self._prefix = normalize_base(unquote(parts.path))
        self.base = self._url("", True)
        self._headers = dict(headers or {})
        if token:
            self._headers["authorization"] = f"Bearer {token}"
        self._timeout = httpx.Timeout(timeout, connect=min(timeout, 5.0))
        self._client: httpx.AsyncClient | None = None
        self._batches = True
        self.read_only = read_only

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Driver:
        """``http://host:port/prefix?timeout=5``; the query holds options, the rest the base."""
        parts = urlsplit(url)
        base = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
        return cls(base=base, **{**parse_url_options(parts.query), **options})

    @property
    def client(self) -> httpx.AsyncClient:
        """The connection pool, opened on first use."""
        if self._client is None:
            self._client = httpx.AsyncClient(
                headers=self._headers, timeout=self._timeout, verify=_tls_context()
            )
        return self._client

    def _url(self, key: str, base: bool = False) -> str:
        path = quote((self._prefix + key).replace(":", "/"), safe="/")
        return f"{self._origin}/{path}" + ("/" if base and path and not path.endswith("/") else "")

    async def _request(
        self,
        method: str,
        key: str,
        *,
        url: str | None = None,
        missing_ok: bool = False,
        **kwargs: Any,
    ) -> httpx.Response | None:
        response = await self.client.request(method, url or self._url(key), **kwargs)
        status = response.status_code
        if status < 300:
            return response
        if status == 404 and missing_ok:
            return None
        raise _error(status, _message(response), key)

    # -- items --------------------------------------------------------------------------------

    async def get_item(self, key: str) -> bytes | None:
        response = await self._request("GET", key, missing_ok=True, headers={"accept": _OCTET})
        return None if response is None else response.content

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
            headers["if-match"] = f'"{if_match}"'
        if if_none_match:
            headers["if-none-match"] = "*"
        await self._request("PUT", key, content=value, headers=headers)
        return None

    async def remove_item(self, key: str) -> None:
        await self._request("DELETE", key)

    async def get_items(self, keys: Sequence[str]) -> list[bytes | None]:
        if len(keys) > 1 and self._batches:
            values: list[bytes | None] = []
            for start in range(0, len(keys), _BATCH_KEYS):
                answer = await self._batch({"get": keys[start : start + _BATCH_KEYS]})
                if answer is None:
                    break
                values.extend(None if v is None else b64decode(v) for v in answer["values"])
            else:
                return values
        return await _bounded(self.get_item, keys)

    async def set_items(
        self, items: Sequence[tuple[str, bytes]], *, ttl: float | None = None
    ) -> None:
        if len(items) > 1 and self._batches:
            done = 0
            while done < len(items):
                chunk: list[tuple[str, str]] = []
                size = 0
                for key, value in items[done:]:
                    if chunk and (len(chunk) >= _BATCH_KEYS or size + len(value) > _BATCH_BYTES):
                        break
                    chunk.append((key, b64encode(value).decode()))
                    size += len(value)
                if await self._batch({"set": chunk, "ttl": ttl}) is None:
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
                if await self._batch({"remove": keys[done : done + _BATCH_KEYS]}) is None:
                    break
                done += _BATCH_KEYS
            else:
                return
            keys = keys[done:]
        await _bounded(self.remove_item, keys)

    async def _batch(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """POST a batch; None (and no more tries) when the server does not speak batches."""
        first = next(iter(body.values()))[0]
        key = first[0] if isinstance(first, list) else first
        url = self._url("", True) + "?batch"
        response = await self.client.post(url, content=orjson.dumps(body))
        if response.status_code in (404, 405, 501) and "batch" not in _message(response):
            # A plain unstorage server: fall back to one request per key from now on.
            self._batches = False
            return None
        if response.status_code == 413 and len(next(iter(body.values()))) > 1:
            return None  # over the server's body limit: these items go one by one
        if response.status_code >= 300:
            raise _error(response.status_code, _message(response), key)
        answer: dict[str, Any] = orjson.loads(response.content)
        return answer

    # -- listing ------------------------------------------------------------------------------

    async def iter_keys(
        self, base: str = "", *, max_depth: int | None = None
    ) -> AsyncIterator[str]:
        params = {} if max_depth is None else {"max_depth": str(max_depth)}
        strip = len(self._prefix)
        complete = False
        async with self.client.stream("GET", self._url(base, True), params=params) as response:
            if response.status_code >= 300:
                await response.aread()
                raise _error(response.status_code, _message(response), base or None)
            async for line in response.aiter_lines():
                complete = line.rstrip().endswith("]")
                for key in _listed(line):
                    key = key.replace("/", ":")
                    if key.startswith(self._prefix):
                        yield key[strip:]
        if not complete:
            raise HttpStatusError(502, "the server cut the listing short")

    async def clear(self, base: str = "") -> None:
        await self._request("DELETE", base, url=self._url(base, True))

    # -- meta ---------------------------------------------------------------------------------

    async def get_meta(self, key: str) -> dict[str, Any]:
        response = await self._request("HEAD", key, missing_ok=True)
        if response is None:
            return {}
        headers = response.headers
        meta: dict[str, Any] = {}
        if modified := headers.get("last-modified"):
            with contextlib.suppress(TypeError, ValueError):
                meta["mtime"] = parsedate_to_datetime(modified)
        if ttl := headers.get("x-ttl"):
            meta["ttl"] = float(ttl)
        if etag := headers.get("etag"):
            meta["etag"] = etag.removeprefix("W/").strip('"')
        if size := headers.get("x-size"):
            meta["size"] = int(size)
        return meta

    async def get_user_meta(self, key: str) -> bytes | None:
        response = await self._request("GET", key, url=self._url(key) + "?meta", missing_ok=True)
        return None if response is None else response.content

    async def set_user_meta(self, key: str, data: bytes) -> None:
        headers = {"content-type": _OCTET}
        await self._request("PUT", key, url=self._url(key) + "?meta", content=data, headers=headers)

    async def remove_user_meta(self, key: str) -> None:
        await self._request("DELETE", key, url=self._url(key) + "?meta")

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
    headers = {"content-type": _OCTET}
    if ttl is not None:
        headers["x-ttl"] = repr(float(ttl))
    return headers


def _message(response: httpx.Response) -> str:
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return response.text[:200] or response.reason_phrase
    if isinstance(body, dict):
        return str(body.get("message") or body.get("statusMessage") or response.reason_phrase)
    return response.reason_phrase


def _error(status: int, message: str, key: str | None) -> Exception:
    if status == 412:
        return ConflictError(key or "", message)
    if status == 405 and "read-only" in message:
        return ReadOnlyError(key or "", "http")
    if status == 501:
        return UnsupportedError(message)
    if status == 400:
        return InvalidArgumentError(message)
    return HttpStatusError(status, message)


def _listed(line: str) -> list[str]:
    """Keys on one line of a listing: one per line from unistorage, all on one line elsewhere."""
    text = line.strip().rstrip(",")
    if text in ("", "[", "]"):
        return []
    if text.startswith("["):
        found = orjson.loads(text if text.endswith("]") else text + "]")
        return [key for key in found if isinstance(key, str)]
    key = orjson.loads(text.removesuffix("]").rstrip())
    return [key] if isinstance(key, str) else []


async def _bounded(work: Callable[[_T], Awaitable[_R]], items: Sequence[_T]) -> list[_R]:
    # A bounded number of requests in flight keeps large batches from exhausting the pool.
    results: list[_R] = []
    for start in range(0, len(items), _CONCURRENCY):
        chunk = items[start : start + _CONCURRENCY]
        results.extend(await asyncio.gather(*(work(item) for item in chunk)))
    return results
