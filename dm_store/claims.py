"""Fencing: every write a worker makes for a run carries the claim it holds.

A worker holds a run through the claim it got: ``(attempt, worker_id)`` while the run is
``running``. A worker can be frozen (SIGSTOP, swapped out, a long GC pause) for longer than
the reaper's patience; the run is then re-queued and another worker holds a newer attempt.
When the frozen worker wakes, nothing it does may touch the new owner's rows or files.

So every worker-side change -- heartbeats, metrics, truncating after a checkpoint, recording
a checkpoint, finishing, handing back -- is ONE transaction whose first statement is the
guarded ``UPDATE runs … WHERE id = :id AND status = 'running' AND attempt = :attempt AND
worker_id = :worker`` (``fence``); when it changes no row the transaction raises
``LostClaim`` before doing anything else, and rolls back. The UPDATE also takes the run row's
write lock (SQLite: the database's; PostgreSQL: the row's) until commit, so a reaper or a
``dm retry`` cannot change the owner between the check and the writes that follow it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from dm_store.errors import InvalidTransition, LostClaim, RunNotFound
from dm_store.models import RUNS
from dm_store.status import RunStatus


def held_by(run_id: int, attempt: int, worker_id: str | None) -> list[Any]:
    """The WHERE clauses of "run ``run_id`` is running as ``attempt`` of ``worker_id``"."""
    guards = [RUNS.c.id == run_id, RUNS.c.status == str(RunStatus.RUNNING),
              RUNS.c.attempt == attempt]
    if worker_id is not None:
        guards.append(RUNS.c.worker_id == worker_id)
    return guards


def fence(s: Session, run_id: int, attempt: int, worker_id: str | None, verb: str, *,
          returning: Sequence[Any] = (), **values: Any) -> Any:
    """The fencing UPDATE (see the module docstring): sets ``values`` on the run if this
    worker still holds it, else raises ``LostClaim``. With ``returning`` columns, returns
    their values for the run (one row)."""
    stmt = update(RUNS).where(*held_by(run_id, attempt, worker_id)).values(**values)
    if returning:
        row = s.execute(stmt.returning(*returning)).first()
        if row is None:
            refuse(s, run_id, verb, (RunStatus.RUNNING,), worker_side=True)
        return row
    if s.execute(stmt).rowcount != 1:
        refuse(s, run_id, verb, (RunStatus.RUNNING,), worker_side=True)
    return None


def refuse(s: Session, run_id: int, verb: str, sources: Sequence[RunStatus], *,
           worker_side: bool = False) -> None:
    """Raise the right error for a guarded UPDATE that changed no row.

    Worker side: ``LostClaim`` whatever happened -- re-queued, reclaimed, finished, or deleted
    while the worker was frozen: the run is simply not its own any more. User side:
    ``RunNotFound``, or ``InvalidTransition`` naming the statuses that would have allowed it.
    """
    row = s.execute(select(RUNS.c.status, RUNS.c.attempt, RUNS.c.worker_id)
                    .where(RUNS.c.id == run_id)).first()
    if row is None:
        if worker_side:
            raise LostClaim(f"run {run_id} is no longer held by this worker (it was deleted)")
        raise RunNotFound(run_id)
    status, attempt, worker = row
    if worker_side or status in sources:
        raise LostClaim(f"run {run_id} is no longer held by this worker "
                        f"(it is {status}, attempt {attempt}, worker {worker or '-'})")
    allowed = " or ".join(sorted(str(x) for x in sources))
    raise InvalidTransition(f"run {run_id} is {status}: cannot {verb} it "
                            f"(only {allowed} runs can be)")


__all__ = ["fence", "held_by", "refuse"]
