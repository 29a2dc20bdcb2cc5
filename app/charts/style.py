"""Colours, sizes and array helpers shared by every chart."""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dm_store.downsample import every_kth

CLEAN = "#2563eb"  # blue
NOISY = "#dc2626"  # red
SCHEME = "#7c3aed"  # violet: the scheme being designed
OVERLAY_COLOURS = ("#6b7280", "#059669", "#d97706", "#92400e", "#0891b2", "#db2777")
OVERLAY_DASHES = ("dash", "dot", "dashdot", "longdash", "longdashdot", "dash")
SERIES_COLOURS = ("#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2", "#db2777",
                  "#65a30d", "#92400e", "#4b5563")

# A horizontal legend under the whole figure, placed in the figure's own coordinates: plotly
# then grows the bottom margin to fit it, so it never covers an axis title and an exported
# PNG keeps every entry (at a fixed fraction below the plot it did neither on narrow charts).
LEGEND_BELOW = {"orientation": "h", "yref": "container", "yanchor": "bottom", "y": 0.0, "x": 0.0}

MARGIN = {"l": 10, "r": 10, "t": 40, "b": 10}
MAX_LINE_POINTS = 4000  # per line: every refresh resends the whole figure (docs/architecture.md)
MAX_HEATMAP_COLUMNS = 2000
_HUGE = 1e300  # weights clamped at a pole come back as the dtype's largest number

# A log axis labels every tick with its whole value (0.1, 0.2, 0.5, 1, 2, 5, 10). Without a
# tick format plotly labels the ticks between decades with their leading digit alone, so an
# axis from 0.05 to 2 read "5, 0.1, 2, 5, 1, 2": a tick format makes it format every value.
# Three significant digits at most: over less than a decade (a learning rate from 0.1 to
# 0.04) plotly places ticks at values such as 0.0865994, which "~g" printed whole.
LOG_TICKS = ".3~g"  # d3-format: precision, then ~ (trim trailing zeros), then the type
LOG_AXIS = {"type": "log", "tickformat": LOG_TICKS}


def figure(traces: Sequence[dict[str, Any]], layout: dict[str, Any]) -> go.Figure:
    """A figure from its whole specification, validated once.

    Built this way a figure costs a fraction of what plotly's incremental calls cost
    (``add_trace``, ``update_layout``, ``make_subplots`` each validate again), and a page
    that redraws several figures every few seconds spends most of its time there
    (docs/architecture.md, "Plotly payloads"). A ``go.Figure`` rather than the bare dict:
    ``st.plotly_chart`` validates a dict again on every call.

    >>> figure([{"type": "scatter", "x": [1, 2], "y": [3, 4]}], {"height": 200}).layout.height
    200
    """
    return go.Figure({"data": list(traces), "layout": layout})


@functools.cache
def _subplot_axes(secondary: tuple[bool, ...], vertical_spacing: float | None,
                  titles: tuple[str, ...] | None
                  ) -> tuple[dict[str, Any], tuple[tuple[str, str, str | None], ...]]:
    """The layout of panels stacked in one column (``secondary[k]``: panel k has a second y
    axis on the right) as ``make_subplots`` lays it out, and each panel's axis references
    (x, y, the right y or None) as its traces name them."""
    rows = len(secondary)
    fig = make_subplots(rows=rows, cols=1, specs=[[{"secondary_y": s}] for s in secondary],
                        shared_xaxes=rows > 1, vertical_spacing=vertical_spacing,
                        subplot_titles=titles)
    layout = fig.layout.to_plotly_json()
    layout.pop("template", None)  # every figure gets the default template anyway

    def ref(axis: Any) -> str:  # "xaxis2" -> "x2"
        return axis.plotly_name.replace("axis", "")

    refs = []
    for row, right in enumerate(secondary, start=1):
        panel = fig.get_subplot(row, 1)
        refs.append((ref(panel.xaxis), ref(panel.yaxis),
                     ref(fig.get_subplot(row, 1, secondary_y=True).yaxis) if right else None))
    return layout, tuple(refs)


def secondary_y_layout() -> dict[str, Any]:
    """The axes of a figure with a second y axis on the right (``yaxis2``, traces on it say
    ``yaxis="y2"``), as ``make_subplots(specs=[[{"secondary_y": True}]])`` lays them out;
    a fresh copy to fill in.

    >>> sorted(secondary_y_layout()), secondary_y_layout()["yaxis2"]["overlaying"]
    (['xaxis', 'yaxis', 'yaxis2'], 'y')
    """
    return copy.deepcopy(_subplot_axes((True,), None, None)[0])


