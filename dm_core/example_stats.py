r"""Per-example training statistics, streamed from each batch's own forward pass in O(N).

For every training example :math:`i`, over the steps whose batch held it (annotated label
:math:`y_i`, :math:`p_i` the probability the model gave it, :math:`z` the logits):

- ``confidence``: the mean of :math:`p_i` (Dataset Cartography, Swayamdipta et al. 2020);
- ``variability``: its standard deviation (population, over the times seen);
- ``aum``: the mean margin :math:`z_{y_i} - \max_{k \ne y_i} z_k` (Area Under the Margin,
  Pleiss et al. 2020);
- ``forgetting``: how often the example went from predicted as :math:`y_i` to not (Toneva et
  al. 2019);
- ``first_learned``: the first iteration at which it was predicted as :math:`y_i` (-1: never);
- ``last_p``: :math:`p_i` the last time it was seen;
- ``share``: the mean share of its batch's gradient the scheme gave it (its weight over the
  batch's total weight; ``dm_core.losses.LossStats.weight``).

Everything lives on the run's device as sums (a count, :math:`\sum p`, :math:`\sum p^2`,
:math:`\sum` margin, :math:`\sum` share), scattered with ``index_add_``: no extra forward pass,
no device→host copy per step, and an index met twice in one batch counts twice. The state is
saved with each checkpoint, so a resumed run's statistics equal an uninterrupted one's.

>>> stats = ExampleStatistics(3)
>>> stats.update(torch.tensor([0, 2]), p=torch.tensor([0.9, 0.2]), margin=torch.tensor([2.0, -1.0]),
...              correct=torch.tensor([True, False]), share=torch.tensor([0.3, 0.7]), iteration=1)
>>> stats.update(torch.tensor([0, 1]), p=torch.tensor([0.5, 0.6]), margin=torch.tensor([0.0, 0.5]),
...              correct=torch.tensor([False, True]), share=torch.tensor([0.5, 0.5]), iteration=2)
>>> snap = stats.snapshot()
>>> snap["confidence"].tolist(), snap["forgetting"].tolist(), snap["first_learned"].tolist()
([0.7001953125, 0.60009765625, 0.199951171875], [1, 0, 0], [1, 2, -1])
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import torch
from torch import Tensor

# Each statistic of a snapshot, how it is stored, and which end of it flags an example as
# suspect (a likely wrong label): "low" — a small value is suspect; "high" — a large one.
STATISTICS: dict[str, tuple[str, str]] = {
    "confidence": ("float16", "low"),
    # Mislabelled examples tend to be "hard to learn": consistently low p, so low variability.
    "variability": ("float16", "low"),
    "aum": ("float16", "low"),
    "forgetting": ("uint16", "high"),  # counted up to 65,535
    "first_learned": ("int32", "high"),  # never learned (-1) counts as the latest
    "last_p": ("float16", "low"),
    "share": ("float16", "low"),
}


class ExampleStatistics:
    """The running sums of every training example's statistics (see the module docstring)."""

    _STATE = ("count", "sum_p", "sum_p2", "sum_margin", "sum_share", "forgetting", "correct",
              "first_learned", "last_p")

    def __init__(self, num_examples: int, device: torch.device | str = "cpu") -> None:
        zeros = lambda dtype: torch.zeros(num_examples, dtype=dtype, device=device)  # noqa: E731
        self.count = zeros(torch.int32)
        self.sum_p, self.sum_p2 = zeros(torch.float32), zeros(torch.float32)
        self.sum_margin, self.sum_share = zeros(torch.float32), zeros(torch.float32)
        self.forgetting = zeros(torch.int32)
        self.correct = zeros(torch.bool)
        self.first_learned = torch.full((num_examples,), -1, dtype=torch.int64, device=device)
        self.last_p = zeros(torch.float32)

    @torch.no_grad()
    def update(self, index: Tensor, p: Tensor, margin: Tensor, correct: Tensor, share: Tensor,
               iteration: int) -> None:
        """Add one batch: ``index`` (its examples' indices in the training set) and, per
        example, ``p``, the ``margin``, whether it was predicted as its label (``correct``) and
        its ``share`` of the batch's gradient."""
        p, margin, share = p.detach().float(), margin.detach().float(), share.detach().float()
        self.count.index_add_(0, index, torch.ones_like(index, dtype=torch.int32))
        self.sum_p.index_add_(0, index, p)
        self.sum_p2.index_add_(0, index, p * p)
        self.sum_margin.index_add_(0, index, margin)
        self.sum_share.index_add_(0, index, share)
        forgot = self.correct[index] & ~correct
        self.forgetting.index_add_(0, index, forgot.to(torch.int32))
        self.correct[index] = correct
        learned_now = correct & (self.first_learned[index] < 0)
        self.first_learned[index[learned_now]] = iteration
        self.last_p[index] = p

    def snapshot(self) -> dict[str, np.ndarray]:
        """Every statistic as a compact array (``STATISTICS``' dtypes): 16 bytes an example
        (18 with cleanlab's score), so about 0.9 MB for 50,000. An example not seen yet has 0 everywhere but
        ``first_learned`` (-1)."""
        n = self.count.clamp(min=1).float()
        mean = self.sum_p / n
        variance = (self.sum_p2 / n - mean * mean).clamp(min=0.0)
        values = {"confidence": mean, "variability": variance.sqrt(), "aum": self.sum_margin / n,
                  "forgetting": self.forgetting.clamp(max=65_535), "first_learned": self.first_learned,
                  "last_p": self.last_p, "share": self.sum_share / n}
        return {k: v.cpu().numpy().astype(STATISTICS[k][0]) for k, v in values.items()}

    def state_dict(self) -> dict[str, Tensor]:
        return {k: getattr(self, k).clone() for k in self._STATE}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        for k in self._STATE:
            setattr(self, k, state[k].to(getattr(self, k).device))


