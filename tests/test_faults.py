"""Fault injection: workers killed, the database restarted or contended, the disk full,
training diverging. Each test repeats its fault enough times to mean something and counts
what it did into docs/reliability.md (the ``reliability`` fixture, tests/reliability_report.py).

- kill -9 at a random iteration of each of 20 runs (two worker processes, each holding its
  runs at a random iteration -- ``hold_at`` -- where the kill lands, replaced as they die):
  every run succeeds once, every iteration is stored exactly once, and resumed runs match an
  uninterrupted run bit for bit.
- the PostgreSQL server stopped and started three times under two training workers: they
  ride it out with backoff; no run loses an attempt, a row, or gets one twice.
- a worker whose database stays away longer than ``max_outage`` gives the run back.
- SQLite with four writer processes and a reader polling like the dashboard: no "database is
  locked" reaches anyone.
- an unwritable artifacts directory and a full disk (``/dev/full``): the run fails naming the
  reason, and the database stays consistent.
- divergence (β = 60, lr = 10) through the worker: failed at iteration k, metrics up to k
  kept, nothing non-finite stored.
- the database's disk full mid-run: the run pauses (no outage retries, no attempt used) and
  goes on once space is freed.
- a run taken over while its loop still ran: what the loop raises afterwards is not logged as
  the run's failure; the run is dropped.
- the database deleted (dropped) and created again, or a backup moved over the live SQLite
  file, under a training worker: it writes nothing more and stops, naming why.

Timing: about two minutes on two cores; the subprocess tests are marked ``slow``.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import multiprocessing
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from held_worker import held_worker_command
from sqlalchemy import func, select
from test_workers import (
    cfg,
    cli,
    start_worker_process,
    stop_all,
    tiny,
    wait_for,
    worker_logs,
)

from dm_core.events import ScalarsEvent
from dm_store import RunStatus, Store, StoreError, StoreUnavailable
from dm_store.models import CLAIMS, EVALS, HISTOGRAMS, LABELS, RUNS, SCALARS
from workers import Worker
from workers.backoff import Backoff, retrying

ROOT = Path(__file__).resolve().parents[1]
ALWAYS_REPORTED = ("loss", "ce", "lr", "batch_acc", "weight_mean", "weight_var")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def in_process_worker(store: Store, **kwargs) -> Worker:
    options = {"device": "cpu", "poll": 0.1, "stale_after": 5.0, "exit_when_idle": True,
               "artifacts_dir": store.artifacts_dir, "heartbeat_every": 0.2}
    options.update(kwargs)
    return Worker(store, **options)


def patiently(action, what: str = "a read", timeout: float = 60.0):
    """The test's own reads ride out an outage too."""
    return retrying(action, what, Backoff(first=0.1, cap=1.0, give_up_after=timeout))


def stored_iterations(store: Store, run_id: int) -> dict[str, list[int]]:
    """Every iteration stored for the run, per table, in storage order (duplicates visible)."""
    with store.session_scope(readonly=True) as s:
        return {table.name: [int(i) for i in s.execute(
            select(table.c.iteration).where(table.c.run_id == run_id)
            .order_by(table.c.iteration)).scalars()]
            for table in (SCALARS, HISTOGRAMS, EVALS)}


def exactly_once(store: Store, run_id: int, total: int, eval_every: int) -> bool:
    """Every iteration 1..total once in scalars and histograms; evals where they belong."""
    got = stored_iterations(store, run_id)
    evals = sorted({*range(eval_every, total + 1, eval_every), total})
    return (got["scalars"] == list(range(1, total + 1))
            and got["histograms"] == list(range(1, total + 1)) and got["evals"] == evals)


def orphan_rows(store: Store) -> int:
    """Rows of any per-run table whose run does not exist."""
    with store.session_scope(readonly=True) as s:
        return sum(s.execute(select(func.count()).select_from(table)
                             .where(table.c.run_id.not_in(select(RUNS.c.id)))).scalar_one()
                   for table in (SCALARS, HISTOGRAMS, EVALS, LABELS, CLAIMS))


def reference_losses(config) -> np.ndarray:
    """The per-iteration loss of an uninterrupted run of ``config``, in this process."""
    from dm_core.train import train

    losses: list[float] = []
    train(config, on_event=lambda e: losses.append(e.values["loss"])
          if isinstance(e, ScalarsEvent) else None)
    return np.asarray(losses)


# ---------------------------------------------------------------- backoff, in isolation

def test_backoff_retries_outages_only_and_gives_up_in_bounded_time(caplog):
    """Backoff: only outages are retried, with growing waits, for a bounded time"""
    now = [0.0]
    waits: list[float] = []

    def sleep(seconds):
        waits.append(seconds)
        now[0] += seconds

    calls = []

    def flaky():
        calls.append(now[0])
        if len(calls) < 5:
            raise StoreUnavailable("database error (...): connection refused")
        return "done"

    backoff = Backoff(first=0.5, cap=4.0, give_up_after=30.0, jitter=0.0)
    with caplog.at_level(logging.WARNING, logger="dm.worker"):
        assert retrying(flaky, "run 3: record succeeded", backoff, sleep=sleep,
                        clock=lambda: now[0]) == "done"
    assert waits == [0.5, 1.0, 2.0, 4.0]
    assert "run 3: record succeeded: database unavailable (database error (...): connection " \
           "refused); retry 1 in 0.50 s" in caplog.text
    assert "reachable again after 7.5 s (4 failed tries)" in caplog.text

    def down():
        raise StoreUnavailable("connection refused")

    waits.clear()
    now[0] = 0.0
    with pytest.raises(StoreUnavailable), caplog.at_level(logging.ERROR, logger="dm.worker"):
        retrying(down, "hand back", backoff, sleep=sleep, clock=lambda: now[0])
    assert sum(waits) <= 30.0 and len(waits) == 9  # 0.5+1+2+4+4+4+4+4+4 = 27.5, next would pass 30
    assert "hand back: database unavailable for 27.5 s (10 tries); giving up" in caplog.text

    def broken():
        calls.append("broken")
        raise StoreError("duplicate key")

    calls.clear()
    with pytest.raises(StoreError, match="duplicate"):
        retrying(broken, "x", backoff, sleep=sleep, clock=lambda: now[0])
    assert calls == ["broken"]  # not an outage: not retried


