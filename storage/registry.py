"""Finding drivers: by registered name or by URL scheme, through Python entry points.

Built-in drivers are registered exactly as a third-party package registers its own::

    [project.entry-points."unistorage.drivers"]
    mydriver = "mypackage.driver:MyDriver"

    [project.entry-points."unistorage.schemes"]
    mydriver = "mypackage.driver:MyDriver"      # URLs like mydriver://...
"""

from __future__ import annotations

import inspect
from importlib.metadata import EntryPoint, entry_points
from typing import Any
from urllib.parse import parse_qsl, urlencode

from .driver import Driver, parse_url_options
from .errors import InvalidArgumentError, UnsupportedError

__all__ = ["available_drivers", "create_driver", "driver_class", "register_driver"]

DRIVER_GROUP = "unistorage.drivers"
SCHEME_GROUP = "unistorage.schemes"

_registered: dict[str, dict[str, type[Driver]]] = {DRIVER_GROUP: {}, SCHEME_GROUP: {}}
_entry_points: dict[str, dict[str, EntryPoint]] = {}


def _discover(group: str) -> dict[str, EntryPoint]:
    found = _entry_points.get(group)
    if found is None:
        found = {point.name: point for point in entry_points(group=group)}
        _entry_points[group] = found
    return found


def refresh() -> None:
    """Forget the entry points read so far (after installing a package at run time)."""
    _entry_points.clear()


def register_driver(name: str, cls: type[Driver], *, schemes: tuple[str, ...] = ()) -> None:
    """Register ``cls`` under ``name`` (and URL ``schemes``) in this process, without a package."""
    if not (isinstance(cls, type) and issubclass(cls, Driver)):
        raise InvalidArgumentError(f"{cls!r} is not a storage.Driver subclass")
    _registered[DRIVER_GROUP][name] = cls
    for scheme in schemes or cls.schemes:
        _registered[SCHEME_GROUP][scheme] = cls


def _load(group: str, name: str, what: str) -> type[Driver]:
    cls = _registered[group].get(name)
    if cls is not None:
        return cls
    point = _discover(group).get(name)
    if point is None:
        known = sorted({*_registered[group], *_discover(group)})
        raise InvalidArgumentError(f"no driver for {what} {name!r}; known: {', '.join(known)}")
    try:
        loaded = point.load()
    except ImportError as exc:
        raise UnsupportedError(
            f"the driver for {what} {name!r} cannot be imported ({exc}); "
            f"is its package or extra installed (pip install 'unistorage[{point.name}]')?"
        ) from exc
    if not (isinstance(loaded, type) and issubclass(loaded, Driver)):
        raise InvalidArgumentError(f"entry point {point.value!r} is not a storage.Driver subclass")
    return loaded


def driver_class(name_or_scheme: str) -> type[Driver]:
    """The driver class registered under a name, or (failing that) under a URL scheme."""
    try:
        return _load(DRIVER_GROUP, name_or_scheme, "name")
    except InvalidArgumentError:
        return _load(SCHEME_GROUP, name_or_scheme, "name")


def available_drivers() -> list[str]:
    """Names of every driver registered in this process or by an installed package."""
    return sorted({*_registered[DRIVER_GROUP], *_discover(DRIVER_GROUP)})


def create_driver(name_or_url: str | Driver, **options: Any) -> Driver:
    """A driver from a registered name (``"memory"``) or a URL (``"sqlite:///data.db"``).

    The options ``read_only`` and ``ttl`` (keywords or URL query) become the `ReadOnly` and
    `DefaultTTL` layers around the driver, unless its constructor takes them itself (fs and
    sqlite open their files without writing when ``read_only``).
    """
    if isinstance(name_or_url, Driver):
        if options:
            raise InvalidArgumentError("options go with a driver name or URL, not a driver object")
        return name_or_url
    if not isinstance(name_or_url, str) or not name_or_url:
        raise InvalidArgumentError(
            f"expected a driver, a driver name or a URL, not {name_or_url!r}"
        )
    scheme, sep, _ = name_or_url.partition("://")
    cls = _load(SCHEME_GROUP, scheme.lower(), "URL scheme") if sep else driver_class(name_or_url)
    url, layered = _split_layer_options(name_or_url) if sep else (name_or_url, {})
    layered.update({name: options.pop(name) for name in _LAYER_OPTIONS if name in options})
    for name in _native_options(cls) & set(layered):
        options[name] = layered.pop(name)
    driver = cls.from_url(url, **options) if sep else cls(**options)
    return _wrap(driver, layered)


def _split_layer_options(url: str) -> tuple[str, dict[str, Any]]:
    """``url`` without its layer options, and those options (converted like any URL option)."""
    head, mark, query = url.partition("?")
    if not mark:
        return url, {}
    pairs = parse_qsl(query, keep_blank_values=True)
    kept = [(name, value) for name, value in pairs if name not in _LAYER_OPTIONS]
    taken = [(name, value) for name, value in pairs if name in _LAYER_OPTIONS]
    if not taken:
        return url, {}
    return head + ("?" + urlencode(kept) if kept else ""), parse_url_options(urlencode(taken))


_LAYER_OPTIONS = ("ttl", "read_only")


def _native_options(cls: type[Driver]) -> set[str]:
    """The layer options a driver's constructor takes itself."""
    try:
        parameters = inspect.signature(cls.__init__).parameters
    except (TypeError, ValueError):
        return set()
    return {name for name in _LAYER_OPTIONS if name in parameters}


def _wrap(driver: Driver, layered: dict[str, Any]) -> Driver:
    from .layers import DefaultTTL, ReadOnly

    ttl = layered.get("ttl")
    if ttl not in (None, "", 0):
        driver = DefaultTTL(driver, ttl=ttl)
    read_only = layered.get("read_only", False)
    if not isinstance(read_only, bool):
        raise InvalidArgumentError(f"read_only is true or false, not {read_only!r}")
    if read_only:
        driver = ReadOnly(driver)
    return driver
