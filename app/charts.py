"""Plotly figures for the dashboard, built from arrays: no Streamlit here, so every figure is
testable on its own.

Two kinds of function:

- ``edf_curves`` evaluates one registered scheme (``dm_core.schemes``) on a grid of ``p``: its
  weight, its normalised density and the loss it implies (cached: the implied loss is a
  numerical integral per point);
- ``*_figure`` functions turn numpy arrays into ``plotly.graph_objects.Figure`` objects. They
  pass numpy arrays to plotly (never lists: docs/architecture.md, "Plotly payloads"), set
  ``uirevision`` so a user's zoom survives a redraw, and leave the template alone so
  ``st.plotly_chart(theme="streamlit")`` follows the light or dark theme.

Colours: clean examples blue, corrupted (noisy-label) examples red, in every chart.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app.curves import smooth
from app.landscape import Axis, Landscape, grid_arrays
from app.runsets import format_value
from app.text import plotly_text
from dm_core.store.downsample import every_kth

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

MAX_LINE_POINTS = 4000  # per line: every refresh resends the whole figure (docs/architecture.md)
MAX_HEATMAP_COLUMNS = 2000
_HUGE = 1e300  # weights clamped at a pole come back as the dtype's largest number


# ----------------------------------------------------------------------------- helpers

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


def _fractions(counts: np.ndarray) -> np.ndarray:
    """Counts per bin → fraction of the group per bin (rows that are all zero stay zero)."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum(axis=-1, keepdims=True)
    return np.divide(counts, total, out=np.zeros_like(counts), where=total > 0)


def _finite(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64).copy()
    a[~np.isfinite(a) | (np.abs(a) >= _HUGE)] = np.nan
    return a


# ----------------------------------------------------------------------------- EDF curves

@dataclass(frozen=True)
class EdfCurves:
    """One scheme evaluated on a grid of ``p`` (float64 numpy arrays).

    ``weight`` is ``w(p)`` divided by its largest value on the grid (``weight_peak``): under
    derivative normalisation only relative weights matter. ``density`` is ``h(p) = w / ∫w``.
    ``loss_half`` is the loss of the normalised EDF, ``∫_p^½ h(t) / (2t(1-t)) dt`` (NaN where
    it diverges), and ``loss_shift = ∫_½^1 h / (2t(1-t))`` (``inf`` when ``w(1) > 0``), so
    ``loss_half + loss_shift`` is the loss anchored at ``L(1) = 0`` when that exists.
    """

    name: str
    label: str
    params: tuple[tuple[str, float], ...]
    p: np.ndarray
    weight: np.ndarray
    weight_peak: float
    density: np.ndarray
    loss_p: np.ndarray
    loss_half: np.ndarray
    loss_shift: float
    mode: float
    spread: float
    formula: str
    # Where the weight is largest, read off the curve: one p for a single peak (the scheme's
    # exact mode when it agrees with the curve), both ends for a U-shaped curve (DM with
    # β < 0); empty when the weight is the same everywhere.
    peaks: tuple[float, ...] = ()


def emphasis_peaks(p: np.ndarray, weight: np.ndarray, mode: float | None = None,
                   rtol: float = 1e-9) -> tuple[float, ...]:
    """The p where ``weight`` (on the grid ``p``, infinite at a pole) is largest: one per
    run of grid points within ``rtol`` of the maximum, an end of [0, 1] when the run touches
    it; ``()`` when every point is (a flat weight). ``mode``, the scheme's own (exact) mode,
    replaces a single peak that lies within one grid step of it.

    >>> p = np.linspace(0, 1, 11)
    >>> emphasis_peaks(p, np.exp(-8.6 * p**1.1 * (1 - p)))  # DM with β < 0: U-shaped
    (0.0, 1.0)
    >>> emphasis_peaks(p, np.exp(8 * p * (1 - p)), mode=0.5), emphasis_peaks(p, np.ones(11))
    ((0.5,), ())
    """
    w = np.asarray(weight, dtype=np.float64)
    value = np.where(np.isnan(w), -np.inf, np.where(np.abs(w) >= _HUGE, np.inf, w))
    top = value.max()
    if not np.isfinite(top):
        near = value == top
    else:
        near = value >= top - rtol * max(abs(top), 1e-300)
    if near.all():
        return ()
    idx = np.flatnonzero(near)
    runs = np.split(idx, np.flatnonzero(np.diff(idx) > 1) + 1)
    peaks = tuple(0.0 if r[0] == 0 else 1.0 if r[-1] == len(p) - 1 else float(np.mean(p[r]))
                  for r in runs)
    step = float(p[1] - p[0]) if len(p) > 1 else 1.0
    if mode is not None and len(peaks) == 1 and abs(peaks[0] - mode) <= step:
        return (float(mode),)
    return peaks


