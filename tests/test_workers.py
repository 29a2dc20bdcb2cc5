"""Workers, the store sink and the queue commands, with real training on digits (CPU).

- The sink on its own (a fake store, a fake clock): batching, checkpoint + rows in one
  transaction, resume, outages.
- ``Worker`` in this process: success, divergence, errors, cancel (also with the default
  5 s heartbeat), warm stop, a worker that lost its run, a busy worker re-queueing a dead
  worker's run, max_attempts.
- ``dm worker`` subprocesses (slow): exactly-once with 4 workers and 40 runs; kill -9 while
  rows past the checkpoint are stored, and resume bit for bit; SIGTERM re-queues without
  consuming an attempt. Resumed runs are compared with one uninterrupted run trained
  in-process once for the module (``uninterrupted``).
- ``dm up --workers 2`` (slow): runs trained, a kill -9'd worker replaced, SIGTERM stops all.
- ``dm submit/runs/show/cancel/retry/delete/export/db`` through Typer's CliRunner.
- Downsampled reads never return more rows than asked for.

Everything that touches a database runs on SQLite and PostgreSQL (``db_url``), except the
``dm up`` test (SQLite only: a dashboard and two workers take ~20 s to start, and they are
the same ``dm worker`` processes tested on both backends above).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from held_worker import held_worker_command
from typer.testing import CliRunner

from dm_core.config import parse_config
from dm_core.events import (
    CheckpointEvent,
    EvalEvent,
    HistogramEvent,
    ResumeEvent,
    ScalarsEvent,
    StartEvent,
)
from dm_store import LostClaim, RunStatus, Store, StoreError, StoreUnavailable
from dm_store.models import SCALAR_COLUMNS
from studio.cli import app
from workers import StoreSink, Worker, pin_checkpoint
from workers.signals import StopSignals

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny(name: str = "tiny", **overrides) -> dict:
    base = {"name": name, "seed": 5,
            "dataset": {"name": "digits", "noise": {"kind": "symmetric", "rate": 0.4}},
            "model": {"name": "mlp", "hidden": [16]},
            "loss": {"name": "dm", "lam": 1.0, "beta": 8.0},
            "iterations": 20, "eval_every": 10, "batch_size": 32, "histogram_bins": 8,
            "device": "cpu"}
    for key, value in overrides.items():
        node = base
        *path, last = key.split("__")
        for p in path:
            node = node.setdefault(p, {})
        node[last] = value
    return base


# Runs that a test interrupts: long and heavy enough (several seconds on an idle machine)
# that the interruption lands mid-run, after the first checkpoint reached the database (the
# sink writes about once a second) and long before the last iteration.
LONG_ITERATIONS = 2000
LONG_RUN = {"iterations": LONG_ITERATIONS, "eval_every": 50, "batch_size": 64,
            "model__hidden": [128, 128]}


def cfg(name: str = "tiny", **overrides):
    return parse_config(tiny(name, **overrides))


@pytest.fixture
def store(db_url, tmp_path):
    s = Store(db_url, tmp_path / "artifacts")
    yield s
    s.dispose()


def worker(store: Store, **kwargs) -> Worker:
    options = {"device": "cpu", "poll": 0.1, "stale_after": 5.0, "exit_when_idle": True,
               "artifacts_dir": store.artifacts_dir, "heartbeat_every": 0.2}
    options.update(kwargs)
    return Worker(store, **options)


def iterations(store: Store, run_id: int) -> list[int]:
    return store.scalars(run_id)["iteration"].tolist()


def wait_for(predicate, timeout: float = 60.0, every: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


# ---------------------------------------------------------------- the sink alone

class FakeStore:
    """Records write_batch calls; can fail on demand."""

    def __init__(self):
        self.writes: list[dict] = []
        self.fail_with: Exception | None = None

    def write_batch(self, run_id, attempt, scalars, histograms, evals, checkpoint=None,
                    start=None, worker_id=None, examples=()):
        if self.fail_with is not None:
            raise self.fail_with
        self.writes.append({"scalars": [e.iteration for e in scalars],
                            "histograms": [e.iteration for e in histograms],
                            "evals": [e.iteration for e in evals],
                            "examples": [e.iteration for e in examples],
                            "checkpoint": checkpoint, "start": start is not None})


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def step(sink: StoreSink, k: int, clock: Clock, dt: float = 0.01) -> None:
    clock.now += dt
    sink(ScalarsEvent(k, {"loss": 1.0}))
    sink(HistogramEvent(k, np.zeros(4, np.int32), np.zeros(4, np.int32)))


def write_checkpoint(directory: Path, content: bytes) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    tmp, path = directory / "checkpoint.pt.tmp", directory / "checkpoint.pt"
    tmp.write_bytes(content)
    os.replace(tmp, path)  # as the training loop does: a new inode every time
    return path


def test_sink_writes_about_once_per_second():
    fake, clock = FakeStore(), Clock()
    sink = StoreSink(fake, 1, 1, "w", clock=clock)
    for k in range(1, 1001):  # 1000 iterations in 10 s
        step(sink, k, clock)
    assert 9 <= len(fake.writes) <= 11  # never one per iteration
    sink.close()
    written = [k for w in fake.writes for k in w["scalars"]]
    assert written == list(range(1, 1001))
    assert [k for w in fake.writes for k in w["histograms"]] == written


def test_sink_records_checkpoint_with_its_rows(tmp_path):
    fake, clock = FakeStore(), Clock()
    previous = tmp_path / "old" / "checkpoint-5.pt"
    previous.parent.mkdir()
    previous.write_bytes(b"resumed from here")
    sink = StoreSink(fake, 1, 1, "w", clock=clock, previous_checkpoint=str(previous))
    for k in range(6, 11):
        step(sink, k, clock, dt=0.5)
    fake.writes.clear()
    sink(EvalEvent(10, {"test_acc": 0.5}))
    sink(CheckpointEvent(10, str(write_checkpoint(tmp_path / "run", b"state at 10"))))
    step(sink, 11, clock, dt=2.0)  # the next batch carries the checkpoint
    [write] = fake.writes
    assert write["checkpoint"].iteration == 10 and write["scalars"][-1] == 11
    assert 10 in write["scalars"] and write["evals"] == [10]
    pinned = Path(write["checkpoint"].path)
    assert pinned.name == "checkpoint-10.pt"
    write_checkpoint(tmp_path / "run", b"state at 20")  # the loop overwrites its file ...
    assert pinned.read_bytes() == b"state at 10"  # ... the recorded one keeps iteration 10
    assert not previous.exists()  # superseded once the new one is recorded

    # Two checkpoints within one batch: only the newest is recorded, the other is deleted.
    for k in (12, 13):
        step(sink, k, clock, dt=0.1)
        sink(CheckpointEvent(k, str(write_checkpoint(tmp_path / "run", f"at {k}".encode()))))
    sink.close()
    assert fake.writes[-1]["checkpoint"].iteration == 13
    assert not (tmp_path / "run" / "checkpoint-12.pt").exists()
    assert not pinned.exists() and (tmp_path / "run" / "checkpoint-13.pt").exists()


def test_sink_start_and_resume_events():
    fake, clock = FakeStore(), Clock()
    sink = StoreSink(fake, 1, 1, "w", clock=clock)
    for k in range(1, 6):
        step(sink, k, clock)
    sink(ResumeEvent(3))  # anything buffered after 3 is void
    start = StartEvent(10, "cpu", 3, 4, 2, 0.0, np.zeros(4, int), np.zeros(4, int),
                       np.zeros(4, bool))
    sink(start)  # written at once
    assert fake.writes[-1]["start"] and fake.writes[-1]["scalars"] == [1, 2, 3]


class CountingStore(FakeStore):
    def __init__(self):
        super().__init__()
        self.tries = 0

    def write_batch(self, *args, **kwargs):
        self.tries += 1
        return super().write_batch(*args, **kwargs)


def test_sink_survives_a_short_outage_but_not_a_lost_claim():
    fake, clock = CountingStore(), Clock()
    sink = StoreSink(fake, 1, 1, "w", clock=clock, max_outage=20.0)
    fake.fail_with = StoreUnavailable("connection refused")
    for k in range(1, 1151):
        step(sink, k, clock)  # 11.5 s of failures: kept and retried ...
    assert fake.tries == 4  # ... at 1, 2, 4 and 8 s: an exponentially growing gap
    fake.fail_with = None
    step(sink, 1151, clock, dt=10.0)
    assert [k for w in fake.writes for k in w["scalars"]] == list(range(1, 1152))
    fake.fail_with = StoreUnavailable("gone")
    with pytest.raises(StoreUnavailable):  # ... but for max_outage seconds at most
        for k in range(1152, 5000):
            step(sink, k, clock)
    fake.fail_with = StoreError("duplicate key")  # not an outage: raised at once
    with pytest.raises(StoreError, match="duplicate"):
        step(sink, 5000, clock, dt=60.0)
    fake.fail_with = LostClaim("taken")
    with pytest.raises(LostClaim):
        sink.close()


def test_pin_checkpoint_copies_without_hard_links(tmp_path, monkeypatch):
    path = write_checkpoint(tmp_path, b"abc")
    monkeypatch.setattr(os, "link", lambda *a: (_ for _ in ()).throw(OSError("no links")))
    pinned = pin_checkpoint(path, 7)
    assert pinned.read_bytes() == b"abc" and pinned.name == "checkpoint-7.pt"


# ---------------------------------------------------------------- the worker, in process

def test_worker_trains_queued_runs(store):
    ids = store.submit([cfg("a"), cfg("b", relabel=True)]).run_ids
    w = worker(store)
    assert w.run() == 2
    a, b = (store.get_run(i) for i in ids)
    assert a.status == b.status == RunStatus.SUCCEEDED
    assert (a.iteration, a.total_iterations, b.iteration, b.total_iterations) == (20, 20, 40, 40)
    assert a.summary["iterations"] == 20 and 0 < a.summary["test_acc_final"] <= 1
    assert a.last_test_acc == pytest.approx(a.summary["test_acc_final"])
    assert a.device == "cpu" and a.worker_id == w.worker_id and a.finished_at >= a.started_at
    assert iterations(store, a.id) == list(range(1, 21))
    assert iterations(store, b.id) == list(range(1, 41))  # relabel continues at 21
    series = store.histograms(a.id)
    assert series.iterations.tolist() == list(range(1, 21)) and series.clean.shape == (20, 8)
    assert store.evals(a.id)["iteration"].tolist() == [10, 20]
    clean, noisy, is_noisy = store.labels(a.id)
    assert np.array_equal(is_noisy, clean != noisy) and 0.3 < is_noisy.mean() < 0.5
    assert store.labels(b.id, phase="relabel") is not None
    assert a.checkpoint_iteration == 20 and Path(a.checkpoint_path).is_file()
    assert Path(a.checkpoint_path).parent == store.run_dir(a.id) / "attempt-1"
    assert [(c["run_id"], c["attempt"]) for c in store.claims()] == [(ids[0], 1), (ids[1], 1)]


def test_divergence_and_errors_fail_the_run_with_a_message(store, monkeypatch):
    diverge, boom, invalid = store.submit([
        cfg("diverge", iterations=100, optimizer__lr=5.0, max_logit=20.0),
        cfg("boom"), cfg("invalid")]).run_ids
    from sqlalchemy import update

    from dm_store.models import RUNS

    with store.session_scope() as s:  # a config this version cannot read any more
        s.execute(update(RUNS).where(RUNS.c.id == invalid)
                  .values(config={**tiny(), "iterations": -5}))

    import dm_core.train

    real_train = dm_core.train.train

    def flaky(config, **kwargs):
        if config.name == "boom":
            raise RuntimeError("CUDA out of memory (simulated)")
        return real_train(config, **kwargs)

    monkeypatch.setattr(dm_core.train, "train", flaky)
    worker(store).run()

    info = store.get_run(diverge)
    assert info.status == RunStatus.FAILED
    assert info.error.startswith("diverged at iteration ") and "logits exploded" in info.error
    at = int(info.error.split()[3].rstrip(":"))
    assert at > 1 and iterations(store, diverge) == list(range(1, at))  # logged: kept
    info = store.get_run(boom)
    assert (info.status, info.error) == (RunStatus.FAILED,
                                         "RuntimeError: CUDA out of memory (simulated)")
    assert info.attempt == 1  # failed at once: a deterministic error would only repeat
    info = store.get_run(invalid)
    assert info.status == RunStatus.FAILED and "iterations" in info.error


def run_in_thread(w: Worker) -> threading.Thread:
    thread = threading.Thread(target=w.run, daemon=True)
    thread.start()
    return thread


def test_cancel_stops_a_running_run_and_keeps_its_metrics(store):
    [run_id] = store.submit([cfg("long", iterations=100_000, eval_every=50)]).run_ids
    thread = run_in_thread(worker(store))
    wait_for(lambda: store.get_run(run_id).iteration > 0, what="first metrics")
    assert store.cancel(run_id).cancel_requested
    thread.join(timeout=120)
    assert not thread.is_alive()
    info = store.get_run(run_id)
    # Stopped by the cancel (a state, not a duration: no machine trains 100,000 steps here).
    assert info.status == RunStatus.CANCELLED and "cancel requested" in info.error
    assert info.iteration < 100_000
    its = iterations(store, run_id)
    assert its == list(range(1, len(its) + 1)) and its[-1] == info.iteration > 0


def test_a_cancel_is_seen_between_heartbeats(store):
    # Heartbeats are seconds apart (every 5 s by default, for stale_after=30); a cancel must not
    # wait for the next one. With heartbeats an hour apart, none falls inside this test: the
    # run can only stop through the heartbeat thread's cheap cancel_requested read between
    # beats (every CANCEL_POLL_S), however fast or slow the machine.
    assert worker(store, heartbeat_every=None, stale_after=30.0).heartbeat_every == 5.0
    [run_id] = store.submit([cfg("long", iterations=100_000, eval_every=50)]).run_ids
    w = worker(store, heartbeat_every=3600.0, stale_after=30.0)
    thread = run_in_thread(w)
    wait_for(lambda: store.get_run(run_id).iteration > 0, what="first metrics")
    result = cli(store.url, "cancel", str(run_id))
    assert result.exit_code == 0 and "cancel requested" in result.output, result.output
    info = wait_for(lambda: (i := store.get_run(run_id)).status == RunStatus.CANCELLED and i,
                    timeout=120, every=0.02, what="the cancel, seen between heartbeats")
    thread.join(timeout=60)
    assert not thread.is_alive()
    its = iterations(store, run_id)
    assert its == list(range(1, len(its) + 1)) and its[-1] == info.iteration > 0  # kept


@pytest.mark.slow  # 4.9-5.3 s on a quiet 2-core machine (a dead worker's heartbeat must go stale)
def test_a_busy_worker_requeues_a_dead_workers_run(store):
    # Every live worker is busy on a long run: a dead worker's run must not wait for one of
    # them to become idle. The busy worker's heartbeat thread reaps it.
    [long_run] = store.submit([cfg("long", iterations=100_000, eval_every=50)]).run_ids
    w = worker(store, exit_when_idle=False, stale_after=2.0)
    thread = run_in_thread(w)
    try:
        wait_for(lambda: store.get_run(long_run).iteration > 0, what="the busy worker")
        [orphan] = store.submit([cfg("orphan")]).run_ids
        assert store.claim("ghost", "cpu").id == orphan  # a worker that then dies
        info = wait_for(lambda: (i := store.get_run(orphan)).status == RunStatus.QUEUED and i,
                        timeout=120, every=0.1, what="the dead worker's run to be re-queued")
        busy = store.get_run(long_run)
        assert (busy.status, busy.worker_id) == (RunStatus.RUNNING, w.worker_id)  # still busy
        assert info.attempt == 2 and "worker ghost stopped sending heartbeats" in info.error
    finally:
        w.stop()
        thread.join(timeout=60)
    assert not thread.is_alive()


def test_warm_stop_requeues_without_an_attempt_and_resumes(store):
    [run_id] = store.submit([cfg("long", iterations=100_000, eval_every=50)]).run_ids
    w = worker(store, exit_when_idle=False)
    thread = run_in_thread(w)
    wait_for(lambda: store.get_run(run_id).iteration > 60, what="some progress")
    w.stop()
    thread.join(timeout=60)
    assert not thread.is_alive()
    info = store.get_run(run_id)
    assert (info.status, info.attempt, info.worker_id) == (RunStatus.QUEUED, 1, None)
    # The stop wrote a checkpoint at the last step, recorded with every row up to it.
    assert info.checkpoint_iteration == info.iteration == len(iterations(store, run_id))

    stopped_at = info.checkpoint_iteration
    thread = run_in_thread(w2 := worker(store, exit_when_idle=False))
    wait_for(lambda: store.get_run(run_id).iteration > stopped_at + 20, what="resumed progress")
    w2.stop()
    thread.join(timeout=60)
    info = store.get_run(run_id)
    assert info.status == RunStatus.QUEUED and info.attempt == 1
    its = iterations(store, run_id)
    assert its == list(range(1, info.checkpoint_iteration + 1))  # no gap, no duplicate
    assert [c["attempt"] for c in store.claims(run_id)] == [1, 1]


def test_a_worker_that_lost_its_run_writes_nothing_more(store):
    [run_id] = store.submit([cfg("long", iterations=1000, eval_every=50)]).run_ids
    # Held at the checkpoint of iteration 50 (workers.hold), so that the re-queue lands while
    # attempt 1 still runs however fast the machine trains; losing the run ends the hold.
    w = worker(store, flush_every=0.2, hold_at=50)
    thread = run_in_thread(w)
    wait_for(lambda: w.hold.held == 1, what="the hold at iteration 50")
    assert store.get_run(run_id).checkpoint_iteration == 50
    # As if this worker had frozen past stale_after: another reaper re-queues its run. (With
    # stale_after=0 a heartbeat committed after the reaper's transaction began is newer than
    # its "now" and rightly not stale: try again.)
    wait_for(lambda: store.requeue_stale(0.0) == [run_id], what="the re-queue")
    thread.join(timeout=180)
    assert not thread.is_alive()
    info = store.get_run(run_id)
    # The same (burst-mode) worker then claimed it again as attempt 2 and finished it.
    assert (info.status, info.attempt) == (RunStatus.SUCCEEDED, 2)
    assert iterations(store, run_id) == list(range(1, 1001))
    assert [c["attempt"] for c in store.claims(run_id)] == [1, 2]


def test_retry_counts_retries_so_no_attempt_is_claimed_twice(store):
    # A retry starts the attempts over at 1 (with a fresh max_attempts); the retry counter
    # tells the new attempt 1 from the old one, in the claims audit and on disk.
    [run_id] = store.submit([cfg("again")]).run_ids
    old = store.claim("w-old", "cpu")
    store.finish(run_id, "w-old", "failed", error="boom", attempt=old.attempt)
    info = store.retry(run_id)
    assert (info.status, info.attempt, info.retries) == (RunStatus.QUEUED, 1, 1)
    assert worker(store).run() == 1
    info = store.get_run(run_id)
    assert (info.status, info.attempt, info.retries) == (RunStatus.SUCCEEDED, 1, 1)
    assert [(c["retry"], c["attempt"]) for c in store.claims(run_id)] == [(0, 1), (1, 1)]
    assert Path(info.checkpoint_path).parent == store.run_dir(run_id) / "retry-1" / "attempt-1"
    assert json.loads(cli(store.url, "show", str(run_id), "--json").stdout)["retries"] == 1
    with pytest.raises(LostClaim):  # the old attempt 1 is not the new one
        store.write_batch(run_id, old.attempt, [ScalarsEvent(1, {"loss": 1.0})],
                          worker_id="w-old")


def test_dm_retry_resumes_from_the_checkpoint_or_starts_over(store, monkeypatch, caplog):
    import dm_core.train

    real_train = dm_core.train.train
    fail_at = {"iteration": 50}

    def failing(config, on_event=None, **kwargs):  # raises once the loop reaches an iteration
        def events(event):
            if isinstance(event, ScalarsEvent) and event.iteration == fail_at["iteration"]:
                raise RuntimeError("boom (simulated)")
            on_event(event)
        return real_train(config, on_event=events, **kwargs)

    monkeypatch.setattr(dm_core.train, "train", failing)
    config = cfg("again", iterations=60, eval_every=20)
    uninterrupted = []
    real_train(config, on_event=lambda e: uninterrupted.append(e.values["loss"])
               if isinstance(e, ScalarsEvent) else None)
    resumed, restarted = store.submit([config, config]).run_ids
    worker(store).run()  # both fail at iteration 50, after their checkpoint at 40
    for run_id in (resumed, restarted):
        info = store.get_run(run_id)
        assert (info.status, info.checkpoint_iteration, info.iteration) == (
            RunStatus.FAILED, 40, 49), info

    result = cli(store.url, "retry", str(resumed), "--resume")
    assert result.exit_code == 0, result.output
    assert f"run {resumed}: queued again, resuming from its checkpoint at iteration 40" \
        in result.output
    result = cli(store.url, "retry", str(restarted), "--from-scratch")
    assert result.exit_code == 0, result.output
    assert f"run {restarted}: queued again from scratch" in result.output
    assert store.get_run(restarted).checkpoint_iteration is None
    assert iterations(store, restarted) == []

    fail_at["iteration"] = None
    with caplog.at_level(logging.INFO, logger="dm.worker"):
        assert worker(store).run() == 2
    claimed = [line for line in caplog.messages if ": claimed by " in line]
    assert "resuming from iteration 40" in claimed[0] and f"run {resumed} " in claimed[0]
    assert "resuming" not in claimed[1] and f"run {restarted} " in claimed[1]
    for run_id in (resumed, restarted):
        info = store.get_run(run_id)
        assert (info.status, info.retries, info.attempt) == (RunStatus.SUCCEEDED, 1, 1)
        assert iterations(store, run_id) == list(range(1, 61))  # no gap, no duplicate
        # Either way the same numbers as one uninterrupted run, bit for bit: the resumed run
        # continued from the checkpoint's state, the other one started over.
        assert np.array_equal(store.scalars(run_id)["loss"].to_numpy(), uninterrupted)
    assert Path(store.get_run(resumed).checkpoint_path).parent == \
        store.run_dir(resumed) / "retry-1" / "attempt-1"


def test_lost_workers_use_up_max_attempts(store):
    [run_id] = store.submit([cfg()], max_attempts=1).run_ids
    assert store.claim("ghost", "cpu").id == run_id  # a worker that then dies
    time.sleep(0.8)
    w = worker(store, stale_after=0.5)
    assert w.run() == 0
    info = store.get_run(run_id)
    assert info.status == RunStatus.FAILED
    assert info.error.startswith("gave up after 1 attempt(s): worker ghost stopped")


def test_signals_warm_then_cold():
    w = Worker.__new__(Worker)
    w.worker_id = "w"
    w.stops = StopSignals(on_warm=w._on_warm, on_cold=w._on_cold)
    w.stops.handle(signal.SIGTERM)
    assert w.stopping and not w.stops.cold
    with pytest.raises(SystemExit):
        w.stops.handle(signal.SIGINT)
    assert w.stops.cold


def test_stop_signals_count_warm_then_cold_and_restore_the_handlers():
    # The helper behind dm worker, dm up and dm train: real signals to this process.
    seen = []
    before = signal.getsignal(signal.SIGTERM)
    with StopSignals((signal.SIGTERM,), on_warm=lambda name: seen.append(("warm", name)),
                     on_cold=lambda name: seen.append(("cold", name))) as stops:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stops.warm and not stops.cold
        os.kill(os.getpid(), signal.SIGTERM)
        assert stops.cold
    assert seen == [("warm", "SIGTERM"), ("cold", "SIGTERM")]
    assert signal.getsignal(signal.SIGTERM) is before
    elsewhere = StopSignals()
    thread = threading.Thread(target=elsewhere.install)  # not the main thread: no handlers
    thread.start()
    thread.join()
    assert signal.getsignal(signal.SIGTERM) is before
    elsewhere.request_warm()
    assert elsewhere.warm and not elsewhere.cold


# ---------------------------------------------------------------- dm worker subprocesses

def start_worker(db_url: str, artifacts: Path, *args: str) -> subprocess.Popen:
    return start_worker_process(
        [sys.executable, "-m", "studio.cli", "worker", "--db", db_url, "--device", "cpu",
         "--artifacts", str(artifacts), "--poll", "0.2", *args], artifacts)


def start_worker_process(command: list[str], artifacts: Path) -> subprocess.Popen:
    """A worker process (``command``) logging to a file beside ``artifacts`` (``worker_logs``)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("DM_DATABASE_URL", None)
    log = open(artifacts.parent / f"worker-{time.monotonic_ns()}.log", "w")  # noqa: SIM115
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def worker_logs(artifacts: Path) -> str:
    return "\n".join(p.read_text() for p in sorted(artifacts.parent.glob("worker-*.log")))


