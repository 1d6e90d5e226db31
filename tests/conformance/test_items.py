"""Conformance over every driver and layer: single items, values and keys (the kit's `ItemTests`)."""

from __future__ import annotations

from storage.testing import ItemTests

from . import EveryDriver


class TestItem(EveryDriver, ItemTests):
    """`storage.testing.ItemTests` over every conformance driver."""
