"""The training loop: one run, top to bottom.

Run it from the shell::

    dm train configs/digits-symmetric-40-dm.yaml                 # foreground, progress bar
    dm train configs/digits-symmetric-40-dm.yaml --set loss.lam=2 --json

or from Python::

    from dm_core.config import load_config
    from dm_core.train import train
    summary = train(load_config("configs/digits-symmetric-40-dm.yaml"))

The loop knows nothing of databases or UIs: it reports every step to ``on_event`` (see
``dm_core.events``). Iterations count optimisation steps from 1. Every ``eval_every`` steps
it evaluates and, given a ``checkpoint_dir``, writes a checkpoint that describes itself
(config, iteration, best scores, RNG states), so a worker on another machine can resume it
without the original config file -- bit for bit on the CPU. ``dm train --checkpoint-dir DIR``
and ``dm train --resume DIR`` do the same from the shell.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dm_core import checkpoints, clipping, example_stats, fused_cpu
from dm_core.checkpoints import CHECKPOINT_NAME, load_checkpoint_config
from dm_core.config import RunConfig
from dm_core.data import augment_batch, balanced_batch_indices, batch_indices, load_dataset
from dm_core.devices import resolve_device
from dm_core.events import (
    CheckpointEvent,
    EvalEvent,
    Event,
    ExamplesEvent,
    HistogramEvent,
    ResumeEvent,
    RunSummary,
    ScalarsEvent,
    StartEvent,
    TrainingDiverged,
    TrainingInterrupted,
    describe_divergence,
)
from dm_core.losses import LOSSES, NetworkPair, concentration, make_loss
from dm_core.models import create_model
from dm_core.selection import select_evaluation

__all__ = ["CHECKPOINT_NAME", "StepStatistics", "load_checkpoint_config", "step_statistics",
           "train"]

EVAL_CHUNK = 1024  # examples per forward pass when evaluating

_PUBLIC = ("test_acc_final", "test_acc_best", "train_acc_corrupted", "train_acc_intact",
           "fit_corrupted_subset", "val_acc_best", "val_acc_final", "val_acc_selected",
           "test_acc_selected", "selected_iteration")


@dataclass
class _Phase:
    """One pass of training: ``train`` on the given labels, or ``relabel`` on predictions."""

    name: str
    labels: torch.Tensor  # the labels this phase trains on
    first_iteration: int  # global iteration number of this phase's first step


@dataclass
class _Run:
    """What every phase of one run shares: the config, the data on the device, the sinks."""

    config: RunConfig
    data: Any  # dm_core.data.DataBundle
    device: torch.device
    augment: bool
    total: int  # iterations over all phases
    emit: Callable[[Event], None]
    should_stop: Callable[[], str | None] | None
    checkpoint_dir: Path | None
    phases_done: dict[str, Any]  # finished phases' results, saved with every checkpoint
    x_train: torch.Tensor = field(init=False)
    y_clean: torch.Tensor = field(init=False)
    # Both phases are scored against the original corrupted labels (not against what the
    # phase trains on, which in the relabel phase is the first model's predictions).
    y_corrupted: torch.Tensor = field(init=False)
    is_noisy: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        self.x_train = self.data.x_train.to(self.device)
        self.y_clean = self.data.y_train_clean.to(self.device)
        self.y_corrupted = self.data.y_train.to(self.device)
        self.is_noisy = self.data.is_noisy.to(self.device)


@dataclass
class _PhaseState:
    """Everything one phase changes as it trains, and everything a checkpoint saves."""

    phase: _Phase
    model: nn.Module
    loss_fn: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler  # the step schedule (MultiStepLR)
    warmup: torch.optim.lr_scheduler.LRScheduler | None  # linear warm-up, chained on top
    scaler: torch.amp.GradScaler
    use_amp: bool
    start_step: int = 1  # 1-based step within this phase
    best: dict[str, float] = field(default_factory=lambda: {"test_acc": -1.0, "val_acc": -1.0})
    last_eval: dict[str, float] = field(default_factory=dict)
    evals: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    last_logged: tuple[int, dict[str, float]] | None = None  # the last ScalarsEvent's content
    clip_reference: torch.Tensor | None = None  # relative clipping's running norm (dm_core.clipping)
    loss_takes_index: bool = False  # the loss keeps per-example state: it is given each batch's indices
    two_networks: bool = False  # co-teaching: the model is a NetworkPair, the loss takes the epoch
    examples: example_stats.ExampleStatistics | None = None  # per-example statistics of this phase


def train(
    config: RunConfig,
    on_event: Callable[[Event], None] | None = None,
    resume_from: str | Path | None = None,
    checkpoint_dir: str | Path | None = None,
    should_stop: Callable[[], str | None] | None = None,
) -> RunSummary:
    """Train ``config`` and return its summary; see the module docstring for the contract.

    Checkpoints are written only when ``checkpoint_dir`` is given: ``checkpoint_dir /
    "checkpoint.pt"`` (replaced atomically, so it always holds the latest state) after every
    evaluation -- every ``eval_every`` iterations and at the last iteration of each phase --
    and when ``should_stop`` returns a reason, just before ``TrainingInterrupted`` is raised.
    A diverged run (``TrainingDiverged``) writes none past its last evaluation.

    ``resume_from`` is a checkpoint file; the run continues after its iteration with the
    saved weights, optimiser, schedule, RNG states and best scores, and gives the same
    events and final weights as an uninterrupted run (bit for bit on the CPU). ``config``
    must be the run the checkpoint was written by (``ValueError`` otherwise; only ``name``
    and ``device`` may differ; ``load_checkpoint_config`` recovers it). Resuming does not
    itself write checkpoints: pass ``checkpoint_dir`` too (it may be the same directory).

    With ``config.relabel`` a second phase trains from scratch on the first model's
    predictions of the training set. Both phases report ``train_acc_corrupted`` and
    ``fit_corrupted_subset`` against the original corrupted labels (and
    ``train_acc_intact`` against the clean ones), so the two phases are comparable; the
    summary's ``relabel`` also gives ``label_accuracy``, how many predicted labels are right.

    The summary's ``*_selected`` fields are those of the evaluation with the best
    validation accuracy (``dm_core.selection.select_evaluation``); None without a
    validation split.
    """
    device = resolve_device(config.device)
    if device.type == "cpu" and LOSSES.get(config.loss.name).extra.get("family") == "scheme":
        # The scheme losses' CPU kernel is compiled on first use (about 30 s, once per source
        # and toolchain): load it before the clock starts, so no build is timed as training.
        fused_cpu.kernel()
    started = time.perf_counter()
    data = load_dataset(
        config.dataset.name, seed=config.seed, noise_kind=config.dataset.noise.kind,
        noise_rate=config.dataset.noise.rate, noise_params=config.dataset.noise.extra_params(),
        val_fraction=config.dataset.val_fraction, **config.dataset.params())
    checkpoint = checkpoints.load_checkpoint(resume_from) if resume_from else None
    if checkpoint is not None:
        checkpoints.check_same_run(config, checkpoint)
    run = _Run(config=config, data=data, device=device,
               augment=data.augment if config.dataset.augment is None else config.dataset.augment,
               total=config.iterations * (2 if config.relabel else 1),
               emit=on_event or (lambda event: None), should_stop=should_stop,
               checkpoint_dir=Path(checkpoint_dir) if checkpoint_dir is not None else None,
               phases_done=checkpoint["phase_results"] if checkpoint else {})

    results = run.phases_done.get("train")
    if results is None:
        results = _run_phase(run, _Phase("train", run.y_corrupted, 1), checkpoint)
        run.phases_done = {"train": results}
        checkpoint = None

    relabel_results = None
    if config.relabel:
        # Label correction (the paper's Table 9): train again from scratch on the first
        # model's own predictions of the training set.
        predicted = torch.as_tensor(run.phases_done.get("relabel_labels", results["predictions"]),
                                    dtype=torch.long, device=device)
        run.phases_done["relabel_labels"] = predicted.tolist()
        relabel = _run_phase(run, _Phase("relabel", predicted, config.iterations + 1), checkpoint)
        label_acc = float((predicted == run.y_clean).float().mean())
        relabel_results = {**_public(relabel), "label_accuracy": label_acc,
                           "noise_rate_after": 1.0 - label_acc}

    return RunSummary(**_public(results), actual_noise_rate=data.actual_noise_rate,
                      iterations=run.total, seconds=time.perf_counter() - started,
                      device=str(device), relabel=relabel_results)


def _public(results: dict[str, Any]) -> dict[str, Any]:
    return {k: results.get(k) for k in _PUBLIC}


def _run_phase(run: _Run, phase: _Phase, checkpoint: dict[str, Any] | None) -> dict[str, Any]:
    """Train one phase from scratch (or from ``checkpoint``) and return its final scores.

    Per step, in a fixed order: batch → forward → backward → unscale, measure and clip the
    gradient → read the step's statistics → divergence check → optimiser step → log →
    evaluate and checkpoint → stop if asked. The check comes before the step, so a diverged
    step never reaches the weights, and nothing of the diverged iteration is emitted.
    """
    config = run.config
    state = _build_phase(run, phase, checkpoint)
    for step in range(state.start_step, config.iterations + 1):
        iteration = phase.first_iteration + step - 1
        _train_step(run, state, step, iteration)

        last_step = step == config.iterations
        if step % config.eval_every == 0 or last_step:
            _evaluate(run, state, iteration)
            _save_checkpoint(run, state, iteration)

        reason = run.should_stop() if run.should_stop is not None else None
        if reason and not last_step:
            _save_checkpoint(run, state, iteration)
            path = str(run.checkpoint_dir / CHECKPOINT_NAME) if run.checkpoint_dir else None
            raise TrainingInterrupted(iteration, reason, path)

    if phase.name == "train":
        run.phases_done["predictions"] = (_predict(state.model, run.x_train).tolist()
                                          if config.relabel else None)
    return _phase_results(run, state)


def _build_phase(run: _Run, phase: _Phase, checkpoint: dict[str, Any] | None) -> _PhaseState:
    """The phase's model, loss, optimiser and schedules: fresh, or restored from
    ``checkpoint`` when it was written in this phase. Emits the phase's ``StartEvent``."""
    config = run.config
    torch.manual_seed(config.seed)  # the same initial weights for every run with this seed
    model = create_model(config.model.name, run.data.num_classes, run.data.input_shape,
                         **config.model.params()).to(run.device)
    loss_entry = LOSSES.get(config.loss.name)
    if loss_entry.extra.get("two_networks"):
        # Co-teaching: a second network of the same architecture, initialised from the RNG
        # where the first left it (so differently), trained beside the first as one module.
        second = create_model(config.model.name, run.data.num_classes, run.data.input_shape,
                              **config.model.params()).to(run.device)
        model = NetworkPair(model, second)
    loss_fn = make_loss(config.loss.name, **config.loss.params()).to(run.device)
    takes_index = bool(loss_entry.extra.get("per_example_state"))
    if takes_index:  # a table with a row per training example (ELR's running predictions)
        loss_fn.bind_examples(len(run.x_train), run.data.num_classes)
    optimizer = _make_optimizer(config, model)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=config.schedule.milestones, gamma=config.schedule.gamma)
    warmup = None
    if config.optimizer.warmup > 1:
        # Chained on the step schedule (both multiply the current rate): iteration t uses
        # lr · min(1, t / warmup) times the schedule's factor.
        warmup = torch.optim.lr_scheduler.LinearLR(
            optimizer, start_factor=1.0 / config.optimizer.warmup, end_factor=1.0,
            total_iters=config.optimizer.warmup - 1)
    use_amp = config.amp and run.device.type == "cuda"
    state = _PhaseState(phase=phase, model=model, loss_fn=loss_fn, optimizer=optimizer,
                        scheduler=scheduler, warmup=warmup,
                        scaler=torch.amp.GradScaler("cuda", enabled=use_amp), use_amp=use_amp,
                        clip_reference=clipping.initial_reference(run.device),
                        loss_takes_index=takes_index,
                        two_networks=bool(loss_entry.extra.get("two_networks")),
                        examples=example_stats.ExampleStatistics(len(run.x_train), run.device))

    if checkpoint is not None and checkpoint["phase"] == phase.name:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        loss_fn.load_state_dict(checkpoint.get("loss", {}))  # older checkpoints: stateless losses only
        scheduler.load_state_dict(checkpoint["scheduler"])
        if warmup is not None:
            warmup.load_state_dict(checkpoint["warmup"])
        state.scaler.load_state_dict(checkpoint["scaler"])
        state.best, state.last_eval = dict(checkpoint["best"]), dict(checkpoint["last_eval"])
        state.evals = [(int(i), dict(v)) for i, v in checkpoint.get("evals", [])]
        if checkpoint.get("examples") is not None:  # older checkpoints have none
            state.examples.load_state_dict(checkpoint["examples"])
        if checkpoint.get("clip_reference") is not None:  # older checkpoints have none
            state.clip_reference = torch.tensor(float(checkpoint["clip_reference"]), device=run.device)
        _set_rng_state(checkpoint["rng"])
        state.start_step = checkpoint["iteration"] - phase.first_iteration + 2
        run.emit(ResumeEvent(iteration=checkpoint["iteration"]))

    run.emit(StartEvent(
        total_iterations=run.total, device=str(run.device),
        resumed_from=phase.first_iteration + state.start_step - 2 if state.start_step > 1 else 0,
        num_train=len(run.x_train), num_classes=run.data.num_classes,
        actual_noise_rate=run.data.actual_noise_rate,
        clean_labels=run.data.y_train_clean.numpy(), noisy_labels=phase.labels.cpu().numpy(),
        is_noisy=run.data.is_noisy.numpy(), phase=phase.name))
    return state


