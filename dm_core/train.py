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
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dm_core.config import RunConfig
from dm_core.data import (
    DataBundle,
    augment_batch,
    balanced_batch_indices,
    batch_indices,
    load_dataset,
)
from dm_core.devices import resolve_device
from dm_core.events import (
    CheckpointEvent,
    EvalEvent,
    Event,
    HistogramEvent,
    ResumeEvent,
    RunSummary,
    ScalarsEvent,
    StartEvent,
    TrainingDiverged,
    TrainingInterrupted,
)
from dm_core.losses import make_loss
from dm_core.models import create_model

CHECKPOINT_NAME = "checkpoint.pt"
EVAL_CHUNK = 1024  # examples per forward pass when evaluating


@dataclass
class _Phase:
    """One pass of training: ``train`` on the given labels, or ``relabel`` on predictions."""

    name: str
    labels: torch.Tensor  # the labels this phase trains on
    first_iteration: int  # global iteration number of this phase's first step


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
    """
    emit = on_event or (lambda event: None)
    started = time.perf_counter()

    # ------------------------------------------------------------------ device and data
    device = resolve_device(config.device)
    data = load_dataset(
        config.dataset.name,
        seed=config.seed,
        noise_kind=config.dataset.noise.kind,
        noise_rate=config.dataset.noise.rate,
        noise_params=config.dataset.noise.extra_params(),
        val_fraction=config.dataset.val_fraction,
        **config.dataset.params(),
    )
    augment = data.augment if config.dataset.augment is None else config.dataset.augment
    x_train = data.x_train.to(device)
    y_clean = data.y_train_clean.to(device)
    is_noisy = data.is_noisy.to(device)

    # ------------------------------------------------------------------ start or resume
    checkpoint = _load_checkpoint(resume_from) if resume_from else None
    if checkpoint is not None:
        _check_same_run(config, checkpoint)
    phases_done: dict[str, Any] = checkpoint["phase_results"] if checkpoint else {}
    total = config.iterations * (2 if config.relabel else 1)

    phase = _Phase("train", data.y_train.to(device), 1)
    results = phases_done.get("train")
    if results is None:
        results = _run_phase(config, data, phase, x_train, y_clean, is_noisy, augment, device,
                             total, checkpoint, phases_done, checkpoint_dir, emit, should_stop)
        phases_done = {"train": results}
        checkpoint = None

    relabel_results = None
    if config.relabel:
        # Label correction (the paper's Table 9): train again from scratch on the first
        # model's own predictions of the training set.
        predicted = torch.as_tensor(phases_done.get("relabel_labels", results["predictions"]),
                                    dtype=torch.long, device=device)
        phases_done["relabel_labels"] = predicted.tolist()
        phase = _Phase("relabel", predicted, config.iterations + 1)
        relabel_results = _run_phase(config, data, phase, x_train, y_clean, is_noisy, augment,
                                     device, total, checkpoint, phases_done, checkpoint_dir, emit,
                                     should_stop)
        label_acc = float((predicted == y_clean).float().mean())
        relabel_results = {**_public(relabel_results), "label_accuracy": label_acc,
                           "noise_rate_after": 1.0 - label_acc}

    return RunSummary(
        **_public(results),
        actual_noise_rate=data.actual_noise_rate,
        iterations=total,
        seconds=time.perf_counter() - started,
        device=str(device),
        relabel=relabel_results,
    )


def _public(results: dict[str, Any]) -> dict[str, Any]:
    keys = ("test_acc_final", "test_acc_best", "train_acc_corrupted", "train_acc_intact",
            "fit_corrupted_subset", "val_acc_best", "val_acc_final")
    return {k: results[k] for k in keys}


def _run_phase(config: RunConfig, data: DataBundle, phase: _Phase, x_train: torch.Tensor,
               y_clean: torch.Tensor, is_noisy: torch.Tensor, augment: bool, device: torch.device,
               total: int, checkpoint: dict[str, Any] | None, phases_done: dict[str, Any],
               checkpoint_dir: str | Path | None, emit: Callable[[Event], None],
               should_stop: Callable[[], str | None] | None) -> dict[str, Any]:
    """Train one phase from scratch (or from ``checkpoint``) and return its final scores."""
    # ------------------------------------------------------------------ model, loss, optimiser
    torch.manual_seed(config.seed)  # the same initial weights for every run with this seed
    model = create_model(config.model.name, data.num_classes, data.input_shape,
                         **config.model.params()).to(device)
    loss_fn = make_loss(config.loss.name, **config.loss.params())
    optimizer = _make_optimizer(config, model)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=config.schedule.milestones, gamma=config.schedule.gamma)
    use_amp = config.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    best = {"test_acc": -1.0, "val_acc": -1.0}
    last_eval: dict[str, float] = {}

    start_step = 1  # 1-based step within this phase
    if checkpoint is not None and checkpoint["phase"] == phase.name:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        scaler.load_state_dict(checkpoint["scaler"])
        best, last_eval = dict(checkpoint["best"]), dict(checkpoint["last_eval"])
        _set_rng_state(checkpoint["rng"])
        start_step = checkpoint["iteration"] - phase.first_iteration + 2
        emit(ResumeEvent(iteration=checkpoint["iteration"]))

    emit(StartEvent(
        total_iterations=total, device=str(device),
        resumed_from=phase.first_iteration + start_step - 2 if start_step > 1 else 0,
        num_train=len(x_train), num_classes=data.num_classes,
        actual_noise_rate=data.actual_noise_rate,
        clean_labels=data.y_train_clean.numpy(), noisy_labels=phase.labels.cpu().numpy(),
        is_noisy=data.is_noisy.numpy(), phase=phase.name))

    def save_checkpoint(iteration: int) -> None:
        if checkpoint_dir is None:
            return
        state = {
            "iteration": iteration, "phase": phase.name, "phase_results": phases_done,
            "config": config.model_dump(mode="json"),
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
            "rng": _get_rng_state(), "best": best, "last_eval": last_eval,
            "model_args": {"name": config.model.name, "num_classes": data.num_classes,
                           "input_shape": list(data.input_shape), **config.model.params()},
        }
        path = _write_atomically(state, Path(checkpoint_dir))
        emit(CheckpointEvent(iteration=iteration, path=str(path)))

    # Both phases are scored against the original corrupted labels (not against what the
    # phase trains on, which in the relabel phase is the first model's predictions).
    y_corrupted = data.y_train.to(device)

    def evaluate(iteration: int) -> None:
        train_pred = _predict(model, x_train)
        noisy = is_noisy
        values = {
            "test_acc": _accuracy(model, data.x_test.to(device), data.y_test.to(device)),
            "train_acc_corrupted": float((train_pred == y_corrupted).float().mean()),
            "train_acc_intact": float((train_pred == y_clean).float().mean()),
            # The paper's "fitting degree": of the corrupted examples, how many the model
            # predicts as their wrong label.
            "fit_corrupted_subset": (float((train_pred[noisy] == y_corrupted[noisy]).float().mean())
                                     if bool(noisy.any()) else 0.0),
        }
        if data.x_val is not None and len(data.x_val):
            values["val_acc"] = _accuracy(model, data.x_val.to(device), data.y_val.to(device))
            best["val_acc"] = max(best["val_acc"], values["val_acc"])
        best["test_acc"] = max(best["test_acc"], values["test_acc"])
        last_eval.clear()
        last_eval.update(values)
        emit(EvalEvent(iteration=iteration, values=values))

    # ------------------------------------------------------------------ the loop
    # Per step, in a fixed order: batch → forward → backward → read the step's statistics →
    # divergence check → optimiser step → log → evaluate and checkpoint → stop if asked.
    # The check comes before the step, so a diverged step never reaches the weights, and
    # nothing of the diverged iteration is emitted.
    n = len(x_train)
    bins = config.histogram_bins
    for step in range(start_step, config.iterations + 1):
        iteration = phase.first_iteration + step - 1

        if config.dataset.balanced_sampler:
            idx = balanced_batch_indices(phase.labels.cpu(), config.batch_size, step - 1, config.seed,
                                         config.dataset.classes_per_batch)
        else:
            idx = batch_indices(n, config.batch_size, step - 1, config.seed)
        idx = idx.to(device)
        x, y = x_train[idx], phase.labels[idx]
        if augment:
            x = augment_batch(x)

        model.train()
        with torch.autocast(device_type=device.type, enabled=use_amp):
            logits = model(x)
        loss = loss_fn(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()

        # Everything logged this step in one device→host copy: this is a sync point (after
        # the backward pass is queued, so the device is busy while the host waits).
        stats = loss_fn.last
        p, weight = stats.p.float(), stats.weight.float() * len(y)
        noisy_b = is_noisy[idx]
        clean_b = ~noisy_b
        bin_of = (p * bins).long().clamp_(0, bins - 1)
        hist_clean = torch.bincount(bin_of[clean_b], minlength=bins)
        hist_noisy = torch.bincount(bin_of[noisy_b], minlength=bins)
        row = torch.stack([
            loss.detach().float(), logits.detach().abs().max().float(),
            # Cross-entropy against the training labels, comparable across every method
            # (a scheme loss's own value is a surrogate whose gradient, not value, is designed).
            -torch.log(p.clamp(min=1e-12)).mean(),
            (logits.detach().argmax(1) == y).float().mean(),
            _masked_mean(p, clean_b), _masked_mean(p, noisy_b),
            weight.mean(), weight.var(unbiased=False),
            clean_b.sum().float(), noisy_b.sum().float(),
        ]).tolist()
        loss_v, logit_max, ce, batch_acc, p_clean, p_noisy, w_mean, w_var, n_clean, n_noisy = row

        if not math.isfinite(loss_v) or not math.isfinite(logit_max) or logit_max > config.max_logit:
            raise TrainingDiverged(iteration, _divergence_message(config, iteration, loss_v, logit_max))

        scaler.step(optimizer)
        scaler.update()
        lr = optimizer.param_groups[0]["lr"]  # the rate this step used, before the schedule moves it
        scheduler.step()

        values = {"loss": loss_v, "ce": ce, "lr": lr, "batch_acc": batch_acc,
                  "weight_mean": w_mean, "weight_var": w_var}
        if n_clean:
            values["p_clean_mean"] = p_clean
        if n_noisy:
            values["p_noisy_mean"] = p_noisy
        emit(ScalarsEvent(iteration=iteration, values=values))
        emit(HistogramEvent(iteration=iteration,
                            clean=hist_clean.cpu().numpy().astype(np.int32),
                            noisy=hist_noisy.cpu().numpy().astype(np.int32)))

        last_step = step == config.iterations
        if step % config.eval_every == 0 or last_step:
            evaluate(iteration)
            save_checkpoint(iteration)

        reason = should_stop() if should_stop is not None else None
        if reason and not last_step:
            save_checkpoint(iteration)
            path = str(Path(checkpoint_dir) / CHECKPOINT_NAME) if checkpoint_dir else None
            raise TrainingInterrupted(iteration, reason, path)

    if phase.name == "train":
        phases_done["predictions"] = _predict(model, x_train).tolist() if config.relabel else None
    results = {
        "test_acc_final": last_eval["test_acc"], "test_acc_best": best["test_acc"],
        "train_acc_corrupted": last_eval["train_acc_corrupted"],
        "train_acc_intact": last_eval["train_acc_intact"],
        "fit_corrupted_subset": last_eval["fit_corrupted_subset"],
        "val_acc_best": best["val_acc"] if best["val_acc"] >= 0 else None,
        "val_acc_final": last_eval.get("val_acc"),
        "predictions": phases_done.get("predictions"),
    }
    return results


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
def _predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    return torch.cat([model(x[i:i + EVAL_CHUNK]).argmax(1) for i in range(0, len(x), EVAL_CHUNK)])


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((_predict(model, x) == y).float().mean()) if len(x) else 0.0


def _divergence_message(config: RunConfig, iteration: int, loss: float, logit_max: float) -> str:
    what = ("the loss is not finite" if not math.isfinite(loss)
            else f"the logits exploded (max |logit| {logit_max:.3g} > max_logit {config.max_logit:g})")
    hints = [f"the learning rate ({config.optimizer.lr:g}) may be too high"]
    params = config.loss.params()
    if params.get("eps", 1e-6) == 0 and config.loss.name.startswith("dm"):
        hints.insert(0, "with loss.eps=0 DM's batch gradient never decays, so logits grow "
                        "without bound (DESIGN.md §1): use the default eps=1e-6")
    if abs(params.get("beta", 0.0)) > 30:
        hints.append(f"loss.beta={params['beta']:g} gives a very peaked emphasis; try a smaller β")
    return f"diverged at iteration {iteration}: {what}. Likely cause: " + "; or ".join(hints) + "."


def _get_rng_state() -> dict[str, Any]:
    return {"cpu": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["cpu"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _write_atomically(state: dict[str, Any], directory: Path) -> Path:
    # Write then rename, so a crash mid-write never leaves a truncated checkpoint behind. A
    # failed write (disk full, no permission) removes its partial file -- on a full disk it
    # would only take more space -- and says which directory could not be written.
    path = directory / CHECKPOINT_NAME
    tmp = directory / (CHECKPOINT_NAME + ".tmp")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as err:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise OSError(err.errno, f"cannot write a checkpoint in {directory}: "
                                 f"{err.strerror or err}") from err
    return path


def _load_checkpoint(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"resume_from: checkpoint {str(p)!r} does not exist")
    # weights_only: a checkpoint is data, never code.
    return torch.load(p, map_location="cpu", weights_only=True)


def _check_same_run(config: RunConfig, checkpoint: dict[str, Any]) -> None:
    saved = dict(checkpoint["config"])
    current = config.model_dump(mode="json")
    for key in ("device", "name"):  # these may differ on the machine that resumes
        saved.pop(key, None)
        current.pop(key, None)
    if saved != current:
        diff = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
        raise ValueError(f"resume_from: the checkpoint belongs to a different config (differs in {', '.join(diff)})")


def load_checkpoint_config(path: str | Path) -> RunConfig:
    """The config a checkpoint was written with: enough to resume it anywhere."""
    return RunConfig.model_validate(_load_checkpoint(path)["config"])
