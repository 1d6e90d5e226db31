"""Conformance over every driver and layer: compare-and-set, increment, sliding expiry, locks,
pages and streams (the kit's `SurfaceTests`)."""

from __future__ import annotations

from storage.testing import SurfaceTests

from . import EveryDriver


class TestSurface(EveryDriver, SurfaceTests):
    """`storage.testing.SurfaceTests` over every conformance driver."""
