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
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DM_SETTINGS = ((0.5, 16.0), (1.0, 12.0), (1.0, 20.0), (2.0, 12.0), (0.0, 12.0))
DATASETS = ("digits", "generated")
# The settings compared at each noise rate: without noise only whether anything diverges, and
# what the default costs against the relative clip from the first step (the default before
# the clip waited for its first 100 steps: ``EARLY``).
EARLY = "default,rel=2,after=0"
SETTINGS = {0.4: ("default", "off", "rel=2", EARLY), 0.0: ("default", EARLY)}


def priority(job: dict) -> int:
    """The order runs are trained in, the verdicts' runs first, so that an interrupted
    benchmark has answered the main questions; --resume fills in the rest: every loss at its
    defaults with noise, DM's unclipped twins (its cost), the defaults on clean data, the
    other losses unclipped, then the stabilisers one by one."""
    dm = job["method"].startswith("dm")
    if job["setting"] == "default":
        return 0 if job["noise"] > 0 else 2
    if job["setting"] == "off":
        return 1 if dm else 3
    return 4
# Final test accuracy below twice chance (10 classes: 20%) is a collapse: the run did not
# diverge by the logit guard, but it learned nothing a user would keep.
COLLAPSE_BELOW = 0.2


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
    cfg["optimizer"].pop("clip_relative_after", None)
    cfg["optimizer"].pop("weight_decay")  # OptimizerConfig's default unless a setting says
    data = {"name": "digits"} if dataset == "digits" else {"name": "arrays", "path": str(data_path)}
    cfg["dataset"] = {**data, "noise": {"kind": "symmetric", "rate": noise}, "val_fraction": 0.0}
    return cfg


def setting_overrides(setting: str) -> list[str]:
    """``off`` → no clipping, no warm-up; ``default`` → the config's and the loss's defaults;
    else e.g. ``clip=3``, ``rel=2``, ``clip=1,rel=2,warmup=200``, ``rel=4,after=100`` (the
    relative clip from step 101; an omitted one is off), or
    ``default,wd=5e-4`` (the defaults but the named ones). ``wd`` is the weight decay
    (``OptimizerConfig``'s default unless given)."""
    tokens = [part.strip() for part in setting.split(",") if part.strip()]
    values = dict(part.split("=", 1) for part in tokens if "=" in part)
    unknown = set(values) - {"clip", "rel", "after", "warmup", "wd"} or set(tokens) - set(
        f"{k}={v}" for k, v in values.items()) - {"off", "default"}
    if unknown:
        raise SystemExit(f"--setting {setting!r}: unknown {sorted(unknown)}; use off, default, "
                         "clip=, rel=, after=, warmup=, wd=")
    keys = {"clip": "optimizer.clip_grad_norm", "rel": "optimizer.clip_relative",
            "after": "optimizer.clip_relative_after", "warmup": "optimizer.warmup",
            "wd": "optimizer.weight_decay"}
    if "default" in tokens:
        return [f"{keys[k]}={v}" for k, v in values.items()]
    out = [f"optimizer.clip_grad_norm={float(values.get('clip', 0))}",
           f"optimizer.clip_relative={float(values.get('rel', 0))}",
           f"optimizer.clip_relative_after={int(values.get('after', 0))}",
           f"optimizer.warmup={int(values.get('warmup', 0))}"]
    return out + ([f"optimizer.weight_decay={float(values['wd'])}"] if "wd" in values else [])


def methods(only: list[str], dm_grid: bool = True) -> list[tuple[str, dict]]:
    """(label, loss config): every registered loss at its defaults, DM also over DM_SETTINGS
    (unless ``dm_grid`` is off)."""
    from dm_core.losses import list_losses

    out = []
    for name in only or list_losses():
        out.append((name, {"name": name}))
        if name == "dm" and dm_grid:
            out += [(f"dm λ={lam:g} β={beta:g}", {"name": "dm", "lam": lam, "beta": beta})
                    for lam, beta in DM_SETTINGS]
    return out


