"""A sweep's landscape: a heatmap, points, a line or parallel coordinates of a metric over the
swept parameters; for a method comparison, one point per method with its spread over seeds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from app.charts.style import (
    LEGEND_BELOW,
    NOISY,
    SERIES_COLOURS,
)
from app.landscape import Axis, Landscape, grid_arrays, method_points
from app.runsets import format_value
from app.text import plotly_text

DIVERGED_MARKER = {"symbol": "x-thin-open", "size": 22, "line": {"width": 3, "color": NOISY}}
METRIC_SCALE = "Viridis"


def _axis_coords(axis: Axis, values: Sequence[Any]) -> np.ndarray:
    """Plot coordinates of ``values`` on ``axis``: the numbers themselves on a numeric axis
    (so distances mean something), their labels on a category axis."""
    if axis.numeric:
        return np.asarray([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    return np.asarray([plotly_text(format_value(v)) for v in values], dtype=object)


def _axis_layout(axis: Axis) -> dict[str, Any]:
    if axis.numeric:
        return {"title": {"text": plotly_text(axis.title)}}
    return {"title": {"text": plotly_text(axis.title)}, "type": "category",
            "categoryorder": "array",
            "categoryarray": [plotly_text(label) for label in axis.labels]}


def landscape_figure(land: Landscape, title: str, height: int = 460) -> go.Figure | None:
    """The landscape as the shape of its sweep asks: for a method comparison one point per
    method and noise rate with its error bar; else a line over one parameter, a heatmap
    over two on a full grid, points over two where the grid has holes, parallel coordinates
    over more; None when nothing varies (one setting: a table says it all)."""
    if not land.axes:
        return None
    if land.compares_methods:
        fig = _landscape_methods(land)
    elif len(land.axes) == 1:
        fig = _landscape_line(land)
    elif len(land.axes) == 2 and land.full:
        fig = _landscape_heatmap(land)
    elif len(land.axes) == 2:
        fig = _landscape_points(land)
    else:
        fig = _landscape_parallel(land)
    fig.update_layout(title=plotly_text(title), height=height, uirevision=f"landscape-{land.metric}",
                      margin={"l": 10, "r": 10, "t": 50, "b": 10}, legend=LEGEND_BELOW)
    return fig


def _landscape_methods(land: Landscape) -> go.Figure:
    """x = method (a category), y = its mean over seeds with the sample std as an error bar
    (none below two seeds), n in the hover; one colour per noise rate, side by side within a
    method. A method with diverged runs is drawn as ⊗, those runs left out of its mean."""
    points = [p for p in method_points(land) if np.isfinite(p.cell.mean)]
    methods = [plotly_text(m) for m in dict.fromkeys(p.method for p in method_points(land))]
    rates = list(dict.fromkeys(p.rate for p in points))
    fig = go.Figure()
    for i, rate in enumerate(rates):
        mine = [p for p in points if p.rate == rate]
        label = "mean ± std over seeds" if rate is None else f"noise rate r = {rate:g}"
        fig.add_trace(go.Scatter(
            x=np.asarray([plotly_text(p.method) for p in mine], dtype=object),
            y=np.asarray([p.cell.mean for p in mine], dtype=np.float64),
            error_y={"type": "data", "visible": True, "thickness": 2, "width": 6,
                     "array": np.nan_to_num(np.asarray([p.cell.std for p in mine], dtype=np.float64))},
            text=np.asarray([p.cell.text() for p in mine], dtype=object),
            mode="markers", name=plotly_text(label),
            marker={"size": 12, "color": SERIES_COLOURS[i % len(SERIES_COLOURS)],
                    "symbol": np.asarray(["circle-x" if p.cell.diverged else "circle"
                                          for p in mine], dtype=object)},
            hovertemplate="%{x}" + ("" if rate is None else f", r = {rate:g}")
                          + "<br>%{text}<extra></extra>"))
    fig.update_layout(scattermode="group", scattergap=0.6 if len(rates) > 1 else 0.0,
                      showlegend=len(rates) > 1,
                      xaxis={"title": {"text": "method"}, "type": "category",
                             "categoryorder": "array", "categoryarray": methods,
                             "automargin": True},
                      yaxis={"title": {"text": "mean over seeds ± sample std"}, "automargin": True})
    return fig


def _landscape_heatmap(land: Landscape) -> go.Figure:
    y_axis, x_axis = land.axes
    grid = grid_arrays(land)
    xs = [plotly_text(v) for v in x_axis.labels]
    ys = [plotly_text(v) for v in y_axis.labels]
    fig = go.Figure(go.Heatmap(
        x=xs, y=ys, z=grid["mean"], text=grid["text"], texttemplate="%{text}",
        colorscale=METRIC_SCALE, colorbar={"title": "mean"}, name="mean over seeds",
        hovertemplate=f"{plotly_text(x_axis.title)} = %{{x}}<br>{plotly_text(y_axis.title)} = "
                      "%{y}<br>%{text}<extra></extra>", xgap=2, ygap=2))
    rows, cols = np.nonzero(grid["diverged"])
    if len(rows):
        fig.add_trace(go.Scatter(
            x=np.asarray([xs[j] for j in cols], dtype=object),
            y=np.asarray([ys[i] for i in rows], dtype=object), mode="markers",
            marker=DIVERGED_MARKER, name="diverged (runs left out of the mean)",
            hoverinfo="skip"))
    fig.update_xaxes(type="category", title_text=plotly_text(x_axis.title),
                     categoryorder="array", categoryarray=xs)
    fig.update_yaxes(type="category", title_text=plotly_text(y_axis.title),
                     categoryorder="array", categoryarray=ys)
    return fig


def _landscape_points(land: Landscape) -> go.Figure:
    y_axis, x_axis = land.axes
    cells = land.cells
    x = _axis_coords(x_axis, [c.setting.values[x_axis.key] for c in cells])
    y = _axis_coords(y_axis, [c.setting.values[y_axis.key] for c in cells])
    mean = np.asarray([c.mean for c in cells], dtype=np.float64)
    text = np.asarray([c.text() for c in cells], dtype=object)
    has = np.isfinite(mean)
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=x[has], y=y[has], mode="markers", name="mean over seeds", text=text[has],
        marker={"size": 22, "color": mean[has], "colorscale": METRIC_SCALE, "showscale": True,
                "colorbar": {"title": "mean"}, "line": {"width": 1, "color": "#6b7280"}},
        hovertemplate="%{x}, %{y}<br>%{text}<extra></extra>"))
    if (~has).any():
        fig.add_trace(go.Scatter(
            x=x[~has], y=y[~has], mode="markers", name="no value yet", text=text[~has],
            marker={"size": 22, "color": "rgba(0,0,0,0)", "line": {"width": 1.5, "color": "#6b7280"}},
            hovertemplate="%{x}, %{y}<br>%{text}<extra></extra>"))
    diverged = np.asarray([c.diverged > 0 for c in cells])
    if diverged.any():
        fig.add_trace(go.Scatter(x=x[diverged], y=y[diverged], mode="markers",
                                 marker=DIVERGED_MARKER, hoverinfo="skip",
                                 name="diverged (runs left out of the mean)"))
    fig.update_layout(xaxis=_axis_layout(x_axis), yaxis=_axis_layout(y_axis))
    return fig


def _landscape_line(land: Landscape) -> go.Figure:
    (axis,) = land.axes
    order = sorted(land.cells, key=lambda c: axis.index(c.setting.values[axis.key]))
    x = _axis_coords(axis, [c.setting.values[axis.key] for c in order])
    mean = np.asarray([c.mean for c in order], dtype=np.float64)
    std = np.nan_to_num(np.asarray([c.std for c in order], dtype=np.float64))
    fig = go.Figure(go.Scatter(
        x=x, y=mean, mode="lines+markers", name="mean ± std over seeds",
        error_y={"type": "data", "array": std, "visible": True},
        text=np.asarray([c.text() for c in order], dtype=object), marker={"size": 9},
        line={"color": SERIES_COLOURS[0]}, hovertemplate="%{x}<br>%{text}<extra></extra>"))
    diverged = np.asarray([c.diverged > 0 for c in order])
    if diverged.any():
        low = float(np.nanmin(mean)) if np.isfinite(mean).any() else 0.0
        fig.add_trace(go.Scatter(x=x[diverged], y=np.where(np.isfinite(mean), mean, low)[diverged],
                                 mode="markers", marker=DIVERGED_MARKER, hoverinfo="skip",
                                 name="diverged (runs left out of the mean)"))
    fig.update_layout(xaxis=_axis_layout(axis), yaxis_title="mean over seeds")
    return fig


def _landscape_parallel(land: Landscape) -> go.Figure:
    cells = [c for c in land.cells if np.isfinite(c.mean)]
    dims = []
    for axis in land.axes:
        values = [c.setting.values[axis.key] for c in cells]
        if axis.numeric:
            dims.append({"label": plotly_text(axis.title), "values": _axis_coords(axis, values)})
        else:
            dims.append({"label": plotly_text(axis.title),
                         "values": np.asarray([axis.index(v) for v in values], dtype=np.float64),
                         "tickvals": np.arange(len(axis.values), dtype=np.float64),
                         "ticktext": [plotly_text(label) for label in axis.labels]})
    mean = np.asarray([c.mean for c in cells], dtype=np.float64)
    dims.append({"label": "mean over seeds", "values": mean})
    if any(c.diverged for c in land.cells):
        dims.append({"label": "diverged runs",
                     "values": np.asarray([c.diverged for c in cells], dtype=np.float64)})
    return go.Figure(go.Parcoords(dimensions=dims, line={
        "color": mean, "colorscale": METRIC_SCALE, "showscale": True,
        "colorbar": {"title": "mean"}}))
