"""``dm study``: study files are checked at load, every method is tuned alike on validation,
nothing is chosen on test data, ties go to the simpler setting, pruned runs are cancelled
through the store, and the report and CSV come out of a local and of a queued study."""

from __future__ import annotations

import json
import re
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from dm_core.registry import ConfigError
from dm_store import RunStatus, Store
from studio.cli import app
from studio.experiments.report import render_report, write_report
from studio.experiments.results import CSV_COLUMNS
from studio.experiments.runners import Batch, PlannedRun, QueuedRunner, StudyRunFailed, config_key
from studio.experiments.spec import load_study, parse_study
from studio.experiments.tuner import optuna_storage_url, run_study
from workers import Worker

pytestmark = pytest.mark.usefixtures("one_torch_thread")
runner = CliRunner()

TINY_BASE = {"dataset": {"name": "digits"}, "model": {"name": "mlp", "hidden": [16]},
             "iterations": 30, "eval_every": 10, "batch_size": 32, "histogram_bins": 8,
             "device": "cpu"}


def study(**overrides) -> dict:
    data = {"name": "tiny", "base": TINY_BASE, "noise_rates": [0.4], "methods": ["cce", "focal"],
            "seeds": 1, "budget": 2, "val_fraction": 0.2}
    data.update(overrides)
    return data


def write(tmp_path: Path, data) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, allow_unicode=True))
    return path


# ---------------------------------------------------------------- the study file

@pytest.mark.parametrize("overrides, field, allowed", [
    ({"methods": ["cce", "dmx"]}, "methods[1]", "allowed: cce, mae"),
    ({"noise_rates": [0.2, 1.5]}, "noise_rates[1]", "[0, 1)"),
    ({"budget": 0}, "budget", "an integer in [1, 500]"),
    ({"seeds": "three"}, "seeds", "an integer in [1, 20]"),
    ({"val_fraction": 0}, "val_fraction", "(0, 0.9]"),
    ({"tune_seeds": 2}, "tune_seeds", "[3, 20]"),
    ({"colour": "red"}, "colour", "allowed keys: name, description, base"),
    ({"base": {**TINY_BASE, "iterations": 0}}, "iterations", "[1, 10000000]"),
])
def test_bad_study_files_name_the_field_and_the_allowed_values(tmp_path, overrides, field, allowed):
    with pytest.raises(ConfigError) as err:
        load_study(write(tmp_path, study(**overrides)))
    assert field in err.value.paths(), err.value.errors
    assert allowed in str(err.value)


def test_missing_and_malformed_files_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_study(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_study(write(tmp_path, "name: [unclosed\nmethods: {"))
    with pytest.raises(ConfigError, match="missing; must be a non-empty list of distinct loss names"):
        load_study(write(tmp_path, {k: v for k, v in study().items() if k != "methods"}))


def test_a_bad_study_queues_nothing(tmp_path):
    db = f"sqlite:///{tmp_path / 'dm.sqlite'}"
    Store(db, tmp_path / "artifacts").dispose()
    result = runner.invoke(app, ["study", str(write(tmp_path, study(noise_rates=[1.5]))), "--db", db])
    assert result.exit_code == 2
    assert "noise_rates[1]" not in result.output and "noise_rates[0]" in result.output
    store = Store(db, tmp_path / "artifacts")
    assert store.list_runs() == []
    store.dispose()


def test_base_may_be_a_config_file_and_arrays_data_works(tmp_path, monkeypatch):
    monkeypatch.setenv("DM_DATA_DIRS", str(tmp_path))
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "mine.npz", x_train=rng.normal(size=(60, 5)).astype("float32"),
             y_train=rng.integers(0, 3, 60), x_test=rng.normal(size=(30, 5)).astype("float32"),
             y_test=rng.integers(0, 3, 30))
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(
        {"dataset": {"name": "arrays", "path": str(tmp_path / "mine.npz")}, "iterations": 20}))
    spec = load_study(write(tmp_path, study(base="base.yaml", methods=["dm"])))
    cfg = spec.config("r=0.4", "dm", {"lam": 1.0, "beta": 4.0}, 1000, "tune")
    assert (cfg.dataset.name, cfg.dataset.noise.rate, cfg.dataset.val_fraction) == ("arrays", 0.4, 0.2)
    assert (cfg.loss.params()["lam"], cfg.loss.params()["beta"], cfg.seed) == (1.0, 4.0, 1000)


