"""Monitor page (app/views/monitor.py) under AppTest.

AppTest runs fragments inline and never fires ``run_every`` (docs/architecture.md,
"Streamlit: AppTest and fragments"): polling is
tested by writing rows as a worker would, then running the page again.
"""

from __future__ import annotations

import time

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
    frame_with,
    rendered,
    trace,
)

from dm_core.config import parse_config
from dm_store import Store

PAGE = APP.format("monitor")


@pytest.fixture
def live_run(app_db):
    store = Store(app_db)
    run_id = fabricate(store, name="live", iterations=200, eval_every=50, bins=10, upto=100,
                       finish=False)
    return store, run_id


@pytest.fixture
def reads(monkeypatch):
    """Record the ``after`` / ``start`` of every scalar and histogram read."""
    calls = {"scalars": [], "histograms": []}
    orig_scalars, orig_hist = Store.scalars, Store.histograms

    def scalars(self, run_id, after=0, max_points=None, stride=None):
        calls["scalars"].append(after)
        return orig_scalars(self, run_id, after=after, max_points=max_points, stride=stride)

    def histograms(self, run_id, start=None, end=None, max_rows=2000, stride=None):
        calls["histograms"].append(start)
        return orig_hist(self, run_id, start=start, end=end, max_rows=max_rows, stride=stride)

    monkeypatch.setattr(Store, "scalars", scalars)
    monkeypatch.setattr(Store, "histograms", histograms)
    return calls


def _page(run_id=None):
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    if run_id is not None:
        at.session_state["monitor.run_id"] = run_id
    return at.run()


def _points(at, key, name):
    return decode(trace(chart(at, key), name)["x"])


TRAINING = "monitor.training"  # emphasis variance, losses and learning rate, concentration


def _panel(fig, title: str) -> dict:
    """The panel titled ``title`` of a figure of stacked panels, read as plotly draws it:
    its title sits on top of its y axis's domain; its traces are those on that axis or on
    an axis overlaying it (the right axis). ``{"axis", "right", "traces"}``."""
    layout = fig["layout"]
    [top] = [a["y"] for a in layout.get("annotations", []) if a["text"] == title]
    [(key, axis)] = [(k, v) for k, v in layout.items() if k.startswith("yaxis")
                     and "domain" in v and v["domain"][1] == pytest.approx(top)]
    ref = "y" + key[len("yaxis"):]
    right = {"y" + k[len("yaxis"):]: v for k, v in layout.items()
             if k.startswith("yaxis") and v.get("overlaying") == ref}
    traces = [t for t in fig["data"] if t.get("yaxis", "y") == ref or t.get("yaxis") in right]
    return {"axis": axis, "right": next(iter(right.values()), None), "traces": traces}


def _loss_panel(at) -> dict:
    return _panel(chart(at, TRAINING), "Training loss and learning rate")


def _panel_titles(fig) -> list[str]:
    return [a["text"] for a in fig["layout"].get("annotations", [])]


