"""Alembic environment for the DM Studio store.

``Store.upgrade()`` (and ``dm db upgrade``) opens the connection itself, inside the lock that
makes concurrent upgrades safe (SQLite: BEGIN IMMEDIATE; PostgreSQL: an advisory lock), and
hands it over as ``config.attributes["connection"]`` (Alembic cookbook, "Sharing a
Connection"). Run on its own (``alembic -x url=...``), it opens a connection from the URL.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from dm_store.models import Base

target_metadata = Base.metadata
try:
    config = context.config
except AttributeError:  # imported outside Alembic (pytest --doctest-modules): nothing to run
    config = None


def _configure(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things: batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():  # a no-op inside the caller's transaction
            context.run_migrations()
        return
    url = (context.get_x_argument(as_dictionary=True).get("url")
           or config.get_main_option("sqlalchemy.url"))
    engine = create_engine(url)
    with engine.connect() as connection:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if config is not None:
    if context.is_offline_mode():
        raise SystemExit("offline (--sql) migrations are not supported; run `dm db upgrade`")
    run_migrations_online()
