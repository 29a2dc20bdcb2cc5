"""``dm repro``: experiments expand to the right runs, run end to end, and report claims."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from dm_core.cli import app
from dm_core.repro import EXPERIMENTS, check_claims, get_experiment, plan, summary_table
from dm_core.train import train


def test_digits_noise_grid_matches_the_issue():
    exp = get_experiment("digits-noise")
    p = plan(exp)
    conds = [c for c, _ in exp.conditions]
    assert conds == ["r=0", "r=0.2", "r=0.4", "r=0.6"]
    labels = [m.label for m in exp.methods]
    assert labels[:8] == ["CCE", "GCE", "MAE", "MSE", "CCE-DN", "GCE-DN", "MAE-DN", "MSE-DN"]
    assert labels[8:] == ["DM λ=0", "DM λ=0.5", "DM λ=1", "DM λ=2"]
    assert exp.seeds == (0, 1, 2)
    # β is tuned on a trusted clean split (val_fraction 0.2), never on the final runs.
    assert all(cfg.dataset.val_fraction == 0.2 for *_, cfg in p.tuning)
    assert len(p.tuning) == 4 * 4 * 5
    assert all(cfg.dataset.val_fraction == 0.0 for *_, cfg in exp.runs())


def test_local_run_writes_a_report(tmp_path):
    result = CliRunner().invoke(app, ["repro", "digits-imbalance", "--local", "--seeds", "0",
                                      "--iterations", "3", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "digits-imbalance.md").read_text()
    assert "| 10:1 | CCE |" in text and "| 50:1 | DM λ=2 |" in text
    runs = pd.read_csv(tmp_path / "digits-imbalance-runs.csv")
    assert len(runs) == 2 * 8
    assert (tmp_path / "digits-imbalance-test-accuracy.html").is_file()


def test_claims_are_judged_from_the_numbers():
    rows = []
    for cond, cce, dm0, dm2 in (("r=0", 0.95, 0.96, 0.90), ("r=0.4", 0.80, 0.82, 0.88)):
        for method, acc, p_noisy in (("CCE", cce, 0.6), ("DM λ=0", dm0, 0.5), ("DM λ=2", dm2, 0.1)):
            rows.append({"condition": cond, "method": method, "seed": 0, "beta": None,
                         "test_acc_best": acc, "test_acc_final": acc, "train_acc_corrupted": 0.5,
                         "train_acc_intact": 0.5, "fit_corrupted_subset": p_noisy,
                         "p_noisy_late": p_noisy if cond != "r=0" else np.nan, "p_clean_late": 0.9})
    claims = {text[:3]: holds for text, holds, _ in check_claims(summary_table(pd.DataFrame(rows)))}
    assert claims == {"(a)": True, "(b)": True, "(c)": True, "(d)": True}


@pytest.mark.parametrize("name", ["cifar10-table10", "cifar100-table1", "vehicles10-table8"])
def test_gpu_presets_smoke_at_tiny_size(tmp_path, monkeypatch, name):
    rng = np.random.default_rng(0)
    monkeypatch.chdir(tmp_path)
    if name.startswith("cifar10-"):
        base = tmp_path / "data" / "cifar-10-batches-py"
        base.mkdir(parents=True)
        files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
        for f in files:
            with open(base / f, "wb") as fh:
                pickle.dump({"data": rng.integers(0, 256, (20, 3072)).astype(np.uint8),
                             "labels": list(np.arange(20) % 10)}, fh)
        with open(base / "batches.meta", "wb") as fh:
            pickle.dump({"label_names": [str(i) for i in range(10)]}, fh)
    else:
        base = tmp_path / "data" / "cifar-100-python"
        base.mkdir(parents=True)
        for f, n in (("train", 200), ("test", 100)):
            with open(base / f, "wb") as fh:
                pickle.dump({"data": rng.integers(0, 256, (n, 3072)).astype(np.uint8),
                             "fine_labels": list(np.arange(n) % 100)}, fh)
        with open(base / "meta", "wb") as fh:
            pickle.dump({"fine_label_names": [str(i) for i in range(100)]}, fh)
    exp = get_experiment(name)
    assert exp.needs_gpu and name in EXPERIMENTS.names()
    p = plan(exp, iterations=2)
    _, method, _, cfg = next(iter(exp.runs()))
    cfg = cfg.model_copy(update={"iterations": 2, "eval_every": 2, "batch_size": 8, "device": "cpu"})
    cfg = cfg.model_validate(cfg.model_dump() | {"schedule": {"milestones": [], "gamma": 0.1}})
    summary = train(cfg)
    assert 0.0 <= summary.test_acc_final <= 1.0
    assert p.total() == len(list(exp.runs()))