def test_shows_the_science_of_a_running_run(live_run):
    store, run_id = live_run
    at = _page(run_id)
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["status"] == "running" and metrics["iteration"] == "100/200"
    ev = store.evals(run_id)
    acc = chart(at, "monitor.acc")
    np.testing.assert_allclose(decode(trace(acc, "test")["y"]), ev["test_acc"].to_numpy())
    np.testing.assert_allclose(decode(trace(acc, "train vs corrupted labels")["y"]),
                               ev["train_acc_corrupted"].to_numpy())
    np.testing.assert_allclose(decode(trace(acc, "train vs intact labels")["y"]),
                               ev["train_acc_intact"].to_numpy())
    sc = store.scalars(run_id)
    pmean = chart(at, "monitor.pmean")
    np.testing.assert_allclose(decode(trace(pmean, "clean")["y"]), sc["p_clean_mean"].to_numpy())
    np.testing.assert_allclose(decode(trace(pmean, "corrupted")["y"]), sc["p_noisy_mean"].to_numpy())
    heat = chart(at, "monitor.heatmap")
    hist = store.histograms(run_id)
    z = decode(trace(heat, "clean")["z"])
    assert z.shape == (10, 100)
    np.testing.assert_allclose(z[:, 42], hist.clean[42] / hist.clean[42].sum())
    z_noisy = decode(trace(heat, "corrupted")["z"])
    np.testing.assert_allclose(z_noisy[:, 7], hist.noisy[7] / hist.noisy[7].sum())
    # The right column's curves: one figure, a panel each, over one shared iteration axis.
    training = chart(at, TRAINING)
    assert _panel_titles(training) == [  # this run logged no batch concentration
        "Emphasis variance over training", "Training loss and learning rate"]
    wvar = _panel(training, "Emphasis variance over training")
    assert wvar["axis"]["title"]["text"] == "variance of w_i"
    [line] = wvar["traces"]
    np.testing.assert_array_equal(decode(line["x"]), sc["iteration"].to_numpy())
    np.testing.assert_allclose(decode(line["y"]), sc["weight_var"].to_numpy())
    loss = _panel(training, "Training loss and learning rate")
    assert [t["name"] for t in loss["traces"]] == [
        "cross-entropy (training labels)", "dm surrogate (its gradient is the method)",
        "learning rate"]
    np.testing.assert_allclose(decode(loss["traces"][0]["y"]), sc["ce"].to_numpy())
    np.testing.assert_allclose(decode(loss["traces"][1]["y"]), sc["loss"].to_numpy())
    # The learning rate on its own log axis at the right of the loss panel.
    assert loss["right"]["title"]["text"] == "learning rate" and loss["right"]["type"] == "log"
    assert loss["traces"][2]["yaxis"] != loss["traces"][0].get("yaxis", "y")
    np.testing.assert_allclose(decode(loss["traces"][2]["y"]), sc["lr"].to_numpy())
    xaxes = {k: v for k, v in training["layout"].items() if k.startswith("xaxis")}
    assert [v["title"]["text"] for v in xaxes.values() if "title" in v] == ["iteration"]
    assert all("matches" in v for v in xaxes.values() if "title" not in v)  # zoomed together
    # One iteration's histograms, with the run's EDF (dm, λ = 1: mode ½) on the right axis.
    bars = chart(at, "monitor.bars")
    assert bars["layout"]["title"]["text"] == "p_i at iteration 100"
    edf = next(t for t in bars["data"] if t["name"].startswith("EDF"))
    x, h = decode(edf["x"]), decode(edf["y"])
    assert x[np.argmax(h)] == pytest.approx(0.5)
    assert "emphasis ψ = 0.5" in rendered(at.markdown[0].value)


def test_polling_reads_only_what_is_new(live_run, reads):
    store, run_id = live_run
    at = _page(run_id)
    assert len(_points(at, "monitor.pmean", "clean")) == 100
    fabricate(store, run_id=run_id, iterations=200, eval_every=50, bins=10, start_at=101,
              upto=160, finish=False)
    at.run()
    assert len(_points(at, "monitor.pmean", "clean")) == 160
    assert len(decode(chart(at, "monitor.heatmap")["data"][0]["x"])) == 160
    assert reads["scalars"][-2:] == [0, 100]  # the second read starts after iteration 100
    assert reads["histograms"][-2:] == [1, 101]
    assert {m.label: m.value for m in at.metric}["iteration"] == "160/200"
    at.run()  # nothing new: nothing re-read, nothing lost
    assert reads["scalars"][-1] == 160
    assert len(_points(at, "monitor.pmean", "clean")) == 160


def _chart_ids(at) -> dict[str, str]:
    """Each chart's element id, by its key: Streamlit derives it from the figure, and the
    browser draws a chart whose id changed from scratch."""
    return {key: el.proto.id for el in at.get("plotly_chart")
            for key in ("monitor.acc", "monitor.pmean", "monitor.heatmap", "monitor.bars",
                        TRAINING) if key in el.proto.id}


