"""The dashboard's figure builders (app/charts.py) against independent references: closed-form
weights, densities and losses written out here in float64, not taken from dm_core."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest

from app import charts
from app.charts import (
    MAX_HEATMAP_COLUMNS,
    downsample,
    edf_curves,
    edf_figure,
    formula_latex,
    histogram_bars,
    histogram_heatmaps,
    histograms_grid,
    lines_figure,
    stacked_lines_figure,
)


def _trace(fig, name, panel=None):
    for t in fig.data:
        if t.name == name and (panel is None or (t.meta or {}).get("panel") == panel):
            return t
    raise KeyError(name)


# Independent references: w(p) in float64, the normaliser by a fine trapezoid rule.
def _w_dm(p, lam, beta):
    return np.exp(beta * p**lam * (1 - p))


REFERENCE_WEIGHTS = {
    ("dm", (("lam", 1.0), ("beta", 8.0))): lambda p: _w_dm(p, 1.0, 8.0),
    ("dm", (("lam", 0.0), ("beta", 2.0))): lambda p: _w_dm(p, 0.0, 2.0),
    ("dm", (("lam", 2.0), ("beta", 20.0))): lambda p: _w_dm(p, 2.0, 20.0),
    ("normal", (("psi", 0.3), ("beta", 10.0))): lambda p: np.exp(-10.0 * p * (p - 0.6)),
    ("exponential", (("beta", 3.0),)): lambda p: np.exp(3.0 * (1 - p)),
    ("beta", (("alpha", 2.0), ("eta", 3.0))): lambda p: p * (1 - p) ** 2,
    ("cce", ()): lambda p: 2 * (1 - p),
    ("mae", ()): lambda p: 2 * p * (1 - p),
    ("mse", ()): lambda p: 4 * p * (1 - p) ** 2,
    ("gce", (("q", 0.5),)): lambda p: 2 * np.sqrt(p) * (1 - p),
}


@pytest.mark.parametrize("name,params", list(REFERENCE_WEIGHTS), ids=lambda v: str(v))
def test_weight_and_density_match_the_formulas(name, params):
    ref = REFERENCE_WEIGHTS[(name, params)]
    c = edf_curves(name, dict(params))
    w = ref(c.p)
    np.testing.assert_allclose(c.weight, w / w.max(), rtol=1e-9, atol=1e-12)
    fine = np.linspace(0, 1, 200_001)
    z = np.trapezoid(ref(fine), fine)
    np.testing.assert_allclose(c.density, w / z, rtol=1e-6)
    # The density integrates to 1 on the chart's own grid too.
    assert np.trapezoid(c.density, c.p) == pytest.approx(1.0, abs=2e-3)


@pytest.mark.parametrize("lam", [0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 9.0])
def test_psi_marker_sits_at_lambda_over_lambda_plus_one(lam):
    fig = edf_figure(edf_curves("dm", {"lam": lam, "beta": 12.0}))
    psi = _trace(fig, "ψ")
    assert psi.xaxis == "x2"  # on the density panel
    np.testing.assert_array_equal(np.asarray(psi.x), [lam / (lam + 1)] * 2)


def test_spread_band_is_psi_plus_minus_the_density_std():
    c = edf_curves("dm", {"lam": 1.0, "beta": 12.0})
    fine = np.linspace(0, 1, 400_001)
    h = _w_dm(fine, 1.0, 12.0)
    h /= np.trapezoid(h, fine)
    mean = np.trapezoid(fine * h, fine)
    std = math.sqrt(np.trapezoid((fine - mean) ** 2 * h, fine))
    band = _trace(edf_figure(c), "ψ ± spread")
    assert min(band.x) == pytest.approx(0.5 - std, abs=1e-6)
    assert max(band.x) == pytest.approx(0.5 + std, abs=1e-6)
    assert band.fill == "toself"


def test_cce_loss_is_minus_log_p_anchored_at_one():
    c = edf_curves("cce", {})
    fig = edf_figure(c)
    loss = _trace(fig, "CCE", panel=3)
    np.testing.assert_allclose(loss.y, -np.log(c.loss_p), rtol=1e-7)
    assert "L(1) = 0" in fig.layout.annotations[2].text


def test_losses_are_of_the_normalised_edf():
    # MAE: (1 - p) / ∫2p(1-p) = 3(1 - p); GCE: (1 - p^q)/q / (2 / ((q+1)(q+2))).
    mae = edf_curves("mae", {})
    loss = mae.loss_half + mae.loss_shift
    np.testing.assert_allclose(loss, 3 * (1 - mae.loss_p), rtol=1e-7)
    q = 0.7
    gce = edf_curves("gce", {"q": q})
    z = 2 / ((q + 1) * (q + 2))
    np.testing.assert_allclose(gce.loss_half + gce.loss_shift, (1 - gce.loss_p**q) / q / z, rtol=1e-7)


def test_dm_loss_diverges_at_one_so_all_curves_share_the_half_anchor():
    dm = edf_curves("dm", {"lam": 1.0, "beta": 8.0})
    cce = edf_curves("cce", {})
    assert math.isinf(dm.loss_shift)
    fig = edf_figure(dm, [cce])
    loss = _trace(fig, "CCE", panel=3)
    np.testing.assert_allclose(loss.y, -np.log(2 * cce.loss_p), rtol=1e-7)  # -log p + log ½
    assert "L(½)" in fig.layout.annotations[2].text
    # dL/dp = -h(p) / (2p(1-p)): check the DM curve's slope against its own density formula.
    p = dm.loss_p
    y = np.asarray(_trace(fig, dm.label, panel=3).y)
    fine = np.linspace(0, 1, 200_001)
    z = np.trapezoid(_w_dm(fine, 1.0, 8.0), fine)
    slope = np.gradient(y, p)
    expected = -_w_dm(p, 1.0, 8.0) / z / (2 * p * (1 - p))
    np.testing.assert_allclose(slope[5:-5], expected[5:-5], rtol=2e-2)


def test_overlays_are_drawn_on_all_three_panels():
    fig = edf_figure(edf_curves("dm", {"lam": 1.0, "beta": 8.0}),
                     [edf_curves(n, {}) for n in ("cce", "mae", "mse")] + [edf_curves("gce", {"q": 0.7})])
    for name in ("CCE", "MAE", "MSE", "GCE(q=0.7)"):
        panels = sorted((t.meta or {}).get("panel") for t in fig.data if t.name == name)
        assert panels == [1, 2, 3]
    assert fig.layout.xaxis2.matches == "x" and fig.layout.xaxis3.matches == "x"  # linked zoom


def test_run_histogram_overlay_is_a_density_of_all_examples():
    clean = np.array([0, 1, 2, 3, 10, 20, 30, 10, 5, 4])
    noisy = np.array([8, 6, 4, 2, 1, 0, 0, 0, 0, 1])
    fig = edf_figure(edf_curves("dm", {"lam": 1.0, "beta": 8.0}), histogram=(clean, noisy, "#1"))
    bars = [t for t in fig.data if t.type == "bar"]
    assert len(bars) == 2 and all(t.yaxis == "y3" for t in bars)  # the density panel's right axis
    total = sum(float(np.sum(b.y)) * 0.1 for b in bars)
    assert total == pytest.approx(1.0)
    np.testing.assert_allclose(bars[0].y, clean / (clean.sum() + noisy.sum()) * 10)


def test_heatmap_columns_are_fractions_per_iteration():
    rng = np.random.default_rng(0)
    it = np.arange(1, 51)
    clean = rng.integers(0, 20, (50, 12))
    noisy = rng.integers(0, 20, (50, 12))
    noisy[3] = 0  # an iteration without corrupted examples stays zero, not NaN
    fig = histogram_heatmaps(it, clean, noisy)
    z_clean = np.asarray(_trace(fig, "clean").z)
    z_noisy = np.asarray(_trace(fig, "corrupted").z)
    assert z_clean.shape == (12, 50)
    np.testing.assert_allclose(z_clean.sum(axis=0), 1.0)
    np.testing.assert_allclose(z_clean[:, 7], clean[7] / clean[7].sum())
    assert np.all(z_noisy[:, 3] == 0)
    np.testing.assert_allclose(np.asarray(fig.data[0].y), (np.arange(12) + 0.5) / 12)


def test_heatmaps_fade_from_transparent_so_both_themes_read_them():
    fig = histogram_heatmaps(np.arange(1, 4), np.ones((3, 5)), np.ones((3, 5)))
    for trace, colour in ((_trace(fig, "clean"), charts.CLEAN), (_trace(fig, "corrupted"), charts.NOISY)):
        stops = trace.colorscale
        r, g, b = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
        assert stops[0] == (0.0, f"rgba({r},{g},{b},0)")  # an empty bin: the page's background
        assert stops[-1] == (1.0, f"rgba({r},{g},{b},1)")
        assert trace.zmin == 0.0


def _loss_lr(x, losses, lr, style=charts.RAW):
    """The Monitor's loss panel: losses, and the learning rate at the right."""
    return stacked_lines_figure(x, [charts.Panel("Training loss and learning rate", "loss", losses,
                                                 dotted=True, right=("learning rate", lr))],
                                style=style)


