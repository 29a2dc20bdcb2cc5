"""Holding a run at an iteration: a breakpoint for looking at a run half-way.

A worker built with ``Worker(hold_at=k)`` stops each run it trains right after iteration k
(``hold_at=(k1, k2)``: after each of them, one release each):
every event of iterations 1..k is written to the store first, then the training loop waits
-- its heartbeat going on, so no reaper takes the run away -- until the worker process gets
SIGCONT (``kill -CONT <pid>``), or a stop (SIGTERM/SIGINT) or a cancel is asked for. While it
waits, the dashboard, ``dm runs`` or a debugger see the run exactly at iteration k, however
fast or slow the machine trains; the log says so in one line.

It is off unless the worker is constructed with ``hold_at``: no environment variable, file
or stored setting turns it on, so no user trips it by accident. A run resumed from a
checkpoint after k never reaches k and is not held; a run that reaches k again (a relabel
phase counts from 1 again) is held again.

SIGCONT was chosen because it is the signal that means "go on": it also wakes a process
that was stopped (SIGSTOP, Ctrl-Z), and its default action ignores it, so a SIGCONT sent to
a worker that holds nothing changes nothing.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Collection
from types import FrameType
from typing import Any

log = logging.getLogger("dm.worker")

RELEASE_SIGNAL = signal.SIGCONT


class IterationHold:
    """Holds training after each of ``iterations`` (one, or several: a test that looks at a
    run twice while it trains) until ``release`` (SIGCONT, see the module docstring).
    ``held`` counts the holds, for the log and for tests."""

    def __init__(self, iterations: int | Collection[int]) -> None:
        several = isinstance(iterations, Collection) and not isinstance(iterations, str | bytes)
        wanted = tuple(iterations) if several else (iterations,)
        for iteration in wanted:
            if isinstance(iteration, bool) or not isinstance(iteration, int) or iteration < 1:
                raise ValueError(f"hold_at: an iteration >= 1 is needed, got {iteration!r}")
        if not wanted:
            raise ValueError("hold_at: an iteration >= 1 is needed, got none")
        self.iterations = frozenset(wanted)
        self.held = 0
        self._released = threading.Event()
        self._previous: Any = None
        self._installed = False

    def release(self, signum: int | None = None, frame: FrameType | None = None) -> None:  # noqa: ARG002
        """Let a held run go on (the SIGCONT handler; callable from code too)."""
        self._released.set()

    def hold(self, run_id: int, iteration: int, flush: Callable[[], Any],
             interrupted: Callable[[], str | None], poll: float = 0.1) -> bool:
        """At one of ``self.iterations``: ``flush`` what is buffered, then wait for a
        release, or for ``interrupted`` (the worker's ``should_stop``) to give a reason.
        Returns whether it held."""
        if iteration not in self.iterations:
            # Forget releases sent before the run reached k: a release counts once the run's
            # iteration k can be seen, which is only after this (every row of k comes later).
            self._released.clear()
            return False
        flush()
        self.held += 1
        log.warning("run %d: held at iteration %d (hold_at); `kill -CONT %d` lets it go on",
                    run_id, iteration, os.getpid())
        while not self._released.wait(poll):
            if interrupted() is not None:
                break
        self._released.clear()  # spent: a hold at the next iteration waits for its own
        log.info("run %d: released at iteration %d", run_id, iteration)
        return True

    # -- the release signal's handler ---------------------------------------------------

    def __enter__(self) -> IterationHold:
        """Install the SIGCONT handler (main thread only: elsewhere ``release`` still works)."""
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(RELEASE_SIGNAL, self.release)
            self._installed = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            signal.signal(RELEASE_SIGNAL, self._previous)
            self._installed = False


__all__ = ["RELEASE_SIGNAL", "IterationHold"]