def test_a_tick_rebuilds_only_the_charts_whose_data_changed(live_run):
    store, run_id = live_run
    at = _page(run_id)
    figures = at.session_state["monitor.live"]["figures"]
    ids, built = _chart_ids(at), figures.builds
    assert len(ids) == 5 and built == 5 and len(at.get("plotly_chart")) == 5
    at.run()  # nothing new: every chart sent as it was, none built
    assert _chart_ids(at) == ids and figures.builds == built
    # Rows up to 140: no evaluation since the one at 100, so the accuracy chart is unchanged.
    fabricate(store, run_id=run_id, iterations=200, eval_every=50, bins=10, start_at=101,
              upto=140, finish=False)
    at.run()
    now = _chart_ids(at)
    assert now["monitor.acc"] == ids["monitor.acc"]
    assert all(now[k] != ids[k] for k in ids if k != "monitor.acc")
    assert figures.builds == built + 4
    sc = store.scalars(run_id)
    np.testing.assert_allclose(decode(trace(chart(at, "monitor.pmean"), "clean")["y"]),
                               sc["p_clean_mean"].to_numpy())
    np.testing.assert_allclose(
        decode(_panel(chart(at, TRAINING), "Emphasis variance over training")["traces"][0]["y"]),
        sc["weight_var"].to_numpy())
    assert chart(at, "monitor.bars")["layout"]["title"]["text"] == "p_i at iteration 140"
    np.testing.assert_array_equal(decode(chart(at, "monitor.heatmap")["data"][0]["x"]),
                                  store.histograms(run_id).iterations)
    # The evaluation at 150 arrives: the accuracy chart is built again, with it.
    fabricate(store, run_id=run_id, iterations=200, eval_every=50, bins=10, start_at=141,
              upto=160, finish=False)
    at.run()
    assert _chart_ids(at)["monitor.acc"] != ids["monitor.acc"] and figures.builds == built + 9
    acc = chart(at, "monitor.acc")
    np.testing.assert_array_equal(decode(trace(acc, "test")["x"]), [50, 100, 150])
    np.testing.assert_allclose(decode(trace(acc, "test")["y"]), store.evals(run_id)["test_acc"])


def test_scrubbed_iteration_survives_a_growing_maximum(live_run):
    store, run_id = live_run
    at = _page(run_id)
    assert chart(at, "monitor.bars")["layout"]["title"]["text"] == "p_i at iteration 100"
    at.toggle(key="monitor.follow").set_value(False).run()
    assert at.slider(key="monitor.scrub").value == 100  # from the iteration on screen
    assert at.slider(key="monitor.scrub").max == 200  # the run's planned iterations
    at.slider(key="monitor.scrub").set_value(40).run()
    assert chart(at, "monitor.bars")["layout"]["title"]["text"] == "p_i at iteration 40"
    fabricate(store, run_id=run_id, iterations=200, eval_every=50, bins=10, start_at=101,
              upto=200, finish=True)
    at.run()
    assert at.slider(key="monitor.scrub").value == 40
    assert chart(at, "monitor.bars")["layout"]["title"]["text"] == "p_i at iteration 40"
    _, clean, noisy = store.histogram_at(run_id, 40)
    bars = chart(at, "monitor.bars")["data"]
    np.testing.assert_allclose(decode(bars[0]["y"]), clean / clean.sum())
    np.testing.assert_allclose(decode(bars[1]["y"]), noisy / noisy.sum())
    at.toggle(key="monitor.follow").set_value(True).run()
    assert chart(at, "monitor.bars")["layout"]["title"]["text"] == "p_i at iteration 200"
    assert not at.get("slider") or all(s.key != "monitor.scrub" for s in at.slider)


