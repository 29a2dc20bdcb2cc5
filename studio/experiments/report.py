"""The report of a study or of a paper preset (``DIR/<name>.md``, from one template,
``templates/report.md.j2``) and its per-run CSV (``DIR/<name>-runs.csv``, one row per run,
``results.CSV_COLUMNS``). Both tables are built from ``RunOutcome`` rows and both claim
lists by ``claims.check_claims``; a preset's report adds the published β and the published
result beside each row, and plotly figures."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
import pandas as pd

from studio.experiments.claims import check_claims, seed_table
from studio.experiments.results import CSV_COLUMNS, RunOutcome
from studio.experiments.spaces import axes_of, simplicity_text, untuned_text
from studio.experiments.tuner import StudyResult, random_start_size, trial_value_text

if TYPE_CHECKING:
    from dm_core.reference import ReferenceResult
    from studio.repro.presets import Experiment

_ENV = jinja2.Environment(loader=jinja2.PackageLoader("studio.experiments", "templates"),
                          autoescape=False, keep_trailing_newline=True, undefined=jinja2.StrictUndefined)


def outcomes_frame(outcomes: Iterable[RunOutcome]) -> pd.DataFrame:
    """Runs as the CSV holds them, one row each."""
    return pd.DataFrame([o.row() for o in outcomes], columns=list(CSV_COLUMNS))


def runs_frame(result: StudyResult) -> pd.DataFrame:
    """Every run of the study, tuning and final, as the CSV holds them."""
    return outcomes_frame(result.outcomes)


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


def _missing(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _cell(mean: float, std: float, scale: float = 100.0, digits: int = 1) -> str:
    """mean ± std; ``—`` for a missing mean, and for a missing spread (one seed: the sample
    std is undefined)."""
    if _missing(mean):
        return "—"
    spread = "—" if _missing(std) else f"{std * scale:.{digits}f}"
    return f"{mean * scale:.{digits}f} ± {spread}"


def _pct(mean: float, std: float) -> str:
    return _cell(mean, std)


def _p_cell(mean: float, std: float) -> str:
    return _cell(mean, std, 1.0, 3)


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


_STUDY_HEADERS = ("condition", "method", "chosen setting", "test final (%)", "test selected (%)",
                  "val at selected (%)", "test best, optimistic (%)",
                  "train acc, corrupted labels (%)", "train acc, intact labels (%)",
                  "late mean p_i, corrupted")


def _method_cell(r: pd.Series) -> str:
    return str(r["method"]) + (f" ({int(r['diverged'])}/{int(r['n'])} diverged)" if r["diverged"] else "")


def render_report(result: StudyResult, command: str, machine: str, pruner: str) -> str:
    frame = runs_frame(result)
    final = frame[frame["phase"] == "final"]
    spec = result.spec
    table = seed_table(final, [c for c, _ in spec.condition_labels()], spec.methods)
    rows = [[str(r["condition"]), _method_cell(r), _setting(r["params"], r["method"]),
             *(_pct(r[c], r[c + "_std"]) for c in ("test_acc_final", "test_acc_selected",
                                                   "val_acc_selected", "test_acc_best",
                                                   "train_acc_corrupted", "train_acc_intact")),
             _p_cell(r["p_noisy_late"], r["p_noisy_late_std"])]
            for _, r in table.iterrows()]
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
        name=spec.name, description=spec.description, spec=spec, command=command,
        machine=machine, pruner=pruner,
        conditions=[c for c, _ in spec.condition_labels()],
        tie_rules=[(m, simplicity_text(m)) for m in spec.methods if simplicity_text(m) != "nothing tuned"],
        headers=_STUDY_HEADERS, rows=rows,
        claims_heading="The paper's claims on the variants chosen on validation",
        claims=check_claims(table, result.tunings), unstable=unstable_seeds(final),
        tunings=tunings, budget=budget_text(result), start_rule=_start_rule(spec.budget),
        figures=[])


def _reference_cell(ref: ReferenceResult | None) -> str:
    """The published result of a row's setting: final / best test accuracy, its β, and the
    training accuracy on corrupted / intact labels where published."""
    if ref is None:
        return "—"
    cell = f"{ref.final * 100:.1f} / {ref.best * 100:.1f}"
    if ref.beta is not None:
        cell += f" (β={ref.beta:g})"
    if ref.train_corrupted is not None and ref.train_intact is not None:
        cell += f"; train {ref.train_corrupted * 100:.1f} / {ref.train_intact * 100:.1f}"
    return cell


def preset_table(experiment: Experiment, frame: pd.DataFrame) -> pd.DataFrame:
    """``seed_table`` of a preset's runs (``outcomes_frame``), in the preset's order."""
    return seed_table(frame, [c for c, _ in experiment.conditions], [m.label for m in experiment.methods])


def preset_rows(experiment: Experiment, table: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """A preset's results in the paper's layout (headers, rows): the β each row trained with,
    the optimistic best beside the final test accuracy, and, where the preset has them, the
    published numbers of the same setting in the last column."""
    headers = ["condition", "method", "β", "test best, optimistic: max over training on test data (%)",
               "test final (%)", "train acc, corrupted labels (%)", "train acc, intact labels (%)",
               "fit of corrupted (%)", "late mean p_i, corrupted"]
    if experiment.reference is not None:
        headers.append(f"{experiment.reference_name}: final / best (%)")
    rows = []
    for _, r in table.iterrows():
        beta = json.loads(r["params"]).get("beta")
        row = [str(r["condition"]), _method_cell(r), "" if beta is None else f"{beta:g}",
               *(_pct(r[c], r[c + "_std"]) for c in ("test_acc_best", "test_acc_final",
                                                     "train_acc_corrupted", "train_acc_intact",
                                                     "fit_corrupted_subset")),
               _p_cell(r["p_noisy_late"], r["p_noisy_late_std"])]
        if experiment.reference is not None:
            row.append(_reference_cell(experiment.reference(str(r["condition"]), str(r["method"]))))
        rows.append(row)
    return headers, rows


def render_preset_report(experiment: Experiment, frame: pd.DataFrame, command: str, machine: str,
                         figures: Iterable[str] = ()) -> str:
    """The report of a paper preset's runs (``outcomes_frame``): its fixed grid, nothing tuned."""
    table = preset_table(experiment, frame)
    headers, rows = preset_rows(experiment, table)
    return _ENV.get_template("report.md.j2").render(
        name=experiment.name, description=experiment.description, spec=None, command=command,
        machine=machine, conditions=[c for c, _ in experiment.conditions],
        methods=[m.label for m in experiment.methods],
        seeds=sorted(int(s) for s in frame["seed"].unique()), note=experiment.paper_note,
        headers=headers, rows=rows, claims_heading="The paper's claims on this data",
        claims=check_claims(table) if experiment.claims else [], unstable=unstable_seeds(frame),
        tunings=[], figures=list(figures))


