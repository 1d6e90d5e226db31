"""Conformance over every driver and layer: a Hypothesis model (the kit's `ModelTests`)."""

from __future__ import annotations

import uuid
from decimal import Decimal

from storage.testing import ModelTests
from storage.testing.model import same

from . import EveryDriver


class TestModel(EveryDriver, ModelTests):
    """`storage.testing.ModelTests` over every conformance driver."""


def test_same_tells_types_and_nan_apart() -> None:
    assert same(float("nan"), float("nan"))
    assert not same(1, True)
    assert not same((1,), [1])
    assert same({"a": [Decimal(1), uuid.UUID(int=1)]}, {"a": [Decimal(1), uuid.UUID(int=1)]})