@dataclass(frozen=True)
class EmphasisSummary:
    """What a scheme emphasises, in words: ``where`` for a metric or a caption
    ("ψ = 0.5", "both ends (p = 0 and 1)"), ``advice`` for a sentence under it."""

    where: str
    advice: str
    single: bool  # one peak: ψ and ψ ± spread describe the curve


def _trough(p: np.ndarray, weight: np.ndarray) -> float:
    """Where ``weight`` is smallest: the grid minimum refined by the parabola through it and
    its two neighbours (finer than the grid's step).

    >>> round(_trough(np.linspace(0, 1, 11), (np.linspace(0, 1, 11) - 0.53) ** 2), 6)
    0.53
    """
    w = np.where(np.isfinite(weight), weight, np.inf)
    k = int(np.argmin(w))
    if 0 < k < len(w) - 1 and np.isfinite(w[k - 1]) and np.isfinite(w[k + 1]):
        curvature = w[k - 1] - 2 * w[k] + w[k + 1]
        if curvature > 0:
            return float(p[k] + 0.5 * (w[k - 1] - w[k + 1]) / curvature * (p[1] - p[0]))
    return float(p[k])


def emphasis_summary(curves: EdfCurves) -> EmphasisSummary:
    """Describe where ``curves`` puts its emphasis, from its peaks (not from a formula for
    ψ, which a U-shaped curve would contradict)."""
    peaks = curves.peaks
    if not peaks:
        return EmphasisSummary("uniform", "Every example gets the same weight, whatever its p.",
                               False)
    if len(peaks) == 1:
        psi = peaks[0]
        if psi <= 0.05:
            advice = "ψ ≈ 0: hardest examples first (as CCE) — best on clean data."
        elif psi >= 0.95:
            advice = "ψ ≈ 1: only well-fitted examples are emphasised."
        else:
            advice = (f"ψ = {psi:.2f}: examples with p ≈ {psi:.2f} get the most gradient; "
                      "examples the model finds very hard (often mislabelled) get less.")
        return EmphasisSummary(f"ψ = {psi:.3g}", advice, True)
    trough = _trough(curves.p, curves.weight)
    if peaks == (0.0, 1.0):
        return EmphasisSummary(
            "both ends (p = 0 and 1)",
            "U-shaped: the hardest examples (p ≈ 0, where mislabelled ones sit) and the "
            f"best-fitted ones (p ≈ 1) get the most gradient; those near p ≈ {trough:.2f} the "
            "least.", False)
    shown = ", ".join(f"{x:.2f}" for x in peaks)
    return EmphasisSummary(f"peaks at p = {shown}",
                           f"The weight peaks at p = {shown}; it is lowest near p ≈ {trough:.2f}.",
                           False)


def scheme_label(name: str, params: Mapping[str, float]) -> str:
    """``dm(lam=1, beta=8)``; ``cce`` for a scheme without parameters."""
    if not params:
        return name.upper() if len(name) <= 4 else name
    inner = ", ".join(f"{k}={v:g}" for k, v in params.items())
    return f"{name.upper() if len(name) <= 4 else name}({inner})"


