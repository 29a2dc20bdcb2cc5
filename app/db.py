"""The dashboard's one connection to the store.

``get_store(url)`` is cached per URL with ``st.cache_resource``: one ``Store`` (one SQLAlchemy
engine and its pool) shared by every session of this server, and a different one for a
different URL, so tests that point ``DM_DATABASE_URL`` at a fresh file never see a stale
engine (docs/architecture.md, "Streamlit: one engine per database URL"). Pages never build
their own engine: they call ``store()``.
"""

from __future__ import annotations

import os

import streamlit as st

from app.text import md
from dm_store import Store, StoreError, mask_url, resolve_url

ENV_URL = "DM_DATABASE_URL"

__all__ = ["ENV_URL", "database_url", "get_store", "store", "store_or_stop"]


def database_url() -> str:
    """The database URL of this dashboard: ``$DM_DATABASE_URL``, else ./var/dm.sqlite."""
    return resolve_url(os.environ.get(ENV_URL) or None)


@st.cache_resource(show_spinner=False)
def get_store(url: str) -> Store:
    """The one Store for ``url`` (cached for the life of the server process)."""
    return Store(url)


def store() -> Store:
    """The Store of this dashboard's database."""
    return get_store(database_url())


def store_or_stop() -> Store:
    """The Store, after checking the database answers; otherwise an error box and ``st.stop()``."""
    s = store()
    try:
        s.queue_counts()
    except StoreError as err:
        st.error(f"The run database cannot be reached: {md(err)}")
        st.caption(f"Database: {mask_url(database_url())} (set {ENV_URL} to change it).")
        st.stop()
    return s


def runs_or_stop(s: Store, limit: int, empty: str) -> list:
    """The newest ``limit`` runs; with none, ``empty`` as an info box and ``st.stop()``."""
    runs = s.list_runs(limit=limit)
    if not runs:
        st.info(empty)
        st.stop()
    return runs
