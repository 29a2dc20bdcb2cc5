"""The heartbeat of a training worker: proof of life, cancel requests, and reaping.

While a run trains, ``Heartbeat`` records a heartbeat every few seconds (database time, fenced
by the claim: a worker that lost its run learns it here), reads ``cancel_requested`` every
second in between, and reaps other workers' stale runs after each of its own beats.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from dm_store import ClaimedRun, DatabaseReplaced, LostClaim, Store, StoreError
from workers.backoff import Backoff, DatabaseHealth, Outage

log = logging.getLogger("dm.worker")

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
    reads (no locking needed: each is only ever set to True); ``replaced`` is the
    ``DatabaseReplaced`` a beat got (the database is not the one the worker started with),
    after which the thread stops.
    """

    def __init__(self, store: Store, run: ClaimedRun, every: float,
                 reap: Callable[[], Any] | None = None,
                 health: DatabaseHealth | None = None) -> None:
        self.store, self.run, self.every, self.reap = store, run, every, reap
        self.cancel_requested = False
        self.lost = False
        self.replaced: DatabaseReplaced | None = None
        self._outage = Outage(Backoff(first=every, factor=1.0, jitter=0.0), health=health)
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
            if self.lost or self.replaced is not None:
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
        except DatabaseReplaced as err:
            log.error("run %d: %s", self.run.id, err)
            self.replaced = err
            return False
        except StoreError as err:  # the reaper decides if it lasts too long
            if not self._outage.ongoing:  # one line per outage, not one per beat
                log.warning("run %d: heartbeat failed (%s); retrying every %g s",
                            self.run.id, err, self.every)
            self._outage.failed()
            return False
        except Exception:  # never let the thread die silently
            log.exception("run %d: heartbeat failed", self.run.id)
            return False
        lasted = self._outage.recovered()
        if lasted is not None:
            log.warning("run %d: heartbeat restored after %.1f s", self.run.id, lasted[0])
        self._note_cancel(cancel)
        return True

    def _poll_cancel(self) -> None:
        """The cheap read between beats; an error is left to the next beat to report."""
        if self.cancel_requested or self._outage.ongoing:
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


__all__ = ["CANCEL_POLL_S", "Heartbeat"]
