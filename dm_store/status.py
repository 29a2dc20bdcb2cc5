"""The life of a run: its statuses and the transitions between them.

Plain Python (no database, no numpy), so that the CLI can name the statuses in its help
without loading the store.
"""

from __future__ import annotations

import enum


class RunStatus(enum.StrEnum):
    """Where a run is in its life. Allowed transitions (``TRANSITIONS``)::

        queued    -> running     a worker claims it (claim)
                  -> cancelled   cancel before it started (cancel)
        running   -> succeeded   training finished (finish)
                  -> failed      diverged or raised (finish); or its worker was lost and
                                 max_attempts are used up (requeue_stale)
                  -> cancelled   the worker honoured cancel_requested (finish), or the worker
                                 was lost after a cancel was requested (requeue_stale)
                  -> queued      warm stop: the worker checkpointed and handed it back, or its
                                 worker was lost and attempts remain (release, requeue_stale)
        failed    -> queued      retry: from scratch (data of the old attempts cleared) or
                                 from its checkpoint (rows after it cleared); attempt reset
                                 to 1, retries + 1, so (retries, attempt) never repeats
        cancelled -> queued      retry
        succeeded    final

    ``delete`` removes a run in any status but ``running``.
    """

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


STATUSES: tuple[str, ...] = tuple(s.value for s in RunStatus)
"""The status names, in life order (the database's CHECK constraint lists exactly these)."""

TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.QUEUED: frozenset({RunStatus.RUNNING, RunStatus.CANCELLED}),
    RunStatus.RUNNING: frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED,
                                  RunStatus.QUEUED}),
    RunStatus.SUCCEEDED: frozenset(),
    RunStatus.FAILED: frozenset({RunStatus.QUEUED}),
    RunStatus.CANCELLED: frozenset({RunStatus.QUEUED}),
}
FINAL_STATUSES = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)


def sources_of(target: RunStatus) -> frozenset[RunStatus]:
    """The statuses from which ``target`` may be reached.

    >>> sorted(str(s) for s in sources_of(RunStatus.QUEUED))
    ['cancelled', 'failed', 'running']
    """
    return frozenset(s for s, targets in TRANSITIONS.items() if target in targets)


def parse_status(value: str | RunStatus) -> RunStatus:
    """``value`` as a ``RunStatus``; a ``ValueError`` naming the allowed values otherwise.

    >>> parse_status("queued")
    <RunStatus.QUEUED: 'queued'>
    """
    try:
        return RunStatus(str(value))
    except ValueError:
        raise ValueError(f"status: {value!r} is not one of {', '.join(STATUSES)}") from None


__all__ = ["FINAL_STATUSES", "STATUSES", "TRANSITIONS", "RunStatus", "parse_status", "sources_of"]
