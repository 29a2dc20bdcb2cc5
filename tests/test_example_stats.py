"""Per-example statistics (``dm_core.example_stats``) against a float64 reference computed here
from a tiny run's per-iteration logits, labels and batch indices; detection scores; the store's
snapshots; resume; the queue folded in at any size; the older checkpoint layout."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import dm_core.train as train_module
from dm_core.config import parse_config
from dm_core.events import ExamplesEvent, StartEvent, TrainingInterrupted
from dm_core.example_stats import (
    FLUSH_ROWS,
    STATISTICS,
    ExampleStatistics,
    detection,
    pack,
    suspicion,
    unpack,
)
from dm_core.train import train


def tiny_cce(**overrides):
    base = {"name": "ex", "seed": 6,
            "dataset": {"name": "digits", "noise": {"kind": "symmetric", "rate": 0.4}},
            "model": {"name": "mlp", "hidden": [32]}, "loss": {"name": "cce"},
            "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
            "iterations": 60, "batch_size": 64, "eval_every": 30, "device": "cpu"}
    return parse_config(base, [f"{k}={json.dumps(v)}" for k, v in overrides.items()])


def record_batches(monkeypatch):
    """Each step's batch indices (from the loop's sampler) and logits and labels (at the loss)."""
    seen: dict[str, list] = {"index": [], "logits": [], "labels": []}
    real_indices, real_make_loss = train_module.batch_indices, train_module.make_loss

    def indices(*args, **kw):
        out = real_indices(*args, **kw)
        seen["index"].append(out.clone())
        return out

    def make_loss(name, **params):
        loss_fn = real_make_loss(name, **params)
        forward = loss_fn.forward

        def spy(logits, targets, *a, **kw):
            seen["logits"].append(logits.detach().double().clone())
            seen["labels"].append(targets.clone())
            return forward(logits, targets, *a, **kw)

        loss_fn.forward = spy
        return loss_fn

    monkeypatch.setattr(train_module, "batch_indices", indices)
    monkeypatch.setattr(train_module, "make_loss", make_loss)
    return seen


def reference(seen, n: int, upto: int) -> dict[str, np.ndarray]:
    """The statistics of the first ``upto`` steps of a recorded run, in float64."""
    batches = []
    for step in range(upto):
        z, y = seen["logits"][step].numpy(), seen["labels"][step].numpy()
        prob = np.exp(z - z.max(1, keepdims=True))
        prob /= prob.sum(1, keepdims=True)
        p = prob[np.arange(len(y)), y]
        weight = 2 * (1 - p) / len(y)  # cross-entropy's |dL/dz_i|_1 under the batch mean
        batches.append((seen["index"][step].numpy(), z, y, p, weight, step + 1))
    return sequential_reference(batches, n)


def sequential_reference(batches, n: int) -> dict[str, np.ndarray]:
    """The statistics of ``batches`` (index, logits, labels, p, weight, iteration) in float64,
    one example at a time in training order (an index twice in a batch: twice, in order)."""
    ps = [[] for _ in range(n)]
    margins = [[] for _ in range(n)]
    shares = [[] for _ in range(n)]
    forgetting, correct_before = np.zeros(n), np.zeros(n, dtype=bool)
    first, last_p = np.full(n, -1.0), np.zeros(n)
    for idx, z, y, p, weight, iteration in batches:
        others = np.array(z, dtype=np.float64)
        others[np.arange(len(y)), y] = -np.inf
        margin = np.asarray(z, dtype=np.float64)[np.arange(len(y)), y] - others.max(1)
        total = np.sum(weight, dtype=np.float64)
        share = np.asarray(weight, dtype=np.float64) / total if total > 0 else np.zeros(len(y))
        for j, i in enumerate(idx):
            ps[i].append(p[j])
            margins[i].append(margin[j])
            shares[i].append(share[j])
            correct = margin[j] > 0
            forgetting[i] += correct_before[i] and not correct
            correct_before[i] = correct
            if correct and first[i] < 0:
                first[i] = iteration
            last_p[i] = p[j]
    mean = lambda lists: np.array([np.mean(v) if v else 0.0 for v in lists])  # noqa: E731
    return {"confidence": mean(ps), "variability": np.array([np.std(v) if v else 0.0 for v in ps]),
            "aum": mean(margins), "forgetting": forgetting, "first_learned": first,
            "last_p": last_p, "share": mean(shares)}


def assert_matches(arrays: dict[str, np.ndarray], expected: dict[str, np.ndarray], n: int) -> None:
    """A snapshot against the float64 reference: integers exactly, floats to float16's step."""
    for name, (dtype, _) in STATISTICS.items():
        got = arrays[name]
        assert np.isfinite(expected[name]).all(), name
        assert got.dtype == np.dtype(dtype) and got.shape == (n,)
        if dtype.startswith(("int", "uint")):
            np.testing.assert_array_equal(got.astype(np.float64), expected[name], err_msg=name)
        else:
            tol = 2e-3 * np.maximum(1.0, np.abs(expected[name]))  # float16 storage
            np.testing.assert_array_less(np.abs(got - expected[name]), tol + 1e-4, err_msg=name)


