"""``dm repro``: a paper preset is a study with a fixed grid and no tuning. Its runs expand
to the studies' planned runs, train through their runners (in this process, or queued for a
worker and read back from the store), and go through the studies' claims and report."""

from __future__ import annotations

import json
import math
import pickle
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from typer.testing import CliRunner

from dm_core.train import train
from dm_store import RunStatus, Store
from studio.cli import app
from studio.experiments.claims import FAILS, HOLDS, UNDECIDED, check_claims, seed_table
from studio.experiments.report import (
    outcomes_frame,
    render_preset_report,
    render_report,
    unstable_seeds,
    write_preset_report,
)
from studio.experiments.results import RunOutcome
from studio.experiments.spec import parse_study
from studio.experiments.tuner import StudyResult
from studio.repro.plan import GroupMismatch, group_outcomes, plan, read_group, run_here, submit_plan
from studio.repro.presets import EXPERIMENTS, Experiment, Method, get_experiment
from studio.repro.summary import reference_table, summary_text
from workers import Worker

runner = CliRunner()


def test_the_digits_experiments_are_study_files():
    from studio.experiments.catalogue import find_study
    from studio.experiments.spec import load_study

    spec = load_study(find_study("digits-noise"))
    assert spec.noise_rates == [0.0, 0.2, 0.4, 0.6]
    assert {"cce", "gce", "sce", "label-smoothing", "boot-soft", "focal", "dm"} <= set(spec.methods)
    assert (spec.seeds, spec.tune_seeds, spec.val_fraction) == (3, 3, 0.2)
    assert "digits-noise" not in EXPERIMENTS.names()  # no second, test-selected path
    imbalance = load_study(find_study("digits-imbalance"))
    assert [c for c, _ in imbalance.condition_labels()] == ["10:1 r=0", "50:1 r=0"]
    cfg = imbalance.config("50:1 r=0", "cce", {}, 0, "final")
    assert (cfg.dataset.noise.kind, cfg.dataset.noise.keep_fraction) == ("imbalance", 0.02)


def outcome(cond, method, acc, seed=0, p_noisy=0.3, params=None, val=None, diverged=False):
    """A finished final run as a runner returns it; ``val``: a validation accuracy evaluated
    beside the test accuracy (a study's split), else no evaluation (a preset's)."""
    rate = float(cond.split("=")[1])
    if diverged:
        return RunOutcome(method, params or {}, cond, rate, seed, "final", evals=[], summary=None,
                          diverged_at=5)
    summary = {"test_acc_best": acc, "test_acc_final": acc, "train_acc_corrupted": 0.5,
               "train_acc_intact": 0.5, "fit_corrupted_subset": p_noisy, "iterations": 10}
    evals = [(10, {"val_acc": val, "test_acc": acc})] if val is not None else []
    late = [{"p_noisy_mean": p_noisy, "p_clean_mean": 0.9}] if rate > 0 else [{"p_clean_mean": 0.9}]
    return RunOutcome(method, params or {}, cond, rate, seed, "final", evals=evals, summary=summary,
                      late=late)


def claims_of(outcomes):
    return {c.text[:3]: c for c in check_claims(seed_table(outcomes_frame(outcomes)))}


JITTER = (-0.01, 0.0, 0.01)  # three seeds each, so the rule of verdicts.py can test
SETTINGS = [("r=0", "CCE", 0.95, 0.3), ("r=0", "DM λ=0", 0.96, 0.3), ("r=0", "DM λ=1", 0.965, 0.3),
            ("r=0.4", "CCE", 0.70, 0.9), ("r=0.4", "DM λ=0", 0.75, 0.8),
            ("r=0.4", "DM λ=0.5", 0.85, 0.2), ("r=0.4", "DM λ=1", 0.80, 0.1)]


def about(claim, label: str) -> str:
    """The one evidence line of ``claim`` on ``label``."""
    (line,) = [e for e in claim.evidence if f" {label} " in e]
    return line


def jittered(settings, **kw):
    return [outcome(c, m, acc + d, seed=s, p_noisy=p + d, **kw)
            for c, m, acc, p in settings for s, d in enumerate(JITTER)]


