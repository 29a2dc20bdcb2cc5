"""A study's report (``DIR/<name>.md``, from ``templates/report.md.j2``) and its per-run CSV
(``DIR/<name>-runs.csv``, one row per tuning and final run, ``results.CSV_COLUMNS``)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd

from studio.experiments.claims import check_claims, seed_table
from studio.experiments.results import CSV_COLUMNS
from studio.experiments.spaces import axes_of, simplicity_text, untuned_text
from studio.experiments.tuner import StudyResult, random_start_size, trial_value_text

_ENV = jinja2.Environment(loader=jinja2.PackageLoader("studio.experiments", "templates"),
                          autoescape=False, keep_trailing_newline=True, undefined=jinja2.StrictUndefined)


def runs_frame(result: StudyResult) -> pd.DataFrame:
    """Every run of the study, tuning and final, as the CSV holds them."""
    return pd.DataFrame([o.row() for o in result.outcomes], columns=list(CSV_COLUMNS))


def _setting(params: Any, method: str | None = None) -> str:
    params = json.loads(params) if isinstance(params, str) else params
    shown = ", ".join(f"{k}={v:g}" for k, v in params.items())
    if shown or method is None:
        return shown or "(none to tune)"
    return f"({untuned_text(method) or 'none to tune'})"


def budget_text(result: StudyResult) -> str:
    """The budget and what each method's searches tried, as the tunings counted it: the
    methods' counts differ when a grid is smaller than the budget, and the text says so."""
    spec = result.spec
    parts, counts = [], set()
    for method in spec.methods:
        searches = [t for t in result.tunings if t.method == method]
        if not searches:
            continue
        tried = sorted({t.trained for t in searches})
        counts.update(tried)
        shown = str(tried[0]) if len(tried) == 1 else f"{tried[0]}–{tried[-1]}"
        grid = searches[0].grid
        parts.append(f"{method}: all {shown} of its {grid} settings (its whole grid)" if tried == [grid]
                     else f"{method}: {shown} of its {grid} settings")
    untuned = [f"{m} ({untuned_text(m)})" for m in spec.methods if not axes_of(m)]
    text = f"budget {spec.budget} settings per (condition, method)"
    if parts:
        text += "; " + "; ".join(parts)
        text += ("; every tuned method tried as many settings" if len(counts) == 1 else
                 "; the tuned methods did not all try as many settings (a grid smaller than the "
                 "budget is tried whole)")
    if untuned:
        text += "; untuned: " + ", ".join(untuned)
    return text


def _pct(mean: float, std: float) -> str:
    return "–" if mean is None or math.isnan(mean) else f"{mean * 100:.1f} ± {std * 100:.1f}"


def unstable_seeds(final: pd.DataFrame, spread: float = 0.15) -> list[str]:
    """(condition, method) whose final seeds differ by more than ``spread`` in final test
    accuracy, with each seed's value: a mean ± std hides one collapsed seed."""
    out = []
    ok = final[~final["diverged"].astype(bool)] if "diverged" in final else final
    for (cond, method), part in ok.groupby(["condition", "method"], sort=False):
        accs = part["test_acc_final"]
        if len(accs) > 1 and accs.max() - accs.min() > spread:
            out.append(f"{cond} {method}: " + ", ".join(
                f"seed {int(s)} {a * 100:.1f}%" for s, a in zip(part["seed"], accs, strict=True)))
    return out


def render_report(result: StudyResult, command: str, machine: str, pruner: str) -> str:
    frame = runs_frame(result)
    final = frame[frame["phase"] == "final"]
    spec = result.spec
    table = seed_table(final, [c for c, _ in spec.condition_labels()], spec.methods)
    rows = [{
        "condition": r["condition"], "method": r["method"], "params": _setting(r["params"], r["method"]),
        "diverged": int(r["diverged"]), "n": int(r["n"]),
        **{c: _pct(r[c], r[c + "_std"]) for c in ("test_acc_final", "test_acc_selected",
                                                   "val_acc_selected", "test_acc_best",
                                                   "train_acc_corrupted", "train_acc_intact")},
        "p_noisy_late": "–" if math.isnan(r["p_noisy_late"]) else
        f"{r['p_noisy_late']:.3f} ± {r['p_noisy_late_std']:.3f}",
    } for _, r in table.iterrows()]
    groups = {v: k for k, v in result.groups.items()}
    tunings = [{
        "condition": t.condition, "method": t.method, "sampler": t.sampler, "trained": t.trained,
        "grid": t.grid, "completed": t.completed, "pruned": t.pruned, "repeats": t.repeats,
        "iterations": t.iterations,
        "group": groups.get(f"tuning of {t.method} at {t.condition}", "") if result.in_store else "",
        "chosen": _setting(t.chosen or {}), "tied": [_setting(p) for p in t.tied],
        "trials": [{"number": r.number, "params": _setting(r.params), "value": trial_value_text(r)}
                   for r in t.trials],
    } for t in result.tunings]
    return _ENV.get_template("report.md.j2").render(
        spec=spec, command=command, machine=machine, pruner=pruner,
        conditions=[c for c, _ in spec.condition_labels()],
        tie_rules=[(m, simplicity_text(m)) for m in spec.methods if simplicity_text(m) != "nothing tuned"],
        rows=rows, claims=check_claims(result, table), unstable=unstable_seeds(final), tunings=tunings,
        budget=budget_text(result), start_rule=_start_rule(spec.budget))


def _start_rule(budget: int) -> str:
    """How a grid larger than ``budget`` is searched, in words."""
    start = random_start_size(budget)
    drawn = f"{start} setting{'s' if start > 1 else ''} drawn at random"
    if start == budget:
        return drawn
    return (f"{drawn}, then TPE (Optuna's tree-structured Parzen estimator) proposing the "
            f"other {budget - start}")


def write_report(result: StudyResult, out_dir: Path, command: str, machine: str,
                 pruner: str) -> tuple[Path, Path]:
    """Write ``<name>.md`` and ``<name>-runs.csv`` into ``out_dir``; return both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    md = out_dir / f"{result.spec.name}.md"
    csv = out_dir / f"{result.spec.name}-runs.csv"
    md.write_text(render_report(result, command, machine, pruner), encoding="utf-8")
    runs_frame(result).to_csv(csv, index=False)
    return md, csv
