"""Compare page (app/views/compare.py) under AppTest: its numbers are the stored ones."""

from __future__ import annotations

import io
import re

import numpy as np
import pandas as pd
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

from dm_store import Store

PAGE = APP.format("compare")
COLUMNS = {"test_acc_best": "best test acc (optimistic: max over test evaluations)",
           "test_acc_final": "final test acc",
           "train_acc_corrupted": "train acc (corrupted labels)",
           "train_acc_intact": "train acc (intact labels)",
           "fit_corrupted_subset": "corrupted fitted", "actual_noise_rate": "actual noise rate"}


@pytest.fixture
def three(app_db):
    store = Store(app_db)
    ids = [fabricate(store, name="cce", loss={"name": "cce"}, iterations=80, eval_every=20, seed=1),
           fabricate(store, name="dm", loss={"name": "dm", "lam": 1.0, "beta": 12.0},
                     iterations=80, eval_every=20, seed=2),
           fabricate(store, name="half", iterations=80, eval_every=20, upto=40, finish=False)]
    return store, ids


def _page(ids):
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.session_state["compare.run_ids"] = ids
    return at.run()


def test_table_equals_the_stored_summaries(three):
    store, ids = three
    at = _page(ids)
    assert not at.exception
    table = at.dataframe[0].value.set_index("id")
    for run_id in ids[:2]:
        summary = store.get_run(run_id).summary
        for key, column in COLUMNS.items():
            assert table.loc[run_id, column] == summary[key], (run_id, key)
        assert table.loc[run_id, "source"] == "summary"
    assert table.loc[ids[0], "method"] == "cce"
    assert table.loc[ids[1], "method"] == "dm(lam=1, beta=12)"
    # A run still training: its latest evaluation so far.
    ev = store.evals(ids[2])
    assert table.loc[ids[2], "final test acc"] == ev["test_acc"].iloc[-1]
    assert table.loc[ids[2], "source"] == "evaluations so far"
    # No validation split: nothing to select on, said as such (not a blank "not yet").
    assert set(table["selected test acc"]) == set(table["selected val acc"]) == {"—"}


def test_mean_over_seeds_pools_only_runs_that_differ_in_nothing_but_the_seed(app_db):
    """Two seeds of dm λ=1 β=12 at 80 iterations, one at 40 iterations, one at r = 0.2: the
    pooled rows (and the noise-rate table) never mix the 80- and 40-iteration runs, and
    every label says what differs (before: all pooled as "dm(lam=1, beta=12)" at r = 0.4)."""
    store = Store(app_db)
    loss = {"name": "dm", "lam": 1.0, "beta": 12.0}
    ids = [fabricate(store, name="a", loss=loss, iterations=80, eval_every=20, seed=0),
           fabricate(store, name="b", loss=loss, iterations=80, eval_every=20, seed=1,
                     acc_shift=0.02),
           fabricate(store, name="c", loss=loss, iterations=40, eval_every=20, seed=0),
           fabricate(store, name="d", loss=loss, iterations=80, eval_every=20, seed=0,
                     noise_rate=0.2)]
    at = _page(ids)
    assert not at.exception
    final = {i: store.get_run(i).summary["test_acc_final"] for i in ids}
    pooled = frame_with(at, "seeds").set_index("setting")
    assert sorted(pooled.index) == ["dm λ=1 β=12 · r=0.2 · 80 it", "dm λ=1 β=12 · r=0.4 · 40 it",
                                    "dm λ=1 β=12 · r=0.4 · 80 it"]
    row = pooled.loc["dm λ=1 β=12 · r=0.4 · 80 it"]
    assert row["seeds"] == "0, 1"
    # One notation in every table: mean ± sample std (n), to four decimals.
    mean = np.mean([final[ids[0]], final[ids[1]]])
    std = np.std([final[ids[0]], final[ids[1]]], ddof=1)
    assert row["final test acc"] == f"{mean:.4f} ± {std:.4f} (n=2)"
    assert pooled.loc["dm λ=1 β=12 · r=0.4 · 40 it", "final test acc"] == f"{final[ids[2]]:.4f} (n=1)"
    assert set(pooled["selected test acc"]) == {"—"}  # no validation split: — as everywhere
    # By noise rate: rows say what differs apart from the rate; cells in the same notation.
    paper = frame_with(at, "r = 0.4")
    assert list(paper.columns) == ["r = 0.2", "r = 0.4"]
    assert paper.loc["dm λ=1 β=12 · 80 it", "r = 0.4"] == f"{mean:.4f} ± {std:.4f} (n=2)"
    assert paper.loc["dm λ=1 β=12 · 80 it", "r = 0.2"] == f"{final[ids[3]]:.4f} (n=1)"
    assert paper.loc["dm λ=1 β=12 · 40 it", "r = 0.4"] == f"{final[ids[2]]:.4f} (n=1)"
    # Legends name the setting and, within one, the seed.
    names = [t["name"] for t in chart(at, "compare.curves")["data"]]
    assert names == ["dm λ=1 β=12 · r=0.4 · 80 it · seed 0", "dm λ=1 β=12 · r=0.4 · 80 it · seed 1",
                     "dm λ=1 β=12 · r=0.4 · 40 it", "dm λ=1 β=12 · r=0.2 · 80 it"]


