"""The import graph between the project's packages (docs/architecture.md, "Packages").

The packages form one stack, ``FLOORS``, lowest first: each imports only packages on the
floors below it, so no two packages import each other and any one of them works with only
the floors beneath it installed. The engine (``dm_core``) imports none of the others; the
dashboard (``app``), at the top, is imported by none. A new import that breaks the order fails
here, naming the file and the line.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Lowest first: the engine, the store of runs, the workers that train queued runs, the
# application layer (experiments, submission, the CLI), the dashboard.
FLOORS = ["dm_core", "dm_store", "workers", "studio", "app"]


def project_imports(path: Path) -> list[tuple[int, str]]:
    """Every absolute import of a project package in ``path``, with its line: ``import a.b``,
    ``from a.b import c`` (as ``a.b.c``, so that a subpackage imported by name is seen too),
    at any depth (function-level and ``TYPE_CHECKING`` imports count)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return sorted((line, name) for line, name in found if name.split(".")[0] in FLOORS)


def violations(package: str, root: Path = ROOT) -> list[str]:
    """Each import in ``package`` of a package on its own floor's level or above."""
    floor = FLOORS.index(package)
    bad = []
    for path in sorted((root / package).rglob("*.py")):
        for line, name in project_imports(path):
            imported = name.split(".")[0]
            if imported != package and FLOORS.index(imported) >= floor:
                bad.append(f"{path.relative_to(root)}:{line} imports {name} "
                           f"({imported} is not below {package})")
    return bad


def test_every_package_of_the_project_has_a_floor():
    # A new top-level package must be placed in the stack, else nothing checks its imports.
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    installed = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    assert sorted(name.rstrip("*") for name in installed) == sorted(FLOORS)


@pytest.mark.parametrize("package", FLOORS)
def test_package_imports_only_the_floors_below(package):
    assert violations(package) == []


def test_the_check_sees_function_level_and_from_imports(tmp_path):
    # The check itself must be able to fail: both import forms, at module and function level.
    source = tmp_path / "probe.py"
    source.write_text("import workers.worker\n"
                      "def f():\n"
                      "    from app import auth\n"
                      "    from studio.cli import app\n"
                      "from dm_core.train import train\n", encoding="utf-8")
    assert project_imports(source) == [(1, "workers.worker"), (3, "app.auth"),
                                       (4, "studio.cli.app"), (5, "dm_core.train.train")]


def test_an_import_from_the_same_floor_or_above_is_a_violation(tmp_path):
    # Upward (the engine importing the store) and sideways-within (a package's own modules)
    # differ: the first is named, the second is allowed.
    (tmp_path / "dm_store").mkdir()
    (tmp_path / "dm_store" / "x.py").write_text("import dm_core.config\nimport dm_store.errors\n"
                                                "from workers import sink\n", encoding="utf-8")
    assert violations("dm_store", tmp_path) == [
        "dm_store/x.py:3 imports workers.sink (workers is not below dm_store)"]
