"""A preset expanded into runs (``plan``), run here (``run_local``) or queued and read back
from its group (``submit_plan``, ``read_group``, ``group_results``): one ``RunResult`` per
final run either way."""

from __future__ import annotations

import math
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from dm_core.config import RunConfig, parse_config
from studio.repro.presets import Experiment, Method
from studio.repro.tables import COLUMNS

# ---------------------------------------------------------------------- planning

class PlannedRun(NamedTuple):
    """One run of a plan: a β-tuning run (on the clean split) or a final run."""

    condition: str
    method: Method
    seed: int
    beta: float | None  # the β it trains with; None for a loss without one
    tuning: bool
    config: RunConfig


@dataclass
class Plan:
    """What to run: the β-tuning runs first, then the final runs with the chosen β."""

    experiment: Experiment
    seeds: tuple[int, ...]
    iterations: int | None = None
    tuning: list[PlannedRun] = field(default_factory=list)

    def total(self) -> int:
        return len(self.tuning) + sum(1 for _ in self.experiment.runs(self.seeds))

    def finals(self, chosen: dict[tuple[str, str], float] | None = None,
               tuned: bool | None = None) -> list[PlannedRun]:
        """The final runs, condition × method × seed. A method that tunes β needs its β in
        ``chosen`` (keyed by (condition, method label)). ``tuned=False``: only the methods
        that tune nothing (they can start at once); ``tuned=True``: only those that do."""
        out = []
        for cond_label, method, seed, cfg in self.experiment.runs(self.seeds):
            if tuned is not None and bool(method.tune_beta) != tuned:
                continue
            beta = method.beta_for(cond_label)
            if method.tune_beta:
                if chosen is None or (cond_label, method.label) not in chosen:
                    raise ValueError(f"{cond_label}, {method.label}: β is not chosen yet "
                                     "(its tuning runs must finish first)")
                beta = chosen[cond_label, method.label]
                overrides = dict(self.experiment.conditions)[cond_label]
                cfg = self.experiment.config(cond_label, overrides, method, seed, beta)
            out.append(PlannedRun(cond_label, method, seed, beta, False,
                                  _shrink(cfg, self.iterations)))
        return out


def plan(experiment: Experiment, seeds: tuple[int, ...] | None = None, iterations: int | None = None) -> Plan:
    """Expand an experiment into its runs; ``iterations`` shrinks every run (smoke tests)."""
    p = Plan(experiment, tuple(seeds or experiment.seeds), iterations)
    for cond_label, overrides in experiment.conditions:
        for method in experiment.methods:
            for beta in method.tune_beta:
                cfg = experiment.config(cond_label, overrides, method, p.seeds[0], beta, tuning=True)
                p.tuning.append(PlannedRun(cond_label, method, p.seeds[0], beta, True,
                                           _shrink(cfg, iterations)))
    return p


def _shrink(cfg: RunConfig, iterations: int | None) -> RunConfig:
    if iterations is None:
        return cfg
    data = cfg.model_dump(mode="json")
    data["iterations"] = iterations
    data["eval_every"] = max(1, min(data["eval_every"], iterations))
    data["schedule"]["milestones"] = [m for m in data["schedule"]["milestones"] if m <= iterations]
    return parse_config(data)


# ---------------------------------------------------------------------- one run's result
# Shared by the local runner and the store reader, so both report the same numbers.

@dataclass
class RunResult:
    condition: str
    method: str
    seed: int
    beta: float | None
    summary: dict[str, Any]
    p_noisy_late: float | None  # mean p_i of corrupted examples over the last 10% of steps
    p_clean_late: float | None


def late_after(iterations: int) -> int:
    """The "late" window is the iterations after this one: the last 10% of training."""
    return int(iterations * 0.9)


def late_mean(values: Iterable[float]) -> float | None:
    """Mean of the values the loop reported in the late window (None: it reported none)."""
    kept = [float(v) for v in values]
    return float(np.mean(kept)) if kept else None


def diverged_summary(iteration: int) -> dict[str, Any]:
    """A diverged run is a result too: it scores nothing (NaN) and the report says so."""
    summary: dict[str, Any] = {k: math.nan for k in (*COLUMNS, "fit_corrupted_subset", "val_acc_best",
                                                     "val_acc_final")}
    summary["diverged_at"] = iteration
    return summary


