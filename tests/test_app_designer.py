"""EDF designer page (app/views/designer.py) under AppTest."""

from __future__ import annotations

import math

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest
from test_app_support import (  # noqa: F401
    APP,
    TIMEOUT,
    app_db_fixture,
    chart,
    decode,
    fabricate,
    rendered,
    trace,
)

from dm_store import Store

PAGE = APP.format("designer")


def _psi(at) -> float:
    return float(decode(trace(chart(at, "designer.chart"), "ψ")["x"])[0])


def _metric(at, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def _help(at, label: str) -> str:
    return next(m.proto.help for m in at.metric if m.label == label)


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


def test_exact_value_beyond_the_slider_range_widens_the_slider_to_it(at):
    """The slider stayed at the end of its range (β = 100 typed, slider at 40): the two
    inputs disagreed about the value."""
    at.number_input(key="designer.dm.lam.num").set_value(9.0).run()
    assert _psi(at) == pytest.approx(0.9, abs=1e-12)
    lam = at.slider(key="designer.dm.lam.slider")
    assert (lam.value, lam.min, lam.max) == (9.0, 0.0, 9.0)
    assert "Widened from [0, 5]" in lam.help
    assert _metric(at, "mode ψ") == "0.900"
    at.number_input(key="designer.dm.beta.num").set_value(100.0).run()
    beta = at.slider(key="designer.dm.beta.slider")
    assert (beta.value, beta.min, beta.max) == (100.0, -20.0, 100.0)
    # Dragged back, the typed value stays within reach; both inputs follow the slider.
    at.slider(key="designer.dm.beta.slider").set_value(55.0).run()
    beta = at.slider(key="designer.dm.beta.slider")
    assert (beta.value, beta.max) == (55.0, 100.0)
    assert at.number_input(key="designer.dm.beta.num").value == 55.0
    assert at.session_state["designer.dm.beta"] == 55.0
    # A value typed inside the registered range gives the slider its registered range back.
    at.number_input(key="designer.dm.beta.num").set_value(-30.0).run()
    beta = at.slider(key="designer.dm.beta.slider")
    assert (beta.value, beta.min, beta.max) == (-30.0, -30.0, 40.0)
    at.number_input(key="designer.dm.beta.num").set_value(12.0).run()
    beta = at.slider(key="designer.dm.beta.slider")
    assert (beta.value, beta.min, beta.max) == (12.0, -20.0, 40.0)
    assert not at.exception


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


def test_use_in_launch_carries_the_added_dm_curves_as_a_grid(at):
    """Launch carried the main curve only: the DM curves added beside it go as the λ/β grid
    (one run per curve, none added); a curve the form cannot queue as drawn is named."""
    at.number_input(key="designer.dm.beta.num").set_value(12.0).run()  # main: λ 0.5, β 12
    _add_curve(at, "dm", lam=2.0, beta=16.0)
    _add_curve(at, "dm", lam=0.5, beta=4.0)
    _add_curve(at, "normal", psi=0.3, beta=10.0)
    assert at.button(key="designer.use").label == "Use in Launch (loss `dm`, a λ/β grid of 3 runs)"
    captions = " ".join(rendered(c.value) for c in at.caption)
    assert "λ = 0.5: β = 4, 12; λ = 2: β = 16" in captions
    assert "Not carried: normal(psi=0.3, beta=10)" in captions
    at.button(key="designer.use").click().run()
    assert at.session_state["designer.carry"] == {
        "name": "dm", "lam": 0.5, "beta": 12.0, "grid": [[0.5, [4.0, 12.0]], [2.0, [16.0]]]}
    assert not at.exception


def test_a_u_shaped_curve_is_described_as_emphasising_both_ends(at):
    """DM with β < 0 is U-shaped: w(0) = w(1) = 1 and w < 1 inside. Neither the mode nor the
    advice may claim one ψ (before: "mode ψ = 0.000 ... hardest examples first (as CCE)",
    with a ψ ± spread band)."""
    at.number_input(key="designer.dm.lam.num").set_value(1.1).run()
    at.number_input(key="designer.dm.beta.num").set_value(-8.6).run()
    p = np.linspace(0, 1, 2001)
    w = np.exp(-8.6 * p**1.1 * (1 - p))  # the reference curve: largest at both ends
    assert w[0] == w[-1] == 1.0 and w[1:-1].max() < 1.0
    # Short enough for its column ("both …" before); the whole of it in the help.
    assert _metric(at, "mode ψ") == "0 & 1"
    assert "both ends (p = 0 and 1)" in _help(at, "mode ψ")
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


def test_metrics_show_values_short_enough_for_their_column(at):
    """A long value is cut by its column: max w read "5.2e…" and the mode "both …"."""
    at.number_input(key="designer.dm.lam.num").set_value(1.0).run()
    at.number_input(key="designer.dm.beta.num").set_value(160.0).run()
    peak = math.exp(160.0 / 4)  # w = exp(β p (1 - p)) is largest at p = ½
    value = _metric(at, "max w")
    assert len(value) <= 7 and float(value) == pytest.approx(peak, rel=0.05), value
    assert f"{peak:.6g}" in _help(at, "max w")
    assert all(len(m.value) <= 7 for m in at.metric if m.label != "worst-case share of one example")


def _density(fig, name: str):
    t = next(t for t in fig["data"] if t.get("name") == name and t.get("xaxis") == "x2")
    return decode(t["x"]), decode(t["y"])


def _add_curve(at, family: str, **params: float):
    at.selectbox(key="designer.extra.family").set_value(family).run()
    for name, value in params.items():
        at.number_input(key=f"designer.extra.{family}.{name}").set_value(value)
    at.button(key="designer.extra.add").click().run()
    return at


def test_a_second_dm_curve_and_any_other_scheme_can_be_added_and_removed(at):
    """Only CCE, MAE, MSE and GCE could be overlaid, never a second DM (λ, β) curve."""
    _add_curve(at, "dm", lam=2.0, beta=16.0)
    _add_curve(at, "normal", psi=0.3, beta=10.0)
    fig = chart(at, "designer.chart")
    names = {t.get("name") for t in fig["data"]}
    assert {"DM(lam=0.5, beta=8)", "DM(lam=2, beta=16)", "normal(psi=0.3, beta=10)"} <= names
    x, y = _density(fig, "DM(lam=2, beta=16)")
    fine = np.linspace(0, 1, 200_001)
    z = np.trapezoid(np.exp(16 * fine**2 * (1 - fine)), fine)
    np.testing.assert_allclose(y, np.exp(16 * x**2 * (1 - x)) / z, rtol=1e-6)
    at.button(key="designer.extra.remove.0").click().run()
    names = {t.get("name") for t in chart(at, "designer.chart")["data"]}
    assert "DM(lam=2, beta=16)" not in names and "normal(psi=0.3, beta=10)" in names
    # A parameter the registry refuses is reported, and nothing is added.
    _add_curve(at, "dm", lam=-1.0)
    assert any("lam" in e.value and "out of range" in e.value for e in at.error)
    assert at.session_state["designer.extras"] == [("normal", {"psi": 0.3, "beta": 10.0})]
    assert not at.exception


def test_the_histogram_of_any_run_at_any_logged_iteration(app_db):
    """Any run can be picked (not only the newest ones), at any iteration it has logged."""
    store = Store(app_db)
    oldest = fabricate(store, name="oldest", iterations=60, eval_every=20, bins=10)
    for i in range(11):
        fabricate(store, name=f"newer {i}", iterations=3, eval_every=3, bins=10, seed=i + 1)
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    assert len(at.selectbox(key="designer.run").options) == 13  # "none" and every run
    at.selectbox(key="designer.run").set_value(oldest).run()
    bars = [t for t in chart(at, "designer.chart")["data"] if t.get("type") == "bar"]
    assert bars[0]["name"] == f"clean p_i (#{oldest} @ 60)"  # the latest by default
    at.number_input(key="designer.run_iteration").set_value(30).run()
    bars = [t for t in chart(at, "designer.chart")["data"] if t.get("type") == "bar"]
    _, clean, noisy = store.histogram_at(oldest, 30)
    assert bars[0]["name"] == f"clean p_i (#{oldest} @ 30)"
    np.testing.assert_allclose(decode(bars[0]["y"]), clean / (clean.sum() + noisy.sum()) * 10)
    np.testing.assert_allclose(decode(bars[1]["y"]), noisy / (clean.sum() + noisy.sum()) * 10)
    at.number_input(key="designer.run_iteration").set_value(500).run()  # beyond: its latest
    bars = [t for t in chart(at, "designer.chart")["data"] if t.get("type") == "bar"]
    assert bars[0]["name"] == f"clean p_i (#{oldest} @ 60)"
    assert not at.exception


def _open(link: dict[str, str]) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.query_params.update(link)
    return at.run()


def test_the_url_names_the_view_and_a_copied_link_opens_it(at):
    assert at.query_params == {"family": "dm", "lam": "0.5", "beta": "8"}
    at.slider(key="designer.dm.lam.slider").set_value(2.0).run()
    at.number_input(key="designer.dm.beta.num").set_value(100.0).run()
    _add_curve(at, "normal", psi=0.3, beta=10.0)
    link = dict(at.query_params)
    assert link == {"family": "dm", "lam": "2", "beta": "100", "curves": "normal:psi=0.3,beta=10"}
    copy = _open(link)
    assert not copy.exception and not copy.warning
    assert copy.session_state["designer.dm.lam"] == 2.0
    assert copy.slider(key="designer.dm.beta.slider").value == 100.0
    assert copy.number_input(key="designer.dm.beta.num").value == 100.0
    assert _psi(copy) == pytest.approx(2 / 3)
    assert "normal(psi=0.3, beta=10)" in {t.get("name") for t in chart(copy, "designer.chart")["data"]}
    assert dict(copy.query_params) == link
    # Another family: the URL follows, and its link opens it.
    at.selectbox(key="designer.family").set_value("gce").run()
    at.number_input(key="designer.gce.q.num").set_value(0.4).run()
    assert at.query_params["family"] == "gce" and at.query_params["q"] == "0.4"
    other = _open(dict(at.query_params))
    assert other.selectbox(key="designer.family").value == "gce"
    assert _psi(other) == pytest.approx(0.4 / 1.4)


@pytest.mark.parametrize("link,named,shown", [
    ({"family": "dm", "lam": "-1", "beta": "4"}, ["lam = '-1'"], {"lam": "0.5", "beta": "4"}),
    ({"family": "dm", "lam": "abc", "beta": "nan"}, ["lam = 'abc'", "beta = 'nan'"],
     {"lam": "0.5", "beta": "8"}),
    ({"family": "nope", "lam": "2"}, ["family 'nope'"], {"lam": "2", "beta": "8"}),
    ({"family": "gce", "q": "0"}, ["q = '0'"], {"q": "0.7"}),
    ({"family": "dm", "curves": "dm:lam=1;huber:d=1"}, ["curve 'huber:d=1'"],
     {"lam": "0.5", "beta": "8", "curves": "dm:lam=1,beta=8"}),
])
def test_invalid_link_parameters_fall_back_to_defaults_with_a_warning_naming_them(
        app_db, link, named, shown):
    at = _open(link)
    assert not at.exception and not at.error
    warnings = [rendered(w.value) for w in at.warning]
    assert len(warnings) == len(named)
    for name, warning in zip(named, warnings, strict=True):
        assert name in warning and "The link's" in warning, warnings
    family = link["family"] if link["family"] != "nope" else "dm"
    assert at.selectbox(key="designer.family").value == family
    assert dict(at.query_params) == {"family": family, **shown}  # the view shown, named again
    at.run()  # the page's own URL is not a link: the warnings go
    assert not at.warning


def test_a_hostile_link_is_named_as_text_not_rendered(app_db):
    """A link's parameters are typed by anyone: the warnings that name them must not turn
    them into an image the browser fetches or a link the dashboard seems to offer."""
    from test_app_user_text import IMAGE, LINK, markup_in

    at = _open({"family": IMAGE, "lam": LINK, "curves": LINK})
    warnings = [w.value for w in at.warning]
    assert len(warnings) == 3 and not any(markup_in(w) for w in warnings), warnings
    assert IMAGE in rendered(warnings[0]) and all(LINK in rendered(w) for w in warnings[1:])
    assert at.selectbox(key="designer.family").value == "dm" and not at.exception
