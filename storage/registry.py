"""Finding drivers: by registered name or by URL scheme, through Python entry points.

Built-in drivers are registered exactly as a third-party package registers its own::

    [project.entry-points."unistorage.drivers"]
    mydriver = "mypackage.driver:MyDriver"

    [project.entry-points."unistorage.schemes"]
    mydriver = "mypackage.driver:MyDriver"      # URLs like mydriver://...
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points

from .driver import Driver
from .errors import InvalidArgumentError, UnsupportedError

__all__ = ["available_drivers", "driver_class", "register_driver", "scheme_class"]

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


def scheme_class(scheme: str) -> type[Driver]:
    """The driver class registered for URL scheme ``scheme``."""
    return _load(SCHEME_GROUP, scheme.lower(), "URL scheme")


def driver_class(name_or_scheme: str) -> type[Driver]:
    """The driver class registered under a name, or (failing that) under a URL scheme."""
    try:
        return _load(DRIVER_GROUP, name_or_scheme, "name")
    except InvalidArgumentError:
        return _load(SCHEME_GROUP, name_or_scheme, "name")


def available_drivers() -> list[str]:
    """Names of every driver registered in this process or by an installed package."""
    return sorted({*_registered[DRIVER_GROUP], *_discover(DRIVER_GROUP)})