def resolved(job: dict) -> str:
    """The job's whole configuration after defaults, as JSON: two settings that resolve to the
    same configuration (``rel=2`` and ``default`` for a loss with no fixed clip of its own)
    are the same run, trained once."""
    from dm_core.config import parse_config

    cfg = parse_config({**job["base"], "loss": job["loss"], "seed": job["seed"]},
                       setting_overrides(job["setting"]))
    return json.dumps(cfg.model_dump(mode="json"), sort_keys=True)


def run_one(job: dict) -> dict:
    import torch

    from dm_core import fused_cpu
    from dm_core.config import parse_config
    from dm_core.events import ScalarsEvent, TrainingDiverged
    from dm_core.train import train

    torch.set_num_threads(1)
    fused_cpu.kernel()  # a first build (about 30 s) must not be timed as this run's training
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
    result["collapsed"] = result["test_acc"] is not None and result["test_acc"] < COLLAPSE_BELOW
    return {**{k: job[k] for k in ("dataset", "noise", "setting", "method", "seed")}, **result,
            "clipped": clipped, "seconds": time.perf_counter() - started,
            "clip_grad_norm": cfg.optimizer.clip, "clip_relative": cfg.optimizer.clip_factor}


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}"


def summarise(results: list[dict]) -> list[str]:
    """The table and the verdict lines."""
    lines = [f"{'dataset':<10} {'noise':>5}  {'setting':<21} {'method':<16} {'runs':>4} {'div':>3}  "
             f"{'test %':>6}  {'fit corr %':>10}  {'clipped':>7}  diverged at"]
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        groups.setdefault((r["dataset"], r["noise"], r["setting"], r["method"]), []).append(r)
    for (dataset, noise, setting, method), rs in groups.items():
        at = [r["diverged_at"] for r in rs if r["diverged_at"] is not None]
        ok = [r for r in rs if r["diverged_at"] is None]
        lines.append(
            f"{dataset:<10} {noise:>5.2f}  {setting:<21} {method:<16} {len(rs):>4} {len(at):>3}  "
            f"{_pct(_mean([r['test_acc'] for r in ok])):>6}  "
            f"{_pct(_mean([r['fit_corrupted'] for r in ok])):>10}  "
            f"{statistics.fmean(r['clipped'] for r in rs):>7.0%}  {', '.join(map(str, at))}")
    lines.append(f"# {len(results)} runs, median {statistics.median(r['seconds'] for r in results):.1f} s per run")

    # "At its defaults": every registered loss as registered; the other DM grid points are
    # reported above but are not a loss's defaults.
    defaults = [r for r in results if r["setting"] == "default" and " " not in r["method"]]
    if defaults:
        failed = [r for r in defaults if r["diverged_at"] is not None or r.get("collapsed")]
        named = sorted({f"{r['method']} ({r['dataset']}, r={r['noise']:g}, "
                        f"{'diverged' if r['diverged_at'] is not None else 'collapsed'})" for r in failed})
        verdict = "met" if not failed else "MISSED: " + ", ".join(named)
        lines.append(f"verdict: every registered loss at its defaults (both datasets, both noise "
                     f"rates), diverged or collapsed (final test accuracy < {COLLAPSE_BELOW:.0%}): "
                     f"{len(failed)} of {len(defaults)} runs (target 0) {verdict}")
    grid = [r for r in results if r["setting"] == "default" and " " in r["method"]]
    if grid:
        failed = [r for r in grid if r["diverged_at"] is not None or r.get("collapsed")]
        lines.append(f"DM's other grid points at the default stabilisers: {len(failed)} of "
                     f"{len(grid)} runs diverged or collapsed"
                     + (": " + ", ".join(sorted({f"{r['method']} ({r['dataset']}, r={r['noise']:g})"
                                                 for r in failed})) if failed else ""))
    lines += dm_cost_lines(results)
    return lines


