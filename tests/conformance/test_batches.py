"""Conformance over every driver and layer: batch reads, writes and removals (the kit's `BatchTests`)."""

from __future__ import annotations

from storage.testing import BatchTests

from . import EveryDriver


class TestBatch(EveryDriver, BatchTests):
    """`storage.testing.BatchTests` over every conformance driver."""
