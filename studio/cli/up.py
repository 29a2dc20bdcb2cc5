"""``dm up``: the dashboard and its background workers in one command.

    dm up                          # dashboard on http://127.0.0.1:8501 + one worker per GPU (else 1 on CPU)
    dm up --workers 2              # two workers
    dm up --no-workers --host 0.0.0.0    # dashboard only (workers run elsewhere: ``dm worker``)
    dm up --db postgresql+psycopg://dm:secret@db/dm --artifacts /shared/artifacts

This is the front end: it checks the options, brings the database schema up to date, warns
about who can reach the dashboard (the rules are ``studio.access``'s), and hands the children to
``studio.supervisor``, which runs ``streamlit run app/streamlit_app.py`` and N ``dm worker``
processes, all pointed at one database (``DM_DATABASE_URL``) and one artifacts directory
(``DM_ARTIFACTS``), until Ctrl-C.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import typer

from studio import supervisor
from studio.cli._app import app
from studio.cli.store_access import db_option

DEFAULT_PORT = 8501
DEFAULT_HOST = "127.0.0.1"


def _app_file() -> Path:
    """Path of the installed dashboard entry file (``app/streamlit_app.py``).

    Found, not imported: the dashboard is the floor above this one (docs/architecture.md,
    "Packages") and runs in its own process, so the CLI only needs where its files are. The
    ``app`` package missing entirely is reported like its entry file missing.
    """
    spec = importlib.util.find_spec("app")
    if spec is None or not spec.submodule_search_locations:
        return Path("app") / "streamlit_app.py"
    return Path(next(iter(spec.submodule_search_locations))).resolve() / "streamlit_app.py"


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"dm up: error: {message}", err=True)
    return typer.Exit(code)


def _prepare_database(db: str | None, artifacts_dir: Path) -> str:
    """Resolve the URL every child gets and bring its schema up to date, once, before any
    child starts: a wrong URL or an unreachable server fails here with one clear message.

    Default: SQLite at ./var/dm.sqlite; a relative SQLite path is made absolute so every
    process opens the same file (``dm_store.resolve_url``).
    """
    from dm_store import Store, StoreError

    try:
        store = Store(db, artifacts_dir)  # checks the URL
    except StoreError as err:
        raise _fail(str(err)) from None
    try:
        store.upgrade()
    except StoreError as err:
        raise _fail(str(err)) from None
    finally:
        store.dispose()
    return store.url


def _warn_about_access(host: str, port: int, app_file: Path) -> None:
    """Print ``studio.access.exposure_warnings`` on stderr; a malformed allowlist stops here."""
    from studio.access import AuthConfigError, auth_section_for, exposure_warnings

    try:
        warnings = exposure_warnings(host, port, auth_section_for(app_file), os.environ)
    except AuthConfigError as err:
        raise _fail(f"{err} (nobody could sign in to the dashboard)", code=2) from None
    for warning in warnings:
        typer.echo(f"dm up: WARNING: {warning}", err=True)


def _visible_gpus() -> int:
    from dm_core.devices import visible_gpus

    try:
        return len(visible_gpus())
    except RuntimeError:  # a broken CUDA driver must not stop the dashboard
        return 0


@app.command("up")
def up(
    port: int = typer.Option(DEFAULT_PORT, "--port", min=1, max=65535,
                             help="Port of the dashboard."),
    host: str = typer.Option(DEFAULT_HOST, "--host",
                             help="Address to bind. Anything but 127.0.0.1 exposes the dashboard: "
                                  "set DM_PASSWORD or a Streamlit OIDC login first."),
    workers: int | None = typer.Option(None, "--workers", min=0, max=256,
                                       help="Background workers to start (default: one per "
                                            "visible CUDA GPU, else 1 on the CPU)."),
    no_workers: bool = typer.Option(False, "--no-workers",
                                    help="Start the dashboard only (workers run elsewhere)."),
    db: str | None = db_option(),
    artifacts: Path | None = typer.Option(None, "--artifacts", envvar="DM_ARTIFACTS",
                                          show_envvar=True, file_okay=False,
                                          help="Directory for checkpoints shared by the "
                                               "dashboard and workers (default: ./var/artifacts)."),
    stop_timeout: float = typer.Option(30.0, "--stop-timeout", min=0.0,
                                       help="Seconds to let children stop (workers checkpoint) "
                                            "before they are killed."),
    stale_after: float | None = typer.Option(None, "--stale-after", min=0.5,
                                             help="Passed to every worker (dm worker --stale-after): "
                                                  "seconds without a heartbeat before a run is "
                                                  "re-queued (default: the worker's, 30)."),
) -> None:
    """Start the dashboard and background workers; Ctrl-C stops them all."""
    from dm_store import mask_url
    from dm_store.artifacts import resolve_artifacts

    if no_workers and workers:
        raise _fail("--workers and --no-workers contradict each other; give one", code=2)

    app_file = _app_file()
    if not app_file.is_file():
        raise _fail(f"the dashboard file {app_file} is missing; reinstall DM Studio "
                    "(pip install -e . in a checkout)")
    try:
        supervisor.check_port_free(host, port)
    except supervisor.SupervisorError as err:
        raise _fail(str(err)) from None
    artifacts_dir = resolve_artifacts(artifacts)
    try:
        artifacts_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise _fail(f"--artifacts {artifacts_dir}: cannot create it ({err.strerror})") from None
    db_url = _prepare_database(db, artifacts_dir)

    gpus = 0 if no_workers else _visible_gpus()
    n_workers = 0 if no_workers else (workers if workers is not None else max(gpus, 1))
    _warn_about_access(host, port, app_file)

    env = dict(os.environ, DM_DATABASE_URL=db_url, DM_ARTIFACTS=str(artifacts_dir),
               PYTHONUNBUFFERED="1")
    dashboard = supervisor.dashboard_child(app_file, host, port, env)
    worker_children = supervisor.worker_children(n_workers, gpus, db_url, artifacts_dir, env,
                                                 stale_after)

    def announce() -> None:
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        typer.echo(f"dm up: DM Studio is running at http://{shown}:{port} with "
                   f"{n_workers} worker(s); database {mask_url(db_url)}. Ctrl-C stops it.")

    try:
        exit_code = supervisor.run(dashboard, worker_children, supervisor.health_url(host, port),
                                   stop_timeout=stop_timeout, on_ready=announce)
    except supervisor.SupervisorError as err:
        raise _fail(str(err)) from None
    if exit_code:
        raise typer.Exit(exit_code)
    typer.echo("dm up: stopped.")