def dm_cost_lines(results: list[dict]) -> list[str]:
    """DM's final test accuracy at the defaults against its unclipped runs, per (dataset,
    noise, DM setting), over the seeds where neither diverged (paired by seed)."""
    def key(r: dict) -> tuple:
        return r["dataset"], r["noise"], r["method"], r["seed"]

    off = {key(r): r for r in results if r["setting"] == "off" and r["diverged_at"] is None}
    gaps: dict[tuple, list[float]] = {}
    collapsed_pairs = 0
    for r in results:
        if (r["setting"] == "default" and r["method"].startswith("dm") and r["method"][2:3] in ("", " ")
                and r["noise"] > 0 and r["diverged_at"] is None and key(r) in off):
            if r.get("collapsed") or off[key(r)].get("collapsed"):
                collapsed_pairs += 1
                continue
            gaps.setdefault(key(r)[:3], []).append(r["test_acc"] - off[key(r)]["test_acc"])
    if not gaps:
        return []
    lines = ["DM at the defaults minus DM unclipped, final test accuracy (points; paired seeds "
             "where neither diverged):"]
    for (dataset, noise, method), g in gaps.items():
        lines.append(f"  {dataset:<10} r={noise:g} {method:<16} {statistics.fmean(g) * 100:+6.1f} "
                     f"(n={len(g)}: {', '.join(f'{x * 100:+.1f}' for x in g)})")
    # A paired t-interval on the pooled differences: "within a point" is met when the whole
    # 95% interval lies above -1 point, missed when it lies below, and inconclusive otherwise.
    # Pairs where either side collapsed are left out (and counted), as a single collapsed
    # unclipped run would carry the mean. Over the whole (λ, β) grid that is a description,
    # not a verdict: the large-β points, which fall apart unclipped, gain tens of points and
    # their spread widens the interval both ways whatever the other points do; the lowest
    # single pair says whether any setting paid.
    pooled = [x for g in gaps.values() for x in g]
    if len({method for _, _, method in gaps}) > 1:
        lines.append(interval_verdict(pooled, collapsed_pairs, prefix="over the grid",
                                      label="DM's final test accuracy at the defaults minus "
                                            "unclipped (noisy runs, every (λ, β) point)")
                     + f"; lowest pair {min(pooled) * 100:+.1f}, {sum(x < -0.01 for x in pooled)} "
                       "below -1")
    # DM at its registry defaults says what a user gets without choosing: the verdicts.
    # Per dataset too: a cost on one dataset is not averaged away by another.
    at_defaults = {dataset: g for (dataset, _, method), g in gaps.items() if method == "dm"}
    if at_defaults:
        lines.append(interval_verdict([x for g in at_defaults.values() for x in g],
                                      label="DM at its registry defaults only"))
        lines += [interval_verdict(g, label=f"DM at its registry defaults on {dataset}")
                  for dataset, g in at_defaults.items()]
    return lines


