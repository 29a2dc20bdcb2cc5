"""A preset expanded into runs (``plan``), run here (``run_local``) or queued and read back
from its group (``submit_plan``, ``read_group``, ``group_results``): one ``RunResult`` per
run either way."""

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
    """One run of a plan: a condition, a method, a seed and the config it trains with."""

    condition: str
    method: Method
    seed: int
    beta: float | None  # the β it trains with; None for a loss without one
    config: RunConfig


@dataclass
class Plan:
    """What to run: condition × method × seed, each with the β its method sets there."""

    experiment: Experiment
    seeds: tuple[int, ...]
    iterations: int | None = None

    def total(self) -> int:
        return sum(1 for _ in self.experiment.runs(self.seeds))

    def runs(self) -> list[PlannedRun]:
        return [PlannedRun(cond_label, method, seed, method.beta_for(cond_label),
                           _shrink(cfg, self.iterations))
                for cond_label, method, seed, cfg in self.experiment.runs(self.seeds)]


def plan(experiment: Experiment, seeds: tuple[int, ...] | None = None, iterations: int | None = None) -> Plan:
    """Expand an experiment into its runs; ``iterations`` shrinks every run (smoke tests)."""
    return Plan(experiment, tuple(seeds or experiment.seeds), iterations)


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
    """A run's row: its summary and the late means of p_i (``late``: the scalars the
    loop reported after ``late_after(iterations)``, one dict per iteration)."""
    late = list(late) if summary.get("diverged_at") is None else []
    return RunResult(run.condition, run.method.label, run.seed, run.beta, summary,
                     late_mean(v["p_noisy_mean"] for v in late if "p_noisy_mean" in v),
                     late_mean(v["p_clean_mean"] for v in late if "p_clean_mean" in v))


# ---------------------------------------------------------------------- running locally

def run_local(p: Plan, on_done: Callable[[str], None] | None = None,
              device: str | None = None) -> list[RunResult]:
    """Run every run of ``p`` in this process."""
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

    return [run_result(run, *one(run.config)) for run in p.runs()]


# ---------------------------------------------------------------------- queued in the store
# `dm repro NAME` queues every run as one group. `dm repro NAME --report` reads the group back:
# once every run is done it builds the report from the stored summaries and scalars, through
# the same functions as above.

_DIVERGED = re.compile(r"^diverged at iteration (\d+):")


class GroupMismatch(ValueError):
    """The group's runs are not the ones this plan expects (other options, other version)."""


@dataclass
class GroupState:
    """Where a queued experiment stands, read from its group."""

    group: str
    total: int
    problems: list[str]  # runs that failed (not by diverging) or were cancelled
    done: list[tuple[PlannedRun, int, dict[str, Any]]]  # finished runs: (run, id, summary)
    devices: list[str] = field(default_factory=list)

    @property
    def waiting(self) -> int:
        return self.total - len(self.done)

    @property
    def complete(self) -> bool:
        """Every run done, none failed: the report can be written."""
        return not self.problems and len(self.done) == self.total


def submit_plan(p: Plan, store: Any, group: str | None = None) -> tuple[str, list[int]]:
    """Queue every run in one transaction as one group (``repro-<name>-<time>`` when not named)."""
    configs = [r.config for r in p.runs()]
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

    def stored(run: PlannedRun):
        info = by_name.get(run.config.name)
        if info is None:
            raise GroupMismatch(f"group {group!r} has no run {run.config.name!r}: was it queued "
                                "with other --seeds or --iterations? Pass the same ones as then")
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

    runs = p.runs()
    done = []
    for run in runs:
        info = stored(run)
        if (summary := summary_of(info)) is not None:
            done.append((run, info.id, summary))
    return GroupState(group, len(runs), problems, done, sorted({i.device for i in infos if i.device}))


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


