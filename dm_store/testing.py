"""A throw-away PostgreSQL server for tests and benchmarks (initdb + pg_ctl in a temp dir).

    from dm_store.testing import temporary_cluster, fresh_database

    with temporary_cluster() as server:          # postgresql+psycopg://dm@127.0.0.1:PORT/postgres
        with fresh_database(server) as url:       # a new, empty database; dropped afterwards
            Store(url).submit(...)

    stop_server(server)                          # an outage: clients get connection errors
    start_server(server)                         # back, same port and data

Used by ``tests/conftest.py`` (the ``postgres_url`` fixture), ``tests/test_faults.py`` (the
server restarted under running workers) and ``benchmarks/bench_queue.py``.
The cluster listens on 127.0.0.1 only, with durability off (``fsync=off``): it exists to be
thrown away.

As root (CI containers), ``initdb`` and ``postgres`` refuse to run: the cluster is made by the
``postgres`` user through ``runuser``, in a directory chowned to it (docs/architecture.md, "PostgreSQL in tests"). The
binaries are found with ``pg_config --bindir``, then under ``/usr/lib/postgresql/*/bin``.

Errors: ``PostgresUnavailable`` when this machine cannot start a server at all (no binaries,
no ``postgres`` user, no psycopg) -- a test skips on it; ``PostgresStartFailed`` when the
binaries are there but initdb or pg_ctl failed -- a real error, with the server log's tail.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

PG_USER = "dm"

# Throw-away settings: a crashed test cluster is simply deleted, so durability buys nothing.
_SERVER_SETTINGS = ("-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                    "-c max_connections=200")


class PostgresUnavailable(RuntimeError):
    """This machine cannot run a PostgreSQL server (the message says what is missing)."""


class PostgresStartFailed(RuntimeError):
    """initdb or pg_ctl ran and failed (the message carries their output and the log's tail)."""


@dataclass(frozen=True)
class _Cluster:
    """How to stop and start one running temporary cluster again."""

    run: Callable[..., None]
    pg_ctl: str
    data: Path
    log: Path
    options: str


# URL (as yielded by temporary_cluster) -> its cluster, while the context is open.
_CLUSTERS: dict[str, _Cluster] = {}


def _cluster(server_url: str) -> _Cluster:
    from sqlalchemy.engine import make_url

    url = make_url(server_url)
    for known, cluster in _CLUSTERS.items():
        other = make_url(known)
        if (other.host, other.port) == (url.host, url.port):
            return cluster
    raise PostgresUnavailable(f"{url.host}:{url.port} is not a temporary cluster of this "
                              "process (an external server cannot be stopped by the tests)")


def stop_server(server_url: str, mode: str = "fast") -> None:
    """Stop the temporary cluster serving ``server_url`` (any of its databases' URLs).

    ``mode`` is pg_ctl's: ``fast`` ends every session (clients see their connection dropped),
    ``immediate`` is a crash. Raises ``PostgresUnavailable`` for a server not started here.
    """
    c = _cluster(server_url)
    c.run(c.pg_ctl, "-D", str(c.data), "-w", "-t", "60", "-m", mode, "stop")


def start_server(server_url: str) -> None:
    """Start a temporary cluster stopped by ``stop_server`` again: same port, same data."""
    c = _cluster(server_url)
    c.run(c.pg_ctl, "-D", str(c.data), "-w", "-t", "60", "-o", c.options, "-l", str(c.log),
          "start")


def find_pg_bindir() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``, or None when PostgreSQL is not installed."""
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


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def temporary_cluster(user: str = PG_USER) -> Iterator[str]:
    """Start a PostgreSQL cluster in a temp dir; yield a URL to its ``postgres`` database.

    The cluster is stopped (``pg_ctl -m immediate``) and its directory deleted on exit.
    Raises ``PostgresUnavailable`` or ``PostgresStartFailed`` (see the module docstring).
    """
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise PostgresUnavailable("psycopg is not installed (pip install -e .[postgres])") from None
    bindir = find_pg_bindir()
    if bindir is None:
        raise PostgresUnavailable(
            "PostgreSQL server binaries (initdb, pg_ctl) were not found; install postgresql "
            "(e.g. apt-get install postgresql)")

    prefix: list[str] = []
    owner: tuple[int, int] | None = None
    if os.geteuid() == 0:
        import pwd

        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            raise PostgresUnavailable("running as root and there is no 'postgres' user to run "
                                      "initdb as") from None
        if shutil.which("runuser") is None:
            raise PostgresUnavailable("running as root and `runuser` is missing (needed to run "
                                      "initdb as postgres)")
        prefix = ["runuser", "-u", "postgres", "--"]
        owner = (pw.pw_uid, pw.pw_gid)

    # Not under pytest's tmp dir: its parents are private to root, so user postgres could not
    # enter it. A short path also keeps the unix socket path under its length limit.
    root = Path(tempfile.mkdtemp(prefix="dm-pg-"))
    if owner is not None:
        os.chown(root, *owner)
    data, log = root / "data", root / "log"
    port = free_port()

    def run(*args: str, timeout: float = 120) -> None:
        result = subprocess.run(prefix + list(args), capture_output=True, text=True,
                                timeout=timeout)
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip()
            if log.exists():
                detail += "\n" + log.read_text(errors="replace")[-2000:]
            raise PostgresStartFailed(f"{Path(args[0]).name} failed: {detail}")

    try:
        run(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", user, "-E", "UTF8",
            "--no-sync")
        options = f"-p {port} -c listen_addresses=127.0.0.1 -k {root} {_SERVER_SETTINGS}"
        run(str(bindir / "pg_ctl"), "-D", str(data), "-w", "-t", "60", "-o", options,
            "-l", str(log), "start")
        url = f"postgresql+psycopg://{user}@127.0.0.1:{port}/postgres"
        _CLUSTERS[url] = _Cluster(run, str(bindir / "pg_ctl"), data, log, options)
        yield url
    finally:
        _CLUSTERS.pop(f"postgresql+psycopg://{user}@127.0.0.1:{port}/postgres", None)
        if (data / "postmaster.pid").exists():  # also after a start that timed out
            subprocess.run(prefix + [str(bindir / "pg_ctl"), "-D", str(data), "-w",
                                     "-m", "immediate", "stop"], capture_output=True, timeout=120)
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def fresh_database(server_url: str, prefix: str = "dm_test") -> Iterator[str]:
    """Create an empty database on the server at ``server_url``; yield its URL; drop it after."""
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(server_url)
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    conninfo = {k: v for k, v in dict(host=url.host, port=url.port, user=url.username,
                                      password=url.password, dbname=url.database or "postgres",
                                      autocommit=True).items() if v is not None}
    with psycopg.connect(**conninfo) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(**conninfo) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
