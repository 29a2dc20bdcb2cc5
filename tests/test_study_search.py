"""``dm study``'s search and its study-file checks: each search is seeded by the study's seed
and the condition's and method's names (not by the file's order), a grid larger than the
budget is explored (random start, then TPE) without spending the budget on repeats, the
pruner waits for half of a search, the report counts what each search tried, and a study
file naming missing data or any registered loss is judged at load."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml
from test_studies import TINY_BASE  # one tiny base for every study test
from typer.testing import CliRunner

from dm_core.losses import list_losses
from dm_core.registry import ConfigError
from dm_store import Store
from studio.cli import app
from studio.experiments import tuner
from studio.experiments.report import render_report
from studio.experiments.results import RunOutcome
from studio.experiments.runners import Batch
from studio.experiments.spaces import axes_of, distinct_grid_size, untuned_text
from studio.experiments.spec import load_study, parse_study
from studio.experiments.tuner import (
    MAX_REPEATS,
    median_pruner,
    random_start_size,
    run_study,
    search_seed,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")
runner = CliRunner()

def study(**overrides) -> dict:
    data = {"name": "tiny", "base": TINY_BASE, "noise_rates": [0.4], "methods": ["cce", "dm"],
            "seeds": 1, "budget": 6, "val_fraction": 0.2}
    data.update(overrides)
    return data


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


def dm_value(params: dict) -> float:
    """A validation landscape with its peak inside the grid (λ = 1, β = 4), not at an edge."""
    lam, beta = params.get("lam", 0.0), params.get("beta", 0.0)
    return 0.9 - 0.02 * abs(lam - 1.0) - 0.01 * abs(beta - 4.0)


class Fake:
    """Answers every run at once from ``value(params)``; ``pruned_below``: the pruner's feed
    is read as a local runner's is (seed after seed), and a batch reported below it stops."""

    sequential_seeds = True

    def __init__(self, value=dm_value):
        self.value = value
        self.trained: list[tuple[str, str, tuple]] = []  # (condition, method, setting) per tuning run

    def start(self, runs, group, report=None):
        return Batch(list(runs), group, report)

    def poll(self, batch):
        out = []
        for position, run in enumerate(batch.runs):
            if batch.pruned:
                break
            if run.phase == "tune":
                self.trained.append((run.condition, run.method, tuple(sorted(run.params.items()))))
            v = self.value(run.params)
            evals = []
            for it in (10, 20, 30):
                evals.append((it, {"val_acc": v, "test_acc": 0.5}))
                if batch.report is not None and batch.report(position * 30 + it, v):
                    batch.pruned = True
                    break
            if batch.pruned:
                out.append(run.outcome(evals=evals, summary=None, pruned=True))
            else:
                out.append(run.outcome(evals=evals, summary={"test_acc_final": 0.5, "test_acc_best": 0.5,
                                                             "iterations": 30}))
        return out

    def wait(self):
        pass


def no_pruning(warmup: int, trials: int) -> optuna.pruners.BasePruner:
    return optuna.pruners.NopPruner()


def tried(result, method="dm", condition="r=0.4") -> list[dict]:
    [t] = [t for t in result.tunings if (t.method, t.condition) == (method, condition)]
    return [r.params for r in t.trials if not r.reused]


# ---------------------------------------------------------------- the search's seed

def test_search_seed_is_a_stable_hash_of_the_study_seed_and_the_names():
    # A fixed number: Python's hash() of a string would change with each interpreter.
    assert search_seed(0, "r=0.4", "dm") == 466090581
    assert len({search_seed(0, "r=0.4", "dm"), search_seed(1, "r=0.4", "dm"),
                search_seed(0, "r=0.2", "dm"), search_seed(0, "r=0.4", "gce")}) == 4


def test_the_order_of_the_study_file_does_not_move_the_search():
    one = run_study(parse_study(study(methods=["dm", "focal"], noise_rates=[0.2, 0.4], budget=3)), Fake(), "a")
    other = run_study(parse_study(study(methods=["focal", "dm"], noise_rates=[0.4, 0.2], budget=3)), Fake(), "b")
    for condition in ("r=0.2", "r=0.4"):
        for method in ("dm", "focal"):
            assert tried(one, method, condition) == tried(other, method, condition)
    # Deterministic given the seed and what it is told: the same study again, the same trials.
    again = run_study(parse_study(study(methods=["dm", "focal"], noise_rates=[0.2, 0.4], budget=3)), Fake(), "c")
    assert tried(again, "dm", "r=0.4") == tried(one, "dm", "r=0.4")


class Interrupted(Exception):
    """The driving process of a study stopping."""