@pytest.fixture
def offered(monkeypatch):
    """The bytes every download button hands to Streamlit's media store, by file name."""
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    files: dict[str, bytes] = {}
    orig = MemoryMediaFileStorage.load_and_get_id

    def load_and_get_id(self, path_or_data, mimetype, kind, filename=None):
        files[filename] = path_or_data if isinstance(path_or_data, bytes) else path_or_data.encode()
        return orig(self, path_or_data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", load_and_get_id)
    return files


def test_csv_download_is_the_table(three, offered):
    store, ids = three
    at = _page(ids)
    assert not at.exception
    button = next(b for b in at.get("download_button") if "CSV" in b.proto.label)
    assert button.proto.label == "Download table (CSV)"
    csv = pd.read_csv(io.BytesIO(offered["dm-compare.csv"])).set_index("id")
    assert sorted(csv.index) == sorted(ids)
    for run_id in ids[:2]:  # the finished runs: their stored summaries, to 7 significant digits
        summary = store.get_run(run_id).summary
        for key, column in COLUMNS.items():
            assert csv.loc[run_id, column] == pytest.approx(summary[key], rel=1e-6), (run_id, key)
    # no float32 noise such as 0.7860000133514404 in the offered text
    assert not re.search(rb"\d\.\d{9,}", offered["dm-compare.csv"])


def test_curves_overlay_every_run(three):
    store, ids = three
    at = _page(ids)
    fig = chart(at, "compare.curves")
    assert len(fig["data"]) == 3
    ev = store.evals(ids[1])
    np.testing.assert_allclose(decode(fig["data"][1]["y"]), ev["test_acc"].to_numpy())
    at.selectbox(key="compare.metric").set_value("p_noisy_mean").run()
    fig = chart(at, "compare.curves")
    np.testing.assert_allclose(decode(fig["data"][0]["y"]),
                               store.scalars(ids[0])["p_noisy_mean"].to_numpy())


def test_histograms_side_by_side_at_one_iteration(three):
    store, ids = three
    at = _page(ids)
    slider = at.slider(key="compare.iteration")
    assert slider.max == 40  # the latest iteration every run has reached
    slider.set_value(25).run()
    fig = chart(at, "compare.hists")
    assert len(fig["data"]) == 6  # clean + corrupted per run
    for i, run_id in enumerate(ids):
        _, clean, noisy = store.histogram_at(run_id, 25)
        np.testing.assert_allclose(decode(fig["data"][2 * i]["y"]), clean / clean.sum())
        np.testing.assert_allclose(decode(fig["data"][2 * i + 1]["y"]), noisy / noisy.sum())


def test_a_whole_group(app_db):
    store = Store(app_db)
    from dm_core.config import parse_config

    fabricate(store, name="other", iterations=20, eval_every=10)
    result = store.submit([parse_config({"name": f"g{i}"}) for i in range(2)], group="sweep")
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    at.selectbox(key="compare.group_pick").set_value("sweep").run()
    table = at.dataframe[0].value
    assert sorted(table["id"]) == sorted(result.run_ids)


def test_chosen_iteration_survives_runs_that_keep_training(three):
    """The histogram slider's maximum grows as the runs train; the user's choice stays."""
    store, ids = three
    at = _page(ids)
    at.slider(key="compare.iteration").set_value(25).run()
    fabricate(store, run_id=ids[2], iterations=80, eval_every=20, start_at=41, upto=70,
              finish=False)
    at.selectbox(key="compare.metric").set_value("p_noisy_mean").run()  # any rerun
    slider = at.slider(key="compare.iteration")
    assert slider.max == 70 and slider.value == 25
    fig = chart(at, "compare.hists")
    _, clean, _ = store.histogram_at(ids[2], 25)
    np.testing.assert_allclose(decode(fig["data"][4]["y"]), clean / clean.sum())


def test_charts_export_as_png_and_html(three):
    """PNG from each chart's toolbar (named after the chart), HTML from a download button."""
    import json as _json

    _, ids = three
    at = _page(ids)
    configs = {el.proto.id: _json.loads(el.proto.config) for el in at.get("plotly_chart")}
    curves = next(c for k, c in configs.items() if "compare.curves" in k)
    hists = next(c for k, c in configs.items() if "compare.hists" in k)
    assert curves["toImageButtonOptions"] == {"format": "png", "filename": "compare-test_acc", "scale": 2}
    assert hists["toImageButtonOptions"]["filename"] == "compare-histograms-40"
    labels = [b.proto.label for b in at.get("download_button")]
    assert "Download compare-test_acc (HTML)" in labels
    assert "Download compare-histograms-40 (HTML)" in labels


# ---------------------------------------------------------------- selection on validation

def _selected(ev: pd.DataFrame) -> tuple[float, float]:
    """Reference selection: the first evaluation with the highest validation accuracy."""
    k = int(np.argmax(ev["val_acc"].to_numpy()))
    return float(ev["val_acc"].iloc[k]), float(ev["test_acc"].iloc[k])


@pytest.fixture
def disagreeing(app_db):
    """Two settings of two seeds where test and validation disagree: β=4 is ahead on every
    test evaluation (so on final and on the max over test), β=12 on validation."""
    store = Store(app_db)
    ids = {}
    for beta, acc_shift, val_shift in ((4.0, 0.05, -0.03), (12.0, 0.0, 0.0)):
        for seed in (0, 1):
            ids[beta, seed] = fabricate(
                store, name=f"b{beta}-{seed}", loss={"name": "dm", "lam": 1.0, "beta": beta},
                iterations=80, eval_every=10, seed=seed, val=True,
                acc_shift=acc_shift + 0.002 * seed, val_shift=val_shift + 0.001 * seed)
    return store, ids


def test_the_winner_is_named_on_validation_never_on_test(disagreeing):
    store, ids = disagreeing
    at = _page(list(ids.values()))
    assert not at.exception
    table = at.dataframe[0].value.set_index("id")
    ref = {key: _selected(store.evals(i)) for key, i in ids.items()}
    for key, run_id in ids.items():
        val, test = ref[key]
        assert float(table.loc[run_id, "selected val acc"]) == pytest.approx(val, abs=5e-5)
        assert float(table.loc[run_id, "selected test acc"]) == pytest.approx(test, abs=5e-5)
        ev = store.evals(run_id)
        assert test != ev["test_acc"].iloc[-1]  # selection is not the final evaluation
    # The fixture disagrees: the max over test evaluations (and the final one) favour β=4 ...
    optimistic = table.groupby(table["name"].str[:3])[COLUMNS["test_acc_best"]].mean()
    assert optimistic["b4."] > optimistic["b12"]
    # ... validation favours β=12, and the page ranks and names by validation.
    ranking = _ranking(at)
    assert [s.startswith("dm λ=1 β=12") for s in ranking["setting"]] == [True, False]
    twelve = [ref[12.0, s] for s in (0, 1)]
    top = ranking.iloc[0]
    vals, tests = [v for v, _ in twelve], [t for _, t in twelve]
    assert top["selected val acc"] == f"{np.mean(vals):.4f} ± {np.std(vals, ddof=1):.4f} (n=2)"
    assert top["selected test acc"] == f"{np.mean(tests):.4f} ± {np.std(tests, ddof=1):.4f} (n=2)"
    [winner] = [rendered(s.value) for s in at.success]
    assert "β=12" in winner and "β=4" not in winner
    # The message writes a value over seeds as the tables do.
    assert f"{np.mean(tests):.4f} ± {np.std(tests, ddof=1):.4f} (n=2)" in winner
    assert f"{np.mean(vals):.4f} ± {np.std(vals, ddof=1):.4f} (n=2) on validation" in winner


def _ranking_page(app_db, shifts):
    """Settings (a DM β each) with one run per validation shift: the page and the run ids."""
    store = Store(app_db)
    ids = [fabricate(store, name=f"b{beta}-{seed}", loss={"name": "dm", "lam": 1.0, "beta": beta},
                     iterations=40, eval_every=10, seed=seed, val=True, val_shift=shift)
           for beta, values in shifts.items() for seed, shift in enumerate(values)]
    at = _page(ids)
    assert not at.exception
    return at


RANKING_COLUMNS = ["setting", "seeds", "selected val acc", "selected test acc", "final test acc"]


def _ranking_element(at):
    return next(d for d in at.dataframe if list(d.value.columns) == RANKING_COLUMNS)


def _ranking(at) -> pd.DataFrame:
    """The ranking table (its columns are only its own: the mean over seeds has more)."""
    return _ranking_element(at).value


def _displayed_ranking(at) -> pd.DataFrame:
    """The cells of the ranking as the reader sees them: its Styler's display values."""
    import pyarrow as pa

    el = _ranking_element(at)
    return pa.ipc.open_stream(el.proto.arrow_data.styler.display_values).read_pandas()


@pytest.mark.parametrize("shifts, why", [
    ({4.0: [0.0], 12.0: [0.0]}, "one seed: no test possible"),  # equal, one seed each
    ({4.0: [0.02], 12.0: [0.0]}, "one seed: no test possible"),  # apart, but one seed each
    ({4.0: [0.0, 0.004, 0.002], 12.0: [0.002, 0.0, 0.004]}, "(p = 1)"),  # the same values
])
def test_no_winner_with_one_seed_or_a_tie(app_db, shifts, why):
    at = _ranking_page(app_db, shifts)
    assert not at.success  # no trophy
    [info] = [rendered(i.value) for i in at.info]
    assert info.startswith("No winner: on validation, ") and why in info
    assert "not distinguishable" in info and f"(n={len(shifts[4.0])})" in info
    assert "%" not in info  # the tables' notation (fractions), not percent
    # With one seed a cell is its value and n, no spread; never "None".
    shown = _displayed_ranking(at)
    if len(shifts[4.0]) == 1:
        assert all(c.endswith("(n=1)") and "±" not in c for c in shown["selected val acc"])
    assert all(c.endswith(f"(n={len(shifts[4.0])})") for c in shown["selected val acc"])
    assert not shown.isin(["None", "nan"]).any().any()


def test_a_winner_when_three_seeds_clearly_separate_the_settings(app_db):
    at = _ranking_page(app_db, {4.0: [-0.05, -0.048, -0.046], 8.0: [-0.02, -0.018, -0.016],
                                12.0: [0.0, 0.002, 0.004]})
    assert not at.info
    [winner] = [rendered(s.value) for s in at.success]
    assert winner.startswith("Highest validation accuracy: **dm λ=1 β=12**, 0.9020 ± 0.0020 (n=3) "
                             "on validation, ahead of every other setting (largest p = ")
    ranking = _ranking(at)
    assert [s.split()[-1] for s in ranking["setting"]] == ["β=12", "β=8", "β=4"]


def test_by_noise_rate_defaults_to_the_selected_test_accuracy(app_db):
    store = Store(app_db)
    ids = [fabricate(store, name=f"r{rate}", iterations=40, eval_every=10, val=True,
                     noise_rate=rate) for rate in (0.2, 0.4)]
    at = _page(ids)
    assert at.selectbox(key="compare.pivot_value").value == "selected test acc"
    paper = frame_with(at, "r = 0.4")
    for run_id, rate in zip(ids, ("0.2", "0.4"), strict=True):
        _, test = _selected(store.evals(run_id))
        assert paper.iloc[0][f"r = {rate}"] == f"{test:.4f} (n=1)"


# ---------------------------------------------------------------- landscape

LAMS, BETAS, SEEDS = (1.0, 2.0), (4.0, 12.0), (0, 1)


@pytest.fixture
def grid(app_db):
    """A λ × β grid of 2 seeds in group "sweep"; the (λ=2, β=12) seed 1 run diverged."""
    store = Store(app_db)
    ids = {}
    for lam in LAMS:
        for beta in BETAS:
            for seed in SEEDS:
                ids[lam, beta, seed] = fabricate(
                    store, name=f"g{lam}-{beta}-{seed}", loss={"name": "dm", "lam": lam, "beta": beta},
                    iterations=40, eval_every=10, seed=seed, group="sweep", val=True,
                    acc_shift=0.01 * lam - 0.002 * beta + 0.003 * seed,
                    diverge=(lam, beta, seed) == (2.0, 12.0, 1))
    fabricate(store, name="elsewhere", iterations=40, eval_every=10)  # another group
    return store, ids


def _group_page(group, query=None, **state):
    """The Compare page opened by a link to ``group`` (with the other parameters ``query``)."""
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.query_params["group"] = group
    for k, v in (query or {}).items():
        at.query_params[k] = v
    for k, v in state.items():
        at.session_state[k] = v
    return at.run()


def test_a_grid_of_two_seeds_opens_as_a_heatmap_with_mean_and_std(grid):
    store, ids = grid
    at = _group_page("sweep")
    assert not at.exception
    fig = chart(at, "compare.landscape")
    heat = next(t for t in fig["data"] if t["type"] == "heatmap")
    assert list(heat["x"]) == ["4", "12"] and list(heat["y"]) == ["1", "2"]  # numeric order
    assert fig["layout"]["xaxis"]["type"] == "category"
    z = decode(heat["z"])
    for i, lam in enumerate(LAMS):
        for j, beta in enumerate(BETAS):
            finals = [store.get_run(ids[lam, beta, s]).summary for s in SEEDS]
            values = [f["test_acc_final"] for f in finals if f is not None]  # diverged: none
            assert z[i, j] == pytest.approx(np.mean(values))
            if len(values) == 2:
                assert f"± {np.std(values, ddof=1):.4f} (n=2)" in heat["text"][i][j]
    assert "✕ 1/2 diverged" in heat["text"][1][1] and "(n=1)" in heat["text"][1][1]
    marked = trace(fig, "diverged (runs left out of the mean)")
    assert (list(marked["x"]), list(marked["y"])) == (["12"], ["2"])
    cells = frame_with(at, "run ids")
    assert list(zip(cells["λ (loss.lam)"], cells["β (loss.beta)"], strict=True)) == \
        [(1.0, 4.0), (1.0, 12.0), (2.0, 4.0), (2.0, 12.0)]


def test_landscape_of_the_selected_test_accuracy_and_of_divergence(grid):
    store, ids = grid
    at = _group_page("sweep", {"landscape": "test_acc_selected"})
    heat = next(t for t in chart(at, "compare.landscape")["data"] if t["type"] == "heatmap")
    ev = store.evals(ids[1.0, 4.0, 0])
    # The reference selection: the first evaluation with the highest validation accuracy.
    best = ev.iloc[int(np.argmax(ev["val_acc"].to_numpy()))]
    ev1 = store.evals(ids[1.0, 4.0, 1])
    best1 = ev1.iloc[int(np.argmax(ev1["val_acc"].to_numpy()))]
    assert decode(heat["z"])[0, 0] == pytest.approx((best["test_acc"] + best1["test_acc"]) / 2)
    assert best["iteration"] < 40  # not the final evaluation
    at.selectbox(key="compare.landscape_metric").set_value("diverged").run()
    heat = next(t for t in chart(at, "compare.landscape")["data"] if t["type"] == "heatmap")
    np.testing.assert_allclose(decode(heat["z"]), [[0.0, 0.0], [0.0, 0.5]])


def test_a_grid_with_holes_is_drawn_as_points(grid):
    store, ids = grid
    chosen = [i for key, i in ids.items() if key[:2] != (2.0, 4.0)]
    at = _page(chosen)
    fig = chart(at, "compare.landscape")
    assert not any(t["type"] == "heatmap" for t in fig["data"])
    points = trace(fig, "mean over seeds")
    got = sorted(zip(decode(points["x"]), decode(points["y"]), strict=True))
    assert got == [(4.0, 1.0), (12.0, 1.0), (12.0, 2.0)]  # β across, λ up: no interpolation


def test_more_than_two_parameters_as_parallel_coordinates(app_db):
    store = Store(app_db)
    for lam, beta, iterations in ((1.0, 4.0, 40), (2.0, 12.0, 40), (1.0, 12.0, 60)):
        fabricate(store, loss={"name": "dm", "lam": lam, "beta": beta}, iterations=iterations,
                  eval_every=20, group="three")
    at = _group_page("three")
    [par] = chart(at, "compare.landscape")["data"]
    assert par["type"] == "parcoords"
    labels = [d["label"] for d in par["dimensions"]]
    assert labels == ["λ (loss.lam)", "β (loss.beta)", "iterations", "mean over seeds"]


def test_a_method_comparison_is_one_point_per_method_with_its_error_bar(app_db):
    """Methods have unrelated parameters: no parallel coordinates over λ and q with "–"
    holes, but one point per method and noise rate at its mean over seeds, the sample std
    as its error bar and n in the hover; the table beside it in the same notation."""
    store = Store(app_db)
    losses = {"cce": {"name": "cce"}, "gce": {"name": "gce", "q": 0.7},
              "dm": {"name": "dm", "lam": 1.0, "beta": 8.0}}
    finals: dict[tuple[str, float], list[float]] = {}
    for rate in (0.2, 0.4):
        for shift, name in enumerate(losses):
            for seed in (0, 1, 2):
                run = fabricate(store, name=f"{name}-{rate}-{seed}", loss=losses[name],
                                iterations=20, eval_every=10, seed=seed, noise_rate=rate,
                                group="methods", acc_shift=0.01 * shift + 0.003 * seed - rate / 10)
                finals.setdefault((name, rate), []).append(store.get_run(run).summary["test_acc_final"])
    at = _group_page("methods")
    assert not at.exception
    fig = chart(at, "compare.landscape")
    assert [t["type"] for t in fig["data"]] == ["scatter", "scatter"]
    assert [t["name"] for t in fig["data"]] == ["noise rate r = 0.2", "noise rate r = 0.4"]
    assert fig["layout"]["xaxis"]["type"] == "category"
    assert list(fig["layout"]["xaxis"]["categoryarray"]) == ["cce", "gce q=0.7", "dm λ=1 β=8"]
    for trace_, rate in zip(fig["data"], (0.2, 0.4), strict=True):
        assert list(trace_["x"]) == ["cce", "gce q=0.7", "dm λ=1 β=8"]
        values = [finals[name, rate] for name in losses]
        np.testing.assert_allclose(decode(trace_["y"]), [np.mean(v) for v in values])
        np.testing.assert_allclose(decode(trace_["error_y"]["array"]),
                                   [np.std(v, ddof=1) for v in values])
        assert [t.endswith("(n=3)") for t in trace_["text"]] == [True] * 3
    cells = frame_with(at, "run ids")
    assert list(cells.columns[:4]) == ["method", "noise rate", "setting", "mean ± std (n)"]
    dm = cells[(cells["method"] == "dm λ=1 β=8") & (cells["noise rate"] == 0.4)].iloc[0]
    v = finals["dm", 0.4]
    assert dm["mean ± std (n)"] == f"{np.mean(v):.4f} ± {np.std(v, ddof=1):.4f} (n=3)"
    assert not cells.isin(["–", "None"]).any().any()


# ---------------------------------------------------------------- links

def test_the_url_names_the_view_and_reopens_it(grid):
    store, ids = grid
    at = _group_page("sweep")
    table = at.dataframe[0].value
    assert sorted(table["id"]) == sorted(ids.values())
    assert at.query_params == {"group": "sweep"}
    at.selectbox(key="compare.group_pick").set_value(None).run()
    picked = sorted(ids.values())[:2]
    at.multiselect(key="compare.runs").set_value(picked).run()
    assert at.query_params == {"runs": f"{picked[0]},{picked[1]}"}
    # The same URL in a new session (a reload, a shared link) shows the same runs.
    again = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    again.query_params["runs"] = at.query_params["runs"]
    again.run()
    assert sorted(again.dataframe[0].value["id"]) == picked
    assert again.multiselect(key="compare.runs").value == picked


def test_the_histograms_view_is_in_the_url_and_a_copied_link_opens_it(three):
    store, ids = three
    at = _page(ids)
    runs = ",".join(str(i) for i in sorted(ids))
    assert at.query_params == {"runs": runs}  # the controls at their defaults
    at.radio(key="compare.hist_view").set_value("overlaid").run()
    at.slider(key="compare.iteration").set_value(25).run()
    url = dict(at.query_params)
    assert url == {"runs": runs, "mode": "overlaid", "it": "25"}
    copied = AppTest.from_file(PAGE, default_timeout=TIMEOUT)  # another session, same link
    for key, value in url.items():
        copied.query_params[key] = value
    copied.run()
    assert not copied.exception and not copied.warning
    assert copied.radio(key="compare.hist_view").value == "overlaid"
    assert copied.slider(key="compare.iteration").value == 25
    fig = chart(copied, "compare.hists")
    assert all(t["name"].split(" · ")[0].endswith("@ 25") for t in fig["data"])
    assert dict(copied.query_params) == url
    copied.radio(key="compare.hist_align").set_value("fraction").run()
    copied.slider(key="compare.percent").set_value(30).run()
    assert dict(copied.query_params) == {"runs": runs, "mode": "overlaid", "align": "fraction",
                                         "pct": "30"}


def test_every_control_of_the_view_is_in_the_url_and_a_copied_link_opens_it(app_db):
    """The curves' metric, x axis, smoothing and log y, the landscape's metric and the table
    by noise rate's value: set by hand, named in the URL, and the same in a new session
    opened with that URL (whose charts and table show them)."""
    store = Store(app_db)
    ids = [fabricate(store, name=f"r{rate}", iterations=40, eval_every=10, val=True,
                     noise_rate=rate) for rate in (0.2, 0.4)]
    at = _page(ids)
    runs = ",".join(str(i) for i in sorted(ids))
    assert at.query_params == {"runs": runs}  # every control at its default
    at.selectbox(key="compare.metric").set_value("p_clean_mean").run()
    at.radio(key="compare.curves.align").set_value("fraction").run()
    at.slider(key="compare.curves.smoothing").set_value(0.6).run()
    at.toggle(key="compare.curves.log").set_value(True).run()
    at.selectbox(key="compare.landscape_metric").set_value("diverged").run()
    at.selectbox(key="compare.pivot_value").set_value("final test acc").run()
    url = dict(at.query_params)
    assert url == {"runs": runs, "metric": "p_clean_mean", "x": "fraction", "smooth": "0.6",
                   "log": "1", "landscape": "diverged", "by_rate": "test_acc_final"}

    copied = AppTest.from_file(PAGE, default_timeout=TIMEOUT)  # another session, same link
    for key, value in url.items():
        copied.query_params[key] = value
    copied.run()
    assert not copied.exception and not copied.warning
    assert copied.selectbox(key="compare.metric").value == "p_clean_mean"
    assert copied.radio(key="compare.curves.align").value == "fraction"
    assert copied.slider(key="compare.curves.smoothing").value == pytest.approx(0.6)
    assert copied.toggle(key="compare.curves.log").value is True
    fig = chart(copied, "compare.curves")
    assert fig["layout"]["yaxis"]["type"] == "log"
    assert fig["layout"]["xaxis"]["title"]["text"] == "fraction of training"
    smoothed = [tr for tr in fig["data"] if tr["meta"]["role"] == "smoothed"]
    assert len(smoothed) == 2
    np.testing.assert_allclose(decode(smoothed[0]["x"]), store.scalars(ids[0])["iteration"] / 40)
    assert chart(copied, "compare.landscape")["layout"]["title"]["text"].startswith(
        "share of runs that diverged")
    paper = frame_with(copied, "r = 0.4")
    for run_id, rate in zip(ids, ("0.2", "0.4"), strict=True):
        final = store.get_run(run_id).summary["test_acc_final"]
        assert paper.iloc[0][f"r = {rate}"] == f"{final:.4f} (n=1)"
    assert dict(copied.query_params) == url
    # Back at their defaults, the controls leave the URL.
    copied.selectbox(key="compare.metric").set_value("test_acc").run()
    copied.radio(key="compare.curves.align").set_value("iteration").run()
    copied.slider(key="compare.curves.smoothing").set_value(0.0).run()
    copied.toggle(key="compare.curves.log").set_value(False).run()
    copied.selectbox(key="compare.landscape_metric").set_value("test_acc_final").run()
    copied.selectbox(key="compare.pivot_value").set_value("selected test acc").run()
    assert dict(copied.query_params) == {"runs": runs}


def test_a_link_with_invalid_controls_is_refused_with_warnings_naming_them(three):
    _, ids = three
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    for key, value in {"runs": ",".join(map(str, ids)), "mode": "stacked", "it": "x",
                       "pct": "400", "colour": "red", "metric": "speed", "x": "time",
                       "smooth": "1.5", "log": "yes", "landscape": "cost",
                       "by_rate": "best"}.items():
        at.query_params[key] = value
    at.run()
    assert not at.exception
    warnings = rendered(" ".join(w.value for w in at.warning))
    for part in ("link's mode", "link's it", "link's pct", "link's 'colour'", "link's metric",
                 "link's x", "link's smooth", "link's log", "link's landscape", "link's by_rate"):
        assert part in warnings
    assert "must be a curves' metric: test_acc, val_acc" in warnings  # the allowed values
    assert at.radio(key="compare.hist_view").value == "side by side"  # the defaults instead
    assert at.slider(key="compare.iteration").value == 40
    assert at.selectbox(key="compare.metric").value == "test_acc"
    assert at.radio(key="compare.curves.align").value == "iteration"
    assert at.slider(key="compare.curves.smoothing").value == 0.0
    assert at.toggle(key="compare.curves.log").value is False
    assert at.selectbox(key="compare.landscape_metric").value == "test_acc_final"
    assert dict(at.query_params) == {"runs": ",".join(str(i) for i in sorted(ids))}


def test_the_group_viewed_last_is_kept_for_the_sidebar_and_the_page(grid):
    at = _group_page("sweep")
    assert at.session_state["nav.last_group"] == "sweep"
    # Opened again without parameters (from the sidebar), the page shows the view it showed.
    at.query_params.clear()
    at.session_state["compare.group_pick"] = None  # as if the widget had been dropped
    at.run()
    assert at.selectbox(key="compare.group_pick").value == "sweep"
    assert at.query_params == {"group": "sweep"}


# ---------------------------------------------------------------- curves and histograms

def test_curves_by_fraction_of_training_and_smoothed(app_db):
    store = Store(app_db)
    short = fabricate(store, name="short", iterations=40, eval_every=10)
    long = fabricate(store, name="long", iterations=80, eval_every=10)
    at = _page([short, long])
    at.selectbox(key="compare.metric").set_value("p_clean_mean").run()
    at.radio(key="compare.curves.align").set_value("fraction").run()
    fig = chart(at, "compare.curves")
    for t, run_id, total in zip(fig["data"], (short, long), (40, 80), strict=True):
        np.testing.assert_allclose(decode(t["x"]), store.scalars(run_id)["iteration"] / total)
    assert fig["layout"]["xaxis"]["title"]["text"] == "fraction of training"
    at.slider(key="compare.curves.smoothing").set_value(0.9).run()
    at.toggle(key="compare.curves.log").set_value(True).run()
    fig = chart(at, "compare.curves")
    smoothed = [t for t in fig["data"] if t["meta"]["role"] == "smoothed"]
    raw = [t for t in fig["data"] if t["meta"]["role"] == "raw"]
    assert len(smoothed) == len(raw) == 2
    y = store.scalars(short)["p_clean_mean"].to_numpy()
    ema, ref = 0.0, []
    for k, v in enumerate(y, start=1):  # the debiased EMA, written out
        ema = 0.9 * ema + 0.1 * v
        ref.append(ema / (1 - 0.9**k))
    np.testing.assert_allclose(decode(smoothed[0]["y"]), ref)
    np.testing.assert_allclose(decode(raw[0]["y"]), y)
    assert fig["layout"]["yaxis"]["type"] == "log"


def test_learning_rate_curves_on_a_log_axis(three):
    _, ids = three
    at = _page(ids)
    at.selectbox(key="compare.metric").set_value("lr").run()
    assert chart(at, "compare.curves")["layout"]["yaxis"]["type"] == "log"


def test_histograms_overlaid_and_aligned_by_fraction_of_training(app_db):
    store = Store(app_db)
    short = fabricate(store, name="short", iterations=40, eval_every=10)
    long = fabricate(store, name="long", iterations=80, eval_every=10)
    at = _page([short, long])
    at.radio(key="compare.hist_view").set_value("overlaid").run()
    at.radio(key="compare.hist_align").set_value("fraction").run()
    at.slider(key="compare.percent").set_value(50).run()
    fig = chart(at, "compare.hists")
    assert len(fig["data"]) == 4 and {t.get("xaxis", "x") for t in fig["data"]} == {"x"}  # one axis
    for k, (run_id, at_it) in enumerate(((short, 20), (long, 40))):
        _, clean, noisy = store.histogram_at(run_id, at_it)
        clean_trace, noisy_trace = fig["data"][2 * k], fig["data"][2 * k + 1]
        assert clean_trace["name"].endswith(f"@ {at_it} · clean")
        assert noisy_trace["line"]["dash"] == "dash"
        np.testing.assert_allclose(decode(clean_trace["y"]), clean / clean.sum())
        np.testing.assert_allclose(decode(noisy_trace["y"]), noisy / noisy.sum())


def test_a_link_back_to_the_view_this_page_wrote_reopens_it(grid):
    """The sidebar's link names the URL the page wrote last; by then the session has dropped
    the page's widget values (other pages ran): the view comes back from the URL."""
    # The URL is the one the page wrote; no widget value is left in the session.
    at = _group_page("sweep", **{"compare.url": {"group": "sweep"}})
    assert at.selectbox(key="compare.group_pick").value == "sweep"
    assert at.query_params == {"group": "sweep"}