def test_snapshots_match_the_float64_reference(monkeypatch):
    seen = record_batches(monkeypatch)
    events = []
    train(tiny_cce(), on_event=events.append)
    n = next(e for e in events if isinstance(e, StartEvent)).num_train
    snapshots = [e for e in events if isinstance(e, ExamplesEvent)]
    assert [e.iteration for e in snapshots] == [30, 60]
    for event in snapshots:
        assert_matches(event.arrays, reference(seen, n, event.iteration), n)
        assert event.arrays["label_quality"].shape == (n,)


def random_batches(n: int, steps: int, batch: int, classes: int, seed: int = 0):
    """Batches drawn with replacement (an index may repeat within a batch, as the balanced
    sampler's do), random logits, p and weights; the last batch's weights all 0."""
    rng = np.random.default_rng(seed)
    out = []
    for step in range(steps):
        weight = rng.random(batch) if step < steps - 1 else np.zeros(batch)
        out.append((rng.integers(0, n, batch), rng.normal(0, 2, (batch, classes)),
                    rng.integers(0, classes, batch), rng.random(batch), weight, step + 1))
    return out


@pytest.mark.parametrize("flush_rows", [1, 7, 64, 4096], ids=lambda r: f"flush{r}")
def test_any_flush_size_gives_the_sequential_float64_reference(flush_rows):
    n = 23
    batches = random_batches(n, steps=40, batch=16, classes=4)
    stats = ExampleStatistics(n, flush_rows=flush_rows)
    for idx, z, y, p, weight, iteration in batches:
        stats.update(torch.as_tensor(idx), torch.as_tensor(z, dtype=torch.float32), torch.as_tensor(y),
                     torch.as_tensor(p, dtype=torch.float32), torch.as_tensor(weight, dtype=torch.float32),
                     iteration)
        assert stats.queued_rows < flush_rows  # folded in as soon as flush_rows are queued
    expected = sequential_reference(
        [(i, z.astype(np.float32), y, p.astype(np.float32), w.astype(np.float32), it)
         for i, z, y, p, w, it in batches], n)
    assert expected["forgetting"].sum() > 0 and (expected["first_learned"] > 1).any()
    assert_matches(stats.snapshot(), expected, n)
    # Folding in more or fewer steps at once adds the same numbers in the same order.
    whole = ExampleStatistics(n, flush_rows=10**9)
    for idx, z, y, p, weight, iteration in batches:
        whole.update(torch.as_tensor(idx), torch.as_tensor(z, dtype=torch.float32), torch.as_tensor(y),
                     torch.as_tensor(p, dtype=torch.float32), torch.as_tensor(weight, dtype=torch.float32),
                     iteration)
    assert all(torch.equal(a, b) for a, b in zip(stats.state_dict().values(),
                                                  whole.state_dict().values(), strict=True)
               if isinstance(a, torch.Tensor))


def test_a_checkpoint_of_the_older_layout_loads_and_training_goes_on():
    """Version 1 kept one tensor per sum (``count`` an int32): the doctest's two batches."""
    older = {"count": torch.tensor([2, 1, 1], dtype=torch.int32),
             "sum_p": torch.tensor([1.4, 0.6, 0.2]), "sum_p2": torch.tensor([0.81 + 0.25, 0.36, 0.04]),
             "sum_margin": torch.tensor([2.0, 0.5, -1.0]), "sum_share": torch.tensor([0.8, 0.5, 0.7]),
             "forgetting": torch.tensor([1, 0, 0], dtype=torch.int32),
             "correct": torch.tensor([False, True, False]),
             "first_learned": torch.tensor([1, 2, -1]), "last_p": torch.tensor([0.5, 0.6, 0.2])}
    batches = [(np.array([0, 2]), np.array([[2.0, 0.0], [1.0, 0.0]]), np.array([0, 1]),
                np.array([0.9, 0.2]), np.array([3.0, 7.0]), 1),
               (np.array([0, 1]), np.array([[0.0, 0.0], [0.0, 0.5]]), np.array([0, 1]),
                np.array([0.5, 0.6]), np.array([1.0, 1.0]), 2),
               (np.array([2, 1]), np.array([[0.0, 3.0], [0.2, 0.0]]), np.array([1, 1]),
                np.array([0.7, 0.3]), np.array([1.0, 3.0]), 3)]
    stats = ExampleStatistics(3)
    stats.load_state_dict(older)
    idx, z, y, p, weight, iteration = batches[2]
    stats.update(torch.as_tensor(idx), torch.as_tensor(z, dtype=torch.float32), torch.as_tensor(y),
                 torch.as_tensor(p, dtype=torch.float32), torch.as_tensor(weight, dtype=torch.float32),
                 iteration)
    expected = sequential_reference(batches, 3)
    assert expected["forgetting"].tolist() == [1, 1, 0] and expected["first_learned"].tolist() == [1, 2, 3]
    assert_matches(stats.snapshot(), expected, 3)
    assert stats.state_dict()["version"] == 2
    with pytest.raises(ValueError, match="version 3 is not one of 1, 2"):
        stats.load_state_dict({**stats.state_dict(), "version": 3})
    with pytest.raises(ValueError, match=r"expected \(5, 4\)"):
        ExampleStatistics(4).load_state_dict(stats.state_dict())


