"""What loading the engine and the dashboard's pages imports (issue 24), each in a fresh
interpreter so that nothing the test process itself imported can hide an import.

- The engine (``dm_core``; ``dm_core.losses``; ``dm_core.train``) loads none of the studio's
  libraries (a database, a dashboard, a tuner, data frames) and none of the packages above it
  (docs/architecture.md, "Packages"): a researcher who installs the engine alone can use it.
- No dashboard page loads Optuna or Jinja: those are for tuning studies and writing reports,
  which the pages never do (each page used to pay seconds for them through ``studio.repro``).
  Every page is rendered whole with AppTest, on an empty database, so that an import on the
  drawing path counts too, not only a module-level one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.nav import PAGES
from dm_store import Store

ROOT = Path(__file__).resolve().parents[1]
ENTRY = ROOT / "app" / "streamlit_app.py"
STUDIO_LIBRARIES = ("sqlalchemy", "alembic", "streamlit", "optuna", "pandas", "jinja2", "plotly",
                    "typer")
ABOVE_THE_ENGINE = ("dm_store", "workers", "studio", "app")

# Imports the modules named on the command line, then prints which of the watched ones loaded.
IMPORT_AND_LOOK = ("import importlib, json, sys\n"
                   "watched = json.loads(sys.argv[1])\n"
                   "for name in sys.argv[2:]:\n    importlib.import_module(name)\n"
                   "print(json.dumps(sorted(n for n in watched if n in sys.modules)))")

# Renders each script named on the command line with AppTest, then prints which watched
# modules loaded (and any page that raised, which would make the check meaningless).
RENDER_AND_LOOK = ("import json, sys\n"
                   "from streamlit.testing.v1 import AppTest\n"
                   "watched = json.loads(sys.argv[1])\n"
                   "failed = []\n"
                   "for script in sys.argv[2:]:\n"
                   "    at = AppTest.from_file(script, default_timeout=120).run()\n"
                   "    if at.exception:\n        failed.append([script, at.exception[0].message])\n"
                   "print(json.dumps({'loaded': sorted(n for n in watched if n in sys.modules),\n"
                   "                  'failed': failed}))")


def loaded_after(program: str, watched: tuple[str, ...], *args: str, env: dict | None = None):
    done = subprocess.run([sys.executable, "-c", program, json.dumps(watched), *args],
                          capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.parametrize("module", ["dm_core", "dm_core.losses", "dm_core.train"])
def test_the_engine_loads_nothing_of_the_studio(module):
    assert loaded_after(IMPORT_AND_LOOK, STUDIO_LIBRARIES + ABOVE_THE_ENGINE, module) == []


def test_the_check_sees_a_module_that_loads_them():
    # The check itself must be able to fail: the store loads SQLAlchemy and the engine.
    assert loaded_after(IMPORT_AND_LOOK, ("sqlalchemy", "dm_core", "optuna"),
                        "dm_store.store") == ["dm_core", "sqlalchemy"]


@pytest.mark.slow
def test_no_dashboard_page_loads_optuna_or_jinja(tmp_path):
    url = f"sqlite:///{tmp_path / 'dm.sqlite'}"
    store = Store(url, tmp_path / "artifacts")
    store.upgrade()
    store.dispose()
    env = {**os.environ, "DM_DATABASE_URL": url,
           "DM_ARTIFACTS": str(tmp_path / "artifacts")}
    scripts = [str(ENTRY)] + [str(ENTRY.parent / page.path) for page in PAGES]
    found = loaded_after(RENDER_AND_LOOK, ("optuna", "jinja2", "studio.repro.presets"), *scripts,
                         env=env)
    assert found["failed"] == []
    # The Launch page did read the experiment catalogue: the pages ran, and drew their presets.
    assert found["loaded"] == ["studio.repro.presets"]
