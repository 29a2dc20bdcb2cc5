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

Everything lives on the run's device. The sums (a count, :math:`\sum p`, :math:`\sum p^2`,
:math:`\sum` margin, :math:`\sum` share) are the rows of one ``(5, N)`` tensor, added to with a
single ``index_add_``; forgetting, ``first_learned``, ``last_p`` and whether the example was last
predicted right are kept beside it. No extra forward pass, no device→host copy per step, and an
index met twice in one batch counts twice, in the batch's order.

A step costs the loop almost nothing: ``update`` only queues references to the batch's
indices, logits, labels, p and weights. Every ``flush_rows`` queued examples (and before a
snapshot or a ``state_dict``) the queue is folded into the state at once, as one vectorised
pass: the margins of all its rows, each batch's shares, one ``index_add_`` for the sums, one
stable sort by example for the forgetting events (each example's rows in training order),
and a scatter of the earliest and the latest row for ``first_learned``, ``last_p`` and the
correct flag. A kernel launch costs a few microseconds whatever its size, which on a small
model's millisecond step is what the statistics cost; folding many steps in one pass pays
those launches once per ``flush_rows`` examples rather than once per step. The queue holds
at most ``flush_rows`` + one batch's rows (their logits included), whatever N.

The state is saved with each checkpoint (``state_dict``: the queue folded in first, so a
resumed run's statistics equal an uninterrupted one's); ``load_state_dict`` also reads the
layout before the sums were one tensor (one tensor per sum, no ``version``).

>>> stats = ExampleStatistics(3)
>>> stats.update(torch.tensor([0, 2]), logits=torch.tensor([[2.0, 0.0], [1.0, 0.0]]),
...              labels=torch.tensor([0, 1]), p=torch.tensor([0.9, 0.2]),
...              weight=torch.tensor([3.0, 7.0]), iteration=1)
>>> stats.update(torch.tensor([0, 1]), logits=torch.tensor([[0.0, 0.0], [0.0, 0.5]]),
...              labels=torch.tensor([0, 1]), p=torch.tensor([0.5, 0.6]),
...              weight=torch.tensor([1.0, 1.0]), iteration=2)
>>> snap = stats.snapshot()
>>> snap["confidence"].tolist(), snap["forgetting"].tolist(), snap["first_learned"].tolist()
([0.7001953125, 0.60009765625, 0.199951171875], [1, 0, 0], [1, 2, -1])
>>> snap["aum"].tolist(), snap["share"].tolist()
([1.0, 0.5, -1.0], [0.39990234375, 0.5, 0.7001953125])
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

STATE_VERSION = 2  # 2: the sums in one (5, N) tensor; 1 (no "version" key): one tensor per sum
SUMS = ("count", "sum_p", "sum_p2", "sum_margin", "sum_share")  # the rows of ``sums``
FLUSH_ROWS = 4096  # queued examples folded in at once: 32 batches of 128
_NEVER = torch.iinfo(torch.int64).max  # "not learned in these rows", for the minimum


class ExampleStatistics:
    """The running sums of every training example's statistics (see the module docstring)."""

    _KEPT = ("forgetting", "correct", "first_learned", "last_p")

    def __init__(self, num_examples: int, device: torch.device | str = "cpu",
                 flush_rows: int = FLUSH_ROWS) -> None:
        if flush_rows < 1:
            raise ValueError(f"flush_rows must be a positive number of examples, got {flush_rows}")
        self.num_examples, self.flush_rows = num_examples, flush_rows
        # Rows of SUMS; (5, N) rather than (N, 5): index_add_ along dim 1 adds a column per
        # index, several times faster on the CPU than a row of 5 along dim 0.
        self.sums = torch.zeros(len(SUMS), num_examples, dtype=torch.float32, device=device)
        self.forgetting = torch.zeros(num_examples, dtype=torch.int32, device=device)
        self.correct = torch.zeros(num_examples, dtype=torch.bool, device=device)
        self.first_learned = torch.full((num_examples,), -1, dtype=torch.int64, device=device)
        self.last_p = torch.zeros(num_examples, dtype=torch.float32, device=device)
        self._queue: list[tuple[Tensor, Tensor, Tensor, Tensor, Tensor, int]] = []
        self._queued_rows = 0

    @property
    def queued_rows(self) -> int:
        """Examples queued and not folded in yet (at most ``flush_rows`` + one batch)."""
        return self._queued_rows

    @torch.no_grad()
    def update(self, index: Tensor, logits: Tensor, labels: Tensor, p: Tensor, weight: Tensor,
               iteration: int) -> None:
        """Add one batch: ``index`` (its examples' indices in the training set), its
        ``logits`` (``(B, C)``), the ``labels`` it was trained on, and per example ``p`` and
        the ``weight`` the scheme gave it (``dm_core.losses.LossStats``). Queued, not
        computed: the tensors must not be changed in place afterwards (the loop's are fresh
        every step)."""
        self._queue.append((index, logits.detach(), labels, p.detach(), weight.detach(), iteration))
        self._queued_rows += len(index)
        if self._queued_rows >= self.flush_rows:
            self.flush()

    @torch.no_grad()
    def flush(self) -> None:
        """Fold the queued batches into the state, in training order (see the module docstring)."""
        if not self._queue:
            return
        queue, self._queue, self._queued_rows = self._queue, [], 0
        device = self.sums.device
        index = torch.cat([q[0] for q in queue])
        logits, labels = torch.cat([q[1] for q in queue]).float(), torch.cat([q[2] for q in queue])
        p, weight = torch.cat([q[3] for q in queue]).float(), torch.cat([q[4] for q in queue]).float()
        rows = len(index)  # sizes given to repeat_interleave: no host sync on a GPU
        sizes = torch.tensor([len(q[0]) for q in queue], device=device)
        batch = torch.repeat_interleave(torch.arange(len(queue), device=device), sizes, output_size=rows)
        iteration = torch.repeat_interleave(torch.tensor([q[5] for q in queue], dtype=torch.int64,
                                                         device=device), sizes, output_size=rows)
        margin = _margins(logits, labels)
        correct = margin > 0
        batch_weight = torch.zeros(len(queue), device=device).index_add_(0, batch, weight)
        share = torch.nan_to_num(weight / batch_weight.index_select(0, batch), nan=0.0)  # all 0: 0
        self.sums.index_add_(1, index, torch.stack([torch.ones_like(p), p, p * p, margin, share]))

        # Forgetting: each example's rows in training order (a stable sort keeps the order of
        # equal indices), each row's "before" is the row above it or, for an example's first
        # row here, the state's correct flag.
        by_example, order = torch.sort(index, stable=True)
        now = correct.index_select(0, order)
        first_row = torch.ones_like(now)
        first_row[1:] = by_example[1:] != by_example[:-1]
        before = torch.where(first_row, self.correct.index_select(0, by_example), torch.roll(now, 1))
        self.forgetting.index_add_(0, by_example, (before & ~now).to(torch.int32))

        # The earliest iteration at which each example was right, for those never right before;
        # the latest row of each example for last_p and the correct flag. O(N), no host sync.
        earliest = torch.full_like(self.first_learned, _NEVER).scatter_reduce_(
            0, index, torch.where(correct, iteration, _NEVER), "amin")
        self.first_learned = torch.where((self.first_learned < 0) & (earliest != _NEVER),
                                         earliest, self.first_learned)
        latest = torch.full_like(self.first_learned, -1).scatter_reduce_(
            0, index, torch.arange(rows, device=device), "amax")
        seen, row = latest >= 0, latest.clamp(min=0)
        self.last_p = torch.where(seen, p.index_select(0, row), self.last_p)
        self.correct = torch.where(seen, correct.index_select(0, row), self.correct)

    def snapshot(self) -> dict[str, np.ndarray]:
        """Every statistic as a compact array (``STATISTICS``' dtypes): 16 bytes an example
        (18 with cleanlab's score), so about 0.9 MB for 50,000. An example not seen yet has 0 everywhere but
        ``first_learned`` (-1)."""
        self.flush()
        count, sum_p, sum_p2, sum_margin, sum_share = self.sums
        n = count.clamp(min=1)
        mean = sum_p / n
        variance = (sum_p2 / n - mean * mean).clamp(min=0.0)
        values = {"confidence": mean, "variability": variance.sqrt(), "aum": sum_margin / n,
                  "forgetting": self.forgetting.clamp(max=65_535), "first_learned": self.first_learned,
                  "last_p": self.last_p, "share": sum_share / n}
        return {k: v.cpu().numpy().astype(STATISTICS[k][0]) for k, v in values.items()}

    def state_dict(self) -> dict[str, Any]:
        self.flush()
        return {"version": STATE_VERSION, "sums": self.sums.clone(),
                **{k: getattr(self, k).clone() for k in self._KEPT}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Load a ``state_dict`` of this version or of version 1 (no ``version`` key: one
        tensor per sum, ``count`` an int32). Anything queued is dropped."""
        device = self.sums.device
        version = state.get("version", 1)
        if version == STATE_VERSION:
            sums = state["sums"]
        elif version == 1:
            sums = torch.stack([state[k].to(torch.float32) for k in SUMS])
        else:
            raise ValueError(f"example statistics state version {version!r} is not one of 1, "
                             f"{STATE_VERSION} (a checkpoint written by a newer version?)")
        if tuple(sums.shape) != (len(SUMS), self.num_examples):
            raise ValueError(f"example statistics state holds {tuple(sums.shape)} sums, expected "
                             f"{(len(SUMS), self.num_examples)} (one column per training example)")
        self.sums = sums.to(device=device, dtype=torch.float32)
        for k in self._KEPT:
            setattr(self, k, state[k].to(device=device, dtype=getattr(self, k).dtype))
        self._queue, self._queued_rows = [], 0


def _margins(logits: Tensor, labels: Tensor) -> Tensor:
    r"""Each row's margin :math:`z_y - \max_{k \ne y} z_k` (``logits`` ``(R, C)``, float)."""
    z_y = logits.gather(1, labels[:, None]).squeeze(1)
    return z_y - logits.scatter(1, labels[:, None], float("-inf")).amax(dim=1)


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
