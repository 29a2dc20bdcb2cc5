"""Widgets that several pages draw the same way."""

from __future__ import annotations

import streamlit as st

from app.charts import CurveStyle
from app.curves import ALIGNMENTS

__all__ = ["curve_controls", "set_curve_controls"]


def curve_controls(key: str, align: bool = False) -> tuple[str, CurveStyle]:
    """Smoothing and log-scale controls for a page's curves (and, with ``align``, iteration
    or fraction of training for the x axis): ``(alignment, style)``, keyed under ``key``."""
    cols = st.columns([2, 3, 1] if align else [3, 1], vertical_alignment="bottom")
    alignment = "iteration"
    if align:
        alignment = cols[0].radio(
            "x axis", list(ALIGNMENTS), key=f"{key}.align", horizontal=True,
            format_func=ALIGNMENTS.get,
            help="Fraction of training puts runs of different lengths side by side.")
    # No explicit value (it starts at the minimum, 0): a page may set the key from its URL
    # first, and Streamlit warns when a widget has both.
    smoothing = cols[-2].slider(
        "Smoothing", 0.0, 0.99, step=0.01, key=f"{key}.smoothing",
        help="Exponential moving average (bias-corrected, as TensorBoard's) over the points "
             "read; the raw values stay drawn faintly behind. 0: raw.")
    log_y = cols[-1].toggle("log y", key=f"{key}.log", help="A logarithmic y axis.")
    return alignment, CurveStyle(smoothing=smoothing, log_y=log_y)


def set_curve_controls(key: str, smoothing: float, log_y: bool,
                       fraction: bool | None = None) -> None:
    """Set the controls ``curve_controls(key)`` draws, as a link asks for them (before they
    are drawn): the smoothing, the log y axis and, for controls drawn with ``align``, the x
    axis by fraction of training (True) or by iteration (False)."""
    st.session_state[f"{key}.smoothing"] = float(smoothing)
    st.session_state[f"{key}.log"] = bool(log_y)
    if fraction is not None:
        st.session_state[f"{key}.align"] = "fraction" if fraction else "iteration"