def stacked_layout(titles: tuple[str, ...], vertical_spacing: float) -> dict[str, Any]:
    """The axes of panels stacked in one column over a shared x axis (panel k's traces say
    ``xaxis="x{k}", yaxis="y{k}"``, the first ``x`` and ``y``), with a title over each, as
    ``make_subplots(rows=len(titles), shared_xaxes=True)`` lays them out; a fresh copy.

    >>> layout = stacked_layout(("top", "bottom"), 0.1)
    >>> layout["yaxis"]["domain"], layout["yaxis2"]["domain"], layout["xaxis"]["matches"]
    ([0.55, 1.0], [0.0, 0.45], 'x2')
    """
    return copy.deepcopy(_subplot_axes((False,) * len(titles), vertical_spacing,
                                       tuple(titles))[0])


def stacked_axes(titles: tuple[str, ...], vertical_spacing: float, secondary: tuple[bool, ...]
                 ) -> tuple[dict[str, Any], tuple[tuple[str, str, str | None], ...]]:
    """``stacked_layout`` where some panels also have a y axis on the right
    (``secondary[k]``), and the axis references each panel's traces name: (x, y, the right
    y axis or None). The layout is a fresh copy.

    >>> layout, refs = stacked_axes(("a", "b", "c"), 0.1, (False, True, False))
    >>> refs
    (('x', 'y', None), ('x2', 'y2', 'y3'), ('x3', 'y4', None))
    >>> layout["yaxis3"]["overlaying"], layout["xaxis"]["matches"]
    ('y2', 'x3')
    """
    if len(secondary) != len(titles):
        raise ValueError(f"stacked_axes: secondary has {len(secondary)} flags for "
                         f"{len(titles)} titles; give one per panel")
    layout, refs = _subplot_axes(tuple(secondary), vertical_spacing, tuple(titles))
    return copy.deepcopy(layout), refs


def downsample(x: np.ndarray, *ys: np.ndarray, max_points: int = MAX_LINE_POINTS
               ) -> tuple[np.ndarray, ...]:
    """Every k-th point (and always the last) so that at most about ``max_points`` remain.

    >>> x, y = downsample(np.arange(10), np.arange(10) * 2, max_points=4)
    >>> x.tolist(), y.tolist()
    ([0, 3, 6, 9], [0, 6, 12, 18])
    """
    x = np.asarray(x)
    n = len(x)
    if n <= max_points:
        return (x, *(np.asarray(y) for y in ys))
    idx = every_kth(np.arange(n), math.ceil(n / max_points))
    return (x[idx], *(np.asarray(y)[idx] for y in ys))


def bin_centres(bins: int) -> np.ndarray:
    """Centres of ``bins`` equal bins of [0, 1] (the store's histogram layout)."""
    return (np.arange(bins) + 0.5) / bins


def emphasised_fade(colour: str, floor: float = 0.12, stops: int = 16) -> list[list[Any]]:
    """A colour scale from transparent to ``colour`` whose opacity grows as the square root
    of the value (``floor + (1 - floor) * sqrt(v)`` for v > 0 on the normalised scale, 0 at
    0): a bin holding 1% of the largest value is drawn at about a fifth of full opacity
    instead of 1%, so sparse bins stay visible while the colour bar still reads the values
    themselves. Plotly interpolates linearly between stops, so the curve is sampled at
    ``stops`` points spaced as squares (dense near zero, where the root is steep).

    >>> scale = emphasised_fade("#2563eb")
    >>> scale[0], scale[1], scale[-1]
    ([0.0, 'rgba(37,99,235,0)'], [0.00390625, 'rgba(37,99,235,0.175)'], [1.0, 'rgba(37,99,235,1)'])
    """
    r, g, b = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
    scale: list[list[Any]] = [[0.0, f"rgba({r},{g},{b},0)"]]
    for k in range(1, stops + 1):
        root = k / stops
        alpha = floor + (1.0 - floor) * root
        scale.append([root * root, f"rgba({r},{g},{b},{alpha:.4g})"])
    return scale


def _fractions(counts: np.ndarray) -> np.ndarray:
    """Counts per bin → fraction of the group per bin (rows that are all zero stay zero)."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum(axis=-1, keepdims=True)
    return np.divide(counts, total, out=np.zeros_like(counts), where=total > 0)


def _finite(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64).copy()
    a[~np.isfinite(a) | (np.abs(a) >= _HUGE)] = np.nan
    return a
