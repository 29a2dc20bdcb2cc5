"""The background worker: claims queued runs and trains them on the device it owns.

    dm worker                                  # forever, on cuda if visible else cpu
    dm worker --device cuda:1 --db postgresql+psycopg://dm:PASSWORD@db/dm
    dm worker --exit-when-idle                 # burst mode: drain the queue, then exit

One flat loop of small named steps (after rq and procrastinate)::

    while not stopping:
        reap_stale()        # runs whose worker stopped heartbeating: re-queue or fail them
        claim()             # the oldest queued run, atomically
        process(run)        # prepare (truncate after its checkpoint) → train → settle

While a run trains, a background thread (``Heartbeat``) sends a heartbeat every few seconds
(database time), reads ``cancel_requested`` every second, and reaps stale runs too (so a dead
worker's run is re-queued even when every other worker is busy); the loop polls
``should_stop`` every iteration.

How a run ends:

- finished → ``succeeded`` with its summary.
- diverged (``TrainingDiverged``) → ``failed`` with the message; metrics kept.
- any other exception → ``failed`` at once with the traceback's last line (a bad config, a
  missing dataset or a bug fails the same way every time: retrying would only repeat it;
  ``dm retry`` re-queues it after a fix). Attempts are consumed only by lost workers.
- cancel requested → the loop checkpoints and stops → ``cancelled``, metrics kept.
- first SIGTERM/SIGINT (warm stop) → the loop checkpoints and stops → the run goes back to
  ``queued`` WITHOUT consuming an attempt, and the worker exits. An idle worker exits at once.
- second signal (cold stop) → the worker exits immediately; its run stays ``running`` until
  another worker's reaper sees no heartbeat for ``stale_after`` s and re-queues it from its
  last checkpoint (consuming an attempt).
- the worker dies (kill -9, power loss) → the same reaper path; after ``max_attempts`` lost
  workers the run is ``failed``.
- the database is unreachable (``StoreUnavailable``: a server restart, a lost connection)
  → every database call is retried with exponential backoff and a log line per try
  (``workers.backoff``). Training goes on meanwhile and its metrics wait in the sink. After
  ``max_outage`` seconds (default 60) the worker gives up on the run: it is handed back
  (attempt consumed) if possible, else left to the reaper. An idle worker keeps polling, ever
  more slowly (at most every ``max_backoff`` s); in burst mode it exits once ``max_outage``
  has passed.
- the run was taken away (re-queued while this worker was frozen) → ``LostClaim``: the
  worker drops it and writes nothing more.

Checkpoints live in ``artifacts_dir/run-<id>/attempt-<n>/`` (``run-<id>/retry-<r>/attempt-<n>/``
after ``r`` retries, see ``attempt_dir``); the recorded one is pinned as
``checkpoint-<iteration>.pt`` (see ``workers.sink``).
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dm_core.events import TrainingDiverged, TrainingInterrupted
from dm_core.store import ClaimedRun, LostClaim, Store, StoreError
from workers.backoff import Backoff, retrying
from workers.sink import StoreSink

log = logging.getLogger("dm.worker")

DEFAULT_ARTIFACTS = "./var/artifacts"


def default_worker_id() -> str:
    """``host-pid-random``: unique per worker process, readable in ``dm runs``."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"


def attempt_dir(artifacts_dir: Path, run: ClaimedRun) -> Path:
    """Where this attempt writes its checkpoints: its own folder, so that a worker of an
    older attempt that has not noticed yet that it lost the run (frozen, then woken) never
    overwrites the current attempt's files. A retry starts the attempts over at 1, hence
    the retry number in the path."""
    run_dir = artifacts_dir / f"run-{run.id}"
    if run.retries:
        run_dir = run_dir / f"retry-{run.retries}"
    return run_dir / f"attempt-{run.attempt}"


