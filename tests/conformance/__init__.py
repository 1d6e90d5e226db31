"""The repository's own run of the driver test kit (`storage.testing`).

Each module here runs one class of the kit over every driver and layer that a module of
``tests/fixtures/`` lists in ``CONFORMANCE_DRIVERS`` (``tests/conftest.py`` parametrizes
``driver_name``); a third-party package runs the same classes through
`storage.testing.DriverConformance`.
"""

from __future__ import annotations

import pytest

from storage import Driver
from storage.testing import ConformanceOptions, DriverFixtures

#: The names a fixture module may put in ``CONFORMANCE_EXCLUDES``, for what capabilities
#: cannot say. ``stores``: the driver keeps nothing (left out of the kit); ``meta``: no native
#: mtime; ``plain_ttl``: every write expires (a default TTL); ``ttl``: no TTL, which keeps it
#: out of the tests marked ``capability("ttl")`` outside the kit (the kit itself reads
#: ``capabilities.ttl``).
EXCLUDES = frozenset({"stores", "meta", "plain_ttl", "ttl"})


class EveryDriver(DriverFixtures):
    """The kit's fixtures over the parametrized driver of ``tests/fixtures/``."""

    pytestmark = pytest.mark.capability("stores")

    @pytest.fixture
    def driver(self, driver_name: str, request: pytest.FixtureRequest) -> Driver:
        """The fixture module's fresh, empty driver (that fixture disposes it)."""
        value = request.getfixturevalue(f"driver_{driver_name}")
        assert isinstance(value, Driver)
        return value

    @pytest.fixture
    def conformance_options(
        self,
        driver: Driver,
        driver_options: ConformanceOptions | None,
        driver_excludes: frozenset[str],
    ) -> ConformanceOptions:
        """The fixture module's ``CONFORMANCE_OPTIONS`` for this driver, or the built-ins'
        options (mtime and size in meta) less what its ``CONFORMANCE_EXCLUDES`` names."""
        if driver_options is not None:
            return driver_options
        unknown = driver_excludes - EXCLUDES
        assert not unknown, f"unknown CONFORMANCE_EXCLUDES {sorted(unknown)}"
        return ConformanceOptions(
            meta_fields=() if "meta" in driver_excludes else ("mtime", "size"),
            plain_ttl="plain_ttl" not in driver_excludes,
            signed_urls=driver.name == "s3",
            pages_may_repeat="redis" in driver.name,
        )
