"""What the training loop reports. The loop knows nothing of databases or UIs: it calls
``on_event(event)`` with one of these, and a sink (the worker's store writer, the CLI's
progress bar, a test's list) decides what to do with it.

Iterations count optimisation steps from 1. A checkpoint at iteration k holds the state
after step k; a run resumed from it continues with step k + 1, so a sink that resumes must
drop whatever it recorded after k (``ResumeEvent``).
"""

from __future__ import annotations

import math
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
    """Per-iteration scalars: loss, ce, lr, batch_acc, p_clean_mean, p_noisy_mean, weight_mean,
    weight_var (the emphasis variance), ess_fraction and max_share (how concentrated the
    batch's weights are: ``dm_core.losses.concentration``) and grad_norm (the gradient's
    L2 norm before clipping). A value that is not finite (a mean over an empty group) is
    omitted."""

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
    # The evaluation with the best validation accuracy (dm_core.selection.select_evaluation):
    # what early stopping without the test set gives. None without a validation split.
    val_acc_selected: float | None = None
    test_acc_selected: float | None = None
    selected_iteration: int | None = None
    relabel: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in (
            "test_acc_final", "test_acc_best", "train_acc_corrupted", "train_acc_intact",
            "fit_corrupted_subset", "actual_noise_rate", "iterations", "seconds", "device",
            "val_acc_best", "val_acc_final", "val_acc_selected", "test_acc_selected",
            "selected_iteration", "relabel")}
        out.update(self.extra)
        return out


@dataclass(frozen=True)
class ExamplesEvent:
    """At every evaluation: a snapshot of each training example's statistics so far
    (``dm_core.example_stats``: confidence, variability, aum, forgetting, first_learned,
    last_p, share, and cleanlab's ``label_quality`` of the model's predictions at this
    evaluation when cleanlab is installed), one compact array each, in training-set order."""

    iteration: int
    arrays: dict[str, np.ndarray]


Event = (StartEvent | ScalarsEvent | HistogramEvent | EvalEvent | ExamplesEvent | CheckpointEvent
         | ResumeEvent)


class TrainingInterrupted(Exception):
    """Raised by ``train`` when ``should_stop`` asked it to stop; a checkpoint was written."""

    def __init__(self, iteration: int, reason: str, checkpoint: str | None) -> None:
        super().__init__(f"training stopped at iteration {iteration}: {reason}")
        self.iteration = iteration
        self.reason = reason
        self.checkpoint = checkpoint


class TrainingDiverged(RuntimeError):
    """The loss or the logits stopped being finite (or exploded) at ``iteration``.

    ``figures`` holds what was measured (see ``describe_divergence``), so that a report or a
    page can say why from numbers rather than from the message text; the message is
    ``describe_divergence(iteration, figures)``."""

    def __init__(self, iteration: int, message: str,
                 figures: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.iteration = iteration
        self.figures = dict(figures or {})


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def describe_divergence(iteration: int, figures: dict[str, Any]) -> str:
    """The message of a ``TrainingDiverged``: the figures, in words, and nothing else.

    ``figures`` (every key optional but ``loss``, ``max_abs_logit`` and ``max_logit``):
    ``loss``, ``max_abs_logit``, ``grad_norm``, ``ess_fraction``, ``max_share`` and ``lr`` of
    the diverged step; ``max_logit`` (the config's limit), ``batch_size``,
    ``clip_grad_norm``, ``clip_relative``, ``clip_relative_after`` and ``warmup`` (config
    facts); ``loss_eps`` (the margin cap, for the
    DN losses); ``previous``: ``iteration``, ``ess_fraction``, ``max_share``, ``grad_norm``
    and ``lr`` of the last logged step.

    >>> print(describe_divergence(212, {"loss": 3.2, "max_abs_logit": 1.2e4, "max_logit": 1e4,
    ...     "grad_norm": 950.0, "lr": 0.1, "previous": {"iteration": 211, "ess_fraction": 0.06,
    ...     "max_share": 0.41, "grad_norm": 38.2, "lr": 0.1}}))
    diverged at iteration 212: the logits exploded (max |logit| 1.2e+04 > max_logit 10000); \
gradient norm 950. Just before (iteration 211): one example carried 0.41 of the batch's \
weight (ESS 6% of the batch), gradient norm 38.2, lr 0.1.
    """
    loss, logit = figures.get("loss"), figures.get("max_abs_logit")
    finite_loss = loss is not None and math.isfinite(loss)
    if not finite_loss:
        what = f"the loss is not finite ({loss}; max |logit| {_fmt(logit)})"
    else:
        what = (f"the logits exploded (max |logit| {_fmt(logit)} > "
                f"max_logit {figures.get('max_logit', float('nan')):g})")
    parts = [f"diverged at iteration {iteration}: {what}"]
    if figures.get("grad_norm") is not None:
        parts.append(f"gradient norm {_fmt(figures['grad_norm'])}")
    text = "; ".join(parts) + "."
    previous = figures.get("previous")
    if previous:
        said = []
        if previous.get("max_share") is not None:
            said.append(f"one example carried {previous['max_share']:.2g} of the batch's weight"
                        + (f" (ESS {previous['ess_fraction']:.0%} of the batch)"
                           if previous.get("ess_fraction") is not None else ""))
        if previous.get("grad_norm") is not None:
            said.append(f"gradient norm {_fmt(previous['grad_norm'])}")
        if previous.get("lr") is not None:
            said.append(f"lr {previous['lr']:g}")
        if said:
            text += f" Just before (iteration {previous['iteration']}): " + ", ".join(said) + "."
    facts = []
    if figures.get("clip_grad_norm"):
        facts.append(f"gradients clipped to norm {figures['clip_grad_norm']:g}")
    if figures.get("clip_relative"):
        after = figures.get("clip_relative_after")
        facts.append(f"gradients clipped to {figures['clip_relative']:g}× their running norm"
                     + (f" after the first {after} steps" if after else ""))
    if figures.get("warmup"):
        facts.append(f"warm-up {figures['warmup']} iterations")
    if figures.get("loss_eps") == 0:
        facts.append("loss.eps = 0: the margin cap is off, so fitted examples keep their "
                     "share of the batch's gradient")
    if facts:
        text += " Config: " + "; ".join(facts) + "."
    return text
