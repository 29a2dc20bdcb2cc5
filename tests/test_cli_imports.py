"""The ``dm`` commands that need no training stay light: no torch (issue 25, item 9).

Importing torch costs seconds and hundreds of MB, which ``dm submit``, ``dm runs``, ``dm show``,
``dm cancel`` and ``dm --help`` paid before parsing an argument. Each command here runs in a
fresh interpreter (the one-line program ``RUN``: the ``dm`` app in-process, then a look at
``sys.modules``), so nothing imported by the test itself can hide an import.

Config validation reads the registries' records (``dm_core.registries``), not the modules that
build losses and models; the degenerate-β refusal needs the scheme math only past a bound the
registry states (``beta_span``), which is checked here against that math.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import yaml

from dm_core.config import parse_config
from dm_core.registries import LOSSES, SCHEMES
from dm_store import Store
from dm_store.database import URL_ENV, URL_FILE_ENV

# Runs the dm app in this interpreter, then says on its last line whether torch was imported.
RUN = ("import sys; from studio.cli import app\n"
       "try:\n    app(args=sys.argv[1:], prog_name='dm', standalone_mode=False)\n"
       "except SystemExit:\n    pass\n"
       "print('torch imported:', 'torch' in sys.modules)")

TINY = {"name": "tiny", "dataset": {"name": "digits", "noise": {"kind": "symmetric", "rate": 0.4}},
        "model": {"name": "mlp", "hidden": [16]}, "loss": {"name": "dm", "lam": 1.0, "beta": 8.0},
        "iterations": 20, "eval_every": 10, "batch_size": 32, "device": "cpu"}


def dm(*args: str, env: dict[str, str] | None = None) -> tuple[str, bool]:
    """``dm ARGS`` in a fresh interpreter: (its output, whether torch was imported)."""
    done = subprocess.run([sys.executable, "-c", RUN, *args], capture_output=True, text=True,
                          timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    *output, last = done.stdout.rstrip("\n").splitlines()
    assert last in ("torch imported: True", "torch imported: False"), done.stdout
    return "\n".join(output) + done.stderr, last == "torch imported: True"


@pytest.fixture
def queue(tmp_path, monkeypatch):
    """A database with one queued run, a run config file, and an environment without any
    other database URL."""
    monkeypatch.delenv(URL_ENV, raising=False)
    monkeypatch.delenv(URL_FILE_ENV, raising=False)
    db = f"sqlite:///{tmp_path / 'dm.sqlite'}"
    store = Store(db)
    run_id = store.submit([parse_config(TINY)]).run_ids[0]
    store.dispose()
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    return db, run_id, config


@pytest.mark.slow  # four fresh dm processes
def test_help_runs_show_and_cancel_do_not_import_torch(queue):
    db, run_id, _ = queue
    output, torch_imported = dm("--help")
    assert "submit" in output and not torch_imported
    output, torch_imported = dm("runs", "--db", db)
    assert "tiny" in output and not torch_imported
    output, torch_imported = dm("show", str(run_id), "--json", "--db", db)
    assert json.loads(output)["id"] == run_id and not torch_imported
    output, torch_imported = dm("cancel", str(run_id), "--db", db)
    assert f"run {run_id}: cancelled" in output and not torch_imported


def test_submit_validates_and_queues_every_loss_family_without_torch(queue):
    db, _, config = queue
    losses = ",".join(LOSSES.names())  # every family: scheme (with DN and β), baselines, methods
    output, torch_imported = dm("submit", str(config), "--compare", losses, "--db", db)
    assert f"queued {len(LOSSES.names())} run(s)" in output
    assert not torch_imported
    # A config the registry refuses is refused as before, still without torch.
    output, torch_imported = dm("submit", str(config), "--set", "loss.lam=-1", "--db", db)
    assert "invalid config: loss.lam: -1.0 is out of range" in output and not torch_imported


def test_submit_still_refuses_a_degenerate_beta(queue):
    """Past the registry's bound the scheme math decides (and may import torch): the
    refusal is the same as before the light path."""
    db, _, config = queue
    output, _ = dm("submit", str(config), "--set", "loss.beta=400", "--set", "loss.lam=0",
                   "--db", db)
    assert "loss.beta: β = 400 is degenerate for dm with λ=0 at batch size 32" in output
    assert "queued" not in output


@pytest.mark.parametrize("scheme", [n for n in SCHEMES.names()
                                    if "beta_span" in SCHEMES.get(n).extra])
def test_beta_span_bounds_the_log_weight_spread_the_scheme_math_finds(scheme):
    """``beta_span`` promises: at β = 1 the log-weight spans at most that much over p in
    [0, 1], whatever the other parameters. Checked on a grid over each parameter's range."""
    from dm_core.schemes import make_scheme

    entry = SCHEMES.get(scheme)
    others = [p for p in entry.params if p.name != "beta"]
    grids = [np.linspace(p.low if p.low is not None else p.ui_low,
                         p.high if p.high is not None else p.ui_high * 4, 9) for p in others]
    widest = 0.0
    for values in np.array(np.meshgrid(*grids)).reshape(len(others), -1).T if others else [()]:
        params = {p.name: float(v) for p, v in zip(others, values, strict=True)}
        lo, hi = make_scheme(scheme, **params, beta=1.0).log_weight_range
        widest = max(widest, hi - lo)
    assert 0.5 < widest <= entry.extra["beta_span"] + 1e-9


def test_the_light_beta_check_decides_as_the_scheme_math():
    """Every β the registry's bound clears is one the full check (``beta_bound``) clears."""
    from studio import submission

    for loss in ("dm", "dm-normal", "dm-exponential"):
        for batch in (2, 32, 1024):
            for beta in (-60.0, -20.0, -5.0, 0.0, 5.0, 15.0, 19.0, 25.0, 60.0):
                cfg = parse_config({**TINY, "batch_size": batch,
                                    "loss": {"name": loss, "beta": beta}})
                light = submission._degenerate_beta(cfg)
                bound = submission.beta_bound(loss, cfg.loss.params(), batch)
                assert (light is None) == (bound is None or abs(beta) <= bound), (loss, batch, beta)
