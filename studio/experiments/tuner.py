"""The search: one Optuna study per (condition, method), its trials the study's tuning runs.

A trial is a setting of the method's axes (``spaces``), trained on each tuning seed with the
trusted clean validation split held out; its value is the mean over those seeds of the best
validation accuracy during training (a diverged seed counts 0).

The budget, ``spec.budget``, is the number of different settings each (condition, method)
search trains. A method whose grid holds fewer different settings (``spaces.distinct_settings``)
tries its whole grid, in an order Optuna's grid sampler draws; the methods' budgets are then
not equal, and the report says how many settings each one tried. A larger grid is searched:
first ``random_start_size`` settings drawn at random (all different), then Optuna's TPE
proposes the rest from the values seen so far.

Every search has its own seed, ``search_seed``: a stable hash (SHA-256, not Python's ``hash``,
which changes with every interpreter) of the study's ``seed`` and the condition's and the
method's names. The order of the study file does not move it, another study seed tries other
settings, and the search is deterministic given the seed and the results it is told, so
``dm study --resume`` replays it.

A setting proposed again, or one that trains the same loss as an earlier one
(``spaces.canonical``: DM with β = 0 is uniform weighting for every λ), is not retrained: the
trial is told the value (or the pruned state) the setting already has, and it does not count
against the budget. TPE may keep proposing the settings it likes best; after ``MAX_REPEATS``
such proposals in a row, the next trial is a setting not tried yet, drawn with the search's
seed, so a search always ends.

The pruner (``median_pruner``, ``PRUNER_TEXT``) reads the validation accuracy as the runs
report it and stops a trial below the median of the completed trials at the same step, but
only once half of the search's trials (at least 2) have trained to the end, and only past the
first half of a run; where a trial's seeds train one after another (in this process), only
once its first seed has ended and its second is half done, so no setting is stopped on one
seed.

The chosen setting is the complete trial with the highest value; ties (equal values) go to
the simpler setting (``spaces.simplicity_key``). Nothing here reads a test accuracy.

The Optuna studies live in memory (``--local``) or in the store's database (queued:
``optuna_storage_url``), so that ``optuna-dashboard`` can show them beside the runs.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna

from studio.experiments.results import RunOutcome
from studio.experiments.runners import Batch, PlannedRun
from studio.experiments.spaces import (
    Setting,
    axes_of,
    canonical,
    distinct_settings,
    grid_size,
    setting_key,
    simplicity_key,
)
from studio.experiments.spec import StudySpec

optuna.logging.set_verbosity(optuna.logging.WARNING)

# (the first step at which a trial may be stopped, the trials of the search) -> a pruner
PrunerFactory = Callable[[int, int], optuna.pruners.BasePruner]

# Proposals in a row of settings already tried before a search draws an untried one itself.
MAX_REPEATS = 3

PRUNER_TEXT = ("median: a trial whose validation accuracy falls below the median of the "
               "completed trials at the same step is stopped, but only once half of its "
               "search's trials (at least 2) have trained to the end, and only past the first "
               "half of a run; where a trial's seeds train one after another (--local), only "
               "once its first seed has ended and its second is half done, so no setting is "
               "stopped on one seed")


class _MedianOnceHalfDone(optuna.pruners.BasePruner):
    """Optuna's median pruner, silent until ``startup`` trials have trained to the end.

    Optuna's own ``n_startup_trials`` counts every complete trial, and a repeated setting is
    told complete without training; this counts only trials that reported what they
    trained."""

    def __init__(self, startup: int, warmup_steps: int) -> None:
        self.startup = startup
        self._median = optuna.pruners.MedianPruner(n_startup_trials=0, n_warmup_steps=warmup_steps)

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        trained = sum(1 for t in complete if t.intermediate_values)
        return trained >= self.startup and self._median.prune(study, trial)


def median_pruner(warmup_steps: int, trials: int) -> optuna.pruners.BasePruner:
    """The rule of ``PRUNER_TEXT``: no pruning before ``warmup_steps`` nor before half of the
    search's ``trials`` (at least 2) have trained to the end."""
    return _MedianOnceHalfDone(max(2, math.ceil(trials / 2)), warmup_steps)