def test_preset_claims_choose_nothing_on_test_data():
    judged = claims_of(jittered(SETTINGS))
    # (a) and (d): every DM variant with λ > 0 against CCE, no variant picked on test accuracy;
    # no validation split, so final test accuracy only.
    a = judged["(a)"]
    assert a.verdict == HOLDS and sorted(a.evidence) == [
        "r=0.4, final: DM λ=0.5 85.0 ± 1.0% (n=3) vs CCE 70.0 ± 1.0% (n=3): p = 5.2e-05 (Holm 0.0001) → holds",
        "r=0.4, final: DM λ=1 80.0 ± 1.0% (n=3) vs CCE 70.0 ± 1.0% (n=3): p = 0.00026 (Holm 0.00026) → holds"]
    # The p-value is Welch's, from scipy directly.
    p = stats.ttest_ind([0.79, 0.80, 0.81], [0.69, 0.70, 0.71], equal_var=False).pvalue
    assert f"p = {p:.2g}" in about(a, "DM λ=1")
    assert judged["(d)"].verdict == HOLDS
    assert "DM λ=1 0.100 ± 0.010 (n=3) vs CCE 0.900 ± 0.010 (n=3): p = " in about(judged["(d)"], "DM λ=1")
    # (b) and (c) ask which λ is best: without a validation split they are not judged.
    assert judged["(b)"].verdict == UNDECIDED and "would choose on test data" in judged["(b)"].evidence[0]
    assert judged["(c)"].verdict == UNDECIDED
    assert "(e)" not in judged  # which method is best overall is a validation question too
    worse = claims_of(jittered([*SETTINGS[:-1], ("r=0.4", "DM λ=1", 0.65, 0.1)]))
    assert worse["(a)"].verdict == FAILS and "p = 0.0036 (Holm 0.0036) → does not hold" in about(worse["(a)"], "DM λ=1")
    # A mean ahead by half a point, inside the seeds' spread: undecided, not a win.
    close = claims_of(jittered([*SETTINGS[:-1], ("r=0.4", "DM λ=1", 0.705, 0.1)]))
    assert close["(a)"].verdict == UNDECIDED and "p = 0.57 (Holm 0.57) → undecided" in about(close["(a)"], "DM λ=1")


def _claim_lines(text: str) -> list[str]:
    """A report's claims: each bullet and its evidence lines."""
    section = text.split("claims", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith(("- **", "  - "))]


def test_repro_and_study_give_the_same_verdicts_on_the_same_runs():
    # The same final runs, with a validation split: DM ahead at r=0.4, within the spread at r=0.2.
    dm = {"lam": 1.0, "beta": 8.0}
    settings = [("r=0.2", "cce", 0.80, 0.6), ("r=0.2", "dm", 0.805, 0.5),
                ("r=0.4", "cce", 0.70, 0.9), ("r=0.4", "dm", 0.85, 0.2)]
    outcomes = [outcome(c, m, acc + d, seed=s, p_noisy=p + d, val=acc + d,
                        params=dm if m == "dm" else {})
                for c, m, acc, p in settings for s, d in enumerate(JITTER)]
    spec = parse_study({"name": "same", "base": {"dataset": {"name": "digits"}, "model": {"name": "mlp"}},
                        "noise_rates": [0.2, 0.4], "methods": ["cce", "dm"], "seeds": 3, "budget": 1,
                        "val_fraction": 0.2})
    study = render_report(StudyResult(spec, [], outcomes, {}), "dm study", "m", "none")
    preset = Experiment(name="same", description="", base={}, conditions=(("r=0.2", {}), ("r=0.4", {})),
                        methods=(Method("cce", {"name": "cce"}), Method("dm", {"name": "dm", **dm})),
                        seeds=(0, 1, 2))
    repro = render_preset_report(preset, outcomes_frame(outcomes), "dm repro same", "m")
    assert _claim_lines(study) == _claim_lines(repro)
    verdicts = dict(re.findall(r"^- \*\*\((\w)\).*: ([a-z ]+)\.\*\*$", repro, re.M))
    # Accuracy at r=0.2 is within the spread, so (a) and (e) are not wins at every rate; p_i is
    # ten points lower under DM at both rates, so (d) holds. Nothing was chosen on validation.
    assert verdicts == {"a": UNDECIDED, "b": UNDECIDED, "c": UNDECIDED, "d": HOLDS, "e": UNDECIDED}
    assert "r=0.4, selected: DM (beta=8, lam=1) 85.0 ± 1.0% (n=3) vs CCE 70.0 ± 1.0% (n=3)" in repro
    # Both reports state the rule the verdicts follow.
    for text in (study, repro):
        assert "Welch's two-sided t-test over the seeds, Holm-corrected" in text and "α = 0.05" in text
        assert "within the spread" not in text


