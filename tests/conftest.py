"""Shared fixtures: a throw-away PostgreSQL cluster and database URLs for store tests.

``postgres_url`` starts its own PostgreSQL cluster on 127.0.0.1 in a temp dir (initdb +
pg_ctl, once per test session and xdist worker) and yields a URL to its ``postgres``
database. Without PostgreSQL's server binaries it skips with the reason, except under
``CI=true``, where every test must run and it fails instead. ``DM_TEST_POSTGRES_URL`` points
it at an existing server instead (a CI service container, say).

``db_url`` is parametrised over ``sqlite`` and ``postgres``: a fresh SQLite file, or a fresh
database created in the cluster (dropped afterwards), per test.

As root (CI containers), initdb and postgres refuse to run: the cluster is made by the
``postgres`` user with ``runuser`` in a directory chowned to it (PITFALLS.md 16).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

PG_USER = "dm"


def _missing(reason: str) -> None:
    """Skip, or under CI=true fail: CI must run every test."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason)


def _pg_bindir() -> Path | None:
    candidates = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True,
                                 timeout=30, check=True)
            candidates.append(Path(out.stdout.strip()))
        except (subprocess.SubprocessError, OSError):
            pass
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    candidates += [Path(p).parent for p in filter(None, [shutil.which("initdb")])]
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file():
            return bindir
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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

    bindir = _pg_bindir()
    if bindir is None:
        _missing("PostgreSQL server binaries (initdb, pg_ctl) were not found; install "
                 "postgresql (e.g. apt-get install postgresql) to run the PostgreSQL tests")

    as_root = os.geteuid() == 0
    prefix: list[str] = []
    if as_root:
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            _missing("running as root and there is no 'postgres' user to run initdb as")
        if shutil.which("runuser") is None:
            _missing("running as root and `runuser` is missing (needed to run initdb as postgres)")
        prefix = ["runuser", "-u", "postgres", "--"]

    # Not under pytest's tmp dir: its parents are private to root, so user postgres could not
    # enter it. A short path also keeps the unix socket path under its length limit.
    root = Path(tempfile.mkdtemp(prefix="dm-pg-"))
    if as_root:
        os.chown(root, pw.pw_uid, pw.pw_gid)
    data, log = root / "data", root / "log"
    port = _free_port()

    def run(*args: str, timeout: float = 120) -> None:
        result = subprocess.run(prefix + list(args), capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip()
            if log.exists():
                detail += "\n" + log.read_text(errors="replace")[-2000:]
            pytest.fail(f"{Path(args[0]).name} failed: {detail}", pytrace=False)

    run(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", PG_USER, "-E", "UTF8",
        "--no-sync")
    # Test-only settings: durability off (a crashed test cluster is simply thrown away).
    options = (f"-p {port} -c listen_addresses=127.0.0.1 -k {root} -c fsync=off "
               f"-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
    run(str(bindir / "pg_ctl"), "-D", str(data), "-w", "-t", "60", "-o", options, "-l", str(log),
        "start")
    try:
        yield f"postgresql+psycopg://{PG_USER}@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(prefix + [str(bindir / "pg_ctl"), "-D", str(data), "-w", "-m", "immediate",
                                 "stop"], capture_output=True, timeout=120)
        shutil.rmtree(root, ignore_errors=True)


def _fresh_postgres_database(server_url: str):
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(server_url)
    name = f"dm_test_{uuid.uuid4().hex[:12]}"
    conninfo = dict(host=url.host, port=url.port, user=url.username, password=url.password,
                    dbname=url.database or "postgres", autocommit=True)
    with psycopg.connect(**{k: v for k, v in conninfo.items() if v is not None}) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(**{k: v for k, v in conninfo.items() if v is not None}) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, tmp_path):
    """A fresh, empty database: SQLite file or PostgreSQL database (one per test)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'dm.sqlite'}"
        return
    server = request.getfixturevalue("postgres_url")
    yield from _fresh_postgres_database(server)
