"""A group of runs as a landscape: one metric over the parameters the group sweeps.

The swept parameters are the group's varying config keys (``app.runsets.varying_keys``:
``loss.lam`` and ``loss.beta`` for a λ/β grid, whatever a study's tuning phase varied), and
each point of the landscape is one setting, its seed replicates pooled into mean ± std
(``app.runsets.settings``). Axes are in the order of their values (β = 4 before β = 12),
numbers as numbers. What is drawn depends on the shape (``app.charts``): a heatmap for two
parameters on a full grid, points coloured by the metric where the grid has holes (nothing
interpolated between them), a line over one parameter, parallel coordinates for more.

A **method comparison** (the runs differ in their loss, ``loss.name``) is no grid: its losses
have unrelated parameters, so its "axes" would pair λ of DM with q of GCE and leave holes
wherever a loss lacks one. It is drawn as one point per method (``method_points``: the
method's mean over seeds with its sample std, per noise rate when the runs span several).

Which runs count: finished ones (succeeded), and diverged ones (``RunInfo.diverged_at``),
which are marked and kept out of the metric's mean (a run stopped at its divergence has no
final accuracy comparable with the others'). Runs still queued or running, cancelled, or
failed for another reason count as pending.

Plain data, no Streamlit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from app.runsets import Setting, format_value, key_title, settings, spread_cell
from dm_core.selection import select_evaluation
from dm_store import RunInfo, RunStatus
from studio.experiments.verdicts import Sample

METRICS = {
    "test_acc_final": "final test accuracy",
    "test_acc_selected": "selected test accuracy (at the best validation accuracy)",
    "fit_corrupted_subset": "corrupted examples fitted to their wrong label",
    "diverged": "share of runs that diverged",
}

METHOD_KEY = "loss.name"
RATE_KEY = "dataset.noise.rate"

__all__ = ["METHOD_KEY", "METRICS", "RATE_KEY", "Axis", "Cell", "Landscape", "MethodPoint",
           "build_landscape", "cells_frame", "grid_arrays", "method_points", "run_metric"]


def _last(evals: pd.DataFrame, column: str) -> float | None:
    if column not in evals or not evals[column].notna().any():
        return None
    return float(evals[column].dropna().iloc[-1])


def run_metric(run: RunInfo, evals: pd.DataFrame, metric: str) -> float | None:
    """One run's value of ``metric`` (a key of ``METRICS``), None when it has none.

    - ``test_acc_final``: the stored summary's, else the last evaluation's;
    - ``test_acc_selected``: the test accuracy at the evaluation with the best validation
      accuracy (``dm_core.selection.select_evaluation``); None without a validation split;
    - ``fit_corrupted_subset``: the summary's, else the last evaluation's;
    - ``diverged``: 1 for a run that diverged, else 0.
    """
    if metric == "diverged":
        return 1.0 if run.diverged_at is not None else 0.0
    summary = run.summary or {}
    if metric == "test_acc_selected":
        rows = evals.to_dict("records") if len(evals) else []
        chosen = select_evaluation((int(r["iteration"]), r) for r in rows)
        return None if chosen is None or chosen.test_acc is None else float(chosen.test_acc)
    if metric in ("test_acc_final", "fit_corrupted_subset"):
        value = summary.get(metric)
        if value is None:
            value = _last(evals, "test_acc" if metric == "test_acc_final" else metric)
        return None if value is None else float(value)
    raise ValueError(f"metric: {metric!r} is not one of {', '.join(METRICS)}")


def _counted(run: RunInfo) -> bool:
    return run.status == RunStatus.SUCCEEDED or run.diverged_at is not None


@dataclass(frozen=True)
class Cell:
    """One setting of the landscape: the metric's mean and sample std over the replicates
    that count (NaN when none has a value), and how many runs diverged or are pending."""

    setting: Setting
    mean: float
    std: float
    n: int  # replicates in the mean
    diverged: int
    pending: int

    @property
    def runs(self) -> int:
        return len(self.setting.runs)

    @property
    def spread(self) -> str:
        """``0.8120 ± 0.0040 (n=2)``: the page's one notation (``app.runsets.spread_cell``)."""
        return spread_cell(Sample(self.mean, self.std, self.n))

    def text(self) -> str:
        """``0.8120 ± 0.0040 (n=2)``, and what else holds for the cell.

        Diverged runs are named in the text and left out of ``n``."""
        parts = ["no value" if math.isnan(self.mean) else self.spread]
        if self.diverged:
            parts.append(f"✕ {self.diverged}/{self.runs} diverged")
        if self.pending:
            parts.append(f"{self.pending} pending")
        return "<br>".join(parts)


@dataclass(frozen=True)
class Axis:
    """A swept parameter: its config key, a title, and its values in order (numbers in
    numeric order, then anything else as text; a missing value, None, last)."""

    key: str
    title: str
    values: tuple[Any, ...]
    numeric: bool

    @property
    def labels(self) -> list[str]:
        return [format_value(v) for v in self.values]

    def index(self, value: Any) -> int:
        return self.values.index(value)


def _axis(key: str, values: Sequence[Any]) -> Axis:
    """The axis of config ``key`` over the settings' ``values``.

    >>> _axis("loss.beta", [12.0, 4.0, 12.0, 8.0]).labels  # numbers in numeric order
    ['4', '8', '12']
    >>> _axis("loss.name", ["mae", "cce", None]).labels
    ['cce', 'mae', '–']
    """
    distinct = list(dict.fromkeys(values))
    numbers = [v for v in distinct if isinstance(v, int | float) and not isinstance(v, bool)]
    others = [v for v in distinct if v not in numbers and v is not None]
    ordered = sorted(numbers) + sorted(others, key=format_value) + \
        ([None] if None in distinct else [])
    return Axis(key, key_title(key), tuple(ordered), numeric=len(numbers) == len(distinct))


