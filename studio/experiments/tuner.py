"""The search: one Optuna study per (condition, method), its trials the study's tuning runs.

Every method with a hyperparameter gets the same budget: ``spec.budget`` trials. A trial is a
setting of the method's axes (``spaces``), trained on each tuning seed with the trusted clean
validation split held out; its value is the mean over those seeds of the best validation
accuracy during training (a diverged seed counts 0). Optuna's grid sampler draws the
settings in random order without repeats: the whole grid when the budget covers it (the
study stops there, with fewer trials than the budget), else ``budget`` settings of it. (TPE
on a grid this small keeps proposing settings it has already tried, which spends the budget
on repeats.) A setting proposed again, or one that trains the same loss as an earlier one
(``spaces.canonical``: DM with β = 0 is uniform weighting for every λ), is not retrained: the
trial gets the value the setting already has, and it does not count against the budget, which
is the number of different settings trained. A pruner (median by default) reads the validation
accuracy as the runs report it and stops trials that fall behind.

The chosen setting is the complete trial with the highest value; ties (equal values) go to
the simpler setting (``spaces.simplicity_key``). Nothing here reads a test accuracy.

The Optuna studies live in memory (``--local``) or in the store's database (queued:
``optuna_storage_url``), so that ``optuna-dashboard`` can show them beside the runs.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna

from studio.experiments.results import RunOutcome
from studio.experiments.runners import Batch, PlannedRun
from studio.experiments.spaces import (
    axes_of,
    canonical,
    distinct_grid_size,
    grid_size,
    setting_key,
    simplicity_key,
)
from studio.experiments.spec import StudySpec

optuna.logging.set_verbosity(optuna.logging.WARNING)

PrunerFactory = Callable[[int], optuna.pruners.BasePruner]


def median_pruner(iterations: int) -> optuna.pruners.BasePruner:
    """Prune a trial below the median of the earlier ones at the same step, once two trials
    are complete and past the first half of a run (early evaluations say little)."""
    return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=iterations // 2)


class _AskTellGridSampler(optuna.samplers.GridSampler):
    """Optuna's grid sampler for an ask-and-tell loop. Its ``after_trial`` only stops the
    study once the grid is used up, which ``Study.stop`` allows inside ``study.optimize``
    alone; the tuner stops at its own trial count (never more than the grid) instead."""

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        return None


@dataclass
class TrialRecord:
    number: int
    params: dict[str, float]
    state: str  # "complete" or "pruned"
    value: float | None  # mean over the tuning seeds
    std: float | None
    seeds: int
    reused: bool = False  # a repeat of an earlier setting: not retrained


@dataclass
class Tuning:
    """The search for one (condition, method)."""

    condition: str
    noise_rate: float
    method: str
    study: optuna.Study
    n_trials: int
    sampler: str
    trials: list[TrialRecord] = field(default_factory=list)
    inflight: tuple[optuna.Trial, dict[str, float], Batch] | None = None
    chosen: dict[str, float] | None = None
    tied: list[dict[str, float]] = field(default_factory=list)  # the settings the chosen one tied with

    @property
    def done(self) -> bool:
        return self.chosen is not None

    @property
    def trained(self) -> int:
        """Trials that trained a setting (the budget counts these, not the repeats)."""
        return sum(not t.reused for t in self.trials)

    def choose(self) -> dict[str, float]:
        complete = [t for t in self.trials if t.state == "complete"]
        if not complete:
            raise RuntimeError(f"{self.condition}, {self.method}: every trial was pruned; raise the "
                               "budget or use a gentler pruner")
        best = max(t.value for t in complete)
        top = {setting_key(self.method, t.params): canonical(self.method, t.params)
               for t in complete if t.value == best}
        ordered = sorted(top.values(), key=lambda p: simplicity_key(self.method, p))
        self.chosen, self.tied = ordered[0], ordered[1:]
        return self.chosen


@dataclass
class StudyResult:
    spec: StudySpec
    tunings: list[Tuning]
    outcomes: list[RunOutcome]
    groups: dict[str, str]  # what each group holds ("tune dm r=0.2" …) by group name
    in_store: bool = False  # queued: the groups exist in the store

    def chosen(self) -> dict[tuple[str, str], dict[str, float]]:
        """(condition, method) -> the setting the final runs used ({} for untuned methods)."""
        out = {(t.condition, t.method): dict(t.chosen or {}) for t in self.tunings}
        for o in self.outcomes:
            if o.phase == "final":
                out.setdefault((o.condition, o.method), dict(o.params))
        return out


def optuna_storage_url(store_url: str) -> str:
    """Where the Optuna studies of a queued study live, beside the store's tables.

    Optuna and the store both keep their schema version in a table named ``alembic_version``,
    so they cannot share one namespace: on PostgreSQL the studies go in the schema ``optuna``
    of the same database; on SQLite (one namespace per file) in ``<file>.optuna`` beside it."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    url = make_url(store_url)
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        if database in ("", ":memory:"):
            raise ValueError("a queued study needs a database file or server; use --local for memory")
        return url.set(database=database + ".optuna").render_as_string(hide_password=False)
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE SCHEMA IF NOT EXISTS optuna"))
    finally:
        engine.dispose()
    return url.update_query_dict({"options": "-csearch_path=optuna"}).render_as_string(hide_password=False)


