"""The distribution as users get it: one version, an Install section, a complete wheel.

``scripts/test.sh`` builds the wheel and sdist, installs the wheel into a fresh virtual
environment and runs this file there, from a temporary directory, with ``UNISTORAGE_SOURCE``
naming the checkout: the smoke tests then import the installed package, not the source tree,
and compare its files with the checkout's, so a module or a ``py.typed`` left out of the wheel
fails. In the ordinary run (an editable install) the same tests pass trivially, and the tests
of the checkout itself (README, CONTRIBUTING, pyproject) check what the wheel is built from.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import re
import subprocess
import sys
from importlib.metadata import distribution, entry_points
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
import tomllib

import storage
from storage import ReadOnlyError, create_driver, create_storage

#: The checkout: given by test.sh when this file runs against an installed wheel.
SOURCE = os.environ.get("UNISTORAGE_SOURCE")
ROOT = Path(SOURCE) if SOURCE else Path(__file__).resolve().parents[1]
PACKAGES = ("storage", "drivers", "sessions")


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _package_files(directory: Path) -> set[str]:
    return {
        path.relative_to(directory).as_posix()
        for path in directory.rglob("*")
        if path.suffix in (".py", ".typed") and "__pycache__" not in path.parts
    }


# -- the installed package ------------------------------------------------------------------------


def test_the_package_under_test_is_the_installed_one() -> None:
    location = Path(storage.__file__).resolve().parent
    if SOURCE:
        assert location != (ROOT / "storage").resolve(), "storage imported from the checkout"
    assert storage.__version__ == distribution("unistorage").version


@pytest.mark.parametrize("package", PACKAGES)
def test_the_wheel_holds_every_module_and_py_typed(package: str) -> None:
    installed = Path(str(files(package)))
    assert (installed / "py.typed").is_file(), f"{package}/py.typed is missing"
    missing = _package_files(ROOT / package) - _package_files(installed)
    assert not missing, f"left out of the installed {package}: {sorted(missing)}"


@pytest.mark.parametrize("package", PACKAGES)
def test_every_module_imports_or_misses_only_an_optional_dependency(package: str) -> None:
    root = Path(str(files(package)))
    broken = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:  # an extra that is not installed here is fine
            if (exc.name or "").split(".")[0] in PACKAGES:
                broken.append(f"{name}: {exc}")
    assert not broken


def test_every_entry_point_names_an_installed_module() -> None:
    ours = [
        ep
        for group in ("unistorage.drivers", "unistorage.schemes", "pytest11", "console_scripts")
        for ep in entry_points(group=group)
        if ep.dist is not None and ep.dist.name == "unistorage"
    ]
    assert {ep.group for ep in ours} == {
        "unistorage.drivers",
        "unistorage.schemes",
        "pytest11",
        "console_scripts",
    }
    broken = []
    for ep in ours:
        try:
            ep.load()
        except ModuleNotFoundError as exc:  # an extra that is not installed here is fine
            if (exc.name or "").split(".")[0] in PACKAGES:
                broken.append(f"{ep.name} = {ep.value}: {exc}")
    assert not broken
    assert {"memory", "sqlite", "fs", "redis", "s3", "http"} <= set(storage.available_drivers())


def test_the_kit_plugin_is_loaded(pytestconfig: pytest.Config) -> None:
    assert pytestconfig.pluginmanager.has_plugin("unistorage")


def test_memory_and_sqlite_store_and_list(tmp_path: Path) -> None:
    async def run(url: str) -> None:
        async with create_storage(url) as store:
            await store.set_item("users:ann", {"name": "Ann", "roles": {"admin"}})
            assert await store.get_item("users:ann") == {"name": "Ann", "roles": {"admin"}}
            assert await store.get_keys("users") == ["users:ann"]

    asyncio.run(run("memory://"))
    asyncio.run(run(f"sqlite:///{tmp_path}/smoke.db"))
    assert (tmp_path / "smoke.db").is_file()


def test_a_layer_from_a_url() -> None:
    async def run() -> None:
        async with create_storage(create_driver("memory://?read_only=true")) as store:
            assert store.capabilities().read_only
            with pytest.raises(ReadOnlyError):
                await store.set_item("k", 1)
        async with create_storage("memory://?ttl=60") as store:
            await store.set_item("k", 1)
            assert 0 < (await store.get_meta("k"))["ttl"] <= 60

    asyncio.run(run())


def test_the_command_prints_the_version() -> None:
    command = Path(sys.executable).with_name("unistorage")
    done = subprocess.run(
        [str(command), "--version"], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == f"unistorage {storage.__version__}"


# -- what the wheel is built from -----------------------------------------------------------------


def test_the_version_is_written_once() -> None:
    project = _pyproject()
    assert "version" not in project["project"]
    assert project["project"]["dynamic"] == ["version"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "storage.__version__"}
    assert re.search(r'^__version__ = "[^"]+"$', (ROOT / "storage/__init__.py").read_text(), re.M)


def test_the_readme_starts_with_install_and_lists_every_extra() -> None:
    readme = (ROOT / "README.md").read_text()
    headings = re.findall(r"^## (.+)$", readme, re.M)
    assert headings[0] == "Install"
    install = readme.split("\n## ", 2)[1]
    assert 'pip install "unistorage[redis]"' in install
    listed = set(re.findall(r"^\| `(\w+)` \|", install, re.M))
    extras = set(_pyproject()["project"]["optional-dependencies"])
    assert extras <= listed, f"extras missing from the README: {sorted(extras - listed)}"


def test_the_sessions_extra_pulls_in_the_cart_example() -> None:
    sessions = _pyproject()["project"]["optional-dependencies"]["sessions"]
    assert {re.split(r"[<>=\[]", spec)[0] for spec in sessions} >= {"starlette", "uvicorn"}


def _blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, re.DOTALL)


def test_the_contributing_example_is_the_example_package_word_for_word() -> None:
    guide = (ROOT / "CONTRIBUTING.md").read_text()
    package = ROOT / "examples/contributing_driver"
    for block in _blocks(guide, "python"):
        path = block.splitlines()[0].removeprefix("# ")
        assert (package / path).read_text() == block, f"{path} differs from CONTRIBUTING.md"
    (toml,) = _blocks(guide, "toml")
    assert toml in (package / "pyproject.toml").read_text()
