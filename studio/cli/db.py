"""``dm db upgrade``: apply the database's pending schema migrations.

Safe while other processes run: the store serialises concurrent upgrades (``dm_store``).
"""

from __future__ import annotations

import typer

from studio.cli._app import app
from studio.cli.exits import user_errors
from studio.cli.store_access import db_option, open_store

db_app = typer.Typer(help="Database schema: dm db upgrade.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade(db: str | None = db_option()) -> None:
    """Apply pending schema migrations (safe while other processes run)."""
    with user_errors():
        store = open_store(db)
        revision = store.upgrade()
    typer.echo(f"database {store.masked_url} is at schema revision {revision}")