def test_unstable_seeds_are_named():
    df = outcomes_frame([outcome("r=0.4", "DM λ=0.5", a, seed=s) for s, a in enumerate((0.94, 0.89, 0.354))]
                        + [outcome("r=0.4", "CCE", a, seed=s) for s, a in enumerate((0.70, 0.72, 0.69))])
    assert unstable_seeds(df) == ["r=0.4 DM λ=0.5: seed 0 94.0%, seed 1 89.0%, seed 2 35.4%"]


def test_cifar100_preset_is_the_authors_setting_with_their_numbers_beside(tmp_path):
    exp = get_experiment("cifar100-table1")
    assert [c for c, _ in exp.conditions] == ["r=0", "r=0.2", "r=0.4", "r=0.6"]
    runs = {(c, m.label): cfg for c, m, _, cfg in exp.runs()}
    cfg = runs["r=0.4", "DM λ=0.5"]
    # The authors' train.m / solver.prototxt (dm_core/reference.py cites them).
    assert (cfg.iterations, cfg.schedule.milestones, cfg.batch_size) == (30_000, [15_000, 22_000], 256)
    assert cfg.optimizer.weight_decay == 5e-4 and cfg.dataset.balanced_sampler and cfg.seed == 123
    assert cfg.dataset.classes_per_batch == 32  # their train.m: 32 classes x 8 images
    # β as in their run folders: ..._lambda0_5/train_Res44_USW_Beta06_..._0.2, Beta08 at 0.4.
    betas = {(c, m): runs[c, m].loss.beta for c, m in runs if m.startswith("DM")}
    assert betas["r=0.2", "DM λ=0.5"] == 6.0 and betas["r=0.4", "DM λ=0.5"] == 8.0
    assert betas["r=0", "DM λ=0"] == 2.0 and betas["r=0.6", "DM λ=0"] == 1.0
    assert betas["r=0.6", "DM λ=1"] == 2.0 and betas["r=0.2", "DM λ=1"] == 8.0
    # The plan is the studies' planned runs: the published β as the run's fixed setting.
    planned = {(r.condition, r.method): r for r in plan(exp).runs()}
    assert planned["r=0.4", "DM λ=0.5"].params == {"beta": 8.0} and planned["r=0.4", "CCE"].params == {}
    assert planned["r=0.4", "DM λ=0.5"].noise_rate == 0.4 and planned["r=0.4", "CCE"].phase == "final"
    # A report of this experiment carries the authors' accuracy beside each row.
    outcomes = [outcome("r=0.4", "DM λ=0.5", 0.61, params={"beta": 8.0}), outcome("r=0.4", "CCE", 0.52),
                outcome("r=0.4", "MAE", 0.07)]
    path = write_preset_report(exp, outcomes, tmp_path, "dm repro cifar100-table1", "test machine")
    lines = path.read_text(encoding="utf-8").splitlines()
    assert "authors' run: final / best (%)" in lines[[i for i, x in enumerate(lines) if x.startswith("| condition")][0]]
    # One seed: the sample std is undefined, shown as —, never "nan".
    assert "| r=0.4 | DM λ=0.5 | 8 | 61.0 ± — | 61.0 ± — |" in path.read_text(encoding="utf-8")
    assert "nan" not in path.read_text(encoding="utf-8")
    assert any(x.startswith("| r=0.4 | DM λ=0.5 |") and x.endswith("| 59.9 / 61.0 (β=8) |") for x in lines)
    assert any(x.startswith("| r=0.4 | CCE |") and x.endswith("| 50.8 / 53.1 |") for x in lines)
    assert (tmp_path / "cifar100-table1-test-accuracy.html").is_file()
    # And the claims on the authors' own runs: one run each, so no test and no verdict.
    ref = {c.text[:3]: c for c in check_claims(reference_table(exp))}
    assert ref["(a)"].verdict == UNDECIDED
    assert ("r=0.6, final: DM λ=0.5 50.8% (n=1) vs CCE 38.7% (n=1): one seed: no test possible → "
            "undecided") in ref["(a)"].evidence
    assert "(d)" not in ref  # no p_i was published


