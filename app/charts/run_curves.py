"""Curves of a run over iterations: lines, overlays, panels stacked over one x axis.

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
    stacked_axes,
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
                 style: CurveStyle = RAW, margin: Mapping[str, int] = MARGIN) -> go.Figure:
    """Lines over a shared x (NaN gaps allowed), each downsampled to ``MAX_LINE_POINTS``.
    ``margin`` in pixels: plotly grows a side that is too small for its labels, by drawing
    the figure a second time (a live page gives margins that fit: ``app.views.monitor``)."""
    colours = colours or {}
    traces = [trace for i, (name, y) in enumerate(series.items())
              for trace in _curve_traces(x, y, name, {"color": colours.get(
                  name, SERIES_COLOURS[i % len(SERIES_COLOURS)])}, style)]
    return figure(traces, {
        "title": {"text": title}, "height": height, "xaxis": {"title": {"text": x_title}},
        "yaxis": {"title": {"text": y_title}, **_y_axis(style, y_range)}, "margin": dict(margin),
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


@dataclass(frozen=True)
class Panel:
    """One panel of ``stacked_lines_figure``: lines over the figure's shared x.

    ``series`` maps each line's name to its values; ``dotted`` draws the first line solid
    and the others dotted (losses: the comparable one first). ``right`` is one more line,
    ``(name, values)``, on a log axis at the panel's right titled with its name (the
    learning rate: schedules step it by factors), drawn as steps and never smoothed."""

    title: str
    y_title: str
    series: Mapping[str, np.ndarray]
    y_range: tuple[float, float] | None = None
    dotted: bool = False
    right: tuple[str, np.ndarray] | None = None


PANEL_GAP_PX = 70  # between two panels: the lower one's title and the upper one's last tick


def stacked_lines_figure(x: np.ndarray, panels: Sequence[Panel], panel_height: int = 230,
                         revision: str = "stacked", style: CurveStyle = RAW,
                         margin: Mapping[str, int] = MARGIN) -> go.Figure:
    """Panels of lines stacked in one figure over a shared x axis (zooming one zooms all),
    each with its title, y axis and, when given, a log axis on its right; one legend under
    the whole figure, each line's colour its own across panels. ``margin`` as for
    ``lines_figure``.

    One figure instead of one per panel: a browser draws each changed figure from scratch,
    and much of that cost is per figure (docs/architecture.md, "Streamlit: pacing a live
    fragment")."""
    if not panels:
        raise ValueError("stacked_lines_figure: no panels; give at least one Panel")
    height = panel_height * len(panels) + 90
    layout, refs = stacked_axes(tuple(p.title for p in panels), PANEL_GAP_PX / height,
                                tuple(p.right is not None for p in panels))
    traces: list[dict[str, Any]] = []
    colour = 0
    for panel, (x_ref, y_ref, right_ref) in zip(panels, refs, strict=True):
        for i, (name, y) in enumerate(panel.series.items()):
            line = {"color": SERIES_COLOURS[colour % len(SERIES_COLOURS)]}
            if panel.dotted:
                line["dash"] = "solid" if i == 0 else "dot"
            traces += _curve_traces(x, y, name, line, style, xaxis=x_ref, yaxis=y_ref)
            colour += 1
        y_axis = layout["yaxis" + y_ref[1:]]
        y_axis.update(title={"text": panel.y_title}, **_y_axis(style, panel.y_range))
        if panel.right is not None and right_ref is not None:
            name, values = panel.right
            xs, vs = downsample(np.asarray(x), np.asarray(values, dtype=np.float64))
            traces.append({"type": "scatter", "x": xs, "y": vs, "mode": "lines", "name": name,
                           "line": {"color": SERIES_COLOURS[colour % len(SERIES_COLOURS)],
                                    "shape": "hv"}, "xaxis": x_ref, "yaxis": right_ref})
            colour += 1
            layout["yaxis" + right_ref[1:]].update(LOG_AXIS, title={"text": name},
                                                   showgrid=False)
    layout["xaxis" + refs[-1][0][1:]]["title"] = {"text": "iteration"}
    layout.update(height=height, margin=dict(margin), uirevision=revision, legend=LEGEND_BELOW)
    return figure(traces, layout)
