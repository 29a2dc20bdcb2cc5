"""The training loop on real data (scikit-learn's bundled digits), CPU, fixed seeds.

References: the paper's claim that DM keeps noisy examples at low p_i while CCE memorises
them (assert on orderings, never timings); bit-exact resume against an uninterrupted run.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from dm_core.cli import app
from dm_core.config import parse_config
from dm_core.events import (
    CheckpointEvent,
    EvalEvent,
    HistogramEvent,
    ResumeEvent,
    ScalarsEvent,
    StartEvent,
    TrainingDiverged,
    TrainingInterrupted,
)
from dm_core.train import train


def tiny(**overrides):
    base = {
        "name": "tiny", "seed": 3,
        "dataset": {"name": "digits", "noise": {"kind": "symmetric", "rate": 0.4}},
        "model": {"name": "mlp", "hidden": [32]},
        "loss": {"name": "dm", "lam": 1.0, "beta": 12.0},
        "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
        "iterations": 30, "batch_size": 64, "eval_every": 10, "histogram_bins": 10,
        "device": "cpu",
    }
    return parse_config(base, [f"{k}={json.dumps(v)}" for k, v in overrides.items()])


def test_events_are_complete_and_consistent():
    events = []
    summary = train(tiny(), on_event=events.append)
    starts = [e for e in events if isinstance(e, StartEvent)]
    scalars = [e for e in events if isinstance(e, ScalarsEvent)]
    hists = [e for e in events if isinstance(e, HistogramEvent)]
    evals = [e for e in events if isinstance(e, EvalEvent)]
    assert len(starts) == 1 and starts[0].total_iterations == 30
    start = starts[0]
    # The corrupted labels travel with the run, and is_noisy says exactly which changed.
    assert np.array_equal(start.is_noisy, start.noisy_labels != start.clean_labels)
    assert abs(start.actual_noise_rate - start.is_noisy.mean()) < 1e-9
    assert 0.3 < start.actual_noise_rate < 0.5
    assert [e.iteration for e in scalars] == list(range(1, 31))
    assert [e.iteration for e in hists] == list(range(1, 31))
    assert [e.iteration for e in evals] == [10, 20, 30]
    for h in hists:  # every example of the batch lands in exactly one bin of one group
        assert h.clean.shape == (10,) and h.noisy.shape == (10,)
        assert h.clean.sum() + h.noisy.sum() == 64
    for s in scalars:
        assert all(np.isfinite(v) for v in s.values.values())
        assert {"loss", "ce", "lr", "batch_acc", "weight_mean", "weight_var"} <= set(s.values)
    # DN: the normalised weights times the batch size average to one, less what the margin
    # cap m_i takes from examples already fitted (DESIGN.md §1).
    assert all(0.5 < s.values["weight_mean"] <= 1.0 + 1e-5 for s in scalars)
    exact = []
    train(tiny(iterations=3, loss={"name": "dm", "lam": 1.0, "beta": 12.0, "eps": 0.0}),
          on_event=lambda e: exact.append(e) if isinstance(e, ScalarsEvent) else None)
    assert all(s.values["weight_mean"] == pytest.approx(1.0, rel=1e-5) for s in exact)
    assert summary.test_acc_final == evals[-1].values["test_acc"]
    assert summary.test_acc_best == max(e.values["test_acc"] for e in evals)
    assert summary.iterations == 30 and summary.device == "cpu"


def test_cross_check_of_evaluation_against_a_separate_computation(tmp_path):
    events = []
    train(tiny(iterations=10), on_event=events.append, checkpoint_dir=tmp_path)
    ev = [e for e in events if isinstance(e, EvalEvent)][-1].values
    start = [e for e in events if isinstance(e, StartEvent)][0]
    # Rebuild the model from the self-describing checkpoint and evaluate it independently.
    from dm_core.data import load_dataset
    from dm_core.models import create_model

    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    args = dict(ckpt["model_args"])
    model = create_model(args.pop("name"), args.pop("num_classes"), tuple(args.pop("input_shape")), **args)
    model.load_state_dict(ckpt["model"])
    model.eval()
    data = load_dataset("digits", seed=3, noise_kind="symmetric", noise_rate=0.4)
    with torch.no_grad():
        pred = model(data.x_train).argmax(1).numpy()
        test_pred = model(data.x_test).argmax(1).numpy()
    assert ev["test_acc"] == pytest.approx((test_pred == data.y_test.numpy()).mean())
    assert ev["train_acc_intact"] == pytest.approx((pred == start.clean_labels).mean())
    assert ev["train_acc_corrupted"] == pytest.approx((pred == start.noisy_labels).mean())
    noisy = start.is_noisy
    assert ev["fit_corrupted_subset"] == pytest.approx((pred[noisy] == start.noisy_labels[noisy]).mean())


@pytest.mark.slow
def test_dm_resists_memorising_noisy_labels_where_cce_does_not():
    """DESIGN.md §1 premise: under 40% symmetric noise, CCE fits the corrupted labels
    (their p_i climbs), DM with a high emphasis mode keeps them low and generalises at least
    as well."""
    common = {"iterations": 600, "eval_every": 100, "model": {"name": "mlp", "hidden": [256, 256]},
              "batch_size": 128, "seed": 123}

    def run(loss):
        scal = []
        summary = train(tiny(**common, loss=loss),
                        on_event=lambda e: scal.append(e) if isinstance(e, ScalarsEvent) else None)
        late = [s.values["p_noisy_mean"] for s in scal[-100:] if "p_noisy_mean" in s.values]
        return summary, float(np.mean(late))

    cce, p_noisy_cce = run({"name": "cce"})
    dm, p_noisy_dm = run({"name": "dm", "lam": 1.0, "beta": 12.0})
    assert p_noisy_dm < 0.5 * p_noisy_cce
    assert cce.fit_corrupted_subset > dm.fit_corrupted_subset
    assert dm.test_acc_final >= cce.test_acc_final
    assert dm.train_acc_intact > dm.train_acc_corrupted


def test_resume_is_bit_exact(tmp_path):
    cfg = tiny(iterations=40, eval_every=10, model={"name": "mlp", "hidden": [32], "dropout": 0.2})
    full_dir, part_dir = tmp_path / "full", tmp_path / "part"
    full_events = []
    full = train(cfg, on_event=full_events.append, checkpoint_dir=full_dir)

    first = []
    steps = iter(range(1000))
    with pytest.raises(TrainingInterrupted) as stop:
        train(cfg, on_event=first.append, checkpoint_dir=part_dir,
              should_stop=lambda: "asked" if next(steps) == 24 else None)
    assert stop.value.iteration == 25
    assert isinstance(first[-1], CheckpointEvent) and first[-1].iteration == 25

    second = []
    resumed = train(cfg, on_event=second.append, checkpoint_dir=part_dir,
                    resume_from=part_dir / "checkpoint.pt")
    assert isinstance(second[0], ResumeEvent) and second[0].iteration == 25
    assert [e for e in second if isinstance(e, StartEvent)][0].resumed_from == 25

    def losses(events):
        return {e.iteration: e.values["loss"] for e in events if isinstance(e, ScalarsEvent)}

    stitched = {**{k: v for k, v in losses(first).items() if k <= 25}, **losses(second)}
    assert stitched == losses(full_events)  # exactly equal floats, every iteration once
    a = torch.load(full_dir / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(part_dir / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.test_acc_final == full.test_acc_final
    assert resumed.test_acc_best == full.test_acc_best


def test_resume_refuses_a_different_config(tmp_path):
    train(tiny(iterations=10), checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="different config"):
        train(tiny(iterations=10, seed=4), resume_from=tmp_path / "checkpoint.pt")


def test_divergence_stops_with_iteration_and_likely_cause():
    # DM with β = 60 at lr = 10: derivative normalisation bounds each step, so the logits do
    # not overflow; they climb into the thousands (about 6e3 by iteration 51) while accuracy
    # falls to chance. The default max_logit (1e3) is the guard that calls that diverged.
    events = []
    with pytest.raises(TrainingDiverged) as err:
        train(tiny(optimizer={"name": "sgd", "lr": 10.0, "momentum": 0.9},
                   loss={"name": "dm", "lam": 1.0, "beta": 60.0}, iterations=200),
              on_event=events.append)
    msg = str(err.value)
    assert f"diverged at iteration {err.value.iteration}" in msg
    assert "max_logit 1000" in msg
    assert "learning rate (10)" in msg and "loss.beta=60" in msg
    # Every iteration before the stop was reported, and nothing non-finite was.
    scalars = [e for e in events if isinstance(e, ScalarsEvent)]
    assert [e.iteration for e in scalars] == list(range(1, err.value.iteration))
    assert all(np.isfinite(v) for e in scalars for v in e.values.values())


def test_relabel_retrains_on_predictions_and_reports_both():
    events = []
    summary = train(tiny(relabel=True, iterations=20), on_event=events.append)
    starts = [e for e in events if isinstance(e, StartEvent)]
    assert [s.phase for s in starts] == ["train", "relabel"]
    iters = [e.iteration for e in events if isinstance(e, ScalarsEvent)]
    assert iters == list(range(1, 41))
    assert summary.relabel is not None
    assert 0.0 <= summary.relabel["label_accuracy"] <= 1.0
    assert summary.iterations == 40


def test_cli_train_json(tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps(tiny(iterations=10).model_dump(mode="json")))
    result = CliRunner().invoke(app, ["train", str(cfg), "--set", "iterations=12", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout.strip().splitlines()[-1])
    for key in ("test_acc_final", "test_acc_best", "train_acc_corrupted", "train_acc_intact",
                "fit_corrupted_subset", "actual_noise_rate", "iterations", "seconds"):
        assert key in out
    assert out["iterations"] == 12


def test_cli_train_rejects_bad_config_naming_the_field(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("loss: {name: dm, lam: -1}\n")
    result = CliRunner().invoke(app, ["train", str(cfg)])
    assert result.exit_code == 2
    assert "loss.lam" in result.output