def run_result(run: PlannedRun, summary: dict[str, Any], late: Iterable[dict[str, float]]) -> RunResult:
    """A final run's row: its summary and the late means of p_i (``late``: the scalars the
    loop reported after ``late_after(iterations)``, one dict per iteration)."""
    late = list(late) if summary.get("diverged_at") is None else []
    return RunResult(run.condition, run.method.label, run.seed, run.beta, summary,
                     late_mean(v["p_noisy_mean"] for v in late if "p_noisy_mean" in v),
                     late_mean(v["p_clean_mean"] for v in late if "p_clean_mean" in v))


def choose_betas(tuned: Iterable[tuple[PlannedRun, dict[str, Any]]]) -> dict[tuple[str, str], float]:
    """β per (condition, method): the final accuracy on the trusted clean validation split
    (never the test set); a diverged tuning run scores -1; ties go to the larger β.

    Final, not best-during-training: the tables report final test accuracy, and a β whose
    model peaks early and then memorises the noisy labels must not win on its peak.
    Summaries stored before ``val_acc_final`` existed fall back to ``val_acc_best``.

    >>> from types import SimpleNamespace as R
    >>> choose_betas([(R(condition="r=0.4", method=R(label="DM"), beta=2.0),
    ...                {"val_acc_best": 0.95, "val_acc_final": 0.70}),
    ...               (R(condition="r=0.4", method=R(label="DM"), beta=12.0),
    ...                {"val_acc_best": 0.90, "val_acc_final": 0.88})])
    {('r=0.4', 'DM'): 12.0}
    """
    scores: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for run, summary in tuned:
        val = summary.get("val_acc_final", summary.get("val_acc_best"))
        score = -1.0 if val is None or math.isnan(val) else float(val)
        scores.setdefault((run.condition, run.method.label), []).append((score, float(run.beta)))
    return {k: max(v)[1] for k, v in scores.items()}


# ---------------------------------------------------------------------- running locally

def run_local(p: Plan, on_done: Callable[[str], None] | None = None,
              device: str | None = None) -> tuple[list[RunResult], dict[tuple[str, str], float]]:
    """Run every run of ``p`` in this process. Returns results and the β chosen per (condition, method)."""
    from dm_core.events import ScalarsEvent, TrainingDiverged
    from dm_core.train import train

    def one(cfg: RunConfig) -> tuple[dict[str, Any], list[dict[str, float]]]:
        if device:
            cfg = cfg.model_copy(update={"device": device})
        tail: list[dict[str, float]] = []
        keep_after = late_after(cfg.iterations)
        try:
            summary = train(cfg, on_event=lambda e: tail.append(e.values)
                            if isinstance(e, ScalarsEvent) and e.iteration > keep_after else None).to_dict()
        except TrainingDiverged as err:
            summary = diverged_summary(err.iteration)
        if on_done:
            on_done(cfg.name)
        return summary, tail

    chosen = choose_betas((run, one(run.config)[0]) for run in p.tuning)
    results = [run_result(run, *one(run.config)) for run in p.finals(chosen)]
    return results, chosen


# ---------------------------------------------------------------------- queued in the store
# `dm repro NAME` queues the tuning runs and the final runs of the methods that tune nothing,
# as one group. `dm repro NAME --report` reads the group back: once the tuning runs are done
# it queues the remaining final runs with the chosen β (same group); once every run is done it
# builds the report from the stored summaries and scalars, through the same functions as above.

_DIVERGED = re.compile(r"^diverged at iteration (\d+):")


class GroupMismatch(ValueError):
    """The group's runs are not the ones this plan expects (other options, other version)."""


@dataclass
class GroupState:
    """Where a queued experiment stands, read from its group."""

    group: str
    tuning_total: int
    tuning_done: int
    finals_total: int
    finals_done: int
    chosen: dict[tuple[str, str], float] | None  # None until every tuning run is done
    to_submit: list[PlannedRun]  # final runs whose β is now chosen and that are not queued yet
    problems: list[str]  # runs that failed (not by diverging) or were cancelled
    done: list[tuple[PlannedRun, int, dict[str, Any]]]  # finished final runs: (run, id, summary)
    devices: list[str] = field(default_factory=list)

    @property
    def waiting(self) -> int:
        return self.tuning_total - self.tuning_done + self.finals_total - self.finals_done

    @property
    def complete(self) -> bool:
        """Every run done, none failed: the report can be written."""
        return (self.chosen is not None and not self.to_submit and not self.problems
                and self.finals_done == self.finals_total)