def test_a_retried_run_starts_afresh(live_run):
    store, run_id = live_run
    at = _page(run_id)
    store.finish(run_id, "test-worker", "failed", error="boom")
    store.retry(run_id)
    at.run()
    assert any("waiting for a worker" in i.value for i in at.info)
    assert not at.get("plotly_chart")


def test_queued_run_and_empty_database(app_db):
    at = _page()
    assert any("No runs yet" in i.value for i in at.info)
    store = Store(app_db)
    store.submit([parse_config({"name": "waiting"})])
    at = _page()
    assert any("waiting for a worker" in i.value for i in at.info)


def test_the_methods_own_loss_is_explained_beside_the_cross_entropy(app_db):
    """A scheme loss's value is a surrogate that goes below zero: the chart says what it is
    (before: "loss (the method's own)" dipping below zero with no word about it)."""
    store = Store(app_db)
    dm = fabricate(store, name="dm", iterations=40, eval_every=20)
    focal = fabricate(store, name="focal", loss={"name": "focal"}, iterations=40, eval_every=20)
    at = _page(dm)
    names = [t["name"] for t in _loss_panel(at)["traces"]]
    assert names[:2] == ["cross-entropy (training labels)", "dm surrogate (its gradient is the method)"]
    note = " ".join(c.value for c in at.caption)
    assert "falls below zero" in note and "not comparable between methods" in note
    at = _page(focal)  # a loss that is a loss: no surrogate to explain
    names = [t["name"] for t in _loss_panel(at)["traces"]]
    assert names[1] == "focal loss"
    assert not any("surrogate" in c.value for c in at.caption)


def test_the_url_names_the_run(app_db):
    store = Store(app_db)
    first = fabricate(store, name="first", iterations=40, eval_every=20)
    second = fabricate(store, name="second", iterations=40, eval_every=20, upto=20, finish=False)
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.query_params["run"] = str(first)  # a link to the first run; the default is the running one
    at.run()
    assert at.selectbox(key="monitor.run").value == first
    assert "first" in rendered(at.markdown[0].value)
    at.selectbox(key="monitor.run").set_value(second).run()
    assert at.query_params == {"run": str(second)}
    assert at.selectbox(key="monitor.run").value == second  # the old URL did not win
    gone = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    gone.query_params["run"] = "999"
    gone.run()
    assert any("#999" in w.value and "does not exist" in w.value for w in gone.warning)


def test_curves_smoothed_and_on_a_log_scale(live_run):
    store, run_id = live_run
    at = _page(run_id)
    at.slider(key="monitor.curves.smoothing").set_value(0.5).run()
    at.toggle(key="monitor.curves.log").set_value(True).run()
    pmean = chart(at, "monitor.pmean")
    y = store.scalars(run_id)["p_clean_mean"].to_numpy()
    smoothed = next(t for t in pmean["data"] if t["name"] == "clean" and t["meta"]["role"] == "smoothed")
    ref = [sum(0.5 ** (k - j) * 0.5 * y[j] for j in range(k + 1)) / (1 - 0.5 ** (k + 1))
           for k in range(len(y))]  # the debiased EMA as a weighted sum
    np.testing.assert_allclose(decode(smoothed["y"]), ref)
    assert pmean["layout"]["yaxis"]["type"] == "log"
    training = chart(at, TRAINING)
    for title in ("Emphasis variance over training", "Training loss and learning rate"):
        assert _panel(training, title)["axis"]["type"] == "log"
    assert chart(at, "monitor.acc")["layout"]["yaxis"].get("type") != "log"  # accuracies stay


