"""Conformance over every driver and layer: conditional writes and change events (the kit's `ConditionalWatchTests`)."""

from __future__ import annotations

from storage.testing import ConditionalWatchTests

from . import EveryDriver


class TestConditionalWatch(EveryDriver, ConditionalWatchTests):
    """`storage.testing.ConditionalWatchTests` over every conformance driver."""
