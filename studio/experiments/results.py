"""One run of a study as a row: the same numbers whether it trained here or on a worker.

Three test accuracies per run, never used to choose anything:

- ``test_acc_final``: at the last iteration;
- ``test_acc_selected``: at the evaluation with the best validation accuracy (earliest on
  ties; ``dm_core.selection.select_evaluation``), what early stopping on the trusted clean
  split would give;
- ``test_acc_best``: the maximum over training, the paper's "best" column. It picks the
  iteration with the test set itself, so it is optimistic, and reported only as such.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dm_core.selection import select_evaluation

CSV_COLUMNS = ("method", "params", "condition", "noise_rate", "seed", "phase", "trial",
               "val_acc_selected", "selected_iteration", "test_acc_final", "test_acc_selected",
               "test_acc_best", "train_acc_corrupted", "train_acc_intact", "fit_corrupted_subset",
               "p_noisy_late", "p_clean_late", "diverged", "pruned", "run_id")


def late_after(iterations: int) -> int:
    """The "late" window is the iterations after this one: the last 10% of training."""
    return int(iterations * 0.9)


def late_mean(values: Iterable[float]) -> float:
    kept = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return float(np.mean(kept)) if kept else math.nan


@dataclass
class RunOutcome:
    """What one finished (or diverged, or pruned) run of a study left behind."""

    method: str
    params: dict[str, float]
    condition: str
    noise_rate: float
    seed: int
    phase: str  # "tune" or "final"
    evals: list[tuple[int, dict[str, float]]]
    summary: dict[str, Any] | None  # None: diverged or pruned before the end
    diverged_at: int | None = None
    pruned: bool = False
    trial: int | None = None
    run_id: int | None = None
    late: list[dict[str, float]] = field(default_factory=list)  # scalars in the late window

    def row(self) -> dict[str, Any]:
        chosen = select_evaluation(self.evals)
        summary = self.summary or {}

        def num(key: str) -> float:
            v = summary.get(key)
            return math.nan if v is None else float(v)

        return {
            "method": self.method, "params": json.dumps(self.params, sort_keys=True),
            "condition": self.condition, "noise_rate": self.noise_rate, "seed": self.seed,
            "phase": self.phase, "trial": self.trial,
            "val_acc_selected": chosen.val_acc if chosen else math.nan,
            "selected_iteration": chosen.iteration if chosen else None,
            "test_acc_final": num("test_acc_final"),
            "test_acc_selected": chosen.test_acc if chosen and chosen.test_acc is not None else math.nan,
            "test_acc_best": num("test_acc_best"),
            "train_acc_corrupted": num("train_acc_corrupted"),
            "train_acc_intact": num("train_acc_intact"),
            "fit_corrupted_subset": num("fit_corrupted_subset"),
            "p_noisy_late": late_mean(v.get("p_noisy_mean") for v in self.late),
            "p_clean_late": late_mean(v.get("p_clean_mean") for v in self.late),
            "diverged": self.diverged_at is not None, "pruned": self.pruned,
            "run_id": self.run_id,
        }

    def iterations_reached(self) -> int:
        """The iterations this run trained: all of them when it finished (the summary's count),
        up to the divergence, or, for a pruned run, up to its last evaluation (what the
        outcome keeps of where it stopped)."""
        if self.summary is not None and self.summary.get("iterations") is not None:
            return int(self.summary["iterations"])
        if self.diverged_at is not None:
            return int(self.diverged_at)
        return max((iteration for iteration, _ in self.evals), default=0)

    def tuning_score(self) -> float:
        """This seed's share of a trial's value: the best validation accuracy over training;
        0 for a run that diverged (a setting that blows up is not one to choose)."""
        if self.diverged_at is not None:
            return 0.0
        chosen = select_evaluation(self.evals)
        return chosen.val_acc if chosen else 0.0


def eval_pairs(rows: Iterable[Mapping[str, Any]]) -> list[tuple[int, dict[str, float]]]:
    """Stored evaluation rows (``Store.evals(...).to_dict("records")``) as (iteration, values)."""
    out = []
    for r in rows:
        values = {k: float(v) for k, v in r.items()
                  if k != "iteration" and isinstance(v, int | float) and math.isfinite(float(v))}
        out.append((int(r["iteration"]), values))
    return out
