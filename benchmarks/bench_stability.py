"""Stabilisers in long runs: divergences and what each costs every loss, on two datasets.

The setup of ``configs/digits-symmetric-40-dm.yaml`` (MLP 256-256, SGD lr 0.1, momentum 0.9,
batch 128), at the constant rate for ``--iterations`` (3000: about 270 epochs of digits, long
enough for late memorisation), on scikit-learn's digits and on a 10-class dataset this script
generates (``make_classification``: 40 features, 5000 examples, written as an ``arrays``
``.npz``), at 40% and 0% symmetric noise. Every registered loss at its defaults, DM also at
six (λ, β) settings, each under the stabiliser settings compared:

- ``off``: no clipping, no warm-up;
- ``clip=3``: a fixed clip at norm 3 (the previous default);
- ``rel=2``: clipping at twice the gradient's running norm, alone;
- ``default``: the defaults of ``OptimizerConfig`` and of each loss's registry entry.

One row per (dataset, noise, setting, method): runs, divergences and where, the final test
accuracy and the share of corrupted examples the model fits at the end (mean over the runs
that did not diverge; test data are never used to choose anything here), and the share of
steps clipping scaled down. Targets: no divergence at the defaults, and DM's final test
accuracy at the defaults within a point of its unclipped runs that did not diverge.

    python benchmarks/bench_stability.py                                  # the whole grid
    python benchmarks/bench_stability.py --seeds 1 --iterations 300 --only dm,cce
    python benchmarks/bench_stability.py --setting off --setting rel=3 --jobs 2
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DM_SETTINGS = ((0.5, 8.0), (0.5, 16.0), (1.0, 12.0), (1.0, 20.0), (2.0, 12.0), (0.0, 12.0))
DATASETS = ("digits", "generated")
# The settings compared at each noise rate: without noise only whether anything diverges.
SETTINGS = {0.4: ("off", "clip=3", "rel=2", "default"), 0.0: ("off", "rel=2", "default")}


def generated_dataset(directory: Path) -> Path:
    """A 10-class problem the tests were never written for: scikit-learn's
    ``make_classification`` (40 features, 20 informative, 2 clusters per class), 4000
    training and 1000 test examples, standardised on the training split."""
    import numpy as np
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=5000, n_features=40, n_informative=20, n_redundant=10,
                               n_classes=10, n_clusters_per_class=2, class_sep=1.5,
                               random_state=2026)
    x = x.astype(np.float32)
    mean, std = x[:4000].mean(0), x[:4000].std(0) + 1e-6
    x = (x - mean) / std
    path = directory / "generated-10class.npz"
    np.savez(path, x_train=x[:4000], y_train=y[:4000].astype(np.int64),
             x_test=x[4000:], y_test=y[4000:].astype(np.int64))
    return path


def base_config(dataset: str, data_path: Path, noise: float, iterations: int) -> dict:
    from dm_core.config import load_config

    cfg = load_config(ROOT / "configs" / "digits-symmetric-40-dm.yaml").model_dump(mode="json")
    cfg.update(iterations=iterations, eval_every=iterations, device="cpu",
               schedule={"milestones": [], "gamma": 0.1})
    cfg["optimizer"].pop("clip_grad_norm")  # the loss's own default unless a setting says
    cfg["optimizer"].pop("clip_relative", None)
    data = {"name": "digits"} if dataset == "digits" else {"name": "arrays", "path": str(data_path)}
    cfg["dataset"] = {**data, "noise": {"kind": "symmetric", "rate": noise}, "val_fraction": 0.0}
    return cfg


def setting_overrides(setting: str) -> list[str]:
    """``off`` → no clipping, no warm-up; ``default`` → the config's and the loss's defaults;
    else e.g. ``clip=3``, ``rel=2``, ``clip=1,rel=2,warmup=200`` (an omitted one is off)."""
    if setting == "default":
        return []
    values = dict(part.split("=", 1) for part in setting.split(",") if "=" in part)
    return [f"optimizer.clip_grad_norm={float(values.get('clip', 0))}",
            f"optimizer.clip_relative={float(values.get('rel', 0))}",
            f"optimizer.warmup={int(values.get('warmup', 0))}"]


def methods(only: list[str]) -> list[tuple[str, dict]]:
    """(label, loss config): every registered loss at its defaults, DM also over DM_SETTINGS."""
    from dm_core.losses import list_losses

    out = []
    for name in only or list_losses():
        out.append((name, {"name": name}))
        if name == "dm":
            out += [(f"dm λ={lam:g} β={beta:g}", {"name": "dm", "lam": lam, "beta": beta})
                    for lam, beta in DM_SETTINGS]
    return out


def run_one(job: dict) -> dict:
    import torch

    from dm_core.config import parse_config
    from dm_core.events import ScalarsEvent, TrainingDiverged
    from dm_core.train import train

    torch.set_num_threads(1)
    cfg = parse_config({**job["base"], "loss": job["loss"], "seed": job["seed"]},
                       setting_overrides(job["setting"]))
    scales: list[float] = []

    def on_event(event: object) -> None:
        if isinstance(event, ScalarsEvent) and "clip_scale" in event.values:
            scales.append(event.values["clip_scale"])

    started = time.perf_counter()
    try:
        summary = train(cfg, on_event=on_event)
        result = {"diverged_at": None, "test_acc": summary.test_acc_final,
                  "fit_corrupted": summary.fit_corrupted_subset}
    except TrainingDiverged as err:
        result = {"diverged_at": err.iteration, "test_acc": None, "fit_corrupted": None}
    clipped = sum(s < 1.0 for s in scales) / len(scales) if scales else 0.0
    return {**{k: job[k] for k in ("dataset", "noise", "setting", "method", "seed")}, **result,
            "clipped": clipped, "seconds": time.perf_counter() - started,
            "clip_grad_norm": cfg.optimizer.clip, "clip_relative": cfg.optimizer.clip_factor}


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}"


def summarise(results: list[dict]) -> list[str]:
    """The table and the verdict lines."""
    lines = [f"{'dataset':<10} {'noise':>5}  {'setting':<8} {'method':<16} {'runs':>4} {'div':>3}  "
             f"{'test %':>6}  {'fit corr %':>10}  {'clipped':>7}  diverged at"]
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        groups.setdefault((r["dataset"], r["noise"], r["setting"], r["method"]), []).append(r)
    for (dataset, noise, setting, method), rs in groups.items():
        at = [r["diverged_at"] for r in rs if r["diverged_at"] is not None]
        ok = [r for r in rs if r["diverged_at"] is None]
        lines.append(
            f"{dataset:<10} {noise:>5.2f}  {setting:<8} {method:<16} {len(rs):>4} {len(at):>3}  "
            f"{_pct(_mean([r['test_acc'] for r in ok])):>6}  "
            f"{_pct(_mean([r['fit_corrupted'] for r in ok])):>10}  "
            f"{statistics.fmean(r['clipped'] for r in rs):>7.0%}  {', '.join(map(str, at))}")
    lines.append(f"# {len(results)} runs, median {statistics.median(r['seconds'] for r in results):.1f} s per run")

    defaults = [r for r in results if r["setting"] == "default"]
    if defaults:
        diverged = sorted({f"{r['method']} ({r['dataset']}, r={r['noise']:g})"
                           for r in defaults if r["diverged_at"] is not None})
        verdict = "met" if not diverged else "MISSED: " + ", ".join(diverged)
        lines.append(f"verdict: divergences at the defaults (every loss, both datasets, both noise "
                     f"rates): {sum(r['diverged_at'] is not None for r in defaults)} of "
                     f"{len(defaults)} runs (target 0) {verdict}")
    lines += dm_cost_lines(results)
    return lines


def dm_cost_lines(results: list[dict]) -> list[str]:
    """DM's final test accuracy at the defaults against its unclipped runs, per (dataset,
    noise, DM setting), over the seeds where neither diverged (paired by seed)."""
    def key(r: dict) -> tuple:
        return r["dataset"], r["noise"], r["method"], r["seed"]

    off = {key(r): r for r in results if r["setting"] == "off" and r["diverged_at"] is None}
    gaps: dict[tuple, list[float]] = {}
    for r in results:
        if (r["setting"] == "default" and r["method"].startswith("dm") and r["method"][2:3] in ("", " ")
                and r["diverged_at"] is None and key(r) in off):
            gaps.setdefault(key(r)[:3], []).append(r["test_acc"] - off[key(r)]["test_acc"])
    if not gaps:
        return []
    lines = ["DM at the defaults minus DM unclipped, final test accuracy (points; paired seeds "
             "where neither diverged):"]
    for (dataset, noise, method), g in gaps.items():
        lines.append(f"  {dataset:<10} r={noise:g} {method:<16} {statistics.fmean(g) * 100:+6.1f} "
                     f"(n={len(g)}: {', '.join(f'{x * 100:+.1f}' for x in g)})")
    # The median, not the mean: one paired run where the unclipped side collapsed (a
    # 40-point gap) would carry a mean. Inconclusive when the pairs spread wider than the
    # target's margin: two seeds a cell cannot place a one-point difference.
    pooled = [x for g in gaps.values() for x in g]
    middle = statistics.median(pooled)
    spread = statistics.stdev(pooled) if len(pooled) > 1 else float("inf")
    verdict = ("inconclusive" if spread > 0.01 else "met" if middle >= -0.01 else "MISSED")
    lines.append(f"verdict: DM's final test accuracy at the defaults vs unclipped: median "
                 f"{middle * 100:+.2f} points over {len(pooled)} paired runs, std "
                 f"{spread * 100:.1f} (target ≥ −1) {verdict}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=3000)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--noise", default="0.4,0.0", help="comma-separated symmetric noise rates")
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--only", default="", help="comma-separated loss names (default: all)")
    parser.add_argument("--setting", action="append", default=None,
                        help="'off', 'default', or e.g. 'clip=3', 'rel=2' (repeatable; default: "
                             "per noise rate, " + "; ".join(f"{k:g}: {', '.join(v)}" for k, v in SETTINGS.items()) + ")")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--jsonl", type=Path, help="also write every run as a JSON line here")
    args = parser.parse_args()
    only = [m.strip() for m in args.only.split(",") if m.strip()]

    with tempfile.TemporaryDirectory() as tmp:
        data_path = generated_dataset(Path(tmp))
        # The arrays loader reads only from the allowed data directories.
        os.environ["DM_DATA_DIRS"] = os.pathsep.join(filter(None, [tmp, os.environ.get("DM_DATA_DIRS")]))
        jobs = []
        for dataset, noise in itertools.product(args.datasets.split(","), map(float, args.noise.split(","))):
            base = base_config(dataset, data_path, noise, args.iterations)
            for setting in args.setting or SETTINGS.get(noise, ("off", "default")):
                for (label, loss), seed in itertools.product(methods(only), range(args.seeds)):
                    jobs.append({"dataset": dataset, "noise": noise, "setting": setting,
                                 "method": label, "seed": seed, "base": base, "loss": loss})
        print(f"# {len(jobs)} runs of {args.iterations} iterations on {args.jobs} process(es)", flush=True)
        with ProcessPoolExecutor(args.jobs) as pool:
            results = list(pool.map(run_one, jobs))
    if args.jsonl:
        args.jsonl.write_text("".join(json.dumps(r) + "\n" for r in results))
    print("\n".join(summarise(results)), flush=True)


if __name__ == "__main__":
    sys.exit(main())
