"""Curves of a run over iterations: lines, overlays, loss beside learning rate.

Each figure is written as one specification (traces and layout as plain dictionaries) and
validated once by ``app.charts.style.figure``: plotly's incremental calls (``add_trace``,
``update_layout``, ``make_subplots``) validate again at every step and cost several times
more (docs/architecture.md, "Plotly payloads")."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go

from app.charts.style import (
    LEGEND_BELOW,
    LOG_AXIS,
    MARGIN,
    SERIES_COLOURS,
    downsample,
    figure,
    secondary_y_layout,
)
from app.curves import smooth
from app.text import plotly_text


@dataclass(frozen=True)
class CurveStyle:
    """How the user wants curves drawn: ``smoothing`` is the weight of an exponential moving
    average (``app.curves.smooth``; 0 draws the raw values), ``log_y`` a log-scale y axis."""

    smoothing: float = 0.0
    log_y: bool = False


RAW = CurveStyle()


def _curve_traces(x: np.ndarray, y: np.ndarray, name: str, line: dict[str, Any],
                  style: CurveStyle, **axes: str) -> list[dict[str, Any]]:
    """One line, downsampled; smoothed, it is drawn over its raw values (faint, no legend),
    and the smoothing runs before the downsampling, over every point read. ``axes`` names
    the trace's axes (``yaxis="y2"``) in a figure with more than one."""
    x, y = np.asarray(x), np.asarray(y, dtype=np.float64)
    traces = []
    if style.smoothing > 0:
        xs, ys = downsample(x, y)
        traces.append({"type": "scatter", "x": xs, "y": ys, "mode": "lines",
                       "name": f"{name} (raw)", "opacity": 0.25, "legendgroup": name,
                       "showlegend": False, "hoverinfo": "skip", "line": {**line, "width": 1},
                       "meta": {"role": "raw"}, **axes})
        y = smooth(y, style.smoothing)
    xs, ys = downsample(x, y)
    traces.append({"type": "scatter", "x": xs, "y": ys, "mode": "lines", "name": name,
                   "legendgroup": name, "line": line,
                   "meta": {"role": "smoothed" if style.smoothing > 0 else "raw"}, **axes})
    return traces


def _y_axis(style: CurveStyle, y_range: Sequence[float] | None) -> dict[str, Any]:
    if style.log_y:  # a range in data units would be wrong on a log axis: let plotly fit it
        return dict(LOG_AXIS)
    return {} if y_range is None else {"range": list(y_range)}


def lines_figure(x: np.ndarray, series: Mapping[str, np.ndarray], title: str, y_title: str = "",
                 colours: Mapping[str, str] | None = None, y_range: Sequence[float] | None = None,
                 x_title: str = "iteration", height: int = 300, revision: str = "lines",
                 style: CurveStyle = RAW) -> go.Figure:
    """Lines over a shared x (NaN gaps allowed), each downsampled to ``MAX_LINE_POINTS``."""
    colours = colours or {}
    traces = [trace for i, (name, y) in enumerate(series.items())
              for trace in _curve_traces(x, y, name, {"color": colours.get(
                  name, SERIES_COLOURS[i % len(SERIES_COLOURS)])}, style)]
    return figure(traces, {
        "title": {"text": title}, "height": height, "xaxis": {"title": {"text": x_title}},
        "yaxis": {"title": {"text": y_title}, **_y_axis(style, y_range)}, "margin": MARGIN,
        "uirevision": revision, "legend": LEGEND_BELOW})


def overlay_figure(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], title: str,
                   y_title: str = "", y_range: Sequence[float] | None = None,
                   height: int = 340, revision: str = "overlay", x_title: str = "iteration",
                   style: CurveStyle = RAW) -> go.Figure:
    """Several runs' curves, each on its own x (compare page); names are user text
    (escaped here)."""
    traces = [trace for i, (name, (x, y)) in enumerate(curves.items())
              for trace in _curve_traces(x, y, plotly_text(name),
                                         {"color": SERIES_COLOURS[i % len(SERIES_COLOURS)]}, style)]
    return figure(traces, {
        "title": {"text": plotly_text(title)}, "height": height,
        "xaxis": {"title": {"text": x_title}},
        "yaxis": {"title": {"text": y_title}, **_y_axis(style, y_range)}, "margin": MARGIN,
        "uirevision": revision, "legend": LEGEND_BELOW})


def loss_lr_figure(x: np.ndarray, losses: dict[str, np.ndarray], lr: np.ndarray | None,
                   height: int = 300, style: CurveStyle = RAW) -> go.Figure:
    """Training losses (left axis: the first solid, the rest dotted) and the learning rate
    (right axis, on a log scale: schedules step it by factors)."""
    layout = secondary_y_layout()
    traces = [trace for i, (name, loss) in enumerate(losses.items())
              for trace in _curve_traces(x, loss, name, {"color": SERIES_COLOURS[i],
                                                         "dash": "solid" if i == 0 else "dot"},
                                         style, xaxis="x", yaxis="y")]
    if lr is not None:
        xs, rs = downsample(np.asarray(x), np.asarray(lr, dtype=np.float64))
        traces.append({"type": "scatter", "x": xs, "y": rs, "mode": "lines",
                       "name": "learning rate", "line": {"color": SERIES_COLOURS[3], "shape": "hv"},
                       "xaxis": "x", "yaxis": "y2"})
        layout["yaxis2"].update(LOG_AXIS, title={"text": "learning rate"}, showgrid=False)
    layout.update(title={"text": "Training loss and learning rate"}, height=height,
                  margin=MARGIN, uirevision="loss-lr", legend=LEGEND_BELOW)
    layout["xaxis"]["title"] = {"text": "iteration"}
    layout["yaxis"].update(title={"text": "loss"}, **(LOG_AXIS if style.log_y else {}))
    return figure(traces, layout)
