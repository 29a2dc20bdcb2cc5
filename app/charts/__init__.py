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

The figures live in one module per kind (``edf``, ``run_curves``, ``histograms``,
``landscapes``) over shared colours and helpers (``style``); this package re-exports them.
"""

from __future__ import annotations

from app.charts.edf import (  # noqa: F401
    EdfCurves,
    EmphasisSummary,
    edf_curves,
    edf_figure,
    edf_mini_figure,
    emphasis_peaks,
    emphasis_summary,
    formula_latex,
    scheme_label,
)
from app.charts.histograms import (  # noqa: F401
    PICK,
    histogram_bars,
    histogram_heatmaps,
    histogram_overlay,
    histograms_grid,
    picked_iteration,
)
from app.charts.landscapes import (  # noqa: F401
    DIVERGED_MARKER,
    METRIC_SCALE,
    landscape_figure,
)
from app.charts.run_curves import (  # noqa: F401
    RAW,
    CurveStyle,
    Panel,
    lines_figure,
    overlay_figure,
    stacked_lines_figure,
)
from app.charts.style import (  # noqa: F401
    CLEAN,
    LEGEND_BELOW,
    LOG_AXIS,
    MAX_HEATMAP_COLUMNS,
    MAX_LINE_POINTS,
    NOISY,
    OVERLAY_COLOURS,
    OVERLAY_DASHES,
    SCHEME,
    SERIES_COLOURS,
    bin_centres,
    downsample,
    emphasised_fade,
)