def edf_curves(name: str, params: Mapping[str, float], points: int = 201,
               loss_points: int = 99) -> EdfCurves:
    """Evaluate scheme ``name`` (validated by ``dm_core.schemes.make_scheme``) on a grid.

    Raises ``ConfigError`` for an unknown scheme or an out-of-range parameter.
    """
    key = tuple((k, float(v)) for k, v in params.items())
    return _edf_curves(name, key, points, loss_points)


@lru_cache(maxsize=256)
def _edf_curves(name: str, params: tuple[tuple[str, float], ...], points: int,
                loss_points: int) -> EdfCurves:
    import torch

    from dm_core.schemes import make_scheme

    scheme = make_scheme(name, **dict(params))
    p = np.linspace(0.0, 1.0, points)
    p_t = torch.from_numpy(p)
    raw = scheme.weight(p_t).numpy()
    w = _finite(raw)
    peak = float(np.nanmax(w)) if np.any(np.isfinite(w)) else 1.0
    peak = peak if peak > 0 else 1.0
    h = _finite(scheme.density(p_t).numpy())
    # ∫w from one interior point: h = w / ∫w.
    half = torch.tensor([0.5], dtype=torch.float64)
    z = float(scheme.weight(half)[0] / scheme.density(half)[0])
    # The loss on interior points (both ends may diverge), anchored at ½ (always finite there).
    loss_p = np.linspace(0.0, 1.0, loss_points + 2)[1:-1]
    if math.isfinite(z) and z > 0:
        loss_half = _finite(scheme.implied_loss(torch.from_numpy(loss_p), anchor=0.5).numpy() / z)
        shift = float(scheme.implied_loss(half, anchor=1.0)[0]) / z
    else:  # e.g. β in the hundreds: ∫w overflows a float, so the normalised loss is undefined
        loss_half, shift = np.full_like(loss_p, np.nan), math.inf
    return EdfCurves(name=name, label=scheme_label(name, dict(params)), params=params, p=p,
                     weight=w / peak, weight_peak=peak, density=h, loss_p=loss_p,
                     loss_half=loss_half, loss_shift=shift if math.isfinite(shift) else math.inf,
                     mode=float(scheme.mode), spread=float(scheme.spread()),
                     formula=scheme.formula, peaks=emphasis_peaks(p, raw, float(scheme.mode)))


def formula_latex(formula: str) -> str:
    """A scheme's plain-text formula as LaTeX (``exp(...)`` → ``\\exp(...)``, ``p^0.5`` → ``p^{0.5}``).

    >>> formula_latex("w(p) = exp(8 * p^0.5 * (1 - p))")
    'w(p) = \\\\exp(8 \\\\cdot p^{0.5} \\\\cdot (1 - p))'
    """
    import re

    out = formula.replace("exp(", "\\exp(").replace(" * ", " \\cdot ").replace("*", " \\cdot ")
    return re.sub(r"\^\(?(-?[0-9.e+-]+)\)?", r"^{\1}", out)


