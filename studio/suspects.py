"""A run's training examples ranked by how likely their label is wrong, from the stored
per-example statistics (``dm_core.example_stats``): what ``dm examples``, ``dm export --what
examples`` and the dashboard's Examples page show, computed once here.

Ranking by a statistic uses ``example_stats.suspicion`` (cleanlab's ``label_quality``, low =
suspect, is negated), most suspect first; ties keep the training-set order, so a ranking is
reproducible from the stored arrays with ``np.argsort(-score, kind="stable")``.

A retrain without the suspects goes through the noise kind ``file``: a ``.npy`` of one label per
example of the dataset's training set, where -1 leaves the example out (the data layer drops
it, as it drops the examples class imbalance removes). The run's annotated labels are kept for
every other example, so the retrained run is told the same labels and still knows which of
them are corrupted. The stored statistics hold the probability of each example's annotated
label only, never the model's prediction, so they justify leaving an example out but not
giving it another label.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from dm_core.example_stats import STATISTICS, detection, suspicion
from studio.entry_point import INSTALL_HINT

if TYPE_CHECKING:
    import pandas as pd

    from dm_store import Store

LABEL_QUALITY = "label_quality"
# Every statistic a snapshot may hold, in the order tables and files show them.
STATISTIC_NAMES: tuple[str, ...] = (*STATISTICS, LABEL_QUALITY)
DEFAULT_STATISTIC = "confidence"


class ExamplesUnavailable(ValueError):
    """A run's examples cannot be shown: no snapshot (yet, or at that iteration), no stored
    labels, or an unknown statistic."""


@dataclass(frozen=True)
class RunExamples:
    """One snapshot of a run's per-example statistics with the run's training labels."""

    run_id: int
    iteration: int
    snapshot: dict[str, np.ndarray]
    label: np.ndarray  # annotated (noisy) labels, as trained on
    original_label: np.ndarray  # the dataset's own (clean) labels
    corrupted: np.ndarray  # bool

    @property
    def statistics(self) -> list[str]:
        """The statistics this snapshot holds, in ``STATISTIC_NAMES`` order."""
        return [name for name in STATISTIC_NAMES if name in self.snapshot]

    def score(self, by: str) -> np.ndarray:
        """Statistic ``by`` oriented so that larger is more suspect (float64)."""
        check_statistic(by, self.statistics)
        values = self.snapshot[by]
        return -values.astype(np.float64) if by == LABEL_QUALITY else suspicion(by, values)

    def ranking(self, by: str = DEFAULT_STATISTIC) -> np.ndarray:
        """Every example's index, the most suspect by ``by`` first (ties: training order)."""
        return np.argsort(-self.score(by), kind="stable")

    def detection(self) -> dict[str, dict[str, float]]:
        """Each statistic's AUROC and precision@k at flagging the corrupted examples."""
        return detection(self.snapshot, self.corrupted)

    def frame(self) -> pd.DataFrame:
        """One row per training example: ``example`` (its index in the training set),
        ``label``, ``original_label``, ``corrupted`` and one column per statistic."""
        import pandas as pd

        columns: dict[str, Any] = {"example": np.arange(len(self.label)), "label": self.label,
                                   "original_label": self.original_label,
                                   "corrupted": self.corrupted}
        for name in self.statistics:
            values = self.snapshot[name]
            columns[name] = values.astype(np.float64) if values.dtype == np.float16 else values
        return pd.DataFrame(columns)

    def suspects(self, by: str = DEFAULT_STATISTIC, top: int | None = None) -> pd.DataFrame:
        """The rows of ``frame`` in ranking order, the first ``top`` (None: all)."""
        order = self.ranking(by)
        return self.frame().iloc[order[:top] if top is not None else order].reset_index(drop=True)


def check_statistic(name: str, available: list[str] | tuple[str, ...] = STATISTIC_NAMES) -> None:
    """``ExamplesUnavailable`` unless ``name`` is one of ``available``. The label quality is
    cleanlab's, computed only where cleanlab is installed (the studio extra), so its absence
    from a snapshot says where to install it.

    >>> check_statistic("label_quality", ["confidence", "margin"])
    Traceback (most recent call last):
    studio.suspects.ExamplesUnavailable: this snapshot has no label_quality: cleanlab was not installed where the run trained (pip install 'dm-studio[studio]' there); choose one of: confidence, margin
    """
    if name in available:
        return
    choose = f"choose one of: {', '.join(available)}"
    if name == LABEL_QUALITY:
        raise ExamplesUnavailable(f"this snapshot has no {LABEL_QUALITY}: cleanlab was not installed "
                                  f"where the run trained ({INSTALL_HINT} there); {choose}")
    raise ExamplesUnavailable(f"unknown statistic {name!r}; {choose}")


