"""How the redis driver reads a URL: its schemes, mapped onto redis-py's, and its query split
between the driver's own options and redis-py's.

Valkey speaks the Redis protocol, so ``valkey://``, ``valkeys://`` and ``valkey+cluster://``
are other spellings of ``redis://``, ``rediss://`` (TLS) and ``redis+cluster://``: the same
host, port, database, credentials and query reach the same redis-py client.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from redis.asyncio import cluster, connection

from storage.driver import parse_url_options
from storage.errors import InvalidArgumentError

__all__ = ["SCHEMES", "client_url", "split_options"]

# Each scheme the driver reads: redis-py's scheme for it, and whether it names a cluster.
_CLIENT_SCHEMES: dict[str, tuple[str, bool]] = {
    "redis": ("redis", False),
    "rediss": ("rediss", False),
    "redis+cluster": ("redis", True),
    "valkey": ("redis", False),
    "valkeys": ("rediss", False),
    "valkey+cluster": ("redis", True),
}

SCHEMES = tuple(_CLIENT_SCHEMES)

# Options read from a URL's query string by the driver; everything else goes to redis-py.
_DRIVER_OPTIONS = frozenset(
    {"base", "scan_count", "retries", "notify_keyspace_events", "max_connections", "pool_timeout"}
)


def client_url(url: str) -> tuple[str, bool]:
    """The URL redis-py reads for ``url``, and whether it names a cluster.

    A scheme the driver does not know (``unix://``, say) is left for redis-py to read or
    refuse.
    """
    parts = urlsplit(url)
    scheme, cluster = _CLIENT_SCHEMES.get(parts.scheme, (parts.scheme, False))
    if scheme == parts.scheme:
        return url, cluster
    return scheme + url[len(parts.scheme) :], cluster


@functools.cache
def _client_options() -> frozenset[str]:
    """The query options redis-py reads from a URL: its parsed ones and the keywords of the
    connection, pool and cluster classes a URL's query reaches (of the installed version)."""
    names = set(getattr(connection, "URL_QUERY_ARGUMENT_PARSERS", {}))
    for cls in (
        connection.AbstractConnection,
        connection.Connection,
        connection.SSLConnection,
        connection.UnixDomainSocketConnection,
        connection.ConnectionPool,
        cluster.RedisCluster,
    ):
        for name, parameter in inspect.signature(cls.__init__).parameters.items():
            if name != "self" and parameter.kind in (
                parameter.KEYWORD_ONLY,
                parameter.POSITIONAL_OR_KEYWORD,
            ):
                names.add(name)
    return frozenset(names)


def split_options(url: str) -> tuple[str, dict[str, Any]]:
    """``url`` without the driver's own query options, and those options as values.

    An option neither the driver nor redis-py reads is an `InvalidArgumentError` here, before
    any connection (redis-py would raise a `TypeError` at the first command).
    """
    parts = urlsplit(url)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    unknown = sorted({k for k, _ in pairs} - _DRIVER_OPTIONS - _client_options())
    if unknown:
        raise InvalidArgumentError(
            f"the redis driver has no option {unknown[0]!r}: its own are "
            f"{', '.join(sorted(_DRIVER_OPTIONS))}; the others are redis-py's connection "
            "options (socket_timeout, health_check_interval, ssl_cert_reqs, ..., see "
            "docs/drivers/redis.md)"
        )
    own = parse_url_options(urlencode([(k, v) for k, v in pairs if k in _DRIVER_OPTIONS]))
    rest = urlencode([(k, v) for k, v in pairs if k not in _DRIVER_OPTIONS])
    return urlunsplit(parts._replace(query=rest)), own