def test_learning_rate_axis_is_logarithmic():
    """Schedules step the rate by factors: a log axis, also for a constant rate or a step
    smaller than a decade (before: linear below a tenfold span)."""
    x = np.arange(1, 101)
    for lr in (np.full(100, 0.1), np.where(x < 50, 0.1, 0.05), np.where(x < 50, 0.1, 0.001)):
        fig = _loss_lr(x, {"loss": 1.0 / x}, lr)
        assert fig.layout.yaxis2.type == "log" and fig.layout.yaxis2.range is None
        assert fig.layout.yaxis2.overlaying == "y" and fig.layout.yaxis2.side == "right"
        assert fig.data[-1].yaxis == "y2" and fig.data[-1].line.shape == "hv"
        np.testing.assert_allclose(fig.data[-1].y, lr)


def test_stacked_panels_share_one_x_axis_and_keep_each_panels_axes():
    """The Monitor's right column as one figure: each panel's lines on its own y axis under
    its own title, the loss panel's learning rate at its right, one x axis for all."""
    x = np.arange(1, 201)
    wvar, ce, own, lr = x / 200.0, 2.0 / x, -1.0 / x, np.where(x < 100, 0.1, 0.01)
    ess, share = 1.0 - x / 400.0, x / 1000.0
    panels = [charts.Panel("variance", "variance of w_i", {"w": wvar}),
              charts.Panel("loss", "loss", {"ce": ce, "own": own}, dotted=True,
                           right=("learning rate", lr)),
              charts.Panel("concentration", "fraction", {"ess": ess, "share": share},
                           y_range=(0, 1.02))]
    fig = stacked_lines_figure(x, panels)
    layout = fig.layout
    assert [a.text for a in layout.annotations] == ["variance", "loss", "concentration"]
    expected = {"w": ("x", "y", wvar), "ce": ("x2", "y2", ce), "own": ("x2", "y2", own),
                "learning rate": ("x2", "y3", lr), "ess": ("x3", "y4", ess),
                "share": ("x3", "y4", share)}
    assert [t.name for t in fig.data] == list(expected)
    for t in fig.data:
        x_ref, y_ref, values = expected[t.name]
        assert (t.xaxis, t.yaxis) == (x_ref, y_ref)
        np.testing.assert_array_equal(t.x, x)
        np.testing.assert_allclose(t.y, values)
    # Panels top to bottom, each title on top of its panel; one x axis: the upper ones
    # follow the bottom one (zooming one zooms all), which alone is titled.
    tops = [layout.yaxis.domain[1], layout.yaxis2.domain[1], layout.yaxis4.domain[1]]
    assert tops == sorted(tops, reverse=True)
    assert [a.y for a in layout.annotations] == pytest.approx(tops)
    assert layout.xaxis.matches == layout.xaxis2.matches == "x3"
    assert layout.xaxis3.title.text == "iteration" and layout.xaxis.title.text is None
    assert (layout.yaxis.title.text, layout.yaxis2.title.text, layout.yaxis4.title.text) == (
        "variance of w_i", "loss", "fraction")
    assert layout.yaxis3.title.text == "learning rate" and layout.yaxis3.overlaying == "y2"
    assert list(layout.yaxis4.range) == [0, 1.02] and layout.yaxis.range is None
    assert [t.line.dash for t in fig.data[1:3]] == ["solid", "dot"]
    assert len({t.line.color for t in fig.data}) == len(fig.data)  # one legend: one colour each
    with pytest.raises(ValueError, match="at least one Panel"):
        stacked_lines_figure(x, [])


