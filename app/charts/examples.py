"""The Examples page's figures: the data map of every training example, each statistic's AUROC
over training, and two runs' gradient shares against each other.

Every training example is one point of a WebGL scatter (``go.Scattergl``): a few thousand to
50,000 points, which SVG would draw slowly. Two WebGL charts at most on the page (browsers cap
WebGL contexts; docs/architecture.md, "Plotly payloads").
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from app.charts.style import CLEAN, LEGEND_BELOW, LOG_TICKS, NOISY, SERIES_COLOURS

# Marker sizes (pixels) for the smallest and the largest share of the gradient.
SIZE_RANGE = (2.0, 12.0)
GROUPS = ((False, "clean", CLEAN), (True, "corrupted", NOISY))


def share_sizes(relative_share: np.ndarray) -> np.ndarray:
    """Marker sizes growing with the square root of the share (an area proportional to it),
    from ``SIZE_RANGE[0]`` at 0 to ``SIZE_RANGE[1]`` at the largest share."""
    top = float(np.max(relative_share)) if len(relative_share) else 0.0
    scaled = np.sqrt(np.clip(relative_share, 0.0, None) / top) if top > 0 else np.zeros(len(relative_share))
    return (SIZE_RANGE[0] + (SIZE_RANGE[1] - SIZE_RANGE[0]) * scaled).astype(np.float32)


def data_map_figure(variability: np.ndarray, confidence: np.ndarray, corrupted: np.ndarray,
                    relative_share: np.ndarray, height: int = 460) -> go.Figure:
    """Dataset cartography: each training example at (variability, confidence), blue when its
    label is intact and red when corrupted, sized by its share of the gradient relative to an
    equal share (1 = what every example of a batch would get under uniform weights). The
    point's ``customdata`` is (example index, relative share)."""
    fig = go.Figure()
    sizes = share_sizes(relative_share)
    for flag, name, colour in GROUPS:
        idx = np.flatnonzero(corrupted == flag)
        fig.add_trace(go.Scattergl(
            x=variability[idx].astype(np.float32), y=confidence[idx].astype(np.float32),
            mode="markers", name=name,
            marker={"color": colour, "size": sizes[idx], "opacity": 0.6, "line": {"width": 0}},
            customdata=np.stack([idx.astype(np.float32), relative_share[idx].astype(np.float32)], axis=1),
            hovertemplate="example %{customdata[0]}<br>variability %{x:.3f}<br>confidence %{y:.3f}"
                          "<br>share %{customdata[1]:.2f}× equal<extra>" + name + "</extra>"))
    fig.update_layout(height=height, margin={"t": 30, "b": 10}, legend=LEGEND_BELOW,
                      uirevision="data-map", xaxis_title="variability (std of p over training)",
                      yaxis_title="confidence (mean p)")
    return fig


def detection_figure(frame: pd.DataFrame, chosen: int | None = None, height: int = 320) -> go.Figure:
    """Each statistic's AUROC at flagging the corrupted examples, one line per statistic over
    the snapshots' iterations (``frame``: ``iteration`` and one column per statistic); 0.5 is
    chance, and ``chosen`` (the snapshot shown) is marked."""
    fig = go.Figure()
    x = frame["iteration"].to_numpy(dtype=np.int64)
    for i, name in enumerate(c for c in frame.columns if c != "iteration"):
        fig.add_trace(go.Scatter(x=x, y=frame[name].to_numpy(dtype=np.float64), name=name,
                                 mode="lines+markers",
                                 line={"color": SERIES_COLOURS[i % len(SERIES_COLOURS)]}))
    fig.add_hline(y=0.5, line_dash="dot", line_color="#9ca3af")
    if chosen is not None:
        fig.add_vline(x=chosen, line_dash="dash", line_color="#6b7280")
    fig.update_layout(height=height, margin={"t": 30, "b": 10}, legend=LEGEND_BELOW,
                      uirevision="detection", xaxis_title="iteration",
                      yaxis_title="AUROC (corrupted vs clean)", yaxis_range=[0, 1])
    return fig


def shares_figure(share_a: np.ndarray, share_b: np.ndarray, corrupted: np.ndarray, name_a: str,
                  name_b: str, height: int = 420) -> go.Figure:
    """Every training example's share of the gradient in two runs (relative to an equal
    share), on log axes, with the diagonal: below it run B gives the example less than run A."""
    fig = go.Figure()
    floor = 1e-3  # an example never seen has share 0, which a log axis cannot show
    a, b = np.maximum(share_a, floor).astype(np.float32), np.maximum(share_b, floor).astype(np.float32)
    for flag, name, colour in GROUPS:
        idx = np.flatnonzero(corrupted == flag)
        fig.add_trace(go.Scattergl(x=a[idx], y=b[idx], mode="markers", name=name,
                                   marker={"color": colour, "size": 4, "opacity": 0.6},
                                   customdata=idx.astype(np.float32),
                                   hovertemplate="example %{customdata}<br>%{x:.2f}× / %{y:.2f}×"
                                                 "<extra>" + name + "</extra>"))
    top = float(max(a.max(initial=1.0), b.max(initial=1.0)))
    fig.add_trace(go.Scatter(x=np.array([floor, top]), y=np.array([floor, top]), mode="lines",
                             name="equal in both", line={"color": "#9ca3af", "dash": "dot"}))
    fig.update_layout(height=height, margin={"t": 30, "b": 10}, legend=LEGEND_BELOW,
                      uirevision="shares", xaxis={"type": "log", "tickformat": LOG_TICKS, "title": f"share in {name_a} (× equal)"},
                      yaxis={"type": "log", "tickformat": LOG_TICKS, "title": f"share in {name_b} (× equal)"})
    return fig