def _figures(experiment: Experiment, table: pd.DataFrame) -> list[tuple[str, Any]]:
    import plotly.graph_objects as go

    acc = go.Figure()
    for method, part in table.groupby("method", sort=False):
        acc.add_trace(go.Scatter(x=part["condition"], y=part["test_acc_final"] * 100, name=method,
                                 mode="lines+markers",
                                 error_y={"type": "data", "array": part["test_acc_final_std"] * 100}))
    acc.update_layout(title=f"{experiment.name}: final test accuracy", yaxis_title="test accuracy (%)",
                      xaxis_title="condition")
    p_noisy = go.Figure()
    for method, part in table.groupby("method", sort=False):
        p_noisy.add_trace(go.Bar(x=part["condition"], y=part["p_noisy_late"], name=method))
    p_noisy.update_layout(title=f"{experiment.name}: late mean p_i of corrupted examples (lower = not "
                          "memorised)", barmode="group", yaxis_title="mean p_i")
    return [("test-accuracy", acc), ("p-noisy", p_noisy)]


def write_preset_report(experiment: Experiment, outcomes: Iterable[RunOutcome], out_dir: Path,
                        command: str, machine: str) -> Path:
    """``out_dir/<name>.md``, ``<name>-runs.csv`` and the ``<name>-*.html`` figures."""
    out_dir.mkdir(parents=True, exist_ok=True)
    frame = outcomes_frame(outcomes)
    figures = _figures(experiment, preset_table(experiment, frame))
    for slug, fig in figures:
        fig.write_html(out_dir / f"{experiment.name}-{slug}.html", include_plotlyjs="cdn")
    md = out_dir / f"{experiment.name}.md"
    md.write_text(render_preset_report(experiment, frame, command, machine, [s for s, _ in figures]),
                  encoding="utf-8")
    frame.to_csv(out_dir / f"{experiment.name}-runs.csv", index=False)
    return md


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
