"""Conformance over every driver and layer: listing, clearing and snapshots (the kit's `ListingTests`)."""

from __future__ import annotations

from storage.testing import ListingTests

from . import EveryDriver


class TestListing(EveryDriver, ListingTests):
    """`storage.testing.ListingTests` over every conformance driver."""