# ---------------------------------------------------------------- selection, with a fake feed

class FakeRunner:
    """Answers each run from ``table``: setting -> (val curve, test curve) per evaluation."""

    def __init__(self, table):
        self.table = table
        self.tune_seeds: set[int] = set()

    def start(self, runs, group, report=None):
        return Batch(list(runs), group, report)

    def poll(self, batch):
        out = []
        for run in batch.runs:
            val, test = self.table(run.params)
            evals = [(10 * (i + 1), {"val_acc": v, "test_acc": t}) for i, (v, t) in enumerate(zip(val, test, strict=True))]
            if run.phase == "tune":
                self.tune_seeds.add(run.seed)
            out.append(run.outcome(evals=evals, summary={"test_acc_final": test[-1], "test_acc_best": max(test)}))
        return out

    def wait(self):
        pass


def test_the_choice_follows_validation_not_test():
    # γ = 0.5 is best on validation and worst on test; every other γ the reverse.
    def table(params):
        if params.get("gamma") == 0.5:
            return [0.70, 0.90, 0.80], [0.30, 0.40, 0.35]
        return [0.60, 0.65, 0.62], [0.95, 0.97, 0.96]

    spec = parse_study(study(budget=4, seeds=2))
    fake = FakeRunner(table)
    result = run_study(spec, fake, "t")
    assert result.chosen()[("r=0.4", "focal")] == {"gamma": 0.5}
    assert fake.tune_seeds == {1000, 1001, 1002}  # its own seeds, none of the final ones
    rows = pd.DataFrame([o.row() for o in result.outcomes])
    final = rows[(rows["phase"] == "final") & (rows["method"] == "focal")]
    assert final["seed"].tolist() == [0, 1]
    # "selected" is the test accuracy at the best validation evaluation (iteration 20).
    assert final["test_acc_selected"].tolist() == [0.40, 0.40]
    assert final["selected_iteration"].tolist() == [20, 20]
    assert final["test_acc_final"].tolist() == [0.35, 0.35]


def test_ties_go_to_the_simpler_setting():
    spec = parse_study(study(budget=24, methods=["dm", "focal"]))
    result = run_study(spec, FakeRunner(lambda p: ([0.5, 0.8], [0.9, 0.9])), "t")
    chosen = result.chosen()
    assert chosen[("r=0.4", "dm")] == {"lam": 0.0, "beta": 0.0}
    assert chosen[("r=0.4", "focal")] == {"gamma": 0.5}
    dm = next(t for t in result.tunings if t.method == "dm")
    # 24 grid points, 21 different losses: β = 0 is uniform weighting whatever λ.
    assert dm.trained == 21 and len(dm.tied) == 20  # the whole grid tied; stated in the report
    assert [t.reused for t in dm.trials if t.params["beta"] == 0.0].count(False) == 1


def test_settings_that_train_the_same_loss_do_not_spend_the_budget():
    trained = []

    class Counting(FakeRunner):
        def start(self, runs, group, report=None):
            trained.extend((r.params["lam"], r.params["beta"]) for r in runs if r.phase == "tune")
            return super().start(runs, group, report)

    # Whatever the sampler draws, 21 different settings are trained, each once (per tuning seed).
    spec = parse_study(study(budget=21, methods=["dm"]))
    result = run_study(spec, Counting(lambda p: ([0.5, 0.6 + p["beta"] / 100], [0.9, 0.9])), "t")
    distinct = set(trained)
    assert len(distinct) == 21 and len(trained) == 21 * 3
    assert sum(1 for lam, beta in distinct if beta == 0.0) == 1  # uniform weighting trained once
    assert result.chosen()[("r=0.4", "dm")] == {"lam": 0.0, "beta": 16.0}  # tie over λ: the smallest
    text = render_report(result, "dm study", "test machine", "none")
    assert "grid: all 21 settings (24 less repeats)" in text
    assert "21 tried (21 completed, 0 pruned)" in text and "(repeat, not retrained)" in text