def edf_figure(main: EdfCurves, overlays: Sequence[EdfCurves] = (),
               histogram: tuple[np.ndarray, np.ndarray, str] | None = None,
               height: int = 380) -> go.Figure:
    """The designer's three linked charts over p ∈ [0, 1]: relative weight, density, loss.

    The density panel marks the emphasis mode ψ (a vertical line, trace ``ψ``) and shades
    ψ ± spread (trace ``ψ ± spread``). ``overlays`` (e.g. CCE, MAE, MSE, GCE) are dashed.
    ``histogram`` = (clean counts, noisy counts, label): the p_i histogram of a run, drawn as
    stacked bars (as a density of all examples) on the density panel's right axis.
    The x axes are matched, so zooming one panel zooms all three.
    """
    fig = make_subplots(rows=1, cols=3, horizontal_spacing=0.08,
                        subplot_titles=("weight w(p) / max w", "density h(p) = w / ∫w",
                                        "implied loss L(p)"),
                        specs=[[{}, {"secondary_y": True}, {}]])
    curves = [main, *overlays]
    anchor_one = all(math.isfinite(c.loss_shift) for c in curves)
    for i, c in enumerate(curves):
        is_main = i == 0
        colour = SCHEME if is_main else OVERLAY_COLOURS[(i - 1) % len(OVERLAY_COLOURS)]
        line = {"color": colour, "width": 3 if is_main else 1.8}
        if not is_main:
            line["dash"] = OVERLAY_DASHES[(i - 1) % len(OVERLAY_DASHES)]
        loss = c.loss_half + (c.loss_shift if anchor_one else 0.0)
        for col, x, y, hover in ((1, c.p, c.weight, "w/max w"), (2, c.p, c.density, "h"),
                                 (3, c.loss_p, loss, "L")):
            fig.add_trace(go.Scatter(
                x=x, y=y, mode="lines", name=c.label, legendgroup=c.label, line=line,
                showlegend=col == 1, meta={"role": "curve", "panel": col},
                hovertemplate=f"{c.label}<br>p=%{{x:.3f}}<br>{hover}=%{{y:.4g}}<extra></extra>"),
                row=1, col=col)
    # Where the main scheme's emphasis is, on the density panel: its mode ψ and ψ ± spread
    # for a single peak; markers at every peak otherwise (a U-shaped curve has no one ψ).
    h_top = float(np.nanmax(main.density)) if np.any(np.isfinite(main.density)) else 1.0
    if len(main.peaks) == 1:
        psi = main.peaks[0]
        lo, hi = max(0.0, psi - main.spread), min(1.0, psi + main.spread)
        fig.add_trace(go.Scatter(
            x=np.array([lo, hi, hi, lo, lo]), y=np.array([0.0, 0.0, h_top, h_top, 0.0]),
            fill="toself", mode="lines", line={"width": 0}, fillcolor="rgba(124,58,237,0.15)",
            name="ψ ± spread", showlegend=True, hoverinfo="skip"), row=1, col=2)
        fig.add_trace(go.Scatter(
            x=np.array([psi, psi]), y=np.array([0.0, h_top]), mode="lines+markers",
            line={"color": SCHEME, "width": 2, "dash": "dot"},
            marker={"size": 7, "symbol": "diamond"}, name="ψ", showlegend=True,
            hovertemplate=f"emphasis mode ψ = {psi:.4g}<extra></extra>"), row=1, col=2)
    elif main.peaks:
        peaks = np.asarray(main.peaks)
        fig.add_trace(go.Scatter(
            x=peaks, y=np.full(len(peaks), h_top), mode="markers",
            marker={"size": 11, "symbol": "diamond", "color": SCHEME}, name="emphasis peaks",
            showlegend=True, hovertemplate="emphasis peak at p = %{x:.3g}<extra></extra>"),
            row=1, col=2)
    if histogram is not None:
        clean, noisy, label = histogram
        clean = np.asarray(clean, dtype=np.float64)
        noisy = np.asarray(noisy, dtype=np.float64)
        bins = len(clean)
        total = max(clean.sum() + noisy.sum(), 1.0)
        centres = bin_centres(bins)
        for counts, colour, name in ((clean, CLEAN, "clean p_i"), (noisy, NOISY, "corrupted p_i")):
            fig.add_trace(go.Bar(x=centres, y=counts / total * bins, width=1.0 / bins,
                                 marker={"color": colour}, opacity=0.35, name=f"{name} ({label})",
                                 hovertemplate="p≈%{x:.3f}<br>density %{y:.3g}<extra></extra>"),
                          row=1, col=2, secondary_y=True)
        # No title on this right axis: it would be drawn over the loss panel beside it.
        fig.update_yaxes(secondary_y=True, row=1, col=2, showgrid=False, rangemode="tozero")
        fig.layout.annotations[1].text = "density h(p); bars: p_i density (right axis)"
        fig.update_layout(barmode="stack")
    fig.update_xaxes(range=[0, 1], title_text="p")
    fig.update_xaxes(title_text="p (probability of the annotated label)", row=1, col=1)
    fig.update_xaxes(matches="x")
    fig.update_yaxes(rangemode="tozero", row=1, col=1)
    fig.update_yaxes(rangemode="tozero", row=1, col=2, secondary_y=False)
    fig.layout.annotations[2].text = ("implied loss L(p), L(1) = 0" if anchor_one
                                      else "implied loss L(p) − L(½)")
    fig.update_layout(height=height, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      legend=LEGEND_BELOW, uirevision="edf")
    return fig