def resolve_worker_device(device: str) -> str:
    """``auto`` → ``cuda`` when a GPU is visible, else ``cpu``; others are checked."""
    from dm_core.devices import resolve_device

    resolved = resolve_device(device)
    return str(resolved) if device == "auto" else device


# How often a training worker looks for a cancel between heartbeats: a cancelled run stops
# within about this long (plus one iteration) however far apart heartbeats are.
CANCEL_POLL_S = 1.0


class Heartbeat:
    """A daemon thread that, while a run trains, records a heartbeat every ``every`` seconds
    (database time), reads ``cancel_requested`` every ``CANCEL_POLL_S`` in between, and after
    each successful beat calls ``reap`` (the worker's ``reap_stale``, which limits itself to
    once every ``stale_after / 2``): busy workers re-queue dead workers' runs too, so a run
    whose worker died does not wait for some worker to become idle.

    ``cancel_requested`` and ``lost`` are plain flags the training loop's ``should_stop``
    reads (no locking needed: each is only ever set to True).
    """

    def __init__(self, store: Store, run: ClaimedRun, every: float,
                 reap: Callable[[], Any] | None = None) -> None:
        self.store, self.run, self.every, self.reap = store, run, every, reap
        self.cancel_requested = False
        self.lost = False
        self._failing_since: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat-run-{run.id}",
                                        daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        tick = min(self.every, CANCEL_POLL_S)
        next_beat = time.monotonic() + self.every
        while not self._stop.wait(tick):
            if time.monotonic() < next_beat - 0.01:  # (a wait may end a hair early)
                self._poll_cancel()
                continue
            next_beat = time.monotonic() + self.every
            beat = self._beat()
            if self.lost:
                return
            if beat and self.reap is not None:
                self.reap()  # right after our own beat: our own run is never the stale one

    def _beat(self) -> bool:
        """One heartbeat; False when it failed (``lost`` set if the run was taken away)."""
        try:
            cancel = self.store.heartbeat(self.run.id, self.run.worker_id, self.run.attempt)
        except LostClaim as err:
            log.warning("run %d: %s", self.run.id, err)
            self.lost = True
            return False
        except StoreError as err:  # the reaper decides if it lasts too long
            if self._failing_since is None:  # one line per outage, not one per beat
                self._failing_since = time.monotonic()
                log.warning("run %d: heartbeat failed (%s); retrying every %g s",
                            self.run.id, err, self.every)
            return False
        except Exception:  # never let the thread die silently
            log.exception("run %d: heartbeat failed", self.run.id)
            return False
        if self._failing_since is not None:
            log.warning("run %d: heartbeat restored after %.1f s", self.run.id,
                        time.monotonic() - self._failing_since)
            self._failing_since = None
        self._note_cancel(cancel)
        return True

    def _poll_cancel(self) -> None:
        """The cheap read between beats; an error is left to the next beat to report."""
        if self.cancel_requested or self._failing_since is not None:
            return
        try:
            self._note_cancel(self.store.cancel_requested(self.run.id))
        except StoreError:
            pass
        except Exception:
            log.exception("run %d: could not read cancel_requested", self.run.id)

    def _note_cancel(self, cancel: bool) -> None:
        if cancel and not self.cancel_requested:
            log.info("run %d: cancel requested", self.run.id)
            self.cancel_requested = True


@dataclass
class Outcome:
    """How training ended, before it is recorded (``settle``)."""

    kind: str  # succeeded | failed | cancelled | requeue | lost | db_error
    summary: dict[str, Any] | None = None
    error: str | None = None
    diverged_at: int | None = None  # a diverged run: where, and the figures behind it
    divergence: dict[str, Any] | None = None


# The reasons ``should_stop`` gives the loop (they come back in TrainingInterrupted.reason).
STOP_LOST = "this worker no longer holds the run"
STOP_CANCEL = "cancel requested"
STOP_SHUTDOWN = "the worker is shutting down"


