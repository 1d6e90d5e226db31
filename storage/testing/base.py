"""The fixtures every conformance test class of the kit stands on, and the kit's options.

A test class of the kit asks for three fixtures: ``driver`` (a fresh, empty driver, disposed
afterwards), ``storage`` (a `storage.Storage` whose root is that driver) and
``conformance_options`` (what the driver's capabilities cannot say). `DriverFixtures` provides
all three from a driver name or URL; a package overrides ``driver`` when its driver needs more
than a URL (a server started by a fixture, say).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import ClassVar, TypeVar

import pytest
import pytest_asyncio

from storage import Driver, Storage, UnsupportedError, create_driver, create_storage

__all__ = [
    "ConformanceOptions",
    "DriverFixtures",
    "conformance_tests",
    "expired",
    "refuses_ttl",
]

#: The option of `storage.pytest_plugin` (``--unistorage-driver``, ini ``unistorage_driver``)
#: that names the driver under test.
DRIVER_OPTION = "unistorage_driver"

_C = TypeVar("_C", bound=type)


@dataclass(frozen=True, slots=True)
class ConformanceOptions:
    """What a driver does that its `storage.Capabilities` cannot express.

    Everything else (TTL, conditional writes, watch, ...) the kit reads from
    ``driver.capabilities``: a driver without a capability is tested for refusing it with
    `storage.UnsupportedError`. The defaults are the contract; change one only for a reason
    you can name.
    """

    #: Native fields ``get_meta`` must report for a stored key (``"mtime"`` a datetime,
    #: ``"size"`` the byte length). Fields not named here are still checked when reported.
    #: Redis keeps no mtime: ``("size",)``.
    meta_fields: tuple[str, ...] = ()
    #: A write without ``ttl`` keeps the key forever. False for a driver that gives every
    #: write a default expiry (`storage.layers.DefaultTTL`).
    plain_ttl: bool = True
    #: ``get_url`` gives out presigned http(s) URLs (s3); otherwise it must refuse.
    signed_urls: bool = False
    #: A listing may return a key twice, and a page may exceed its ``limit`` (Redis SCAN).
    pages_may_repeat: bool = False


def conformance_tests(cls: _C) -> _C:
    """Mark every coroutine test of a kit class for pytest-asyncio, whatever its mode.

    A driver package may run pytest-asyncio in strict mode, where an unmarked coroutine test
    would not run; marking the kit's tests here keeps that the package's choice.
    """
    for name, value in vars(cls).items():
        if name.startswith("test_") and inspect.iscoroutinefunction(value):
            pytest.mark.asyncio(value)
    return cls


async def expired(storage: Storage, key: str, *, within: float = 10.0) -> None:
    """Wait until ``key`` (written with a short TTL) is gone; fail if it outlives ``within``
    seconds. Polling, not one long sleep: a precise backend answers in its TTL, a coarse or
    loaded one gets the time it needs."""
    deadline = time.monotonic() + within
    while await storage.has_item(key):
        assert time.monotonic() < deadline, f"{key!r} was still there after {within:g} s"
        await asyncio.sleep(0.05)


async def refuses_ttl(storage: Storage) -> None:
    """Check that writes with a TTL are refused, before any I/O, by a driver without TTL."""
    with pytest.raises(UnsupportedError):
        await storage.set_item("expiring", "v", ttl=60)
    with pytest.raises(UnsupportedError):
        await storage.set_items({"expiring:1": 1, "expiring:2": 2}, ttl=60)
    with pytest.raises(UnsupportedError):
        await storage.touch("expiring", 60)
    assert await storage.get_keys() == []


class DriverFixtures:
    """The ``driver``, ``storage`` and ``conformance_options`` fixtures, from a name or URL.

    Set ``driver_url`` to a registered driver name or URL (found through the
    ``unistorage.drivers`` and ``unistorage.schemes`` entry points, as users find it), or run
    pytest with ``--unistorage-driver URL``; set ``options`` where `ConformanceOptions`'
    defaults do not hold. Override the ``driver`` fixture to build the driver yourself.
    """

    #: The driver under test: a registered name (``"dict"``) or URL (``"dict://"``).
    driver_url: ClassVar[str | None] = None
    #: What the driver's capabilities cannot say (see `ConformanceOptions`).
    options: ClassVar[ConformanceOptions] = ConformanceOptions()

    @pytest_asyncio.fixture
    async def driver(self, request: pytest.FixtureRequest) -> AsyncIterator[Driver]:
        """A fresh, empty driver from ``--unistorage-driver`` or ``driver_url``, disposed after."""
        url = request.config.getoption(DRIVER_OPTION, default=None) or self.driver_url
        if not url:
            pytest.fail(
                f"{type(self).__name__} names no driver: set driver_url, override the driver "
                "fixture, or run pytest with --unistorage-driver URL"
            )
        built = create_driver(str(url))
        try:
            yield built
        finally:
            await built.dispose()

    @pytest.fixture
    def storage(self, driver: Driver) -> Storage:
        """A Storage whose root is the driver under test (the driver fixture disposes it)."""
        return create_storage(driver)

    @pytest.fixture
    def conformance_options(self) -> ConformanceOptions:
        """The class's ``options``; override it to choose per parametrized driver."""
        return self.options