def interval_verdict(pooled: list[float], collapsed_pairs: int = 0, margin: float = 0.01,
                     label: str = "DM's final test accuracy at the defaults minus unclipped "
                                  "(noisy runs)", prefix: str = "verdict") -> str:
    """The verdict line on DM's cost: mean paired difference, its 95% t-interval, and whether
    the interval clears ``-margin`` (met), lies below it (MISSED) or straddles it. With another
    ``prefix`` the same figures describe, and the benchmark table does not count them."""
    from scipy import stats

    n = len(pooled)
    mean = statistics.fmean(pooled)
    if n < 2:
        low, high = float("-inf"), float("inf")
    else:
        half = stats.t.ppf(0.975, n - 1) * statistics.stdev(pooled) / n ** 0.5
        low, high = mean - half, mean + half
    verdict = "met" if low >= -margin else "MISSED" if high < -margin else "inconclusive"
    return (f"{prefix}: {label}: mean "
            f"{mean * 100:+.2f} points over {n} paired runs, 95% interval [{low * 100:+.2f}, "
            f"{high * 100:+.2f}]" + (f" ({collapsed_pairs} pairs with a collapsed side left out)"
                                    if collapsed_pairs else "")
            + (f" (target: above {-margin * 100:g}) {verdict}" if prefix == "verdict" else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=3000)
    parser.add_argument("--seeds", type=int, default=3, help="seeds for the DM family")
    parser.add_argument("--other-seeds", type=int, default=2,
                        help="seeds for the losses outside the DM family")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="seeds run from this one (a fresh replicate: --first-seed 12)")
    parser.add_argument("--clean-seeds", type=int, default=1,
                        help="seeds without noise, where only divergence is asked about")
    parser.add_argument("--noise", default="0.4,0.0", help="comma-separated symmetric noise rates")
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--only", default="", help="comma-separated loss names (default: all)")
    parser.add_argument("--no-dm-grid", action="store_true",
                        help="DM at its registry defaults only, not over its (λ, β) grid")
    parser.add_argument("--setting", action="append", default=None,
                        help="'off', 'default', or e.g. 'clip=3', 'rel=2' (repeatable; default: "
                             "per noise rate, " + "; ".join(f"{k:g}: {', '.join(v)}" for k, v in SETTINGS.items()) + ")")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--jsonl", type=Path, help="also write every run as a JSON line here, as it ends")
    parser.add_argument("--resume", action="store_true",
                        help="read the runs already in --jsonl and run only the others")
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
                for label, loss in methods(only, dm_grid=not args.no_dm_grid):
                    if noise == 0 and " " in label:
                        continue  # on clean data, each loss at its defaults only
                    # DM's seeds pair up to measure its cost; the others' only describe them.
                    n = args.seeds if label.startswith("dm") else args.other_seeds
                    seeds = range(args.first_seed,
                                  args.first_seed + (n if noise > 0 else min(n, args.clean_seeds)))
                    jobs += [{"dataset": dataset, "noise": noise, "setting": setting,
                              "method": label, "seed": seed, "base": base, "loss": loss}
                             for seed in seeds]
        order = {_job_key(job): i for i, job in enumerate(jobs)}  # the table's order
        jobs.sort(key=priority)
        done = _read_done(args.jsonl) if args.jsonl and args.resume else []
        seen = {_job_key(r) for r in done}
        todo = [job for job in jobs if _job_key(job) not in seen]
        results = [r for r in done if _job_key(r) in {_job_key(j) for j in jobs}]
        # One run per distinct configuration; its result stands for every job resolving to it.
        twins: dict[str, list[dict]] = {}
        for job in todo:
            twins.setdefault(resolved(job), []).append(job)
        todo = [group[0] for group in twins.values()]
        copies = {_job_key(group[0]): group[1:] for group in twins.values()}
        print(f"# {len(jobs)} runs of {args.iterations} iterations ({len(todo)} distinct "
              f"configurations to train) on {args.jobs} process(es)"
              + (f", {len(results)} read back from {args.jsonl}" if done else ""), flush=True)
        # Streamed: each run is printed and appended to --jsonl as it ends, so a long
        # benchmark shows its rows as it goes and an interrupted one resumes (--resume).
        sink = args.jsonl.open("a" if args.resume else "w") if args.jsonl else None
        try:
            with ProcessPoolExecutor(args.jobs) as pool:
                futures = [pool.submit(run_one, job) for job in todo]
                for n, future in enumerate(as_completed(futures), 1):
                    r = future.result()
                    same = [{**r, **{k: job[k] for k in ("setting", "method")}}
                            for job in copies[_job_key(r)]]
                    results += [r, *same]
                    if sink:
                        sink.writelines(json.dumps(x) + "\n" for x in (r, *same))
                        sink.flush()
                    outcome = (f"diverged at {r['diverged_at']}" if r["diverged_at"] is not None
                               else f"test {_pct(r['test_acc'])}%, fits {_pct(r['fit_corrupted'])}%")
                    print(f"[{n}/{len(todo)}] {r['dataset']} r={r['noise']:g} {r['setting']} "
                          f"{r['method']} seed {r['seed']}: {outcome} ({r['seconds']:.0f} s)", flush=True)
        finally:
            if sink:
                sink.close()
    results.sort(key=lambda r: order[_job_key(r)])
    print("\n".join(summarise(results)), flush=True)


def _job_key(r: dict) -> tuple:
    return r["dataset"], r["noise"], r["setting"], r["method"], r["seed"]


def _read_done(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

if __name__ == "__main__":
    sys.exit(main())
