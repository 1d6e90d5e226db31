"""`create_driver`: a driver from a name or a URL, inside the layers its options name."""

from __future__ import annotations

import inspect
import re
from typing import Any
from urllib.parse import parse_qsl, urlencode

from .driver import Driver, parse_url_options
from .errors import InvalidArgumentError
from .layers.options import LAYER_OPTIONS, stack
from .registry import driver_class, scheme_class

__all__ = ["create_driver"]


def create_driver(name_or_url: str | Driver, **options: Any) -> Driver:
    """A driver from a registered name (``"memory"``) or a URL (``"sqlite:///data.db"``).

    Layer options (``read_only``, ``ttl``, ``compress``, ``retry``... listed in
    `storage.layers.options`), as keywords or in the URL's query, build layers around the
    driver, unless its constructor takes the option itself (fs and sqlite open their files
    without writing when ``read_only``; the http driver has its own ``timeout``).
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
    cls = scheme_class(scheme) if sep else driver_class(name_or_url)
    url, layered = _split_layer_options(name_or_url) if sep else (name_or_url, {})
    layered.update({name: options.pop(name) for name in LAYER_OPTIONS if name in options})
    for name in _native_options(cls) & set(layered):
        options[name] = layered.pop(name)
    try:
        driver = cls.from_url(url, **options) if sep else cls(**options)
    except TypeError as exc:
        unknown = _UNEXPECTED.search(str(exc))
        if unknown is None:
            raise
        raise _unknown_option(cls, unknown.group(1)) from exc
    return stack(driver, layered) if layered else driver


_UNEXPECTED = re.compile(r"got an unexpected keyword argument '([^']+)'")


def _unknown_option(cls: type[Driver], name: str) -> InvalidArgumentError:
    """The error for an option no constructor takes, naming the ones the driver does take."""
    known = sorted(_parameters(cls, keyword_only=True))
    takes = f"{', '.join(known)} and the layer options" if known else "only the layer options"
    return InvalidArgumentError(
        f"the {cls.name} driver has no option {name!r} (it takes {takes} of docs/layers.md)"
    )


def _parameters(cls: type[Driver], *, keyword_only: bool = False) -> set[str]:
    """The parameters of a driver's constructor that take a keyword (only those after ``*``)."""
    try:
        parameters = inspect.signature(cls.__init__).parameters
    except (TypeError, ValueError):
        return set()
    return {
        name
        for name, parameter in parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
        or (parameter.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD and not keyword_only)
    }


def _split_layer_options(url: str) -> tuple[str, dict[str, Any]]:
    """``url`` without its layer options, and those options (converted like any URL option)."""
    head, mark, query = url.partition("?")
    if not mark:
        return url, {}
    pairs = parse_qsl(query, keep_blank_values=True)
    taken = [(name, value) for name, value in pairs if name in LAYER_OPTIONS]
    if not taken:
        return url, {}
    kept = [(name, value) for name, value in pairs if name not in LAYER_OPTIONS]
    return head + ("?" + urlencode(kept) if kept else ""), parse_url_options(urlencode(taken))


def _native_options(cls: type[Driver]) -> set[str]:
    """The layer options a driver's constructor takes itself."""
    return _parameters(cls) & set(LAYER_OPTIONS)
