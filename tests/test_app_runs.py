"""Runs page (app/views/runs.py) under AppTest: the table and the actions, checked in the store."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlencode

import pyarrow as pa
import pytest
from streamlit.testing.v1 import AppTest
from test_app_support import APP, TIMEOUT, app_db_fixture, fabricate  # noqa: F401

from dm_core.config import parse_config
from dm_core.events import CheckpointEvent
from dm_store import RunNotFound, RunStatus, Store

PAGE = APP.format("runs")


@pytest.fixture
def runs(app_db):
    """Three runs: one succeeded, one running half-way, one queued."""
    store = Store(app_db)
    done = fabricate(store, name="done", iterations=40, eval_every=20)
    running = fabricate(store, name="half", iterations=40, eval_every=20, upto=20, finish=False)
    queued = store.submit([parse_config({"name": "waiting"})]).run_ids[0]
    return store, done, running, queued


def _page():
    return AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()


def _select(at, ids):
    at.multiselect(key="runs.selected").set_value(ids).run()
    return at


def test_table_shows_status_progress_attempt_and_device(runs):
    store, done, running, queued = runs
    at = _page()
    assert not at.exception
    table = at.dataframe[0].value.set_index("id")
    assert table.loc[done, "progress"] == 1.0
    assert table.loc[running, "progress"] == pytest.approx(0.5)
    assert table.loc[running, "iteration"] == "20/40"
    assert table.loc[queued, "progress"] == 0.0
    assert "running" in table.loc[running, "status"] and "queued" in table.loc[queued, "status"]
    assert table.loc[running, "attempt"] == "1/3" and table.loc[running, "device"] == "cpu"
    assert table.loc[done, "test acc"] == store.get_run(done).summary["test_acc_final"]
    assert table.loc[running, "ETA"] != "" and table.loc[queued, "elapsed"] == ""
    store.finish(running, "test-worker", "failed", error="boom")
    store.retry(running)  # attempts start over; the table says it is a retry
    table = _page().dataframe[0].value.set_index("id")
    assert table.loc[running, "attempt"] == "1/3 (retry 1)" and table.loc[done, "attempt"] == "1/3"


def test_status_filter(runs):
    _, done, _, _ = runs
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.session_state["runs.status"] = ["succeeded"]
    at.run()
    assert at.dataframe[0].value["id"].tolist() == [done]


def test_cancel_then_retry_a_queued_run(runs):
    store, _, _, queued = runs
    at = _select(_page(), [queued])
    at.button(key="runs.cancel").click().run()
    assert store.get_run(queued).status == RunStatus.CANCELLED
    assert any("Cancelled" in s.value for s in at.success)
    at = _select(at, [queued])
    _retry(at)
    assert store.get_run(queued).status == RunStatus.QUEUED


def _retry(at):
    """Retry from scratch: the button, then its confirmation."""
    at.button(key="runs.retry").click().run()
    at.button(key="runs.retry_confirm").click().run()
    return at


def test_retry_offers_resume_from_the_checkpoint(runs):
    store, _, running, queued = runs
    checkpoint = store.run_dir(running) / "attempt-1" / "checkpoint-20.pt"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"state at 20")
    store.write_batch(running, 1, checkpoint=CheckpointEvent(20, str(checkpoint)),
                      worker_id="test-worker")
    store.finish(running, "test-worker", "cancelled", error="cancel requested", attempt=1)
    at = _select(_page(), [running])
    at.button(key="runs.retry_resume").click().run()
    info = store.get_run(running)
    assert (info.status, info.checkpoint_iteration, info.iteration) == (RunStatus.QUEUED, 20, 20)
    assert checkpoint.is_file()
    assert any(f"Re-queued from the last checkpoint: #{running} (from iteration 20)" in m.value
               for m in at.success)
    # Without a checkpoint, resuming is refused with the reason; from scratch still works.
    store.cancel(queued)
    at = _select(at, [queued])
    at.button(key="runs.retry_resume").click().run()
    assert any(f"run {queued} has no checkpoint to resume from" in w.value for w in at.warning)
    assert store.get_run(queued).status == RunStatus.CANCELLED
    at = _select(at, [queued])
    _retry(at)
    assert store.get_run(queued).status == RunStatus.QUEUED
    assert any(f"Re-queued from scratch: #{queued}." in m.value for m in at.success)
    assert not at.exception


def test_cancel_a_running_run_requests_it(runs):
    store, _, running, _ = runs
    at = _select(_page(), [running])
    at.button(key="runs.cancel").click().run()
    assert store.get_run(running).cancel_requested


def test_refused_actions_are_explained(runs):
    store, done, _, _ = runs
    at = _select(_page(), [done])
    _retry(at)
    assert any("cannot retry" in w.value for w in at.warning)
    assert store.get_run(done).status == RunStatus.SUCCEEDED


def test_delete_needs_a_confirmation(runs):
    store, done, running, _ = runs
    at = _select(_page(), [done, running])
    at.button(key="runs.delete").click().run()
    assert store.get_run(done)  # not yet
    at.button(key="runs.delete_confirm").click().run()
    with pytest.raises(RunNotFound):
        store.get_run(done)
    assert store.get_run(running).status == RunStatus.RUNNING  # a running run is refused
    assert any("running" in w.value for w in at.warning)


def test_retry_from_scratch_asks_first_as_delete_does(runs):
    """Retry from scratch clears everything a run logged: like Delete, it asks first, and
    nothing is cleared until the confirmation (before: one click wiped the run's logs)."""
    store, _, running, _ = runs
    store.finish(running, "test-worker", "failed", error="boom")
    logged = len(store.scalars(running))
    assert logged == 20
    at = _select(_page(), [running])
    at.button(key="runs.retry").click().run()
    assert store.get_run(running).status == RunStatus.FAILED
    assert len(store.scalars(running)) == logged  # nothing cleared yet
    assert any(f"#{running} again from scratch" in w.value and "cannot be undone" in w.value
               for w in at.warning)
    at.button(key="runs.retry_abort").click().run()  # "Keep them"
    assert store.get_run(running).status == RunStatus.FAILED
    assert len(store.scalars(running)) == logged
    assert not any("from scratch" in w.value for w in at.warning)
    at = _select(at, [running])
    at.button(key="runs.delete").click().run()
    at.button(key="runs.retry").click().run()  # asking for one action withdraws the other
    assert not _has_button(at, "runs.delete_confirm") and _has_button(at, "runs.retry_confirm")
    at.button(key="runs.retry_confirm").click().run()
    assert store.get_run(running).status == RunStatus.QUEUED
    assert len(store.scalars(running)) == 0
    assert any(f"Re-queued from scratch: #{running}." in m.value for m in at.success)


def _has_button(at, key: str) -> bool:
    return any(b.key == key for b in at.button)


ENTRY = str(Path(__file__).resolve().parents[1] / "app" / "streamlit_app.py")


def _in_the_app(monkeypatch):
    """The Runs page inside the whole app (its navigation), as a browser sees it."""
    monkeypatch.delenv("DM_PASSWORD", raising=False)
    return AppTest.from_file(ENTRY, default_timeout=TIMEOUT).switch_page("views/runs.py").run()


def _sidebar_counts(at) -> str:
    return at.sidebar.caption[0].value


def test_the_sidebar_counts_follow_every_action_at_once(runs, monkeypatch):
    """The sidebar's counts were read before the page ran, so a run the page had just
    queued was not counted until the next click."""
    store, done, running, queued = runs
    at = _in_the_app(monkeypatch)
    assert _sidebar_counts(at) == "queued 1 · running 1 · succeeded 1"
    _select(at, [queued]).button(key="runs.cancel").click().run()
    assert _sidebar_counts(at) == "running 1 · succeeded 1 · cancelled 1"
    _retry(_select(at, [queued]))
    assert _sidebar_counts(at) == "queued 1 · running 1 · succeeded 1"
    _select(at, [done]).button(key="runs.delete").click().run()
    at.button(key="runs.delete_confirm").click().run()
    assert _sidebar_counts(at) == "queued 1 · running 1"
    launch = AppTest.from_file(ENTRY, default_timeout=TIMEOUT).switch_page("views/launch.py").run()
    assert _sidebar_counts(launch) == "queued 1 · running 1"
    launch.button(key="L.queue").click().run()  # the Launch page queues without a rerun
    assert len(store.list_runs(status="queued")) == 2
    assert _sidebar_counts(launch) == "queued 2 · running 1"
    assert not at.exception and not launch.exception


def test_clone_monitor_and_compare_open_their_pages_at_their_urls(runs, monkeypatch):
    store, done, running, _ = runs
    at = _select(_page(), [done])
    at.button(key="runs.clone").click().run()
    assert at.session_state["launch.clone"] == store.get_run(done).config
    at = _select(_in_the_app(monkeypatch), [running])
    at.button(key="runs.monitor").click().run()
    assert [t.value for t in at.title] == ["Monitor"] and at.query_params == {"run": str(running)}
    assert at.selectbox(key="monitor.run").value == running
    at = _select(_in_the_app(monkeypatch), [done, running])
    at.button(key="runs.compare").click().run()
    assert [t.value for t in at.title] == ["Compare"]
    assert at.query_params == {"runs": f"{min(done, running)},{max(done, running)}"}
    assert sorted(at.dataframe[0].value["id"]) == sorted([done, running])
    assert not at.exception


def test_the_table_links_every_run_to_its_monitor_and_group(runs):
    store, done, running, queued = runs
    table = _page().dataframe[0].value.set_index("id")
    assert table.loc[done, "monitor"] == f"monitor?run={done}"
    group = store.get_run(queued).group
    assert table.loc[queued, "compare"] == "compare?" + urlencode({"group": group})


def test_key_columns_come_first_and_stay_in_view(runs):
    """Status, name, test accuracy and the Monitor link must not scroll off-screen: first,
    and pinned; what tells runs apart follows them."""
    at = _page()
    columns = list(at.dataframe[0].value.columns)
    key = ["status", "name", "test acc", "selected test acc", "monitor"]
    assert columns[:5] == key
    assert columns[5:9] == ["loss", "loss params", "noise", "seed"]
    config = json.loads(at.dataframe[0].proto.columns)
    assert all(config[c].get("pinned") for c in key)
    assert not config.get("progress", {}).get("pinned")


def _finished(store, name, loss, seed, rate, selected):
    run = fabricate(store, name=name, loss=loss, seed=seed, noise_rate=rate, iterations=20,
                    eval_every=10, finish=False)
    store.finish(run, "test-worker", "succeeded",
                 summary={"test_acc_final": 0.8, "test_acc_selected": selected})
    return run


def test_the_table_tells_runs_apart_and_filters_by_loss(app_db):
    """Loss, its parameters, noise, seed and the selected accuracy are columns of their
    own; the loss filter keeps the runs of the chosen losses."""
    store = Store(app_db)
    dm = _finished(store, "grid[loss.lam=1,loss.beta=12]", {"name": "dm", "lam": 1.0, "beta": 12.0},
                   seed=2, rate=0.4, selected=0.8123)
    cce = _finished(store, "grid[cce]", {"name": "cce"}, seed=0, rate=0.2, selected=None)
    at = _page()
    table = at.dataframe[0].value.set_index("id")
    assert table.loc[dm, ["loss", "loss params", "noise", "seed"]].tolist() == [
        "dm", "λ=1 β=12", "symmetric 0.4", "2"]
    assert table.loc[cce, ["loss", "loss params", "noise", "seed"]].tolist() == [
        "cce", "", "symmetric 0.2", "0"]
    assert table.loc[dm, "selected test acc"] == 0.8123
    assert table.loc[cce, "selected test acc"] != table.loc[cce, "selected test acc"]  # NaN
    shown = pa.ipc.open_stream(at.dataframe[0].proto.arrow_data.styler.display_values).read_pandas()
    assert shown["selected test acc"].tolist() == ["—", "0.8123"]  # as drawn: never "None"
    assert at.dataframe[0].proto.placeholder == "—"  # what the browser draws for NaN
    at.multiselect(key="runs.loss").set_value(["cce"]).run()
    assert list(at.dataframe[0].value["id"]) == [cce]
    at.multiselect(key="runs.loss").set_value([]).run()
    at.multiselect(key="runs.status").set_value(["queued"]).run()
    assert any("No runs" in i.value for i in at.info)


def test_empty_database(app_db):
    at = _page()
    assert any("No runs" in i.value for i in at.info)