def test_a_replay_after_an_interruption_tries_the_same_settings(tmp_path):
    """What ``--resume`` relies on: the search, rebuilt in the same storage from the same
    results, proposes what it proposed before, TPE's proposals and repeats included."""
    spec = parse_study(study(budget=8))
    whole = run_study(spec, Fake(), "w", pruner=no_pruning)
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'optuna.sqlite'}")
    batches = []

    def stop_after_five(found):
        batches.append(found)
        if len(batches) == 5:
            raise Interrupted

    try:
        with pytest.raises(Interrupted):
            run_study(spec, Fake(), "w", storage, pruner=no_pruning, on_batch=stop_after_five)
        replay = run_study(spec, Fake(), "w", storage, pruner=no_pruning)
        [name] = optuna.get_all_study_names(storage)
        [t] = replay.tunings
        assert len(optuna.load_study(study_name=name, storage=storage).trials) == len(t.trials)
    finally:
        storage.engine.dispose()
    assert [(r.params, r.reused) for r in t.trials] == [(r.params, r.reused) for r in whole.tunings[0].trials]


def test_the_study_seed_changes_the_settings_tried():
    first = tried(run_study(parse_study(study(seed=0)), Fake(), "s"))
    second = tried(run_study(parse_study(study(seed=1)), Fake(), "s"))
    assert first != second
    assert len(first) == len(second) == 6


def test_a_search_smaller_than_the_grid_explores_it():
    """Not a fixed subset: over study seeds, budget 6 of DM's 21 settings reaches β ≤ 4 (where
    the landscape peaks), and the settings tried differ from seed to seed."""
    subsets = [frozenset(tuple(sorted(p.items())) for p in tried(run_study(parse_study(study(seed=s)), Fake(), "x")))
               for s in range(6)]
    assert len(set(subsets)) > 1
    betas = {dict(p)["beta"] for subset in subsets for p in subset}
    assert {0.0, 2.0, 4.0} & betas and max(betas) > 4.0
    assert any(dict(p)["beta"] in (2.0, 4.0) for subset in subsets for p in subset)
    # The start is random (seeded), the rest proposed by TPE: 2 of the 6 drawn at random.
    assert random_start_size(6) == 2 and random_start_size(8) == 2 and random_start_size(21) == 7


def test_a_budget_covering_the_grid_tries_all_of_it():
    result = run_study(parse_study(study(methods=["gce", "dm"], budget=8)), Fake(), "g")
    gce = next(t for t in result.tunings if t.method == "gce")
    assert sorted(p["q"] for p in tried(result, "gce")) == [0.1, 0.3, 0.5, 0.7, 0.9]
    assert gce.trained == gce.grid == 5 and "grid: all 5 settings" in gce.sampler


# ---------------------------------------------------------------- repeats cost no budget

def test_no_repeated_proposal_costs_budget():
    fake = Fake()
    result = run_study(parse_study(study(budget=8)), fake, "r", pruner=no_pruning)
    dm = next(t for t in result.tunings if t.method == "dm")
    settings = [s for c, m, s in fake.trained if m == "dm"]
    # Each setting trained once per tuning seed, 8 different ones: the budget.
    assert len(settings) == 8 * 3 and len(set(settings)) == 8
    assert dm.trained == 8 and dm.repeats == sum(r.reused for r in dm.trials)
    for r in dm.trials:
        if r.reused:
            assert any(not e.reused and e.params == r.params for e in dm.trials if e.number < r.number)


class Stubborn(optuna.samplers.BaseSampler):
    """Proposes the first value of every axis, whatever it has been told."""

    def infer_relative_search_space(self, study, trial):
        return {}

    def sample_relative(self, study, trial, search_space):
        return {}

    def sample_independent(self, study, trial, param_name, param_distribution):
        return param_distribution.choices[0]


def test_a_sampler_that_only_repeats_cannot_stall_the_search(monkeypatch):
    monkeypatch.setattr(tuner, "_model_sampler", lambda seed, startup: Stubborn())
    fake = Fake()
    result = run_study(parse_study(study(budget=6)), fake, "st", pruner=no_pruning)
    dm = next(t for t in result.tunings if t.method == "dm")
    settings = [s for c, m, s in fake.trained if m == "dm"]
    assert len(set(settings)) == 6 and len(settings) == 6 * 3
    # After MAX_REPEATS repeated proposals in a row, the search draws an untried setting.
    run = 0
    for r in dm.trials:
        run = run + 1 if r.reused else 0
        assert run <= MAX_REPEATS
    assert dm.repeats > 0 and dm.trained == 6


# ---------------------------------------------------------------- the pruner

def _trained_trial(value: float) -> optuna.trial.FrozenTrial:
    dist = optuna.distributions.CategoricalDistribution([0.0, 1.0])
    return optuna.trial.create_trial(params={"x": 0.0}, distributions={"x": dist}, value=value,
                                     intermediate_values={40: value, 50: value})


