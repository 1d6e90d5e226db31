"""Finding drivers by name and URL, through the same entry points a third party uses."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from drivers.memory import MemoryDriver
from storage import (
    Driver,
    InvalidArgumentError,
    available_drivers,
    create_driver,
    create_storage,
    driver_class,
    register_driver,
    registry,
)
from storage.layers import ReadOnly

BUILT_INS = {
    "memory",
    "fs",
    "sqlite",
    "redis",
    "s3",
    "dynamodb",
    "postgres",
    "lru",
    "overlay",
    "null",
    "http",
}


def test_every_built_in_driver_is_registered_by_entry_point() -> None:
    names = {point.name for point in entry_points(group="unistorage.drivers")}
    assert names >= BUILT_INS
    schemes = {point.name for point in entry_points(group="unistorage.schemes")}
    assert schemes >= {
        "memory",
        "file",
        "sqlite",
        "redis",
        "rediss",
        "redis+cluster",
        "s3",
        "http",
        "https",
        "valkey",
        "valkeys",
        "valkey+cluster",
        "dynamodb",
        "postgres",
        "postgresql",
    }


def test_names_and_urls_resolve_to_drivers() -> None:
    assert driver_class("memory") is MemoryDriver
    assert isinstance(create_driver("memory"), MemoryDriver)
    assert isinstance(create_driver("memory://"), MemoryDriver)
    frozen = create_driver("memory://?read_only=true")
    assert isinstance(frozen, ReadOnly)
    assert isinstance(frozen.inner, MemoryDriver)
    assert frozen.capabilities.read_only
    assert frozen.name == "readonly(memory)"
    assert isinstance(create_storage("memory").get_mount("").driver, MemoryDriver)


def test_a_driver_object_passes_through() -> None:
    driver = MemoryDriver()
    assert create_driver(driver) is driver
    with pytest.raises(InvalidArgumentError):
        create_driver(driver, read_only=True)


@pytest.mark.parametrize("bad", ["nosuch", "nosuch://x", "", 42])
def test_unknown_drivers_raise_a_clear_error(bad: object) -> None:
    with pytest.raises(InvalidArgumentError):
        create_driver(bad)  # type: ignore[arg-type]


@pytest.fixture
def third_party(tmp_path: Path) -> Iterator[None]:
    """A separately 'installed' package: a module plus dist-info with entry points on sys.path."""
    (tmp_path / "acme_store.py").write_text(
        textwrap.dedent(
            """
            from drivers.memory import MemoryDriver

            class AcmeDriver(MemoryDriver):
                name = "acme"
                schemes = ("acme",)
            """
        )
    )
    dist = tmp_path / "acme_store-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-store\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[unistorage.drivers]\nacme = acme_store:AcmeDriver\n\n"
        "[unistorage.schemes]\nacme = acme_store:AcmeDriver\n"
    )
    sys.path.insert(0, str(tmp_path))
    registry.refresh()
    try:
        yield
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("acme_store", None)
        registry.refresh()


@pytest.mark.usefixtures("third_party")
async def test_a_third_party_driver_is_found_like_a_built_in() -> None:
    assert "acme" in available_drivers()
    by_name = create_driver("acme")
    by_url = create_driver("acme://?read_only=false")
    assert type(by_name).__name__ == type(by_url).__name__ == "AcmeDriver"
    storage = create_storage("acme://")
    await storage.set_item("k", 1)
    assert await storage.get_item("k") == 1


def test_register_driver_works_without_a_package() -> None:
    class Local(MemoryDriver):
        name = "local-test"
        schemes = ("localtest",)

    register_driver("local-test", Local)
    assert isinstance(create_driver("localtest://"), Local)
    with pytest.raises(InvalidArgumentError):
        register_driver("bad", object)  # type: ignore[arg-type]


def test_from_url_refuses_a_foreign_scheme() -> None:
    with pytest.raises(InvalidArgumentError):
        MemoryDriver.from_url("redis://localhost")
    assert issubclass(MemoryDriver, Driver)
