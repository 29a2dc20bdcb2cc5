"""Tables offered as CSV files.

The store keeps metrics as float32 and pandas writes the float64 they become in full, so a
test accuracy of 0.786 arrived in a CSV as 0.7860000133514404. Every CSV the dashboard offers
goes through ``csv_text``, which writes each float with at most 7 significant digits (what a
float32 holds), whole numbers without a decimal point, and a missing value as an empty field.
"""

from __future__ import annotations

import math
from numbers import Real

import pandas as pd
import streamlit as st

__all__ = ["csv_download", "csv_text", "short_float"]

SIGNIFICANT_DIGITS = 7  # a float32 holds 7 significant decimal digits (24-bit mantissa)


def short_float(value: object) -> object:
    """``value`` as a CSV writes it: a float with at most 7 significant digits (``""`` when
    it is missing), a whole float as an integer; anything else unchanged.

    >>> short_float(0.7860000133514404), short_float(84.5), short_float(2000.0)
    ('0.786', '84.5', '2000')
    >>> short_float(float("nan")), short_float(1 / 3), short_float(1.5e-09), short_float("a")
    ('', '0.3333333', '1.5e-09', 'a')
    """
    if isinstance(value, bool) or not isinstance(value, Real) or isinstance(value, int):
        return value
    x = float(value)
    if math.isnan(x):
        return ""
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    return f"{x:.{SIGNIFICANT_DIGITS}g}"


def csv_text(frame: pd.DataFrame, index: bool = False) -> str:
    """``frame`` as CSV text, every float written by ``short_float`` (in float columns and
    in columns of mixed values alike); with ``index``, the index as the first column."""
    out = frame.copy()
    for name in out.columns:
        column = out[name]
        if pd.api.types.is_float_dtype(column) or column.dtype == object:
            out[name] = column.map(short_float).astype(object)
    if index:
        out.index = out.index.map(short_float)
    return out.to_csv(index=index)


def csv_download(frame: pd.DataFrame, name: str, key: str, label: str = "Download table (CSV)",
                 index: bool = False) -> None:
    """A button that downloads ``frame`` as ``<name>.csv`` (``csv_text``); the page does not
    rerun when it is clicked."""
    st.download_button(label, data=csv_text(frame, index=index).encode(), file_name=f"{name}.csv",
                       mime="text/csv", key=key, icon=":material/download:", on_click="ignore")
