"""The pytest plugin of the driver test kit, registered under the ``pytest11`` entry points.

Loaded by every pytest run where unistorage is installed, so it imports nothing beyond pytest
and the core (the kit itself needs pytest-asyncio and Hypothesis, from the ``testing`` extra),
and does nothing until a kit class (`storage.testing.DriverConformance`) is collected. It has
pytest rewrite the kit's asserts, and adds:

- ``--unistorage-driver URL`` (or the ini key ``unistorage_driver``): run every kit class
  against that driver name or URL instead of its own ``driver_url``;
- the ``unistorage_conformance`` marker on every kit test (``-m unistorage_conformance``);
- a report-header line naming the drivers found through the ``unistorage.drivers`` entry points.
"""

from __future__ import annotations

import sys

import pytest

from storage import __version__, available_drivers

MARKER = "unistorage_conformance"

# Before anything imports the kit: its failed asserts then say what they compared.
pytest.register_assert_rewrite("storage.testing")


def pytest_addoption(parser: pytest.Parser) -> None:
    """The driver to run the kit against, from the command line or the ini file."""
    group = parser.getgroup("unistorage", "unistorage driver test kit")
    group.addoption(
        "--unistorage-driver",
        dest="unistorage_driver",
        metavar="URL",
        default=None,
        help="run the kit's conformance classes against this driver name or URL",
    )
    parser.addini(
        "unistorage_driver", "driver name or URL for the kit's conformance classes", default=""
    )


def pytest_configure(config: pytest.Config) -> None:
    """Register the kit's marker; let the ini key stand in for the command-line option."""
    config.addinivalue_line("markers", f"{MARKER}: a test of unistorage's driver conformance kit")
    if not config.option.unistorage_driver:
        config.option.unistorage_driver = config.getini("unistorage_driver") or None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that comes from a kit class."""
    kit = sys.modules.get("storage.testing.base")
    if kit is None:  # no test module imported the kit
        return
    for item in items:
        cls = getattr(item, "cls", None)
        if cls is not None and issubclass(cls, kit.DriverFixtures):
            item.add_marker(MARKER)


def pytest_report_header(config: pytest.Config) -> str:
    """unistorage's version, the drivers its entry points name, and the kit's driver URL."""
    chosen = config.option.unistorage_driver
    line = f"unistorage {__version__}; drivers: {', '.join(available_drivers())}"
    return f"{line}; kit driver: {chosen}" if chosen else line
