"""The store on SQLite and PostgreSQL (the ``db_url`` fixture): queue, guarded transitions,
metrics round trips and downsampling, the reaper, fencing of stale workers, migrations.

No training here: events are built by hand (tests/test_workers.py trains for real).
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import event, update

from dm_core.config import parse_config
from dm_core.events import CheckpointEvent, EvalEvent, HistogramEvent, ScalarsEvent, StartEvent
from dm_core.registry import ConfigError
from dm_store import (
    TRANSITIONS,
    InvalidTransition,
    LostClaim,
    RunNotFound,
    RunStatus,
    Store,
    StoreError,
    sources_of,
)
from dm_store.models import RUNS, SCALAR_COLUMNS, STATUSES, Base

ROOT = Path(__file__).resolve().parents[1]


def config(name: str = "tiny", **overrides):
    base = {"name": name, "dataset": {"name": "digits"}, "model": {"name": "mlp", "hidden": [16]},
            "iterations": 20, "eval_every": 10, "device": "cpu"}
    return parse_config(base, [f"{k}={json.dumps(v)}" for k, v in overrides.items()])


@pytest.fixture
def store(db_url, tmp_path):
    s = Store(db_url, tmp_path / "artifacts")
    yield s
    s.dispose()


def scalars(first: int, last: int) -> list[ScalarsEvent]:
    return [ScalarsEvent(i, {"loss": 1.0 / i, "lr": 0.1}) for i in range(first, last + 1)]


def histograms(first: int, last: int, bins: int = 10) -> list[HistogramEvent]:
    return [HistogramEvent(i, np.arange(bins, dtype=np.int32) + i,
                           np.full(bins, i % 7, dtype=np.int32)) for i in range(first, last + 1)]


def start_event(n: int = 50) -> StartEvent:
    rng = np.random.default_rng(0)
    clean = rng.integers(0, 10, n)
    noisy = clean.copy()
    noisy[::3] = (noisy[::3] + 1) % 10
    return StartEvent(total_iterations=20, device="cpu", resumed_from=0, num_train=n,
                      num_classes=10, actual_noise_rate=float((noisy != clean).mean()),
                      clean_labels=clean, noisy_labels=noisy, is_noisy=noisy != clean)


def claimed(store: Store, worker: str = "w1"):
    run = store.claim(worker, "cpu")
    assert run is not None
    return run


# ---------------------------------------------------------------- queue and reads

@pytest.mark.parametrize(("group", "message"), [
    ("ok\x1b[2J", r"^group: must not contain control characters \(found \\x1b at position 2\)$"),
    ("line\nbreak", r"^group: must not contain control characters \(found \\n at position 4\)$"),
    ("\u202eevil", r"^group: must not contain control characters"),
    ("g" * 201, r"^group: 201 characters \('g+'\.\.\.\); at most 200 characters$"),
])
def test_submit_refuses_a_bad_group_name_and_queues_nothing(store, group, message):
    """Group names are checked like run names (RunConfig.name: printable, at most 200)."""
    with pytest.raises(ConfigError, match=message) as caught:
        store.submit([config("a")], group=group)
    assert caught.value.paths() == ["group"]
    assert store.list_runs() == [] and store.groups() == []
    longest = store.submit([config("a")], group="g" * 200)  # the bound itself is allowed
    assert longest.group == "g" * 200


def test_submit_refuses_more_runs_than_the_cap_whatever_path_submits(store):
    """One cap on the runs of one submit, enforced by the store itself (issue 25, item 1):
    5,000 configs in one call are refused naming the count and the cap, nothing is queued;
    the cap itself is allowed."""
    from dm_store.runs import MAX_RUNS_PER_SUBMIT

    one = config("many")
    for count in (MAX_RUNS_PER_SUBMIT + 1, 5000):
        with pytest.raises(ConfigError) as caught:
            store.submit([one] * count, group="too-many")
        assert caught.value.paths() == ["configs"]
        assert f"{count} runs" in str(caught.value)
        assert f"at most {MAX_RUNS_PER_SUBMIT} runs per submit" in str(caught.value)
    assert store.list_runs() == [] and store.groups() == []
    assert len(store.submit([one] * MAX_RUNS_PER_SUBMIT, group="at-the-cap").run_ids) \
        == MAX_RUNS_PER_SUBMIT
    assert store.queue_counts()["queued"] == MAX_RUNS_PER_SUBMIT


def test_submit_list_get(store):
    first = store.submit([config("a"), config("b")])
    second = store.submit([config("c")], group="mine", max_attempts=5)
    assert first.run_ids == [1, 2] and second.run_ids == [3]
    assert first.group.startswith("a-") and second.group == "mine"

    runs = store.list_runs()
    assert [r.id for r in runs] == [3, 2, 1]  # newest first
    assert [r.id for r in store.list_runs(group=first.group)] == [2, 1]
    assert [r.id for r in store.list_runs(limit=1)] == [3]
    assert store.list_runs(status="running") == []
    assert store.groups() == ["mine", first.group]
    assert store.queue_counts() == {"queued": 3, "running": 0, "succeeded": 0, "failed": 0,
                                    "cancelled": 0}

    info = store.get_run(3)
    assert (info.name, info.group, info.status, info.attempt, info.max_attempts) == \
        ("c", "mine", RunStatus.QUEUED, 1, 5)
    assert info.iteration == 0 and info.total_iterations == 20
    assert info.config == config("c").model_dump(mode="json")
    assert info.created_at is not None and info.created_at.tzinfo is not None
    json.dumps(info.to_dict())  # JSON-ready

    with pytest.raises(RunNotFound, match="run 99 does not exist"):
        store.get_run(99)
    with pytest.raises(ValueError, match="status"):
        store.list_runs(status="bogus")


def test_relabel_runs_count_both_phases(store):
    [run_id] = store.submit([config(relabel=True)]).run_ids
    assert store.get_run(run_id).total_iterations == 40


def test_list_runs_is_one_query(store):
    store.submit([config(f"r{i}") for i in range(30)])
    store.list_runs()  # schema check done
    statements = []
    event.listen(store.engine, "before_cursor_execute",
                 lambda conn, cur, stmt, *a: statements.append(stmt))
    runs = store.list_runs()
    assert len(runs) == 30
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 1


def test_status_names_agree_everywhere():
    # The CLI's --status offers RunStatus itself (test_packaging checks its choices).
    assert tuple(s.value for s in RunStatus) == STATUSES
    assert TRANSITIONS[RunStatus.SUCCEEDED] == frozenset()
    assert sources_of(RunStatus.RUNNING) == {RunStatus.QUEUED}
    assert sources_of(RunStatus.CANCELLED) == {RunStatus.QUEUED, RunStatus.RUNNING}


# ---------------------------------------------------------------- guarded transitions

def test_transitions_refuse_illegal_changes(store):
    a, b = store.submit([config("a"), config("b")]).run_ids
    with pytest.raises(LostClaim, match="run 1 is no longer held by this worker"):
        store.finish(a, "w1", "succeeded")  # worker-side: it does not hold the run
    with pytest.raises(InvalidTransition, match="cannot retry"):
        store.retry(a)

    run = claimed(store)
    assert run.id == a and store.get_run(a).status == RunStatus.RUNNING
    with pytest.raises(InvalidTransition, match="cannot retry"):
        store.retry(a)
    with pytest.raises(InvalidTransition, match="is running: cancel it first"):
        store.delete(a)
    with pytest.raises(LostClaim):  # not this worker's run
        store.finish(a, "someone-else", "succeeded")
    with pytest.raises(ValueError, match="finish: status"):
        store.finish(a, "w1", "queued")

    store.finish(a, "w1", "succeeded", summary={"test_acc_final": 0.9, "bad": float("nan")})
    info = store.get_run(a)
    assert info.status == RunStatus.SUCCEEDED and info.finished_at is not None
    assert info.summary == {"test_acc_final": 0.9, "bad": None}
    with pytest.raises(LostClaim):
        store.finish(a, "w1", "failed")
    for action in (lambda: store.cancel(a), lambda: store.retry(a)):
        with pytest.raises(InvalidTransition, match="run 1 is succeeded"):
            action()
    with pytest.raises(RunNotFound):
        store.cancel(42)

    assert claimed(store).id == b
    assert store.claim("w1", "cpu") is None  # nothing left: None, not an error


def test_cancel_queued_and_running(store):
    a, b = store.submit([config("a"), config("b")]).run_ids
    run = claimed(store)
    assert store.heartbeat(run.id, "w1", run.attempt) is False

    assert store.cancel(b).status == RunStatus.CANCELLED  # queued: at once
    info = store.cancel(a)  # running: asks its worker
    assert info.status == RunStatus.RUNNING and info.cancel_requested
    assert store.heartbeat(run.id, "w1", run.attempt) is True
    store.finish(a, "w1", "cancelled", error="cancel requested", attempt=run.attempt)
    assert store.get_run(a).status == RunStatus.CANCELLED


def test_retry_and_delete_clear_data_and_artifacts(store):
    [run_id] = store.submit([config()]).run_ids
    run = claimed(store)
    run_dir = store.run_dir(run_id) / "attempt-1"
    run_dir.mkdir(parents=True)
    (run_dir / "checkpoint-10.pt").write_bytes(b"x")
    store.write_batch(run_id, run.attempt, scalars(1, 10), histograms(1, 10),
                      [EvalEvent(10, {"test_acc": 0.5})], start=start_event(),
                      checkpoint=CheckpointEvent(10, str(run_dir / "checkpoint-10.pt")))
    store.finish(run_id, "w1", "failed", error="boom")

    info = store.retry(run_id)
    assert (info.status, info.attempt, info.error, info.iteration, info.checkpoint_path) == \
        (RunStatus.QUEUED, 1, None, 0, None)
    assert store.scalars(run_id).empty and store.evals(run_id).empty
    assert len(store.histograms(run_id)) == 0 and store.labels(run_id) is None
    assert not store.run_dir(run_id).exists()

    run = claimed(store)
    store.write_batch(run_id, run.attempt, scalars(1, 5))
    store.finish(run_id, "w1", "succeeded")
    store.run_dir(run_id).mkdir(parents=True)
    store.delete(run_id)
    with pytest.raises(RunNotFound):
        store.get_run(run_id)
    assert store.scalars(run_id).empty and not store.run_dir(run_id).exists()
    [new_id] = store.submit([config()]).run_ids
    assert new_id > run_id  # ids are never reused (artifacts are named by id)


def test_retry_from_the_checkpoint_keeps_it_and_the_rows_up_to_it(store):
    a, b, c = store.submit([config("a"), config("b"), config("c")]).run_ids
    run = claimed(store)
    folder = store.run_dir(a) / "attempt-1"
    folder.mkdir(parents=True)
    (folder / "checkpoint-10.pt").write_bytes(b"state at 10")
    (folder / "checkpoint.pt").write_bytes(b"the loop's working file")
    store.write_batch(a, run.attempt, scalars(1, 14), histograms(1, 14),
                      [EvalEvent(10, {"test_acc": 0.3}), EvalEvent(14, {"test_acc": 0.4})],
                      start=start_event(),
                      checkpoint=CheckpointEvent(10, str(folder / "checkpoint-10.pt")))
    store.finish(a, "w1", "cancelled", error="cancel requested", attempt=run.attempt)

    info = store.retry(a, resume=True)
    assert (info.status, info.attempt, info.retries, info.error) == (RunStatus.QUEUED, 1, 1, None)
    assert (info.checkpoint_iteration, info.iteration, info.last_test_acc) == (10, 10, 0.3)
    assert store.scalars(a)["iteration"].tolist() == list(range(1, 11))
    assert store.histograms(a).iterations.tolist() == list(range(1, 11))
    assert store.evals(a)["iteration"].tolist() == [10]
    assert store.labels(a) is not None
    # The checkpoint file stays; nothing else of the old attempts does.
    assert sorted(p for p in store.run_dir(a).rglob("*") if p.is_file()) == [
        folder / "checkpoint-10.pt"]
    again = claimed(store)
    assert (again.id, again.checkpoint_iteration, again.checkpoint_path, again.retries) == (
        a, 10, str(folder / "checkpoint-10.pt"), 1)

    run_b = claimed(store)  # no checkpoint: nothing to resume from
    store.finish(b, "w1", "failed", error="boom", attempt=run_b.attempt)
    with pytest.raises(InvalidTransition, match=f"run {b} has no checkpoint to resume from"):
        store.retry(b, resume=True)
    assert store.get_run(b).status == RunStatus.FAILED  # refused: nothing changed
    with pytest.raises(InvalidTransition, match="queued: cannot retry"):
        store.retry(c, resume=True)  # the status is refused first
    with pytest.raises(RunNotFound):
        store.retry(999, resume=True)


def test_divergence_is_stored_as_fields_and_cleared_by_retry(store):
    [run_id] = store.submit([config()]).run_ids
    run = claimed(store)
    store.write_batch(run_id, run.attempt,
                      [ScalarsEvent(1, {"loss": 1.0, "ess_fraction": 0.25, "max_share": 0.5})])
    figures = {"loss": float("inf"), "logit_max": 1.5e3, "ess_fraction": 0.03}
    store.finish(run_id, "w1", "failed", error="diverged at iteration 2: ...",
                 attempt=run.attempt, diverged_at=2, divergence=figures)
    info = store.get_run(run_id)
    # A non-finite figure is stored as JSON null, like every other logged value.
    assert (info.diverged_at, info.divergence) == (2, {**figures, "loss": None})
    row = store.scalars(run_id).iloc[0]
    assert (row["ess_fraction"], row["max_share"]) == (0.25, 0.5)  # columns, not ``extra``
    info = store.retry(run_id)
    assert (info.diverged_at, info.divergence) == (None, None)


# ---------------------------------------------------------------- metrics

def test_scalars_round_trip_and_downsampling(store):
    [run_id] = store.submit([config()]).run_ids
    run = claimed(store)
    n = 30_000
    for first in range(1, n + 1, 5000):
        store.write_batch(run_id, run.attempt, scalars(first, first + 4999))
    t0 = time.perf_counter()
    full = store.scalars(run_id)
    t_full = time.perf_counter() - t0
    assert list(full.columns) == ["iteration", *SCALAR_COLUMNS]  # a fixed schema
    assert full["ce"].isna().all()  # not reported: NaN
    assert full["iteration"].tolist() == list(range(1, n + 1))
    assert np.allclose(full["loss"], 1.0 / np.arange(1, n + 1))

    t0 = time.perf_counter()
    small = store.scalars(run_id, max_points=2000)
    t_small = time.perf_counter() - t0
    its = small["iteration"].to_numpy()
    assert 1900 <= len(small) <= 2001 and its[-1] == n
    assert set(np.diff(its[:-1])) == {15}  # one every 15th iteration, chosen in SQL
    print(f"\n{store.dialect}: 30k scalars in {t_full:.3f} s, 2k of them in {t_small:.3f} s")

    tail = store.scalars(run_id, after=n - 10)
    assert tail["iteration"].tolist() == list(range(n - 9, n + 1))
    assert len(store.scalars(run_id, after=n - 10, max_points=100)) == 10
    # An explicit stride: the multiples of k after `after`, and the newest row.
    grid = store.scalars(run_id, after=1000, stride=64)["iteration"].to_numpy()
    assert grid.tolist() == [*range(1024, n + 1, 64), n]
    with pytest.raises(ValueError, match="stride"):
        store.scalars(run_id, stride=0)
    assert store.scalars(12345).empty  # unknown run: an empty frame (the polling path)
    assert store.get_run(run_id).iteration == n


def test_non_finite_scalars_come_back_as_nan(store):
    [run_id] = store.submit([config()]).run_ids
    run = claimed(store)
    store.write_batch(run_id, run.attempt, [ScalarsEvent(1, {"loss": float("inf"), "x": 1.0}),
                                            ScalarsEvent(2, {"loss": float("nan"), "x": 2.0}),
                                            ScalarsEvent(3, {"loss": 0.5, "y": "text"})])
    df = store.scalars(run_id)
    assert df["loss"].isna().tolist() == [True, True, False] and df["loss"].dtype == float
    # keys the store has no column for come back too (stored as JSON)
    assert df["x"].tolist()[:2] == [1.0, 2.0] and df["y"].tolist()[2] == "text"


def test_histograms_evals_labels_round_trip(store):
    [run_id] = store.submit([config()]).run_ids
    run = claimed(store)
    start = start_event()
    sent = histograms(1, 1000, bins=12)
    store.write_batch(run_id, run.attempt, scalars(1, 1000), sent[:400], start=start)
    store.write_batch(run_id, run.attempt, (), sent[400:],
                      [EvalEvent(i, {"test_acc": i / 1000, "train_acc_intact": 0.5})
                       for i in (100, 200, 1000)])

    series = store.histograms(run_id, max_rows=None)
    assert series.iterations.tolist() == list(range(1, 1001))
    assert series.clean.shape == (1000, 12) and series.clean.dtype == np.int32
    assert np.array_equal(series.clean, np.stack([e.clean for e in sent]))
    assert np.array_equal(series.noisy, np.stack([e.noisy for e in sent]))

    window = store.histograms(run_id, start=101, end=200)
    assert window.iterations.tolist() == list(range(101, 201))
    down = store.histograms(run_id, max_rows=100)
    assert len(down) <= 101 and down.iterations[-1] == 1000
    assert np.array_equal(down.clean, series.clean[down.iterations - 1])
    strided = store.histograms(run_id, start=101, max_rows=None, stride=32)
    assert strided.iterations.tolist() == [*range(128, 1001, 32), 1000]
    assert np.array_equal(strided.noisy, series.noisy[strided.iterations - 1])

    it, clean, noisy = store.histogram_at(run_id, 500)
    assert it == 500 and np.array_equal(clean, sent[499].clean)
    assert store.histogram_at(run_id, 10**6)[0] == 1000
    assert store.histogram_at(run_id, 0) is None

    evals = store.evals(run_id)
    assert evals["iteration"].tolist() == [100, 200, 1000]
    assert evals["test_acc"].tolist() == [0.1, 0.2, 1.0]
    assert store.get_run(run_id).last_test_acc == 1.0

    clean, noisy, is_noisy = store.labels(run_id)
    assert np.array_equal(clean, start.clean_labels) and np.array_equal(noisy, start.noisy_labels)
    assert is_noisy.dtype == bool and np.array_equal(is_noisy, start.is_noisy)
    assert store.labels(run_id, phase="relabel") is None


def test_checkpoint_commits_with_rows_and_truncate_after(store):
    [run_id] = store.submit([config()]).run_ids
    run = claimed(store)
    store.write_batch(run_id, run.attempt, scalars(1, 10), histograms(1, 10),
                      [EvalEvent(10, {"test_acc": 0.3})],
                      checkpoint=CheckpointEvent(10, "/a/run-1/attempt-1/checkpoint-10.pt"))
    store.write_batch(run_id, run.attempt, scalars(11, 14), histograms(11, 14),
                      [EvalEvent(12, {"test_acc": 0.4})])
    info = store.get_run(run_id)
    assert (info.checkpoint_iteration, info.iteration, info.last_test_acc) == (10, 14, 0.4)

    store.truncate_after(run_id, 10)
    info = store.get_run(run_id)
    assert (info.iteration, info.last_test_acc) == (10, 0.3)
    assert store.scalars(run_id)["iteration"].tolist() == list(range(1, 11))
    assert store.histograms(run_id).iterations.tolist() == list(range(1, 11))
    assert store.evals(run_id)["iteration"].tolist() == [10]
    # resuming continues at 11: no gap, no duplicate
    store.write_batch(run_id, run.attempt, scalars(11, 20), histograms(11, 20))
    assert store.scalars(run_id)["iteration"].tolist() == list(range(1, 21))
    # A batch written twice (its commit succeeded but the answer was lost, so the worker
    # retried it) replaces its own rows: no duplicate, no error, nothing else touched.
    store.write_batch(run_id, run.attempt, scalars(15, 20), histograms(15, 20),
                      [EvalEvent(20, {"test_acc": 0.5})])
    store.write_batch(run_id, run.attempt, scalars(15, 20), histograms(15, 20),
                      [EvalEvent(20, {"test_acc": 0.5})])
    frame = store.scalars(run_id)
    assert frame["iteration"].tolist() == list(range(1, 21))
    assert frame["loss"].tolist() == pytest.approx([1.0 / i for i in range(1, 21)])
    assert store.histograms(run_id).iterations.tolist() == list(range(1, 21))
    assert store.evals(run_id)["iteration"].tolist() == [10, 20]
    # Underneath, a duplicate iteration is impossible, not just unlikely (the primary key).
    from sqlalchemy import insert

    from dm_store.models import SCALARS
    with pytest.raises(StoreError, match="(?i)unique|duplicate"):
        with store.session_scope() as s:
            s.execute(insert(SCALARS).values(run_id=run_id, iteration=20, loss=0.0))


# ---------------------------------------------------------------- the reaper and fencing

def went_silent(store: Store, *run_ids: int) -> None:
    """As if the runs' workers had sent no heartbeat for an hour (database time): a state,
    where sleeping past a short ``stale_after`` would race the live runs' heartbeats."""
    with store.session_scope() as s:
        s.execute(update(RUNS).where(RUNS.c.id.in_(run_ids))
                  .values(heartbeat_at=store._db.ago(3600)))


