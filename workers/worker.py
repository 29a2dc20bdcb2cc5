"""The background worker: claims queued runs and trains them on the device it owns.

    dm worker                                  # forever, on cuda if visible else cpu
    dm worker --device cuda:1 --db postgresql+psycopg://dm:PASSWORD@db/dm
    dm worker --exit-when-idle                 # burst mode: drain the queue, then exit

One flat loop of small named steps (after rq and procrastinate)::

    while not stopping:
        record_unrecorded() # outcomes an outage kept from being recorded: theirs first
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
- any other exception → ``failed`` at once with the traceback's last line -- of the root
  cause when the error wraps an ``OSError`` (a checkpoint that hit a full disk says "No space
  left on device", not the serialiser's follow-up error). A bad config, a missing dataset or a
  bug fails the same way every time: retrying would only repeat it; ``dm retry`` re-queues it
  after a fix. Attempts are consumed only by lost workers. Unless the run was no longer this
  worker's when it raised (the fence refused it, say, and the new owner removed the files the
  loop was writing): then the error is a consequence, not the run's failure, and the run is
  dropped (below).
- cancel requested → the loop checkpoints and stops → ``cancelled``, metrics kept.
- first SIGTERM/SIGINT (warm stop) → the loop checkpoints and stops → the run goes back to
  ``queued`` WITHOUT consuming an attempt, and the worker exits. An idle worker exits at once.
- second signal (cold stop) → the worker exits immediately; its run stays ``running`` until
  another worker's reaper sees no heartbeat for ``stale_after`` s and re-queues it from its
  last checkpoint (consuming an attempt).
- the worker dies (kill -9, power loss) → the same reaper path; after ``max_attempts`` lost
  workers the run is ``failed``.
- the database is unreachable (``StoreUnavailable``: a server restart, a lost connection, a
  full disk) → every database call is retried with exponential backoff and a log line per try
  (``workers.backoff``). Training goes on meanwhile and its metrics wait in the sink. After
  ``max_outage`` seconds (default 60) the worker gives up on the run and hands it back
  (attempt consumed) with the cause as its error. If even that cannot be written, the worker
  keeps the outcome and records it first thing once the database is back; meanwhile it reaps
  nobody (no worker could send heartbeats), so the run's error names the real cause rather
  than "stopped sending heartbeats". An idle worker keeps polling, ever more slowly (at most
  every ``max_backoff`` s); in burst mode it exits once ``max_outage`` has passed.
- the disk holding the database is full (``DatabaseFull``) → not an outage: it uses up
  neither ``max_outage`` nor an attempt. The run is paused where it is (``workers.sink``: its
  metrics kept, the write tried every ``space_poll`` s, a log line saying so) and goes on once
  space is freed. If the worker is stopped meanwhile, or the disk fills while the run is being
  prepared or recorded, the run is handed back without using an attempt, as soon as the
  database takes writes again (docs/architecture.md, "Out of space").
- the database is not the one the worker started with (``DatabaseReplaced``: its SQLite file
  deleted or replaced, or a database dropped and created again; ``dm_store.identity``) →
  the worker writes nothing more and stops, saying why (``dm worker`` exits with status 1):
  its runs and files belong to the old database.
- the run was taken away (re-queued while this worker was frozen, or deleted) → ``LostClaim``
  from the first fenced write (``dm_store.claims``): the worker drops it -- writes,
  truncates and deletes nothing in the database, removes the files only its own attempt
  wrote -- and goes on with the next run.

Checkpoints live in ``artifacts_dir/run-<id>/attempt-<n>/`` (``run-<id>/retry-<r>/attempt-<n>/``
after ``r`` retries, see ``dm_store.artifacts``); the recorded one is pinned as
``checkpoint-<iteration>.pt`` (see ``workers.sink``). When a run finishes, every other file of
the run -- killed attempts' checkpoints included -- is removed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import time
import traceback
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dm_core.events import TrainingDiverged, TrainingInterrupted
from dm_store import (
    ClaimedRun,
    DatabaseFull,
    DatabaseReplaced,
    LostClaim,
    Store,
    StoreError,
    StoreUnavailable,
)
from dm_store import artifacts as run_files
from dm_store.artifacts import DEFAULT_ARTIFACTS
from dm_store.errors import RunNotFound
from workers.backoff import Backoff, DatabaseHealth, Outage, retrying
from workers.failures import describe_failure, last_line, remove_partial_files
from workers.heartbeat import Heartbeat
from workers.hold import IterationHold
from workers.signals import StopSignals
from workers.sink import StoreSink

log = logging.getLogger("dm.worker")


def default_worker_id() -> str:
    """``host-pid-random``: unique per worker process, readable in ``dm runs``."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"


