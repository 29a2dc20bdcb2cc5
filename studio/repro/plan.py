"""A preset expanded into the study machinery's planned runs (``plan``): a fixed grid of
condition × method × seed, each method with the β published for the condition, nothing
tuned. The runs train through the studies' runners: ``LocalRunner`` in this process, or
``QueuedRunner`` as one group (``submit_plan``) that ``read_group`` and ``group_outcomes``
read back. Either way each run ends as a ``RunOutcome``, so the report is the same."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dm_core.config import RunConfig, parse_config
from studio.experiments.results import RunOutcome
from studio.experiments.runners import Batch, LocalRunner, PlannedRun, QueuedRunner
from studio.repro.presets import Experiment

PHASE = "final"  # a preset's runs are all final runs: nothing is tuned


@dataclass
class Plan:
    """What to run: condition × method × seed, each with the β its method sets there."""

    experiment: Experiment
    seeds: tuple[int, ...]
    iterations: int | None = None

    def total(self) -> int:
        return sum(1 for _ in self.experiment.runs(self.seeds))

    def runs(self) -> list[PlannedRun]:
        out = []
        for cond_label, method, seed, cfg in self.experiment.runs(self.seeds):
            beta = method.beta_for(cond_label)
            params = {} if beta is None else {"beta": float(beta)}
            if method.noise_rate_param:
                params[method.noise_rate_param] = float(cfg.dataset.noise.rate)
            out.append(PlannedRun(method.label, params,
                                  cond_label, float(cfg.dataset.noise.rate), seed, PHASE,
                                  _shrink(cfg, self.iterations)))
        return out


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


def run_here(p: Plan, on_done: Callable[[PlannedRun], None] | None = None,
             device: str | None = None) -> list[RunOutcome]:
    """Train every run of ``p`` in this process (the studies' ``LocalRunner``)."""
    runner = LocalRunner(device, on_done)
    return runner.poll(runner.start(p.runs(), f"repro-{p.experiment.name}"))


# ---------------------------------------------------------------------- queued in the store
# `dm repro NAME` queues every run as one group. `dm repro NAME --report` reads the group back
# and, once every run has ended, takes the outcomes through the same QueuedRunner a study uses.

class GroupMismatch(ValueError):
    """The group's runs are not the ones this plan expects (other options, other version)."""


@dataclass
class GroupState:
    """Where a queued experiment stands, read from its group."""

    group: str
    total: int
    problems: list[str]  # runs that failed (not by diverging) or were cancelled
    done: int  # runs that ended: succeeded, or failed by diverging
    batch: Batch  # the plan's runs matched to their stored ids, in plan order
    devices: list[str] = field(default_factory=list)

    @property
    def waiting(self) -> int:
        return self.total - self.done

    @property
    def complete(self) -> bool:
        """Every run done, none failed: the report can be written."""
        return not self.problems and self.done == self.total


def submit_plan(p: Plan, store: Any, group: str | None = None) -> tuple[str, list[int]]:
    """Queue every run in one transaction as one group (``repro-<name>-<time>`` when not named)."""
    if group and store.list_runs(group=group, limit=1):
        raise ValueError(f"--group {group!r} already has runs; read it with --report --group "
                         f"{group}, or pick a new name")
    group = group or f"repro-{p.experiment.name}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
    return group, QueuedRunner(store).start(p.runs(), group).run_ids


def latest_group(store: Any, experiment: Experiment) -> str | None:
    """The most recently submitted ``repro-<name>-…`` group of this experiment, if any."""
    prefix = f"repro-{experiment.name}-"
    return next((g for g in store.groups() if g.startswith(prefix)), None)


def read_group(p: Plan, store: Any, group: str) -> GroupState:
    """Read a queued experiment back from ``group``; see ``GroupState``. Raises
    ``GroupMismatch`` when a run this plan expects is missing or was queued with another config."""
    from dm_store import RunStatus

    infos = store.list_runs(group=group)
    if not infos:
        raise GroupMismatch(f"group {group!r} has no runs (see `dm runs`)")
    by_name = {i.name: i for i in infos}
    if len(by_name) < len(infos):
        twice = sorted({i.name for i in infos if sum(j.name == i.name for j in infos) > 1})
        raise GroupMismatch(f"group {group!r} holds runs named {', '.join(twice)} more than once "
                            "(was --report run twice at the same time?); delete the extra ones "
                            "with `dm delete ID`")
    runs, ids, problems, done = p.runs(), [], [], 0
    for run in runs:
        info = by_name.get(run.config.name)
        if info is None:
            raise GroupMismatch(f"group {group!r} has no run {run.config.name!r}: was it queued "
                                "with other --seeds or --iterations? Pass the same ones as then")
        if info.config != run.config.model_dump(mode="json"):
            raise GroupMismatch(f"run {info.id} ({info.name}) in group {group!r} was queued with "
                                "another config than this plan's: pass the same --seeds and "
                                "--iterations as when it was queued")
        ids.append(info.id)
        # The store records a divergence in its own column; a diverged run is a result.
        if info.status == RunStatus.SUCCEEDED or (info.status == RunStatus.FAILED
                                                  and info.diverged_at is not None):
            done += 1
        elif info.status in (RunStatus.FAILED, RunStatus.CANCELLED):
            problems.append(f"run {info.id} ({info.name}) is {info.status}"
                            + (f": {info.error}" if info.error else "")
                            + f"; queue it again with `dm retry {info.id}`")
    return GroupState(group, len(runs), problems, done, Batch(runs, group, None, run_ids=ids),
                      sorted({i.device for i in infos if i.device}))


def group_outcomes(store: Any, state: GroupState) -> list[RunOutcome]:
    """The outcomes of a complete group, read as a study's queued runs are."""
    if not state.complete:
        raise ValueError(f"group {state.group!r}: {state.waiting} run(s) are not done yet")
    return QueuedRunner(store).poll(state.batch)
