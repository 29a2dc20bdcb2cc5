"""Shared fixtures: a throw-away PostgreSQL cluster and database URLs for store tests.

``postgres_url`` starts its own PostgreSQL cluster on 127.0.0.1 in a temp dir (initdb +
pg_ctl, once per test session and xdist worker) and yields a URL to its ``postgres``
database. Without PostgreSQL's server binaries it skips with the reason, except under
``CI=true``, where every test must run and it fails instead. ``DM_TEST_POSTGRES_URL`` points
it at an existing server instead (a CI service container, say).

``db_url`` is parametrised over ``sqlite`` and ``postgres``: a fresh SQLite file, or a fresh
database created in the cluster (dropped afterwards), per test.

``reliability`` (from ``tests/reliability_report.py``) lets a fault test count its trials,
injected faults and lost data into ``docs/reliability.md``.

The cluster itself (initdb + pg_ctl, as the ``postgres`` user through ``runuser`` when run
as root: docs/architecture.md, "PostgreSQL in tests, as root") is ``dm_store.testing``,
shared with the benchmarks.
"""

from __future__ import annotations

import os
from contextlib import ExitStack

import pytest

from dm_store.testing import (
    PostgresStartFailed,
    PostgresUnavailable,
    fresh_database,
    temporary_cluster,
)

# The ``reliability`` fixture and the hooks that write docs/reliability.md at session end.
pytest_plugins = ("reliability_report",)


def _missing(reason: str) -> None:
    """Skip, or under CI=true fail: CI must run every test."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_url():
    """URL of a PostgreSQL server for this test session (see the module docstring)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _missing("psycopg is not installed (pip install -e .[dev])")
    external = os.environ.get("DM_TEST_POSTGRES_URL")
    if external:
        yield external
        return
    with ExitStack() as stack:
        try:
            url = stack.enter_context(temporary_cluster())
        except PostgresUnavailable as err:
            _missing(f"{err} to run the PostgreSQL tests")
        except PostgresStartFailed as err:
            pytest.fail(str(err), pytrace=False)
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, tmp_path):
    """A fresh, empty database: SQLite file or PostgreSQL database (one per test)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'dm.sqlite'}"
        return
    server = request.getfixturevalue("postgres_url")
    with fresh_database(server) as url:
        yield url


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models in-process: threads only contend (and a fixed count keeps results
    reproducible). Use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