@dataclass(frozen=True)
class Landscape:
    """The cells of a group and its axes. ``full``: two axes and a cell at every pair of
    their values (a heatmap leaves no hole)."""

    metric: str
    axes: tuple[Axis, ...]
    cells: tuple[Cell, ...]

    @property
    def compares_methods(self) -> bool:
        """The runs differ in their loss: a method comparison, not a parameter grid."""
        return any(a.key == METHOD_KEY for a in self.axes)

    @property
    def full(self) -> bool:
        if len(self.axes) != 2:
            return False
        x, y = self.axes
        return len(self.cells) == len(x.values) * len(y.values)


def build_landscape(runs: Sequence[RunInfo], evals: Mapping[int, pd.DataFrame],
                    metric: str) -> Landscape:
    """``metric`` over the settings of ``runs`` (``evals``: each run's evaluations)."""
    if metric not in METRICS:
        raise ValueError(f"metric: {metric!r} is not one of {', '.join(METRICS)}")
    cells = []
    found = settings(runs)
    for s in found:
        values, diverged, pending = [], 0, 0
        for run in s.runs:
            if not _counted(run):
                pending += 1
                continue
            if run.diverged_at is not None:
                diverged += 1
                if metric != "diverged":
                    continue
            v = run_metric(run, evals.get(run.id, pd.DataFrame()), metric)
            if v is not None and math.isfinite(v):
                values.append(v)
        arr = np.asarray(values, dtype=np.float64)
        mean = float(arr.mean()) if arr.size else math.nan
        std = float(arr.std(ddof=1)) if arr.size > 1 else math.nan
        cells.append(Cell(s, mean, std, int(arr.size), diverged, pending))
    keys = list(found[0].values) if found else []
    axes = tuple(_axis(k, [s.values[k] for s in found]) for k in keys)
    return Landscape(metric, axes, tuple(cells))


def grid_arrays(landscape: Landscape) -> dict[str, np.ndarray]:
    """For two axes (x = the second, y = the first): ``mean``, ``std``, ``n``, ``diverged``
    as (len(y values), len(x values)) arrays, NaN / 0 where the grid has no cell, and
    ``text`` (object array) with each cell's ``Cell.text``."""
    y_axis, x_axis = landscape.axes
    shape = (len(y_axis.values), len(x_axis.values))
    out = {name: np.full(shape, np.nan) for name in ("mean", "std")}
    out.update(n=np.zeros(shape, dtype=np.int64), diverged=np.zeros(shape, dtype=np.int64),
               runs=np.zeros(shape, dtype=np.int64), text=np.full(shape, "", dtype=object))
    for c in landscape.cells:
        i = y_axis.index(c.setting.values[y_axis.key])
        j = x_axis.index(c.setting.values[x_axis.key])
        out["mean"][i, j], out["std"][i, j], out["n"][i, j] = c.mean, c.std, c.n
        out["diverged"][i, j], out["runs"][i, j], out["text"][i, j] = c.diverged, c.runs, c.text()
    return out


@dataclass(frozen=True)
class MethodPoint:
    """One method of a comparison at one noise rate: its label (the loss and its parameters,
    and anything else that differs, but not the noise rate), the rate (None when every run
    has the same one) and the cell of its seeds."""

    method: str
    rate: float | None
    cell: Cell


def method_points(landscape: Landscape) -> list[MethodPoint]:
    """The cells of a method comparison as (method, noise rate) points, methods in the order
    of their first run, rates ascending within a method."""
    runs = [r for c in landscape.cells for r in c.setting.runs]
    method = {r.id: s.label for s in settings(runs, ignore=(RATE_KEY,)) for r in s.runs}
    varies = any(a.key == RATE_KEY for a in landscape.axes)
    order = list(dict.fromkeys(method[r.id] for r in sorted(runs, key=lambda r: r.id)))
    points = [MethodPoint(method[c.setting.runs[0].id],
                          c.setting.values.get(RATE_KEY) if varies else None, c)
              for c in landscape.cells]
    return sorted(points, key=lambda p: (order.index(p.method),
                                         -1.0 if p.rate is None else float(p.rate)))


def cells_frame(landscape: Landscape) -> pd.DataFrame:
    """One row per cell: its parameters (for a method comparison, the method and the noise
    rate instead), the setting's label, ``mean ± std (n)`` (``Cell.spread``), runs, diverged,
    pending and the run ids; sorted by the axes' value order."""
    if landscape.compares_methods:
        rates = any(a.key == RATE_KEY for a in landscape.axes)
        return pd.DataFrame([{"method": p.method, **({"noise rate": p.rate} if rates else {}),
                              **_cell_row(p.cell)} for p in method_points(landscape)])
    rows = []
    for c in landscape.cells:
        row: dict[str, Any] = {a.title: c.setting.values[a.key] for a in landscape.axes}
        row.update(_cell_row(c))
        row["_order"] = tuple(a.index(c.setting.values[a.key]) for a in landscape.axes)
        rows.append(row)
    frame = pd.DataFrame(rows)
    if len(frame):
        frame = frame.sort_values("_order", kind="stable").drop(columns="_order")
    return frame.reset_index(drop=True)


def _cell_row(c: Cell) -> dict[str, Any]:
    return {"setting": c.setting.label, "mean ± std (n)": c.spread, "runs": c.runs,
            "diverged": c.diverged, "pending": c.pending,
            "run ids": ", ".join(f"#{r.id}" for r in c.setting.runs)}
