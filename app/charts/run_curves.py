"""Curves of a run over iterations: lines, overlays, loss beside learning rate."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app.charts.style import (
    LEGEND_BELOW,
    LOG_AXIS,
    SERIES_COLOURS,
    downsample,
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


def _add_curve(fig: go.Figure, x: np.ndarray, y: np.ndarray, name: str, line: dict[str, Any],
               style: CurveStyle, **where: Any) -> None:
    """One line, downsampled; smoothed, it is drawn over its raw values (faint, no legend),
    and the smoothing runs before the downsampling, over every point read."""
    x, y = np.asarray(x), np.asarray(y, dtype=np.float64)
    if style.smoothing > 0:
        xs, ys = downsample(x, y)
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=f"{name} (raw)", opacity=0.25,
                                 legendgroup=name, showlegend=False, hoverinfo="skip",
                                 line={**line, "width": 1}, meta={"role": "raw"}), **where)
        y = smooth(y, style.smoothing)
    xs, ys = downsample(x, y)
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=name, legendgroup=name, line=line,
                             meta={"role": "smoothed" if style.smoothing > 0 else "raw"}), **where)


def _y_axis(fig: go.Figure, style: CurveStyle, y_range: Sequence[float] | None) -> None:
    if style.log_y:  # a range in data units would be wrong on a log axis: let plotly fit it
        fig.update_yaxes(**LOG_AXIS)
    elif y_range is not None:
        fig.update_yaxes(range=list(y_range))


def lines_figure(x: np.ndarray, series: Mapping[str, np.ndarray], title: str, y_title: str = "",
                 colours: Mapping[str, str] | None = None, y_range: Sequence[float] | None = None,
                 x_title: str = "iteration", height: int = 300, revision: str = "lines",
                 style: CurveStyle = RAW) -> go.Figure:
    """Lines over a shared x (NaN gaps allowed), each downsampled to ``MAX_LINE_POINTS``."""
    fig = go.Figure()
    colours = colours or {}
    for i, (name, y) in enumerate(series.items()):
        colour = colours.get(name, SERIES_COLOURS[i % len(SERIES_COLOURS)])
        _add_curve(fig, x, y, name, {"color": colour}, style)
    fig.update_layout(title=title, height=height, xaxis_title=x_title, yaxis_title=y_title,
                      margin={"l": 10, "r": 10, "t": 40, "b": 10}, uirevision=revision,
                      legend=LEGEND_BELOW)
    _y_axis(fig, style, y_range)
    return fig


def overlay_figure(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], title: str,
                   y_title: str = "", y_range: Sequence[float] | None = None,
                   height: int = 340, revision: str = "overlay", x_title: str = "iteration",
                   style: CurveStyle = RAW) -> go.Figure:
    """Several runs' curves, each on its own x (compare page); names are user text
    (escaped here)."""
    fig = go.Figure()
    for i, (name, (x, y)) in enumerate(curves.items()):
        _add_curve(fig, x, y, plotly_text(name), {"color": SERIES_COLOURS[i % len(SERIES_COLOURS)]},
                   style)
    fig.update_layout(title=plotly_text(title), height=height, xaxis_title=x_title,
                      yaxis_title=y_title, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      uirevision=revision, legend=LEGEND_BELOW)
    _y_axis(fig, style, y_range)
    return fig


def loss_lr_figure(x: np.ndarray, losses: dict[str, np.ndarray], lr: np.ndarray | None,
                   height: int = 300, style: CurveStyle = RAW) -> go.Figure:
    """Training losses (left axis: the first solid, the rest dotted) and the learning rate
    (right axis, on a log scale: schedules step it by factors)."""
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    for i, (name, loss) in enumerate(losses.items()):
        _add_curve(fig, x, loss, name,
                   {"color": SERIES_COLOURS[i], "dash": "solid" if i == 0 else "dot"}, style,
                   secondary_y=False)
    if lr is not None:
        xs, rs = downsample(np.asarray(x), np.asarray(lr, dtype=np.float64))
        fig.add_trace(go.Scatter(x=xs, y=rs, mode="lines", name="learning rate",
                                 line={"color": SERIES_COLOURS[3], "shape": "hv"}), secondary_y=True)
        fig.update_yaxes(**LOG_AXIS, title_text="learning rate", secondary_y=True,
                         showgrid=False)
    fig.update_layout(title="Training loss and learning rate", height=height,
                      xaxis_title="iteration", margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      uirevision="loss-lr", legend=LEGEND_BELOW)
    fig.update_yaxes(title_text="loss", secondary_y=False)
    if style.log_y:
        fig.update_yaxes(**LOG_AXIS, secondary_y=False)
    return fig