def submit_plan(p: Plan, store: Any, group: str | None = None) -> tuple[str, list[int]]:
    """Queue what can start now: every tuning run and the final runs of methods without β
    tuning, in one transaction as one group (``repro-<name>-<time>`` when not named)."""
    configs = [r.config for r in p.tuning] + [r.config for r in p.finals(tuned=False)]
    if group and store.list_runs(group=group, limit=1):
        raise ValueError(f"--group {group!r} already has runs; read it with --report --group "
                         f"{group}, or pick a new name")
    group = group or f"repro-{p.experiment.name}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
    return group, store.submit(configs, group=group).run_ids


def latest_group(store: Any, experiment: Experiment) -> str | None:
    """The most recently submitted ``repro-<name>-…`` group of this experiment, if any."""
    prefix = f"repro-{experiment.name}-"
    return next((g for g in store.groups() if g.startswith(prefix)), None)


def read_group(p: Plan, store: Any, group: str) -> GroupState:
    """Read a queued experiment back from ``group``; see ``GroupState``. Raises
    ``GroupMismatch`` when a run this plan expects is missing or was queued with another config."""
    from dm_core.store import RunStatus

    infos = store.list_runs(group=group)
    if not infos:
        raise GroupMismatch(f"group {group!r} has no runs (see `dm runs`)")
    by_name = {i.name: i for i in infos}
    if len(by_name) < len(infos):
        twice = sorted({i.name for i in infos if sum(j.name == i.name for j in infos) > 1})
        raise GroupMismatch(f"group {group!r} holds runs named {', '.join(twice)} more than once "
                            "(was --report run twice at the same time?); delete the extra ones "
                            "with `dm delete ID`")
    problems: list[str] = []

    def stored(run: PlannedRun, required: bool = True):
        info = by_name.get(run.config.name)
        if info is None:
            if required:
                raise GroupMismatch(f"group {group!r} has no run {run.config.name!r}: was it queued "
                                    "with other --seeds or --iterations? Pass the same ones as then")
            return None
        if info.config != run.config.model_dump(mode="json"):
            raise GroupMismatch(f"run {info.id} ({info.name}) in group {group!r} was queued with "
                                "another config than this plan's: pass the same --seeds and "
                                "--iterations as when it was queued")
        return info

    def summary_of(info) -> dict[str, Any] | None:
        """The run's summary once it is done; None while queued or running."""
        if info.status == RunStatus.SUCCEEDED:
            summary = dict(info.summary or {})
            for k in (*COLUMNS, "fit_corrupted_subset"):  # stored JSON has null for NaN
                if summary.get(k) is None:
                    summary[k] = math.nan
            return summary
        diverged = _DIVERGED.match(info.error or "")
        if info.status == RunStatus.FAILED and diverged:
            return diverged_summary(int(diverged.group(1)))
        if info.status in (RunStatus.FAILED, RunStatus.CANCELLED):
            problems.append(f"run {info.id} ({info.name}) is {info.status}"
                            + (f": {info.error}" if info.error else "")
                            + f"; queue it again with `dm retry {info.id}`")
        return None

    tuned = [(run, summary_of(stored(run))) for run in p.tuning]
    tuning_done = sum(s is not None for _, s in tuned)
    chosen = choose_betas(tuned) if tuning_done == len(tuned) else None
    finals = p.finals(chosen) if chosen is not None else p.finals(tuned=False)
    to_submit, done = [], []
    for run in finals:
        info = stored(run, required=not run.method.tune_beta)
        if info is None:
            to_submit.append(run)
        elif (summary := summary_of(info)) is not None:
            done.append((run, info.id, summary))
    return GroupState(group, len(tuned), tuning_done, sum(1 for _ in p.experiment.runs(p.seeds)),
                      len(done), chosen, to_submit, problems, done,
                      sorted({i.device for i in infos if i.device}))


def group_results(store: Any, state: GroupState,
                  on_read: Callable[[str], None] | None = None) -> list[RunResult]:
    """The report's rows from a complete group: stored summaries and late scalars."""
    if not state.complete:
        raise ValueError(f"group {state.group!r}: {state.waiting} run(s) are not done yet")
    results = []
    for run, run_id, summary in state.done:
        late = store.scalars(run_id, after=late_after(run.config.iterations))
        rows = [{k: v for k, v in row.items() if isinstance(v, float) and not math.isnan(v)}
                for row in late.to_dict("records")]
        results.append(run_result(run, summary, rows))
        if on_read:
            on_read(run.config.name)
    return results