def _train_step(run: _Run, state: _PhaseState, step: int, iteration: int) -> None:
    """One optimisation step, its divergence check, and its ScalarsEvent and HistogramEvent."""
    config = run.config
    if config.dataset.balanced_sampler:
        idx = balanced_batch_indices(state.phase.labels.cpu(), config.batch_size, step - 1,
                                     config.seed, config.dataset.classes_per_batch)
    else:
        idx = batch_indices(len(run.x_train), config.batch_size, step - 1, config.seed)
    idx = idx.to(run.device)
    x, y = run.x_train[idx], state.phase.labels[idx]
    if run.augment:
        x = augment_batch(x)

    state.model.train()
    with torch.autocast(device_type=run.device.type, enabled=state.use_amp):
        logits = state.model(x)
    # Each example's index in the training set reaches the loss that keeps per-example state;
    # a two-network method gets both networks' logits and the (fractional) epoch.
    if state.loss_takes_index:
        loss = state.loss_fn(logits.float(), y, index=idx)
    elif state.two_networks:
        loss = state.loss_fn(logits.float(), y, epoch=(step - 1) * config.batch_size / len(run.x_train))
        logits = logits[0]  # the first network's: what the statistics and the check describe
    else:
        loss = state.loss_fn(logits.float(), y)
    state.optimizer.zero_grad(set_to_none=True)
    state.scaler.scale(loss).backward()
    grad_norm, clip_scale = _unscale_and_clip(state, config.optimizer, step)

    stats = step_statistics(loss, logits, y, state.loss_fn.last, run.is_noisy[idx],
                            config.histogram_bins, grad_norm, clip_scale)
    _check_divergence(run, state, iteration, stats)
    # Each example of the batch, by its index in the training set: from this forward pass
    # (queued, and folded in many steps at once: dm_core.example_stats).
    state.examples.update(idx, logits, y, state.loss_fn.last.p, state.loss_fn.last.weight, iteration)

    state.scaler.step(state.optimizer)
    state.scaler.update()
    lr = state.optimizer.param_groups[0]["lr"]  # the rate this step used, before the schedule moves it
    if state.warmup is not None:
        state.warmup.step()
    state.scheduler.step()

    values = {"lr": lr, **stats.values}
    state.last_logged = (iteration, values)
    run.emit(ScalarsEvent(iteration=iteration, values=values))
    run.emit(HistogramEvent(iteration=iteration, clean=stats.hist_clean, noisy=stats.hist_noisy))


