"""The import graph between the project's packages (docs/architecture.md, "Packages").

The engine (``dm_core``) is usable alone in any PyTorch loop, so it may import none of the
packages built on it; the workers may use only the engine; the dashboard may use the engine
and the application layer's experiment catalogue, never the workers or the CLI. A new import
that breaks a rule fails here, naming the file and the line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("dm_core", "dm_store", "workers", "app", "studio")

# package -> the project packages (or subpackages) it must never import
FORBIDDEN = {
    "dm_core": ("workers", "app", "studio"),
    "workers": ("app", "studio"),
    "app": ("workers", "studio.cli"),
}


def project_imports(path: Path) -> list[tuple[int, str]]:
    """Every absolute import of a project package in ``path``, with its line: ``import a.b``,
    ``from a.b import c`` (as ``a.b.c``, so that a subpackage imported by name is seen too),
    at any depth (function-level imports count)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return sorted((line, name) for line, name in found if name.split(".")[0] in PACKAGES)


def violations(package: str) -> list[str]:
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for line, name in project_imports(path):
            for forbidden in FORBIDDEN[package]:
                if name == forbidden or name.startswith(forbidden + "."):
                    bad.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    return bad


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_what_it_may(package):
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