def test_cifar10_preset_is_the_papers_table_with_its_numbers_beside(tmp_path):
    exp = get_experiment("cifar10-table10")
    assert [c for c, _ in exp.conditions] == ["r=0.2", "r=0.4", "r=0.6", "r=0.8"]
    runs = {(c, m.label): cfg for c, m, _, cfg in exp.runs()}
    assert sorted({m for _, m in runs}) == ["CCE", "Co-teaching", "DM λ=0", "DM λ=0.5", "DM λ=1", "DM λ=2",
                                            "ELR", "Uniform (β=0)"]
    # The stronger baselines at their papers' settings: co-teaching forgets the noise rate.
    assert runs["r=0.6", "Co-teaching"].loss.forget_rate == 0.6
    assert (runs["r=0.2", "ELR"].loss.lam, runs["r=0.2", "ELR"].loss.momentum) == (3.0, 0.7)
    cfg = runs["r=0.4", "DM λ=1"]
    # Its Section 4.1: lr 0.1 times 0.1 every 5k iterations, batch 128, weight decay 1e-4.
    assert cfg.model.name == "resnet56" and cfg.schedule.milestones == [5_000, 10_000, 15_000]
    assert (cfg.batch_size, cfg.optimizer.weight_decay, cfg.optimizer.lr) == (128, 1e-4, 0.1)
    # β as printed beside each row of Table 3: GR (β = 16) at λ = 1, r = 40%; β = 24 at λ = 2, r = 20%.
    assert cfg.loss.beta == 16.0 and runs["r=0.2", "DM λ=2"].loss.beta == 24.0
    assert runs["r=0.8", "DM λ=0"].loss.beta == 0.5 and runs["r=0.6", "Uniform (β=0)"].loss.beta == 0.0
    outcomes = [outcome("r=0.4", "DM λ=1", 0.80, params={"beta": 16.0}), outcome("r=0.4", "CCE", 0.60)]
    lines = write_preset_report(exp, outcomes, tmp_path, "dm repro cifar10-table10", "m").read_text(
        encoding="utf-8").splitlines()
    assert any(x.startswith("| condition") and x.endswith("paper's Table 3 (ICLR 2020 version): final / best (%) |")
               for x in lines)
    assert any(x.startswith("| r=0.4 | DM λ=1 |") and x.endswith("| 83.3 / 84.7 (β=16); train 60.3 / 88.9 |")
               for x in lines)
    assert any(x.startswith("| r=0.4 | CCE |") and x.endswith("| 60.9 / 82.8; train 83.0 / 64.4 |") for x in lines)
    # Checked on the paper's numbers, every λ > 0 variant against CCE; which λ is best is
    # not judged (that would be chosen on test accuracy).
    ref = {c.text[:3]: c for c in check_claims(reference_table(exp))}
    assert ("r=0.8, final: DM λ=2 32.8% (n=1) vs CCE 16.1% (n=1): one seed: no test possible → "
            "undecided") in ref["(a)"].evidence
    assert ref["(b)"].verdict == UNDECIDED and "(d)" not in ref  # no p_i published
    table = reference_table(exp).set_index(["condition", "method"])
    assert table.loc[("r=0.2", "CCE"), "train_acc_corrupted"] == pytest.approx(0.957)


def test_gpu_setup_run_locally_on_a_cpu_warns_first(monkeypatch, tmp_path):
    import studio.cli.repro as cli_repro

    ran = []
    monkeypatch.setattr(cli_repro, "_run_local", lambda p, *a: ran.append(p.total()))
    monkeypatch.setattr(cli_repro, "_cuda_for", lambda device: False)
    result = runner.invoke(app, ["repro", "cifar10-table10", "--local", "--out", str(tmp_path)])
    assert result.exit_code == 0 and ran == [32]  # 4 rates × 8 rows
    assert "GPU setup" in result.output and "takes days" in result.output


