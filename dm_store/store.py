"""The store: the one piece of shared state between the dashboard, the CLI and the workers.

``Store(url)`` is a thin facade over three rooms, each with its own module:

- ``dm_store.database``: the URL, the engine, sessions (one transaction each, errors
  as ``StoreError``/``StoreUnavailable``), the schema (Alembic) and the database clock;
- ``dm_store.runs``: runs, the queue and the state machine (``RunStatus``): submit,
  claim, every status change as one guarded transaction, the reaper;
- ``dm_store.metrics``: what the training loop reported, written by the worker that
  holds the run and read by everyone (downsampled in SQL, ``dm_store.downsample``;
  DataFrames built in ``dm_store.frames``).

Worker-side writes are fenced by the claim (attempt + worker; ``dm_store.claims``): a
worker whose run was re-queued, reclaimed, finished or deleted behind its back gets
``LostClaim`` and writes -- and deletes -- nothing. A run's files live under
``artifacts_dir`` (``dm_store.artifacts``).

The store pickles as its URL, so it crosses process boundaries; each process builds its own
engine (docs/architecture.md, "SQLite locking").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from dm_store import artifacts
from dm_store.database import Database, mask_url
from dm_store.metrics import HistogramSeries, Metrics
from dm_store.runs import ClaimedRun, RunInfo, Runs, SubmitResult
from dm_store.status import RunStatus

if TYPE_CHECKING:
    import pandas as pd


class Store:
    """Runs, their metrics and the queue, in SQLite or PostgreSQL.

    ``Store()`` uses ``$DM_DATABASE_URL`` or ``sqlite:///./var/dm.sqlite``. The schema is
    brought to the latest Alembic revision on first use (safe when several processes start
    together); pass ``upgrade=False`` to fail instead with the command that fixes it, and
    ``create=False`` to refuse to create a database that does not exist (a deleted SQLite file
    is then an error, not a new empty database). ``artifacts_dir`` (default ``$DM_ARTIFACTS``
    or ``./var/artifacts``) is where workers put checkpoints: ``delete`` and ``retry`` remove
    ``artifacts_dir/run-<id>``.

    >>> from dm_core.config import RunConfig
    >>> store = Store("sqlite://")            # in memory, for a quick look
    >>> store.submit([RunConfig(name="demo")]).run_ids
    [1]
    >>> store.get_run(1).status
    <RunStatus.QUEUED: 'queued'>
    """

    def __init__(self, url: str | None = None, artifacts_dir: str | Path | None = None, *,
                 upgrade: bool = True, create: bool = True) -> None:
        self._db = Database(url, upgrade=upgrade, create=create)
        self.url = self._db.url
        self.artifacts_dir = artifacts.resolve_artifacts(artifacts_dir)
        self._runs = Runs(self._db, self.artifacts_dir)
        self._metrics = Metrics(self._db)

    # -- identity, pickling, the database ------------------------------------------------

    @property
    def masked_url(self) -> str:
        return mask_url(self.url)

    @property
    def dialect(self) -> str:
        return self._db.dialect

    def __repr__(self) -> str:
        return f"Store({self.masked_url!r})"

    def __getstate__(self) -> dict[str, Any]:
        # Pickled by URL: each process builds its own engine.
        return {"url": self.url, "artifacts_dir": str(self.artifacts_dir),
                "upgrade": self._db.auto_upgrade, "create": self._db.create}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["url"], state["artifacts_dir"], upgrade=state["upgrade"],
                      create=state.get("create", True))

    @property
    def engine(self) -> Engine:
        return self._db.engine

    def dispose(self) -> None:
        """Close every pooled connection (the Store stays usable: it reconnects on demand)."""
        self._db.dispose()

    def session_scope(self, readonly: bool = False) -> AbstractContextManager[Session]:
        """One transaction: commit on success, roll back on error, always close; database
        errors as ``StoreError``/``StoreUnavailable``. ``readonly=True`` takes no write lock
        on SQLite (use it for pure reads only)."""
        return self._db.session(readonly=readonly)

    def upgrade(self) -> str:
        """Apply every pending migration (safe while other processes run); the revision now."""
        return self._db.upgrade()

    def revision(self) -> str | None:
        """The schema revision the database is at (None: empty database)."""
        return self._db.revisions()[0]

    def db_now(self) -> datetime:
        """The database server's clock, as an aware UTC datetime (compare heartbeats to this)."""
        return self._db.db_now()

    def run_dir(self, run_id: int) -> Path:
        """Where a run's artifacts (checkpoints) live: ``artifacts_dir/run-<id>``."""
        return artifacts.run_dir(self.artifacts_dir, run_id)

    # -- runs: submitting, reading, user actions -------------------------------------------

    def submit(self, configs: Sequence[Any], group: str | None = None,
               max_attempts: int = 3) -> SubmitResult:
        """Queue validated ``RunConfig``s in one transaction, as one group (named when None).

        At most ``dm_store.runs.MAX_RUNS_PER_SUBMIT`` configs: more is a ``ConfigError``
        naming the count and the cap, and nothing is queued."""
        return self._runs.submit(configs, group, max_attempts)

    def list_runs(self, status: str | None = None, group: str | None = None,
                  limit: int | None = None) -> list[RunInfo]:
        """Runs, newest first, optionally of one status and/or group. One query."""
        return self._runs.list_runs(status, group, limit)

    def get_run(self, run_id: int) -> RunInfo:
        """One run; ``RunNotFound`` if there is none with this id."""
        return self._runs.get_run(run_id)

    def groups(self) -> list[str]:
        """Group names, the most recently submitted first."""
        return self._runs.groups()

    def queue_counts(self) -> dict[str, int]:
        """How many runs are in each status (every status present, zeros included)."""
        return self._runs.queue_counts()

    def claims(self, run_id: int | None = None) -> list[dict[str, Any]]:
        """The claim audit log (run_id, retry, attempt, worker_id, device, claimed_at), oldest
        first."""
        return self._runs.claims(run_id)

    def cancel(self, run_id: int) -> RunInfo:
        """Queued: cancelled at once. Running: ``cancel_requested`` is set; its worker notices
        within about a second (``cancel_requested`` polled between heartbeats), stops (keeping
        what was logged) and marks it cancelled."""
        return self._runs.cancel(run_id)

    def retry(self, run_id: int, resume: bool = False) -> RunInfo:
        """Failed or cancelled → queued. Attempts start over at 1 (a fresh ``max_attempts``)
        and ``retries`` goes up by one, so the claims audit tells the new attempts from the
        old ones.

        ``resume=False``: from scratch -- everything the old attempts logged, and their
        files, are removed. ``resume=True``: from the recorded checkpoint -- it and every row
        up to it are kept, the rows after it removed (the worker continues from there);
        ``InvalidTransition`` when the run has no checkpoint. ``RunInfo.checkpoint_iteration``
        of the result says where the next attempt starts (None: from scratch)."""
        return self._runs.retry(run_id, resume=resume)

    def delete(self, run_id: int) -> None:
        """Delete a run that is not running: its rows and its artifacts directory."""
        self._runs.delete(run_id)

    # -- metrics: reads --------------------------------------------------------------------

    def scalars(self, run_id: int, after: int = 0, max_points: int | None = None,
                stride: int | None = None) -> pd.DataFrame:
        """Per-iteration scalars after ``after``: column ``iteration``, one float column per
        known scalar (``models.SCALAR_COLUMNS``, always present, NaN where not reported),
        then one per any other scalar the loop reported.

        With ``max_points``, every k-th iteration is selected in SQL (and the last one), so
        at most ``max_points`` rows come back however long the run; ``stride`` gives k itself
        (iterations that are multiples of it, and the last one), for a reader that keeps
        its own grid across incremental reads. Unknown runs give an empty frame (this is the
        polling path: no existence check).
        """
        return self._metrics.scalars(run_id, after, max_points, stride)

    def evals(self, run_id: int) -> pd.DataFrame:
        """Evaluations: column ``iteration`` plus test_acc, train_acc_corrupted, ..."""
        return self._metrics.evals(run_id)

    def histograms(self, run_id: int, start: int | None = None, end: int | None = None,
                   max_rows: int | None = 2000, stride: int | None = None) -> HistogramSeries:
        """Histograms for iterations in [start, end], every k-th one selected in SQL so that
        at most ``max_rows`` come back (``max_rows=None``: all); ``stride`` gives k
        itself instead, as in :meth:`scalars`."""
        return self._metrics.histograms(run_id, start, end, max_rows, stride)

    def histogram_at(self, run_id: int, iteration: int
                     ) -> tuple[int, np.ndarray, np.ndarray] | None:
        """The stored histogram nearest at or before ``iteration``: (iteration, clean, noisy)."""
        return self._metrics.histogram_at(run_id, iteration)

    def example_iterations(self, run_id: int) -> list[int]:
        """The evaluations that stored a snapshot of every training example's statistics."""
        return self._metrics.example_iterations(run_id)

    def examples(self, run_id: int, iteration: int | None = None
                 ) -> tuple[int, dict[str, np.ndarray]] | None:
        """The snapshot of every training example's statistics (``dm_core.example_stats``) at
        or before ``iteration`` (None: the latest): (its iteration, name → array), or None."""
        return self._metrics.examples(run_id, iteration)

    def labels(self, run_id: int, phase: str = "train"
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """The run's training labels: (clean int64, noisy int64, is_noisy bool), or None."""
        return self._metrics.labels(run_id, phase)

    # -- worker side -------------------------------------------------------------------------

    def claim(self, worker_id: str, device: str) -> ClaimedRun | None:
        """Take the oldest queued run (lowest id) for ``worker_id``, or None. Committed at once
        (``dm_store.runs``: BEGIN IMMEDIATE on SQLite, SKIP LOCKED on PostgreSQL)."""
        return self._runs.claim(worker_id, device)

    def heartbeat(self, run_id: int, worker_id: str, attempt: int) -> bool:
        """Record that the worker is alive (database time); return ``cancel_requested``.

        Raises ``LostClaim`` when the run is no longer this worker's attempt.
        """
        return self._runs.heartbeat(run_id, worker_id, attempt)

    def cancel_requested(self, run_id: int) -> bool:
        """Whether a cancel was requested for the run: one primary-key read that takes no
        write lock, cheap enough for a worker to poll every second between heartbeats."""
        return self._runs.cancel_requested(run_id)

    def write_batch(self, run_id: int, attempt: int, scalars: Sequence[Any] = (),
                    histograms: Sequence[Any] = (), evals: Sequence[Any] = (),
                    checkpoint: Any | None = None, start: Any | None = None, *,
                    worker_id: str | None = None, examples: Sequence[Any] = ()) -> None:
        """Append what the training loop reported, in ONE transaction.

        ``scalars``/``histograms``/``evals`` are ``ScalarsEvent``/``HistogramEvent``/
        ``EvalEvent`` lists, ``examples`` ``ExamplesEvent``s (one snapshot per evaluation);
        ``checkpoint`` a ``CheckpointEvent`` whose iteration and path are
        recorded with the rows (so rows ≤ the checkpoint and the checkpoint commit together);
        ``start`` a ``StartEvent`` (labels, total iterations, device). The first statement is
        the fence (also a heartbeat): a worker that lost the run gets ``LostClaim`` and
        nothing is written.

        Idempotent: rows at or after the batch's first iteration of each table are deleted
        before the insert. Each batch carries every event after the previous batch's (the
        loop reports in order), so this deletes nothing -- unless this very batch was
        already committed and its answer lost, when it replaces the rows with themselves.
        """
        self._metrics.write_batch(run_id, attempt, scalars, histograms, evals, checkpoint,
                                  start, worker_id=worker_id, examples=examples)

    def truncate_after(self, run_id: int, iteration: int, *, attempt: int | None = None,
                       worker_id: str | None = None) -> None:
        """Delete every scalar, histogram and eval after ``iteration`` (a resumed run continues
        from its checkpoint at ``iteration``: no gap, no duplicate), and fix the run's
        ``last_iteration`` / ``last_test_acc``.

        A worker passes its ``attempt`` and ``worker_id``: the deletion is then fenced by its
        claim in the same transaction (``LostClaim`` and nothing deleted when it lost the run),
        so a worker that was frozen between its claim and its resume can never delete the
        rows of the worker that holds the run now."""
        self._metrics.truncate_after(run_id, iteration, attempt=attempt, worker_id=worker_id)

    def finish(self, run_id: int, worker_id: str, status: str | RunStatus,
               summary: Mapping[str, Any] | None = None, error: str | None = None, *,
               attempt: int | None = None, diverged_at: int | None = None,
               divergence: Mapping[str, Any] | None = None) -> None:
        """running → succeeded | failed | cancelled, by the worker that holds the run.

        A run that diverged is ``failed`` with ``diverged_at`` (its iteration) and
        ``divergence`` (the measured figures: ``TrainingDiverged.figures``) as fields."""
        self._runs.finish(run_id, worker_id, status, summary, error, attempt=attempt,
                          diverged_at=diverged_at, divergence=divergence)

    def release(self, run_id: int, worker_id: str, attempt: int, *,
                consume_attempt: bool = False, error: str | None = None) -> RunStatus:
        """running → queued by the worker that holds it, checkpoint kept.

        ``consume_attempt=False`` (a warm stop) leaves the attempt number alone.
        ``consume_attempt=True`` (the worker hit a problem it cannot record, e.g. the database
        went away mid-run) counts it like a lost worker: attempt + 1, or failed once
        ``max_attempts`` are used up. Returns the new status.
        """
        return self._runs.release(run_id, worker_id, attempt, consume_attempt=consume_attempt,
                                  error=error)

    def requeue_stale(self, stale_after_s: float) -> list[int]:
        """Deal with running runs whose heartbeat is older than ``stale_after_s`` (database
        time): re-queued with attempt + 1 and their checkpoint kept; failed once
        ``max_attempts`` are used up; cancelled if a cancel had been requested.

        Returns the ids handled. Safe when several reapers run at once (idle workers between
        runs, busy ones from their heartbeat thread): each guarded UPDATE re-checks ``status =
        'running'`` and the stale heartbeat under the row's write lock, so a run is handled
        exactly once and a reaper that lost the race changes nothing.
        """
        return self._runs.requeue_stale(stale_after_s)


__all__ = ["Store"]