def test_heatmap_is_thinned_to_its_column_budget():
    n = 3 * MAX_HEATMAP_COLUMNS + 7
    counts = np.ones((n, 4), dtype=np.int32)
    fig = histogram_heatmaps(np.arange(n), counts, counts)
    x = np.asarray(fig.data[0].x)
    assert len(x) <= MAX_HEATMAP_COLUMNS + 1 and x[-1] == n - 1


def test_downsample_keeps_the_last_point():
    x = np.arange(10_001)
    xs, ys = downsample(x, x * 2.0, max_points=1000)
    assert len(xs) <= 1001 and xs[-1] == 10_000 and xs[0] == 0
    np.testing.assert_array_equal(ys, xs * 2.0)
    same = downsample(x[:5], x[:5], max_points=10)
    np.testing.assert_array_equal(same[0], x[:5])


def test_figures_carry_numpy_arrays_not_lists():
    fig = lines_figure(np.arange(5), {"a": np.arange(5) / 5}, "t")
    assert isinstance(fig.data[0].x, np.ndarray) and isinstance(fig.data[0].y, np.ndarray)
    assert fig.layout.uirevision == "lines"


def test_histogram_bars_and_grid():
    clean, noisy = np.array([1, 3, 6]), np.array([5, 5, 0])
    fig = histogram_bars(clean, noisy, "t", edf=edf_curves("dm", {"lam": 1.0, "beta": 8.0}))
    np.testing.assert_allclose(fig.data[0].y, clean / 10)
    np.testing.assert_allclose(fig.data[1].y, noisy / 10)
    assert fig.data[2].name.startswith("EDF") and fig.data[2].yaxis == "y2"
    grid = histograms_grid([("a", clean, noisy), ("b", noisy, clean)], columns=2)
    assert [t.xaxis for t in grid.data] == ["x", "x", "x2", "x2"]


