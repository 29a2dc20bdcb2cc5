"""Per-example statistics (``dm_core.example_stats``) against a float64 reference computed here
from a tiny run's per-iteration logits, labels and batch indices; detection scores; the store's
snapshots; resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import dm_core.train as train_module
from dm_core.config import parse_config
from dm_core.events import ExamplesEvent, StartEvent, TrainingInterrupted
from dm_core.example_stats import STATISTICS, ExampleStatistics, detection, pack, suspicion, unpack
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
    """The statistics of the first ``upto`` steps, in float64, step by step."""
    ps = [[] for _ in range(n)]
    margins = [[] for _ in range(n)]
    shares = [[] for _ in range(n)]
    forgetting, correct_before = np.zeros(n), np.zeros(n, dtype=bool)
    first, last_p = np.full(n, -1.0), np.zeros(n)
    for step in range(upto):
        idx = seen["index"][step].numpy()
        z, y = seen["logits"][step].numpy(), seen["labels"][step].numpy()
        prob = np.exp(z - z.max(1, keepdims=True))
        prob /= prob.sum(1, keepdims=True)
        p = prob[np.arange(len(y)), y]
        others = z.copy()
        others[np.arange(len(y)), y] = -np.inf
        margin = z[np.arange(len(y)), y] - others.max(1)
        weight = 2 * (1 - p) / len(y)  # cross-entropy's |dL/dz_i|_1 under the batch mean
        share = weight / weight.sum()
        for j, i in enumerate(idx):
            ps[i].append(p[j])
            margins[i].append(margin[j])
            shares[i].append(share[j])
            correct = margin[j] > 0
            forgetting[i] += correct_before[i] and not correct
            correct_before[i] = correct
            if correct and first[i] < 0:
                first[i] = step + 1
            last_p[i] = p[j]
    mean = lambda lists: np.array([np.mean(v) if v else 0.0 for v in lists])  # noqa: E731
    return {"confidence": mean(ps), "variability": np.array([np.std(v) if v else 0.0 for v in ps]),
            "aum": mean(margins), "forgetting": forgetting, "first_learned": first,
            "last_p": last_p, "share": mean(shares)}


def test_snapshots_match_the_float64_reference(monkeypatch):
    seen = record_batches(monkeypatch)
    events = []
    train(tiny_cce(), on_event=events.append)
    n = next(e for e in events if isinstance(e, StartEvent)).num_train
    snapshots = [e for e in events if isinstance(e, ExamplesEvent)]
    assert [e.iteration for e in snapshots] == [30, 60]
    for event in snapshots:
        expected = reference(seen, n, event.iteration)
        for name, (dtype, _) in STATISTICS.items():
            got = event.arrays[name]
            assert got.dtype == np.dtype(dtype) and got.shape == (n,)
            tol = 2e-3 * np.maximum(1.0, np.abs(expected[name]))  # float16 storage
            np.testing.assert_allclose(got.astype(np.float64), expected[name], atol=0, rtol=0,
                                       err_msg=name) if dtype.startswith(("int", "uint")) else \
                np.testing.assert_array_less(np.abs(got - expected[name]), tol + 1e-4, err_msg=name)
        assert event.arrays["label_quality"].shape == (n,)


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
    stats.update(torch.arange(128), torch.rand(128), torch.randn(128), torch.rand(128) > 0.5,
                 torch.rand(128) / 128, iteration=1)
    state_bytes = sum(t.element_size() * t.numel() for t in stats.state_dict().values())
    assert state_bytes == 50_000 * (4 * 7 + 1 + 8)  # a fixed number of values per example
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
    from dm_core.store import Store

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