def test_the_heatmaps_mark_the_chosen_iteration(live_run):
    store, run_id = live_run
    at = _page(run_id)
    marks = chart(at, "monitor.heatmap")["layout"]["shapes"]
    assert [m["x0"] for m in marks] == [100, 100]  # following the latest, on both panels
    at.toggle(key="monitor.follow").set_value(False).run()
    at.slider(key="monitor.scrub").set_value(40).run()
    assert [m["x0"] for m in chart(at, "monitor.heatmap")["layout"]["shapes"]] == [40, 40]
    pick = [t for t in chart(at, "monitor.heatmap")["data"] if t["name"] == "pick an iteration"]
    assert len(pick) == 2  # a click target per panel, one per column
    np.testing.assert_array_equal(decode(pick[0]["x"]), store.histograms(run_id).iterations)


def test_batch_concentration_is_drawn_from_the_stored_scalars(app_db):
    store = Store(app_db)
    logged = fabricate(store, name="logged", iterations=40, eval_every=20, concentration=True)
    at = _page(logged)
    assert not at.exception
    fig = chart(at, TRAINING)
    assert _panel_titles(fig)[-1] == "Batch concentration"  # the bottom panel
    panel = _panel(fig, "Batch concentration")
    assert panel["axis"]["title"]["text"] == "fraction of the batch"
    assert panel["axis"]["range"] == [0, 1.02]
    sc = store.scalars(logged)
    share, ess = (trace({"data": panel["traces"]}, name) for name in (
        "one example's share of the batch's weight (max_share)",
        "effective sample size, fraction of the batch (ess_fraction)"))
    np.testing.assert_array_equal(decode(share["x"]), sc["iteration"].to_numpy())
    np.testing.assert_allclose(decode(share["y"]), sc["max_share"].to_numpy())
    np.testing.assert_allclose(decode(ess["y"]), sc["ess_fraction"].to_numpy())
    # The fabricated values, independently of the store: 0.9 - 0.6 t and 0.02 + 0.3 t².
    t = np.arange(1, 41) / 40
    np.testing.assert_allclose(decode(ess["y"]), 0.9 - 0.6 * t)
    np.testing.assert_allclose(decode(share["y"]), 0.02 + 0.3 * t**2)
    assert any(c.value.startswith("Effective sample size: (Σw)² / Σw²") for c in at.caption)
    at.toggle(key="monitor.curves.log").set_value(True).run()  # the page's curve controls
    assert _panel(chart(at, TRAINING), "Batch concentration")["axis"]["type"] == "log"
    # A run that logged no concentration has no such panel, nor its caption.
    plain = fabricate(store, name="plain", iterations=40, eval_every=20)
    at = _page(plain)
    fig = chart(at, TRAINING)
    assert "Batch concentration" not in _panel_titles(fig)
    assert not [t for t in fig["data"] if "(max_share)" in t["name"] or "(ess_" in t["name"]]
    assert not any("Effective sample size" in c.value for c in at.caption)


def test_a_diverged_run_says_where_and_lists_the_measured_figures(app_db):
    store = Store(app_db)
    figures = {"loss": float("inf"), "logit_max": 1.2e4, "ess_fraction": 0.06,
               "max_share": 0.41, "grad_norm": 38.2, "lr": 0.1}
    error = "diverged at iteration 30: ![x](http://evil.example/x.png) <b>loss</b>"
    run_id = fabricate(store, name="blown", iterations=40, eval_every=10, upto=30,
                       finish=False)
    store.finish(run_id, "test-worker", "failed", error=error, diverged_at=30,
                 divergence=figures)
    at = _page(run_id)
    assert not at.exception
    box = [e.value for e in at.error if "Diverged" in e.value]
    assert len(box) == 1 and "Diverged at iteration 30." in rendered(box[0])
    table = frame_with(at, "figure").set_index("name")
    assert list(table.index) == list(figures)
    assert table.loc["loss", "value"] == "not finite (inf or NaN)"  # stored as null
    for key in ("logit_max", "ess_fraction", "max_share", "grad_norm", "lr"):
        assert float(table.loc[key, "value"]) == pytest.approx(figures[key], rel=1e-3)
    assert table.loc["max_share", "figure"] == "one example's share of the batch's weight"
    assert table.loc["ess_fraction", "figure"] == "effective sample size, fraction of the batch"
    assert table.loc["grad_norm", "figure"] == "gradient norm before clipping"
    # The run's error text is shown as written, never as an image or markup.
    [warning] = [w.value for w in at.warning]
    assert rendered(warning) == error
    assert "![x](http" not in warning and "\\!\\[x\\]" in warning
    # A run that did not diverge has no such box.
    at = _page(fabricate(store, name="fine", iterations=40, eval_every=20))
    assert not [e for e in at.error if "Diverged" in e.value]


