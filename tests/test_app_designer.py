"""EDF designer page (app/views/designer.py) under AppTest."""

from __future__ import annotations

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest
from test_app_support import APP, TIMEOUT, app_db_fixture, chart, decode, fabricate, trace  # noqa: F401

from dm_core.store import Store

PAGE = APP.format("designer")


def _psi(at) -> float:
    return float(decode(trace(chart(at, "designer.chart"), "ψ")["x"])[0])


def _metric(at, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


@pytest.fixture
def at(app_db):
    return AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()


def test_default_scheme_marks_its_mode(at):
    assert not at.exception
    lam = at.number_input(key="designer.dm.lam.num").value
    assert _psi(at) == pytest.approx(lam / (lam + 1), abs=1e-12)
    assert _metric(at, "mode ψ") == f"{lam / (lam + 1):.3f}"


@pytest.mark.parametrize("lam", [0.0, 1.0, 2.0, 4.0])
def test_moving_the_lambda_slider_moves_psi_and_syncs_the_number(at, lam):
    at.slider(key="designer.dm.lam.slider").set_value(lam).run()
    assert _psi(at) == pytest.approx(lam / (lam + 1), abs=1e-12)
    assert at.number_input(key="designer.dm.lam.num").value == lam
    assert at.session_state["designer.dm.lam"] == lam


def test_exact_value_beyond_the_slider_range(at):
    at.number_input(key="designer.dm.lam.num").set_value(9.0).run()
    assert _psi(at) == pytest.approx(0.9, abs=1e-12)
    assert at.slider(key="designer.dm.lam.slider").value == 5.0  # clamped to the slider's range
    assert _metric(at, "mode ψ") == "0.900"


def test_beta_changes_the_spread_not_the_mode(at):
    at.slider(key="designer.dm.lam.slider").set_value(1.0).run()
    wide = float(_metric(at, "spread"))
    at.number_input(key="designer.dm.beta.num").set_value(30.0).run()
    assert _psi(at) == pytest.approx(0.5)
    assert float(_metric(at, "spread")) < wide
    band = decode(trace(chart(at, "designer.chart"), "ψ ± spread")["x"])
    assert band.min() == pytest.approx(0.5 - float(_metric(at, "spread")), abs=1e-3)


def test_invalid_value_shows_an_error_naming_the_parameter(at):
    at.number_input(key="designer.dm.lam.num").set_value(-1.0).run()
    assert any("lam" in e.value and "out of range" in e.value for e in at.error)
    assert not at.get("plotly_chart")
    at.number_input(key="designer.dm.lam.num").set_value(1.0).run()
    assert not at.error and _psi(at) == pytest.approx(0.5)


def test_another_family(at):
    at.selectbox(key="designer.family").set_value("gce").run()
    q = at.number_input(key="designer.gce.q.num").value
    assert _psi(at) == pytest.approx(q / (q + 1))
    at.selectbox(key="designer.family").set_value("normal").run()
    at.number_input(key="designer.normal.psi.num").set_value(0.8).run()
    assert _psi(at) == pytest.approx(0.8)


def test_overlays_follow_their_toggles(at):
    fig = chart(at, "designer.chart")
    names = {t.get("name") for t in fig["data"]}
    assert {"CCE", "MAE"} <= names and "MSE" not in names
    at.checkbox(key="designer.overlay.mse").check().run()
    at.checkbox(key="designer.overlay.gce").check().run()
    at.slider(key="designer.overlay.gce.q").set_value(0.5).run()
    fig = chart(at, "designer.chart")
    names = {t.get("name") for t in fig["data"]}
    assert {"MSE", "GCE(q=0.5)"} <= names
    # CCE's density on the middle panel is 2(1 - p) (∫ 2(1-p) dp = 1).
    cce = next(t for t in fig["data"] if t.get("name") == "CCE" and t.get("xaxis") == "x2")
    x, y = decode(cce["x"]), decode(cce["y"])
    np.testing.assert_allclose(y, 2 * (1 - x), rtol=1e-6, atol=1e-9)


def test_run_histogram_overlay(app_db, at):
    store = Store(app_db)
    run_id = fabricate(store, iterations=60, eval_every=20, bins=10)
    at.run()
    at.selectbox(key="designer.run").set_value(run_id).run()
    bars = [t for t in chart(at, "designer.chart")["data"] if t.get("type") == "bar"]
    assert len(bars) == 2
    _, clean, noisy = store.histogram_at(run_id, 60)
    np.testing.assert_allclose(decode(bars[0]["y"]), clean / (clean.sum() + noisy.sum()) * 10)
    assert bars[1]["name"].startswith("corrupted p_i")


def test_use_in_launch_carries_the_scheme(at):
    at.slider(key="designer.dm.lam.slider").set_value(2.0).run()
    at.number_input(key="designer.dm.beta.num").set_value(16.0).run()
    at.button(key="designer.use").click().run()
    assert at.session_state["designer.carry"] == {"name": "dm", "lam": 2.0, "beta": 16.0}
    # Run on its own there is no navigation: the page says where to go instead of failing.
    assert not at.exception
    assert any("Launch" in i.value for i in at.info)


def test_a_u_shaped_curve_is_described_as_emphasising_both_ends(at):
    """DM with β < 0 is U-shaped: w(0) = w(1) = 1 and w < 1 inside. Neither the mode nor the
    advice may claim one ψ (before: "mode ψ = 0.000 ... hardest examples first (as CCE)",
    with a ψ ± spread band)."""
    at.number_input(key="designer.dm.lam.num").set_value(1.1).run()
    at.number_input(key="designer.dm.beta.num").set_value(-8.6).run()
    p = np.linspace(0, 1, 2001)
    w = np.exp(-8.6 * p**1.1 * (1 - p))  # the reference curve: largest at both ends
    assert w[0] == w[-1] == 1.0 and w[1:-1].max() < 1.0
    assert _metric(at, "mode ψ") == "both ends (p = 0 and 1)"
    captions = " ".join(c.value for c in at.caption)
    assert "hardest examples first" not in captions
    # Least emphasis where p^λ (1 - p) peaks, at p = λ / (λ + 1).
    assert "U-shaped" in captions and f"near p ≈ {1.1 / 2.1:.2f} the least" in captions
    fig = chart(at, "designer.chart")
    names = {t.get("name") for t in fig["data"]}
    assert "ψ ± spread" not in names and "ψ" not in names
    np.testing.assert_allclose(decode(trace(fig, "emphasis peaks")["x"]), [0.0, 1.0])


def _reference_share(w: np.ndarray, batch_size: int) -> float:
    """max w / (max w + (B - 1) min w) over a dense float64 grid of p."""
    return float(w.max() / (w.max() + (batch_size - 1) * w.min()))


def test_worst_case_share_of_a_batch_equals_the_brute_force_reference(at):
    assert at.number_input(key="designer.batch").value == 128  # the Launch default
    at.number_input(key="designer.dm.lam.num").set_value(2.0).run()
    at.number_input(key="designer.dm.beta.num").set_value(20.0).run()
    p = np.linspace(0.0, 1.0, 2_000_001)
    ref = _reference_share(np.exp(20.0 * p**2 * (1 - p)), 128)
    assert float(_metric(at, "worst-case share of one example")) == pytest.approx(ref, rel=1e-3)
    at.number_input(key="designer.batch").set_value(16).run()
    ref16 = _reference_share(np.exp(20.0 * p**2 * (1 - p)), 16)
    assert float(_metric(at, "worst-case share of one example")) == pytest.approx(ref16, rel=1e-3)
    # β < 0: U-shaped, the largest weight at both ends and the smallest at λ/(λ+1).
    at.number_input(key="designer.dm.beta.num").set_value(-6.0).run()
    ref_neg = _reference_share(np.exp(-6.0 * p**2 * (1 - p)), 16)
    assert float(_metric(at, "worst-case share of one example")) == pytest.approx(ref_neg, rel=1e-3)
    # CCE's weight 2(1 - p) reaches zero: one example can take the whole batch.
    at.selectbox(key="designer.family").set_value("cce").run()
    assert float(_metric(at, "worst-case share of one example")) == 1.0
    assert any("reaches zero" in c.value for c in at.caption)
