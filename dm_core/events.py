"""What the training loop reports. The loop knows nothing of databases or UIs: it calls
``on_event(event)`` with one of these, and a sink (the worker's store writer, the CLI's
progress bar, a test's list) decides what to do with it.

Iterations count optimisation steps from 1. A checkpoint at iteration k holds the state
after step k; a run resumed from it continues with step k + 1, so a sink that resumes must
drop whatever it recorded after k (``ResumeEvent``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class StartEvent:
    """Sent once per (re)start, before the first step. Carries the corrupted labels so a run
    can be re-analysed later; ``resumed_from`` is the checkpoint iteration or 0."""

    total_iterations: int
    device: str
    resumed_from: int
    num_train: int
    num_classes: int
    actual_noise_rate: float
    clean_labels: np.ndarray  # int64 (N,)
    noisy_labels: np.ndarray  # int64 (N,)
    is_noisy: np.ndarray  # bool (N,)
    phase: str = "train"  # "train", or "relabel" for the label-correction retraining


@dataclass(frozen=True)
class ScalarsEvent:
    """Per-iteration scalars: loss, lr, batch_acc, p_clean_mean, p_noisy_mean, weight_mean,
    weight_var (the emphasis variance). A mean over an empty group is NaN-free: omitted."""

    iteration: int
    values: dict[str, float]


@dataclass(frozen=True)
class HistogramEvent:
    """Per-iteration counts of the batch's ``p_i`` on ``bins`` equal bins of [0, 1]."""

    iteration: int
    clean: np.ndarray  # int32 (bins,)
    noisy: np.ndarray  # int32 (bins,)


@dataclass(frozen=True)
class EvalEvent:
    """Every ``eval_every`` iterations and at the end: test_acc, val_acc (if a trusted split),
    train_acc_corrupted, train_acc_intact, fit_corrupted_subset."""

    iteration: int
    values: dict[str, float]


@dataclass(frozen=True)
class CheckpointEvent:
    """A checkpoint with the full state after ``iteration`` was written to ``path``."""

    iteration: int
    path: str


@dataclass(frozen=True)
class ResumeEvent:
    """The run continues from a checkpoint: anything recorded after ``iteration`` is void."""

    iteration: int


@dataclass(frozen=True)
class RunSummary:
    """What a finished run reports (``dm train --json`` prints ``to_dict()``)."""

    test_acc_final: float
    test_acc_best: float
    train_acc_corrupted: float
    train_acc_intact: float
    fit_corrupted_subset: float
    actual_noise_rate: float
    iterations: int
    seconds: float
    device: str
    val_acc_best: float | None = None
    val_acc_final: float | None = None
    relabel: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in (
            "test_acc_final", "test_acc_best", "train_acc_corrupted", "train_acc_intact",
            "fit_corrupted_subset", "actual_noise_rate", "iterations", "seconds", "device",
            "val_acc_best", "val_acc_final", "relabel")}
        out.update(self.extra)
        return out


Event = StartEvent | ScalarsEvent | HistogramEvent | EvalEvent | CheckpointEvent | ResumeEvent


class TrainingInterrupted(Exception):
    """Raised by ``train`` when ``should_stop`` asked it to stop; a checkpoint was written."""

    def __init__(self, iteration: int, reason: str, checkpoint: str | None) -> None:
        super().__init__(f"training stopped at iteration {iteration}: {reason}")
        self.iteration = iteration
        self.reason = reason
        self.checkpoint = checkpoint


class TrainingDiverged(RuntimeError):
    """The loss or the logits stopped being finite (or exploded) at ``iteration``.

    ``figures`` holds what was measured: the diverged step's loss and largest logit, and the
    emphasis concentration of the iterations just before it, so that a report or a page can
    say why from numbers rather than from the message text."""

    def __init__(self, iteration: int, message: str,
                 figures: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.iteration = iteration
        self.figures = dict(figures or {})