def attempt_dir(artifacts_dir: Path, run: ClaimedRun) -> Path:
    """Where this attempt writes its checkpoints: its own folder, so that a worker of an
    older attempt that has not noticed yet that it lost the run (frozen, then woken) never
    overwrites the current attempt's files (``dm_store.artifacts``)."""
    return run_files.attempt_dir(artifacts_dir, run.id, run.attempt, run.retries)


def resolve_worker_device(device: str) -> str:
    """``auto`` → ``cuda`` when a GPU is visible, else ``cpu``; others are checked."""
    from dm_core.devices import resolve_device

    resolved = resolve_device(device)
    return str(resolved) if device == "auto" else device


@dataclass
class Outcome:
    """How training ended, before it is recorded (``settle``)."""

    kind: str  # succeeded | failed | cancelled | requeue | lost | db_error | disk_full
    summary: dict[str, Any] | None = None
    error: str | None = None
    diverged_at: int | None = None  # a diverged run: where, and the figures behind it
    divergence: dict[str, Any] | None = None


@dataclass
class Unrecorded:
    """An outcome the database could not take (an outage outlasted ``max_outage``): recorded
    by the worker's loop before anything else once the database is back."""

    run: ClaimedRun
    outcome: Outcome
    sink: StoreSink | None


# The reasons ``should_stop`` gives the loop (they come back in TrainingInterrupted.reason).
STOP_LOST = "this worker no longer holds the run"
STOP_CANCEL = "cancel requested"
STOP_SHUTDOWN = "the worker is shutting down"
STOP_REPLACED = "the database is not the one this worker started with"
FINAL_KINDS = ("succeeded", "failed", "cancelled")