class Worker:
    """Claims and trains queued runs until stopped; see the module docstring.

    ``stale_after``: seconds without a heartbeat before a running run counts as lost.
    ``exit_when_idle``: burst mode -- exit as soon as no run can be claimed.
    ``max_outage``: seconds of database unavailability a run survives (then it is given up).
    ``max_backoff``: the longest wait between two tries while the database is unavailable.
    """

    def __init__(self, store: Store | str | None, device: str = "auto", poll: float = 1.0,
                 stale_after: float = 30.0, exit_when_idle: bool = False,
                 artifacts_dir: str | Path | None = DEFAULT_ARTIFACTS, *,
                 heartbeat_every: float | None = None, flush_every: float = 1.0,
                 worker_id: str | None = None, max_outage: float = 60.0,
                 max_backoff: float = 8.0) -> None:
        self.store = store if isinstance(store, Store) else Store(store)
        self.device = resolve_worker_device(device)
        self.poll = float(poll)
        self.stale_after = float(stale_after)
        self.exit_when_idle = exit_when_idle
        self.artifacts_dir = Path(artifacts_dir or DEFAULT_ARTIFACTS).expanduser().resolve()
        self.heartbeat_every = heartbeat_every or max(0.2, min(5.0, self.stale_after / 4))
        self.flush_every = flush_every
        self.worker_id = worker_id or default_worker_id()
        self.max_outage = float(max_outage)
        self.backoff = Backoff(first=min(0.25, self.poll), cap=float(max_backoff),
                               give_up_after=self.max_outage)
        self.processed = 0
        self._claim_failures = 0
        self._claim_failing_since: float | None = None
        self._signals = 0
        self._heartbeat: Heartbeat | None = None
        self._next_reap = 0.0

    # -- the loop ----------------------------------------------------------------------

    def run(self) -> int:
        """Work until a signal (or, in burst mode, an empty queue). Returns runs processed."""
        log.info("worker %s on %s; database %s; artifacts %s", self.worker_id, self.device,
                 self.store.masked_url, self.artifacts_dir)
        with self._signal_handlers():
            while not self.stopping:
                self.reap_stale()
                try:
                    run = self.claim()
                except StoreError as err:
                    self._wait_for_database(err)
                    continue
                if run is None:
                    if self.exit_when_idle:
                        log.info("worker %s: queue empty; exiting (burst mode)", self.worker_id)
                        break
                    self._idle(self.poll)
                    continue
                self.process(run)
        log.info("worker %s: stopped after %d run(s)", self.worker_id, self.processed)
        return self.processed

    @property
    def stopping(self) -> bool:
        return self._signals > 0

    def stop(self) -> None:
        """Ask for a warm stop (what the first SIGTERM does): finish with a checkpoint, exit."""
        self._signals = max(self._signals, 1)

    def reap_stale(self) -> list[int]:
        """Re-queue (or fail) runs whose worker stopped heartbeating; at most every
        ``stale_after / 2`` seconds. Called between runs by the loop and during a run by the
        heartbeat thread (never both at once: the thread lives only while a run trains).
        Database errors are logged, not raised."""
        now = time.monotonic()
        if now < self._next_reap:
            return []
        self._next_reap = now + max(self.poll, self.stale_after / 2)
        try:
            return self.store.requeue_stale(self.stale_after)
        except StoreError as err:
            log.warning("worker %s: could not reap stale runs: %s", self.worker_id, err)
            return []

    def claim(self) -> ClaimedRun | None:
        """The oldest queued run, claimed for this worker, or None when the queue is empty.
        Raises ``StoreError`` when the database cannot say (an outage is not an empty queue)."""
        run = self.store.claim(self.worker_id, self.device)
        if self._claim_failures:
            log.warning("worker %s: database reachable again after %.1f s", self.worker_id,
                        time.monotonic() - self._claim_failing_since)
            self._claim_failures, self._claim_failing_since = 0, None
        if run is not None:
            log.info("run %d (%s): claimed by %s, attempt %d/%d%s", run.id, run.name,
                     self.worker_id, run.attempt, run.max_attempts,
                     f", resuming from iteration {run.checkpoint_iteration}"
                     if run.checkpoint_iteration else "")
        return run

    def process(self, run: ClaimedRun) -> Outcome:
        """Prepare, train and settle one claimed run."""
        self.processed += 1
        try:
            config, resume_from, sink = self.prepare(run)
        except LostClaim as err:
            log.warning("run %d: %s", run.id, err)
            return Outcome("lost")
        except StoreError as err:
            outcome = Outcome("db_error", error=str(err))
        except Exception as err:  # an invalid config: fails the same way on every attempt
            outcome = Outcome("failed", error=f"invalid run: {_last_line(err)}")
        else:
            outcome = self.train(run, config, resume_from, sink)
            self.settle(run, outcome, sink)
            return outcome
        self.settle(run, outcome, None)
        return outcome

    def prepare(self, run: ClaimedRun) -> tuple[Any, str | None, StoreSink]:
        """Validate the stored config for this device; resume from the recorded checkpoint
        (deleting every row after it) or start over (deleting rows of a lost attempt)."""
        from dm_core.config import RunConfig

        config = RunConfig.model_validate(run.config).model_copy(update={"device": self.device})
        resume_from = run.checkpoint_path if run.checkpoint_iteration else None
        if resume_from and not Path(resume_from).is_file():
            log.warning("run %d: checkpoint %s is missing (artifacts not shared?); starting over",
                        run.id, resume_from)
            resume_from = None
        keep = run.checkpoint_iteration if resume_from else 0
        retrying(lambda: self.store.truncate_after(run.id, keep),
                 f"run {run.id}: clear rows after iteration {keep}", self.backoff)
        sink = StoreSink(self.store, run.id, run.attempt, run.worker_id,
                         flush_every=self.flush_every, max_outage=self.max_outage,
                         previous_checkpoint=resume_from)
        return config, resume_from, sink

    def train(self, run: ClaimedRun, config: Any, resume_from: str | None,
              sink: StoreSink) -> Outcome:
        """Train with the sink and the heartbeat; turn how it ended into an ``Outcome``."""
        from dm_core.train import train  # torch: imported only where training happens

        checkpoint_dir = attempt_dir(self.artifacts_dir, run)
        self._heartbeat = Heartbeat(self.store, run, self.heartbeat_every,
                                    reap=self.reap_stale).start()
        try:
            summary = train(config, on_event=sink, resume_from=resume_from,
                            checkpoint_dir=checkpoint_dir, should_stop=self.should_stop)
            return Outcome("succeeded", summary=summary.to_dict())
        except TrainingInterrupted as stop:
            kind = {STOP_LOST: "lost", STOP_CANCEL: "cancelled"}.get(stop.reason, "requeue")
            return Outcome(kind, error=str(stop) if kind == "cancelled" else None)
        except TrainingDiverged as err:
            return Outcome("failed", error=str(err), diverged_at=err.iteration,
                           divergence=err.figures)
        except LostClaim as err:
            log.warning("run %d: %s", run.id, err)
            return Outcome("lost")
        except StoreError as err:
            return Outcome("db_error", error=str(err))
        except Exception as err:
            log.error("run %d failed:\n%s", run.id, traceback.format_exc())
            return Outcome("failed", error=_last_line(err))
        finally:
            self._heartbeat.stop()
            self._heartbeat = None

    def should_stop(self) -> str | None:
        """Polled by the loop every iteration: only flag reads, no I/O."""
        beat = self._heartbeat
        if beat is not None and beat.lost:
            return STOP_LOST
        if beat is not None and beat.cancel_requested:
            return STOP_CANCEL
        if self.stopping:
            return STOP_SHUTDOWN
        return None

    def settle(self, run: ClaimedRun, outcome: Outcome, sink: StoreSink | None) -> None:
        """Record the outcome: write what is buffered, then one guarded transition. Each step
        rides out a database outage of up to ``max_outage`` s (``retrying``)."""
        store, wid = self.store, run.worker_id

        def retry(action: Callable[[], Any], what: str) -> Any:
            return retrying(action, f"run {run.id}: {what}", self.backoff)

        try:
            if outcome.kind == "lost":
                return
            if outcome.kind == "db_error":
                status = retry(lambda: store.release(run.id, wid, run.attempt,
                                                     consume_attempt=True, error=outcome.error),
                               "hand back")
                log.warning("run %d: database trouble (%s); handed back as %s", run.id,
                            outcome.error, status)
                return
            if sink is not None:
                retry(sink.close, "write the last metrics")
            if outcome.kind == "requeue":
                retry(lambda: store.release(run.id, wid, run.attempt, consume_attempt=False),
                      "re-queue")
                log.info("run %d: checkpointed and re-queued (warm stop)", run.id)
                return
            retry(lambda: store.finish(run.id, wid, outcome.kind, summary=outcome.summary,
                                       error=outcome.error, attempt=run.attempt,
                                       diverged_at=outcome.diverged_at,
                                       divergence=outcome.divergence),
                  f"record {outcome.kind}")
            log.info("run %d: %s%s", run.id, outcome.kind,
                     f" ({outcome.error})" if outcome.error else "")
        except LostClaim as err:
            log.warning("run %d: %s", run.id, err)
        except StoreError as err:
            log.error("run %d: could not record %s: %s (another worker's reaper will re-queue "
                      "it)", run.id, outcome.kind, err)

    # -- signals and waiting ------------------------------------------------------------------

    @contextmanager
    def _signal_handlers(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield  # signals reach only the main thread; use stop() from elsewhere
            return
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def _on_signal(self, signum: int, frame: Any) -> None:  # noqa: ARG002
        self._signals += 1
        name = signal.Signals(signum).name
        if self._signals == 1:
            log.warning("worker %s: %s: warm stop (checkpointing the current run; "
                        "send it again to stop at once)", self.worker_id, name)
            return
        log.warning("worker %s: %s again: cold stop", self.worker_id, name)
        raise SystemExit(1)

    def _wait_for_database(self, err: StoreError) -> None:
        """The queue could not be read: wait ever longer (``backoff``) before the next try.
        In burst mode, give up (raise) once the database has been away for ``max_outage``."""
        now = time.monotonic()
        if self._claim_failing_since is None:
            self._claim_failing_since = now
        self._claim_failures += 1
        down_for = now - self._claim_failing_since
        if self.exit_when_idle and down_for > self.max_outage:
            log.error("worker %s: database unavailable for %.0f s; giving up (burst mode): %s",
                      self.worker_id, down_for, err)
            raise err
        wait = max(self.poll, self.backoff.delay(self._claim_failures))
        log.warning("worker %s: could not claim a run (%s); retry %d in %.1f s", self.worker_id,
                    err, self._claim_failures, wait)
        self._idle(wait)

    def _idle(self, seconds: float, sleep: Callable[[float], None] = time.sleep) -> None:
        deadline = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < deadline:
            sleep(min(0.1, max(0.0, deadline - time.monotonic())))


def _last_line(err: BaseException) -> str:
    """``ValueError: message`` -- the traceback's last line."""
    return traceback.format_exception_only(err)[-1].strip()


def run_worker(store: Store | str | None, **kwargs: Any) -> int:
    """Build a ``Worker`` and run it (handy for ``multiprocessing``)."""
    return Worker(store, **kwargs).run()


__all__ = ["Heartbeat", "Outcome", "Worker", "attempt_dir", "default_worker_id",
           "resolve_worker_device", "run_worker"]
