"""The ``--db`` option every command that reads or writes runs takes, and the store it opens.

The URL comes from ``--db``, else ``$DM_DATABASE_URL`` (``DM_DATABASE_URL_FILE`` names a file
holding it), else ``sqlite:///./var/dm.sqlite`` (``dm_store.database.resolve_url``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import typer

from dm_store import Store

__all__ = ["db_option", "open_store"]


def db_option() -> Any:
    return typer.Option(None, "--db", envvar="DM_DATABASE_URL", show_envvar=True,
                        help="Database URL (default: sqlite:///./var/dm.sqlite).")


def _say_store_warnings() -> None:
    """Send the store's warnings to stderr when the command set up no logging of its own: a
    writer waiting for a locked SQLite database says so while it waits (``dm cancel`` behind
    a stuck lock holder), instead of a minute of silence."""
    store_log = logging.getLogger("dm.store")
    if not store_log.hasHandlers():
        handler = logging.StreamHandler()  # stderr
        handler.setLevel(logging.WARNING)
        handler.setFormatter(logging.Formatter("dm: %(message)s"))
        store_log.addHandler(handler)


def open_store(db: str | None, artifacts: Path | None = None, *, create: bool = True) -> Store:
    """The store at ``db``. Commands that only read or manage existing runs pass
    ``create=False``: given a SQLite file that is not there (moved, deleted) they fail naming
    it, instead of starting an empty database whose run ids begin again at 1. Only commands
    that start something (``dm submit``, ``dm worker``, ``dm db upgrade``) create one."""
    _say_store_warnings()
    return Store(db, artifacts, create=create)