def load_examples(store: Store, run_id: int, iteration: int | None = None) -> RunExamples:
    """The snapshot at or before ``iteration`` (None: the latest) of a run, with its labels.
    ``RunNotFound`` for an unknown run; ``ExamplesUnavailable`` when there is nothing to show."""
    store.get_run(run_id)
    found = store.examples(run_id, iteration)
    if found is None:
        stored = store.example_iterations(run_id)
        if not stored:
            raise ExamplesUnavailable(f"run {run_id} has no per-example snapshot yet (one is stored "
                                      "at each evaluation)")
        raise ExamplesUnavailable(f"run {run_id} has no per-example snapshot at or before iteration "
                                  f"{iteration}; snapshots at: {', '.join(map(str, stored))}")
    labels = store.labels(run_id)
    if labels is None:
        raise ExamplesUnavailable(f"run {run_id} stored no training labels")
    at, snapshot = found
    clean, noisy, corrupted = labels
    if any(len(v) != len(noisy) for v in snapshot.values()):
        raise ExamplesUnavailable(f"run {run_id}: the snapshot at iteration {at} does not hold one "
                                  f"value per training example ({len(noisy)})")
    return RunExamples(run_id, at, snapshot, noisy, clean, corrupted.astype(bool))


def detection_over_training(store: Store, run_id: int) -> pd.DataFrame:
    """Each snapshot's AUROC per statistic: column ``iteration``, then one per statistic."""
    import pandas as pd

    labels = store.labels(run_id)
    rows = []
    for iteration in store.example_iterations(run_id):
        found = store.examples(run_id, iteration)
        if labels is None or found is None:
            continue
        rows.append({"iteration": found[0], **detection(found[1], labels[2])["auroc"]})
    return pd.DataFrame(rows, columns=["iteration", *STATISTIC_NAMES]).dropna(axis=1, how="all")


def retrain_labels(examples: RunExamples, drop: np.ndarray, config: dict[str, Any]) -> np.ndarray:
    """A labels file for the noise kind ``file`` that trains on the run's annotated labels without
    the examples ``drop`` (indices in the run's training set): -1 at those, and at whatever the
    run itself left out.

    A labels file numbers the dataset's whole training set. The run's training set maps onto it
    when the run held out no validation split and removed no example itself, or removed them
    through a ``.npy`` labels file (read again here); otherwise ``ExamplesUnavailable``."""
    dataset = config.get("dataset", {})
    noise = dataset.get("noise", {})
    if dataset.get("val_fraction"):
        raise ExamplesUnavailable(
            f"run {examples.run_id} held out a validation split (dataset.val_fraction="
            f"{dataset['val_fraction']}), so its training examples are not numbered as the dataset's "
            "training set that a labels file is; write labels for runs without one")
    n = len(examples.label)
    if noise.get("kind") == "imbalance":
        raise ExamplesUnavailable(f"run {examples.run_id} removed examples by class imbalance, so its "
                                  "training examples cannot be placed in a labels file")
    if noise.get("kind") == "file" and str(noise.get("path", "")).lower().endswith(".npy"):
        from dm_core.data_dirs import read_npy

        previous = read_npy(_confined(noise["path"]), "dataset.noise.path")
        positions = np.flatnonzero(previous >= 0)
        full = np.full(len(previous), -1, dtype=np.int64)
    else:
        positions = np.arange(n)
        full = np.empty(n, dtype=np.int64)
    if len(positions) != n:
        raise ExamplesUnavailable(f"run {examples.run_id} trained on {n} examples but its labels file "
                                  f"keeps {len(positions)}; it changed since the run")
    full[positions] = examples.label
    full[positions[np.asarray(drop, dtype=np.int64)]] = -1
    return full


def _confined(path: str) -> Any:
    from dm_core.data_dirs import confine_data_path

    return confine_data_path(path, "dataset.noise.path")
