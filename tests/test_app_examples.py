"""Examples page (app/views/examples.py) under AppTest, on a store holding tiny real digits runs
(tests/example_run_support.py): every training example in the data map, the suspects in the
ranking's order, one AUROC point per snapshot, the other-run picker limited to the same data,
and the messages for a link to a run that is not there."""

from __future__ import annotations

import numpy as np
import pytest
from example_run_support import tiny_config, trained_run
from streamlit.testing.v1 import AppTest
from test_app_support import APP, TIMEOUT, chart, decode, trace

from dm_core.example_stats import detection
from dm_store import Store
from studio.suspects import load_examples

PAGE = APP.format("examples")


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    path = tmp_path_factory.mktemp("examples-page")
    url = f"sqlite:///{path / 'dm.sqlite'}"
    store = Store(url, path / "artifacts")
    cce = trained_run(store, tiny_config(name="cce"))
    dm = trained_run(store, tiny_config(name="dm", loss={"name": "dm", "lam": 1.0, "beta": 12.0}))
    trained_run(store, tiny_config(name="other-seed", seed=7))
    [queued] = store.submit([tiny_config(name="queued")]).run_ids
    store.dispose()
    return {"url": url, "artifacts": path / "artifacts", "cce": cce, "dm": dm, "queued": queued}


@pytest.fixture
def db(seeded, monkeypatch):
    from app.db import get_store

    monkeypatch.setenv("DM_DATABASE_URL", seeded["url"])
    monkeypatch.setenv("DM_ARTIFACTS", str(seeded["artifacts"]))
    get_store.clear()
    store = Store(seeded["url"])
    yield store, seeded
    store.dispose()
    get_store.clear()


def page(run_id):
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.query_params["run"] = str(run_id)
    return at.run()


def suspects(at):
    return next(el.value for el in at.dataframe if "rank" in el.value.columns)


def down_weighted_by(at, run_id):
    """The table of the examples run ``run_id`` down-weights and the other run does not."""
    return next(el.value for el in at.dataframe if list(el.value.columns)[-2:-1] == [f"share #{run_id}"])


def test_every_training_example_is_on_the_data_map(db):
    store, seeded = db
    at = page(seeded["cce"])
    assert not at.exception
    ex = load_examples(store, seeded["cce"])
    fig = chart(at, "examples.map")
    assert all(t["type"] == "scattergl" for t in fig["data"])
    clean, corrupted = trace(fig, "clean"), trace(fig, "corrupted")
    assert len(decode(clean["x"])) + len(decode(corrupted["x"])) == len(ex.label) == 1297
    assert len(decode(corrupted["x"])) == ex.corrupted.sum()
    index = decode(corrupted["customdata"])[:, 0].astype(int)
    assert np.array_equal(index, np.flatnonzero(ex.corrupted))
    np.testing.assert_allclose(decode(corrupted["x"]), ex.snapshot["variability"][index].astype(np.float32))
    np.testing.assert_allclose(decode(corrupted["y"]), ex.snapshot["confidence"][index].astype(np.float32))
    sizes = decode(corrupted["marker"]["size"])
    share = ex.snapshot["share"][index].astype(np.float64)
    assert np.corrcoef(sizes, np.sqrt(share))[0, 1] > 0.999  # sized by the share


def test_the_suspects_table_follows_the_ranking_with_thumbnails(db):
    store, seeded = db
    at = page(seeded["cce"])
    ex = load_examples(store, seeded["cce"])
    table = suspects(at)
    expected = np.argsort(ex.snapshot["confidence"].astype(np.float64), kind="stable")[:100]
    assert table["example"].tolist() == expected.tolist()
    assert table["rank"].tolist() == list(range(1, 101))
    assert table["image"][:50].str.startswith("data:image/png;base64,").all()
    assert table["image"][50:].isna().all()
    at.selectbox(key="examples.by").set_value("forgetting").run()
    table = suspects(at)
    assert table["example"].tolist() == ex.ranking("forgetting")[:100].tolist()