def test_the_headline_accuracy_is_selected_on_validation(app_db):
    """With a validation split the page shows the test accuracy where validation accuracy
    peaked; without one, the maximum over test evaluations, labelled optimistic."""
    store = Store(app_db)
    with_val = fabricate(store, name="val", iterations=80, eval_every=10, val=True)
    ev = store.evals(with_val)
    k = int(np.argmax(ev["val_acc"].to_numpy()))  # the first best validation accuracy
    assert ev["test_acc"].iloc[k] != ev["test_acc"].max()
    metrics = {m.label: m.value for m in _page(with_val).metric}
    assert metrics["selected test acc"] == f"{ev['test_acc'].iloc[k]:.3f}"
    assert "best test acc" not in metrics
    without = fabricate(store, name="no-val", iterations=80, eval_every=10)
    metrics = {m.label: m.value for m in _page(without).metric}
    assert metrics["max test acc (optimistic)"] == f"{store.evals(without)['test_acc'].max():.3f}"


def test_a_backlog_is_jumped_not_replayed(app_db, reads):
    """5,000 rows stored between two ticks (a busy machine, a page that fell behind): the
    second tick reads a thinned window that ends at the newest iteration, and no more rows
    than one tick's budget, instead of every row in order."""
    store = Store(app_db)
    run_id = fabricate(store, name="burst", iterations=6000, eval_every=500, bins=10, upto=100,
                       finish=False)
    at = _page(run_id)
    assert len(_points(at, "monitor.pmean", "clean")) == 100
    assert "as of iteration 100," in " ".join(c.value for c in at.caption)
    fabricate(store, run_id=run_id, iterations=6000, eval_every=500, bins=10, start_at=101,
              upto=5100, finish=False)
    at.run()
    assert reads["scalars"][-1] == 100 and reads["histograms"][-1] == 101  # after the last seen
    live = at.session_state["monitor.live"]
    assert live["scalars"].last == 5100 and live["hist"].last == 5100  # the newest row
    scalar_rows, hist_rows = live["read"]
    # A tick's budget is twice the page's kept budget (monitor.TICK_ROWS = 2 * MAX_POINTS).
    budget, hist_budget = 2 * live["scalars"].limit, 2 * live["hist"].limit
    assert scalar_rows <= budget + 1 and hist_rows <= hist_budget + 1
    kept = live["scalars"].frame["iteration"].to_numpy()
    k = live["scalars"].stride
    assert k > 1 and set(np.diff(kept[:-1]).tolist()) == {k}  # one uniform grid, old and new
    x = _points(at, "monitor.pmean", "clean")
    assert x[-1] == 5100 and len(x) <= budget + 1
    assert decode(chart(at, "monitor.heatmap")["data"][0]["x"])[-1] == 5100
    assert {m.label: m.value for m in at.metric}["iteration"] == "5100/6000"
    assert "as of iteration 5100," in " ".join(c.value for c in at.caption)


def test_a_slow_first_read_runs_the_page_once(live_run, monkeypatch):
    """The page's own run is no tick of the timer: however long its first read takes, it
    does not rerun the page to re-arm the timer (a slow direct load of a running run used
    to run twice, the whole page greyed out during the second run)."""
    _, run_id = live_run
    reads = []
    read = Store.scalars

    def slow(self, *args, **kwargs):
        reads.append(kwargs.get("after"))
        # Slower than REFRESH_S / PACE (4 s / 3): a timer tick this slow re-arms the timer.
        time.sleep(1.5)
        return read(self, *args, **kwargs)

    monkeypatch.setattr(Store, "scalars", slow)
    at = _page(run_id)
    assert not at.exception
    assert reads == [0]  # one run of the page, one read
    assert "as of iteration 100," in " ".join(c.value for c in at.caption)


