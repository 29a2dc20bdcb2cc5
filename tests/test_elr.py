"""ELR (early-learning regularisation) against its formula written out here in float64, and the
training loop's plumbing of each example's index into a loss that keeps per-example state."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from dm_core.config import parse_config
from dm_core.events import CheckpointEvent, ScalarsEvent, TrainingInterrupted
from dm_core.losses import ELRLoss, make_loss
from dm_core.train import train


def written_elr(z: torch.Tensor, y: torch.Tensor, t: torch.Tensor, lam: float) -> torch.Tensor:
    """mean_i [ -log softmax(z_i)[y_i] + lam * log(1 - <t_i, clamp(softmax(z_i))>) ]."""
    p = torch.exp(z - torch.logsumexp(z, dim=1, keepdim=True))
    ce = -torch.log(p.gather(1, y[:, None]).squeeze(1))
    q = p.clamp(1e-4, 1 - 1e-4)
    return (ce + lam * torch.log(1 - (t * q).sum(1))).mean()


def test_value_gradient_and_update_match_the_written_loss():
    torch.manual_seed(0)
    n, c, lam, beta = 6, 4, 3.0, 0.7
    loss_fn = ELRLoss(lam=lam, momentum=beta).double()
    loss_fn.bind_examples(num_examples=n, num_classes=c)
    loss_fn.target = loss_fn.target.double()
    table = torch.zeros(n, c, dtype=torch.float64)
    for step in range(3):
        index = torch.tensor([(step + k) % n for k in range(4)])
        z = torch.randn(4, c, dtype=torch.float64, requires_grad=True)
        y = torch.randint(0, c, (4,))
        # The reference: update the running average first (the authors' order), then the loss.
        q = torch.softmax(z.detach(), 1).clamp(1e-4, 1 - 1e-4)
        table[index] = beta * table[index] + (1 - beta) * q / q.sum(1, keepdim=True)
        z_ref = z.detach().clone().requires_grad_(True)
        expected = written_elr(z_ref, y, table[index], lam)
        expected.backward()

        got = loss_fn(z, y, index=index)
        got.backward()
        assert float(got.detach()) == pytest.approx(float(expected.detach()), rel=1e-12)
        assert torch.allclose(z.grad, z_ref.grad, rtol=1e-10, atol=1e-12)
        assert torch.allclose(loss_fn.target, table, rtol=0, atol=1e-15)
        # The logged weight is the L1 norm of each example's logit gradient (mean: times N).
        assert torch.allclose(loss_fn.last.weight, z_ref.grad.abs().sum(1), rtol=1e-10)


def test_lam_zero_is_cross_entropy_and_the_index_is_required():
    loss_fn = make_loss("elr", lam=0.0)
    loss_fn.bind_examples(5, 3)
    z, y = torch.randn(5, 3), torch.tensor([0, 1, 2, 0, 1])
    assert float(loss_fn(z, y, index=torch.arange(5))) == pytest.approx(float(F.cross_entropy(z, y)), rel=1e-6)
    with pytest.raises(ValueError, match="index"):
        loss_fn(z, y)
    with pytest.raises(Exception, match="momentum"):
        make_loss("elr", momentum=1.0)


def tiny_elr(**overrides):
    base = {"name": "elr", "seed": 4,
            "dataset": {"name": "digits", "noise": {"kind": "symmetric", "rate": 0.4}},
            "model": {"name": "mlp", "hidden": [32]}, "loss": {"name": "elr", "lam": 3.0, "momentum": 0.7},
            "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
            "iterations": 40, "batch_size": 64, "eval_every": 10, "device": "cpu"}
    return parse_config(base, [f"{k}={json.dumps(v)}" for k, v in overrides.items()])


def test_the_loop_gives_elr_each_examples_index(monkeypatch):
    """Every batch's rows of the table are the ones its examples' indices name: recompute the
    table from the indices the loop drew (``dm_core.data.batch_indices``) and the logits."""
    import dm_core.train as train_module

    seen = []
    real = ELRLoss.forward

    def spy(self, logits, targets, index=None):
        seen.append(index.clone())
        return real(self, logits, targets, index=index)

    monkeypatch.setattr(ELRLoss, "forward", spy)
    cfg = tiny_elr()
    train(cfg)
    n = _num_train(cfg)
    expected = [train_module.batch_indices(n, cfg.batch_size, step, cfg.seed) for step in range(cfg.iterations)]
    assert len(seen) == cfg.iterations
    assert all(torch.equal(a.cpu(), b) for a, b in zip(seen, expected, strict=True))


def _num_train(cfg) -> int:
    from dm_core.data import load_dataset

    d = cfg.dataset
    return len(load_dataset(d.name, seed=cfg.seed, noise_kind=d.noise.kind, noise_rate=d.noise.rate,
                            val_fraction=d.val_fraction).x_train)


def test_resume_restores_the_table_bit_exactly(tmp_path):
    cfg = tiny_elr()
    full_events = []
    full = train(cfg, on_event=full_events.append, checkpoint_dir=tmp_path / "full")
    steps = iter(range(1000))
    first = []
    with pytest.raises(TrainingInterrupted):
        train(cfg, on_event=first.append, checkpoint_dir=tmp_path / "part",
              should_stop=lambda: "asked" if next(steps) == 24 else None)
    assert isinstance(first[-1], CheckpointEvent)
    second = []
    resumed = train(cfg, on_event=second.append, checkpoint_dir=tmp_path / "part",
                    resume_from=tmp_path / "part" / "checkpoint.pt")

    def losses(events, upto=None):
        return {e.iteration: e.values["loss"] for e in events
                if isinstance(e, ScalarsEvent) and (upto is None or e.iteration <= upto)}

    assert {**losses(first, 25), **losses(second)} == losses(full_events)
    assert resumed.test_acc_final == full.test_acc_final
    saved = torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=True)["loss"]["target"]
    assert saved.shape[1] == 10 and saved.abs().sum() > 0
