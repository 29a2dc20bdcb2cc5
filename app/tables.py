"""The dashboard's tables as pure pandas functions (no Streamlit): the runs list and the
comparison of results, in the paper's terms."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from dm_core.store import RunInfo, RunStatus

ACTIVE = (RunStatus.QUEUED, RunStatus.RUNNING)


def _fmt_seconds(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds < 0:
        return ""
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def runs_frame(runs: list[RunInfo], now: datetime) -> pd.DataFrame:
    """One row per run: what the table shows (times from the database clock)."""
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
        loss = r.config.get("loss") or {}
        noise = (r.config.get("dataset") or {}).get("noise") or {}
        summary = r.summary or {}
        rows.append({
            "id": r.id, "name": r.name,
            "status": str(r.status)
                      + (" (cancelling)" if r.cancel_requested and r.status == RunStatus.RUNNING else ""),
            "progress": progress, "iteration": f"{r.iteration}/{total}",
            "test acc": summary.get("test_acc_final", r.last_test_acc),
            "loss": loss.get("name", ""),
            "noise": f"{noise.get('kind', 'none')} {noise.get('rate', 0):g}",
            "device": r.device or "",
            "attempt": f"{r.attempt}/{r.max_attempts}" + (f" (retry {r.retries})" if r.retries else ""),
            "elapsed": _fmt_seconds(elapsed), "ETA": _fmt_seconds(eta), "group": r.group,
            "error": (r.error or "").splitlines()[0][:200] if r.error else "",
        })
    return pd.DataFrame(rows)


SUMMARY_COLUMNS = {"test_acc_best": "best test acc", "test_acc_final": "final test acc",
                   "train_acc_corrupted": "train acc (corrupted labels)",
                   "train_acc_intact": "train acc (intact labels)",
                   "fit_corrupted_subset": "corrupted fitted",
                   "actual_noise_rate": "actual noise rate"}


def method_label(cfg: dict[str, Any]) -> str:
    """``dm(lam=1, beta=12)``, ``cce``: the loss and its parameters (ε left out)."""
    loss = dict(cfg.get("loss") or {})
    name = loss.pop("name", "?")
    loss.pop("eps", None)
    params = ", ".join(f"{k}={v:g}" for k, v in loss.items() if isinstance(v, int | float))
    return f"{name}({params})" if params else str(name)


def results_table(runs: list[RunInfo], evals: dict[int, pd.DataFrame]) -> pd.DataFrame:
    """One row per run; numbers from the stored summary, else from the evaluations so far."""
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
        for key, label in SUMMARY_COLUMNS.items():
            value = summary.get(key)
            if value is None and len(ev):
                if key == "test_acc_best" and "test_acc" in ev:
                    value = ev["test_acc"].max()
                elif key == "test_acc_final" and "test_acc" in ev:
                    value = ev["test_acc"].iloc[-1]
                elif key in ev:
                    value = ev[key].dropna().iloc[-1] if ev[key].notna().any() else None
            row[label] = float(value) if value is not None else np.nan
        row["source"] = "summary" if r.summary else ("evaluations so far" if len(ev) else "")
        rows.append(row)
    return pd.DataFrame(rows)


def paper_layout(table: pd.DataFrame) -> pd.DataFrame:
    """Methods × noise rates, "best / final" test accuracy (mean over seeds), as Table 10."""
    if table.empty:
        return table
    g = table.groupby(["method", "noise rate"])[["best test acc", "final test acc"]].mean()
    cells = g.apply(lambda r: f"{r['best test acc']:.3f} / {r['final test acc']:.3f}", axis=1)
    out = cells.unstack("noise rate")
    out.columns = [f"r = {c:g}" for c in out.columns]
    return out


