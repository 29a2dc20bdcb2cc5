"""The batch's p_i histograms: the heatmap over iterations, one iteration's bars, grids and overlays."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app.charts.edf import EdfCurves
from app.charts.style import (
    CLEAN,
    LEGEND_BELOW,
    LOG_TICKS,
    MARGIN,
    MAX_HEATMAP_COLUMNS,
    NOISY,
    SCHEME,
    SERIES_COLOURS,
    _fractions,
    bin_centres,
    downsample,
    emphasised_fade,
    figure,
    secondary_y_layout,
    stacked_layout,
)
from app.text import plotly_text

PICK = "pick an iteration"  # the click targets' trace name
HEATMAP_TITLES = ("clean examples: p_i over training", "corrupted examples: p_i over training")
# Each panel of the heatmaps: its trace's name, its axes, and its y axis's layout key.
HEATMAP_PANELS = (("clean", "x", "y", "yaxis"), ("corrupted", "x2", "y2", "yaxis2"))


def histogram_heatmaps(iterations: np.ndarray, clean: np.ndarray, noisy: np.ndarray,
                       height: int = 420, revision: str = "heatmap",
                       chosen: int | None = None,
                       margin: Mapping[str, int] = MARGIN) -> go.Figure:
    """p_i histograms over training: iteration × bin heatmaps for clean and corrupted examples.

    Each column is the fraction of that group's examples (in the batch) per bin of p_i, so the
    two panels are comparable whatever the noise rate. Columns are thinned to at most
    ``MAX_HEATMAP_COLUMNS``. ``chosen`` (the iteration shown below the heatmaps) is marked by
    a vertical line across both panels.

    Plotly cannot select a heatmap cell, so each panel also carries a row of invisible
    markers, one per column (trace ``PICK``): with ``hovermode="x"`` a click anywhere in a
    column selects its marker, whose x is that column's iteration (``picked_iteration``).
    ``margin`` as for ``app.charts.lines_figure``.
    """
    iterations = np.asarray(iterations)
    clean = np.asarray(clean)
    noisy = np.asarray(noisy)
    if len(iterations) > MAX_HEATMAP_COLUMNS:
        idx = downsample(np.arange(len(iterations)), max_points=MAX_HEATMAP_COLUMNS)[0]
        iterations, clean, noisy = iterations[idx], clean[idx], noisy[idx]
    bins = clean.shape[1] if clean.ndim == 2 and clean.shape[1] else 20
    centres = bin_centres(bins)
    layout = stacked_layout(HEATMAP_TITLES, 0.1)
    traces = []
    for (name, x, y, y_axis), counts, colour in zip(HEATMAP_PANELS, (clean, noisy), (CLEAN, NOISY),
                                                    strict=True):
        z = _fractions(counts).T if counts.size else np.zeros((bins, 0))
        # z stays the real fraction (the colour bar and the hover read it); the colour scale
        # is what stretches the small fractions most bins hold (``emphasised_fade``).
        traces.append({
            "type": "heatmap", "x": iterations, "y": centres, "z": z,
            "colorscale": emphasised_fade(colour), "zmin": 0.0,
            "colorbar": {"title": {"text": "fraction"}, "len": 0.42,
                         "y": 0.79 if name == "clean" else 0.21, "tickformat": LOG_TICKS},
            "name": name,
            "hovertemplate": "iteration %{x}<br>p≈%{y:.3f}<br>fraction %{z:.3g}<extra></extra>",
            "xaxis": x, "yaxis": y})
        traces.append({
            "type": "scatter", "x": iterations, "y": np.full(len(iterations), 0.5),
            "mode": "markers", "name": PICK, "marker": {"opacity": 0, "size": 6},
            "showlegend": False, "hovertemplate": "click: show iteration %{x}<extra></extra>",
            "xaxis": x, "yaxis": y})
        layout[y_axis].update(title={"text": "p_i"}, range=[0, 1])
    if chosen is not None:  # a line across each panel, as ``add_vline`` draws it
        layout["shapes"] = [{"type": "line", "x0": chosen, "x1": chosen, "xref": x,
                             "y0": 0, "y1": 1, "yref": f"{y} domain",
                             "line": {"color": SCHEME, "width": 2, "dash": "dot"}}
                            for _, x, y, _ in HEATMAP_PANELS]
    layout["xaxis2"]["title"] = {"text": "iteration"}
    layout.update(height=height, margin=dict(margin), uirevision=revision, hovermode="x",
                  clickmode="event+select")
    return figure(traces, layout)


def picked_iteration(selection: Mapping[str, Any] | None) -> int | None:
    """The iteration clicked on ``histogram_heatmaps`` (a plotly selection event's
    ``selection``), or None when nothing was picked.

    >>> picked_iteration({"points": [{"curve_number": 1, "x": 380, "y": 0.5}]})
    380
    >>> picked_iteration({"points": []}) is None
    True
    """
    points = (selection or {}).get("points") or []
    xs = [p.get("x") for p in points if isinstance(p.get("x"), int | float)]
    return int(xs[0]) if xs else None


def histogram_bars(clean: np.ndarray, noisy: np.ndarray, title: str,
                   edf: EdfCurves | None = None, height: int = 320,
                   revision: str = "bars", margin: Mapping[str, int] = MARGIN) -> go.Figure:
    """Clean and corrupted p_i histograms at one iteration, overlaid (fraction of each group).

    With ``edf``, the run's emphasis density h(p) is drawn on a right axis, so one sees how
    much gradient each part of the histogram receives (e.g. little for the corrupted
    examples at small p_i when ψ is large). ``margin`` as for ``app.charts.lines_figure``.
    """
    layout = secondary_y_layout()
    traces = _histogram_pair(np.asarray(clean), np.asarray(noisy), show_legend=True)
    if edf is not None:
        traces.append({"type": "scatter", "x": edf.p, "y": edf.density, "mode": "lines",
                       "name": f"EDF h(p) of {edf.label}", "line": {"color": SCHEME, "width": 2},
                       "xaxis": "x", "yaxis": "y2"})
        layout["yaxis2"].update(title={"text": "emphasis density h(p)"}, showgrid=False,
                                rangemode="tozero")
    layout.update(title={"text": title}, barmode="overlay", height=height, margin=dict(margin),
                  uirevision=revision, legend=LEGEND_BELOW)
    layout["xaxis"].update(title={"text": "p_i"}, range=[0, 1])
    layout["yaxis"]["title"] = {"text": "fraction of group"}
    return figure(traces, layout)


def _histogram_pair(clean: np.ndarray, noisy: np.ndarray, show_legend: bool,
                    **axes: str) -> list[dict[str, Any]]:
    """The clean and the corrupted bars of one histogram (fraction of each group per bin)."""
    bins = len(clean)
    centres = bin_centres(bins)
    traces = []
    for counts, colour, name in ((clean, CLEAN, "clean"), (noisy, NOISY, "corrupted")):
        n = int(np.sum(counts))
        traces.append({"type": "bar", "x": centres, "y": _fractions(counts), "width": 1.0 / bins,
                       "opacity": 0.6, "marker": {"color": colour}, "name": name,
                       "legendgroup": name, "showlegend": show_legend,
                       "hovertemplate": f"{name} (n={n})<br>p≈%{{x:.3f}}<br>fraction %{{y:.3f}}"
                                        "<extra></extra>", **axes})
    return traces


def histograms_grid(items: Sequence[tuple[str, np.ndarray, np.ndarray]], columns: int = 3,
                    height_per_row: int = 260, revision: str = "hist-grid") -> go.Figure:
    """Several runs' clean/corrupted p_i histograms side by side (same axes); titles are
    user text (escaped here)."""
    n = max(len(items), 1)
    cols = min(columns, n)
    rows = math.ceil(n / cols)
    fig = make_subplots(rows=rows, cols=cols,
                        subplot_titles=[plotly_text(t) for t, _, _ in items] or None,
                        shared_yaxes=True, horizontal_spacing=0.05, vertical_spacing=0.18)
    for i, (_, clean, noisy) in enumerate(items):
        fig.add_traces(_histogram_pair(np.asarray(clean), np.asarray(noisy), show_legend=i == 0),
                       rows=i // cols + 1, cols=i % cols + 1)
    fig.update_xaxes(range=[0, 1], title_text="p_i")
    fig.update_layout(barmode="overlay", height=height_per_row * rows + 60,
                      margin={"l": 10, "r": 10, "t": 40, "b": 10}, uirevision=revision,
                      legend=LEGEND_BELOW)
    return fig


def histogram_overlay(items: Sequence[tuple[str, np.ndarray, np.ndarray]], title: str,
                      height: int = 380, revision: str = "hist-overlay") -> go.Figure:
    """Several runs' p_i histograms on one axis: per run one colour, its clean examples a
    solid step line and its corrupted ones a dashed one (fraction of each group per bin).
    Labels are user text (escaped here)."""
    fig = go.Figure()
    for i, (label, clean, noisy) in enumerate(items):
        colour = SERIES_COLOURS[i % len(SERIES_COLOURS)]
        shown = plotly_text(label)
        for counts, group, dash in ((clean, "clean", "solid"), (noisy, "corrupted", "dash")):
            counts = np.asarray(counts)
            fig.add_trace(go.Scatter(
                x=bin_centres(len(counts)), y=_fractions(counts), mode="lines",
                name=f"{shown} · {group}", legendgroup=shown,
                line={"color": colour, "dash": dash, "shape": "hvh", "width": 2},
                # The name through %{fullData.name}: user text in a template could hold "%{".
                hovertemplate=f"%{{fullData.name}} (n={int(np.sum(counts))})<br>p≈%{{x:.3f}}"
                              "<br>fraction %{y:.3f}<extra></extra>"))
    fig.update_layout(title=plotly_text(title), height=height, xaxis_title="p_i",
                      yaxis_title="fraction of group", uirevision=revision,
                      margin={"l": 10, "r": 10, "t": 40, "b": 10}, legend=LEGEND_BELOW)
    fig.update_xaxes(range=[0, 1])
    fig.update_yaxes(rangemode="tozero")
    return fig
