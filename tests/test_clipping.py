"""Gradient clipping at a fixed norm and relative to the running norm (``dm_core.clipping``),
against a float64 reference of the recursion written out here, alone and inside the loop; and
each loss's default fixed clip resolved into the stored config."""

from __future__ import annotations

import json
import math

import pytest
import torch

from dm_core import clipping
from dm_core.config import ConfigError, OptimizerConfig, parse_config
from dm_core.events import ScalarsEvent
from dm_core.losses import LOSSES, list_losses
from dm_core.train import train


def reference_scales(norms: list[float], absolute: float | None, relative: float | None,
                     after: int = 0) -> list[float]:
    """s_t = min(1, τ_t / (g_t + 1e-6)), τ_t = min(c, κ r_{t-1}), r_1 = min(g_1, τ_1),
    r_t = 0.99 r_{t-1} + 0.01 min(g_t, τ_t), in float64; r_0 = ∞ (no relative limit), and
    no relative limit either at steps t ≤ ``after``."""
    r, out = math.inf, []
    for t, g in enumerate(norms, 1):
        kappa = relative if t > after else None
        limits = [x for x in (absolute, kappa * r if kappa is not None else None) if x is not None]
        tau = min(limits) if limits else math.inf
        out.append(min(1.0, tau / (g + 1e-6)))
        if math.isfinite(g):
            kept = min(g, tau)
            r = kept if math.isinf(r) else 0.99 * r + 0.01 * kept
    return out


def engine_scales(norms: list[float], absolute: float | None, relative: float | None) -> list[float]:
    reference, out = clipping.initial_reference(), []
    for g in norms:
        grad = [torch.tensor([g, 0.0], dtype=torch.float32)]
        norm = torch.tensor(g, dtype=torch.float32)
        tau = clipping.threshold(absolute, relative, reference)
        scale = clipping.clip_(grad, norm, tau)
        if math.isfinite(g):  # the clipped gradient's norm is the threshold, or g itself
            assert float(grad[0][0]) == pytest.approx(g * float(scale), rel=1e-6)
        reference = clipping.updated_reference(reference, norm, tau)
        out.append(float(scale))
    return out


SPIKY = [1.0] * 30 + [40.0] + [1.2] * 10 + [float("inf")] + [1.1] * 5 + [3.0] * 80


@pytest.mark.parametrize(("absolute", "relative"), [(None, 2.0), (1.5, None), (1.5, 2.0), (None, None)],
                         ids=["relative", "fixed", "both", "off"])
def test_scales_match_the_float64_recursion(absolute, relative):
    expected = reference_scales(SPIKY, absolute, relative)
    got = engine_scales(SPIKY, absolute, relative)
    assert got == pytest.approx(expected, rel=1e-5, abs=1e-12)


def test_a_spike_is_cut_and_a_sustained_rise_is_followed():
    scales = reference_scales(SPIKY, None, 2.0)
    assert scales[:30] == [1.0] * 30
    assert scales[30] == pytest.approx(2.0 / 40.0, rel=1e-5)  # the spike: to twice the norm of 1
    # The norm settles at 3 (three times the earlier level): clipped at first, then followed.
    tail = engine_scales(SPIKY, None, 2.0)[-80:]
    assert tail[0] < 1.0 and tail[-1] == 1.0


def _logged_norms_and_scales(optimizer: dict, iterations: int = 120) -> tuple[list[float], list[float]]:
    cfg = parse_config({
        "seed": 5, "dataset": {"name": "digits", "noise": {"kind": "symmetric", "rate": 0.4}},
        "model": {"name": "mlp", "hidden": [64]}, "loss": {"name": "dm", "lam": 0.5, "beta": 16.0},
        "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "clip_relative_after": 0, **optimizer},
        "iterations": iterations, "batch_size": 64, "eval_every": iterations, "device": "cpu"})
    events = []
    train(cfg, on_event=events.append)
    values = [e.values for e in events if isinstance(e, ScalarsEvent)]
    return [v["grad_norm"] for v in values], [v["clip_scale"] for v in values]


def test_the_loop_logs_the_scale_it_applied():
    """Inside the loop: the logged ``clip_scale`` is the float64 recursion over the logged
    pre-clip ``grad_norm``s, for a DM run at lr 0.1 whose norm varies."""
    norms, logged = _logged_norms_and_scales({"clip_relative": 1.5})
    assert logged == pytest.approx(reference_scales(norms, None, 1.5), rel=1e-4)
    assert 0 < sum(s < 1.0 for s in logged) < len(logged)  # it bound on some steps, not all


def test_the_relative_clip_waits_for_its_first_steps():
    """With ``clip_relative_after`` = 40 the first 40 steps are exactly the unclipped run's
    (same pre-clip norms, scale 1), though the relative clip binds on them when it starts at
    once; from step 41 the logged scales are the float64 recursion's, whose reference has
    learned from the 40 unclipped norms."""
    unclipped, _ = _logged_norms_and_scales({"clip_relative": 0.0})
    _, at_once = _logged_norms_and_scales({"clip_relative": 1.5})
    norms, logged = _logged_norms_and_scales({"clip_relative": 1.5, "clip_relative_after": 40})
    assert any(s < 1.0 for s in at_once[:40])  # the waiting matters on this run
    assert norms[:41] == unclipped[:41] and logged[:40] == [1.0] * 40
    assert logged == pytest.approx(reference_scales(norms, None, 1.5, after=40), rel=1e-4)
    assert any(s < 1.0 for s in logged[40:])  # and it binds once it starts


VANISHING = {"mae-dn", "mse-dn", "gce-dn", "dm-beta"}


@pytest.mark.parametrize("loss", list_losses())
def test_an_unset_fixed_clip_takes_the_losses_default(loss):
    cfg = parse_config({"loss": {"name": loss}})
    assert (cfg.optimizer.clip_relative, cfg.optimizer.clip_relative_after) == (4.0, 100)
    want = 1.0 if loss in VANISHING else 0.0
    assert cfg.optimizer.clip_grad_norm == want
    assert LOSSES.get(loss).extra.get("clip_grad_norm", 0.0) == want
    # The stored config says what the run trains with, and reads back the same.
    again = parse_config(json.loads(json.dumps(cfg.model_dump(mode="json"))))
    assert again.optimizer == cfg.optimizer


def test_an_explicit_fixed_clip_wins_and_ranges_are_named():
    assert parse_config({"loss": {"name": "mae-dn"}}, ["optimizer.clip_grad_norm=0"]).optimizer.clip is None
    assert parse_config({"loss": {"name": "dm"}}, ["optimizer.clip_grad_norm=3"]).optimizer.clip == 3.0
    assert parse_config({}, ["optimizer.clip_relative=0"]).optimizer.clip_factor is None
    with pytest.raises(ConfigError) as err:
        parse_config({}, ["optimizer.clip_relative=-1"])
    assert err.value.errors[0][0] == "optimizer.clip_relative"
    assert "[0, 1000]" in err.value.errors[0][1]
    assert OptimizerConfig().clip_grad_norm is None  # unresolved outside a RunConfig
