"""Conformance over every driver and layer: ReadOnly over every driver (the kit's `ReadOnlyTests`)."""

from __future__ import annotations

from storage.testing import ReadOnlyTests

from . import EveryDriver


class TestReadOnly(EveryDriver, ReadOnlyTests):
    """`storage.testing.ReadOnlyTests` over every conformance driver."""