def test_auroc_over_training_has_one_point_per_snapshot(db):
    store, seeded = db
    at = page(seeded["cce"])
    fig = chart(at, "examples.auroc")
    iterations = store.example_iterations(seeded["cce"])
    assert iterations == [10, 20, 30, 40]
    _, _, corrupted = store.labels(seeded["cce"])
    confidence = trace(fig, "confidence")
    assert decode(confidence["x"]).tolist() == iterations
    expected = [detection(store.examples(seeded["cce"], i)[1], corrupted)["auroc"]["confidence"]
                for i in iterations]
    np.testing.assert_allclose(decode(confidence["y"]), expected)
    assert {t["name"] for t in fig["data"] if t.get("mode") == "lines+markers"} >= {"aum", "label_quality"}


def test_the_snapshot_picker_chooses_the_iteration(db):
    store, seeded = db
    at = page(seeded["cce"])
    at.select_slider(key=f"examples.iteration.{seeded['cce']}").set_value(20).run()
    ex = load_examples(store, seeded["cce"], 20)
    assert suspects(at)["example"].tolist() == ex.ranking()[:100].tolist()
    assert decode(trace(chart(at, "examples.map"), "clean")["y"]).tolist() == \
        ex.snapshot["confidence"][~ex.corrupted].astype(np.float32).tolist()


def test_another_run_on_the_same_data_and_what_each_scheme_down_weights(db):
    store, seeded = db
    at = page(seeded["cce"])
    assert at.selectbox(key="examples.other").options == [f"#{seeded['dm']} dm"]  # not the other seed
    a, b = load_examples(store, seeded["cce"]), load_examples(store, seeded["dm"])
    share_a, share_b = a.snapshot["share"] * 64.0, b.snapshot["share"] * 64.0
    dm_only = down_weighted_by(at, seeded["dm"])
    expected = np.flatnonzero((share_b < 0.5) & (share_a >= 1.0))
    assert sorted(dm_only["example"].tolist()) == expected.tolist() and len(expected) > 0
    fig = chart(at, "examples.shares")
    assert len(decode(trace(fig, "clean")["x"])) + len(decode(trace(fig, "corrupted")["x"])) == 1297


@pytest.mark.parametrize("link, says", [("abc", "'abc' is not a run id"), ("999", "#999 of this link does not exist")])
def test_a_link_to_a_run_that_is_not_there_says_so(db, link, says):
    at = page(link)
    assert not at.exception
    assert any(says in w.value for w in at.warning)
    assert at.selectbox(key="examples.run").value is not None  # the newest run instead


def test_a_run_without_a_snapshot_says_so(db):
    _, seeded = db
    at = page(seeded["queued"])
    assert not at.exception
    assert any("no per-example snapshot yet" in i.value for i in at.info)


def test_monitor_and_compare_link_to_each_runs_examples(db):
    _, seeded = db
    monitor = AppTest.from_file(APP.format("monitor"), default_timeout=TIMEOUT)
    monitor.query_params["run"] = str(seeded["cce"])
    monitor.run()
    assert any(f"Training examples of run #{seeded['cce']}" in m.value for m in monitor.markdown)
    compare = AppTest.from_file(APP.format("compare"), default_timeout=TIMEOUT)
    compare.query_params["runs"] = f"{seeded['cce']},{seeded['dm']}"
    compare.run()
    # Outside the navigation a page link is the page's name in plain text (app.nav.page_link);
    # inside it, a link: one per run, labelled with its id.
    assert any(c.value == "Training examples of each run:" for c in compare.caption)
    linked = [m.value for m in compare.markdown if m.value.startswith("→ **#")]
    assert linked == [f"→ **#{seeded['cce']}** (open it from the sidebar)",
                      f"→ **#{seeded['dm']}** (open it from the sidebar)"]
