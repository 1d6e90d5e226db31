"""Layers named by driver options: how a URL (or keyword options) builds a stack of layers.

`storage.create_driver` passes the options below to `stack`, unless the driver's own
constructor takes an option of the same name (the http driver's ``timeout``, fs and sqlite's
``read_only``). So every place that takes a driver URL (``create_storage``, mounts,
``unistorage serve --driver/--mount``, the CLI) can stack layers::

    redis://cache:6379?compress=true&encrypt_keys_env=APP_KEYS&retry=3&timeout=2

The stack is always built in the same order, from the driver outwards: Encrypt, Compress,
Limit, DefaultTTL, Cache, Retry, Timeout, Trace, Stats, ReadOnly. Compression therefore sees
plaintext, limits see the values as the caller wrote them, and retries sit under one deadline.

========================== ================================================================
option                     layer
========================== ================================================================
``encrypt_keys_env=NAME``  `Encrypt` with the keys in environment variable NAME (newest first)
``compress=true``          `Compress`; ``compress_min_size``, ``compress_level`` tune it
``max_value_size``, ...    `Limit` (also ``max_key_length``, ``min_ttl``, ``max_ttl``,
                           ``ttl_policy=refuse|clamp``)
``ttl=SECONDS``            `DefaultTTL`
``cache=ENTRIES``          `Cache` with an lru of that many entries; ``cache_ttl`` seconds
``retry=ATTEMPTS``         `Retry`; ``retry_budget`` seconds in all
``timeout=SECONDS``        `Timeout`
``trace=true``             `Trace` (needs opentelemetry-api)
``stats=true``             `Stats`
``read_only=true``         `ReadOnly`
========================== ================================================================

Key material never travels in a URL: only the name of the variable that holds it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..driver import Driver
from ..errors import InvalidArgumentError

__all__ = ["LAYER_OPTIONS", "stack"]

_LIMIT = ("max_value_size", "max_key_length", "min_ttl", "max_ttl", "ttl_policy")

#: Every option `stack` reads.
LAYER_OPTIONS = frozenset(
    {
        "encrypt_keys_env",
        "compress",
        "compress_min_size",
        "compress_level",
        *_LIMIT,
        "ttl",
        "cache",
        "cache_ttl",
        "retry",
        "retry_budget",
        "timeout",
        "trace",
        "stats",
        "read_only",
    }
)


def _flag(options: Mapping[str, Any], name: str) -> bool:
    value = options.get(name, False)
    if not isinstance(value, bool):
        raise InvalidArgumentError(f"{name} is true or false, not {value!r}")
    return value


def _number(options: Mapping[str, Any], name: str) -> Any:
    value = options[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidArgumentError(f"{name} is a number, not {value!r}")
    return value


def _given(options: Mapping[str, Any], name: str) -> bool:
    return options.get(name) not in (None, "", False)


def stack(driver: Driver, options: Mapping[str, Any]) -> Driver:
    """``driver`` inside the layers ``options`` name (see the module docstring)."""
    unknown = set(options) - LAYER_OPTIONS
    if unknown:
        raise InvalidArgumentError(f"not layer options: {', '.join(sorted(unknown))}")
    steps: list[Callable[[Driver], Driver]] = []
    if _given(options, "encrypt_keys_env"):
        from .encrypt import Encrypt, keys_from_env

        keys = keys_from_env(str(options["encrypt_keys_env"]))
        steps.append(lambda inner: Encrypt(inner, keys=keys))
    if _flag(options, "compress") or "compress_min_size" in options:
        from .compress import Compress

        tuning = {
            name.removeprefix("compress_"): _number(options, name)
            for name in ("compress_min_size", "compress_level")
            if name in options
        }
        steps.append(lambda inner: Compress(inner, **tuning))
    bounds = {name: options[name] for name in _LIMIT if _given(options, name)}
    if bounds:
        from .limit import Limit

        steps.append(lambda inner: Limit(inner, **bounds))
    if _given(options, "ttl") and options["ttl"] != 0:
        from .ttl import DefaultTTL

        steps.append(lambda inner: DefaultTTL(inner, ttl=_number(options, "ttl")))
    if _given(options, "cache"):
        from ..registry import driver_class
        from .cache import Cache

        lru: Any = driver_class("lru")  # through the registry: the core imports no driver
        entries = _number(options, "cache")
        cache_ttl = options.get("cache_ttl")
        steps.append(lambda inner: Cache(inner, lru(max_entries=entries), ttl=cache_ttl))
    if _given(options, "retry"):
        from .retry import Retry

        retry = {"attempts": _number(options, "retry")}
        if "retry_budget" in options:
            retry["budget"] = _number(options, "retry_budget")
        steps.append(lambda inner: Retry(inner, **retry))
    if _given(options, "timeout"):
        from .timeout import Timeout

        steps.append(lambda inner: Timeout(inner, seconds=_number(options, "timeout")))
    if _flag(options, "trace"):
        from .trace import Trace

        steps.append(lambda inner: Trace(inner))
    if _flag(options, "stats"):
        from .stats import Stats

        steps.append(lambda inner: Stats(inner))
    if _flag(options, "read_only"):
        from .readonly import ReadOnly

        steps.append(lambda inner: ReadOnly(inner))
    for step in steps:
        driver = step(driver)
    return driver
