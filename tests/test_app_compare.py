"""Compare page (app/views/compare.py) under AppTest: its numbers are the stored ones."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest
from test_app_support import APP, TIMEOUT, app_db_fixture, chart, decode, fabricate  # noqa: F401

from dm_core.store import Store

PAGE = APP.format("compare")
COLUMNS = {"test_acc_best": "best test acc", "test_acc_final": "final test acc",
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


def test_paper_layout_pivots_methods_by_noise_rate(three):
    store, ids = three
    at = _page(ids[:2])
    paper = at.dataframe[1].value
    s = store.get_run(ids[0]).summary
    assert paper.loc["cce", "r = 0.4"] == f"{s['test_acc_best']:.3f} / {s['test_acc_final']:.3f}"


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
    for run_id in ids[:2]:  # the finished runs: exactly their stored summaries
        summary = store.get_run(run_id).summary
        for key, column in COLUMNS.items():
            assert csv.loc[run_id, column] == pytest.approx(summary[key], abs=1e-12), (run_id, key)


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