def stop_all(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


@pytest.mark.slow
def test_exactly_once_with_four_workers(db_url, tmp_path):
    store = Store(db_url, tmp_path / "artifacts")
    ids = store.submit([cfg(f"r{i}", seed=i) for i in range(40)]).run_ids
    procs = [start_worker(db_url, store.artifacts_dir, "--exit-when-idle") for _ in range(4)]
    try:
        codes = [p.wait(timeout=180) for p in procs]
    finally:
        stop_all(procs)
    assert codes == [0, 0, 0, 0], worker_logs(store.artifacts_dir)
    runs = store.list_runs()
    assert {r.status for r in runs} == {RunStatus.SUCCEEDED}, worker_logs(store.artifacts_dir)
    claims = store.claims()
    assert sorted(c["run_id"] for c in claims) == ids  # each run claimed exactly once
    assert {c["attempt"] for c in claims} == {1}
    by_run = {r.id: r.worker_id for r in runs}
    assert all(by_run[c["run_id"]] == c["worker_id"] for c in claims)  # no two workers on one
    for run_id in ids:
        assert iterations(store, run_id) == list(range(1, 21))


def same_summary(a: dict, b: dict) -> None:
    a, b = dict(a), dict(b)
    a.pop("seconds"), b.pop("seconds")
    assert a == b


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, one_torch_thread):
    """``LONG_RUN`` trained start to end by an in-process worker, once for the module: what
    every interrupted and resumed run of it must equal bit for bit (CPU, one thread, same
    seed). ``(store, run_id)``."""
    root = tmp_path_factory.mktemp("uninterrupted")
    store = Store(f"sqlite:///{root / 'dm.sqlite'}", root / "artifacts")
    [run_id] = store.submit([cfg("reference", **LONG_RUN)]).run_ids
    worker(store).run()
    assert store.get_run(run_id).status == RunStatus.SUCCEEDED
    yield store, run_id
    store.dispose()