def search_seed(study_seed: int, condition: str, method: str) -> int:
    """The seed of the search of (``condition``, ``method``): the same in every process and
    whatever the order of the study file.

    >>> search_seed(0, "r=0.4", "dm")
    466090581
    """
    digest = hashlib.sha256(json.dumps([study_seed, condition, method]).encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def random_start_size(trials: int) -> int:
    """How many of a search's ``trials`` are drawn at random before TPE proposes."""
    return min(trials, max(2, trials // 3))


def _model_sampler(seed: int, startup: int) -> optuna.samplers.BaseSampler:
    """The sampler that proposes after the random start: TPE, seeded by the search."""
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup)


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
    iterations: int = 0  # trained by its runs (a pruned run: up to its last evaluation)


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
    grid: int = 0  # different settings in the method's grid
    seed: int = 0  # the search's seed (search_seed)
    rng: random.Random = field(default_factory=random.Random)  # draws the untried settings
    repeats_in_a_row: int = 0
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

    @property
    def completed(self) -> int:
        """Settings trained to the end."""
        return sum(not t.reused and t.state == "complete" for t in self.trials)

    @property
    def pruned(self) -> int:
        """Settings stopped by the pruner."""
        return sum(not t.reused and t.state == "pruned" for t in self.trials)

    @property
    def repeats(self) -> int:
        """Proposals of a setting already tried: told its value, not retrained."""
        return sum(t.reused for t in self.trials)

    @property
    def iterations(self) -> int:
        """Iterations the search's runs trained, summed over the runs."""
        return sum(t.iterations for t in self.trials)

    def tried(self, params: Setting) -> TrialRecord | None:
        """The trial that trained ``params`` or a setting training the same loss, if any."""
        key = setting_key(self.method, params)
        return next((r for r in self.trials if not r.reused and setting_key(self.method, r.params) == key), None)

    def untried(self) -> Setting:
        """A setting of the grid no trial has trained, drawn with the search's seed."""
        return self.rng.choice([p for p in distinct_settings(self.method) if self.tried(p) is None])

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
                prefix: str, pruner: optuna.pruners.BasePruner) -> Tuning:
    axes = axes_of(method)
    seed = search_seed(spec.seed, condition, method)
    distinct = distinct_settings(method)
    n_trials = min(spec.budget, len(distinct))
    repeats = "" if len(distinct) == grid_size(method) else f" ({grid_size(method)} less repeats)"
    rng = random.Random(seed)
    start: list[Setting] = []
    if n_trials == len(distinct):
        sampler: optuna.samplers.BaseSampler = _AskTellGridSampler({a.param: list(a.values) for a in axes},
                                                                   seed=seed)
        described = f"grid: all {len(distinct)} settings{repeats}, in random order"
    else:
        start = rng.sample(distinct, random_start_size(n_trials))
        sampler = _model_sampler(seed, len(start))
        described = (f"{n_trials} of {len(distinct)} settings{repeats}: {len(start)} drawn at random, "
                     f"then {n_trials - len(start)} proposed by TPE")
    name = f"{prefix}/{condition}/{method}"
    if name in optuna.get_all_study_names(storage):
        # Resuming: the search is replayed from the stored runs, trial by trial, into a new
        # study of the same name (the old one may end with a trial that was never told).
        optuna.delete_study(study_name=name, storage=storage)
    study = optuna.create_study(storage=storage, sampler=sampler, pruner=pruner, direction="maximize",
                                study_name=name)
    for params in start:
        study.enqueue_trial(params)
    return Tuning(condition, rate, method, study, n_trials, f"{described} (search seed {seed})",
                  grid=len(distinct), seed=seed, rng=rng)


def _ask(t: Tuning, spec: StudySpec, runner: Any, group: str) -> list[RunOutcome]:
    """Start the next trial of ``t`` that trains a setting not tried yet; each proposal of a
    setting already tried is told at once, and after ``MAX_REPEATS`` of them in a row the
    search draws an untried setting itself."""
    while True:
        if t.repeats_in_a_row >= MAX_REPEATS:
            t.study.enqueue_trial(t.untried())
        trial = t.study.ask()
        params = {a.param: trial.suggest_categorical(a.param, list(a.values)) for a in axes_of(t.method)}
        earlier = t.tried(params)
        if earlier is None:
            break
        if earlier.state == "complete":
            t.study.tell(trial, earlier.value)
        else:
            t.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        t.trials.append(TrialRecord(trial.number, params, earlier.state, earlier.value, earlier.std,
                                    earlier.seeds, reused=True))
        t.repeats_in_a_row += 1
    t.repeats_in_a_row = 0
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
    iterations = sum(o.iterations_reached() for o in outcomes)
    if batch.pruned:
        t.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        t.trials.append(TrialRecord(trial.number, params, "pruned", None, None, len(outcomes),
                                    iterations=iterations))
        return
    scores = [o.tuning_score() for o in outcomes]
    value = statistics.fmean(scores)
    trial.set_user_attr("run_ids", [o.run_id for o in outcomes if o.run_id is not None])
    t.study.tell(trial, value)
    t.trials.append(TrialRecord(trial.number, params, "complete", value,
                                statistics.pstdev(scores) if len(scores) > 1 else 0.0, len(scores),
                                iterations=iterations))


def run_study(spec: StudySpec, runner: Any, prefix: str, storage: Any = None,
              pruner: PrunerFactory = median_pruner,
              on_batch: Callable[[list[RunOutcome]], None] | None = None) -> StudyResult:
    """Tune every (condition, method), then train each chosen setting on the final seeds.

    ``prefix`` names the Optuna studies and the store groups (``<prefix>-tune-<method>-<condition>``
    for a search, ``<prefix>-final`` for the final runs). ``storage``: an Optuna storage (None:
    in memory). ``pruner``: called with the first step a trial may be stopped at (past half a
    run; where ``runner.sequential_seeds``, past half of a trial's second seed) and the
    search's number of trials."""
    storage = storage if storage is not None else optuna.storages.InMemoryStorage()
    first = spec.methods[0]
    iterations = spec.config(spec.condition_labels()[0][0], first,
                             {a.param: a.values[0] for a in axes_of(first)}, 0, "tune").iterations
    # A runner that trains a trial's seeds one after another reports seed k's iteration i at
    # step k × iterations + i; one that trains them side by side reports their mean at step i.
    warmup = iterations + iterations // 2 if getattr(runner, "sequential_seeds", False) else iterations // 2
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
                trials = min(spec.budget, len(distinct_settings(method)))
                tunings.append(_new_tuning(spec, condition, rate, method, storage, prefix,
                                           pruner(warmup, trials)))
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
        return "pruned" + (" (repeat, not retrained)" if r.reused else "")
    return f"{r.value * 100:.2f} ± {(r.std or 0.0) * 100:.2f}" + (" (repeat, not retrained)" if r.reused else "")
