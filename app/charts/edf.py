"""Emphasis density functions: a scheme evaluated on a grid of p, its summary, and its figures."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app.charts.style import (
    _HUGE,
    CLEAN,
    LEGEND_BELOW,
    NOISY,
    OVERLAY_COLOURS,
    OVERLAY_DASHES,
    SCHEME,
    _finite,
    bin_centres,
)


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