def same_run(store: Store, run_id: int, uninterrupted) -> None:
    """The run's summary and every stored row equal the uninterrupted run's."""
    ref_store, ref_id = uninterrupted
    same_summary(store.get_run(run_id).summary, ref_store.get_run(ref_id).summary)
    pd.testing.assert_frame_equal(store.scalars(run_id), ref_store.scalars(ref_id))
    pd.testing.assert_frame_equal(store.evals(run_id), ref_store.evals(ref_id))
    ours, theirs = store.histograms(run_id, max_rows=None), ref_store.histograms(ref_id, max_rows=None)
    assert np.array_equal(ours.clean, theirs.clean) and np.array_equal(ours.noisy, theirs.noisy)


def past_its_checkpoint(info) -> bool:
    """The database holds rows after the run's recorded checkpoint (a resume must replace
    them), and the checkpoint is a real one."""
    return (info.checkpoint_iteration or 0) >= 50 and info.iteration > info.checkpoint_iteration


def start_held_worker(db_url: str, artifacts: Path, hold_at: int,
                      **options: object) -> subprocess.Popen:
    """A worker process (like ``start_worker``) that holds each run after ``hold_at``, its rows
    stored, until SIGCONT (``Worker(hold_at=...)``; tests/held_worker.py)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("DM_DATABASE_URL", None)
    log = open(artifacts.parent / f"worker-{time.monotonic_ns()}.log", "w")  # noqa: SIM115
    return subprocess.Popen(held_worker_command(db_url, str(artifacts), hold_at, **options),
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


@pytest.mark.slow
def test_kill_9_after_a_checkpoint_resumes_exactly(db_url, tmp_path, uninterrupted):
    store = Store(db_url, tmp_path / "artifacts")
    [crash] = store.submit([cfg("crash", **LONG_RUN)]).run_ids
    # Killed while rows past the recorded checkpoint are stored: the worker holds the run
    # after iteration 75 (every row up to it stored, with the checkpoint of iteration 50),
    # a state the test waits for however fast the machine trains.
    held_at = 75
    proc = start_held_worker(db_url, store.artifacts_dir, held_at, stale_after=2.0)
    try:
        wait_for(lambda: store.get_run(crash).iteration == held_at, timeout=300,
                 what=f"the run held at iteration {held_at}")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        stop_all([proc])
    at_kill = store.get_run(crash)  # what the database held when the worker died
    assert at_kill.status == RunStatus.RUNNING
    assert (at_kill.checkpoint_iteration, at_kill.iteration) == (50, held_at)
    assert past_its_checkpoint(at_kill)
    checkpoint = at_kill.checkpoint_iteration
    assert iterations(store, crash) == list(range(1, at_kill.iteration + 1))

    # Not burst mode: the next worker polls until the dead worker's heartbeat is older than
    # stale_after (database time), re-queues the run and resumes it -- the test waits for
    # the run to finish, not for a duration.
    last = start_worker(db_url, store.artifacts_dir, "--stale-after", "2")
    try:
        wait_for(lambda: store.get_run(crash).status in (RunStatus.SUCCEEDED, RunStatus.FAILED),
                 timeout=300, every=0.2, what="the resumed run to finish")
        last.send_signal(signal.SIGTERM)
        assert last.wait(timeout=60) == 0, worker_logs(store.artifacts_dir)
    finally:
        stop_all([last])
    crashed = store.get_run(crash)
    logs = worker_logs(store.artifacts_dir)
    assert crashed.status == RunStatus.SUCCEEDED, logs
    assert crashed.attempt == 2
    assert [c["attempt"] for c in store.claims(crash)] == [1, 2]
    # Resumed from the checkpoint, not from the last row: iterations checkpoint+1 ..
    # at_kill.iteration were trained again and their rows replaced, each stored once.
    assert f"resuming from iteration {checkpoint}" in logs, logs
    assert iterations(store, crash) == list(range(1, LONG_ITERATIONS + 1))
    same_run(store, crash, uninterrupted)


@pytest.mark.slow
def test_sigterm_requeues_without_an_attempt_and_resumes(db_url, tmp_path, uninterrupted):
    store = Store(db_url, tmp_path / "artifacts")
    [run_id] = store.submit([cfg("stopped", **LONG_RUN)]).run_ids
    # Not burst mode: the signal ends it. Held after iteration 60 (a state, on any machine),
    # where SIGTERM ends the hold and the run stops with a checkpoint.
    first = start_held_worker(db_url, store.artifacts_dir, 60)
    try:
        wait_for(lambda: store.get_run(run_id).iteration == 60, timeout=300,
                 what="the run held at iteration 60")  # a bound for a hung test only
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=60) == 0, worker_logs(store.artifacts_dir)
    finally:
        stop_all([first])
    info = store.get_run(run_id)
    assert (info.status, info.attempt) == (RunStatus.QUEUED, 1), worker_logs(store.artifacts_dir)
    assert info.checkpoint_iteration == info.iteration == 60
    assert "warm stop" in worker_logs(store.artifacts_dir)

    second = start_worker(db_url, store.artifacts_dir, "--exit-when-idle")
    try:
        assert second.wait(timeout=400) == 0, worker_logs(store.artifacts_dir)
    finally:
        stop_all([second])
    info = store.get_run(run_id)
    assert (info.status, info.attempt) == (RunStatus.SUCCEEDED, 1)
    assert [c["attempt"] for c in store.claims(run_id)] == [1, 1]
    assert iterations(store, run_id) == list(range(1, LONG_ITERATIONS + 1))
    same_run(store, run_id, uninterrupted)


# ---------------------------------------------------------------- dm up

def worker_children(parent: int) -> set[int]:
    """Pids of the live ``dm worker`` processes whose parent is ``parent`` (Linux /proc)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            args = (stat.parent / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):  # gone meanwhile
            continue
        if ppid == parent and b"worker" in args:
            found.add(int(stat.parent.name))
    return found


