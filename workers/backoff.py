"""Riding out a database outage: retry with exponential backoff, for a bounded time.

    from workers.backoff import Backoff, retrying

    retrying(lambda: store.finish(run_id, worker_id, "succeeded"), "run 3: record succeeded",
             Backoff(give_up_after=60))

Only ``StoreUnavailable`` is retried (the connection was refused or lost, the server is
restarting, SQLite stayed locked, the disk is full): any other error -- a bug, a lost claim,
a refused transition -- would fail the same way again and propagates at once. Each failed try
logs one line saying what failed, why, and when the next try comes::

    run 3: record succeeded: database unavailable (database error (...): connection refused);
    retry 2 in 0.50 s (giving up 59 s from now)

the first success after failures logs how long the outage lasted, and giving up logs an
error and re-raises the last ``StoreUnavailable``.

Every part of a worker that talks to the database -- the claim loop, the heartbeat thread,
the metrics sink, recording an outcome -- keeps its own ``Outage`` (since when it has been
failing, how many tries, when to try next), and they all report to the worker's one
``DatabaseHealth``: a worker that could not reach the database itself in the last
``stale_after`` seconds does not judge other workers dead for their missing heartbeats
(they could not reach it either).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from dm_store import StoreUnavailable

log = logging.getLogger("dm.worker")

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    """Waits of ``first · factor^(n-1)`` seconds before the n-th retry, at most ``cap``, with
    ±``jitter`` (a fraction) so that workers cut off together do not reconnect in lockstep;
    no retry is started later than ``give_up_after`` seconds after the first failure.

    >>> [Backoff(first=0.25, cap=2.0, jitter=0.0).delay(n) for n in range(1, 6)]
    [0.25, 0.5, 1.0, 2.0, 2.0]
    """

    first: float = 0.25
    factor: float = 2.0
    cap: float = 8.0
    give_up_after: float = 60.0
    jitter: float = 0.1

    def delay(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failure in a row (1, 2, ...)."""
        base = min(self.cap, self.first * self.factor ** max(0, failures - 1))
        if self.jitter:
            base *= 1.0 + random.uniform(-self.jitter, self.jitter)
        return base


class DatabaseHealth:
    """When any part of one worker last failed to reach the database (see the module
    docstring). Written from several threads: a single float assignment, no lock needed."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.last_failure: float | None = None

    def note_failure(self) -> None:
        self.last_failure = self._clock()

    def failed_within(self, seconds: float) -> bool:
        """Whether a failure was noted in the last ``seconds``."""
        return self.last_failure is not None and self._clock() - self.last_failure < seconds


class Outage:
    """One caller's view of an outage: since when its tries fail (``since``), how many in a
    row (``failures``), when the next try is due (``next_try``, after ``backoff``).

    >>> now = [0.0]
    >>> o = Outage(Backoff(first=1.0, jitter=0.0, give_up_after=5.0), clock=lambda: now[0])
    >>> o.failed(), o.failed(), o.ongoing
    (1.0, 2.0, True)
    >>> now[0] = 6.0; o.exhausted(), o.recovered()
    (True, (6.0, 2))
    >>> o.ongoing, o.recovered()
    (False, None)
    """

    def __init__(self, backoff: Backoff, *, clock: Callable[[], float] = time.monotonic,
                 health: DatabaseHealth | None = None) -> None:
        self.backoff, self._clock, self.health = backoff, clock, health
        self.since: float | None = None
        self.failures = 0
        self.next_try = 0.0

    @property
    def ongoing(self) -> bool:
        return self.since is not None

    def down_for(self) -> float:
        """Seconds since the first failure of this outage (0 when there is none)."""
        return 0.0 if self.since is None else self._clock() - self.since

    def failed(self) -> float:
        """Count one failed try; return the wait before the next one (``next_try``)."""
        now = self._clock()
        if self.since is None:
            self.since = now
        self.failures += 1
        wait = self.backoff.delay(self.failures)
        self.next_try = now + wait
        if self.health is not None:
            self.health.note_failure()
        return wait

    def exhausted(self, wait: float = 0.0) -> bool:
        """Whether waiting ``wait`` more seconds would pass ``backoff.give_up_after``."""
        return self.down_for() + wait > self.backoff.give_up_after

    def due(self) -> bool:
        return self._clock() >= self.next_try

    def recovered(self) -> tuple[float, int] | None:
        """A try succeeded: (how long the outage lasted, failed tries), or None if there was
        no outage. The outage is over."""
        if self.since is None:
            return None
        lasted = (self._clock() - self.since, self.failures)
        self.since, self.failures, self.next_try = None, 0, 0.0
        return lasted


def retrying(action: Callable[[], T], what: str, backoff: Backoff | None = None, *,
             sleep: Callable[[float], None] = time.sleep,
             clock: Callable[[], float] = time.monotonic,
             logger: logging.Logger = log, health: DatabaseHealth | None = None) -> T:
    """Call ``action`` until it does not raise ``StoreUnavailable`` or ``backoff`` gives up
    (then the last error is raised). ``what`` names the action in the log lines."""
    outage = Outage(backoff or Backoff(), clock=clock, health=health)
    started = clock()  # the first try's own duration counts (e.g. a busy timeout)
    while True:
        try:
            result = action()
        except StoreUnavailable as err:
            elapsed = clock() - started
            wait = outage.failed()
            if elapsed + wait > outage.backoff.give_up_after:
                logger.error("%s: database unavailable for %.1f s (%d tries); giving up: %s",
                             what, elapsed, outage.failures, err)
                raise
            logger.warning("%s: database unavailable (%s); retry %d in %.2f s (giving up "
                           "%.0f s from now)", what, err, outage.failures, wait,
                           outage.backoff.give_up_after - elapsed)
            sleep(wait)
            continue
        lasted = outage.recovered()
        if lasted is not None:
            logger.warning("%s: database reachable again after %.1f s (%d failed tries)",
                           what, clock() - started, lasted[1])
        return result


__all__ = ["Backoff", "DatabaseHealth", "Outage", "retrying"]
