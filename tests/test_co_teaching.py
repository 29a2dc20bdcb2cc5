"""Co-teaching: the selected sets and the gradient against a hand computation, its forget-rate
schedule, and a run of the pair through the training loop (checkpoint, resume, histograms)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from dm_core.config import parse_config
from dm_core.events import CheckpointEvent, HistogramEvent, ScalarsEvent, TrainingInterrupted
from dm_core.losses import CoTeachingLoss, NetworkPair, forget_rate
from dm_core.train import train


def ce(row: list[float], y: int) -> float:
    return math.log(sum(math.exp(v) for v in row)) - row[y]


def test_selection_and_gradient_match_a_hand_computation():
    # Five examples, two classes; net 1 finds example 2 hardest, net 2 example 0.
    net1 = [[4.0, 0.0], [3.0, 0.0], [0.0, 2.0], [0.0, 1.0], [5.0, 0.0]]
    net2 = [[0.0, 1.0], [0.5, 0.0], [3.0, 0.0], [4.0, 0.0], [6.0, 0.0]]
    y = [0, 0, 0, 0, 0]
    tau, epoch, gradual = 0.4, 5.0, 10.0
    rate = tau * epoch / gradual  # 0.2 of the batch left out
    keep = round((1 - rate) * 5)  # 4 kept
    ce1 = [ce(r, t) for r, t in zip(net1, y, strict=True)]
    ce2 = [ce(r, t) for r, t in zip(net2, y, strict=True)]
    easy1 = set(sorted(range(5), key=lambda i: ce1[i])[:keep])
    easy2 = set(sorted(range(5), key=lambda i: ce2[i])[:keep])
    assert easy1 == {0, 1, 3, 4} and easy2 == {1, 2, 3, 4}
    expected = sum(ce1[i] for i in easy2) / keep + sum(ce2[i] for i in easy1) / keep

    z = torch.tensor([net1, net2], dtype=torch.float64, requires_grad=True)
    loss_fn = CoTeachingLoss(forget_rate=tau, gradual_epochs=gradual)
    out = loss_fn(z, torch.tensor(y), epoch=epoch)
    assert out.item() == pytest.approx(expected, rel=1e-12)
    assert set(torch.nonzero(loss_fn.selected[0]).flatten().tolist()) == easy1
    assert set(torch.nonzero(loss_fn.selected[1]).flatten().tolist()) == easy2
    out.backward()
    # Net 1 learns only from net 2's picks, and each with CE's gradient (p - e_y) / keep.
    for i in range(5):
        p = torch.softmax(torch.tensor(net1[i], dtype=torch.float64), 0)
        want = (p - torch.tensor([1.0, 0.0], dtype=torch.float64)) / keep if i in easy2 else torch.zeros(2, dtype=torch.float64)
        assert torch.allclose(z.grad[0, i], want, atol=1e-12)
    assert loss_fn.last.weight[0] == 0 and loss_fn.last.weight[1] > 0  # example 0: not net 2's pick


def test_forget_rate_rises_linearly_then_holds():
    assert [forget_rate(e, 0.5, 10) for e in (0, 2, 10, 50)] == [0.0, 0.1, 0.5, 0.5]
    assert forget_rate(0.0, 0.3, 0) == 0.3  # no gradual phase: τ from the start


def test_the_pair_evaluates_as_its_first_network():
    a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    pair = NetworkPair(a, b)
    x = torch.randn(4, 3)
    assert pair(x).shape == (2, 4, 2)
    pair.eval()
    assert torch.equal(pair(x), a(x))


def co_teaching_config(**overrides):
    base = {"name": "ct", "seed": 2,
            "dataset": {"name": "digits", "noise": {"kind": "symmetric", "rate": 0.4}},
            "model": {"name": "mlp", "hidden": [32]},
            "loss": {"name": "co-teaching", "forget_rate": 0.4, "gradual_epochs": 2},
            "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
            "iterations": 40, "batch_size": 64, "eval_every": 10, "device": "cpu"}
    return parse_config(base, [f"{k}={json.dumps(v)}" for k, v in overrides.items()])


def test_a_co_teaching_run_streams_checkpoints_and_resumes_bit_exactly(tmp_path):
    cfg = co_teaching_config()
    full_events = []
    full = train(cfg, on_event=full_events.append, checkpoint_dir=tmp_path / "full")
    assert len([e for e in full_events if isinstance(e, HistogramEvent)]) == 40
    saved = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)["model"]
    assert any(k.startswith("first.") for k in saved) and any(k.startswith("second.") for k in saved)

    steps = iter(range(1000))
    first = []
    with pytest.raises(TrainingInterrupted):
        train(cfg, on_event=first.append, checkpoint_dir=tmp_path / "part",
              should_stop=lambda: "asked" if next(steps) == 24 else None)
    assert isinstance(first[-1], CheckpointEvent)
    second = []
    resumed = train(cfg, on_event=second.append, checkpoint_dir=tmp_path / "part",
                    resume_from=tmp_path / "part" / "checkpoint.pt")

    def scalars(events, upto=None):
        return {e.iteration: e.values for e in events
                if isinstance(e, ScalarsEvent) and (upto is None or e.iteration <= upto)}

    assert {**scalars(first, 25), **scalars(second)} == scalars(full_events)
    assert resumed.to_dict() | {"seconds": 0} == full.to_dict() | {"seconds": 0}
    # The logged weights follow the schedule: past T_k a share τ of each batch weighs nothing,
    # so at most (1 − τ) of the batch counts; in the first step nothing is left out yet.
    logged = scalars(full_events)
    assert 0 < logged[40]["ess_fraction"] <= round((1 - 0.4) * 64) / 64 + 1e-6
    assert logged[1]["ess_fraction"] > round((1 - 0.4) * 64) / 64