def test_the_pruner_waits_for_half_of_the_search():
    study_ = optuna.create_study(direction="maximize", pruner=median_pruner(30, 6))
    # A repeated setting is told complete without training: it does not count.
    study_.add_trial(optuna.trial.create_trial(
        params={"x": 0.0}, distributions={"x": optuna.distributions.CategoricalDistribution([0.0, 1.0])},
        value=0.9))
    for _ in range(2):
        study_.add_trial(_trained_trial(0.9))
    trial = study_.ask()
    trial.report(0.1, 40)
    assert not trial.should_prune()  # two of six trained: not yet half
    study_.add_trial(_trained_trial(0.9))
    assert trial.should_prune()  # three of six: the median rule applies
    early = study_.ask()
    early.report(0.1, 20)
    assert not early.should_prune()  # before the warm-up step


def test_a_trial_is_never_judged_on_its_first_seed_alone():
    seen = []

    def spy(warmup, trials):
        seen.append((warmup, trials))
        return median_pruner(warmup, trials)

    spec = parse_study(study(methods=["dm", "gce"], budget=8))
    run_study(spec, Fake(), "p", pruner=spy)
    # Seeds one after another: seed k's iteration i is step 30k + i; past half the second seed.
    assert seen == [(45, 8), (45, 5)]

    class SideBySide(Fake):
        sequential_seeds = False

    seen.clear()
    run_study(spec, SideBySide(), "p", pruner=spy)
    assert seen == [(15, 8), (15, 5)]


# ---------------------------------------------------------------- what the report counts

def test_the_report_states_what_each_search_tried():
    def value(params):
        if "lam" in params:
            return dm_value(params)
        return 0.5 if params.get("q") == 0.9 else 0.7  # gce q=0.9 is pruned by the threshold

    spec = parse_study(study(methods=["dm", "gce", "label-smoothing", "cce", "dm-normal"], budget=6))
    result = run_study(spec, Fake(value), "c",
                       pruner=lambda warmup, trials: optuna.pruners.ThresholdPruner(lower=0.6))
    text = render_report(result, "dm study", "test machine", "threshold")
    assert "same budget" not in text
    assert ("budget 6 settings per (condition, method); dm: 6 of its 21 settings; gce: all 5 of its 5 "
            "settings (its whole grid); label-smoothing: all 4 of its 4 settings (its whole grid); the "
            "tuned methods did not all try as many settings") in text
    assert "untuned: cce (no hyperparameter), dm-normal (no search space: trained at its defaults" in text
    outcomes = [o for o in result.outcomes if o.phase == "tune"]
    for t in result.tunings:
        iterations = sum(o.iterations_reached() for o in outcomes if o.method == t.method)
        line = (f"{t.grid} different settings in the grid; {t.trained} tried ({t.completed} completed, "
                f"{t.pruned} pruned); {t.repeats} repeated proposal(s) not retrained (of {len(t.trials)} "
                f"trial(s)); {iterations:,} iterations trained")
        assert line in text, line
    gce = next(t for t in result.tunings if t.method == "gce")
    # q = 0.9 stopped at its first evaluation of its first seed: 10 iterations, the others 3 × 30.
    assert (gce.completed, gce.pruned, gce.iterations) == (4, 1, 4 * 90 + 10)
    dm = next(t for t in result.tunings if t.method == "dm")
    assert dm.trained == 6 and dm.grid == 21
    assert re.search(r"\| r=0\.4 \| dm-normal \| \(no search space: trained at its defaults psi=0\.5, beta=8", text)


def test_a_run_counts_the_iterations_it_reached():
    def outcome(**kw):
        return RunOutcome("dm", {}, "r=0", 0.0, 0, "tune", **kw)

    evals = [(10, {"val_acc": 0.5}), (20, {"val_acc": 0.6})]
    assert outcome(evals=evals, summary={"iterations": 30}).iterations_reached() == 30
    assert outcome(evals=evals, summary=None, pruned=True).iterations_reached() == 20
    assert outcome(evals=evals, summary=None, diverged_at=27).iterations_reached() == 27
    assert outcome(evals=[], summary=None, pruned=True).iterations_reached() == 0


# ---------------------------------------------------------------- the study file at load

def test_the_study_seed_is_checked(tmp_path):
    assert load_study(write(tmp_path, study())).seed == 0
    with pytest.raises(ConfigError) as err:
        load_study(write(tmp_path, study(seed=-1)))
    assert err.value.paths() == ["seed"] and "an integer in [0, 2147483647]" in str(err.value)


def test_every_registered_loss_is_accepted_and_an_unknown_one_names_them():
    spec = parse_study(study(methods=list_losses(), budget=1))
    assert spec.methods == list_losses()
    assert [a.param for a in axes_of("dm-beta")] == ["alpha", "eta"] and distinct_grid_size("dm-beta") == 16
    assert untuned_text("dm-exponential").startswith("no search space: trained at its defaults")
    with pytest.raises(ConfigError) as err:
        parse_study(study(methods=["dm", "dm-betta"]))
    assert err.value.paths() == ["methods[1]"]
    assert "unknown name 'dm-betta'; allowed: " + ", ".join(list_losses()) in str(err.value)