class Worker:
    """Claims and trains queued runs until stopped; see the module docstring.

    ``stale_after``: seconds without a heartbeat before a running run counts as lost.
    ``exit_when_idle``: burst mode -- exit as soon as no run can be claimed.
    ``max_outage``: seconds of database unavailability a run survives (then it is given up).
    ``max_backoff``: the longest wait between two tries while the database is unavailable.
    ``clock``: the metrics sink's clock (batching and its outage bookkeeping); tests pass a
    simulated one so that what they check does not depend on the machine's speed.
    ``hold_at``: hold each run after this iteration (or each of these), its metrics written,
    until SIGCONT (``workers.hold``: a breakpoint for looking at a run half-way); None, the
    default: never.
    ``space_poll``: seconds between tries while the database's disk is full (the run paused).
    """

    def __init__(self, store: Store | str | None, device: str = "auto", poll: float = 1.0,
                 stale_after: float = 30.0, exit_when_idle: bool = False,
                 artifacts_dir: str | Path | None = DEFAULT_ARTIFACTS, *,
                 heartbeat_every: float | None = None, flush_every: float = 1.0,
                 worker_id: str | None = None, max_outage: float = 60.0,
                 max_backoff: float = 8.0, clock: Callable[[], float] = time.monotonic,
                 hold_at: int | Collection[int] | None = None, space_poll: float = 5.0) -> None:
        self.store = store if isinstance(store, Store) else Store(store)
        self.device = resolve_worker_device(device)
        self.poll = float(poll)
        self.stale_after = float(stale_after)
        self.exit_when_idle = exit_when_idle
        self.artifacts_dir = run_files.resolve_artifacts(artifacts_dir)
        self.heartbeat_every = heartbeat_every or max(0.2, min(5.0, self.stale_after / 4))
        self.flush_every = flush_every
        self.worker_id = worker_id or default_worker_id()
        self.max_outage = float(max_outage)
        self.space_poll = float(space_poll)
        self.clock = clock
        self.backoff = Backoff(first=min(0.25, self.poll), cap=float(max_backoff),
                               give_up_after=self.max_outage)
        self.health = DatabaseHealth()
        self.processed = 0
        self.unrecorded: list[Unrecorded] = []
        self.stops = StopSignals(on_warm=self._on_warm, on_cold=self._on_cold)
        self._claim_outage = Outage(self.backoff, health=self.health)
        self._heartbeat: Heartbeat | None = None
        self._next_reap = 0.0
        self.hold = IterationHold(hold_at) if hold_at is not None else None

    # -- the loop ----------------------------------------------------------------------

    def run(self) -> int:
        """Work until a signal (or, in burst mode, an empty queue). Returns runs processed.
        Raises ``DatabaseReplaced`` (after logging it) when the database is not the one the
        worker started with."""
        log.info("worker %s on %s; database %s; artifacts %s", self.worker_id, self.device,
                 self.store.masked_url, self.artifacts_dir)
        try:
            self._loop()
        except DatabaseReplaced as err:
            log.error("worker %s: stopping: %s", self.worker_id, err)
            raise
        log.info("worker %s: stopped after %d run(s)", self.worker_id, self.processed)
        return self.processed

    def _loop(self) -> None:
        with self.stops, self.hold or contextlib.nullcontext():
            while not self.stopping:
                self.record_unrecorded()
                self.reap_stale()
                try:
                    run = self.claim()
                except DatabaseReplaced:
                    raise
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
        for item in self.unrecorded:  # stopped before the database came back
            log.error("run %d: %s could not be recorded before this worker stopped; another "
                      "worker's reaper will re-queue it", item.run.id, item.outcome.kind)

    @property
    def stopping(self) -> bool:
        return self.stops.warm

    def stop(self) -> None:
        """Ask for a warm stop (what the first SIGTERM does): finish with a checkpoint, exit."""
        self.stops.request_warm()

    def reap_stale(self) -> list[int]:
        """Re-queue (or fail) runs whose worker stopped heartbeating; at most every
        ``stale_after / 2`` seconds. Called between runs by the loop and during a run by the
        heartbeat thread (never both at once: the thread lives only while a run trains).

        Not while this worker itself has failed to reach the database within the last
        ``stale_after`` seconds: other workers' heartbeats were failing too, and reaping them
        now would overwrite the cause their workers are about to record with "stopped sending
        heartbeats". Database errors are logged, not raised."""
        now = time.monotonic()
        if now < self._next_reap or self.health.failed_within(self.stale_after):
            return []
        self._next_reap = now + max(self.poll, self.stale_after / 2)
        try:
            return self.store.requeue_stale(self.stale_after)
        except StoreError as err:
            if isinstance(err, StoreUnavailable | DatabaseFull):
                self.health.note_failure()
            log.warning("worker %s: could not reap stale runs: %s", self.worker_id, err)
            return []

    def claim(self) -> ClaimedRun | None:
        """The oldest queued run, claimed for this worker, or None when the queue is empty.
        Raises ``StoreError`` when the database cannot say (an outage is not an empty queue)."""
        run = self.store.claim(self.worker_id, self.device)
        lasted = self._claim_outage.recovered()
        if lasted is not None:
            log.warning("worker %s: database reachable again after %.1f s", self.worker_id,
                        lasted[0])
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
            outcome, sink = Outcome("lost", error=str(err)), None
        except DatabaseReplaced:
            raise
        except DatabaseFull as err:
            outcome, sink = Outcome("disk_full", error=str(err)), None
        except StoreError as err:
            outcome, sink = Outcome("db_error", error=str(err)), None
        except Exception as err:  # an invalid config: fails the same way on every attempt
            outcome, sink = Outcome("failed", error=f"invalid run: {last_line(err)}"), None
        else:
            outcome = self.train(run, config, resume_from, sink)
        self.settle(run, outcome, sink)
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
        # Fenced by this worker's claim, in the same transaction as the deletion: a worker
        # frozen since its claim -- its run meanwhile re-queued, resumed by another worker,
        # and that worker's checkpoint superseding the one this worker would resume from --
        # gets LostClaim here and drops the run instead of deleting the new owner's rows.
        retrying(lambda: self.store.truncate_after(run.id, keep, attempt=run.attempt,
                                                   worker_id=run.worker_id),
                 f"run {run.id}: clear rows after iteration {keep}", self.backoff,
                 health=self.health)
        sink = StoreSink(self.store, run.id, run.attempt, run.worker_id,
                         flush_every=self.flush_every, max_outage=self.max_outage,
                         previous_checkpoint=resume_from, clock=self.clock, health=self.health,
                         space_poll=self.space_poll, stopping=lambda: self.stopping)
        return config, resume_from, sink

    def train(self, run: ClaimedRun, config: Any, resume_from: str | None,
              sink: StoreSink) -> Outcome:
        """Train with the sink and the heartbeat; turn how it ended into an ``Outcome``."""
        from dm_core.train import train  # torch: imported only where training happens

        checkpoint_dir = attempt_dir(self.artifacts_dir, run)
        self._heartbeat = Heartbeat(self.store, run, self.heartbeat_every,
                                    reap=self.reap_stale, health=self.health).start()
        try:
            summary = train(config, on_event=sink, resume_from=resume_from,
                            checkpoint_dir=checkpoint_dir,
                            should_stop=self._stop_or_hold(run, sink))
            return Outcome("succeeded", summary=summary.to_dict())
        except TrainingInterrupted as stop:
            if stop.reason == STOP_REPLACED:
                raise self._heartbeat.replaced from None
            kind = {STOP_LOST: "lost", STOP_CANCEL: "cancelled"}.get(stop.reason, "requeue")
            return Outcome(kind, error=str(stop) if kind in ("lost", "cancelled") else None)
        except TrainingDiverged as err:
            return Outcome("failed", error=str(err), diverged_at=err.iteration,
                           divergence=err.figures)
        except LostClaim as err:
            return Outcome("lost", error=str(err))
        except DatabaseReplaced:
            raise
        except DatabaseFull as err:  # the worker was stopped while the run waited for space
            return Outcome("disk_full", error=str(err))
        except StoreError as err:
            return Outcome("db_error", error=str(err))
        except Exception as err:
            taken = self._taken_away(run)
            if taken is not None:  # the error followed from that (e.g. its files removed)
                return Outcome("lost", error=f"{taken}; what the loop raised after that is not "
                                             f"the run's failure: {last_line(err)}")
            log.error("run %d failed:\n%s", run.id, traceback.format_exc())
            return Outcome("failed", error=describe_failure(err, checkpoint_dir))
        finally:
            self._heartbeat.stop()
            self._heartbeat = None
            remove_partial_files(checkpoint_dir)

    def _taken_away(self, run: ClaimedRun) -> str | None:
        """Why the run is no longer this worker's, or None while it is (or when the database
        cannot say): one fenced heartbeat, asked when training raised."""
        try:
            self.store.heartbeat(run.id, run.worker_id, run.attempt)
        except LostClaim as err:
            return str(err)
        except StoreError:
            return None
        return None

    def should_stop(self) -> str | None:
        """Polled by the loop every iteration: only flag reads, no I/O."""
        beat = self._heartbeat
        if beat is not None and beat.replaced is not None:
            return STOP_REPLACED
        if beat is not None and beat.lost:
            return STOP_LOST
        if beat is not None and beat.cancel_requested:
            return STOP_CANCEL
        if self.stopping:
            return STOP_SHUTDOWN
        return None

    def _stop_or_hold(self, run: ClaimedRun, sink: StoreSink) -> Callable[[], str | None]:
        """``should_stop``, which first holds the run at ``hold_at`` when asked to."""
        hold = self.hold
        if hold is None:
            return self.should_stop

        def stop_or_hold() -> str | None:
            hold.hold(run.id, sink.last_iteration, sink.flush, self.should_stop)
            return self.should_stop()

        return stop_or_hold

    # -- recording how a run ended ----------------------------------------------------------

    def settle(self, run: ClaimedRun, outcome: Outcome, sink: StoreSink | None) -> None:
        """Record the outcome: write what is buffered, then one guarded transition. Each step
        rides out a database outage of up to ``max_outage`` s (``retrying``); an outage that
        lasts longer leaves the outcome in ``unrecorded`` for the loop to record later."""
        try:
            self._record(run, outcome, sink, patient=True)
        except LostClaim as err:
            self._drop(run, str(err))
        except DatabaseReplaced:
            raise
        except StoreError as err:
            log.error("run %d: could not record %s: %s (kept; recorded as soon as the "
                      "database takes writes again)", run.id, outcome.kind, err)
            self.unrecorded.append(Unrecorded(run, outcome, sink))

    def record_unrecorded(self) -> None:
        """Try once more to record each outcome an outage kept from the database; keep the
        ones that still cannot be written (this worker's ``health`` remembers the failure,
        so it reaps nobody meanwhile)."""
        for item in list(self.unrecorded):
            try:
                self._record(item.run, item.outcome, item.sink, patient=False)
            except LostClaim as err:
                self._drop(item.run, str(err))
            except (StoreUnavailable, DatabaseFull):
                self.health.note_failure()
                continue
            except DatabaseReplaced:
                raise
            except StoreError as err:
                log.error("run %d: could not record %s: %s", item.run.id, item.outcome.kind, err)
            else:
                log.warning("run %d: recorded %s after the outage", item.run.id,
                            item.outcome.kind)
            self.unrecorded.remove(item)

    def _record(self, run: ClaimedRun, outcome: Outcome, sink: StoreSink | None, *,
                patient: bool) -> None:
        """The database writes behind ``settle``; ``patient``: each retried for up to
        ``max_outage`` s, else tried once. Raises ``LostClaim`` / ``StoreError``."""
        store, wid = self.store, run.worker_id

        def attempt(action: Callable[[], Any], what: str) -> Any:
            if not patient:
                return action()
            return retrying(action, f"run {run.id}: {what}", self.backoff, health=self.health)

        if outcome.kind == "lost":
            raise LostClaim(outcome.error or f"run {run.id} is no longer held by this worker")
        if outcome.kind == "db_error":
            status = attempt(lambda: store.release(run.id, wid, run.attempt, consume_attempt=True,
                                                   error=outcome.error), "hand back")
            log.warning("run %d: database trouble (%s); handed back as %s", run.id,
                        outcome.error, status)
            return
        if sink is not None:
            attempt(sink.close, "write the last metrics")
        if outcome.kind == "requeue":
            attempt(lambda: store.release(run.id, wid, run.attempt, consume_attempt=False),
                    "re-queue")
            log.info("run %d: checkpointed and re-queued (warm stop)", run.id)
            return
        if outcome.kind == "disk_full":  # full while prepared, or stopped while paused
            attempt(lambda: store.release(run.id, wid, run.attempt, error=outcome.error),
                    "hand back")
            log.warning("run %d: handed back, its attempt kept: %s", run.id, outcome.error)
            return
        attempt(lambda: store.finish(run.id, wid, outcome.kind, summary=outcome.summary,
                                     error=outcome.error, attempt=run.attempt,
                                     diverged_at=outcome.diverged_at,
                                     divergence=outcome.divergence),
                f"record {outcome.kind}")
        log.info("run %d: %s%s", run.id, outcome.kind,
                 f" ({outcome.error})" if outcome.error else "")
        # Finished: nothing will resume from any file of the run but the recorded
        # checkpoint (``dm retry --resume``); killed attempts' files go now.
        keep = sink.recorded_checkpoint if sink is not None else run.checkpoint_path
        run_files.remove_files(run_files.run_dir(self.artifacts_dir, run.id), keep=[keep])

    def _drop(self, run: ClaimedRun, why: str) -> None:
        """The run was taken away (see the module docstring): write nothing more, and remove
        the files this attempt wrote -- except the one the run records as its checkpoint,
        which the worker holding the run now may be about to resume from."""
        log.warning("run %d: dropped: %s", run.id, why)
        try:
            keep = self.store.get_run(run.id).checkpoint_path
        except RunNotFound:
            keep = None  # deleted: nothing of it is needed
        except StoreError as err:
            log.warning("run %d: its files stay (could not read its checkpoint: %s)", run.id, err)
            return
        run_files.remove_files(attempt_dir(self.artifacts_dir, run), keep=[keep])

    # -- signals and waiting ------------------------------------------------------------------

    def _on_warm(self, name: str) -> None:
        log.warning("worker %s: %s: warm stop (checkpointing the current run; "
                    "send it again to stop at once)", self.worker_id, name)

    def _on_cold(self, name: str) -> None:
        log.warning("worker %s: %s again: cold stop", self.worker_id, name)
        raise SystemExit(1)

    def _wait_for_database(self, err: StoreError) -> None:
        """The queue could not be read: wait ever longer (``backoff``) before the next try.
        In burst mode, give up (raise) once the database has been away for ``max_outage``."""
        down_for = self._claim_outage.down_for()
        wait = max(self.poll, self._claim_outage.failed())
        if self.exit_when_idle and down_for > self.max_outage:
            log.error("worker %s: database unavailable for %.0f s; giving up (burst mode): %s",
                      self.worker_id, down_for, err)
            raise err
        log.warning("worker %s: could not claim a run (%s); retry %d in %.1f s", self.worker_id,
                    err, self._claim_outage.failures, wait)
        self._idle(wait)

    def _idle(self, seconds: float, sleep: Callable[[float], None] = time.sleep) -> None:
        deadline = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < deadline:
            sleep(min(0.1, max(0.0, deadline - time.monotonic())))


__all__ = ["Heartbeat", "Outcome", "Worker", "attempt_dir", "default_worker_id",
           "describe_failure", "resolve_worker_device"]
