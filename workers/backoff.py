"""Riding out a database outage: retry with exponential backoff, for a bounded time.

    from workers.backoff import Backoff, retrying

    retrying(lambda: store.finish(run_id, worker_id, "succeeded"), "run 3: record succeeded",
             Backoff(give_up_after=60))

Only ``StoreUnavailable`` is retried (the connection was refused or lost, the server is
restarting, SQLite stayed locked): any other error -- a bug, a lost claim, a refused
transition -- would fail the same way again and propagates at once. Each failed try logs one
line saying what failed, why, and when the next try comes::

    run 3: record succeeded: database unavailable (database error (...): connection refused);
    retry 2 in 0.50 s (giving up 59 s from now)

the first success after failures logs how long the outage lasted, and giving up logs an
error and re-raises the last ``StoreUnavailable``.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from dm_core.store import StoreUnavailable

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


def retrying(action: Callable[[], T], what: str, backoff: Backoff | None = None, *,
             sleep: Callable[[float], None] = time.sleep,
             clock: Callable[[], float] = time.monotonic,
             logger: logging.Logger = log) -> T:
    """Call ``action`` until it does not raise ``StoreUnavailable`` or ``backoff`` gives up
    (then the last error is raised). ``what`` names the action in the log lines."""
    backoff = backoff or Backoff()
    failures, started = 0, clock()
    while True:
        try:
            result = action()
        except StoreUnavailable as err:
            failures += 1
            elapsed = clock() - started
            wait = backoff.delay(failures)
            if elapsed + wait > backoff.give_up_after:
                logger.error("%s: database unavailable for %.1f s (%d tries); giving up: %s",
                             what, elapsed, failures, err)
                raise
            logger.warning("%s: database unavailable (%s); retry %d in %.2f s (giving up "
                           "%.0f s from now)", what, err, failures, wait,
                           backoff.give_up_after - elapsed)
            sleep(wait)
            continue
        if failures:
            logger.warning("%s: database reachable again after %.1f s (%d failed tries)",
                           what, clock() - started, failures)
        return result


__all__ = ["Backoff", "retrying"]
