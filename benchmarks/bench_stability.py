"""Divergences on digits at lr 0.1, with and without the default stabilisers.

The setup of ``configs/digits-symmetric-40-dm.yaml`` (MLP 256-256, SGD lr 0.1, momentum 0.9,
batch 128) at 40% and 0% symmetric noise, over DM's grid λ∈{0,½,1,2} × β∈{0,4,8,12,16,20}
× seeds, and every other loss of ``make_loss`` at its default hyperparameters, each trained
``--iterations`` steps at the constant rate (divergence shows within a few hundred steps).
Prints one row per method and stabiliser setting: runs, divergences, the mean final
validation accuracy of the runs that finished, the mean share of steps whose gradient was
clipped, the iterations where runs diverged (a 10% clean split: never the test
set). Target: 0 DM divergences with the defaults (``OptimizerConfig``).

    python benchmarks/bench_stability.py                       # the whole grid
    python benchmarks/bench_stability.py --seeds 1 --iterations 300 --only dm
    python benchmarks/bench_stability.py --setting clip=3 --setting warmup=200,clip=5
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from pathlib import Path

from dm_core.config import RunConfig, load_config, parse_config
from dm_core.events import ScalarsEvent, TrainingDiverged
from dm_core.losses import list_losses
from dm_core.train import train

ROOT = Path(__file__).resolve().parents[1]
LAMS = (0.0, 0.5, 1.0, 2.0)
BETAS = (0.0, 4.0, 8.0, 12.0, 16.0, 20.0)


def base_config(noise: float, iterations: int, val_fraction: float) -> dict:
    cfg = load_config(ROOT / "configs" / "digits-symmetric-40-dm.yaml").model_dump(mode="json")
    cfg.update(iterations=iterations, eval_every=iterations, device="cpu",
               schedule={"milestones": [], "gamma": 0.1})
    cfg["dataset"] = {**cfg["dataset"], "noise": {"kind": "symmetric", "rate": noise},
                      "val_fraction": val_fraction}
    return cfg


def setting_overrides(setting: str) -> list[str]:
    """``off`` → both stabilisers off; ``default`` → the config defaults; else
    ``clip=3,warmup=200`` (an omitted one is off)."""
    if setting == "default":
        return []
    values = dict(part.split("=", 1) for part in setting.split(",") if "=" in part)
    return [f"optimizer.clip_grad_norm={float(values.get('clip', 0))}",
            f"optimizer.warmup={int(values.get('warmup', 0))}"]


def cells(methods: list[str], seeds: int) -> list[tuple[str, dict]]:
    """(method label, loss config) pairs: DM over its grid, the rest at their defaults."""
    out = []
    for name in methods:
        if name == "dm":
            for lam, beta in itertools.product(LAMS, BETAS):
                out += [(f"dm λ={lam:g}", {"name": "dm", "lam": lam, "beta": beta, "seed": s})
                        for s in range(seeds)]
        else:
            out += [(name, {"name": name, "seed": s}) for s in range(seeds)]
    return out


def run_one(base: dict, loss: dict, setting: str) -> dict:
    loss = dict(loss)
    seed = loss.pop("seed")
    cfg: RunConfig = parse_config({**base, "loss": loss, "seed": seed}, setting_overrides(setting))
    clip, norms = cfg.optimizer.clip, []

    def on_event(event: object) -> None:
        if isinstance(event, ScalarsEvent) and "grad_norm" in event.values:
            norms.append(event.values["grad_norm"])

    started = time.perf_counter()
    try:
        summary = train(cfg, on_event=on_event)
        result = {"diverged_at": None, "val_acc": summary.val_acc_final}
    except TrainingDiverged as err:
        result = {"diverged_at": err.iteration, "val_acc": None, "message": str(err)}
    clipped = sum(n > clip for n in norms) / len(norms) if clip and norms else 0.0
    return {**result, "clipped": clipped, "seconds": time.perf_counter() - started,
            "loss": loss, "seed": seed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--noise", default="0.4,0.0", help="comma-separated symmetric noise rates")
    parser.add_argument("--only", default="", help="comma-separated loss names (default: all)")
    parser.add_argument("--setting", action="append", default=None,
                        help="'off', 'default', or e.g. 'clip=3,warmup=200' (repeatable)")
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--jsonl", type=Path, help="also append every run as a JSON line here")
    args = parser.parse_args()
    methods = [m.strip() for m in args.only.split(",") if m.strip()] or [
        *list_losses()]
    settings = args.setting or ["off", "default"]

    print(f"{'noise':>5}  {'setting':<18} {'method':<16} {'runs':>4} {'div':>3}  "
          f"{'val acc':>7}  {'clipped':>7}  diverged at")
    dm_div = {}
    for noise, setting in itertools.product([float(n) for n in args.noise.split(",")], settings):
        base = base_config(noise, args.iterations, args.val_fraction)
        groups: dict[str, list[dict]] = {}
        for label, loss in cells(methods, args.seeds):
            result = run_one(base, loss, setting)
            groups.setdefault(label, []).append(result)
            if args.jsonl:
                with args.jsonl.open("a") as fh:
                    fh.write(json.dumps({"noise": noise, "setting": setting, "method": label,
                                         "iterations": args.iterations, **result}) + "\n")
        for label, results in groups.items():
            at = [r["diverged_at"] for r in results if r["diverged_at"] is not None]
            accs = [r["val_acc"] for r in results if r["val_acc"] is not None]
            acc = f"{statistics.mean(accs):.3f}" if accs else "n/a"
            clipped = statistics.mean(r["clipped"] for r in results)
            print(f"{noise:>5.2f}  {setting:<18} {label:<16} {len(results):>4} {len(at):>3}  "
                  f"{acc:>7}  {clipped:>7.0%}  {', '.join(map(str, at))}", flush=True)
            if label.startswith("dm λ"):
                dm_div[setting] = dm_div.get(setting, 0) + len(at)
        seconds = [r["seconds"] for rs in groups.values() for r in rs]
        print(f"# {len(seconds)} runs, median {statistics.median(seconds):.2f} s per run", flush=True)
    if "default" in dm_div:
        verdict = "met" if dm_div["default"] == 0 else "MISSED"
        print(f"verdict: DM divergences with the default stabilisers: {dm_div['default']} "
              f"(target 0) {verdict}")


if __name__ == "__main__":
    sys.exit(main())
