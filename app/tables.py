"""The dashboard's tables as pure pandas functions (no Streamlit): the runs list and the
comparison of results, in the paper's terms, under a fair protocol: the accuracy that ranks
runs is chosen on validation data, never on test data."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from dm_core.selection import select_evaluation
from dm_store import RunInfo, RunStatus
from studio.experiments.verdicts import MISSING
from studio.run_facts import loss_params, noise_text, seed_text, selected_test_acc

if TYPE_CHECKING:
    from pandas.io.formats.style import Styler

ACTIVE = (RunStatus.QUEUED, RunStatus.RUNNING)


def _fmt_seconds(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds < 0:
        return ""
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def runs_frame(runs: list[RunInfo], now: datetime) -> pd.DataFrame:
    """One row per run: what the table shows (times from the database clock), what tells
    runs apart first (``studio.run_facts``): status, name, test accuracy (the final one, and
    the one selected on validation data), then loss, its parameters, noise and seed."""
    rows = []
    for r in runs:
        total = r.total_iterations or r.config.get("iterations") or 0
        progress = min(r.iteration / total, 1.0) if total else 0.0
        if r.status == RunStatus.SUCCEEDED:
            progress = 1.0
        elapsed = eta = None
        if r.started_at is not None:
            end = r.finished_at if r.finished_at is not None and r.status not in ACTIVE else now
            elapsed = max((end - r.started_at).total_seconds(), 0.0)
            if r.status == RunStatus.RUNNING and r.iteration > 0 and total:
                eta = elapsed / r.iteration * max(total - r.iteration, 0)
        summary = r.summary or {}
        test_acc = summary.get("test_acc_final", r.last_test_acc)
        selected = selected_test_acc(summary)
        rows.append({
            "status": str(r.status)
                      + (" (cancelling)" if r.cancel_requested and r.status == RunStatus.RUNNING else ""),
            "name": r.name,
            "test acc": np.nan if test_acc is None else float(test_acc),
            SELECTED_TEST: np.nan if selected is None else selected,
            "loss": str((r.config.get("loss") or {}).get("name", "")),
            "loss params": loss_params(r.config), "noise": noise_text(r.config),
            "seed": seed_text(r.config), "id": r.id,
            "progress": progress, "iteration": f"{r.iteration}/{total}",
            "ETA": _fmt_seconds(eta), "error": (r.error or "").splitlines()[0][:200] if r.error else "",
            "elapsed": _fmt_seconds(elapsed), "device": r.device or "",
            "attempt": f"{r.attempt}/{r.max_attempts}" + (f" (retry {r.retries})" if r.retries else ""),
            "group": r.group,
        })
    return pd.DataFrame(rows)


# The accuracies of the results table. A run's "selected" evaluation is the one with the best
# validation accuracy (``dm_core.selection``): the only test number fit to rank runs by. The
# maximum over test evaluations picks the iteration with the test set itself: optimistic,
# kept for comparison with published tables and labelled so.
SELECTED_VAL = "selected val acc"
SELECTED_TEST = "selected test acc"
FINAL_TEST = "final test acc"
OPTIMISTIC_TEST = "best test acc (optimistic: max over test evaluations)"
ACCURACY_COLUMNS = (SELECTED_VAL, SELECTED_TEST, FINAL_TEST, OPTIMISTIC_TEST)
SUMMARY_COLUMNS = {"test_acc_final": FINAL_TEST, "test_acc_best": OPTIMISTIC_TEST,
                   "train_acc_corrupted": "train acc (corrupted labels)",
                   "train_acc_intact": "train acc (intact labels)",
                   "fit_corrupted_subset": "corrupted fitted",
                   "actual_noise_rate": "actual noise rate"}
NUMBER_COLUMNS = (SELECTED_VAL, SELECTED_TEST, *SUMMARY_COLUMNS.values())
# Each result column by a short name without spaces, as a URL names it (Compare's by_rate).
RESULT_KEYS = {"val_acc_selected": SELECTED_VAL, "test_acc_selected": SELECTED_TEST,
               **SUMMARY_COLUMNS}
NO_VALIDATION = MISSING  # shown for a run that held out no validation split


def method_label(cfg: dict[str, Any]) -> str:
    """``dm(lam=1, beta=12)``, ``cce``: the loss and its parameters (ε left out)."""
    loss = dict(cfg.get("loss") or {})
    name = loss.pop("name", "?")
    loss.pop("eps", None)
    params = ", ".join(f"{k}={v:g}" for k, v in loss.items() if isinstance(v, int | float))
    return f"{name}({params})" if params else str(name)


def selected_accuracies(evals: pd.DataFrame) -> tuple[float, float]:
    """(validation, test) accuracy at the evaluation with the best validation accuracy
    (``dm_core.selection.select_evaluation``); NaN without a validation split."""
    rows = evals.to_dict("records") if len(evals) else []
    chosen = select_evaluation((int(r["iteration"]), r) for r in rows)
    if chosen is None:
        return np.nan, np.nan
    return chosen.val_acc, np.nan if chosen.test_acc is None else chosen.test_acc


def _from_evals(key: str, ev: pd.DataFrame) -> Any:
    """A summary figure of a run still training, from its evaluations so far."""
    if key == "test_acc_best" and "test_acc" in ev:
        return ev["test_acc"].max()
    if key == "test_acc_final" and "test_acc" in ev:
        return ev["test_acc"].iloc[-1]
    if key in ev and ev[key].notna().any():
        return ev[key].dropna().iloc[-1]
    return None


def results_table(runs: list[RunInfo], evals: dict[int, pd.DataFrame]) -> pd.DataFrame:
    """One row per run: the validation-selected accuracies from its evaluations, the rest
    from the stored summary, else from the evaluations so far."""
    rows = []
    for r in runs:
        cfg = r.config
        noise = (cfg.get("dataset") or {}).get("noise") or {}
        row: dict[str, Any] = {
            "id": r.id, "name": r.name, "status": str(r.status), "method": method_label(cfg),
            "dataset": (cfg.get("dataset") or {}).get("name"), "model": (cfg.get("model") or {}).get("name"),
            "noise": noise.get("kind", "none"), "noise rate": noise.get("rate", 0.0),
            "seed": cfg.get("seed"), "iterations": r.iteration}
        summary = r.summary or {}
        ev = evals.get(r.id, pd.DataFrame())
        row[SELECTED_VAL], row[SELECTED_TEST] = selected_accuracies(ev)
        for key, label in SUMMARY_COLUMNS.items():
            value = summary.get(key)
            if value is None and len(ev):
                value = _from_evals(key, ev)
            row[label] = float(value) if value is not None else np.nan
        row["source"] = "summary" if r.summary else ("evaluations so far" if len(ev) else "")
        rows.append(row)
    return pd.DataFrame(rows)


def with_no_validation_marked(table: pd.DataFrame, digits: int = 4) -> pd.DataFrame:
    """The table as shown: the selected accuracies (and, in a seed-pooled table, their
    ``± std``) as text, ``—`` where a run held out no validation split (a blank cell, or
    Streamlit's "None", would read as "not yet")."""
    shown = table.copy()
    for column in [c for c in shown.columns if c.startswith((SELECTED_VAL, SELECTED_TEST))]:
        shown[column] = [f"{v:.{digits}f}" if np.isfinite(v) else NO_VALIDATION
                         for v in pd.to_numeric(shown[column], errors="coerce").to_numpy(dtype=np.float64)]
    return shown


def shown(table: pd.DataFrame, numbers: Iterable[str], digits: int = 4) -> Styler:
    """The table as a page shows it: the ``numbers`` columns to ``digits`` decimals, other
    float columns as ``:g``, and a missing value as ``—`` in every column (Streamlit would
    print "None"). Only the display changes: the frame underneath, which a download or a
    test reads, keeps its numbers."""
    numbers = [c for c in numbers if c in table]
    floats = [c for c in table.columns
              if c not in numbers and pd.api.types.is_float_dtype(table[c])]
    return (table.style.format(na_rep=MISSING)
            .format(precision=digits, na_rep=MISSING, subset=numbers)
            .format(lambda v: f"{v:g}", na_rep=MISSING, subset=floats))


def ranked_by_validation(pooled: pd.DataFrame) -> pd.DataFrame:
    """The settings of a seed-pooled table (``app.runsets.seed_table``) that have a
    validation accuracy, highest mean selected validation accuracy first (ties keep the
    table's order). Test accuracy plays no part in the order."""
    if SELECTED_VAL not in pooled:
        return pooled.iloc[0:0]
    has = pooled[np.isfinite(pooled[SELECTED_VAL].to_numpy(dtype=np.float64))]
    return has.sort_values(SELECTED_VAL, ascending=False, kind="stable")


def paper_layout(table: pd.DataFrame, optimistic: bool = False) -> pd.DataFrame:
    """Methods × noise rates, each cell "selected / final" test accuracy (means over seeds;
    ``—`` for selected without a validation split), as Table 10 lays them out. With
    ``optimistic``, the maximum over test evaluations follows, labelled as such: it chose
    its iteration on the test set."""
    if table.empty:
        return table
    g = table.groupby(["method", "noise rate"])[[SELECTED_TEST, FINAL_TEST, OPTIMISTIC_TEST]].mean()

    def cell(r: pd.Series) -> str:
        selected = f"{r[SELECTED_TEST]:.3f}" if np.isfinite(r[SELECTED_TEST]) else NO_VALIDATION
        text = f"{selected} / {r[FINAL_TEST]:.3f}"
        return text + (f" (optimistic best {r[OPTIMISTIC_TEST]:.3f})" if optimistic else "")

    out = g.apply(cell, axis=1).unstack("noise rate")
    out.columns = [f"r = {c:g} (selected / final)" for c in out.columns]
    return out
