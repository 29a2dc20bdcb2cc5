"""Which database this is: a process notices when its database is replaced under it.

A database can change under a running process without any error: the SQLite file deleted and
created again by ``dm submit`` (run ids start over at 1), a backup moved over it, a
PostgreSQL database dropped and created again. A process that kept connections open would
then write into a deleted file nobody reads, or into another database whose run 1 is not the
run 1 it trained -- and report success.

So every database carries an identity, and every writing transaction checks it first
(``Database.session``, before any other statement, under the write lock):

- ``database_identity`` holds one random UUID, written once by the migration that creates it
  (``migrations/versions/0005``). The process remembers the UUID its first write found; a
  later write that finds another one (or none) refuses. This covers both backends.
- For SQLite, the file itself: its (device, inode) is recorded when each connection is opened
  (``watch``), and the first one is what the process started with. A write refuses when the
  path no longer exists (deleted or moved away), when it is now another file (replaced: a new
  database, or a backup moved over it), or when its own connection was opened on another file
  than the first. A backup restored by copying it over the live file in place keeps both the
  inode and the UUID, and is not told apart.

A refusal is ``DatabaseReplaced``, raised before anything is written; a worker stops on it
with the message (``workers.worker``): its runs, attempts and checkpoint files belong to the
old database. Reads are not checked: the dashboard and ``dm runs`` show what is there now.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from dm_store.errors import DatabaseReplaced
from dm_store.models import IDENTITY

# Where a pooled connection keeps the (device, inode) of the file it was opened on.
FILE_KEY = "dm_sqlite_file"


def file_id(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the file at ``path``, or None when there is none."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


class DatabasePin:
    """What one process remembers of the database it started with (see the module docstring),
    and the check every writing transaction makes against it. Thread-safe: a worker writes
    from its training loop and its heartbeat thread."""

    def __init__(self, masked_url: str, path: Path | None) -> None:
        self.masked_url, self.path = masked_url, path
        self.first_file: tuple[int, int] | None = None
        self.uuid: str | None = None
        self._remembered = False
        self._lock = threading.Lock()

    def watch(self, engine: Engine) -> None:
        """Record the file each new connection of ``engine`` opens (SQLite files only)."""
        if self.path is None:
            return

        @event.listens_for(engine, "connect")
        def _record_file(_dbapi_connection, record) -> None:
            opened = file_id(self.path)
            record.info[FILE_KEY] = opened
            with self._lock:
                if self.first_file is None:
                    self.first_file = opened

    def check(self, s: Session) -> None:
        """Raise ``DatabaseReplaced`` unless ``s`` writes to the database this process started
        with; the first call remembers its UUID. Runs as the transaction's first statement."""
        if self.path is not None:
            self._check_file(s)
        found = s.execute(select(IDENTITY.c.uuid)).scalars().all()
        uuid = found[0] if len(found) == 1 else None
        with self._lock:
            if not self._remembered:
                self.uuid, self._remembered = uuid, True
                return
            expected = self.uuid
        if uuid != expected:
            now = f"now {uuid}" if uuid else f"now {len(found)} identities"
            raise DatabaseReplaced(
                f"the database {self.masked_url} is not the one this process started with "
                f"(database identity {expected}, {now}): it was dropped and created again, or "
                "another database was put in its place. Nothing was written: its runs, attempts "
                "and checkpoint files belong to the old database. Start the process again to "
                "work with the database there now")

    def _check_file(self, s: Session) -> None:
        connection: Any = s.connection().connection  # the pooled DBAPI connection
        opened_on = connection.info.get(FILE_KEY)
        now = file_id(self.path)
        if now is None:
            raise DatabaseReplaced(
                f"the SQLite database {self.path} was deleted or moved away while this process "
                "used it. Nothing was written: what is written now would go to a file nobody "
                "reads any more. Start the process again to work with the database at that path "
                "(commands that start something create one there)")
        if now != self.first_file or opened_on != self.first_file:
            raise DatabaseReplaced(
                f"the SQLite database {self.path} was replaced by another file (a new database, "
                "or a backup moved over it) while this process used it. Nothing was written: "
                "its runs, attempts and checkpoint files belong to the file it started with. "
                "Start the process again to work with the database there now")


__all__ = ["FILE_KEY", "DatabasePin", "file_id"]