def test_claims_read_a_beta_zero_trial_as_the_uniform_setting_it_trained():
    """A trial named (λ=2, β=0) trained uniform weighting, i.e. λ = 0: claim (b) must read it
    so, both for the chosen setting and for "the best other λ"."""
    from studio.experiments.claims import HOLDS, _claim_b
    from studio.experiments.tuner import TrialRecord, Tuning

    def tuning(rate, trials):
        t = Tuning(f"r={rate:g}", rate, "dm", None, len(trials), "grid",
                   [TrialRecord(i, params, "complete", value, 0.001, 3)
                    for i, (params, value) in enumerate(trials)])
        t.choose()
        return t

    low = tuning(0.2, [({"lam": 2.0, "beta": 0.0}, 0.90), ({"lam": 1.0, "beta": 4.0}, 0.80)])
    high = tuning(0.4, [({"lam": 0.5, "beta": 0.0}, 0.70), ({"lam": 2.0, "beta": 8.0}, 0.85)])
    assert low.chosen == {"lam": 0.0, "beta": 0.0}
    claim = _claim_b([low, high])
    assert claim.verdict == HOLDS, claim.evidence
    assert ("r=0.2: chosen λ=0 val 90.0 ± 0.1% (n=3) vs best other λ=1 val 80.0 ± 0.1% (n=3): "
            "p = 6e-08 (Holm 6e-08) → holds") in claim.evidence
    assert ("r=0.4: chosen λ=2 val 85.0 ± 0.1% (n=3) vs best other λ=0 val 70.0 ± 0.1% (n=3): "
            "p = 1.2e-08 (Holm 2.4e-08) → holds") in claim.evidence


# ---------------------------------------------------------------- local, end to end

