"""Model selection without looking at test data.

A run is evaluated every ``eval_every`` iterations. Its "selected" evaluation is the one with
the best accuracy on the trusted clean validation split (``val_acc``); the test accuracy
reported for it (``test_acc_selected``) is what a practitioner who never saw the test set
would get by early stopping on validation accuracy. The maximum of the test accuracy over
training (the paper's "best" column) picks the iteration with the test set itself and is
therefore optimistic: it is kept only for comparison with published tables, and labelled so.

Ties between evaluations go to the earliest (the first time the model reached that
validation accuracy), so the choice never depends on how long a run went on after it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = ["SelectedEvaluation", "select_evaluation"]


@dataclass(frozen=True)
class SelectedEvaluation:
    """The evaluation chosen on validation accuracy: its iteration and its two accuracies."""

    iteration: int
    val_acc: float
    test_acc: float | None


def select_evaluation(evals: Iterable[tuple[int, Mapping[str, float]]]) -> SelectedEvaluation | None:
    """The evaluation with the highest finite ``val_acc``, the earliest on ties.

    ``evals`` is ``(iteration, values)`` pairs in any order, ``values`` as the training loop
    reports them (``dm_core.events.EvalEvent``). None when no evaluation has a validation
    accuracy (the run held out no clean split).

    >>> select_evaluation([(100, {"val_acc": 0.8, "test_acc": 0.7}),
    ...                    (200, {"val_acc": 0.9, "test_acc": 0.75}),
    ...                    (300, {"val_acc": 0.9, "test_acc": 0.80})])
    SelectedEvaluation(iteration=200, val_acc=0.9, test_acc=0.75)
    >>> select_evaluation([(100, {"test_acc": 0.7})]) is None
    True
    """
    best: SelectedEvaluation | None = None
    for iteration, values in sorted(evals, key=lambda item: item[0]):
        val = values.get("val_acc")
        if val is None or not math.isfinite(float(val)):
            continue
        if best is None or float(val) > best.val_acc:
            test = values.get("test_acc")
            best = SelectedEvaluation(int(iteration), float(val),
                                      None if test is None else float(test))
    return best