def test_unreachable_or_locked_database_is_store_unavailable(tmp_path, monkeypatch):
    """Connection refused and SQLite locked count as outages (StoreUnavailable)"""
    with pytest.raises(StoreUnavailable, match=r"\*\*\*"):
        Store("postgresql://dm:pw@127.0.0.1:1/dm").list_runs()  # nothing listens on port 1

    import dm_store.database as store_module

    monkeypatch.setattr(store_module, "SQLITE_BUSY_TIMEOUT_S", 0.2)
    url = f"sqlite:///{tmp_path / 'locked.sqlite'}"
    store = Store(url)
    store.queue_counts()  # schema in place
    holder = sqlite3.connect(tmp_path / "locked.sqlite", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        with pytest.raises(StoreUnavailable, match="locked"):
            store.submit([cfg()])
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert store.submit([cfg()]).run_ids == [1]  # and it passes once the lock is gone


# ---------------------------------------------------------------- a: kill -9, 20 runs

def _forked_worker(url: str, artifacts: str, log_path: str, options: dict) -> None:
    logging.basicConfig(filename=log_path, level=logging.INFO, force=True,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    Worker(Store(url, artifacts), device="cpu", artifacts_dir=artifacts, **options).run()


def fork_worker(store: Store, **options) -> multiprocessing.Process:
    """A worker process forked from this one: torch is already imported, so it starts in
    milliseconds instead of seconds (20 kills must not cost 20 interpreter start-ups). Its
    log goes to ``worker-*.log`` beside the artifacts (``worker_logs``)."""
    store.dispose()  # no open database connection crosses the fork (docs/architecture.md, "SQLite locking")
    log_path = store.artifacts_dir.parent / f"worker-{time.monotonic_ns()}.log"
    proc = multiprocessing.get_context("fork").Process(
        target=_forked_worker, daemon=True,
        args=(store.url, str(store.artifacts_dir), str(log_path),
              {"poll": 0.1, "heartbeat_every": 0.25, **options}))
    proc.start()
    return proc


@pytest.mark.slow
def test_kill_9_at_random_points_of_20_runs(tmp_path, reliability):
    """kill -9 a worker at a random iteration of each of 20 runs; replacements resume them"""
    store = Store(f"sqlite:///{tmp_path / 'dm.sqlite'}", tmp_path / "artifacts")
    total, every = 400, 40
    configs = [cfg(f"k{i}", seed=i, iterations=total, eval_every=every) for i in range(20)]
    ids = store.submit(configs, max_attempts=10).run_ids
    reference_losses(cfg(iterations=2))  # import and warm up what training needs, once, here
    rng = random.Random(20)
    killed: set[int] = set()
    kills: list[dict] = []  # what each kill interrupted

    def start() -> dict:
        # Each worker holds every run it trains after a random iteration (``hold_at``, its
        # rows stored, until SIGCONT): the kill lands there, mid-run, however fast the
        # machine trains -- the test waits for that state, not for a duration.
        hold_at = rng.randint(1, total - 1)
        return {"proc": fork_worker(store, stale_after=1.5, flush_every=0.2, hold_at=hold_at),
                "hold_at": hold_at}

    def held_by(proc, infos) -> object | None:
        for info in infos:
            if (info.status == RunStatus.RUNNING and info.worker_id
                    and info.worker_id.split("-")[-2] == str(proc.pid)):
                return info
        return None

    lanes = [start(), start()]
    deadline = time.monotonic() + 480  # a bound for a hung test, not a measure of speed
    try:
        while True:
            infos = store.list_runs()
            if all(r.status == RunStatus.SUCCEEDED for r in infos):
                break
            assert time.monotonic() < deadline, worker_logs(store.artifacts_dir)
            for n, lane in enumerate(lanes):
                proc = lane["proc"]
                assert proc.is_alive(), worker_logs(store.artifacts_dir)
                held = held_by(proc, infos)
                if (held is None or held.iteration != lane["hold_at"]
                        or (held.checkpoint_iteration or 0) != lane["hold_at"] // every * every):
                    # Not at its hold (it cannot pass it without a SIGCONT), or not yet: a
                    # flush on the sink's clock can store iteration k's scalars before its
                    # evaluation and checkpoint, which the hold's own flush writes.
                    continue
                if held.id in killed:  # each run is killed once, on its first attempt
                    # (Sent again while the state lasts: a release sent before the hold --
                    # the rows of a killed attempt not yet truncated -- is forgotten.)
                    os.kill(proc.pid, signal.SIGCONT)
                    continue
                proc.kill()  # SIGKILL: no checkpoint, no hand-back, no goodbye
                proc.join(timeout=30)
                killed.add(held.id)
                held = store.get_run(held.id)  # what the resume will use
                kills.append({"run": held.id, "at": held.iteration, "hold_at": lane["hold_at"],
                              "attempt": held.attempt,
                              "checkpoint": held.checkpoint_iteration or 0})
                lanes[n] = start()
            time.sleep(0.05)  # the polling interval
        assert all(lane["proc"].is_alive() for lane in lanes), worker_logs(store.artifacts_dir)
    finally:
        for lane in lanes:
            lane["proc"].kill()
            lane["proc"].join(timeout=30)

    infos = {r.id: r for r in store.list_runs()}
    lost = [i for i in ids if not exactly_once(store, i, total, every)]
    mid_run = [k for k in kills if k["run"] is not None]
    claims = store.claims()
    reliability.add(trials=len(ids), faults=len(kills), lost=len(lost), claims=len(claims),
                    kills_mid_run=len(mid_run),
                    resumed_from_a_checkpoint=sum(1 for k in mid_run if k["checkpoint"]),
                    restarted_from_scratch=sum(1 for k in mid_run if not k["checkpoint"]))
    assert lost == [], (lost, worker_logs(store.artifacts_dir))
    assert {r.status for r in infos.values()} == {RunStatus.SUCCEEDED}
    # Every run was killed once, mid-run, on its first attempt, at its worker's hold: every
    # row up to there stored, with the last checkpoint before it.
    assert sorted(k["run"] for k in kills) == ids, kills
    assert all(k["at"] == k["hold_at"] and k["attempt"] == 1 for k in kills), kills
    assert all(k["checkpoint"] == k["at"] // every * every for k in kills), kills
    for run_id in ids:  # each attempt claimed once, attempts numbered 1..n without a gap
        attempts = [c["attempt"] for c in claims if c["run_id"] == run_id]
        assert attempts == list(range(1, infos[run_id].attempt + 1)), (run_id, attempts)
    assert all(infos[i].attempt > 1 for i in killed)
    assert orphan_rows(store) == 0

    # Resumed runs are the same runs: bit for bit the losses of an uninterrupted one.
    resumed = [k["run"] for k in mid_run if k["checkpoint"]][:4]
    assert resumed, kills
    for run_id in resumed:
        stored = store.scalars(run_id)["loss"].to_numpy()
        np.testing.assert_array_equal(stored, reference_losses(configs[ids.index(run_id)]))


# ---------------------------------------------------------------- b: PostgreSQL restarted

@pytest.mark.slow
@pytest.mark.postgres
def test_postgres_restarted_under_two_training_workers(postgres_url, tmp_path, reliability):
    """PostgreSQL stopped and started 3 times while 2 workers train: they ride it out"""
    from dm_store.testing import PostgresUnavailable, fresh_database, start_server, stop_server

    outages, down_for = 3, 2.0
    with fresh_database(postgres_url) as url:
        store = Store(url, tmp_path / "artifacts")
        total, every = 2000, 250
        ids = store.submit([cfg(f"pg{i}", seed=i, iterations=total, eval_every=every)
                            for i in range(4)]).run_ids
        # Each worker holds each run at iteration ``held_at`` (workers.hold) until a SIGCONT:
        # the first outage finds two runs training however unevenly the workers start and
        # however fast they train. The test releases them as it goes (``go_on``).
        held_at = 100
        procs = [start_worker_process(held_worker_command(
            url, str(store.artifacts_dir), held_at, stale_after=30.0, max_outage=60.0),
            store.artifacts_dir) for _ in range(2)]

        def runs():
            return patiently(store.list_runs)

        def go_on() -> None:
            # Sent again while a later run waits at its hold (one sent before a hold is
            # forgotten); a worker that holds nothing ignores it.
            for p in procs:
                p.send_signal(signal.SIGCONT)

        def moved_on(before: int) -> bool:
            go_on()
            infos = runs()
            return (sum(r.iteration for r in infos) > before + 100
                    or all(r.status in (RunStatus.SUCCEEDED, RunStatus.FAILED) for r in infos))

        restarts, training_during_outage, down = 0, 0, False
        try:
            wait_for(lambda: [r.iteration for r in store.list_runs(status="running")]
                     == [held_at, held_at], timeout=240, what="two runs held at held_at")
            for _ in range(outages):
                before = sum(r.iteration for r in runs())
                training_during_outage += sum(r.status == RunStatus.RUNNING for r in runs())
                try:
                    stop_server(url)
                except PostgresUnavailable as err:  # a server the tests did not start
                    if os.environ.get("CI", "").lower() == "true":
                        pytest.fail(f"CI=true but the PostgreSQL server cannot be restarted: {err}")
                    pytest.skip(str(err))
                down = True
                go_on()  # the held runs train on while the database is down
                time.sleep(down_for)
                start_server(url)
                down, restarts = False, restarts + 1
                wait_for(lambda: moved_on(before), timeout=120, every=0.2,  # noqa: B023
                         what="progress after the restart")
            wait_for(lambda: go_on() or all(r.status in (RunStatus.SUCCEEDED, RunStatus.FAILED)
                                            for r in runs()), timeout=240, every=0.3,
                     what="every run to finish")
            for p in procs:
                p.send_signal(signal.SIGTERM)
            codes = [p.wait(timeout=60) for p in procs]
        finally:
            stop_all(procs)
            if down:  # the test failed mid-outage: bring the server back for the other tests
                start_server(url)
        logs = worker_logs(store.artifacts_dir)
        assert codes == [0, 0], logs
        infos = store.list_runs()
        lost = [i for i in ids if not exactly_once(store, i, total, every)]
        claims = store.claims()
        reliability.add(trials=len(ids), faults=restarts, lost=len(lost),
                        outage_seconds=restarts * down_for,
                        runs_training_at_a_restart=training_during_outage,
                        retry_log_lines=logs.count("database unavailable")
                        + logs.count("could not write metrics") + logs.count("could not claim"),
                        attempts_used=sum(r.attempt for r in infos))
        assert {r.status for r in infos} == {RunStatus.SUCCEEDED}, logs
        assert lost == [], logs
        assert [r.attempt for r in infos] == [1] * len(ids), logs  # no attempt consumed
        assert sorted(c["run_id"] for c in claims) == ids  # each run claimed exactly once
        # The workers said what happened, and that it passed.
        assert "database unavailable" in logs or "could not write metrics" in logs, logs
        assert "reachable again" in logs or "written again" in logs, logs
        assert training_during_outage >= 2  # the outages hit training runs, not idle workers
        store.dispose()


class TickingClock:
    """Simulated time for the worker's metrics sink: every reading is ``step`` seconds after
    the previous one, however fast or slow the machine trains."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_a_worker_gives_a_run_back_after_max_outage(tmp_path, caplog, reliability):
    """A database away longer than max_outage: the worker hands the run back, and it resumes"""
    store = Store(f"sqlite:///{tmp_path / 'dm.sqlite'}", tmp_path / "artifacts")
    config = cfg("outage", iterations=1000, eval_every=500)
    [run_id] = store.submit([config]).run_ids
    real_write = store.write_batch
    refused = []

    def write_batch(run_id, attempt, *args, **kwargs):
        if attempt == 1:  # the first attempt never reaches the database again
            refused.append(attempt)
            raise StoreUnavailable("database error (sqlite:///x): connection lost (simulated)")
        return real_write(run_id, attempt, *args, **kwargs)

    store.write_batch = write_batch
    # The outage is measured on a clock that advances with the events the loop reports, not
    # with the wall clock: the sink gives up at its 4th failed flush, 3.5 simulated seconds
    # (700 events, about 350 iterations) into the outage, on any machine -- the run cannot
    # finish inside the outage.
    w = in_process_worker(store, max_outage=2.0, flush_every=0.5, clock=TickingClock(0.005))
    with caplog.at_level(logging.WARNING, logger="dm.worker"):
        assert w.run() == 2  # attempt 1 given back; attempt 2 (same burst worker) finishes
    info = store.get_run(run_id)
    reliability.add(trials=1, faults=len(refused),
                    lost=0 if exactly_once(store, run_id, 1000, 500) else 1)
    assert (info.status, info.attempt) == (RunStatus.SUCCEEDED, 2)
    assert [c["attempt"] for c in store.claims(run_id)] == [1, 2]
    assert exactly_once(store, run_id, 1000, 500)
    assert len(refused) >= 3  # retried with backoff before giving up
    assert "giving up on the run" in caplog.text
    assert "database trouble" in caplog.text and "handed back as queued" in caplog.text


# ---------------------------------------------------------------- c: SQLite contention

WRITER = r"""
import json, pathlib, sys, time
import numpy as np
from dm_core.events import HistogramEvent, ScalarsEvent
from dm_store import Store, StoreError

store, name, gate = Store(sys.argv[1]), sys.argv[2], pathlib.Path(sys.argv[3])
# A start barrier: every writer has started (imports and all) before any claims a run, so
# that each gets runs to write however unevenly the processes start.
(gate / f"ready-{name}").touch()
while not (gate / "go").exists():
    time.sleep(0.01)
out = {"transactions": 0, "errors": [], "max_wait_s": 0.0, "runs": 0}

def op(fn):
    started = time.perf_counter()
    try:
        return fn()
    except StoreError as err:
        out["errors"].append(str(err))
    finally:
        out["transactions"] += 1
        out["max_wait_s"] = max(out["max_wait_s"], time.perf_counter() - started)

while (run := op(lambda: store.claim(name, "cpu"))) is not None:
    out["runs"] += 1
    for i in range(1, run.total_iterations + 1):
        op(lambda: store.write_batch(
            run.id, run.attempt, [ScalarsEvent(i, {"loss": 1.0 / i})],
            [HistogramEvent(i, np.full(8, i, np.int32), np.zeros(8, np.int32))],
            worker_id=name))
        if i % 10 == 0:
            op(lambda: store.heartbeat(run.id, name, run.attempt))
        if i % 50 == 0:
            op(lambda: store.requeue_stale(60.0))
    op(lambda: store.finish(run.id, name, "succeeded", attempt=run.attempt))
print(json.dumps(out))
"""


@pytest.mark.slow
def test_sqlite_four_writers_and_a_polling_reader_never_see_locked(tmp_path, reliability):
    """SQLite: 4 writer processes and a polling reader, no "database is locked" anywhere"""
    url = f"sqlite:///{tmp_path / 'dm.sqlite'}"
    store = Store(url)
    total = 150
    ids = store.submit([cfg(f"c{i}", iterations=total) for i in range(12)]).run_ids
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    gate = tmp_path / "gate"
    gate.mkdir()
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, url, f"writer-{i}", str(gate)],
                                cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True) for i in range(4)]
    reads = {"count": 0, "errors": [], "max_wait_s": 0.0}
    last: dict[int, int] = {}

    def poll_like_the_dashboard():
        reader = Store(url)
        while any(w.poll() is None for w in writers):
            started = time.perf_counter()
            try:
                reader.queue_counts()
                for info in reader.list_runs(status="running", limit=20):
                    frame = reader.scalars(info.id, after=last.get(info.id, 0))
                    reader.histograms(info.id, start=last.get(info.id, 0) + 1)
                    if len(frame):
                        last[info.id] = int(frame["iteration"].iloc[-1])
            except StoreError as err:
                reads["errors"].append(str(err))
            reads["count"] += 1
            reads["max_wait_s"] = max(reads["max_wait_s"], time.perf_counter() - started)
            time.sleep(0.02)
        reader.dispose()

    thread = threading.Thread(target=poll_like_the_dashboard, daemon=True)
    thread.start()
    try:
        wait_for(lambda: len(list(gate.glob("ready-*"))) == len(writers)
                 or any(w.poll() is not None for w in writers), timeout=120,
                 what="every writer to start")
        wait_for(lambda: reads["count"] > 0, timeout=60, what="the reader's first poll")
        (gate / "go").touch()
        results = [w.communicate(timeout=180) for w in writers]
    finally:
        stop_all(writers)
    thread.join(timeout=60)
    assert all(w.returncode == 0 for w in writers), [err for _, err in results]
    outs = [json.loads(out) for out, _ in results]
    errors = [e for o in outs for e in o["errors"]] + reads["errors"]
    lost = [i for i in ids if stored_iterations(store, i)["scalars"] != list(range(1, total + 1))]
    reliability.add(trials=sum(o["transactions"] for o in outs) + reads["count"], faults=0,
                    lost=len(lost), writer_transactions=sum(o["transactions"] for o in outs),
                    reader_polls=reads["count"], lock_errors=len(errors),
                    max_writer_wait_s=round(max(o["max_wait_s"] for o in outs), 3),
                    max_reader_poll_s=round(reads["max_wait_s"], 3))
    assert errors == []
    assert sum(o["runs"] for o in outs) == len(ids) and all(o["runs"] for o in outs)
    assert reads["count"] >= 2  # it polled before the writers began, and while they wrote
    assert lost == []
    assert {r.status for r in store.list_runs()} == {RunStatus.SUCCEEDED}


# ---------------------------------------------------------------- d: disk faults

def unwritable_artifacts(tmp_path: Path) -> tuple[Path, str]:
    """An artifacts directory no checkpoint can be written to, and the error expected.

    As an ordinary user: chmod 0o500. As root (CI containers), permissions do not stop
    writes, so the directory is placed under a regular file instead: ENOTDIR.
    """
    if os.geteuid() != 0:
        path = tmp_path / "readonly"
        path.mkdir()
        path.chmod(0o500)
        return path, "Permission denied"
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    return blocker / "artifacts", "Not a directory"


def fill_disk_at(monkeypatch, checkpoint_number: int) -> list[int]:
    """From the ``checkpoint_number``-th checkpoint on (1-based), the disk is full: the
    loop's temporary checkpoint file is a link to /dev/full, so the kernel answers ENOSPC."""
    import dm_core.checkpoints

    real = dm_core.checkpoints.write_atomically
    calls: list[int] = []

    def write(state, directory):
        calls.append(state["iteration"])
        if len(calls) >= checkpoint_number:
            directory.mkdir(parents=True, exist_ok=True)
            tmp = directory / (dm_core.checkpoints.CHECKPOINT_NAME + ".tmp")
            tmp.unlink(missing_ok=True)
            tmp.symlink_to("/dev/full")
        return real(state, directory)

    monkeypatch.setattr(dm_core.checkpoints, "write_atomically", write)
    return calls


def assert_consistent_after_failure(store: Store, run_id: int, reason: str) -> None:
    info = store.get_run(run_id)
    assert info.status == RunStatus.FAILED and info.finished_at is not None
    assert reason in info.error, info.error
    got = stored_iterations(store, run_id)
    k = info.iteration
    assert got["scalars"] == list(range(1, k + 1))  # no gap, no duplicate
    assert got["histograms"] == got["scalars"]
    assert all(i <= k for i in got["evals"])
    assert k >= (info.checkpoint_iteration or 0)  # metrics up to the last checkpoint present
    if info.checkpoint_iteration:
        assert Path(info.checkpoint_path).is_file()
    assert store.labels(run_id) is not None
    assert [c["attempt"] for c in store.claims(run_id)] == [1]
    assert orphan_rows(store) == 0


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_disk_faults_fail_the_run_cleanly(db_url, tmp_path, monkeypatch, reliability):
    """Artifacts unwritable or disk full: the run fails naming why; the database stays consistent"""
    total, every = 60, 20
    trials = 0
    # Unwritable from the start: the first checkpoint (iteration 20) fails.
    artifacts, reason = unwritable_artifacts(tmp_path)
    store = Store(db_url, artifacts)
    [run_id] = store.submit([cfg("unwritable", iterations=total, eval_every=every)]).run_ids
    in_process_worker(store).run()
    assert_consistent_after_failure(store, run_id, reason)
    info = store.get_run(run_id)
    assert "cannot write a checkpoint in" in info.error and info.checkpoint_iteration is None
    assert info.iteration == every
    trials += 1

    # Disk full at the 1st, 2nd and 3rd checkpoint.
    store = Store(db_url, tmp_path / "artifacts")
    for n in (1, 2, 3):
        calls = fill_disk_at(monkeypatch, n)
        [run_id] = store.submit([cfg(f"full-{n}", iterations=total, eval_every=every)]).run_ids
        in_process_worker(store).run()
        assert_consistent_after_failure(store, run_id, "No space left on device")
        info = store.get_run(run_id)
        assert info.error.startswith("OSError: [Errno 28] cannot write a checkpoint in")
        assert info.checkpoint_iteration == (calls[n - 2] if n > 1 else None)
        assert info.iteration == calls[n - 1] == n * every
        assert list(store.run_dir(run_id).rglob("*.tmp")) == []  # cleaned up
        trials += 1
        monkeypatch.undo()
    reliability.add(trials=trials, faults=trials, lost=0,
                    **{"reason shown": f"{reason}; No space left on device"})


# ---------------------------------------------------------------- e: divergence

def test_divergence_through_the_worker(db_url, tmp_path, reliability):
    """Diverging runs (β = 60, lr = 10) fail at iteration k with their metrics up to k"""
    store = Store(db_url, tmp_path / "artifacts")
    seeds = range(6)
    # Evaluated, checkpointed and written every iteration: all of that must survive too.
    ids = store.submit([cfg(f"div{s}", seed=s, iterations=300, eval_every=1, loss__beta=60.0,
                            optimizer__lr=10.0, max_logit=100.0) for s in seeds]).run_ids
    in_process_worker(store, flush_every=0.0).run()
    at = []
    for run_id in ids:
        info = store.get_run(run_id)
        assert info.status == RunStatus.FAILED, info
        assert info.error.startswith("diverged at iteration "), info.error
        k = int(info.error.split()[3].rstrip(":"))
        # The stored figures are what the message states.
        assert info.diverged_at == k and info.divergence["max_abs_logit"] > 100.0, info
        assert f"max |logit| {info.divergence['max_abs_logit']:.3g} > max_logit 100" in info.error
        at.append(k)
        got = stored_iterations(store, run_id)
        assert got["scalars"] == got["histograms"] == got["evals"] == list(range(1, k))
        assert info.iteration == info.checkpoint_iteration == k - 1  # kept up to k
        frame = store.scalars(run_id)
        values = frame[list(ALWAYS_REPORTED)].to_numpy()
        assert np.isfinite(values).all(), frame  # nothing NaN or infinite was stored
        with store.session_scope(readonly=True) as s:  # nor NULL (a non-finite value)
            nulls = s.execute(select(func.count()).select_from(SCALARS).where(
                SCALARS.c.run_id == run_id, SCALARS.c.loss.is_(None))).scalar_one()
        assert nulls == 0
    assert orphan_rows(store) == 0
    reliability.add(trials=len(ids), faults=len(ids), lost=0,
                    diverged_at=", ".join(map(str, at)))
    assert all(math.isfinite(k) and k > 1 for k in at)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_checkpoint_write_errors_name_the_directory(tmp_path):
    """A failed checkpoint write leaves no partial file and names its directory"""
    from dm_core.checkpoints import CHECKPOINT_NAME
    from dm_core.checkpoints import write_atomically as _write_atomically

    full = tmp_path / "run"
    full.mkdir()
    (full / (CHECKPOINT_NAME + ".tmp")).symlink_to("/dev/full")
    with pytest.raises(OSError) as err:
        _write_atomically({"w": torch.zeros(4096)}, full)
    assert err.value.errno == errno.ENOSPC and str(full) in str(err.value)
    assert list(full.iterdir()) == []


# ---------------------------------------------------------------- f: frozen workers

class Died(BaseException):
    """A worker process dying at a known point, like kill -9: nothing after it runs."""


def dies_after_checkpoint(store: Store, at_least: int) -> Store:
    """``store`` whose worker dies right after a checkpoint ≥ ``at_least`` was committed."""
    real = store.write_batch

    def write_batch(run_id, attempt, *args, checkpoint=None, **kwargs):
        real(run_id, attempt, *args, checkpoint=checkpoint, **kwargs)
        if checkpoint is not None and checkpoint.iteration >= at_least:
            raise Died(f"after its checkpoint at {checkpoint.iteration}")

    store.write_batch = write_batch
    return store


def in_thread(w: Worker) -> threading.Thread:
    """Run a worker in a thread; a ``Died`` worker just ends, anything else is kept for the
    test to see (``thread.error``)."""
    def run():
        try:
            thread.processed = w.run()
        except Died:
            thread.died = True
        except BaseException as err:  # noqa: BLE001 - the test asserts on it
            thread.error = err

    thread = threading.Thread(target=run, daemon=True)
    thread.processed, thread.died, thread.error = None, False, None
    thread.start()
    return thread


def frozen_before_resuming(w: Worker) -> tuple[threading.Event, threading.Event]:
    """Freeze ``w`` between its claim and its resume (``prepare``), as SIGSTOP would: no
    heartbeat thread runs yet, so its claim goes stale. Returns (frozen, thaw) events."""
    frozen, thaw = threading.Event(), threading.Event()
    prepare = w.prepare

    def frozen_prepare(run):
        frozen.set()
        assert thaw.wait(timeout=300), "the test never thawed the worker"
        return prepare(run)

    w.prepare = frozen_prepare
    return frozen, thaw


def wait_until_stale(store: Store, run_id: int, stale_after: float) -> None:
    """Until the run's heartbeat is older than ``stale_after`` by the database's clock (then a
    reaper started now re-queues it on its first pass)."""
    def stale() -> bool:
        beat = store.get_run(run_id).heartbeat_at
        return beat is not None and (store.db_now() - beat).total_seconds() > stale_after + 0.1

    wait_for(stale, timeout=120, every=0.1, what=f"run {run_id} to go stale")


def kill_after_checkpoint(db_url: str, artifacts: Path, run_id: int, at: int) -> None:
    """Worker 1 trains the run and dies right after its checkpoint at ``at`` is committed."""
    first = in_process_worker(dies_after_checkpoint(Store(db_url, artifacts), at),
                              flush_every=0.0)  # the checkpoint commits the moment it exists
    thread = in_thread(first)
    thread.join(timeout=300)
    assert thread.died and thread.error is None, thread.error
    info = Store(db_url, artifacts).get_run(run_id)
    assert (info.status, info.attempt, info.checkpoint_iteration) == (RunStatus.RUNNING, 1, at)


def test_a_frozen_worker_never_deletes_the_new_owners_rows(db_url, tmp_path, caplog, reliability):
    """A worker frozen between claim and resume wakes after another finished the run: it drops it"""
    artifacts = tmp_path / "artifacts"
    store = Store(db_url, artifacts)
    total, every = 300, 50
    [run_id] = store.submit([cfg("frozen", iterations=total, eval_every=every)],
                            max_attempts=5).run_ids
    kill_after_checkpoint(db_url, artifacts, run_id, at=100)

    # Worker B re-queues the dead worker's run, claims it (attempt 2) and freezes before it
    # resumes: its claim goes stale in turn.
    wait_until_stale(store, run_id, 0.5)
    b = in_process_worker(Store(db_url, artifacts), stale_after=0.5)
    frozen, thaw = frozen_before_resuming(b)
    b_thread = in_thread(b)
    assert frozen.wait(timeout=120)
    assert store.get_run(run_id).attempt == 2
    # Worker C re-queues B's run (attempt 3), resumes it from the checkpoint at 100 (and
    # removes that file once its own newer checkpoint is recorded) and finishes it.
    wait_until_stale(store, run_id, 0.5)
    c = in_process_worker(Store(db_url, artifacts), stale_after=0.5)
    c_thread = in_thread(c)
    c_thread.join(timeout=300)
    assert c_thread.processed == 1 and c_thread.error is None, c_thread.error
    done = store.get_run(run_id)
    assert (done.status, done.attempt) == (RunStatus.SUCCEEDED, 3)
    assert exactly_once(store, run_id, total, every)

    # B wakes: the checkpoint it was to resume from is gone. Whatever it does, it must not
    # touch the run it no longer holds.
    with caplog.at_level(logging.WARNING, logger="dm.worker"):
        thaw.set()
        b_thread.join(timeout=300)
    assert b_thread.error is None and b_thread.processed == 1, b_thread.error
    lost = 0 if exactly_once(store, run_id, total, every) else 1
    reliability.add(trials=1, faults=2, lost=lost)
    assert lost == 0, stored_iterations(store, run_id)["scalars"][:5]
    assert store.get_run(run_id) == done  # not a field changed
    assert [c["attempt"] for c in store.claims(run_id)] == [1, 2, 3]
    assert f"run {run_id}: dropped: run {run_id} is no longer held by this worker" in caplog.text


def test_a_run_deleted_while_its_worker_is_frozen_is_dropped(db_url, tmp_path, caplog,
                                                            reliability):
    """A run deleted while its worker is frozen: the worker drops it and trains the next one"""
    artifacts = tmp_path / "artifacts"
    store = Store(db_url, artifacts)
    [gone] = store.submit([cfg("deleted")]).run_ids
    w = in_process_worker(Store(db_url, artifacts), stale_after=0.5)
    frozen, thaw = frozen_before_resuming(w)
    thread = in_thread(w)
    assert frozen.wait(timeout=120)
    # Its claim goes stale, a reaper re-queues the run, and the user deletes it.
    wait_for(lambda: store.requeue_stale(0.5) == [gone], timeout=60, what="the re-queue")
    store.delete(gone)
    [after] = store.submit([cfg("after")]).run_ids
    with caplog.at_level(logging.WARNING, logger="dm.worker"):
        thaw.set()
        thread.join(timeout=300)
    reliability.add(trials=1, faults=1, lost=0)
    assert thread.error is None, repr(thread.error)  # no RunNotFound: the worker kept serving
    assert thread.processed == 2
    assert f"run {gone}: dropped: run {gone} is no longer held by this worker (it was deleted)" \
        in caplog.text
    assert store.get_run(after).status == RunStatus.SUCCEEDED
    assert not store.run_dir(gone).exists()  # nothing of the deleted run written back
    assert orphan_rows(store) == 0


def test_a_deleted_sqlite_database_is_not_recreated(tmp_path, reliability):
    """A deleted SQLite file: dm runs/show/cancel fail naming it and create nothing"""
    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(json.dumps(tiny()))
    path = tmp_path / "dm.sqlite"
    url = f"sqlite:///{path}"
    assert cli(url, "submit", str(config_file)).exit_code == 0  # submit creates the database
    Store(url).dispose()
    for leftover in (path, path.with_name("dm.sqlite-wal"), path.with_name("dm.sqlite-shm")):
        leftover.unlink(missing_ok=True)  # the user deletes the database
    refused = 0
    for args in (["runs"], ["runs", "--json"], ["show", "1"], ["cancel", "1"], ["retry", "1"],
                 ["export", "1"], ["delete", "1"]):
        result = cli(url, *args)
        assert result.exit_code == 1, (args, result.output)
        assert f"no database at {path}" in result.output and "nothing was created" in \
            result.output, (args, result.output)
        assert not path.exists(), args  # not silently recreated empty (ids from 1 again)
        refused += 1
    with pytest.raises(StoreError, match="no database at"):
        Store(url, create=False).list_runs()
    reliability.add(trials=refused, faults=1, lost=0)
    # Commands that start something create it, as on a first start.
    assert cli(url, "submit", str(config_file)).exit_code == 0 and path.is_file()


def test_a_finished_run_keeps_only_its_recorded_checkpoint(tmp_path, reliability):
    """A run resumed after a killed attempt keeps only its recorded checkpoint once finished"""
    url = f"sqlite:///{tmp_path / 'dm.sqlite'}"
    artifacts = tmp_path / "artifacts"
    store = Store(url, artifacts)
    [run_id] = store.submit([cfg("tidy", iterations=100, eval_every=20)]).run_ids
    kill_after_checkpoint(url, artifacts, run_id, at=40)
    left_behind = sorted(p for p in store.run_dir(run_id).rglob("*") if p.is_file())
    assert left_behind  # the killed attempt's checkpoints
    wait_until_stale(store, run_id, 0.5)
    in_process_worker(store, stale_after=0.5).run()
    info = store.get_run(run_id)
    assert (info.status, info.attempt, info.checkpoint_iteration) == (RunStatus.SUCCEEDED, 2, 100)
    files = sorted(p for p in store.run_dir(run_id).rglob("*") if p.is_file())
    reliability.add(trials=1, faults=1, lost=0, files_left_by_the_killed_attempt=len(left_behind))
    assert files == [Path(info.checkpoint_path)]
    assert exactly_once(store, run_id, 100, 20)


# ---------------------------------------------------------------- g: frozen lock holders

def start_frozen(script: str, *args: str) -> subprocess.Popen:
    """Run ``script`` in a process that freezes itself (SIGSTOP) at a known point, and return
    once it is frozen."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-c", script, *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status = os.waitpid(proc.pid, os.WUNTRACED)  # returns when it stops (or dies)
    assert os.WIFSTOPPED(status), proc.communicate(timeout=60)
    return proc


def thaw(proc: subprocess.Popen) -> tuple[int, str, str]:
    """SIGCONT a frozen process and wait for it to finish: (exit code, stdout, stderr)."""
    os.kill(proc.pid, signal.SIGCONT)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def in_time(action, seconds: float):
    """``action()`` in a thread; fails if it has not returned after ``seconds`` (a generous
    bound: the point is that it returns at all, not how fast)."""
    box: dict = {}

    def run():
        try:
            box["value"] = action()
        except BaseException as err:  # noqa: BLE001 - re-raised below
            box["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still waiting after {seconds:g} s"
    if "error" in box:
        raise box["error"]
    return box["value"]


SQLITE_LOCK_HOLDER = r"""
import os, signal, sys
from sqlalchemy import update
from dm_store import Store
from dm_store.models import RUNS

store = Store(sys.argv[1])
with store.session_scope() as s:
    s.execute(update(RUNS).values(cancel_requested=False))  # BEGIN IMMEDIATE: the write lock
    os.kill(os.getpid(), signal.SIGSTOP)  # frozen while it holds it
print("committed")
"""


def test_sqlite_frozen_lock_holder_stalls_neither_reads_nor_workers(tmp_path, monkeypatch, caplog,
                                                                    reliability):
    """SQLite: a process frozen holding the write lock; dm runs answers, a new dm worker waits"""
    import dm_store.database as database

    monkeypatch.setattr(database, "SQLITE_BUSY_TIMEOUT_S", 0.5)  # this process's lock waits
    url, artifacts = f"sqlite:///{tmp_path / 'dm.sqlite'}", tmp_path / "artifacts"
    store = Store(url, artifacts)
    [run_id] = store.submit([cfg("after-the-freeze")]).run_ids
    store.dispose()
    holder = start_frozen(SQLITE_LOCK_HOLDER, url)
    worker: dict = {}
    try:
        # Read-only commands in new processes (a new Store: the schema check) answer at once.
        listed = cli(url, "runs", "--json")
        assert listed.exit_code == 0, listed.output
        assert [r["id"] for r in json.loads(listed.stdout)] == [run_id]
        shown = cli(url, "show", str(run_id))
        assert shown.exit_code == 0 and "queued" in shown.output, shown.output
        # A new worker cannot claim while the lock is held: it waits and retries, and trains
        # the run once the holder lets go -- it does not exit with "database is locked".
        thread = threading.Thread(target=lambda: worker.update(result=cli(
            url, "worker", "--exit-when-idle", "--max-outage", "600", "--poll", "0.1",
            "--device", "cpu", "--artifacts", str(artifacts))), daemon=True)
        with caplog.at_level(logging.WARNING, logger="dm.worker"):
            thread.start()
            wait_for(lambda: caplog.text.count("could not claim a run") >= 2
                     or not thread.is_alive(), timeout=120, what="the worker's retries")
            assert thread.is_alive(), worker["result"].output
            assert "database is locked" in caplog.text
            code, out, err = thaw(holder)
            assert code == 0 and "committed" in out, err
            thread.join(timeout=300)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=60)
    reliability.add(trials=3, faults=1, lost=0)
    assert not thread.is_alive()
    assert worker["result"].exit_code == 0, worker["result"].output
    assert store.get_run(run_id).status == RunStatus.SUCCEEDED


@contextmanager
def lock_held_elsewhere(store: Store, run_id: int):
    """Another connection holds the lock that a write of run ``run_id`` needs, until the block
    ends: SQLite's write lock (BEGIN IMMEDIATE on the file), or on PostgreSQL the run's row
    (SELECT … FOR UPDATE in an open transaction)."""
    if store.dialect == "sqlite":
        holder = sqlite3.connect(store.url.removeprefix("sqlite:///"), isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        return
    import psycopg
    from sqlalchemy.engine import make_url

    libpq = (make_url(store.url).set(drivername="postgresql", query={})  # libpq's own URL
             .render_as_string(hide_password=False))
    with psycopg.connect(libpq) as holder:
        holder.execute("SELECT id FROM runs WHERE id = %s FOR UPDATE", (run_id,))
        try:
            yield
        finally:
            holder.rollback()


def test_a_writer_behind_a_held_lock_gives_up_naming_what_held_it(db_url, tmp_path, monkeypatch,
                                                                   reliability):
    """dm cancel behind another connection's lock gives up at its deadline naming the database,
    what held it and where to look -- not a bare "database is locked" -- and changes nothing."""
    if db_url.startswith("sqlite"):
        monkeypatch.setenv("DM_SQLITE_LOCK_WAIT_S", "2")  # the deadline, short for the test
        url = db_url
    else:
        from sqlalchemy.engine import make_url

        url = (make_url(db_url).update_query_dict({"options": "-c lock_timeout=1s"})
               .render_as_string(hide_password=False))
    store = Store(url, tmp_path / "artifacts")
    [run_id] = store.submit([cfg("behind-a-lock")]).run_ids
    with lock_held_elsewhere(store, run_id), pytest.raises(StoreUnavailable) as caught:
        store.cancel(run_id)
    message = str(caught.value)
    if store.dialect == "sqlite":
        path = store.url.removeprefix("sqlite:///")
        assert f"the SQLite database {path} is locked by another process or connection" in message
        assert f"fuser -v {path}" in message and "DM_SQLITE_LOCK_WAIT_S" in message
    else:
        assert store.masked_url in message and "another connection held a lock" in message
        assert "lock_timeout" in message and "pg_stat_activity" in message
    assert store.get_run(run_id).status == RunStatus.QUEUED  # nothing was written
    assert store.cancel(run_id).status == RunStatus.CANCELLED  # and it goes through once free
    reliability.add(trials=1, faults=1, lost=0)


def test_a_sqlite_writer_says_that_it_waits_and_goes_on_once_the_lock_is_free(tmp_path, caplog,
                                                                             monkeypatch):
    """Behind a held write lock a writer says (logger dm.store) that it waits, for which file
    and for what, keeps trying to its deadline, and succeeds once the holder lets go."""
    monkeypatch.setenv("DM_SQLITE_LOCK_WAIT_S", "600")  # far past the moment the holder lets go
    store = Store(f"sqlite:///{tmp_path / 'dm.sqlite'}", tmp_path / "artifacts")
    [run_id] = store.submit([cfg("waits")]).run_ids
    outcome: dict = {}

    def cancel() -> None:
        try:
            outcome["info"] = store.cancel(run_id)
        except BaseException as err:  # noqa: BLE001 - asserted below
            outcome["error"] = err

    writer = threading.Thread(target=cancel, daemon=True)
    with caplog.at_level(logging.WARNING, logger="dm.store"), \
            lock_held_elsewhere(store, run_id):
        writer.start()
        wait_for(lambda: "waiting for the write lock" in caplog.text or not writer.is_alive(),
                 timeout=120, what="the writer's notice that it waits")
        assert writer.is_alive(), outcome
        notice = next(r.getMessage() for r in caplog.records
                      if "waiting for the write lock" in r.getMessage())
        assert f"the SQLite database {tmp_path / 'dm.sqlite'}" in notice
        assert "another process or connection holds it" in notice and "600 s" in notice
        assert store.get_run(run_id).status == RunStatus.QUEUED  # readers are not held up
    writer.join(timeout=120)
    assert not writer.is_alive() and "error" not in outcome, outcome
    assert outcome["info"].status == RunStatus.CANCELLED


@pytest.mark.slow
def test_dm_cancel_behind_a_locked_sqlite_database_says_so_on_stderr(tmp_path):
    """The command a user types: while it waits it says so on stderr, then fails in one line
    naming the file and what to do (exit 1)."""
    url = f"sqlite:///{tmp_path / 'dm.sqlite'}"
    store = Store(url)
    [run_id] = store.submit([cfg("cli")]).run_ids
    env = dict(os.environ, DM_SQLITE_LOCK_WAIT_S="5", OMP_NUM_THREADS="1", COLUMNS="500")
    with lock_held_elsewhere(store, run_id):
        done = subprocess.run([sys.executable, "-m", "studio.cli", "cancel", str(run_id),
                               "--db", url], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=300)
    path = tmp_path / "dm.sqlite"
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert f"dm: waiting for the write lock of the SQLite database {path}: another process or " \
           "connection holds it" in done.stderr
    assert f"error: the SQLite database {path} is locked by another process or connection" \
           in done.stderr
    assert store.get_run(run_id).status == RunStatus.QUEUED


POSTGRES_FROZEN_WORKER = r"""
import os, signal, sys
from sqlalchemy import event
import dm_store.database
from dm_store import Store, StoreError

# The store's own setting, shortened (default 10 s) so that the test is short.
dm_store.database.PG_IDLE_IN_TRANSACTION_TIMEOUT_S = float(sys.argv[2])
store = Store(sys.argv[1])
run = store.claim("frozen-worker", "cpu")


def freeze(conn, cursor, statement, *args):
    if statement.lstrip().upper().startswith("UPDATE RUNS"):
        os.kill(os.getpid(), signal.SIGSTOP)  # frozen inside the heartbeat: the row is locked


event.listen(store.engine, "after_cursor_execute", freeze)
try:
    store.heartbeat(run.id, "frozen-worker", run.attempt)
    print("committed")
except StoreError as err:
    print(f"cut off: {err}")
"""


@pytest.mark.slow
@pytest.mark.postgres
def test_postgres_cuts_off_a_worker_frozen_in_a_transaction(postgres_url, tmp_path, reliability):
    """PostgreSQL: a worker frozen inside a transaction is cut off; reaper and dm cancel go on"""
    from dm_store.testing import fresh_database

    with fresh_database(postgres_url) as url:
        store = Store(url, tmp_path)
        [run_id] = store.submit([cfg("held")], max_attempts=5).run_ids
        holders = [start_frozen(POSTGRES_FROZEN_WORKER, url, "1.0")]
        try:
            # The reaper does not wait behind the frozen transaction (it skips locked rows);
            # once the server has cut the frozen session off, the run is stale: re-queued.
            in_time(lambda: wait_for(lambda: store.requeue_stale(0.5) == [run_id], timeout=60,
                                     every=0.2, what="the re-queue"), 90)
            info = store.get_run(run_id)
            assert (info.status, info.attempt) == (RunStatus.QUEUED, 2)
            code, out, err = thaw(holders[0])
            assert code == 0 and out.startswith("cut off"), (out, err)

            # Frozen again (attempt 2), holding the row: dm cancel waits at most until the
            # server cuts the holder off, then asks for the cancel.
            holders.append(start_frozen(POSTGRES_FROZEN_WORKER, url, "1.0"))
            result = in_time(lambda: cli(url, "cancel", str(run_id)), 90)
            assert result.exit_code == 0 and "cancel requested" in result.output, result.output
            assert store.get_run(run_id).cancel_requested
            code, out, err = thaw(holders[1])
            assert code == 0 and out.startswith("cut off"), (out, err)
        finally:
            for holder in holders:
                if holder.poll() is None:
                    holder.kill()
                    holder.wait(timeout=60)
            store.dispose()
        reliability.add(trials=2, faults=2, lost=0)


# ---------------------------------------------------------------- h: disks that fill up

class FillingFile:
    """A file on a disk with ``room`` bytes left: the write that passes it writes what fits,
    then fails with ENOSPC (as a real disk does: torch's serialiser then reports
    ``RuntimeError: … unexpected pos …``, with the OSError only as its context)."""

    def __init__(self, fh, room: int) -> None:
        self._fh, self._room = fh, room

    def write(self, data) -> int:
        data = bytes(data)
        if len(data) > self._room:
            self._fh.write(data[:self._room])
            self._room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._room -= len(data)
        return self._fh.write(data)

    def __getattr__(self, name):
        return getattr(self._fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._fh.close()


def disk_fills_at_checkpoint(monkeypatch, number: int, room: int = 500) -> list[str]:
    """From the ``number``-th checkpoint on (1-based), the disk has ``room`` bytes left when
    the training loop writes its checkpoint file. Returns the files opened for writing."""
    import builtins

    import dm_core.checkpoints

    opened: list[str] = []

    def open_on_a_filling_disk(path, mode="r", *args, **kwargs):
        fh = builtins.open(path, mode, *args, **kwargs)
        if "w" not in mode:
            return fh
        opened.append(str(path))
        return FillingFile(fh, room) if len(opened) >= number else fh

    monkeypatch.setattr(dm_core.checkpoints, "open", open_on_a_filling_disk, raising=False)
    return opened


def test_checkpoint_write_on_a_full_disk_raises_the_os_error(tmp_path, monkeypatch):
    """torch's serialiser reports a write that hit a full disk as ``RuntimeError: …
    unexpected pos …``; the checkpoint writer raises the OSError behind it (ENOSPC, naming
    the directory) and leaves no partial file."""
    from dm_core.checkpoints import write_atomically

    disk_fills_at_checkpoint(monkeypatch, 1)
    with pytest.raises(OSError) as err:
        write_atomically({"w": torch.zeros(4096)}, tmp_path)
    assert err.value.errno == errno.ENOSPC
    assert str(err.value) == (f"[Errno {errno.ENOSPC}] cannot write a checkpoint in {tmp_path}: "
                              f"{os.strerror(errno.ENOSPC)}")
    assert isinstance(err.value.__cause__, RuntimeError)  # torch's own report, kept as cause
    assert list(tmp_path.iterdir()) == []


def test_disk_full_mid_checkpoint_says_no_space_left(db_url, tmp_path, monkeypatch, reliability):
    """The disk fills up in the middle of a checkpoint: "No space left", no .tmp left behind"""
    total, every = 60, 20
    store = Store(db_url, tmp_path / "artifacts")
    for n in (1, 2):
        opened = disk_fills_at_checkpoint(monkeypatch, n)
        [run_id] = store.submit([cfg(f"fills-{n}", iterations=total, eval_every=every)]).run_ids
        in_process_worker(store).run()
        assert len(opened) == n, opened  # the loop wrote its checkpoints through open()
        assert_consistent_after_failure(store, run_id, "No space left on device")
        info = store.get_run(run_id)
        assert info.error.startswith("OSError: [Errno 28] cannot write a checkpoint in "
                                     f"{store.run_dir(run_id) / 'attempt-1'}"), info.error
        assert info.iteration == n * every
        assert info.checkpoint_iteration == (every if n == 2 else None)
        assert list(store.run_dir(run_id).rglob("*.tmp")) == []  # the partial file is gone
        monkeypatch.undo()
    reliability.add(trials=2, faults=2, lost=0)


def fill_database_disk(store: Store) -> dict:
    """While ``state["full"]``, every write through ``store``'s connections fails the way its
    backend's do on a full disk (SQLite: SQLITE_FULL; PostgreSQL: SQLSTATE 53100, disk_full);
    reads still work (as they do on a full disk)."""
    from sqlalchemy import event

    if store.dialect == "sqlite":
        def full() -> Exception:
            return sqlite3.OperationalError("database or disk is full")
    else:
        import psycopg

        def full() -> Exception:
            return psycopg.errors.DiskFull('could not extend file "base/16384/16390": No space '
                                           "left on device")

    state = {"full": False, "refused": 0}

    def refuse(cursor, statement, parameters, context):
        if state["full"] and statement.lstrip().split(None, 1)[0].upper() in (
                "INSERT", "UPDATE", "DELETE"):
            state["refused"] += 1
            raise full()

    event.listen(store.engine, "do_execute", refuse)
    event.listen(store.engine, "do_executemany", refuse)
    return state


def test_a_full_database_disk_is_not_an_outage(db_url):
    """SQLite's SQLITE_FULL and PostgreSQL's disk_full are DatabaseFull, which no outage
    backoff retries (it is not StoreUnavailable), and the message names the full disk"""
    from dm_store import DatabaseFull

    store = Store(db_url)
    [run_id] = store.submit([cfg("full")]).run_ids
    disk = fill_database_disk(store)
    disk["full"] = True
    calls = []

    def cancel():
        calls.append(1)
        return store.cancel(run_id)

    with pytest.raises(DatabaseFull) as err:
        retrying(cancel, "cancel", Backoff(first=0.01, give_up_after=30.0))
    assert not isinstance(err.value, StoreUnavailable) and calls == [1]
    assert str(err.value).startswith(f"the disk holding the database {store.masked_url} is full (")
    assert "nothing can be written there until space is freed on it" in str(err.value)
    disk["full"] = False
    assert store.cancel(run_id).status == RunStatus.CANCELLED
    store.dispose()


def test_a_full_database_disk_pauses_the_run_until_space_is_freed(db_url, tmp_path, caplog,
                                                                  reliability):
    """The database's disk fills mid-run: the run pauses -- no outage retries, no attempt
    used -- and goes on once space is freed, every iteration stored once"""
    total, every = 300, 100
    store = Store(db_url, tmp_path / "artifacts")
    [run_id] = store.submit([cfg("full", iterations=total, eval_every=every)],
                            max_attempts=1).run_ids
    own = Store(db_url, tmp_path / "artifacts")  # the worker's engine: its disk fills up
    disk = fill_database_disk(own)
    real_write, writes = own.write_batch, []

    def write_batch(*args, **kwargs):
        writes.append(1)
        if len(writes) == 3:  # the disk fills up at the run's third metrics write
            disk["full"] = True
        return real_write(*args, **kwargs)

    own.write_batch = write_batch
    max_outage = 0.5
    # Flushes every 100 events on a simulated clock: the third write comes long before the
    # run's end, on any machine.
    w = in_process_worker(own, max_outage=max_outage, space_poll=0.05, flush_every=0.5,
                          clock=TickingClock(0.005))
    with caplog.at_level(logging.WARNING, logger="dm.worker"):
        thread = in_thread(w)
        try:
            wait_for(lambda: "Training is paused" in caplog.text, timeout=120, what="the pause")
            paused_at, refused = time.monotonic(), disk["refused"]
            # Paused for several times max_outage, through several refused tries: an outage
            # would have been given up by now (and the run failed: max_attempts is 1).
            wait_for(lambda: time.monotonic() - paused_at > 4 * max_outage
                     and disk["refused"] >= refused + 5, timeout=120, what="a long pause")
            during = store.get_run(run_id)
            disk["full"] = False  # space freed
            thread.join(timeout=300)
        finally:
            w.stop()
            thread.join(timeout=120)
    info = store.get_run(run_id)
    lost = 0 if exactly_once(store, run_id, total, every) else 1
    reliability.add(trials=1, faults=disk["refused"], lost=lost)
    assert thread.error is None and thread.processed == 1, thread.error
    assert (during.status, during.attempt, during.finished_at) == (RunStatus.RUNNING, 1, None)
    assert "giving up" not in caplog.text and "handed back" not in caplog.text
    assert f"run {run_id}: the disk holding the database {own.masked_url} is full" in caplog.text
    assert "space freed on the database's disk" in caplog.text
    assert (info.status, info.attempt, info.error) == (RunStatus.SUCCEEDED, 1, None)
    assert [c["attempt"] for c in store.claims(run_id)] == [1]
    assert lost == 0, stored_iterations(store, run_id)


def test_sqlite_disk_full_is_reported_as_the_cause(tmp_path, caplog, reliability):
    """SQLite's disk fills between a claim and the run's start: the run is handed back naming
    the full disk, its attempt kept, never "stopped sending heartbeats", and trained once space
    is freed"""
    url = f"sqlite:///{tmp_path / 'dm.sqlite'}"
    store = Store(url, tmp_path / "artifacts")
    [run_id] = store.submit([cfg("full", iterations=60, eval_every=20)], max_attempts=1).run_ids
    own = Store(url, tmp_path / "artifacts")  # the worker's engine: its disk fills up
    disk = fill_database_disk(own)
    real_truncate = own.truncate_after

    def truncate_after(*args, **kwargs):
        if not disk["refused"]:
            disk["full"] = True  # right after the claim: preparing the run fails
        return real_truncate(*args, **kwargs)

    own.truncate_after = truncate_after
    w = in_process_worker(own, exit_when_idle=False, stale_after=1.0, max_outage=1.0)
    with caplog.at_level(logging.WARNING, logger="dm.worker"):
        thread = in_thread(w)
        try:
            wait_for(lambda: "could not record disk_full" in caplog.text, timeout=120,
                     what="the hand-back to wait for space")
            # Every write fails meanwhile -- heartbeats, the reaper, the hand-back -- for
            # longer than stale_after and max_outage.
            wait_for(lambda: disk["refused"] >= 10, timeout=120, what="refused writes")
            disk["full"] = False  # space freed
            info = wait_for(lambda: (i := store.get_run(run_id)).status == RunStatus.SUCCEEDED
                            and i, timeout=120, what="the run to succeed")
        finally:
            w.stop()
            thread.join(timeout=120)
    reliability.add(trials=1, faults=disk["refused"], lost=0)
    assert thread.error is None, thread.error
    assert f"run {run_id}: handed back, its attempt kept: the disk holding the database " \
        f"{own.masked_url} is full (database or disk is full)" in caplog.text
    assert "stopped sending heartbeats" not in caplog.text
    assert info.attempt == 1 and [c["attempt"] for c in store.claims(run_id)] == [1, 1]
    assert exactly_once(store, run_id, 60, 20)


# ---------------------------------------------------------------- i: errors after a takeover

def test_an_error_after_the_run_was_taken_over_is_not_its_failure(db_url, tmp_path, caplog,
                                                                  monkeypatch, reliability):
    """The fence refused a worker's run (another worker took it over and removed the old
    attempt's files), then its loop failed writing a checkpoint: the run is dropped, not logged
    as failed"""
    from sqlalchemy import update

    import workers.sink
    from dm_store import artifacts as run_files

    artifacts = tmp_path / "artifacts"
    store = Store(db_url, artifacts)
    [run_id] = store.submit([cfg("taken", iterations=200, eval_every=50)], max_attempts=5).run_ids
    w = in_process_worker(Store(db_url, artifacts))
    real_pin, taken = workers.sink.pin_checkpoint, []

    def pin_after_a_takeover(path, iteration):
        if iteration == 100:
            # Meanwhile the run was re-queued and claimed by another worker (attempt 2), which
            # removed the files of the attempts before it; this worker's heartbeat learns it.
            with store.session_scope() as s:
                s.execute(update(RUNS).where(RUNS.c.id == run_id)
                          .values(status="queued", worker_id=None, attempt=2))
            taken.append(store.claim("other-worker", "cpu"))
            run_files.remove_files(store.run_dir(run_id))
            wait_for(lambda: w._heartbeat.lost, timeout=60, what="the fence to refuse")
        return real_pin(path, iteration)  # the loop's checkpoint.pt is gone: FileNotFoundError

    monkeypatch.setattr(workers.sink, "pin_checkpoint", pin_after_a_takeover)
    with caplog.at_level(logging.INFO, logger="dm.worker"):
        assert w.run() == 1
    reliability.add(trials=1, faults=1, lost=0)
    [other] = taken
    info = store.get_run(run_id)
    assert (info.status, info.attempt, info.worker_id) == (RunStatus.RUNNING, 2, "other-worker")
    assert other.attempt == 2 and [c["attempt"] for c in store.claims(run_id)] == [1, 2]
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], errors  # no "run 1 failed" for an error that is not the run's
    dropped = [r.getMessage() for r in caplog.records
               if r.getMessage().startswith(f"run {run_id}: dropped: ")]
    assert len(dropped) == 1 and dropped[0].startswith(
        f"run {run_id}: dropped: run {run_id} is no longer held by this worker (it is running, "
        "attempt 2, worker other-worker); what the loop raised after that is not the run's "
        "failure: FileNotFoundError"), dropped


# ---------------------------------------------------------------- j: a database replaced

def blocked_after_first_write(store: Store) -> tuple[threading.Event, threading.Event]:
    """``store``'s first metrics write commits, then its caller waits until the test says go
    on (as if the worker was slow right then). Returns (written, go_on)."""
    written, go_on = threading.Event(), threading.Event()
    real = store.write_batch

    def write_batch(*args, **kwargs):
        real(*args, **kwargs)
        if not written.is_set():
            written.set()
            assert go_on.wait(timeout=300), "the test never let the worker go on"

    store.write_batch = write_batch
    return written, go_on


def drop_and_create_again(url: str) -> None:
    """The database at ``url`` deleted and an empty one put at the same place: the SQLite file
    (with its -wal and -shm) removed; the PostgreSQL database dropped (its sessions ended) and
    created again under the same name."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = Path(parsed.database)
        for leftover in (path, path.with_name(path.name + "-wal"),
                         path.with_name(path.name + "-shm")):
            leftover.unlink(missing_ok=True)
        return
    import psycopg

    with psycopg.connect(host=parsed.host, port=parsed.port, user=parsed.username,
                         dbname="postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{parsed.database}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{parsed.database}"')


def assert_untouched(store: Store, run_id: int) -> None:
    """The run is as it was submitted: queued, never claimed, nothing stored for it."""
    info = store.get_run(run_id)
    assert (info.status, info.attempt, info.worker_id) == (RunStatus.QUEUED, 1, None), info
    assert store.claims(run_id) == []
    assert stored_iterations(store, run_id) == {"scalars": [], "histograms": [], "evals": []}


def test_a_database_created_again_under_a_worker_stops_it(db_url, tmp_path, caplog, reliability):
    """The database deleted (dropped) and created again by dm submit under a training worker:
    the worker writes nothing more, claims nothing of the new one (whose run 1 is another run)
    and stops naming why"""
    from dm_store import DatabaseReplaced
    from dm_store.database import sqlite_file

    artifacts = tmp_path / "artifacts"
    store = Store(db_url, artifacts)
    [old_run] = store.submit([cfg("old", iterations=200, eval_every=50)]).run_ids
    own = Store(db_url, artifacts)
    written, go_on = blocked_after_first_write(own)
    w = in_process_worker(own)
    with caplog.at_level(logging.WARNING, logger="dm.worker"):
        thread = in_thread(w)
        assert written.wait(timeout=120)
        store.dispose()
        drop_and_create_again(db_url)
        config_file = tmp_path / "new.yaml"
        config_file.write_text(json.dumps(tiny("new")))
        assert cli(db_url, "submit", str(config_file)).exit_code == 0  # ids start again at 1
        go_on.set()
        thread.join(timeout=300)
    new = Store(db_url, artifacts)
    [new_run] = [r.id for r in new.list_runs()]
    reliability.add(trials=1, faults=1, lost=0)
    assert new_run == old_run == 1
    assert isinstance(thread.error, DatabaseReplaced), repr(thread.error)
    message = str(thread.error)
    if new.dialect == "sqlite":  # the worker's open file was deleted (a new one may be there)
        assert message.startswith(f"the SQLite database {sqlite_file(db_url)} was "), message
    else:
        assert message.startswith(f"the database {new.masked_url} is not the one this process "
                                  "started with (database identity "), message
    assert f"worker {w.worker_id}: stopping: {message}" in caplog.text
    assert_untouched(new, new_run)


def test_a_backup_moved_over_a_live_sqlite_database_stops_its_worker(tmp_path, caplog,
                                                                    reliability):
    """A backup of the same database (same identity) moved over the live SQLite file: the
    worker notices the file was replaced, writes nothing into either, and stops"""
    from dm_store import DatabaseReplaced

    path, backup = tmp_path / "dm.sqlite", tmp_path / "backup.sqlite"
    url, artifacts = f"sqlite:///{path}", tmp_path / "artifacts"
    store = Store(url, artifacts)
    [run_id] = store.submit([cfg("live", iterations=200, eval_every=50)]).run_ids
    with sqlite3.connect(path) as live, sqlite3.connect(backup) as copy:
        live.backup(copy)  # taken before any worker claimed the run
    own = Store(url, artifacts)
    written, go_on = blocked_after_first_write(own)
    w = in_process_worker(own)
    with caplog.at_level(logging.WARNING, logger="dm.worker"):
        thread = in_thread(w)
        assert written.wait(timeout=120)
        store.dispose()
        for leftover in (path.with_name("dm.sqlite-wal"), path.with_name("dm.sqlite-shm")):
            leftover.unlink(missing_ok=True)
        os.replace(backup, path)  # the backup restored over the live database
        go_on.set()
        thread.join(timeout=300)
    restored = Store(url, artifacts)
    reliability.add(trials=1, faults=1, lost=0)
    assert isinstance(thread.error, DatabaseReplaced), repr(thread.error)
    assert str(thread.error).startswith(f"the SQLite database {path} was replaced by another "
                                        "file (a new database, or a backup moved over it)")
    assert_untouched(restored, run_id)