def test_local_study_through_the_cli_writes_report_and_csv(tmp_path):
    path = write(tmp_path, study(noise_rates=[0.0, 0.4], methods=["cce", "dm"], budget=2))
    result = runner.invoke(app, ["study", str(path), "--local", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    runs = pd.read_csv(tmp_path / "out" / "tiny-runs.csv")
    assert set(CSV_COLUMNS) <= set(runs.columns)
    assert set(runs["phase"]) == {"tune", "final"}
    tune = runs[runs["phase"] == "tune"]
    assert set(tune["method"]) == {"dm"} and set(tune["seed"]) == {1000, 1001, 1002}
    assert len(tune) == 2 * 2 * 3  # two rates × budget 2 × three tuning seeds (unless pruned)
    final = runs[runs["phase"] == "final"]
    assert sorted(final["method"]) == ["cce", "cce", "dm", "dm"]
    chosen = {r["noise_rate"]: json.loads(r["params"]) for _, r in final[final["method"] == "dm"].iterrows()}
    for rate, params in chosen.items():  # the chosen setting is the best tuning mean on validation
        trials = tune[tune["noise_rate"] == rate].groupby("params")["val_acc_selected"].mean()
        assert trials.max() == trials[json.dumps(params, sort_keys=True)]
    text = (tmp_path / "out" / "tiny.md").read_text()
    assert "test best, optimistic" in text and "| r=0.4 | dm |" in text
    # One final seed: no sample std, shown as — (never "± nan").
    assert re.search(r"\| r=0\.4 \| cce \| \(no hyperparameter\) \| \d+\.\d ± — \|", text), text
    assert "nan" not in text.lower()
    assert "(b) the λ chosen on validation grows with the noise rate (noisy rates only): undecided" in text


# ---------------------------------------------------------------- queued, through the store

def worker(store: Store, kind: type[Worker] = Worker, **kwargs) -> Worker:
    options = {"device": "cpu", "poll": 0.1, "stale_after": 5.0, "exit_when_idle": False,
               "artifacts_dir": store.artifacts_dir, "heartbeat_every": 0.2}
    options.update(kwargs)
    return kind(store, **options)


@contextmanager
def working(w: Worker):
    """``w`` claiming and training runs in a thread for the length of the block."""
    thread = threading.Thread(target=w.run, daemon=True)
    thread.start()
    try:
        yield w
    finally:
        w.stop()
        thread.join(timeout=60)
    assert not thread.is_alive()


@contextmanager
def optuna_beside(store: Store):
    """The Optuna storage of a queued study on ``store``, closed after the block (a
    PostgreSQL test database is dropped afterwards)."""
    import optuna

    storage = optuna.storages.RDBStorage(optuna_storage_url(store.url))
    try:
        yield storage
    finally:
        storage.engine.dispose()


def wait_for(predicate, timeout: float = 120.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def sqlite_store(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'dm.sqlite'}", tmp_path / "artifacts")
    yield store
    store.dispose()


def test_the_pruner_cancels_through_store_cancel(sqlite_store, monkeypatch):
    spec = parse_study(study(base={**TINY_BASE, "iterations": 3000, "eval_every": 10}))
    runs = [PlannedRun("focal", {"gamma": 2.0}, "r=0.4", 0.4, seed, "tune",
                       spec.config("r=0.4", "focal", {"gamma": 2.0}, seed, "tune"), 0)
            for seed in spec.tune_seed_list()]
    cancelled = []
    real_cancel = sqlite_store.cancel
    monkeypatch.setattr(sqlite_store, "cancel", lambda i: cancelled.append(i) or real_cancel(i))
    reports = []
    queued = QueuedRunner(sqlite_store, poll_seconds=0.05)
    batch = queued.start(runs, "g", lambda step, value: reports.append((step, value)) or True)
    # One worker per seed: the seeds of a trial train side by side, and the pruner is fed
    # their mean once each has evaluated. Each holds its run at that first evaluation
    # (workers.hold) until the cancel ends the hold: the runs are still running when the
    # pruner's cancel lands, however fast the machine trains.
    workers = [worker(sqlite_store, hold_at=10) for _ in runs]
    threads = [threading.Thread(target=w.run, daemon=True) for w in workers]
    for t in threads:
        t.start()
    try:
        outcomes = wait_for(lambda: queued.poll(batch), what="the pruned batch to end")
    finally:
        for w in workers:
            w.stop()
        for t in threads:
            t.join(timeout=60)
    # The pruner's first report stopped the trial, long before the runs' last iteration.
    assert len(reports) == 1 and batch.pruned
    assert all(sqlite_store.get_run(i).iteration == 10 for i in batch.run_ids)
    assert sorted(cancelled) == sorted(batch.run_ids)
    assert all(sqlite_store.get_run(i).status == RunStatus.CANCELLED for i in batch.run_ids)
    assert all(o.pruned for o in outcomes)


@pytest.fixture
def any_store(db_url, tmp_path):
    """A store on each backend (SQLite file, PostgreSQL database)."""
    store = Store(db_url, tmp_path / "artifacts")
    yield store
    store.dispose()


def test_queued_study_with_a_real_worker(any_store, tmp_path):
    # On PostgreSQL the Optuna studies live in the schema "optuna" of the store's database,
    # on SQLite in a file beside it: both keep a table named alembic_version.
    import optuna

    store = any_store
    spec = parse_study(study(budget=1, base={**TINY_BASE, "iterations": 20}))
    with optuna_beside(store) as storage:
        with working(worker(store)):
            result = run_study(spec, QueuedRunner(store, poll_seconds=0.05), "q", storage)
        tune = store.list_runs(group="q-tune-focal-r=0.4")
        assert len(tune) == 3 and all(r.status == RunStatus.SUCCEEDED for r in tune)
        assert {r.config["seed"] for r in tune} == {1000, 1001, 1002}
        assert len({r.config["loss"]["gamma"] for r in tune}) == 1  # the swept param is in the config
        final = store.list_runs(group="q-final")
        assert sorted(r.config["loss"]["name"] for r in final) == ["cce", "focal"]
        studies = optuna.get_all_study_names(storage)
        assert studies == ["q/r=0.4/focal"]
        trial = optuna.load_study(study_name=studies[0], storage=storage).trials[0]
        assert sorted(trial.user_attrs["run_ids"]) == sorted(r.id for r in tune)
        md, csv = write_report(result, tmp_path / "out", "cmd", "here", "median")
        assert "`q-tune-focal-r=0.4`" in md.read_text()
        rows = pd.read_csv(csv)
        assert rows["run_id"].notna().all() and len(rows) == 3 + 2
    again = Store(store.url, tmp_path / "artifacts")  # the store's own schema version untouched
    try:
        assert len(again.list_runs()) == 3 + 2
    finally:
        again.dispose()


class Interrupted(Exception):
    """The driving process of a study stopping (a closed terminal, a crash)."""


def test_a_queued_study_resumes_without_queueing_anything_twice(sqlite_store, tmp_path):
    import optuna

    store = sqlite_store
    spec = parse_study(study(budget=2, base={**TINY_BASE, "iterations": 20}))

    def stop_after_first_batch(found):
        raise Interrupted

    with optuna_beside(store) as storage, working(worker(store)):
        with pytest.raises(Interrupted):
            run_study(spec, QueuedRunner(store, poll_seconds=0.05), "r", storage,
                      on_batch=stop_after_first_batch)
        before = {r.id for r in store.list_runs()}
        assert before  # the first trial (and CCE's final runs) were queued
        again = QueuedRunner(store, poll_seconds=0.05, reuse=True)
        result = run_study(spec, again, "r", storage)
        [name] = optuna.get_all_study_names(storage)
        assert len(optuna.load_study(study_name=name, storage=storage).trials) == 2
    runs = store.list_runs()
    # Every run of the stopped attempt was taken again; the whole study has as many runs as
    # one that never stopped (2 trials × 3 tuning seeds, 2 methods × 1 final seed), no config twice.
    assert again.reused == len(before) and before <= {r.id for r in runs}
    assert len(runs) == 2 * 3 + 2 == len({config_key(r.config) for r in runs})
    assert all(r.status == RunStatus.SUCCEEDED for r in runs)
    assert sorted(o.run_id for o in result.outcomes) == sorted(r.id for r in runs)


def test_a_failed_run_stops_the_study_and_after_a_retry_resume_goes_on(sqlite_store):
    class FailsOnce(Worker):
        """Fails the first tuning run of seed 1001 as a broken data mount would."""

        failed: list[int] = []

        def prepare(self, run):
            if run.config["seed"] == 1001 and not self.failed:
                self.failed.append(run.id)
                raise ValueError("broken data mount")
            return super().prepare(run)

    store = sqlite_store
    spec = parse_study(study(budget=1, base={**TINY_BASE, "iterations": 20}))
    with optuna_beside(store) as storage, working(worker(store, FailsOnce)):
        with pytest.raises(StudyRunFailed) as err:
            run_study(spec, QueuedRunner(store, poll_seconds=0.05), "f", storage)
        [broken] = FailsOnce.failed
        assert f"dm retry {broken}" in str(err.value) and "--resume PREFIX" in str(err.value)
        assert "broken data mount" in str(err.value)
        store.retry(broken)
        again = QueuedRunner(store, poll_seconds=0.05, reuse=True)
        result = run_study(spec, again, "f", storage)
    runs = store.list_runs()
    assert len(runs) == 3 + 2 and all(r.status == RunStatus.SUCCEEDED for r in runs)
    assert broken in {o.run_id for o in result.outcomes}  # the retried run, not a new one


def test_dm_study_resume_checks_its_prefix(tmp_path):
    db = f"sqlite:///{tmp_path / 'dm.sqlite'}"
    Store(db, tmp_path / "artifacts").dispose()
    path = write(tmp_path, study())
    result = runner.invoke(app, ["study", str(path), "--db", db, "--resume", "study-tiny-nope"])
    assert result.exit_code == 2 and "no group of this store starts with study-tiny-nope-" in result.output
    result = runner.invoke(app, ["study", str(path), "--local", "--resume", "study-tiny-x"])
    assert result.exit_code == 2 and "--resume applies to a queued study" in result.output


def test_repro_runs_a_shipped_study_by_name(tmp_path):
    result = runner.invoke(app, ["repro", "digits-imbalance", "--local", "--budget", "1",
                                 "--iterations", "10", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    runs = pd.read_csv(tmp_path / "digits-imbalance-runs.csv")
    assert set(runs["condition"]) == {"10:1 r=0", "50:1 r=0"}
    assert set(runs["phase"]) == {"tune", "final"}


@pytest.mark.slow
def test_dm_study_queued_through_the_cli_with_a_worker(tmp_path):
    db = f"sqlite:///{tmp_path / 'dm.sqlite'}"
    store = Store(db, tmp_path / "artifacts")
    path = write(tmp_path, study(budget=1, base={**TINY_BASE, "iterations": 20}))
    with working(worker(store)):
        result = runner.invoke(app, ["study", str(path), "--db", db, "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    groups = store.groups()
    assert sum(g.endswith("-tune-focal-r=0.4") for g in groups) == 1
    assert sum(g.endswith("-final") for g in groups) == 1
    assert (tmp_path / "dm.sqlite.optuna").is_file()  # the Optuna studies, beside the store
    runs = pd.read_csv(tmp_path / "out" / "tiny-runs.csv")
    assert sorted(runs["phase"]) == ["final"] * 2 + ["tune"] * 3
    assert set(runs["run_id"]) == {r.id for r in store.list_runs()}
    # Resuming a study that had ended: every run is taken from the store, none queued, and
    # the report is written again from them.
    [prefix] = re.findall(r"--resume (\S+)", result.output)
    (tmp_path / "out" / "tiny-runs.csv").unlink()
    again = runner.invoke(app, ["study", str(path), "--db", db, "--out", str(tmp_path / "out"),
                                "--resume", prefix])
    assert again.exit_code == 0, again.output
    assert "5 run(s) taken from the store" in again.output
    assert len(store.list_runs()) == 5
    assert set(pd.read_csv(tmp_path / "out" / "tiny-runs.csv")["run_id"]) == set(runs["run_id"])
    store.dispose()


def test_dm_against_every_method_is_judged_with_the_seed_spread():
    """Claim (e) from a hand-built table of final runs: DM clearly ahead of CCE, within the
    spread of GCE, so the claim is undecided; GCE's validation lead over DM is not significant
    over two seeds, so no validation pick is named."""
    from studio.experiments.claims import HOLDS, UNDECIDED, _claim_e, seed_table

    rows = []
    accs = {"dm": [0.90, 0.92], "cce": [0.70, 0.72], "gce": [0.89, 0.93]}
    vals = {"dm": [0.88, 0.90], "cce": [0.60, 0.62], "gce": [0.91, 0.93]}
    for method, values in accs.items():
        for seed, acc in enumerate(values):
            rows.append({"condition": "r=0.4", "method": method, "noise_rate": 0.4, "seed": seed,
                         "params": "{}", "diverged": False, "test_acc_final": acc,
                         "test_acc_selected": acc, "test_acc_best": acc,
                         "val_acc_selected": vals[method][seed], "train_acc_corrupted": 0.5,
                         "train_acc_intact": 0.5, "fit_corrupted_subset": 0.5, "p_noisy_late": 0.5})
    claim = _claim_e(seed_table(pd.DataFrame(rows)))
    assert claim.verdict == UNDECIDED
    assert f"vs cce 71.0 ± 1.4% (n=2): p = 0.005 (Holm 0.0099) → {HOLDS}" in claim.evidence[0]
    assert f"vs gce 91.0 ± 2.8% (n=2): p = 1 (Holm 1) → {UNDECIDED}" in claim.evidence[1]
    assert ("best validation accuracy is undecided: gce 92.0 ± 1.4% (n=2), dm 89.0 ± 1.4% (n=2) "
            "not distinguishable (p = 0.17, Holm 0.17)") in claim.evidence[2]