def test_requeue_stale_with_attempts(store):
    a, b, c = store.submit([config("a"), config("b"), config("c")], max_attempts=2).run_ids
    run_a = claimed(store, "wa")
    store.write_batch(a, 1, scalars(1, 10), checkpoint=CheckpointEvent(10, "/x/run-1/ck.pt"))
    run_b = claimed(store, "wb")
    claimed(store, "wc")
    store.cancel(c)
    store.heartbeat(b, "wb", run_b.attempt)  # b is alive
    went_silent(store, a, c)
    assert store.requeue_stale(60.0) == [a, c]
    info = store.get_run(a)
    assert (info.status, info.attempt, info.worker_id) == (RunStatus.QUEUED, 2, None)
    assert info.checkpoint_iteration == 10 and info.iteration == 10  # kept for the resume
    assert "worker wa stopped sending heartbeats" in info.error
    assert store.get_run(b).status == RunStatus.RUNNING
    assert store.get_run(c).status == RunStatus.CANCELLED  # lost after a cancel request

    # The lost worker comes back: it may write nothing any more.
    with pytest.raises(LostClaim):
        store.write_batch(a, run_a.attempt, scalars(11, 12), worker_id="wa")
    with pytest.raises(LostClaim):
        store.heartbeat(a, "wa", run_a.attempt)
    with pytest.raises(LostClaim):
        store.finish(a, "wa", "succeeded", attempt=run_a.attempt)
    assert store.get_run(a).iteration == 10 and len(store.scalars(a)) == 10

    again = claimed(store, "wa2")
    assert (again.id, again.attempt, again.checkpoint_iteration) == (a, 2, 10)
    store.heartbeat(b, "wb", run_b.attempt)
    went_silent(store, a)
    assert store.requeue_stale(60.0) == [a]
    info = store.get_run(a)
    assert info.status == RunStatus.FAILED and info.finished_at is not None
    assert info.error.startswith("gave up after 2 attempt(s): worker wa2 stopped")
    assert [c["attempt"] for c in store.claims(a)] == [1, 2]