def edf_mini_figure(curves: EdfCurves, height: int = 240) -> go.Figure:
    """One small density chart with the mode marked (the home page's live EDF)."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=curves.p, y=curves.density, mode="lines", name=curves.label,
                             line={"color": SCHEME, "width": 3}, fill="tozeroy",
                             fillcolor="rgba(124,58,237,0.12)"))
    top = float(np.nanmax(curves.density))
    for peak in curves.peaks:
        fig.add_trace(go.Scatter(x=np.array([peak, peak]), y=np.array([0.0, top]),
                                 mode="lines", name="ψ", line={"color": SCHEME, "dash": "dot"}))
    fig.update_layout(height=height, margin={"l": 10, "r": 10, "t": 30, "b": 10},
                      showlegend=False,
                      title=f"h(p) of {curves.label}, emphasis {emphasis_summary(curves).where}",
                      xaxis_title="p", uirevision="edf-mini")
    fig.update_xaxes(range=[0, 1])
    return fig


# ----------------------------------------------------------------------------- run curves

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
        fig.update_yaxes(type="log")
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
        fig.update_yaxes(type="log", title_text="learning rate", secondary_y=True,
                         showgrid=False, tickformat=".2g")
    fig.update_layout(title="Training loss and learning rate", height=height,
                      xaxis_title="iteration", margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      uirevision="loss-lr", legend=LEGEND_BELOW)
    fig.update_yaxes(title_text="loss", secondary_y=False)
    if style.log_y:
        fig.update_yaxes(type="log", secondary_y=False)
    return fig


# ----------------------------------------------------------------------------- histograms

def _fade_scale(colour: str) -> list[list[Any]]:
    """A colour scale from transparent to ``colour``: empty bins show the page's own
    background, so the heatmaps read the same in the light and the dark theme.

    >>> _fade_scale("#2563eb")[0], _fade_scale("#2563eb")[-1]
    ([0.0, 'rgba(37,99,235,0)'], [1.0, 'rgba(37,99,235,1)'])
    """
    r, g, b = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
    # Most bins hold small fractions: a steep start keeps them visible against the background.
    return [[stop, f"rgba({r},{g},{b},{alpha:g})"] for stop, alpha in ((0.0, 0), (0.1, 0.3), (1.0, 1))]


PICK = "pick an iteration"  # the click targets' trace name


def histogram_heatmaps(iterations: np.ndarray, clean: np.ndarray, noisy: np.ndarray,
                       height: int = 420, revision: str = "heatmap",
                       chosen: int | None = None) -> go.Figure:
    """p_i histograms over training: iteration × bin heatmaps for clean and corrupted examples.

    Each column is the fraction of that group's examples (in the batch) per bin of p_i, so the
    two panels are comparable whatever the noise rate. Columns are thinned to at most
    ``MAX_HEATMAP_COLUMNS``. ``chosen`` (the iteration shown below the heatmaps) is marked by
    a vertical line across both panels.

    Plotly cannot select a heatmap cell, so each panel also carries a row of invisible
    markers, one per column (trace ``PICK``): with ``hovermode="x"`` a click anywhere in a
    column selects its marker, whose x is that column's iteration (``picked_iteration``).
    """
    iterations = np.asarray(iterations)
    clean = np.asarray(clean)
    noisy = np.asarray(noisy)
    if len(iterations) > MAX_HEATMAP_COLUMNS:
        idx = downsample(np.arange(len(iterations)), max_points=MAX_HEATMAP_COLUMNS)[0]
        iterations, clean, noisy = iterations[idx], clean[idx], noisy[idx]
    bins = clean.shape[1] if clean.ndim == 2 and clean.shape[1] else 20
    centres = bin_centres(bins)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.1,
                        subplot_titles=("clean examples: p_i over training",
                                        "corrupted examples: p_i over training"))
    for row, counts, scale in ((1, clean, _fade_scale(CLEAN)), (2, noisy, _fade_scale(NOISY))):
        z = _fractions(counts).T if counts.size else np.zeros((bins, 0))
        fig.add_trace(go.Heatmap(
            x=iterations, y=centres, z=z, colorscale=scale, zmin=0.0,
            colorbar={"title": "fraction", "len": 0.42, "y": 0.79 if row == 1 else 0.21},
            name="clean" if row == 1 else "corrupted",
            hovertemplate="iteration %{x}<br>p≈%{y:.3f}<br>fraction %{z:.3f}<extra></extra>"),
            row=row, col=1)
        fig.add_trace(go.Scatter(
            x=iterations, y=np.full(len(iterations), 0.5), mode="markers", name=PICK,
            marker={"opacity": 0, "size": 6}, showlegend=False,
            hovertemplate="click: show iteration %{x}<extra></extra>"), row=row, col=1)
        fig.update_yaxes(title_text="p_i", range=[0, 1], row=row, col=1)
    if chosen is not None:
        fig.add_vline(x=chosen, line={"color": SCHEME, "width": 2, "dash": "dot"})
    fig.update_xaxes(title_text="iteration", row=2, col=1)
    fig.update_layout(height=height, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      uirevision=revision, hovermode="x", clickmode="event+select")
    return fig


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
                   revision: str = "bars") -> go.Figure:
    """Clean and corrupted p_i histograms at one iteration, overlaid (fraction of each group).

    With ``edf``, the run's emphasis density h(p) is drawn on a right axis, so one sees how
    much gradient each part of the histogram receives (e.g. little for the corrupted
    examples at small p_i when ψ is large).
    """
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    _add_histogram_pair(fig, np.asarray(clean), np.asarray(noisy), show_legend=True)
    if edf is not None:
        fig.add_trace(go.Scatter(x=edf.p, y=edf.density, mode="lines", name=f"EDF h(p) of {edf.label}",
                                 line={"color": SCHEME, "width": 2}), secondary_y=True)
        fig.update_yaxes(title_text="emphasis density h(p)", secondary_y=True, showgrid=False,
                         rangemode="tozero")
    fig.update_layout(title=title, barmode="overlay", height=height, xaxis_title="p_i",
                      margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      uirevision=revision, legend=LEGEND_BELOW)
    fig.update_yaxes(title_text="fraction of group", secondary_y=False)
    fig.update_xaxes(range=[0, 1])
    return fig


def _add_histogram_pair(fig: go.Figure, clean: np.ndarray, noisy: np.ndarray, show_legend: bool,
                        **where: int) -> None:
    bins = len(clean)
    centres = bin_centres(bins)
    for counts, colour, name in ((clean, CLEAN, "clean"), (noisy, NOISY, "corrupted")):
        n = int(np.sum(counts))
        fig.add_trace(go.Bar(x=centres, y=_fractions(counts), width=1.0 / bins, opacity=0.6,
                             marker={"color": colour}, name=name, legendgroup=name,
                             showlegend=show_legend,
                             hovertemplate=f"{name} (n={n})<br>p≈%{{x:.3f}}<br>fraction %{{y:.3f}}"
                                           "<extra></extra>"), **where)


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
        _add_histogram_pair(fig, np.asarray(clean), np.asarray(noisy), show_legend=i == 0,
                            row=i // cols + 1, col=i % cols + 1)
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


# ----------------------------------------------------------------------------- landscapes

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
    """The landscape as the shape of its sweep asks: a line over one parameter, a heatmap
    over two on a full grid, points over two where the grid has holes, parallel coordinates
    over more; None when nothing varies (one setting: a table says it all)."""
    if not land.axes:
        return None
    if len(land.axes) == 1:
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