def test_dm_beta_is_tuned_and_an_untuned_loss_trains_at_its_defaults():
    spec = parse_study(study(methods=["dm-beta", "dm-normal"], budget=3))
    fake = Fake(lambda p: 0.8 - 0.01 * p.get("alpha", 1.0))
    result = run_study(spec, fake, "b")
    [t] = result.tunings
    assert t.method == "dm-beta" and t.trained == 3
    assert result.chosen()[("r=0.4", "dm-normal")] == {}
    final = [o for o in result.outcomes if o.phase == "final" and o.method == "dm-normal"]
    assert len(final) == 1
    cfg = spec.config("r=0.4", "dm-normal", {}, 0, "final")
    assert cfg.loss.params()["psi"] == 0.5 and cfg.loss.params()["beta"] == 8.0


def _arrays(path: Path) -> None:
    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.normal(size=(60, 5)).astype("float32"), y_train=rng.integers(0, 3, 60),
             x_test=rng.normal(size=(30, 5)).astype("float32"), y_test=rng.integers(0, 3, 30))


def test_missing_or_unallowed_data_is_refused_at_load(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.setenv("DM_DATA_DIRS", str(data))
    base = {**TINY_BASE, "dataset": {"name": "arrays", "path": str(data / "missing.npz")}}
    with pytest.raises(ConfigError) as err:
        load_study(write(tmp_path, study(base=base)))
    assert err.value.paths() == ["base.dataset.path"] and "does not exist" in str(err.value)

    _arrays(data / "mine.npz")
    base["dataset"]["path"] = str(data / "mine.npz")
    assert load_study(write(tmp_path, study(base=base))).base["dataset"]["path"] == str(data / "mine.npz")
    # A condition that points elsewhere is named as the field that set the path.
    conditions = {"small": {}, "big": {"dataset": {"path": str(data / "big.npz")}}}
    with pytest.raises(ConfigError) as err:
        load_study(write(tmp_path, study(base=base, conditions=conditions)))
    assert err.value.paths() == ["conditions.big.dataset.path"]
    assert "(read by the runs of big r=0.4)" in str(err.value)

    _arrays(tmp_path / "outside.npz")
    base["dataset"]["path"] = str(tmp_path / "outside.npz")
    with pytest.raises(ConfigError) as err:
        load_study(write(tmp_path, study(base=base)))
    assert err.value.paths() == ["base.dataset.path"]
    assert "outside the allowed data directories" in str(err.value)


def test_dm_study_with_missing_data_exits_2_and_trains_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("DM_DATA_DIRS", str(tmp_path))
    base = {**TINY_BASE, "dataset": {"name": "arrays", "path": str(tmp_path / "missing.npz")}}
    path = write(tmp_path, study(base=base))
    result = runner.invoke(app, ["study", str(path), "--local", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert "base.dataset.path" in result.output and "does not exist" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()
    # Queued: nothing reaches the store either.
    db = f"sqlite:///{tmp_path / 'dm.sqlite'}"
    Store(db, tmp_path / "artifacts").dispose()
    result = runner.invoke(app, ["study", str(path), "--db", db])
    assert result.exit_code == 2 and "base.dataset.path" in result.output
    store = Store(db, tmp_path / "artifacts")
    assert store.list_runs() == []
    store.dispose()


def test_dm_study_trains_dm_beta_and_an_untuned_registered_loss(tmp_path):
    path = write(tmp_path, study(methods=["dm-beta", "dm-exponential"], budget=1,
                                 base={**TINY_BASE, "iterations": 10, "eval_every": 10}))
    result = runner.invoke(app, ["study", str(path), "--local", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "out" / "tiny.md").read_text()
    assert "dm-beta: 1 of its 16 settings" in text
    assert "dm-exponential (no search space: trained at its defaults beta=2, eps=1e-06)" in text
    assert "### r=0.4, dm-beta" in text


def test_dm_study_tunes_elr_and_co_teaching_through_the_real_loop(tmp_path):
    """The per-example (ELR) and two-network (co-teaching) methods are study methods like any
    loss: tuned over their own axes, trained by the loop at toy size, reported."""
    path = write(tmp_path, study(methods=["elr", "co-teaching"], budget=1,
                                 base={**TINY_BASE, "iterations": 10, "eval_every": 10}))
    result = runner.invoke(app, ["study", str(path), "--local", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "out" / "tiny.md").read_text()
    assert "elr: 1 of its 12 settings" in text
    assert "co-teaching: 1 of its 4 settings" in text
    assert "### r=0.4, co-teaching" in text
