"""The house's import rules (docs/architecture.md), checked on the source tree itself."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("storage", "drivers", "sessions")


def _modules() -> Iterator[tuple[str, Path]]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            yield name, path


def _imports(name: str, path: Path) -> Iterator[tuple[str, list[str]]]:
    """(imported module, names taken from it) for every import, type-checking ones included."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            yield module, [alias.name for alias in node.names]


def _top(module: str) -> str:
    return module.split(".")[0]


ALL = list(_modules())
#: Private driver helpers shared by a family of drivers, and the drivers that may use them.
SHARED_HELPERS = {"_aws": ("s3", "dynamodb", "aws")}
#: Private helper modules (drivers/_fs_ops.py): importing one is not taking a private name.
HELPERS = {name for name, _ in ALL if name.rpartition(".")[2].startswith("_")}


@pytest.mark.parametrize(("name", "path"), [m for m in ALL if m[0].startswith("storage")])
def test_the_core_imports_no_driver_and_no_session_module(name: str, path: Path) -> None:
    for module, _ in _imports(name, path):
        assert _top(module) not in ("drivers", "sessions"), f"{name} imports {module}"


@pytest.mark.parametrize(("name", "path"), [m for m in ALL if m[0].startswith("sessions")])
def test_sessions_import_only_the_core(name: str, path: Path) -> None:
    for module, _ in _imports(name, path):
        assert _top(module) != "drivers", f"{name} imports {module}"


@pytest.mark.parametrize(("name", "path"), [m for m in ALL if m[0].startswith("drivers")])
def test_drivers_import_the_core_and_their_own_helpers_only(name: str, path: Path) -> None:
    own = name.rpartition(".")[2].lstrip("_").split("_")[0]
    for module, _ in _imports(name, path):
        assert _top(module) != "sessions", f"{name} imports {module}"
        if _top(module) == "drivers" and module != "drivers":
            helper = module.rpartition(".")[2]
            # A driver's private helpers are named after it (drivers/_fs_ops.py for fs); a
            # helper shared by a family of drivers says which (drivers/_aws.py: s3, dynamodb).
            allowed = helper.startswith(f"_{own}") or own in SHARED_HELPERS.get(helper, ())
            assert allowed, f"{name} imports another driver's module: {module}"


@pytest.mark.parametrize(("name", "path"), ALL)
def test_no_module_takes_another_modules_private_names(name: str, path: Path) -> None:
    for module, names in _imports(name, path):
        if _top(module) not in PACKAGES or module == name:
            continue
        private = [
            n
            for n in names
            if n.startswith("_") and not n.startswith("__") and f"{module}.{n}" not in HELPERS
        ]
        assert not private, f"{name} takes private {private} from {module}"


def test_no_import_cycles_between_library_modules() -> None:
    known = {name for name, _ in ALL}
    graph: dict[str, set[str]] = {}
    for name, path in ALL:
        edges = graph.setdefault(name, set())
        # Imports for type checking count too: a cycle of names is a cycle of design.
        for module, names in _imports(name, path):
            for target in (module, *(f"{module}.{n}" for n in names)):
                if target in known and target != name and not name.startswith(target + "."):
                    edges.add(target)
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                cycle = [*trail[trail.index(target) :], target] if target in trail else [target]
                raise AssertionError(f"import cycle: {' -> '.join(cycle)}")
            if target not in state:
                visit(target, [*trail, target])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