def _new_tuning(spec: StudySpec, condition: str, rate: float, method: str, storage: Any,
                prefix: str, index: int, pruner: optuna.pruners.BasePruner) -> Tuning:
    axes = axes_of(method)
    space = {a.param: list(a.values) for a in axes}
    sampler = _AskTellGridSampler(space, seed=index)
    distinct = distinct_grid_size(method)
    n_trials = min(spec.budget, distinct)
    repeats = "" if distinct == grid_size(method) else f" ({grid_size(method)} less repeats)"
    sampled = (f"grid: all {distinct} settings{repeats}" if n_trials == distinct
               else f"grid: {n_trials} of {distinct} settings{repeats}, drawn at random")
    name = f"{prefix}/{condition}/{method}"
    if name in optuna.get_all_study_names(storage):
        # Resuming: the search is replayed from the stored runs, trial by trial, into a new
        # study of the same name (the old one may end with a trial that was never told).
        optuna.delete_study(study_name=name, storage=storage)
    study = optuna.create_study(storage=storage, sampler=sampler, pruner=pruner, direction="maximize",
                                study_name=name)
    return Tuning(condition, rate, method, study, n_trials, sampled)


def _ask(t: Tuning, spec: StudySpec, runner: Any, group: str) -> list[RunOutcome]:
    """Start the next trial of ``t``; a repeated setting is told at once (returns [])."""
    trial = t.study.ask()
    params = {a.param: trial.suggest_categorical(a.param, list(a.values)) for a in axes_of(t.method)}
    earlier = next((r for r in t.trials
                    if r.state == "complete" and setting_key(t.method, r.params) == setting_key(t.method, params)), None)
    if earlier is not None:
        t.study.tell(trial, earlier.value)
        t.trials.append(TrialRecord(trial.number, params, "complete", earlier.value, earlier.std,
                                    earlier.seeds, reused=True))
        return []
    runs = [PlannedRun(t.method, params, t.condition, t.noise_rate, seed, "tune",
                       spec.config(t.condition, t.method, params, seed, "tune"), trial.number)
            for seed in spec.tune_seed_list()]

    def report(step: int, value: float) -> bool:
        trial.report(value, step)
        return trial.should_prune()

    t.inflight = (trial, params, runner.start(runs, group, report))
    return []


def _tell(t: Tuning, outcomes: list[RunOutcome]) -> None:
    trial, params, batch = t.inflight
    t.inflight = None
    if batch.pruned:
        t.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        t.trials.append(TrialRecord(trial.number, params, "pruned", None, None, len(outcomes)))
        return
    scores = [o.tuning_score() for o in outcomes]
    value = statistics.fmean(scores)
    trial.set_user_attr("run_ids", [o.run_id for o in outcomes if o.run_id is not None])
    t.study.tell(trial, value)
    t.trials.append(TrialRecord(trial.number, params, "complete", value,
                                statistics.pstdev(scores) if len(scores) > 1 else 0.0, len(scores)))


def run_study(spec: StudySpec, runner: Any, prefix: str, storage: Any = None,
              pruner: PrunerFactory = median_pruner,
              on_batch: Callable[[list[RunOutcome]], None] | None = None) -> StudyResult:
    """Tune every (condition, method), then train each chosen setting on the final seeds.

    ``prefix`` names the Optuna studies and the store groups (``<prefix>-tune-<method>-<condition>``
    for a search, ``<prefix>-final`` for the final runs). ``storage``: an Optuna storage (None:
    in memory)."""
    storage = storage if storage is not None else optuna.storages.InMemoryStorage()
    first = spec.methods[0]
    iterations = spec.config(spec.condition_labels()[0][0], first,
                             {a.param: a.values[0] for a in axes_of(first)}, 0, "tune").iterations
    tunings, finals, outcomes, groups = [], [], [], {f"{prefix}-final": "final runs"}
    final_group = f"{prefix}-final"

    def start_finals(condition: str, rate: float, method: str, params: dict[str, float]) -> None:
        runs = [PlannedRun(method, params, condition, rate, seed, "final",
                           spec.config(condition, method, params, seed, "final"))
                for seed in spec.final_seed_list()]
        finals.append(runner.start(runs, final_group))

    for condition, rate in spec.condition_labels():
        for method in spec.methods:
            if axes_of(method):
                tunings.append(_new_tuning(spec, condition, rate, method, storage, prefix,
                                           len(tunings), pruner(iterations)))
                groups[f"{prefix}-tune-{method}-{condition}"] = f"tuning of {method} at {condition}"
            else:
                start_finals(condition, rate, method, {})

    def collect(found: list[RunOutcome]) -> None:
        outcomes.extend(found)
        if on_batch:
            on_batch(found)

    while True:
        for t in (t for t in tunings if not t.done):
            if t.inflight is None:
                if t.trained >= t.n_trials:
                    start_finals(t.condition, t.noise_rate, t.method, t.choose())
                    continue
                _ask(t, spec, runner, f"{prefix}-tune-{t.method}-{t.condition}")
            if t.inflight is not None and (found := runner.poll(t.inflight[2])) is not None:
                _tell(t, found)
                collect(found)
        for batch in list(finals):
            if (found := runner.poll(batch)) is not None:
                finals.remove(batch)
                collect(found)
        if all(t.done for t in tunings) and not finals:
            return StudyResult(spec, tunings, outcomes, groups, hasattr(runner, "store"))
        runner.wait()


def trial_value_text(r: TrialRecord) -> str:
    if r.state != "complete" or r.value is None or math.isnan(r.value):
        return "pruned"
    return f"{r.value * 100:.2f} ± {(r.std or 0.0) * 100:.2f}" + (" (repeat, not retrained)" if r.reused else "")
