"""Security properties outside the dashboard's sign-in (tests/test_app_auth.py):

- ``dm export -o`` writes only inside the export root (``DM_EXPORT_DIR``, else the current
  directory), whatever the spelling: ``..``, an absolute path, a symlink on the way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dm_core.cli import app
from dm_core.events import EvalEvent, HistogramEvent, ScalarsEvent
from dm_core.store import Store

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def cli(*args: str, env: dict | None = None):
    return runner.invoke(app, list(args), env={"COLUMNS": "200", "NO_COLOR": "1", **(env or {})})


# ---------------------------------------------------------------- export confinement

@pytest.fixture
def exported(tmp_path, monkeypatch):
    """A run with rows; the working directory is ``tmp_path/work``; returns (db URL, work)."""
    db = f"sqlite:///{tmp_path / 'dm.sqlite'}"
    store = Store(db)
    from dm_core.config import parse_config

    store.submit([parse_config({"name": "x", "dataset": {"name": "digits"}, "iterations": 3})])
    run = store.claim("w", "cpu")
    store.write_batch(run.id, 1, [ScalarsEvent(i, {"loss": 1.0}) for i in (1, 2, 3)],
                      [HistogramEvent(3, np.ones(4, np.int32), np.ones(4, np.int32))],
                      [EvalEvent(3, {"test_acc": 0.5})])
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv("DM_EXPORT_DIR", raising=False)
    return db, work


def files_under(path: Path) -> set[Path]:
    return {p for p in path.rglob("*") if p.is_file()}


def test_export_inside_the_root_is_written(exported):
    db, work = exported
    for args, where in ((["-o", "a.csv"], work / "a.csv"),
                        (["-o", "sub/dir/b.csv"], work / "sub" / "dir" / "b.csv"),
                        (["-o", str(work / "c.csv")], work / "c.csv"),  # absolute, inside
                        (["-o", "sub/../d.csv"], work / "d.csv"),  # .. that stays inside
                        (["--out-dir", "out", "-o", "e.csv"], work / "out" / "e.csv"),
                        (["--out-dir", "out"], work / "out" / "run-1-scalars.csv")):
        result = cli("export", "1", "--db", db, *args)
        assert result.exit_code == 0, (args, result.output)
        assert where.is_file(), args


@pytest.mark.parametrize("spelling", ["dotdot", "absolute", "dir symlink", "file symlink",
                                      "out-dir", "home"])
def test_export_outside_the_root_is_refused(exported, tmp_path, spelling):
    db, work = exported
    outside = tmp_path / "outside"
    outside.mkdir()
    args = {"dotdot": ["-o", "../outside/x.csv"],
            "absolute": ["-o", str(outside / "x.csv")],
            "dir symlink": ["-o", "link/x.csv"],
            "file symlink": ["-o", "innocent.csv"],
            "out-dir": ["--out-dir", "../outside", "-o", "x.csv"],
            "home": ["-o", "~/x.csv"]}[spelling]
    (work / "link").symlink_to(outside, target_is_directory=True)
    (work / "innocent.csv").symlink_to(outside / "x.csv")
    before = files_under(work) | files_under(outside)
    result = cli("export", "1", "--db", db, *args, env={"HOME": str(outside)})
    assert result.exit_code == 2, result.output
    option = "--out-dir" if spelling == "out-dir" else "-o/--output"
    assert result.output.startswith(f"error: {option} "), result.output
    assert f"outside the export root {work}" in result.output
    assert "DM_EXPORT_DIR" in result.output and "Traceback" not in result.output
    assert files_under(work) | files_under(outside) == before  # nothing written anywhere
    assert not (outside / "x.csv").exists()


def test_export_root_from_the_environment(exported, tmp_path):
    db, work = exported
    root = tmp_path / "exports"
    root.mkdir()
    env = {"DM_EXPORT_DIR": str(root)}
    result = cli("export", "1", "--db", db, "-o", "r.csv", env=env)
    assert result.exit_code == 0, result.output
    assert (root / "r.csv").is_file() and not (work / "r.csv").exists()
    result = cli("export", "1", "--db", db, "-o", str(work / "r.csv"), env=env)
    assert result.exit_code == 2  # the working directory is not the root any more
    assert f"outside the export root {root} (DM_EXPORT_DIR)" in result.output
    result = cli("export", "1", "--db", db, "-o", ".", env=env)
    assert result.exit_code == 2 and "is a directory" in result.output