def test_formula_latex():
    assert formula_latex("w(p) = exp(8 * p^0.5 * (1 - p))") == r"w(p) = \exp(8 \cdot p^{0.5} \cdot (1 - p))"
    assert formula_latex("w(p) = p^(-0.5) * (1 - p)^1") == r"w(p) = p^{-0.5} \cdot (1 - p)^{1}"


@pytest.mark.parametrize("module", ["app.charts", "app.charts.style", "app.designer_carry",
                                    "app.designer_url", "app.downloads", "app.forms", "app.runsets",
                                    "app.landscape", "app.curves", "app.links", "app.text"])
def test_doctests(module):
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.failed == 0 and (result.attempted > 0 or module == "app.charts")


def test_invalid_scheme_parameters_raise_config_errors():
    from dm_core.registry import ConfigError

    with pytest.raises(ConfigError, match="lam"):
        edf_curves("dm", {"lam": -1.0, "beta": 8.0})
    assert charts.edf_curves("dm", {"lam": 1.0, "beta": 8.0}) is charts.edf_curves("dm", {"lam": 1.0, "beta": 8.0})


def test_extreme_parameters_still_draw():
    # β = 1000: w = e^1000 overflows a float; the weight and density are still drawn (in log
    # space), the loss panel is left empty instead of failing.
    c = edf_curves("dm", {"lam": 0.0, "beta": 1000.0})
    assert c.mode == 0.0 and np.isfinite(c.density[1:]).all()
    assert np.isnan(c.loss_half).all()
    edf_figure(c)
    pole = edf_curves("beta", {"alpha": 0.1, "eta": 0.1})  # poles at both ends: NaN there only
    assert np.isnan(pole.weight[[0, -1]]).all() and np.isfinite(pole.weight[1:-1]).all()


def _run(run_id, config, status="succeeded", final=0.5, diverged_at=None):
    from dm_store import RunInfo, RunStatus

    return RunInfo(id=run_id, name=f"r{run_id}", group="g", status=RunStatus(status), attempt=1,
                   max_attempts=3, iteration=10, total_iterations=10, created_at=None,
                   started_at=None, finished_at=None, heartbeat_at=None, worker_id=None,
                   device=None, error=None, summary={"test_acc_final": final}, config=config,
                   last_test_acc=None, cancel_requested=False, diverged_at=diverged_at)


