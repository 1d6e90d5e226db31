"""Conformance over every driver and layer: expiry, native metadata and user meta (the kit's `TtlMetaTests`)."""

from __future__ import annotations

from storage.testing import TtlMetaTests

from . import EveryDriver


class TestTtlMeta(EveryDriver, TtlMetaTests):
    """`storage.testing.TtlMetaTests` over every conformance driver."""