def test_two_reapers_at_once_handle_each_run_once(db_url, tmp_path):
    store = Store(db_url, tmp_path)
    ids = store.submit([config(f"r{i}") for i in range(12)]).run_ids
    for i in ids:
        claimed(store, f"w{i}")
    time.sleep(1.2)
    results: list[list[int]] = []
    barrier = threading.Barrier(3)

    def reap():
        own = Store(db_url, tmp_path)  # its own engine, like another process
        barrier.wait()
        results.append(own.requeue_stale(1.0))
        own.dispose()

    threads = [threading.Thread(target=reap) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    handled = [i for r in results for i in r]
    assert sorted(handled) == ids  # every run once, none twice
    assert {r.attempt for r in store.list_runs()} == {2}


def test_release_warm_and_consuming(store):
    a, b = store.submit([config("a"), config("b")], max_attempts=2).run_ids
    run = claimed(store)
    assert store.release(a, "w1", run.attempt) == RunStatus.QUEUED
    assert store.get_run(a).attempt == 1  # a warm stop consumes no attempt
    run = claimed(store)
    assert run.id == a
    assert store.release(a, "w1", 1, consume_attempt=True, error="db gone") == RunStatus.QUEUED
    run = claimed(store)
    assert (run.id, run.attempt) == (a, 2)
    assert store.release(a, "w1", 2, consume_attempt=True, error="db gone") == RunStatus.FAILED
    with pytest.raises(LostClaim):
        store.release(b, "w1", 1)  # b is queued: not held by anyone


def test_concurrent_claims_take_each_run_once(db_url, tmp_path):
    store = Store(db_url, tmp_path)
    ids = store.submit([config(f"r{i}") for i in range(40)]).run_ids
    got: dict[str, list[int]] = {}
    barrier = threading.Barrier(4)

    def claimer(name: str) -> None:
        own = Store(db_url, tmp_path)
        mine = got.setdefault(name, [])
        barrier.wait()
        while (run := own.claim(name, "cpu")) is not None:
            mine.append(run.id)
        own.dispose()

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    taken = [i for v in got.values() for i in v]
    assert sorted(taken) == ids
    assert len(store.claims()) == 40


# ---------------------------------------------------------------- URLs, pickling, schema

def test_pickles_by_url_and_never_shows_the_password(tmp_path):
    url = "postgresql://dm:s3cret-pw@127.0.0.1:1/dm"  # nothing listens on port 1
    store = Store(url, tmp_path)
    assert store.url.startswith("postgresql+psycopg://")
    assert "s3cret-pw" not in repr(store) and "***" in store.masked_url
    clone = pickle.loads(pickle.dumps(store))
    assert clone.url == store.url and clone.artifacts_dir == store.artifacts_dir
    with pytest.raises(StoreError) as err:
        clone.list_runs()
    assert "s3cret-pw" not in str(err.value) and "***" in str(err.value)


def test_default_url_and_env(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DM_DATABASE_URL", raising=False)
    store = Store()
    assert store.url == f"sqlite:///{tmp_path / 'var' / 'dm.sqlite'}"
    assert (tmp_path / "var").is_dir()
    monkeypatch.setenv("DM_DATABASE_URL", f"sqlite:///{tmp_path / 'other.sqlite'}")
    assert Store().url.endswith("other.sqlite")
    with pytest.raises(StoreError, match="not supported"):
        Store("mysql://u:p@h/db")


def test_schema_matches_the_models_and_upgrade_is_idempotent(store):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    assert store.upgrade() == "0005" and store.upgrade() == "0005"
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_no_auto_upgrade_names_the_command(db_url):
    with pytest.raises(StoreError, match="dm db upgrade"):
        Store(db_url, upgrade=False).list_runs()


@pytest.mark.slow
def test_four_processes_migrate_at_once(db_url, tmp_path):
    code = ("import sys; from dm_store import Store; s = Store(sys.argv[1]); "
            "s.upgrade() if sys.argv[2] == 'up' else s.list_runs()")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = [subprocess.Popen([sys.executable, "-c", code, db_url, mode], env=env, cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for mode in ("up", "up", "auto", "auto")]
    outputs = [p.communicate(timeout=120) for p in procs]
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
    assert Store(db_url).revision() == "0005"


@pytest.mark.postgres
def test_postgres_sessions_cut_off_frozen_clients_and_bound_lock_waits(postgres_url):
    # Every connection gets both settings; a URL's own ``options`` come last and win.
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    from dm_store.testing import fresh_database

    def settings(url: str) -> tuple[str, str]:
        store = Store(url)
        with store.session_scope(readonly=True) as s:
            got = (s.execute(text("SHOW idle_in_transaction_session_timeout")).scalar(),
                   s.execute(text("SHOW lock_timeout")).scalar())
        store.dispose()
        return got

    with fresh_database(postgres_url) as url:
        assert settings(url) == ("10s", "30s")
        tuned = make_url(url).update_query_dict({"options": "-c lock_timeout=5s"})
        assert settings(tuned.render_as_string(hide_password=False)) == ("10s", "5s")