def test_the_page_says_what_it_shows(live_run):
    store, run_id = live_run
    at = _page(run_id)
    [line] = [c.value for c in at.caption if "as of iteration" in c.value]
    assert line.startswith("Live: as of iteration 100, ") and " s ago (refreshed every " in line
    fabricate(store, run_id=run_id, iterations=200, eval_every=50, bins=10, start_at=101,
              upto=200, finish=True)
    at.run()
    assert any(c.value == "Iteration 200: the run is succeeded." for c in at.caption)


def test_the_url_holds_the_controls_and_a_copied_link_opens_the_same_view(live_run):
    store, run_id = live_run
    at = _page(run_id)
    assert at.query_params == {"run": str(run_id)}  # every control at its default
    at.slider(key="monitor.curves.smoothing").set_value(0.6).run()
    at.toggle(key="monitor.curves.log").set_value(True).run()
    at.toggle(key="monitor.follow").set_value(False).run()
    at.slider(key="monitor.scrub").set_value(40).run()
    url = dict(at.query_params)
    assert url == {"run": str(run_id), "smooth": "0.6", "log": "1", "it": "40"}
    copied = AppTest.from_file(PAGE, default_timeout=TIMEOUT)  # another session, same link
    for key, value in url.items():
        copied.query_params[key] = value
    copied.run()
    assert not copied.exception and not copied.warning
    assert copied.slider(key="monitor.curves.smoothing").value == 0.6
    assert copied.toggle(key="monitor.curves.log").value is True
    assert copied.toggle(key="monitor.follow").value is False
    assert copied.slider(key="monitor.scrub").value == 40
    assert chart(copied, "monitor.bars")["layout"]["title"]["text"] == "p_i at iteration 40"
    assert chart(copied, "monitor.pmean")["layout"]["yaxis"]["type"] == "log"
    assert dict(copied.query_params) == url  # nothing lost on the way
    copied.toggle(key="monitor.follow").set_value(True).run()  # following again: no `it`
    assert dict(copied.query_params) == {"run": str(run_id), "smooth": "0.6", "log": "1"}


def test_a_link_with_invalid_controls_is_refused_with_warnings_naming_them(live_run):
    _, run_id = live_run
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    for key, value in {"run": str(run_id), "smooth": "7", "log": "yes", "it": "-3",
                       "zoom": "2"}.items():
        at.query_params[key] = value
    at.run()
    assert not at.exception
    warnings = " ".join(w.value for w in at.warning)
    for part in ("smooth", "log", "it", "zoom"):
        assert f"link's {part}" in rendered(warnings) or f"link's '{part}'" in rendered(warnings)
    assert at.slider(key="monitor.curves.smoothing").value == 0.0  # the defaults instead
    assert at.toggle(key="monitor.curves.log").value is False
    assert at.toggle(key="monitor.follow").value is True
    assert dict(at.query_params) == {"run": str(run_id)}  # the URL names what is shown


def test_a_link_back_to_the_view_this_page_wrote_reopens_it(live_run):
    """A link naming the URL the page wrote last (the session has dropped the page's widget
    values while other pages ran) opens that view, not the defaults."""
    _, run_id = live_run
    url = {"run": str(run_id), "smooth": "0.3", "log": "1"}
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.session_state["monitor.url"] = dict(url)
    for key, value in url.items():
        at.query_params[key] = value
    at.run()
    assert at.slider(key="monitor.curves.smoothing").value == 0.3
    assert at.toggle(key="monitor.curves.log").value is True
    assert dict(at.query_params) == url