def test_a_method_comparison_landscape_has_a_category_axis():
    """Losses of a comparison differ in their name and in which parameters they have: the
    name is a category axis, a parameter a loss lacks shows as "–"."""
    from app.landscape import build_landscape

    runs = [_run(1, {"seed": 0, "loss": {"name": "cce"}}, final=0.7),
            _run(2, {"seed": 0, "loss": {"name": "dm", "lam": 1.0}}, final=0.8),
            _run(3, {"seed": 1, "loss": {"name": "dm", "lam": 1.0}}, final=0.9),
            _run(4, {"seed": 0, "loss": {"name": "dm", "lam": 2.0}}, status="running")]
    land = build_landscape(runs, {}, "test_acc_final")
    name_axis, lam_axis = land.axes
    assert (name_axis.key, name_axis.numeric, name_axis.labels) == ("loss.name", False, ["cce", "dm"])
    assert lam_axis.labels == ["1", "2", "–"] and not lam_axis.numeric
    cell = {c.setting.label: c for c in land.cells}
    assert cell["dm λ=1"].mean == pytest.approx(0.85) and cell["dm λ=1"].n == 2
    assert cell["dm λ=2"].pending == 1 and np.isnan(cell["dm λ=2"].mean)
    fig = charts.landscape_figure(land, "t")
    assert fig.data[0].type == "scatter" and fig.layout.xaxis.type == "category"
    # Drawn as one point per method with its error bar, not over the λ axis a CCE run lacks.
    assert land.compares_methods and len(fig.data) == 1
    assert list(fig.layout.xaxis.categoryarray) == ["cce", "dm λ=1", "dm λ=2"]
    points = fig.data[0]
    assert list(points.x) == ["cce", "dm λ=1"]  # dm λ=2 has no value yet
    np.testing.assert_allclose(points.y, [0.7, 0.85])
    np.testing.assert_allclose(points.error_y.array, [0.0, np.std([0.8, 0.9], ddof=1)])
    assert list(points.text) == ["0.7000 (n=1)", "0.8500 ± 0.0707 (n=2)"]


def test_one_swept_parameter_is_a_line_with_error_bars():
    from app.landscape import build_landscape

    runs = [_run(i, {"seed": s, "loss": {"name": "dm", "beta": b}}, final=f)
            for i, (b, s, f) in enumerate(((12.0, 0, 0.6), (4.0, 0, 0.8), (12.0, 1, 0.7),
                                           (4.0, 1, 0.9)), start=1)]
    land = build_landscape(runs, {}, "test_acc_final")
    fig = charts.landscape_figure(land, "t")
    line = fig.data[0]
    np.testing.assert_allclose(line.x, [4.0, 12.0])
    np.testing.assert_allclose(line.y, [0.85, 0.65])
    np.testing.assert_allclose(line.error_y.array, [np.std([0.8, 0.9], ddof=1)] * 2)


def _log_axes(fig) -> list:
    return [axis for name in fig.layout if name.startswith("yaxis")
            for axis in [fig.layout[name]] if axis.type == "log"]


def test_every_log_axis_labels_its_ticks_with_whole_values():
    """Without a tick format plotly labels the ticks between decades with their leading digit
    alone (an axis from 0.05 to 2 read "5, 0.1, 2, 5, 1, 2"); a tick format makes it print
    each tick's value (0.05, 0.1, 0.2, 0.5, 1, 2), to three significant digits (a learning
    rate over less than a decade had ticks such as 0.0865994 printed whole)."""
    x = np.arange(1, 101)
    log = charts.CurveStyle(log_y=True)
    figures = [lines_figure(x, {"loss": 2.0 / x}, "t", style=log),
               charts.overlay_figure({"a": (x, 2.0 / x)}, "t", style=log),
               _loss_lr(x, {"loss": 2.0 / x}, np.where(x < 50, 0.1, 0.01), style=log)]
    for fig in figures:
        axes = _log_axes(fig)
        assert axes and all(axis.tickformat == ".3~g" for axis in axes)
    assert len(_log_axes(figures[-1])) == 2  # the loss and the learning rate


def _alpha_at(scale, position: float) -> float:
    """The opacity plotly draws at ``position`` of a colour scale (linear between stops)."""
    stops = np.array([s for s, _ in scale])
    alphas = np.array([float(c.rsplit(",", 1)[1].rstrip(")")) for _, c in scale])
    return float(np.interp(position, stops, alphas))


def test_sparse_heatmap_bins_stay_visible_and_the_colour_bar_reads_real_fractions():
    """Most bins hold a small fraction of a group: on a linear fade a bin with 1% of the
    largest fraction was drawn at about 1% opacity, i.e. not at all."""
    counts = np.array([[990, 10, 0, 0]] * 3)  # one bin with 1% of the examples, two empty
    fig = histogram_heatmaps(np.arange(1, 4), counts, counts)
    heat = _trace(fig, "clean")
    z = np.asarray(heat.z)
    np.testing.assert_allclose(z[:, 0], [0.99, 0.01, 0.0, 0.0])  # real fractions underneath
    top = z.max()
    assert _alpha_at(heat.colorscale, 0.01 / top) > 0.15
    assert _alpha_at(heat.colorscale, 0.0) == 0.0  # empty bins stay the page's background
    assert _alpha_at(heat.colorscale, 0.5) > 0.5 * _alpha_at(heat.colorscale, 1.0)
    assert heat.colorbar.title.text == "fraction"
