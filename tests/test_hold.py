"""``Worker(hold_at=k)`` (workers.hold): each run is held after iteration k, every row up to
k stored and none after, its heartbeat going on, until SIGCONT (or ``release``), a stop or a
cancel. The tests wait for states (the stored iteration, the hold count), never for a
duration, so that they do not depend on how fast the machine trains."""

from __future__ import annotations

import multiprocessing
import os
import signal

import pytest
from test_workers import cfg, iterations, run_in_thread, wait_for, worker

from dm_store import RunStatus, Store
from workers import Worker
from workers.hold import IterationHold

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'dm.sqlite'}", tmp_path / "artifacts")
    yield s
    s.dispose()


def test_hold_at_must_be_a_positive_iteration():
    for bad in (0, -3, 1.5, True, "10", (5, 0), ()):
        with pytest.raises(ValueError, match=r"hold_at: an iteration >= 1"):
            IterationHold(bad)


def test_each_of_several_holds_takes_a_release_of_its_own(store):
    [run_id] = store.submit([cfg("held", iterations=120, eval_every=40)]).run_ids
    w = worker(store, hold_at=(30, 31, 70))
    thread = run_in_thread(w)
    wait_for(lambda: w.hold.held == 1, timeout=120, what="the first hold")
    assert store.get_run(run_id).iteration == 30
    w.hold.release()
    wait_for(lambda: w.hold.held == 2, timeout=120, what="the second hold")
    assert store.get_run(run_id).iteration == 31  # the next iteration: a hold of its own
    w.hold.release()
    wait_for(lambda: w.hold.held == 3, timeout=120, what="the third hold")
    held = store.get_run(run_id)
    assert (held.status, held.iteration) == (RunStatus.RUNNING, 70)
    assert iterations(store, run_id) == list(range(1, 71))
    w.hold.release()
    thread.join(timeout=120)
    assert not thread.is_alive()
    assert store.get_run(run_id).status == RunStatus.SUCCEEDED and w.hold.held == 3


def test_a_held_run_stays_at_its_iteration_until_released(store):
    k = 37
    [run_id] = store.submit([cfg("held", iterations=200, eval_every=50)]).run_ids
    w = worker(store, hold_at=k)
    thread = run_in_thread(w)
    wait_for(lambda: w.hold.held == 1, timeout=120, what="the hold")
    held = store.get_run(run_id)
    # Every row up to k is stored (flushed before holding), none after.
    assert (held.status, held.iteration) == (RunStatus.RUNNING, k)
    assert iterations(store, run_id) == list(range(1, k + 1))
    beat = held.heartbeat_at
    # The heartbeat goes on while held (no reaper may take the run away): a state to wait for.
    wait_for(lambda: store.get_run(run_id).heartbeat_at > beat, timeout=60, what="a heartbeat")
    assert store.get_run(run_id).iteration == k and thread.is_alive()
    w.hold.release()
    thread.join(timeout=120)
    assert not thread.is_alive()
    done = store.get_run(run_id)
    assert (done.status, done.iteration, done.attempt) == (RunStatus.SUCCEEDED, 200, 1)
    assert iterations(store, run_id) == list(range(1, 201))
    assert w.hold.held == 1


def test_a_cancel_ends_a_hold(store):
    [run_id] = store.submit([cfg("held", iterations=200, eval_every=50)]).run_ids
    w = worker(store, hold_at=20)
    thread = run_in_thread(w)
    wait_for(lambda: w.hold.held == 1, timeout=120, what="the hold")
    store.cancel(run_id)
    thread.join(timeout=120)
    assert not thread.is_alive()
    info = store.get_run(run_id)
    assert (info.status, info.iteration) == (RunStatus.CANCELLED, 20)


def _held_worker(url: str, artifacts: str, hold_at: int) -> None:
    Worker(Store(url, artifacts), device="cpu", poll=0.1, exit_when_idle=True,
           artifacts_dir=artifacts, heartbeat_every=0.2, hold_at=hold_at).run()


def test_sigcont_releases_a_held_worker_process(store):
    """The release signal, in a worker process of its own (handlers live in the main thread)."""
    [run_id] = store.submit([cfg("held", iterations=120, eval_every=40)]).run_ids
    store.dispose()  # no open connection crosses the fork
    proc = multiprocessing.get_context("fork").Process(
        target=_held_worker, args=(store.url, str(store.artifacts_dir), 50), daemon=True)
    proc.start()
    try:
        wait_for(lambda: store.get_run(run_id).iteration == 50, timeout=120, what="the hold")
        assert proc.is_alive() and store.get_run(run_id).status == RunStatus.RUNNING
        os.kill(proc.pid, signal.SIGCONT)
        proc.join(timeout=120)
        assert proc.exitcode == 0
    finally:
        if proc.is_alive():
            proc.kill()
            proc.join(timeout=30)
    done = store.get_run(run_id)
    assert (done.status, done.iteration) == (RunStatus.SUCCEEDED, 120)
    assert iterations(store, run_id) == list(range(1, 121))