def _unscale_and_clip(state: _PhaseState, opt: Any, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The gradient's global L2 norm before clipping (unscaled: AMP's scale divided out) and
    the factor clipping scaled it by (1: not clipped), after clipping at the fixed and the
    relative threshold in force at this step of the phase (``dm_core.clipping``). 0-d
    tensors: no device→host copy."""
    state.scaler.unscale_(state.optimizer)
    grads = [p.grad for p in state.model.parameters() if p.grad is not None]
    norm = torch.nn.utils.get_total_norm(grads)
    tau = clipping.threshold(opt.clip, opt.clip_factor, state.clip_reference,
                             step=step, after=opt.clip_relative_after)
    scale = clipping.clip_(grads, norm, tau)
    state.clip_reference = clipping.updated_reference(state.clip_reference, norm, tau)
    return norm, scale


@dataclass(frozen=True)
class StepStatistics:
    """What one step logs: ``values`` (the ScalarsEvent's, without ``lr``), the step's
    largest ``|logit|`` (for the divergence check) and the histograms of ``p_i``."""

    values: dict[str, float]
    logit_max: float
    hist_clean: np.ndarray
    hist_noisy: np.ndarray


def step_statistics(loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor, stats: Any,
                    is_noisy: torch.Tensor, bins: int, grad_norm: torch.Tensor,
                    clip_scale: torch.Tensor | None = None) -> StepStatistics:
    """One step's statistics from its loss, logits, labels ``y``, the loss's ``LossStats``,
    the batch's noise mask, the pre-clip gradient norm and the factor clipping scaled the
    step by (logged as ``clip_scale``: 1 when clipping did not bind).

    Everything in one device→host copy: this is a sync point (after the backward pass is
    queued, so the device is busy while the host waits). A value that is not finite (the
    loss of a diverging step, a concentration of all-zero weights, an AMP overflow's
    gradient norm) is left out of ``values``: the divergence check reads ``loss`` and
    ``logit_max`` from the figures it is given.
    """
    p, weight = stats.p.float(), stats.weight.float() * len(y)
    clean = ~is_noisy
    bin_of = (p * bins).long().clamp_(0, bins - 1)
    hist_clean = torch.bincount(bin_of[clean], minlength=bins)
    hist_noisy = torch.bincount(bin_of[is_noisy], minlength=bins)
    ess_fraction, max_share = concentration(stats.weight)
    row = torch.stack([
        loss.detach().float(), logits.detach().abs().max().float(),
        # Cross-entropy against the training labels, comparable across every method
        # (a scheme loss's own value is a surrogate whose gradient, not value, is designed).
        -torch.log(p.clamp(min=1e-12)).mean(),
        (logits.detach().argmax(1) == y).float().mean(),
        _masked_mean(p, clean), _masked_mean(p, is_noisy),
        weight.mean(), weight.var(unbiased=False),
        clean.sum().float(), is_noisy.sum().float(),
        ess_fraction, max_share, grad_norm.float(),
        (clip_scale if clip_scale is not None else torch.ones((), device=p.device)).float(),
    ]).tolist()
    (loss_v, logit_max, ce, batch_acc, p_clean, p_noisy, w_mean, w_var, n_clean, n_noisy,
     ess, share, norm, scale) = row
    values = {"loss": loss_v, "ce": ce, "batch_acc": batch_acc, "weight_mean": w_mean,
              "weight_var": w_var, "ess_fraction": ess, "max_share": share, "grad_norm": norm,
              "clip_scale": scale}
    if n_clean:
        values["p_clean_mean"] = p_clean
    if n_noisy:
        values["p_noisy_mean"] = p_noisy
    values = {k: v for k, v in values.items() if math.isfinite(v) or k == "loss"}
    return StepStatistics(values, logit_max, hist_clean.cpu().numpy().astype(np.int32),
                          hist_noisy.cpu().numpy().astype(np.int32))


def _check_divergence(run: _Run, state: _PhaseState, iteration: int, stats: StepStatistics) -> None:
    """Raise ``TrainingDiverged`` with the measured figures when the step's loss is not
    finite or its largest ``|logit|`` passed ``max_logit``."""
    config = run.config
    loss = stats.values["loss"]
    if math.isfinite(loss) and math.isfinite(stats.logit_max) and stats.logit_max <= config.max_logit:
        return
    figures: dict[str, Any] = {
        "loss": loss, "max_abs_logit": stats.logit_max, "max_logit": config.max_logit,
        "grad_norm": stats.values.get("grad_norm"), "ess_fraction": stats.values.get("ess_fraction"),
        "max_share": stats.values.get("max_share"),
        "lr": state.optimizer.param_groups[0]["lr"], "batch_size": config.batch_size,
        "clip_grad_norm": config.optimizer.clip, "clip_relative": config.optimizer.clip_factor,
        "clip_relative_after": config.optimizer.clip_relative_after, "warmup": config.optimizer.warmup,
    }
    if config.loss.name.startswith("dm") or config.loss.name.endswith("-dn"):
        figures["loss_eps"] = config.loss.params().get("eps", 1e-6)
    if state.last_logged is not None:
        before, values = state.last_logged
        figures["previous"] = {"iteration": before, **{
            k: values.get(k) for k in ("ess_fraction", "max_share", "grad_norm", "lr")}}
    raise TrainingDiverged(iteration, describe_divergence(iteration, figures), figures)


@torch.no_grad()
def _evaluate(run: _Run, state: _PhaseState, iteration: int) -> None:
    """Score the model on test, training (corrupted and intact) and validation data."""
    data, device, model = run.data, run.device, state.model
    train_prob = _probabilities(model, run.x_train)
    train_pred = train_prob.argmax(1)
    noisy, y_corrupted = run.is_noisy, run.y_corrupted
    values = {
        "test_acc": _accuracy(model, data.x_test.to(device), data.y_test.to(device)),
        "train_acc_corrupted": float((train_pred == y_corrupted).float().mean()),
        "train_acc_intact": float((train_pred == run.y_clean).float().mean()),
        # The paper's "fitting degree": of the corrupted examples, how many the model
        # predicts as their wrong label.
        "fit_corrupted_subset": (float((train_pred[noisy] == y_corrupted[noisy]).float().mean())
                                 if bool(noisy.any()) else 0.0),
    }
    if data.x_val is not None and len(data.x_val):
        values["val_acc"] = _accuracy(model, data.x_val.to(device), data.y_val.to(device))
        state.best["val_acc"] = max(state.best["val_acc"], values["val_acc"])
    state.best["test_acc"] = max(state.best["test_acc"], values["test_acc"])
    state.last_eval = dict(values)
    state.evals.append((iteration, dict(values)))
    run.emit(EvalEvent(iteration=iteration, values=values))
    arrays = state.examples.snapshot()
    quality = example_stats.label_quality(state.phase.labels, train_prob)
    if quality is not None:
        arrays["label_quality"] = quality
    run.emit(ExamplesEvent(iteration=iteration, arrays=arrays))


def _save_checkpoint(run: _Run, state: _PhaseState, iteration: int) -> None:
    """Write the full state after ``iteration`` (when the run has a checkpoint directory)."""
    if run.checkpoint_dir is None:
        return
    config = run.config
    payload = {
        "iteration": iteration, "phase": state.phase.name, "phase_results": run.phases_done,
        "config": config.model_dump(mode="json"),
        "model": state.model.state_dict(), "optimizer": state.optimizer.state_dict(),
        "loss": state.loss_fn.state_dict(),
        "scheduler": state.scheduler.state_dict(),
        "warmup": state.warmup.state_dict() if state.warmup is not None else None,
        "scaler": state.scaler.state_dict(),
        "rng": _get_rng_state(), "best": state.best, "last_eval": state.last_eval,
        "evals": state.evals, "clip_reference": float(state.clip_reference),
        "examples": state.examples.state_dict(),
        "model_args": {"name": config.model.name, "num_classes": run.data.num_classes,
                       "input_shape": list(run.data.input_shape), **config.model.params()},
    }
    path = checkpoints.write_atomically(payload, run.checkpoint_dir)
    run.emit(CheckpointEvent(iteration=iteration, path=str(path)))


def _phase_results(run: _Run, state: _PhaseState) -> dict[str, Any]:
    last_eval, best = state.last_eval, state.best
    selected = select_evaluation(state.evals)
    return {
        "test_acc_final": last_eval["test_acc"], "test_acc_best": best["test_acc"],
        "train_acc_corrupted": last_eval["train_acc_corrupted"],
        "train_acc_intact": last_eval["train_acc_intact"],
        "fit_corrupted_subset": last_eval["fit_corrupted_subset"],
        "val_acc_best": best["val_acc"] if best["val_acc"] >= 0 else None,
        "val_acc_final": last_eval.get("val_acc"),
        "val_acc_selected": selected.val_acc if selected else None,
        "test_acc_selected": selected.test_acc if selected else None,
        "selected_iteration": selected.iteration if selected else None,
        "predictions": run.phases_done.get("predictions"),
    }


# ---------------------------------------------------------------------- helpers

def _make_optimizer(config: RunConfig, model: nn.Module) -> torch.optim.Optimizer:
    opt = config.optimizer
    if opt.name == "adam":
        return torch.optim.Adam(model.parameters(), lr=opt.lr, weight_decay=opt.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=opt.lr, momentum=opt.momentum,
                           nesterov=opt.nesterov, weight_decay=opt.weight_decay)


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    # Without a branch: a mean over an empty group is 0 here and is not logged.
    return (values * mask).sum() / mask.sum().clamp(min=1)


@torch.no_grad()
def _probabilities(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's softmax over ``x`` (float32), in chunks, in evaluation mode."""
    model.eval()
    return torch.cat([torch.softmax(model(x[i:i + EVAL_CHUNK]).float(), dim=1)
                      for i in range(0, len(x), EVAL_CHUNK)])


@torch.no_grad()
def _predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    return torch.cat([model(x[i:i + EVAL_CHUNK]).argmax(1) for i in range(0, len(x), EVAL_CHUNK)])


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((_predict(model, x) == y).float().mean()) if len(x) else 0.0


def _get_rng_state() -> dict[str, Any]:
    return {"cpu": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["cpu"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
