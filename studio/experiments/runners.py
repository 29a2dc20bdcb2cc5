"""Where a study's runs train: in this process (``LocalRunner``) or queued for the workers
(``QueuedRunner``). Both take a batch of runs (a trial's tuning seeds, or a method's final
seeds), feed the pruner the validation accuracy as it comes, and return one ``RunOutcome``
per run, so the tuner and the report do not know which one trained them.

A batch's pruner feed is ``report(step, value) -> prune?``. In this process the seeds of a
trial train one after the other, so each seed reports its own validation accuracy at step
``seed position × iterations + iteration``; queued, they train side by side, and the mean over
the seeds is reported at each iteration every seed has reached. A pruned batch stops: in this
process through ``train``'s ``should_stop``; queued through ``Store.cancel``, the path a user's
cancel takes, and its runs end as cancelled.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dm_core.config import RunConfig
from studio.experiments.results import RunOutcome, eval_pairs, late_after

Report = Callable[[int, float], bool]


class StudyRunFailed(RuntimeError):
    """A run of the study failed for another reason than diverging, or was cancelled by
    someone else than the pruner: the study cannot go on without it."""


@dataclass(frozen=True)
class PlannedRun:
    method: str
    params: dict[str, float]
    condition: str
    noise_rate: float
    seed: int
    phase: str
    config: RunConfig
    trial: int | None = None

    def outcome(self, **kwargs: Any) -> RunOutcome:
        return RunOutcome(self.method, dict(self.params), self.condition, self.noise_rate, self.seed,
                          self.phase, trial=self.trial, **kwargs)


@dataclass
class Batch:
    runs: list[PlannedRun]
    group: str
    report: Report | None
    run_ids: list[int] = field(default_factory=list)
    reported: int = 0  # queued: the last iteration fed to the pruner
    pruned: bool = False


class LocalRunner:
    """Trains each batch in this process when it is polled, one seed after another."""

    sequential_seeds = True  # the tuner lets the pruner judge a trial only past its first seed

    def __init__(self, device: str | None = None, on_done: Callable[[PlannedRun], None] | None = None) -> None:
        self.device = device
        self.on_done = on_done

    def start(self, runs: list[PlannedRun], group: str, report: Report | None = None) -> Batch:
        return Batch(list(runs), group, report)

    def poll(self, batch: Batch) -> list[RunOutcome] | None:
        out = []
        for position, run in enumerate(batch.runs):
            if batch.pruned:
                break
            out.append(self._train(run, batch, position))
            if self.on_done:
                self.on_done(run)
        return out

    def _train(self, run: PlannedRun, batch: Batch, position: int) -> RunOutcome:
        from dm_core.events import EvalEvent, ScalarsEvent, TrainingDiverged, TrainingInterrupted
        from dm_core.train import train

        cfg = run.config if not self.device else run.config.model_copy(update={"device": self.device})
        evals: list[tuple[int, dict[str, float]]] = []
        late: list[dict[str, float]] = []
        keep_after = late_after(cfg.iterations)

        def on_event(event: Any) -> None:
            if isinstance(event, ScalarsEvent) and event.iteration > keep_after:
                late.append(dict(event.values))
            elif isinstance(event, EvalEvent):
                evals.append((event.iteration, dict(event.values)))
                val = event.values.get("val_acc")
                if batch.report is not None and val is not None and not batch.pruned:
                    batch.pruned = batch.report(position * cfg.iterations + event.iteration, float(val))

        try:
            summary = train(cfg, on_event=on_event,
                            should_stop=lambda: "pruned" if batch.pruned else None).to_dict()
        except TrainingDiverged as err:
            return run.outcome(evals=evals, summary=None, diverged_at=err.iteration)
        except TrainingInterrupted:
            return run.outcome(evals=evals, summary=None, pruned=True)
        return run.outcome(evals=evals, summary=summary, late=late)

    def wait(self) -> None:
        """Nothing to wait for: ``poll`` trains the batch before it returns."""


def config_key(config: dict[str, Any]) -> str:
    """A run config as stored (``model_dump(mode="json")``), as one comparable string."""
    return json.dumps(config, sort_keys=True)


class QueuedRunner:
    """Queues each batch in the store as part of ``group``; workers train it.

    With ``reuse`` (resuming a study whose driving process stopped), a planned run whose
    config is already in ``group`` is not queued again: the batch takes the stored run, ended
    or not. The tuner replays its choices from the stored results (its sampler is seeded and
    its pruner reads the same evaluations), so it plans the same runs in the same groups, and
    only what was never queued is queued now. A run whose config changed (an edited study
    file) matches nothing and is queued afresh."""

    sequential_seeds = False  # a batch's seeds train side by side; the pruner reads their mean

    def __init__(self, store: Any, poll_seconds: float = 2.0, reuse: bool = False) -> None:
        self.store = store
        self.poll_seconds = poll_seconds
        self.reuse = reuse
        self.reused = 0  # runs taken from the store instead of queued

    def start(self, runs: list[PlannedRun], group: str, report: Report | None = None) -> Batch:
        stored = ({config_key(info.config): info.id for info in self.store.list_runs(group=group)}
                  if self.reuse else {})
        found = [stored.get(config_key(r.config.model_dump(mode="json"))) for r in runs]
        missing = [r.config for r, run_id in zip(runs, found, strict=True) if run_id is None]
        new_ids = iter(self.store.submit(missing, group=group).run_ids if missing else [])
        self.reused += sum(run_id is not None for run_id in found)
        ids = [run_id if run_id is not None else next(new_ids) for run_id in found]
        return Batch(list(runs), group, report, run_ids=ids)

    def poll(self, batch: Batch) -> list[RunOutcome] | None:
        """The outcomes once every run of the batch has ended; None while any is queued or
        running (after feeding the pruner what the runs have evaluated so far)."""
        from dm_store import RunStatus

        infos = [self.store.get_run(i) for i in batch.run_ids]
        ended = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)
        if batch.report is not None and not batch.pruned:
            self._feed(batch)
            if batch.pruned:
                for info in infos:
                    if info.status not in ended:
                        self.store.cancel(info.id)  # the normal cancel path
                return None
        if not all(i.status in ended for i in infos):
            return None
        return [self._outcome(run, info, batch) for run, info in zip(batch.runs, infos, strict=True)]

    def _feed(self, batch: Batch) -> None:
        """Report the mean validation accuracy over the batch's runs at each iteration every
        one of them has evaluated and that was not reported yet."""
        per_run = [{it: v.get("val_acc") for it, v in eval_pairs(self.store.evals(i).to_dict("records"))}
                   for i in batch.run_ids]
        common = sorted(set.intersection(*(set(k for k, v in r.items() if v is not None) for r in per_run)))
        for it in (i for i in common if i > batch.reported):
            batch.reported = it
            if batch.report(it, sum(r[it] for r in per_run) / len(per_run)):
                batch.pruned = True
                return

    def _outcome(self, run: PlannedRun, info: Any, batch: Batch) -> RunOutcome:
        from dm_store import RunStatus

        evals = eval_pairs(self.store.evals(info.id).to_dict("records"))
        if info.status == RunStatus.SUCCEEDED:
            tail = self.store.scalars(info.id, after=late_after(run.config.iterations))
            late = [{k: v for k, v in row.items() if isinstance(v, float)} for row in tail.to_dict("records")]
            return run.outcome(evals=evals, summary=dict(info.summary or {}), late=late, run_id=info.id)
        if info.status == RunStatus.FAILED and info.diverged_at is not None:
            return run.outcome(evals=evals, summary=None, diverged_at=info.diverged_at, run_id=info.id)
        if info.status == RunStatus.CANCELLED and batch.pruned:
            return run.outcome(evals=evals, summary=None, pruned=True, run_id=info.id)
        raise StudyRunFailed(f"run {info.id} ({info.name}) is {info.status}"
                             + (f": {info.error}" if info.error else "")
                             + f"; queue it again with `dm retry {info.id}` and go on with the study's "
                             "command plus --resume PREFIX (the prefix it printed): its other runs are kept")

    def wait(self) -> None:
        time.sleep(self.poll_seconds)
