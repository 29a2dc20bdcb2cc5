"""Stopping on signals: the first asks for a warm stop, the second for a cold one.

The convention every long-running DM Studio process follows (``dm worker``, ``dm up``,
``dm train``): the first SIGTERM/SIGINT asks for a warm stop -- finish the current step,
write a checkpoint, hand the run back, exit cleanly -- and the second for a cold stop, at
once. ``StopSignals`` counts the signals and calls ``on_warm`` / ``on_cold`` with the
signal's name; the process polls ``warm`` (a flag read, no I/O) where it can stop cleanly.

    with StopSignals(on_cold=lambda name: sys.exit(1)) as stops:
        while not stops.warm:
            work()

Handlers are only installed in the main thread (the only one Python delivers signals to);
elsewhere the object still counts ``request_warm()`` calls, so a caller in another thread
can stop the loop the same way.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

DEFAULT_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    """Counts stop signals while installed (see the module docstring)."""

    def __init__(self, signals: Sequence[signal.Signals] = DEFAULT_SIGNALS, *,
                 on_warm: Callable[[str], Any] | None = None,
                 on_cold: Callable[[str], Any] | None = None) -> None:
        self.signals = tuple(signals)
        self.on_warm, self.on_cold = on_warm, on_cold
        self.count = 0  # only ever goes up: read without a lock
        self._previous: dict[signal.Signals, Any] = {}

    @property
    def warm(self) -> bool:
        """A stop was asked for (first signal, or ``request_warm``)."""
        return self.count >= 1

    @property
    def cold(self) -> bool:
        """A second signal: stop at once."""
        return self.count >= 2

    def request_warm(self) -> None:
        """What the first signal does, from code: ask for a warm stop."""
        self.count = max(self.count, 1)

    def handle(self, signum: int, frame: FrameType | None = None) -> None:  # noqa: ARG002
        """The signal handler (also callable directly, e.g. from a test)."""
        self.count += 1
        name = signal.Signals(signum).name
        if self.count == 1 and self.on_warm is not None:
            self.on_warm(name)
        elif self.count == 2 and self.on_cold is not None:
            self.on_cold(name)

    def install(self) -> StopSignals:
        """Install the handlers (main thread only; elsewhere a no-op)."""
        if threading.current_thread() is threading.main_thread() and not self._previous:
            self._previous = {s: signal.signal(s, self.handle) for s in self.signals}
        return self

    def restore(self) -> None:
        """Put the previous handlers back."""
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}

    def __enter__(self) -> StopSignals:
        return self.install()

    def __exit__(self, *exc: object) -> None:
        self.restore()


__all__ = ["DEFAULT_SIGNALS", "StopSignals"]