# The CIFAR presets' ResNets take 5 s or more on a CPU even at two iterations of batch 8.
@pytest.mark.parametrize("name", [pytest.param("cifar10-table10", marks=pytest.mark.slow),
                                  pytest.param("cifar100-table1", marks=pytest.mark.slow),
                                  "vehicles10-table8"])
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
    runs = list(exp.runs())
    baseline = runs[0]
    dm = next(r for r in runs if r[1].label.startswith("DM"))
    for _, method, _, cfg in (baseline, dm):  # a baseline and a DM method, as configured
        data = cfg.model_dump() | {"iterations": 2, "eval_every": 2, "batch_size": 8, "device": "cpu",
                                   "schedule": {"milestones": [], "gamma": 0.1}}
        if data["dataset"]["classes_per_batch"]:  # 32 x 8 shrunk with the batch: 4 x 2
            data["dataset"]["classes_per_batch"] = 4
        cfg = cfg.model_validate(data)
        summary = train(cfg)
        assert 0.0 <= summary.test_acc_final <= 1.0 and summary.iterations == 2, method.label
    assert p.total() == len(runs)
    # Through `dm repro --local --iterations 2`: the preset itself, cut to its last condition,
    # its first baseline and first DM method, and batches a CPU trains in a moment.
    import dataclasses

    import studio.repro.presets

    dm_method = next(m for m in exp.methods if m.label.startswith("DM"))
    base = json.loads(json.dumps(exp.base)) | {"batch_size": 8}
    if base["dataset"].get("classes_per_batch"):
        base["dataset"]["classes_per_batch"] = 4
    small = dataclasses.replace(exp, base=base, conditions=exp.conditions[-1:],
                                methods=(exp.methods[0], dm_method))
    monkeypatch.setattr(studio.repro.presets, "get_experiment", lambda _: small)
    result = runner.invoke(app, ["repro", name, "--local", "--iterations", "2", "--device", "cpu",
                                 "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    cond = exp.conditions[-1][0]
    text = (tmp_path / "out" / f"{name}.md").read_text(encoding="utf-8")
    beta = dm_method.beta_for(cond)
    assert f"| {cond} | {dm_method.label} | {beta:g} |" in text and "nan" not in text
    csv = pd.read_csv(tmp_path / "out" / f"{name}-runs.csv")
    assert list(csv["method"]) == [exp.methods[0].label, dm_method.label]
    assert csv["test_acc_final"].between(0, 1).all() and not csv["diverged"].any()


# ---------------------------------------------------------------- queued in the store

def tiny_experiment() -> Experiment:
    """Two conditions (one where every run diverges), a baseline and a DM method with a β
    fixed per condition (as the published presets fix it), two seeds: every branch of the
    queued path, in seconds."""
    base = {"dataset": {"name": "digits", "noise": {"kind": "symmetric", "rate": 0.0}},
            "model": {"name": "mlp", "hidden": [16]},
            "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4},
            "schedule": {"milestones": [5], "gamma": 0.1},
            "iterations": 10, "batch_size": 32, "eval_every": 5, "histogram_bins": 8,
            "device": "cpu"}
    return Experiment(
        name="tiny", description="a tiny grid for the tests", base=base,
        conditions=(("r=0.4", {"dataset": {"noise": {"kind": "symmetric", "rate": 0.4}}}),
                    ("diverges", {"max_logit": 1e-3})),
        methods=(Method("CCE", {"name": "cce"}),
                 Method("DM λ=1", {"name": "dm", "lam": 1.0, "beta": 8.0},
                        beta_by_condition=(("r=0.4", 12.0),))),
        seeds=(0, 1))


def drain(store: Store, tmp_path) -> int:
    return Worker(store, device="cpu", poll=0.05, exit_when_idle=True,
                  artifacts_dir=tmp_path / "artifacts").run()


def test_queued_runs_give_the_local_report(db_url, tmp_path):
    p = plan(tiny_experiment())
    local = run_here(p, device="cpu")

    store = Store(db_url, tmp_path / "artifacts")
    group, ids = submit_plan(p, store)
    # 2 conditions × 2 methods × 2 seeds, all queued at once.
    stored = {r.name: r for r in store.list_runs(group=group)}
    assert len(ids) == len(stored) == 8
    assert sorted(stored) == sorted(f"tiny/{c}/{m}/seed{s}" for c in ("r=0.4", "diverges")
                                    for m in ("CCE", "DM λ=1") for s in (0, 1))
    # β as the method fixes it per condition, else the loss's own.
    assert {stored[f"tiny/{c}/DM λ=1/seed0"].config["loss"]["beta"] for c in ("r=0.4", "diverges")} \
        == {12.0, 8.0} and stored["tiny/r=0.4/DM λ=1/seed1"].config["loss"]["beta"] == 12.0
    assert all(r.config["dataset"]["val_fraction"] == 0.0 for r in stored.values())
    assert stored["tiny/diverges/CCE/seed1"].config["max_logit"] == 1e-3
    assert {r.status for r in stored.values()} == {RunStatus.QUEUED}

    state = read_group(p, store, group)
    assert (state.total, state.done, state.problems) == (8, 0, [])
    assert not state.complete and state.waiting == 8
    with pytest.raises(ValueError, match="not done yet"):
        group_outcomes(store, state)

    assert drain(store, tmp_path) == 8
    state = read_group(p, store, group)
    assert state.complete and state.waiting == 0 and state.devices == ["cpu"]
    queued = group_outcomes(store, state)
    # Trained twice, once here and once by the worker, read back through the store: the same
    # numbers to the last bit (the run ids aside: the local runs have none).
    local_df, queued_df = (outcomes_frame(o).drop(columns="run_id") for o in (local, queued))
    pd.testing.assert_frame_equal(local_df, queued_df, check_exact=True)
    # A diverged run is what the store's diverged_at column says, whatever its error text.
    by_id = {i: store.get_run(i) for i in ids}
    assert [o.diverged_at is not None for o in queued] == [by_id[o.run_id].diverged_at is not None for o in queued]
    assert queued_df.loc[queued_df["condition"] == "diverges", "diverged"].all()
    assert not queued_df.loc[queued_df["condition"] == "r=0.4", "diverged"].any()
    assert queued_df.loc[queued_df["condition"] == "r=0.4", "p_noisy_late"].between(0, 1).all()
    exp = tiny_experiment()
    assert render_preset_report(exp, local_df, "c", "m") == render_preset_report(exp, queued_df, "c", "m")


def test_repro_cli_runs_a_preset_here_and_queued_with_one_report(db_url, tmp_path, monkeypatch):
    import studio.repro.presets

    exp = tiny_experiment()
    monkeypatch.setattr(studio.repro.presets, "get_experiment", lambda name: exp)
    local = runner.invoke(app, ["repro", "tiny", "--local", "--device", "cpu", "--iterations", "6",
                                "--seeds", "0", "--out", str(tmp_path / "here")])
    assert local.exit_code == 0, local.output
    queued = runner.invoke(app, ["repro", "tiny", "--iterations", "6", "--seeds", "0", "--db", db_url])
    assert queued.exit_code == 0, queued.output
    assert "queued 4 run(s) of tiny" in queued.output
    assert "dm repro tiny --report --group repro-tiny-" in queued.output
    early = runner.invoke(app, ["repro", "tiny", "--report", "--iterations", "6", "--seeds", "0",
                                "--db", db_url, "--out", str(tmp_path / "queued")])
    assert early.exit_code == 3 and "waiting for 4 run(s)" in early.output
    assert drain(Store(db_url, tmp_path / "artifacts"), tmp_path) == 4
    done = runner.invoke(app, ["repro", "tiny", "--report", "--iterations", "6", "--seeds", "0",
                               "--db", db_url, "--out", str(tmp_path / "queued")])
    assert done.exit_code == 0, done.output

    def body(folder):  # the report without its Regenerate and Machine lines
        text = (tmp_path / folder / "tiny.md").read_text(encoding="utf-8")
        return [x for x in text.splitlines() if not x.startswith(("Regenerate:", "Machine:"))]

    assert body("here") == body("queued")
    text = "\n".join(body("here"))
    assert "| r=0.4 | DM λ=1 | 12 |" in text and "| diverges | CCE (1/1 diverged) |  |" in text
    runs = pd.read_csv(tmp_path / "queued" / "tiny-runs.csv")
    assert runs["run_id"].notna().all() and set(runs["phase"]) == {"final"}
    assert [json.loads(x) for x in runs["params"]] == [{}, {"beta": 12.0}, {}, {"beta": 8.0}]


def test_divergence_is_read_from_the_stores_column_not_from_error_text(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'dm.sqlite'}", tmp_path / "artifacts")
    p = plan(tiny_experiment(), seeds=(0,), iterations=4)
    group, ids = submit_plan(p, store)
    summary = {"test_acc_final": 0.5, "test_acc_best": 0.6, "iterations": 4}

    def end(run_id, **kw):
        claimed = store.claim("w", "cpu")
        assert claimed.id == run_id
        store.finish(run_id, "w", **kw, attempt=claimed.attempt)

    end(ids[0], status=RunStatus.SUCCEEDED, summary=summary)
    # Diverged by the store's column, whatever the error says.
    end(ids[1], status=RunStatus.FAILED, error="the loss went non-finite", diverged_at=2)
    # An error worded like a divergence, without the column: a failure to retry.
    end(ids[2], status=RunStatus.FAILED, error="diverged at iteration 3: out of memory")
    end(ids[3], status=RunStatus.SUCCEEDED, summary=summary)
    state = read_group(p, store, group)
    assert state.done == 3 and not state.complete
    assert state.problems == [f"run {ids[2]} (tiny/diverges/CCE/seed0) is failed: diverged at iteration 3: "
                              f"out of memory; queue it again with `dm retry {ids[2]}`"]
    store.retry(ids[2])
    end(ids[2], status=RunStatus.SUCCEEDED, summary=summary)
    outcomes = group_outcomes(store, read_group(p, store, group))
    assert [o.diverged_at for o in outcomes] == [None, 2, None, None]
    rows = outcomes_frame(outcomes)
    assert list(rows["diverged"]) == [False, True, False, False]
    assert math.isnan(rows["test_acc_final"][1]) and rows["test_acc_final"][2] == 0.5


def test_read_group_refuses_a_group_queued_with_other_options(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'dm.sqlite'}", tmp_path / "artifacts")
    group, _ = submit_plan(plan(tiny_experiment(), iterations=4), store)
    with pytest.raises(GroupMismatch, match="other --seeds or --iterations"):
        read_group(plan(tiny_experiment(), seeds=(0, 1, 2), iterations=4), store, group)
    with pytest.raises(GroupMismatch, match="another config"):
        read_group(plan(tiny_experiment(), iterations=5), store, group)
    with pytest.raises(ValueError, match="already has runs"):
        submit_plan(plan(tiny_experiment(), iterations=4), store, group)


def test_unknown_experiment_queues_nothing(tmp_path):
    db = f"sqlite:///{tmp_path / 'dm.sqlite'}"
    result = runner.invoke(app, ["repro", "digits-nosie", "--db", db])
    assert result.exit_code == 2
    assert "unknown name 'digits-nosie'" in result.output
    for name in EXPERIMENTS.names():
        assert name in result.output
    assert Store(db).list_runs() == []


@pytest.mark.parametrize("args, message", [
    (["--local", "--report"], "exclude each other"),
    (["--device", "cpu"], "--device applies to --local only"),
    (["--seeds", "0,x"], "--seeds '0,x'"),
])
def test_bad_options_queue_nothing(tmp_path, args, message):
    # A study name refuses the options of the two-step queued path, before queuing anything.
    db0 = f"sqlite:///{tmp_path / 'dm0.sqlite'}"
    result = runner.invoke(app, ["repro", "digits-noise", "--report", "--db", db0])
    assert result.exit_code == 2 and "is a study" in result.output

    db = f"sqlite:///{tmp_path / 'dm.sqlite'}"
    result = runner.invoke(app, ["repro", "cifar10-table10", *args, "--db", db])
    assert result.exit_code == 2 and message in result.output, result.output
    assert Store(db).list_runs() == []


# ---------------------------------------------------------------- the summary page

ROOT = Path(__file__).resolve().parents[1]


def test_committed_summary_is_up_to_date_and_quotes_the_reports(monkeypatch):
    # Fails until docs/reproduction is regenerated with the studies: `make reproduction`.
    monkeypatch.chdir(ROOT)
    text = summary_text(Path("docs/reproduction"), Path("docs/reproduction.md"))
    assert text == (ROOT / "docs" / "reproduction.md").read_text(encoding="utf-8"), (
        "docs/reproduction.md is stale: run `make reproduction`")
    # Every claim, verdict and figure, as the study's own report states it.
    claims = [line for line in text.splitlines() if line.startswith("- **(")]
    assert {"(a)", "(b)", "(c)", "(d)", "(e)"} <= {c[4:7] for c in claims}
    for section in text.split("\n## ")[1:]:
        name = section.split("\n", 1)[0]
        report = ROOT / "docs" / "reproduction" / f"{name}.md"
        if report.is_file():
            lines = report.read_text(encoding="utf-8").splitlines()
            for line in section.splitlines():
                if line.startswith("- **("):
                    assert line in lines, (name, line)
    assert "[digits-noise.md](reproduction/digits-noise.md)" in text
    for name in ("cifar10-table10", "cifar100-table1", "vehicles10-table8"):
        assert f"- `{name}`:" in text.split("## Not run here")[1]


def test_summary_counts_diverged_runs_and_offers_no_unmeasured_explanation(tmp_path):
    reports = tmp_path / "reports"
    reports.mkdir()
    with pytest.raises(ValueError, match="no reports in"):
        summary_text(reports, tmp_path / "summary.md")
    outcomes = [outcome("r=0.4", method, acc, seed=seed, p_noisy=0.5, diverged=math.isnan(acc),
                        params={} if beta is None else {"beta": beta})
                for method, beta, acc in (("CCE", None, 0.7), ("CCE-DN", None, 0.7), ("MAE-DN", None, math.nan),
                                          ("DM λ=0", 8.0, 0.8), ("DM λ=1", 16.0, 0.9))
                for seed in (0, 1)]
    outcomes_frame(outcomes).to_csv(reports / "cifar100-table1-runs.csv", index=False)
    text = summary_text(reports, tmp_path / "summary.md")
    assert "- MAE-DN: 2/2 runs of cifar100-table1" in text
    assert "Why" not in text  # the counts are measured; a reason for them is not
    # Claim (a), from the rows above: both seeds of each equal, so nothing to test the gap against.
    assert ("r=0.4, final: DM λ=1 90.0 ± 0.0% (n=2) vs CCE 70.0 ± 0.0% (n=2): every seed gave the "
            "same value on both sides: no spread to test the gap against → undecided") in text
    assert "- `cifar10-table10`:" in text.split("## Not run here")[1]


def test_summary_quotes_a_study_report_and_skips_a_report_from_before_studies(tmp_path):
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "digits-noise.md").write_text(
        "# digits-noise\n\n## The paper's claims on the variants chosen on validation\n\n"
        "- **(a) under label noise DM beats CCE: undecided.**\n  - r=0.4: numbers\n\n## Tuning\n")
    pd.DataFrame([{"method": "dm", "phase": "final"}]).to_csv(reports / "digits-noise-runs.csv", index=False)
    pd.DataFrame([{"method": "DM λ=0", "condition": "10:1"}]).to_csv(
        reports / "digits-imbalance-runs.csv", index=False)  # the old format: no phase
    (reports / "digits-imbalance.md").write_text("# old\n")
    text = summary_text(reports, tmp_path / "summary.md")
    assert "## digits-noise" in text and "[digits-noise.md](reports/digits-noise.md)" in text
    assert "- **(a) under label noise DM beats CCE: undecided.**\n  - r=0.4: numbers" in text
    assert "## Tuning" not in text and "digits-imbalance" not in text
