"""unistorage's driver test kit: the conformance suite every driver and layer must pass.

Install it with ``pip install "unistorage[testing]"`` and subclass `DriverConformance` in your
driver package's tests; pytest then runs the whole suite against your driver::

    from storage.testing import DriverConformance


    class TestDictDriver(DriverConformance):
        driver_url = "dict://"  # found through your package's entry points

The suite reads ``driver.capabilities``: a driver without TTL, conditional writes or watch is
tested for refusing them with `storage.UnsupportedError` rather than skipped. What capabilities
cannot say is a `ConformanceOptions` value in ``options``. unistorage's pytest plugin
(``storage.pytest_plugin``, registered under ``pytest11``) adds ``--unistorage-driver URL``.
Each part of the suite is also a class of its own (`ItemTests`, `TtlMetaTests`, ...).
"""

from __future__ import annotations

from .base import ConformanceOptions, DriverFixtures, conformance_tests, refuses_ttl
from .batches import BatchTests
from .conditional_watch import ConditionalWatchTests
from .items import ItemTests
from .listing import ListingTests
from .model import ModelTests
from .read_only import ReadOnlyTests
from .surface import SurfaceTests
from .ttl_meta import TtlMetaTests

__all__ = [
    "BatchTests",
    "ConditionalWatchTests",
    "ConformanceOptions",
    "DriverConformance",
    "DriverFixtures",
    "ItemTests",
    "ListingTests",
    "ModelTests",
    "ReadOnlyTests",
    "SurfaceTests",
    "TtlMetaTests",
    "conformance_tests",
    "refuses_ttl",
]


class DriverConformance(
    ItemTests,
    BatchTests,
    ListingTests,
    TtlMetaTests,
    ConditionalWatchTests,
    SurfaceTests,
    ReadOnlyTests,
    ModelTests,
):
    """The whole conformance suite; subclass it as ``Test<YourDriver>`` and name the driver.

    Set ``driver_url`` (a registered name or URL) or override the ``driver`` fixture (an async
    fixture yielding a fresh, empty driver), and ``options`` where `ConformanceOptions`'
    defaults do not hold for your driver.
    """