def test_detection_is_scikit_learns_auroc_and_a_hand_counted_precision():
    from sklearn.metrics import roc_auc_score

    corrupted = np.array([True, False, True, False, False])
    snapshot = {"confidence": np.array([0.1, 0.9, 0.3, 0.2, 0.8], dtype=np.float16),
                "forgetting": np.array([3, 0, 1, 1, 0], dtype=np.uint16),
                "first_learned": np.array([-1, 5, 40, 10, 5], dtype=np.int32)}
    found = detection(snapshot, corrupted)
    assert found["auroc"]["confidence"] == pytest.approx(roc_auc_score(corrupted, -snapshot["confidence"].astype(float)))
    # k = 2: the two least confident are examples 0 and 3: one of them corrupted.
    assert found["precision_at_k"]["confidence"] == 0.5
    # never learned (-1) is the most suspect; then the latest learned (40)
    assert suspicion("first_learned", snapshot["first_learned"]).argsort()[::-1][:2].tolist() == [0, 2]
    assert found["precision_at_k"]["first_learned"] == 1.0
    assert np.isnan(detection(snapshot, np.zeros(5, dtype=bool))["auroc"]["confidence"])


def test_memory_is_linear_and_a_snapshot_of_50000_fits_in_a_megabyte():
    stats = ExampleStatistics(50_000)
    for step in range(100):  # 12,800 examples seen: the queue is folded in on the way
        stats.update(torch.randint(0, 50_000, (128,)), torch.randn(128, 10), torch.randint(0, 10, (128,)),
                     torch.rand(128), torch.rand(128), iteration=step + 1)
        assert stats.queued_rows < FLUSH_ROWS  # the queue is bounded whatever N
    state_bytes = sum(t.element_size() * t.numel() for t in stats.state_dict().values()
                      if isinstance(t, torch.Tensor))
    # A fixed number of values per example: 5 float32 sums, the int32 forgetting count, the
    # bool correct flag, the int64 first iteration learned, the float32 last p.
    assert state_bytes == 50_000 * (4 * 5 + 4 + 1 + 8 + 4)
    blob = pack(stats.snapshot())
    assert len(blob) < 1_000_000
    assert {k: v.shape for k, v in unpack(blob).items()} == {k: (50_000,) for k in STATISTICS}


def test_resume_gives_the_same_snapshots(tmp_path):
    cfg = tiny_cce()
    full = []
    train(cfg, on_event=full.append, checkpoint_dir=tmp_path / "full")
    steps = iter(range(1000))
    first = []
    with pytest.raises(TrainingInterrupted):
        train(cfg, on_event=first.append, checkpoint_dir=tmp_path / "part",
              should_stop=lambda: "asked" if next(steps) == 44 else None)
    second = []
    train(cfg, on_event=second.append, checkpoint_dir=tmp_path / "part",
          resume_from=tmp_path / "part" / "checkpoint.pt")

    def last(events):
        return [e for e in events if isinstance(e, ExamplesEvent)][-1]

    a, b = last(full), last(second)
    assert a.iteration == b.iteration == 60
    assert all(np.array_equal(a.arrays[k], b.arrays[k]) for k in a.arrays)


def test_the_store_keeps_a_snapshot_per_evaluation_and_drops_those_past_a_checkpoint(tmp_path):
    from dm_store import Store

    store = Store(f"sqlite:///{tmp_path / 'dm.sqlite'}", tmp_path / "artifacts")
    store.upgrade()
    [run_id] = store.submit([tiny_cce()]).run_ids
    claimed = store.claim("w1", "cpu")
    arrays = {"confidence": np.array([0.5, 0.25], dtype=np.float16),
              "forgetting": np.array([1, 0], dtype=np.uint16)}
    store.write_batch(run_id, claimed.attempt, examples=[ExamplesEvent(30, arrays), ExamplesEvent(60, arrays)],
                      worker_id="w1")
    assert store.example_iterations(run_id) == [30, 60]
    iteration, got = store.examples(run_id)
    assert iteration == 60 and {k: v.tolist() for k, v in got.items()} == {k: v.tolist() for k, v in arrays.items()}
    assert store.examples(run_id, iteration=45)[0] == 30
    store.truncate_after(run_id, 30, attempt=claimed.attempt, worker_id="w1")
    assert store.example_iterations(run_id) == [30]
    store.dispose()
