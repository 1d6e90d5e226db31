"""Shared test wiring.

Every module in ``tests/fixtures/`` is loaded as a pytest plugin. A module that provides a
driver for the conformance suite lists its names in ``CONFORMANCE_DRIVERS`` and defines, for
each name ``N``, a fixture ``driver_N`` that yields a fresh, empty driver (disposed after the
test). A driver that cannot take part in some conformance tests by design names the
capability markers it lacks in ``CONFORMANCE_EXCLUDES = {"N": {"stores"}}``.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from storage import Driver, Storage, create_storage

_FIXTURE_MODULES = sorted(
    f"tests.fixtures.{path.stem}"
    for path in (Path(__file__).parent / "fixtures").glob("*.py")
    if not path.stem.startswith("_")
)
pytest_plugins = _FIXTURE_MODULES


def _conformance_drivers() -> tuple[list[str], dict[str, set[str]]]:
    names: list[str] = []
    excludes: dict[str, set[str]] = {}
    for module_name in _FIXTURE_MODULES:
        module = importlib.import_module(module_name)
        names.extend(getattr(module, "CONFORMANCE_DRIVERS", []))
        excludes.update(getattr(module, "CONFORMANCE_EXCLUDES", {}))
    return names, excludes


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "capability(name): a conformance test that needs the named capability"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "driver_name" not in metafunc.fixturenames:
        return
    names, excludes = _conformance_drivers()
    needed = {mark.args[0] for mark in metafunc.definition.iter_markers("capability")}
    chosen = [name for name in names if not needed & excludes.get(name, set())]
    metafunc.parametrize("driver_name", chosen)


@pytest.fixture
def driver(driver_name: str, request: pytest.FixtureRequest) -> Driver:
    """A fresh, empty driver of the parametrized kind."""
    value = request.getfixturevalue(f"driver_{driver_name}")
    assert isinstance(value, Driver)
    return value


@pytest.fixture
def storage(driver: Driver) -> Storage:
    """A Storage whose root is the parametrized driver (the driver fixture disposes it)."""
    return create_storage(driver)
