"""What the per-example statistics cost the training loop: each step of ``dm_core.train`` with
and without them, side by side in one run.

The loop's own ``_train_step`` is timed. Within one training run, steps alternate between
with (the real ``ExampleStatistics.update``) and without (replaced by a no-op), so the two
sides share the model's state and the machine's load. ``update`` only queues the batch; every
``FLUSH_ROWS`` examples the queue is folded in (``ExampleStatistics.flush``), inside one of the
with steps. So that this cost is counted where it belongs, each fold is timed on its own and
taken out of the step it fell in, and a with step is charged a fold's time per example times
the batch size (the median fold's for the median step, the fastest fold's for the fastest,
the folds' total over every example folded for the mean).

Two setups: an MLP on digits (a step of about a millisecond, where any fixed cost shows most)
and a ResNet-20 on CIFAR-shaped random tensors (3×32×32, batch 128, an ``arrays`` dataset
written to a temporary data directory). Evaluations (where the snapshot and cleanlab's score
are taken, once per ``eval_every`` steps) are not steps and are not timed; the snapshot's size
for 50,000 examples is printed.

Target (issue: per-example explorer): with/without ≤ 1.03 per step. Prints the medians and the
fastest steps with their ratios (folds spread over the with steps), the ratio of the means,
and one ``verdict:`` line per setup on the median and the fastest: met when both ratios are
within the target, MISSED when both are above, inconclusive when they disagree.

    python benchmarks/bench_example_stats.py [--steps 40] [--mlp-steps 400]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import dm_core.train as train_module
from dm_core.config import RunConfig
from dm_core.example_stats import FLUSH_ROWS, ExampleStatistics, label_quality, pack

TARGET = 1.03
WARMUP = 4  # first steps of a run, not counted (allocations, first-touch)


def timed_steps(config: RunConfig, steps: int) -> dict[str, list[float]]:
    """Train ``config`` for ``steps`` (+ warm-up) steps, alternating with and without the
    per-example update: each side's counted step times in seconds (a with step's without the
    fold it may have held), and each fold's time per example folded (``"fold_per_example"``)
    and its number of examples (``"fold_examples"``)."""
    real_update, real_flush = ExampleStatistics.update, ExampleStatistics.flush
    real_step = train_module._train_step
    now = {"with": True, "folded": 0.0}
    times: dict[str, list[float]] = {"with": [], "without": [], "fold_per_example": [],
                                     "fold_examples": []}

    def update(self, *args, **kwargs):
        if now["with"]:
            real_update(self, *args, **kwargs)

    def flush(self):
        rows = self.queued_rows
        t0 = time.perf_counter()
        real_flush(self)
        took = time.perf_counter() - t0
        if rows:
            times["fold_per_example"].append(took / rows)
            times["fold_examples"].append(rows)
        now["folded"] += took

    def step(run, state, step_no, iteration):
        now["with"], now["folded"] = step_no % 2 == 0, 0.0  # even steps with, odd without
        t0 = time.perf_counter()
        real_step(run, state, step_no, iteration)
        took = time.perf_counter() - t0 - now["folded"]
        if step_no > WARMUP:
            times["with" if now["with"] else "without"].append(took)

    ExampleStatistics.update, ExampleStatistics.flush = update, flush
    train_module._train_step = step
    try:
        train_module.train(config.model_copy(update={"iterations": steps + WARMUP,
                                                     "eval_every": steps + WARMUP}))
    finally:
        ExampleStatistics.update, ExampleStatistics.flush = real_update, real_flush
        train_module._train_step = real_step
    return times


def report(name: str, times: dict[str, list[float]], batch: int) -> None:
    n = min(len(times["with"]), len(times["without"]))
    per_example, examples = times["fold_per_example"], times["fold_examples"]
    folds = {"median": statistics.median(per_example), "fastest": min(per_example),
             "mean": sum(p * e for p, e in zip(per_example, examples, strict=True)) / sum(examples)}
    print(f"{name}: {len(examples)} folds of up to {FLUSH_ROWS:,} examples; per with step of "
          f"{batch}: " + ", ".join(f"{k} {v * batch * 1e3:.3f} ms" for k, v in folds.items()))
    ratios = {}
    for label, stat in (("median", statistics.median), ("fastest", min), ("mean", statistics.fmean)):
        with_, without = stat(times["with"]) + folds[label] * batch, stat(times["without"])
        ratios[label] = with_ / without
        print(f"{name} step, {label:7}  without {without * 1e3:8.3f} ms   with {with_ * 1e3:8.3f} ms   "
              f"with/without {ratios[label]:5.3f}  (target ≤ {TARGET})")
    median, fastest = ratios["median"], ratios["fastest"]
    both = (f"{name}: per-example statistics, with/without per step {median:.3f} (median), "
            f"{fastest:.3f} (fastest of {n})")
    if max(median, fastest) <= TARGET:
        print(f"verdict: {both} ≤ {TARGET}: met")
    elif min(median, fastest) > TARGET:
        print(f"verdict: {both} > {TARGET}: MISSED")
    else:
        print(f"verdict: {both}: inconclusive -- one estimate is within {TARGET} and one is not, "
              "so the machine's noise exceeds the target's margin; rerun on an idle machine")


def cifar_shaped(directory: Path, n: int) -> Path:
    """An ``arrays`` dataset of ``n`` random 3×32×32 training images in 10 classes."""
    rng = np.random.default_rng(0)
    path = directory / "cifar-shaped.npz"
    np.savez(path, x_train=rng.random((n, 3, 32, 32), dtype=np.float32),
             y_train=np.arange(n) % 10, x_test=rng.random((256, 3, 32, 32), dtype=np.float32),
             y_test=np.arange(256) % 10)
    return path


def snapshot_size(n: int) -> int:
    """Bytes of one stored snapshot of ``n`` examples, cleanlab's score included."""
    stats = ExampleStatistics(n)
    stats.update(torch.arange(128), torch.randn(128, 10), torch.randint(0, 10, (128,)),
                 torch.rand(128), torch.rand(128), iteration=1)
    arrays = stats.snapshot()
    quality = label_quality(torch.randint(0, 10, (n,)), torch.softmax(torch.randn(n, 10), dim=1))
    if quality is not None:
        arrays["label_quality"] = quality
    return len(pack(arrays))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="timed steps per setup (half each side)")
    parser.add_argument("--mlp-steps", type=int, default=400, help="timed MLP steps (half each side)")
    parser.add_argument("--train-size", type=int, default=5000,
                        help="random training images for the ResNet-20 (the update costs O(batch))")
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device cpu; steps "
          "alternate with/without the per-example update within one run")
    mlp = RunConfig.model_validate({
        "name": "bench-mlp", "seed": 0, "device": "cpu", "batch_size": 128,
        "dataset": {"name": "digits", "noise": {"kind": "symmetric", "rate": 0.4}},
        "model": {"name": "mlp", "hidden": [256, 256]}, "loss": {"name": "dm", "lam": 1.0, "beta": 12.0}})
    report("MLP on digits", timed_steps(mlp, args.mlp_steps), mlp.batch_size)
    with tempfile.TemporaryDirectory(prefix="dm-bench-examples-") as tmp:
        os.environ["DM_DATA_DIRS"] = tmp
        path = cifar_shaped(Path(tmp), args.train_size)
        resnet = RunConfig.model_validate({
            "name": "bench-resnet", "seed": 0, "device": "cpu", "batch_size": 128,
            "dataset": {"name": "arrays", "path": str(path),
                        "noise": {"kind": "symmetric", "rate": 0.4}},
            "model": {"name": "resnet20"}, "loss": {"name": "dm", "lam": 1.0, "beta": 12.0}})
        report(f"ResNet-20 on {args.train_size:,} random 3×32×32", timed_steps(resnet, args.steps),
               resnet.batch_size)
    size = snapshot_size(50_000)
    print(f"snapshot of 50,000 examples: {size:,} bytes ({size / 50_000:.1f} per example), "
          "one per evaluation")


if __name__ == "__main__":
    main()
