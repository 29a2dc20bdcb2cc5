"""The store's errors: what a caller can tell apart and act on.

``StoreUnavailable`` is the only one worth retrying (``workers.backoff``); ``LostClaim`` tells
a worker to drop the run it was training; ``DatabaseFull`` waits for space, not for a server;
``DatabaseReplaced`` stops a worker; the others are answers to the caller's request.
"""

from __future__ import annotations


class StoreError(RuntimeError):
    """A database problem (unreachable, locked too long, schema mismatch), with a clear message."""


class StoreUnavailable(StoreError):
    """The database could not be reached or stayed busy: the connection was refused or lost
    (a server restarting, a network blip), SQLite stayed locked past its busy timeout, or a
    lock wait timed out. Worth retrying with a backoff, unlike any other ``StoreError`` (a bug
    or a bad schema fails the same way every time)."""


class DatabaseFull(StoreError):
    """The disk holding the database is full: nothing can be written until someone frees
    space. Not an outage: it does not pass by itself within seconds, so it is not retried with
    the outage's backoff (a worker pauses its run until space returns instead; see
    docs/architecture.md, "Out of space")."""


class DatabaseReplaced(StoreError):
    """The database is not the one this process started with: its SQLite file was deleted or
    replaced by another file, or its identity (``database_identity``) changed -- a database
    dropped and created again, or another one restored in its place. Nothing is written: a
    worker's runs, attempts and files belong to the old database (``dm_store.identity``)."""


class RunNotFound(KeyError):
    """No run has this id."""

    def __init__(self, run_id: int) -> None:
        super().__init__(run_id)
        self.run_id = run_id

    def __str__(self) -> str:
        return f"run {self.run_id} does not exist (see `dm runs`)"


class InvalidTransition(StoreError):
    """The run's status does not allow this change (e.g. retrying a run that succeeded)."""


class LostClaim(StoreError):
    """The run is no longer held by this worker: it was re-queued, reclaimed, finished or
    deleted behind its back. The worker drops the run and writes nothing more for it."""


__all__ = ["DatabaseFull", "DatabaseReplaced", "InvalidTransition", "LostClaim", "RunNotFound",
           "StoreError", "StoreUnavailable"]