def batch_example_inputs(logits: Tensor, labels: Tensor, weight: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The margin :math:`z_y - \\max_{k \\ne y} z_k`, whether the example is predicted as its
    label, and its share of the batch's weight, from one batch's logits (``(N, C)``), labels and
    per-example weights (NaN shares, of a batch whose weights are all 0, become 0)."""
    z = logits.detach().float()
    z_y = z.gather(1, labels[:, None]).squeeze(1)
    others = z.scatter(1, labels[:, None], float("-inf"))
    margin = z_y - others.max(dim=1).values
    weight = weight.detach().float()
    share = torch.nan_to_num(weight / weight.sum(), nan=0.0)
    return margin, margin > 0, share


def label_quality(labels: Tensor, probabilities: Tensor) -> np.ndarray | None:
    """cleanlab's label-quality score of every example (``cleanlab.rank.get_label_quality_scores``,
    low = likely mislabelled) from the model's predicted probabilities, as float16; None when
    cleanlab is not installed. The probabilities are the model's own on its training data (not
    held out), as a run has them."""
    try:
        from cleanlab.rank import get_label_quality_scores
    except ImportError:
        return None
    probs = probabilities.detach().double().cpu().numpy()
    probs /= probs.sum(axis=1, keepdims=True)
    scores = get_label_quality_scores(labels.detach().cpu().numpy().astype(np.int64), probs)
    return np.asarray(scores, dtype=np.float16)


def pack(snapshot: dict[str, np.ndarray]) -> bytes:
    """A snapshot as one compact blob (numpy's .npz, uncompressed; no pickles)."""
    buffer = io.BytesIO()
    np.savez(buffer, **snapshot)
    return buffer.getvalue()


def unpack(blob: bytes) -> dict[str, np.ndarray]:
    """The arrays of ``pack``; refuses anything that would need unpickling."""
    with np.load(io.BytesIO(blob), allow_pickle=False) as arrays:
        return {k: arrays[k] for k in arrays.files}


def suspicion(name: str, values: np.ndarray) -> np.ndarray:
    """``values`` of statistic ``name`` as a score where larger means more suspect (float64);
    an example never learned counts as learned after every other."""
    v = values.astype(np.float64)
    if name == "first_learned":
        v = np.where(v < 0, np.inf, v)
        v = np.where(np.isinf(v), (np.nanmax(v[np.isfinite(v)]) + 1) if np.isfinite(v).any() else 0.0, v)
    return v if STATISTICS[name][1] == "high" else -v


def detection(snapshot: dict[str, Any], corrupted: np.ndarray) -> dict[str, dict[str, float]]:
    """Each statistic's AUROC and precision@k (k = the number of corrupted examples) at flagging
    the ``corrupted`` ones; NaN when there is nothing to tell apart (no corrupted example, or
    only corrupted ones). scikit-learn computes the AUROC (ties count half)."""
    from sklearn.metrics import roc_auc_score

    corrupted = np.asarray(corrupted, dtype=bool)
    k = int(corrupted.sum())
    out: dict[str, dict[str, float]] = {"auroc": {}, "precision_at_k": {}}
    for name, values in snapshot.items():
        if name not in STATISTICS and name != "label_quality":
            continue
        score = -np.asarray(values, dtype=np.float64) if name == "label_quality" else suspicion(name, values)
        if k == 0 or k == len(corrupted):
            out["auroc"][name] = out["precision_at_k"][name] = float("nan")
            continue
        out["auroc"][name] = float(roc_auc_score(corrupted, score))
        top = np.argsort(-score, kind="stable")[:k]
        out["precision_at_k"][name] = float(corrupted[top].mean())
    return out
