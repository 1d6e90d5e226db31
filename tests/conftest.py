"""Shared test wiring.

Every module in ``tests/fixtures/`` is loaded as a pytest plugin. A module that provides a
driver for the conformance suite lists its names in ``CONFORMANCE_DRIVERS`` and defines, for
each name ``N``, a fixture ``driver_N`` that yields a fresh, empty driver (disposed after the
test). The suite itself is the driver test kit, `storage.testing`, run by ``tests/conformance/``:
it reads each driver's capabilities, so a driver without TTL, conditional writes or watch is
tested for refusing them. What capabilities cannot say a module gives as the kit's options,
``CONFORMANCE_OPTIONS = {"N": ConformanceOptions(...)}``, or names in
``CONFORMANCE_EXCLUDES = {"N": {"meta"}}`` (see `tests.conformance.EXCLUDES`); ``stores``
leaves a driver that keeps nothing out of every test marked ``capability("stores")``.

The kit's pytest plugin (`storage.pytest_plugin`) comes in through unistorage's ``pytest11``
entry point; from a checkout whose installed metadata predates it, this file loads it.
"""

from __future__ import annotations

import importlib
import signal
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from storage import Driver, Storage, create_storage

# A suite started as a background job of a non-interactive shell inherits SIGINT ignored (and
# Python then never raises KeyboardInterrupt), so the Ctrl-C tests would wait for an interrupt
# that cannot come. Python's own handler again; processes the tests start get the default.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

if TYPE_CHECKING:  # imported by the fixture modules, after the kit's plugin
    from storage.testing import ConformanceOptions

_FIXTURE_MODULES = sorted(
    f"tests.fixtures.{path.stem}"
    for path in (Path(__file__).parent / "fixtures").glob("*.py")
    if not path.stem.startswith("_")
)
_KIT_PLUGIN = "storage.pytest_plugin"
_HAS_ENTRY_POINT = any(ep.value == _KIT_PLUGIN for ep in entry_points(group="pytest11"))
pytest_plugins = _FIXTURE_MODULES if _HAS_ENTRY_POINT else [_KIT_PLUGIN, *_FIXTURE_MODULES]


def _conformance_drivers() -> tuple[list[str], dict[str, set[str]]]:
    names: list[str] = []
    excludes: dict[str, set[str]] = {}
    for module_name in _FIXTURE_MODULES:
        module = importlib.import_module(module_name)
        names.extend(getattr(module, "CONFORMANCE_DRIVERS", []))
        excludes.update(getattr(module, "CONFORMANCE_EXCLUDES", {}))
    return names, excludes


def _conformance_options() -> dict[str, ConformanceOptions]:
    options: dict[str, ConformanceOptions] = {}
    for module_name in _FIXTURE_MODULES:
        options.update(getattr(importlib.import_module(module_name), "CONFORMANCE_OPTIONS", {}))
    return options


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "capability(name): a test that needs what CONFORMANCE_EXCLUDES can name"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "driver_name" not in metafunc.fixturenames:
        return
    names, excludes = _conformance_drivers()
    needed = {mark.args[0] for mark in metafunc.definition.iter_markers("capability")}
    chosen = [name for name in names if not needed & excludes.get(name, set())]
    metafunc.parametrize("driver_name", chosen)


@pytest.fixture
def driver_excludes(driver_name: str) -> frozenset[str]:
    """What the parametrized driver's fixture module lists in ``CONFORMANCE_EXCLUDES``."""
    return frozenset(_conformance_drivers()[1].get(driver_name, set()))


@pytest.fixture
def driver_options(driver_name: str) -> ConformanceOptions | None:
    """The kit's options that the driver's fixture module gives in ``CONFORMANCE_OPTIONS``."""
    return _conformance_options().get(driver_name)


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