def is_worker_process(pid: int) -> bool:
    try:
        return b"worker" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False


def worker_pid(info) -> int:
    return int(info.worker_id.split("-")[-2])  # host-pid-random


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads worker pids from /proc")
def test_dm_up_workers_train_a_killed_one_is_replaced_and_sigterm_stops_all(tmp_path):
    from dm_store.testing import free_port

    db = f"sqlite:///{tmp_path / 'dm.sqlite'}"
    store = Store(db, tmp_path / "artifacts")
    env = {k: v for k, v in os.environ.items() if k not in ("DM_DATABASE_URL", "DM_PASSWORD")}
    log_path = tmp_path / "up.log"
    with open(log_path, "w") as log:
        up = subprocess.Popen(
            [sys.executable, "-m", "studio.cli", "up", "--workers", "2", "--port",
             str(free_port()), "--db", db, "--artifacts", str(store.artifacts_dir)],
            cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    seen: set[int] = set()
    try:
        # Two tiny runs, one per worker; then a long one keeps the first worker to finish busy.
        *tiny_runs, long_run = store.submit([cfg("up-a", seed=1), cfg("up-b", seed=2),
                                             cfg("up-long", iterations=100_000, eval_every=500)]).run_ids
        wait_for(lambda: all(store.get_run(i).status == RunStatus.SUCCEEDED for i in tiny_runs),
                 timeout=180, every=0.2, what=f"both runs to succeed\n{log_path.read_text()}")
        busy = worker_pid(wait_for(lambda: (i := store.get_run(long_run)).iteration > 0 and i,
                                   timeout=60, what="the long run training"))
        # dm up restarts crashed workers once the dashboard is up (it supervises from then on).
        wait_for(lambda: "DM Studio is running" in log_path.read_text(), timeout=120, every=0.2,
                 what="the dashboard")
        workers = worker_children(up.pid)
        assert len(workers) == 2 and busy in workers, (workers, busy, log_path.read_text())
        seen |= workers

        # kill -9 the idle worker: dm up starts a replacement, the only worker free to take
        # the next run.
        [idle] = workers - {busy}
        os.kill(idle, signal.SIGKILL)
        [replacement] = wait_for(lambda: worker_children(up.pid) - workers, timeout=60,
                                 every=0.2, what="a replacement worker")
        seen.add(replacement)
        [late] = store.submit([cfg("up-late", seed=3)]).run_ids
        info = wait_for(lambda: (i := store.get_run(late)).worker_id and i, timeout=120,
                        every=0.2, what=f"the late run to be claimed\n{log_path.read_text()}")
        assert worker_pid(info) == replacement

        # SIGTERM: every worker checkpoints its run, puts it back in the queue and exits.
        up.send_signal(signal.SIGTERM)
        assert up.wait(timeout=60) == 0, log_path.read_text()
        survivors = [pid for pid in seen if is_worker_process(pid)]
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        for pid in seen:  # never leave a worker behind, even when the test fails
            if is_worker_process(pid):
                os.kill(pid, signal.SIGKILL)
    output = log_path.read_text()
    assert survivors == [], output
    assert f"exited with code {-signal.SIGKILL}; restarting" in output, output
    assert "dm up: stopped." in output, output
    interrupted = store.get_run(long_run)
    assert (interrupted.status, interrupted.attempt) == (RunStatus.QUEUED, 1), output
    assert interrupted.checkpoint_iteration == interrupted.iteration > 0
    assert store.get_run(late).status in (RunStatus.QUEUED, RunStatus.SUCCEEDED)


# ---------------------------------------------------------------- the CLI

def cli(db: str, *args: str, env: dict | None = None):
    return runner.invoke(app, [*args, "--db", db] if db else list(args),
                         env={"COLUMNS": "200", "NO_COLOR": "1", **(env or {})})


@pytest.fixture
def config_file(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(json.dumps(tiny()))
    return path


def test_submit_validates_before_storing_anything(db_url, config_file):
    result = cli(db_url, "submit", str(config_file), "--set", "loss.lam=-1")
    assert result.exit_code == 2
    assert "loss.lam" in result.output and "Traceback" not in result.output
    result = cli(db_url, "submit", str(config_file), "--grid", "optimizer.lr=0.1,-3")
    assert result.exit_code == 2 and "optimizer.lr" in result.output
    result = cli(db_url, "submit", str(config_file), "--set", "nonsense.key=1")
    assert result.exit_code == 2 and "nonsense" in result.output
    assert Store(db_url).list_runs() == []  # nothing queued


def test_submit_grid_queues_one_group(db_url, config_file):
    result = cli(db_url, "submit", str(config_file), "--grid", "loss.lam=0,0.5,1",
                 "--grid", "loss.beta=4,8,12", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert len(out["runs"]) == 9
    runs = Store(db_url).list_runs(group=out["group"])
    assert sorted(r.id for r in runs) == out["runs"]
    assert {(r.config["loss"]["lam"], r.config["loss"]["beta"]) for r in runs} == \
        {(lam, beta) for lam in (0, 0.5, 1) for beta in (4, 8, 12)}
    assert "tiny[loss.lam=0.5,loss.beta=8]" in {r.name for r in runs}
    # --db defaults to DM_DATABASE_URL
    result = cli("", "submit", str(config_file), env={"DM_DATABASE_URL": db_url})
    assert result.exit_code == 0 and "queued 1 run(s)" in result.output


def test_submit_compare_queues_one_run_per_loss(db_url, config_file):
    result = cli(db_url, "submit", str(config_file), "--compare", "cce, gce,dm", "--set", "seed=4", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    runs = sorted(Store(db_url).list_runs(group=out["group"]), key=lambda r: r.id)
    assert [r.name for r in runs] == ["tiny[cce]", "tiny[gce]", "tiny[dm]"]
    assert [r.config["loss"]["name"] for r in runs] == ["cce", "gce", "dm"]
    assert runs[2].config["loss"] == {**tiny()["loss"], "eps": runs[2].config["loss"]["eps"]}  # its own λ, β
    assert runs[1].config["loss"]["q"] == 0.7  # gce's registered default
    assert {r.config["seed"] for r in runs} == {4} and len({json.dumps(r.config["dataset"]) for r in runs}) == 1
    # A bad name queues nothing and names the loss; --compare with --grid is refused.
    for args, needle in ((["--compare", "cce,hinge"], "hinge: loss.name"), (["--compare", ","], "--compare"),
                         (["--compare", "cce", "--grid", "seed=1,2"], "--compare and --grid")):
        result = cli(db_url, "submit", str(config_file), *args)
        assert result.exit_code == 2 and needle in result.output, (args, result.output)
    assert len(Store(db_url).list_runs()) == 3


def test_runs_show_cancel_retry_delete(db_url, config_file):
    cli(db_url, "submit", str(config_file), "--grid", "seed=1,2,3")
    store = Store(db_url)
    run = store.claim("w", "cpu")

    result = cli(db_url, "runs", "--json")
    assert result.exit_code == 0
    listed = json.loads(result.stdout)
    assert [r["id"] for r in listed] == [3, 2, 1]
    assert {"id", "name", "status", "attempt", "iteration"} <= set(listed[0])
    assert [r["id"] for r in json.loads(cli(db_url, "runs", "--json", "--status",
                                             "running").stdout)] == [run.id]
    table = cli(db_url, "runs")
    # The start every listed name shares is said once; each row keeps the part that differs.
    assert table.exit_code == 0 and "names: tiny[" in table.output and "seed=2]" in table.output
    assert "running" in table.output
    assert cli(db_url, "runs", "--status", "bogus").exit_code == 2

    shown = json.loads(cli(db_url, "show", "1", "--json").stdout)
    assert shown["status"] == "running" and shown["config"]["seed"] == 1
    assert "run 1" in cli(db_url, "show", "1").output

    result = cli(db_url, "show", "99")
    assert result.exit_code == 1
    assert result.output.strip() == "error: run 99 does not exist (see `dm runs`)"

    assert "cancelled" in cli(db_url, "cancel", "2").output
    assert "cancel requested" in cli(db_url, "cancel", "1").output
    result = cli(db_url, "cancel", "2")
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1
    result = cli(db_url, "delete", "1")
    assert result.exit_code == 1 and "cancel it first" in result.output
    assert "Traceback" not in result.output
    assert cli(db_url, "retry", "2").exit_code == 0
    assert store.get_run(2).status == RunStatus.QUEUED
    assert "1 of 3 (after 1 retry)" in cli(db_url, "show", "2").output
    assert cli(db_url, "retry", "3").exit_code == 1  # queued: nothing to retry
    assert cli(db_url, "delete", "3").exit_code == 0
    assert [r.id for r in store.list_runs()] == [2, 1]


def test_export_tidy_tables(db_url, config_file, tmp_path, monkeypatch):
    cli(db_url, "submit", str(config_file))
    store = Store(db_url)
    run = store.claim("w", "cpu")
    store.write_batch(run.id, 1, [ScalarsEvent(i, {"loss": 1 / i, "lr": 0.1}) for i in (1, 2, 3)],
                      [HistogramEvent(i, np.arange(4, dtype=np.int32) * i,
                                      np.ones(4, np.int32)) for i in (1, 2, 3)],
                      [EvalEvent(3, {"test_acc": 0.5})])
    monkeypatch.chdir(tmp_path)

    assert cli(db_url, "export", "1", "--what", "scalars").exit_code == 0
    scalars = pd.read_csv(tmp_path / "run-1-scalars.csv")
    assert scalars.columns.tolist() == ["iteration", *SCALAR_COLUMNS]
    assert scalars["iteration"].tolist() == [1, 2, 3]

    result = cli(db_url, "export", "1", "--what", "histograms", "--format", "parquet",
                 "-o", "out/h.parquet")
    assert result.exit_code == 0, result.output
    hist = pd.read_parquet(tmp_path / "out" / "h.parquet")
    assert hist.columns.tolist() == ["iteration", "group", "bin", "p_low", "p_high", "count"]
    assert len(hist) == 3 * 2 * 4
    row = hist[(hist.iteration == 3) & (hist.group == "clean") & (hist.bin == 2)]
    assert row["count"].item() == 6 and row["p_low"].item() == 0.5

    target = tmp_path / "elsewhere" / "e.csv"
    assert cli(db_url, "export", "1", "--what", "evals", "-o", str(target)).exit_code == 0
    assert pd.read_csv(target)["test_acc"].tolist() == [0.5]

    result = cli(db_url, "export", "1", "-o", "../escape.csv")
    assert result.exit_code == 2 and "inside" in result.output
    assert not (tmp_path.parent / "escape.csv").exists()
    result = cli(db_url, "export", "1", "--out-dir", str(tmp_path / "d"), "-o", "x.csv")
    assert result.exit_code == 0 and (tmp_path / "d" / "x.csv").is_file()
    assert cli(db_url, "export", "1", "--what", "weights").exit_code == 2
    assert cli(db_url, "export", "7").exit_code == 1


def test_db_upgrade_and_worker_options(db_url, tmp_path):
    result = cli(db_url, "db", "upgrade")
    assert result.exit_code == 0 and "revision 0005" in result.output
    result = cli("postgresql+psycopg://u:hunter2@127.0.0.1:1/x", "db", "upgrade")
    assert result.exit_code == 1 and "hunter2" not in result.output and "***" in result.output
    result = cli(db_url, "worker", "--device", "cuda:7", "--exit-when-idle")
    if not torch.cuda.is_available():
        assert result.exit_code == 2 and "cuda:7" in result.output
    result = cli(db_url, "worker", "--device", "cpu", "--exit-when-idle", "--poll", "0.1",
                 "--artifacts", str(tmp_path / "a"))
    assert result.exit_code == 0, result.output


def test_db_upgrade_brings_a_0001_database_to_retry_counters(db_url):
    # A database written by the previous version: its runs and claims count as never retried.
    from alembic import command
    from sqlalchemy import text

    from dm_store.database import alembic_config as _alembic_config

    old = Store(db_url, upgrade=False)
    alembic_cfg = _alembic_config()
    with old.engine.begin() as conn:
        alembic_cfg.attributes["connection"] = conn
        command.upgrade(alembic_cfg, "0001")
    with old.engine.begin() as conn:
        conn.execute(text("INSERT INTO runs (name, group_id, status, config, attempt, "
                          "max_attempts, cancel_requested, last_iteration) "
                          "VALUES ('old', 'g', 'failed', '{}', 2, 3, false, 0)"))
        conn.execute(text("INSERT INTO claims (run_id, attempt, worker_id) VALUES (1, 2, 'w')"))
    old.dispose()
    result = cli(db_url, "db", "upgrade")
    assert result.exit_code == 0 and "revision 0005" in result.output, result.output
    store = Store(db_url)
    assert (store.get_run(1).attempt, store.get_run(1).retries) == (2, 0)
    assert [(c["retry"], c["attempt"]) for c in store.claims(1)] == [(0, 2)]
    assert store.retry(1).retries == 1
    store.dispose()


# ---------------------------------------------------------------- downsampled reads

def test_downsampled_reads_never_exceed_the_limit(store):
    # What the monitor and `compare` fetch of a worker's rows: every k-th iteration and the
    # last one. The last one must fit in the limit too (it used to come on top: N + 1 rows).
    [run_id] = store.submit([cfg()]).run_ids
    run = store.claim("w", "cpu")
    n = 300
    store.write_batch(run_id, run.attempt, [ScalarsEvent(i, {"loss": 1.0}) for i in range(1, n + 1)],
                      [HistogramEvent(i, np.ones(4, np.int32), np.zeros(4, np.int32))
                       for i in range(1, n + 1)], worker_id="w")
    assert store.histograms(run_id, start=2, end=11, max_rows=5).iterations.tolist() == \
        [3, 6, 9, 11]
    for start, end in ((1, n), (2, 11), (7, n), (150, 299)):
        for limit in (1, 2, 3, 5, 7, 10, 64, 299):
            got = store.histograms(run_id, start=start, end=end, max_rows=limit).iterations
            assert len(got) <= limit, (start, end, limit, got)
            assert got[-1] == end and len(got) >= min(limit, end - start + 1) // 2
    for after in (0, 1, 57):
        for limit in (1, 2, 5, 64, 299):
            got = store.scalars(run_id, after=after, max_points=limit)["iteration"]
            assert len(got) <= limit and got.iloc[-1] == n, (after, limit, got.tolist())
