"""The worker's sink: the training loop's events, batched into the store.

The loop calls the sink once per event (several per iteration); the sink writes at most
about one transaction per ``flush_every`` seconds, never one per iteration.

Checkpoints and rows commit together. A ``CheckpointEvent(k)`` is first pinned: the loop's
``checkpoint.pt`` (which it overwrites at every checkpoint) is hard-linked as
``checkpoint-<k>.pt``, so the recorded path always holds exactly iteration k. Then the
checkpoint is recorded in the SAME transaction as every buffered row (all ≤ k, since events
arrive in order): right away, or -- if a flush happened less than ``flush_every`` ago -- with
the next batch. After a crash the database therefore holds every row up to its recorded
checkpoint, and the worker that resumes deletes whatever is after it (``truncate_after``):
no gap, no duplicate. A superseded checkpoint file is deleted once its successor is recorded.

A database outage (``StoreUnavailable``: the server restarting, the connection lost, SQLite
locked) does not stop training: a failed flush keeps its buffer and is retried, with an
exponentially growing gap (``workers.backoff``), for up to ``max_outage`` seconds; then the
error propagates and the worker hands the run back. A retried batch may already have been
committed (its answer lost): ``Store.write_batch`` is idempotent, so nothing is duplicated.
Any other ``StoreError`` would fail again and propagates at once, and so does ``LostClaim``
(the run was taken away from this worker): the loop stops and nothing more is written.

A full database disk (``DatabaseFull``) is not an outage: it lasts until someone frees space,
so it never uses up ``max_outage``. The sink pauses the training loop instead -- it keeps its
buffer and tries the write again every ``space_poll`` seconds, saying so in the log once and
then every ``FULL_REPORT_S`` -- and training goes on where it stopped once the write passes.
Only a warm stop of the worker (``stopping``) ends the wait early: the error then propagates
and the worker hands the run back without using an attempt (docs/architecture.md, "Out of
space").
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from dm_core.events import (
    CheckpointEvent,
    EvalEvent,
    Event,
    ExamplesEvent,
    HistogramEvent,
    ResumeEvent,
    ScalarsEvent,
    StartEvent,
)
from dm_store import DatabaseFull, Store, StoreUnavailable
from workers.backoff import Backoff, DatabaseHealth, Outage

log = logging.getLogger("dm.worker")

# While a run is paused on a full database disk, a line says so this often.
FULL_REPORT_S = 60.0


def pin_checkpoint(path: str | Path, iteration: int) -> Path:
    """Hard-link (or copy) the loop's checkpoint file as ``checkpoint-<iteration>.pt``.

    The loop replaces ``checkpoint.pt`` atomically (a new inode each time), so the link keeps
    this iteration's content however often the loop checkpoints afterwards.
    """
    source = Path(path)
    pinned = source.with_name(f"checkpoint-{iteration}.pt")
    tmp = source.with_name(f".{pinned.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:  # a filesystem without hard links
        shutil.copyfile(source, tmp)
    os.replace(tmp, pinned)
    return pinned


class StoreSink:
    """``on_event`` for ``dm_core.train.train`` that writes to ``store`` for one claimed run.

    ``previous_checkpoint`` is the checkpoint the run resumed from: deleted once a newer one
    is recorded. ``transactions`` counts successful writes (tests and benchmarks read it).
    ``health`` is the worker's ``DatabaseHealth``, told about every failed write.
    ``space_poll``: seconds between tries while the database's disk is full (training paused);
    ``stopping``: whether the worker was asked to stop, which ends that pause.
    """

    def __init__(self, store: Store, run_id: int, attempt: int, worker_id: str | None = None, *,
                 flush_every: float = 1.0, max_outage: float = 60.0,
                 previous_checkpoint: str | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 backoff: Backoff | None = None, health: DatabaseHealth | None = None,
                 space_poll: float = 5.0, stopping: Callable[[], bool] = lambda: False,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.store = store
        self.run_id = run_id
        self.attempt = attempt
        self.worker_id = worker_id
        self.flush_every = flush_every
        self.max_outage = max_outage
        self.recorded_checkpoint = previous_checkpoint
        self.transactions = 0
        self.last_iteration = 0
        self._clock = clock
        self._last_flush = clock()
        # Capped low: a long gap could span the end of one outage and the start of the next.
        self._outage = Outage(backoff or Backoff(first=flush_every, cap=max(4.0, flush_every),
                                                 jitter=0.0, give_up_after=max_outage),
                              clock=clock, health=health)
        self._scalars: list[ScalarsEvent] = []
        self._histograms: list[HistogramEvent] = []
        self._evals: list[EvalEvent] = []
        self._examples: list[ExamplesEvent] = []
        self._start: StartEvent | None = None
        self._pending_checkpoint: CheckpointEvent | None = None
        self.space_poll = space_poll
        self._stopping, self._sleep, self._health = stopping, sleep, health
        self._full_since: float | None = None  # monotonic time the disk was found full
        self._full_reported = 0.0

    # -- the loop's callback ---------------------------------------------------------

    def __call__(self, event: Event) -> None:
        if isinstance(event, ScalarsEvent):
            self._scalars.append(event)
            self.last_iteration = event.iteration
        elif isinstance(event, HistogramEvent):
            self._histograms.append(event)
        elif isinstance(event, EvalEvent):
            self._evals.append(event)
        elif isinstance(event, ExamplesEvent):
            self._examples.append(event)
        elif isinstance(event, CheckpointEvent):
            self._checkpoint(event)
        elif isinstance(event, StartEvent):
            self._start = event  # labels and total iterations: shown as soon as possible
            self.flush()
            return
        elif isinstance(event, ResumeEvent):
            self._discard_after(event.iteration)
            return
        if self._clock() - self._last_flush >= self.flush_every and self._outage.due():
            self.flush()

    def _checkpoint(self, event: CheckpointEvent) -> None:
        pinned = pin_checkpoint(event.path, event.iteration)
        superseded = self._pending_checkpoint
        self._pending_checkpoint = CheckpointEvent(iteration=event.iteration, path=str(pinned))
        if superseded is not None and superseded.path != str(pinned):
            Path(superseded.path).unlink(missing_ok=True)  # never recorded: nobody needs it

    def _discard_after(self, iteration: int) -> None:
        self._scalars = [e for e in self._scalars if e.iteration <= iteration]
        self._histograms = [e for e in self._histograms if e.iteration <= iteration]
        self._evals = [e for e in self._evals if e.iteration <= iteration]
        self._examples = [e for e in self._examples if e.iteration <= iteration]

    # -- writing -------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Events buffered and not yet written."""
        return len(self._scalars) + len(self._histograms) + len(self._evals) + len(self._examples)

    def flush(self, *, final: bool = False) -> bool:
        """Write everything buffered (and a pending checkpoint) in one transaction.

        Returns True when something was written. ``StoreUnavailable`` is retried by a later
        flush, after a growing gap, for up to ``max_outage`` seconds (then raised); with
        ``final=True`` it is raised at once (the caller retries). ``DatabaseFull`` pauses here
        until the write passes (see the module docstring); with ``final=True``, or once the
        worker is stopping, it is raised. Any other error is raised.
        """
        checkpoint = self._pending_checkpoint
        if not (self._scalars or self._histograms or self._evals or self._examples or self._start
                or checkpoint):
            self._last_flush = self._clock()
            return False
        while True:
            try:
                self.store.write_batch(self.run_id, self.attempt, self._scalars, self._histograms,
                                       self._evals, checkpoint=checkpoint, start=self._start,
                                       worker_id=self.worker_id, examples=self._examples)
                break
            except DatabaseFull as err:
                if final or not self._wait_for_space(err):
                    raise
            except StoreUnavailable as err:
                return self._outage_failed(err, final)
        self._space_back()
        lasted = self._outage.recovered()
        if lasted is not None:
            log.warning("run %d: metrics written again after %.1f s without the database",
                        self.run_id, lasted[0])
        self._scalars, self._histograms, self._evals, self._start = [], [], [], None
        self._examples = []
        self._pending_checkpoint = None
        self._last_flush = self._clock()
        self.transactions += 1
        if checkpoint is not None:
            old, self.recorded_checkpoint = self.recorded_checkpoint, checkpoint.path
            if old and old != checkpoint.path:
                Path(old).unlink(missing_ok=True)
        return True

    def _outage_failed(self, err: StoreUnavailable, final: bool) -> bool:
        """A write failed for an outage: keep the buffer for a later flush (False), or raise
        once the outage has lasted ``max_outage`` (or at once when ``final``)."""
        down_for = self._outage.down_for()
        wait = self._outage.failed()
        if final or down_for > self.max_outage:
            if not final:
                log.error("run %d: database unavailable for %.1f s; giving up on the run: %s",
                          self.run_id, down_for, err)
            raise err
        log.warning("run %d: could not write metrics (%s); %d event(s) kept, retry %d in "
                    "%.1f s (giving up after %g s)", self.run_id, err, self.pending,
                    self._outage.failures, wait, self.max_outage)
        self._last_flush = self._clock()
        return False

    def _wait_for_space(self, err: DatabaseFull) -> bool:
        """The database's disk is full: wait ``space_poll`` s before the next try, saying so.
        False (give up) when the worker is stopping."""
        now = time.monotonic()
        if self._full_since is None:
            self._full_since = self._full_reported = now
            log.error("run %d: %s. Training is paused until then: the write is tried again "
                      "every %g s, %d event(s) are kept, and the run keeps its attempt "
                      "(a full disk is not an outage)", self.run_id, err, self.space_poll,
                      self.pending)
        elif now - self._full_reported >= FULL_REPORT_S:
            self._full_reported = now
            log.warning("run %d: still paused: the database's disk has been full for %.0f s",
                        self.run_id, now - self._full_since)
        if self._health is not None:  # others' heartbeats fail too: reap nobody meanwhile
            self._health.note_failure()
        if self._stopping():
            return False
        self._sleep(self.space_poll)
        return not self._stopping()

    def _space_back(self) -> None:
        if self._full_since is not None:
            log.warning("run %d: space freed on the database's disk: metrics written again "
                        "after %.0f s paused; training goes on", self.run_id,
                        time.monotonic() - self._full_since)
            self._full_since = None

    def close(self) -> None:
        """Write whatever is left; raise if it cannot be written."""
        self.flush(final=True)
