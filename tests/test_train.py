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

from dm_core.config import ConfigError, parse_config
from dm_core.events import (
    CheckpointEvent,
    EvalEvent,
    HistogramEvent,
    ResumeEvent,
    ScalarsEvent,
    StartEvent,
    TrainingDiverged,
    TrainingInterrupted,
    describe_divergence,
)
from dm_core.train import train
from studio.cli import app


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
    # cap m_i takes from examples already fitted (the cap stops pushing p_i up once an
    # example's margin is reached, so its weight drops out of the mean).
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
    """The premise of derivative manipulation: under 40% symmetric noise, CCE (whose weight
    grows as p_i falls) fits the corrupted labels
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


STABILISED = {  # warm-up across the stop and a milestone, clipping on most steps, a val split
    "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "warmup": 30, "clip_grad_norm": 0.2},
    "schedule": {"milestones": [20, 35], "gamma": 0.1},
    "dataset": {"name": "digits", "noise": {"kind": "symmetric", "rate": 0.4}, "val_fraction": 0.2},
}


@pytest.mark.parametrize("extra", [{}, STABILISED], ids=["plain", "warmup-clip-schedule"])
def test_resume_is_bit_exact(tmp_path, extra):
    cfg = tiny(iterations=40, eval_every=10, model={"name": "mlp", "hidden": [32], "dropout": 0.2},
               **extra)
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

    def scalars(events):
        return {e.iteration: e.values for e in events if isinstance(e, ScalarsEvent)}

    stitched_all = {**{k: v for k, v in scalars(first).items() if k <= 25}, **scalars(second)}
    assert stitched_all == scalars(full_events)  # lr, grad_norm, ess_fraction ... too
    a = torch.load(full_dir / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(part_dir / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.test_acc_final == full.test_acc_final
    assert resumed.test_acc_best == full.test_acc_best
    assert resumed.to_dict() | {"seconds": 0} == full.to_dict() | {"seconds": 0}
    if extra:
        assert full.selected_iteration is not None and full.val_acc_selected is not None


def test_warmup_and_schedule_compose_and_clipping_bounds_the_step(monkeypatch):
    """Iteration t uses lr · min(1, t/warmup) · gamma^(milestones passed); ``grad_norm`` is
    the norm before clipping, and the optimiser sees the clipped gradient."""
    import dm_core.train as train_module

    seen = []
    real = train_module._make_optimizer

    def make_optimizer(config, model):
        optimizer = real(config, model)

        def before_step(opt, *_):
            grads = [p.grad for group in opt.param_groups for p in group["params"]]
            seen.append(float(torch.linalg.vector_norm(torch.stack(
                [torch.linalg.vector_norm(g.double()) for g in grads]))))

        optimizer.register_step_pre_hook(before_step)
        return optimizer

    monkeypatch.setattr(train_module, "_make_optimizer", make_optimizer)
    events = []
    train(tiny(iterations=30, optimizer={"name": "sgd", "lr": 0.1, "momentum": 0.9,
                                         "warmup": 10, "clip_grad_norm": 0.05},
               schedule={"milestones": [5, 20], "gamma": 0.5}), on_event=events.append)
    scalars = [e.values for e in events if isinstance(e, ScalarsEvent)]
    for t, values in enumerate(scalars, start=1):
        expected = 0.1 * min(1.0, t / 10) * 0.5 ** sum(t > m for m in (5, 20))
        assert values["lr"] == pytest.approx(expected, rel=1e-12), t
    norms = [v["grad_norm"] for v in scalars]
    assert all(n > 0.05 for n in norms)  # every step was clipped ...
    assert all(s == pytest.approx(0.05, rel=1e-4) for s in seen)  # ... to 0.05


def test_resume_refuses_a_different_config(tmp_path):
    train(tiny(iterations=10), checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="different config"):
        train(tiny(iterations=10, seed=4), resume_from=tmp_path / "checkpoint.pt")


def test_divergence_stops_with_iteration_and_the_measured_figures():
    # DM with β = 60 at lr = 10: derivative normalisation bounds each step, so the logits do
    # not overflow; they climb into the thousands (about 2e4 by iteration 4 with seed 0; some
    # seeds wander at chance for many iterations first, which rounding can tip either way).
    # max_logit (1e3 here, below the default) is the guard that calls that diverged.
    events = []
    with pytest.raises(TrainingDiverged) as err:
        train(tiny(optimizer={"name": "sgd", "lr": 10.0, "momentum": 0.9},
                   loss={"name": "dm", "lam": 1.0, "beta": 60.0}, iterations=200, seed=0,
                   max_logit=1000.0),
              on_event=events.append)
    msg = str(err.value)
    assert f"diverged at iteration {err.value.iteration}" in msg
    # The message states the measured figures, and only those.
    figures = err.value.figures
    assert msg == describe_divergence(err.value.iteration, figures)
    assert figures["max_abs_logit"] > 1000.0 and figures["max_logit"] == 1000.0
    assert f"max |logit| {figures['max_abs_logit']:.3g} > max_logit 1000" in msg
    before = [e for e in events if isinstance(e, ScalarsEvent)][-1]
    assert figures["previous"] == {"iteration": err.value.iteration - 1, **{
        k: before.values[k] for k in ("ess_fraction", "max_share", "grad_norm", "lr")}}
    assert f"one example carried {before.values['max_share']:.2g} of the batch's weight" in msg
    assert f"lr {before.values['lr']:g}" in msg and "likely" not in msg.lower()
    # Every iteration before the stop was reported, and nothing non-finite was.
    scalars = [e for e in events if isinstance(e, ScalarsEvent)]
    assert [e.iteration for e in scalars] == list(range(1, err.value.iteration))
    assert all(np.isfinite(v) for e in scalars for v in e.values.values())
    assert all(e.iteration < err.value.iteration for e in events if hasattr(e, "iteration"))


def test_divergence_check_comes_before_the_optimiser_step(monkeypatch):
    """A diverged step never reaches the weights: the optimiser stepped once per earlier
    iteration, and not for the one that diverged."""
    import dm_core.train as train_module

    steps = []
    real = train_module._make_optimizer

    def make_optimizer(config, model):
        optimizer = real(config, model)
        optimizer.register_step_post_hook(lambda *_: steps.append(1))
        return optimizer

    monkeypatch.setattr(train_module, "_make_optimizer", make_optimizer)
    with pytest.raises(TrainingDiverged) as err:
        train(tiny(optimizer={"name": "sgd", "lr": 10.0, "momentum": 0.9},
                   loss={"name": "dm", "lam": 1.0, "beta": 60.0}, iterations=200, max_logit=1000.0,
                   seed=0))
    assert err.value.iteration > 1
    assert len(steps) == err.value.iteration - 1


def _record_targets(monkeypatch):
    """Every target batch the loop hands its loss, in order."""
    import dm_core.train as train_module

    seen = []
    real = train_module.make_loss

    def make_loss(name, **params):
        loss_fn = real(name, **params)
        inner = loss_fn.forward

        def forward(logits, targets):
            seen.append(targets.detach().clone())
            return inner(logits, targets)

        loss_fn.forward = forward
        return loss_fn

    monkeypatch.setattr(train_module, "make_loss", make_loss)
    return seen


def _model_from(state, cfg, data):
    from dm_core.models import create_model

    model = create_model(cfg.model.name, data.num_classes, data.input_shape, **cfg.model.params())
    model.load_state_dict(state)
    model.eval()
    return model


def _digits_for(cfg):
    from dm_core.data import load_dataset

    return load_dataset("digits", seed=cfg.seed, noise_kind=cfg.dataset.noise.kind,
                        noise_rate=cfg.dataset.noise.rate)


def test_relabel_retrains_on_predictions_and_reports_both(tmp_path, monkeypatch):
    from dm_core.data import batch_indices

    cfg = tiny(relabel=True, iterations=20)
    targets = _record_targets(monkeypatch)
    events, states = [], {}

    def on_event(e):
        events.append(e)
        if isinstance(e, CheckpointEvent):  # the file is replaced later: read it now
            states[e.iteration] = torch.load(e.path, weights_only=True)["model"]

    summary = train(cfg, on_event=on_event, checkpoint_dir=tmp_path)
    starts = [e for e in events if isinstance(e, StartEvent)]
    assert [s.phase for s in starts] == ["train", "relabel"]
    iters = [e.iteration for e in events if isinstance(e, ScalarsEvent)]
    assert iters == list(range(1, 41))
    assert summary.iterations == 40

    # The second phase trains on the first model's own predictions of the training set.
    data = _digits_for(cfg)
    with torch.no_grad():
        first = _model_from(states[20], cfg, data)(data.x_train).argmax(1)
        second = _model_from(states[40], cfg, data)(data.x_train).argmax(1)
    assert torch.equal(torch.as_tensor(starts[1].noisy_labels), first)
    assert not torch.equal(first, data.y_train)  # so the phases really train on different labels
    for step in range(1, 21):
        idx = batch_indices(len(data.x_train), cfg.batch_size, step - 1, cfg.seed)
        assert torch.equal(targets[step - 1], data.y_train[idx])  # phase 1: the corrupted labels
        assert torch.equal(targets[20 + step - 1], first[idx])  # phase 2: the predictions
    assert len(targets) == 40

    # Both phases are scored against the original corrupted labels, not the predictions.
    noisy = data.is_noisy
    for model_pred, values in ((first, [e for e in events if isinstance(e, EvalEvent)][1].values),
                               (second, [e for e in events if isinstance(e, EvalEvent)][-1].values)):
        assert values["train_acc_corrupted"] == pytest.approx(float((model_pred == data.y_train).float().mean()))
        assert values["train_acc_intact"] == pytest.approx(float((model_pred == data.y_train_clean).float().mean()))
        assert values["fit_corrupted_subset"] == pytest.approx(
            float((model_pred[noisy] == data.y_train[noisy]).float().mean()))
    relabel = summary.relabel
    assert relabel["train_acc_corrupted"] == pytest.approx(float((second == data.y_train).float().mean()))
    assert relabel["fit_corrupted_subset"] == pytest.approx(
        float((second[noisy] == data.y_train[noisy]).float().mean()))
    assert relabel["label_accuracy"] == pytest.approx(float((first == data.y_train_clean).float().mean()))
    assert relabel["noise_rate_after"] == pytest.approx(1 - relabel["label_accuracy"])


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


def test_cli_model_that_cannot_take_the_input_is_a_named_config_error(tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps(tiny(model={"name": "torchvision", "arch": "squeezenet1_1"}).model_dump(mode="json")))
    result = CliRunner().invoke(app, ["train", str(cfg)])
    assert result.exit_code == 2, result.output
    assert "model.arch: torchvision model 'squeezenet1_1' cannot take this dataset's inputs" in result.output
    assert "Traceback" not in result.output
    events = []  # and train() stops before the first step
    with pytest.raises(ConfigError, match="model.arch"):
        train(tiny(model={"name": "torchvision", "arch": "squeezenet1_1"}), on_event=events.append)
    assert not any(isinstance(e, StartEvent | ScalarsEvent) for e in events)


def test_cli_unexpected_errors_are_one_line_with_exit_code_1(tmp_path, monkeypatch):
    import dm_core.train as train_module

    def broken(*args, **kwargs):
        raise RuntimeError("CUDA error: device-side assert triggered\nCompile with TORCH_USE_CUDA_DSA")

    monkeypatch.setattr(train_module, "train", broken)
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps(tiny().model_dump(mode="json")))
    result = CliRunner().invoke(app, ["train", str(cfg), "--json"])  # --json: no progress bar
    assert result.exit_code == 1
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert lines == ["error: RuntimeError: CUDA error: device-side assert triggered"]


def test_cli_help_says_how_checkpoints_are_written():
    result = CliRunner().invoke(app, ["train", "--help"])
    text = " ".join(result.output.replace("│", " ").split())
    assert "checkpoint.pt after every evaluation" in text and "on Ctrl-C" in text
    assert "--resume" in text and "130" in text


def test_cli_resume_after_ctrl_c_gives_the_same_final_weights(tmp_path, monkeypatch):
    """`dm train --checkpoint-dir DIR`, Ctrl-C mid-run, then `dm train --resume DIR`: the
    same final weights and scores as one uninterrupted `dm train`."""
    import os
    import signal

    import dm_core.train as train_module

    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps(tiny(iterations=40, eval_every=10,
                                   model={"name": "mlp", "hidden": [32], "dropout": 0.2}).model_dump(mode="json")))
    runner = CliRunner()
    full = runner.invoke(app, ["train", str(cfg), "--checkpoint-dir", str(tmp_path / "full"), "--json"])
    assert full.exit_code == 0, full.output

    real = train_module.batch_indices

    def ctrl_c_at_step_25(n, batch_size, iteration, seed):
        if iteration == 24:
            os.kill(os.getpid(), signal.SIGINT)
        return real(n, batch_size, iteration, seed)

    monkeypatch.setattr(train_module, "batch_indices", ctrl_c_at_step_25)
    part = tmp_path / "part"
    stopped = runner.invoke(app, ["train", str(cfg), "--checkpoint-dir", str(part), "--json"])
    assert stopped.exit_code == 130, stopped.output
    text = " ".join(stopped.output.split())
    assert "training stopped at iteration 25: stopped by Ctrl-C" in text
    assert f"resume with: dm train --resume {part / 'checkpoint.pt'}" in text
    assert torch.load(part / "checkpoint.pt", weights_only=True)["iteration"] == 25
    monkeypatch.setattr(train_module, "batch_indices", real)

    resumed = runner.invoke(app, ["train", "--resume", str(part), "--json"])  # no config needed
    assert resumed.exit_code == 0, resumed.output
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)
    b = torch.load(part / "checkpoint.pt", weights_only=True)
    assert a["iteration"] == b["iteration"] == 40
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    summary_full = json.loads(full.stdout.strip().splitlines()[-1])
    summary_resumed = json.loads(resumed.stdout.strip().splitlines()[-1])
    for key in ("test_acc_final", "test_acc_best", "train_acc_corrupted", "fit_corrupted_subset"):
        assert summary_resumed[key] == summary_full[key]


def test_cli_resume_errors(tmp_path):
    result = CliRunner().invoke(app, ["train", "--resume", str(tmp_path / "nope.pt")])
    assert result.exit_code == 2 and "--resume" in result.output
    result = CliRunner().invoke(app, ["train"])
    assert result.exit_code == 2 and "config" in result.output


# -- optimisers, schedule, sampler and augmentation: short digits runs on the CPU ------------

def _first_step(cfg, tmp_path):
    """(θ0, ∂L/∂θ at θ0 on the first batch, θ1 after the loop's first step), by name."""
    from dm_core.data import batch_indices
    from dm_core.losses import make_loss
    from dm_core.models import create_model

    data = _digits_for(cfg)
    torch.manual_seed(cfg.seed)  # as the loop does: the same initial weights
    model = create_model(cfg.model.name, data.num_classes, data.input_shape, **cfg.model.params())
    theta0 = {k: v.detach().clone() for k, v in model.named_parameters()}
    idx = batch_indices(len(data.x_train), cfg.batch_size, 0, cfg.seed)
    loss = make_loss(cfg.loss.name, **cfg.loss.params())(model(data.x_train[idx]), data.y_train[idx])
    grads = dict(zip(theta0, torch.autograd.grad(loss, list(model.parameters())), strict=True))
    train(cfg, checkpoint_dir=tmp_path)
    theta1 = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["model"]
    return theta0, grads, theta1


# The first update of each optimiser, by hand (g' = g + wd·θ: L2 weight decay):
#   SGD, momentum μ:       θ1 = θ0 − lr·g'            (the momentum buffer starts at g')
#   SGD, Nesterov:         θ1 = θ0 − lr·(1 + μ)·g'
#   Adam (β1, β2, ε=1e-8): θ1 = θ0 − lr·g' / (|g'| + ε)  (bias-corrected m̂ = g', v̂ = g'²)
FIRST_STEPS = {
    "sgd": ({"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 0.0},
            lambda t, g, o: t - o["lr"] * g),
    "sgd-weight-decay": ({"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 0.05},
                         lambda t, g, o: t - o["lr"] * (g + o["weight_decay"] * t)),
    "nesterov": ({"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-4},
                 lambda t, g, o: t - o["lr"] * (1 + o["momentum"]) * (g + o["weight_decay"] * t)),
    "adam": ({"name": "adam", "lr": 0.01, "weight_decay": 0.0},
             lambda t, g, o: t - o["lr"] * g / (g.abs() + 1e-8)),
    "adam-weight-decay": ({"name": "adam", "lr": 0.01, "weight_decay": 0.05},
                          lambda t, g, o: t - o["lr"] * (g + o["weight_decay"] * t)
                          / ((g + o["weight_decay"] * t).abs() + 1e-8)),
}


@pytest.mark.parametrize("case", list(FIRST_STEPS))
def test_first_optimiser_step_matches_the_hand_computed_update(case, tmp_path):
    opt, update = FIRST_STEPS[case]
    cfg = tiny(iterations=1, eval_every=1, optimizer=opt)
    theta0, grads, theta1 = _first_step(cfg, tmp_path)
    moved = 0
    for name, t in theta0.items():
        expected = update(t.double(), grads[name].double(), opt)
        torch.testing.assert_close(theta1[name].double(), expected, rtol=1e-5, atol=1e-7)
        moved += int((theta1[name] != t).sum())
    assert moved > 0


@pytest.mark.parametrize(("opt", "above"), [
    ({"name": "adam", "lr": 0.01, "weight_decay": 0.0}, 0.6),
    ({"name": "adam", "lr": 0.003, "weight_decay": 1e-4}, 0.4),
    ({"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True}, 0.6),
], ids=["adam", "adam-weight-decay", "nesterov"])
def test_short_runs_learn_with_each_optimiser(opt, above):
    summary = train(tiny(iterations=60, eval_every=20, optimizer=opt))
    assert summary.test_acc_final > above  # chance is 0.1 on ten classes


def test_milestones_drop_the_learning_rate_exactly():
    scalars = []
    train(tiny(iterations=30, schedule={"milestones": [10, 20], "gamma": 0.5},
               optimizer={"name": "sgd", "lr": 0.2, "momentum": 0.9}),
          on_event=lambda e: scalars.append(e) if isinstance(e, ScalarsEvent) else None)
    lrs = [s.values["lr"] for s in scalars]
    # Steps 1-10 at lr, 11-20 at lr·γ, 21-30 at lr·γ² (a milestone m: after m steps).
    assert lrs == [0.2] * 10 + [0.1] * 10 + [0.05] * 10


def test_balanced_sampler_gives_equal_noisy_label_counts(monkeypatch):
    targets = _record_targets(monkeypatch)
    events = []
    train(tiny(iterations=15, batch_size=60, dataset={"name": "digits", "balanced_sampler": True,
                                                      "noise": {"kind": "symmetric", "rate": 0.4}}),
          on_event=events.append)
    start = [e for e in events if isinstance(e, StartEvent)][0]
    assert len(targets) == 15
    for y in targets:  # 60 = 6 per class, by the noisy label the loss trains on
        assert np.bincount(y.numpy(), minlength=10).tolist() == [6] * 10
        assert set(y.tolist()) <= set(start.noisy_labels.tolist())
    plain = _record_targets(monkeypatch)
    train(tiny(iterations=5, batch_size=60))
    assert any(np.bincount(y.numpy(), minlength=10).tolist() != [6] * 10 for y in plain)


def test_classes_per_batch_gives_that_many_classes_in_equal_shares(monkeypatch):
    targets = _record_targets(monkeypatch)
    train(tiny(iterations=8, batch_size=60, dataset={"name": "digits", "balanced_sampler": True,
                                                     "classes_per_batch": 5}))
    assert len(targets) == 8
    for y in targets:  # 60 = 5 classes x 12, by the label the loss trains on
        assert sorted(np.bincount(y.numpy(), minlength=10).tolist()) == [0] * 5 + [12] * 5


def _candidate_crops(image, pad=4):
    """Every pad-and-crop (and horizontal flip) of one (C, H, W) image, in numpy."""
    c, h, w = image.shape
    padded = np.pad(image, ((0, 0), (pad, pad), (pad, pad)))
    crops = [padded[:, oy:oy + h, ox:ox + w] for oy in range(2 * pad + 1) for ox in range(2 * pad + 1)]
    return crops + [crop[:, :, ::-1] for crop in crops]


def test_cifar_augmentation_pads_crops_and_flips_what_the_model_sees(monkeypatch):
    import dm_core.train as train_module
    from dm_core.data import batch_indices

    seen = []
    real = train_module.create_model

    def create_model(*args, **kwargs):
        model = real(*args, **kwargs)
        model.register_forward_pre_hook(lambda m, inp: seen.append(inp[0].detach().clone()) if m.training else None)
        return model

    monkeypatch.setattr(train_module, "create_model", create_model)
    cfg = tiny(iterations=3, batch_size=16, dataset={"name": "digits", "augment": True,
                                                     "noise": {"kind": "symmetric", "rate": 0.4}})
    train(cfg)
    data = _digits_for(cfg)
    shifted = flipped = 0
    for step, x in enumerate(seen):
        originals = data.x_train[batch_indices(len(data.x_train), 16, step, cfg.seed)].numpy()
        for got, original in zip(x.numpy(), originals, strict=True):
            matches = [i for i, crop in enumerate(_candidate_crops(original)) if np.array_equal(got, crop)]
            assert matches, "an augmented image is not a pad-4 crop (or its mirror) of its original"
            shifted += 40 not in matches and 121 + 40 not in matches  # 40: offset (4, 4), no shift
            flipped += all(i >= 81 for i in matches)
    assert len(seen) == 3 and shifted > 0 and flipped > 0
    seen.clear()
    train(tiny(iterations=2, batch_size=16))  # digits default: no augmentation
    for step, x in enumerate(seen):
        assert torch.equal(x, data.x_train[batch_indices(len(data.x_train), 16, step, cfg.seed)])


def test_cli_runs_the_shipped_preset(tmp_path):
    from pathlib import Path

    preset = Path(__file__).resolve().parents[1] / "configs" / "digits-symmetric-40-dm.yaml"
    # The preset's milestones (1500, 2250) lie after 50 iterations, which validation refuses.
    result = CliRunner().invoke(app, ["train", str(preset), "--set", "iterations=50",
                                      "--set", "schedule.milestones=[25,40]", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["iterations"] == 50
    assert abs(out["actual_noise_rate"] - 0.4) < 0.05  # the preset's 40% symmetric noise
    assert out["test_acc_final"] > 0.5 and out["test_acc_best"] >= out["test_acc_final"]
