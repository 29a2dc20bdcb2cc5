"""``dm up``: the dashboard and its background workers in one command.

    dm up                          # dashboard on http://127.0.0.1:8501 + one worker per GPU (else 1 on CPU)
    dm up --workers 2              # two workers
    dm up --no-workers --host 0.0.0.0    # dashboard only (workers run elsewhere: ``dm worker``)
    dm up --db postgresql+psycopg://dm:secret@db/dm --artifacts /shared/artifacts

``dm up`` is a small supervisor. It starts ``streamlit run app/streamlit_app.py`` and N
``dm worker`` processes as children, all pointed at one database (``DM_DATABASE_URL``) and
one artifacts directory (``DM_ARTIFACTS``). Each child leads its own process group, so a
Ctrl-C in the terminal reaches only this supervisor, which then stops the children exactly
once: SIGTERM (workers checkpoint their run and put it back in the queue), a grace period,
then SIGKILL for whatever is left. A second Ctrl-C forwards a second SIGTERM (a worker's
cold stop) and cuts the grace period to 5 s.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from studio.cli._app import app
from studio.cli.runs import db_option

DEFAULT_PORT = 8501
DEFAULT_HOST = "127.0.0.1"
HEALTH_TIMEOUT_S = 90.0  # a cold start imports torch, plotly and pandas: slow on a small machine
POLL_S = 0.2


# ---------------------------------------------------------------- start-up checks

def _app_file() -> Path:
    """Path of the installed dashboard entry file (``app/streamlit_app.py``)."""
    import app as app_package  # the installed ``app`` package of this project

    return Path(app_package.__file__).resolve().parent / "streamlit_app.py"


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"dm up: error: {message}", err=True)
    return typer.Exit(code)


def _prepare_database(db: str | None, artifacts_dir: Path) -> str:
    """Resolve the URL every child gets and bring its schema up to date, once, before any
    child starts: a wrong URL or an unreachable server fails here with one clear message.

    Default: SQLite at ./var/dm.sqlite; a relative SQLite path is made absolute so every
    process opens the same file (``dm_core.store.resolve_url``).
    """
    from dm_core.store import Store, StoreError

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


def _check_port_free(host: str, port: int) -> None:
    """Fail clearly if something already listens on ``host:port``.

    SO_REUSEADDR is set as the server will set it, so a port left in TIME_WAIT by a
    previous run counts as free while a live listener does not.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as err:
        raise _fail(f"--host {host!r}: cannot resolve it ({err.strerror})") from None
    for family, socktype, proto, _, sockaddr in infos:
        with socket.socket(family, socktype, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(sockaddr)
            except OSError as err:
                raise _fail(f"port {port} on {host} is not available ({err.strerror}); "
                            f"stop what uses it or pick another with --port") from None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _secrets_files(app_file: Path) -> list[Path]:
    """The secrets.toml files Streamlit reads: global, project ($CWD) and beside the app."""
    return [Path.home() / ".streamlit" / "secrets.toml",
            Path.cwd() / ".streamlit" / "secrets.toml",
            app_file.parent / ".streamlit" / "secrets.toml"]


def _auth_section(app_file: Path) -> Any:
    """The ``[auth]`` section the dashboard will see, or None: Streamlit reads the secrets
    files in order and a later file's ``[auth]`` replaces an earlier one's."""
    section = None
    for path in _secrets_files(app_file):
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError):
            continue
        if "auth" in data:
            section = data["auth"]
    return section


def _auth_configured(app_file: Path) -> bool:
    """True when the dashboard asks for a login (``app.auth.login_required``, the rule the
    dashboard itself applies): DM_PASSWORD, or a non-empty ``[auth]`` secrets section."""
    from app.auth import login_required

    return login_required(_auth_section(app_file), os.environ)


def _access_warnings(host: str, port: int, app_file: Path) -> list[str]:
    """What to warn about who can reach the dashboard: no login on an address other machines
    reach, and an OIDC login that lets in any account of the provider. A malformed allowlist
    fails here (the dashboard would let nobody in)."""
    from app.auth import (
        ALLOWED_USERS_ENV,
        AuthConfigError,
        allowlist_in,
        login_required,
        oidc_providers_in,
    )

    section = _auth_section(app_file)
    warnings = []
    if not _is_loopback(host) and not login_required(section, os.environ):
        empty = " (the [auth] section is empty, which is no login)" if section is not None else ""
        warnings.append(f"the dashboard listens on {host}:{port} without authentication{empty}; "
                        "anyone who reaches this port can launch and delete runs. Set "
                        "DM_PASSWORD, or configure [auth] (OIDC) in .streamlit/secrets.toml.")
    if oidc_providers_in(section):
        try:
            allowlist = allowlist_in(section, os.environ)
        except AuthConfigError as err:
            raise _fail(f"{err} (nobody could sign in to the dashboard)", code=2) from None
        if allowlist is None:
            warnings.append("OIDC sign-in has no allowlist: any account the provider "
                            "authenticates can sign in. Set allowed_emails and/or "
                            "allowed_domains in [auth] of .streamlit/secrets.toml, or "
                            f"{ALLOWED_USERS_ENV} (e.g. ada@example.org,@example.org).")
    return warnings


def _warn_about_access(host: str, port: int, app_file: Path) -> None:
    """Print ``_access_warnings`` on stderr."""
    for warning in _access_warnings(host, port, app_file):
        typer.echo(f"dm up: WARNING: {warning}", err=True)


def _visible_gpus() -> int:
    from dm_core.devices import visible_gpus

    try:
        return len(visible_gpus())
    except RuntimeError:  # a broken CUDA driver must not stop the dashboard
        return 0


def _worker_options() -> set[str] | None:
    """The option names ``dm worker`` accepts, or None when the command is not registered."""
    from typer.main import get_command

    group = get_command(app)
    command = getattr(group, "commands", {}).get("worker")
    if command is None:
        return None
    return {opt for param in command.params for opt in getattr(param, "opts", [])}


# ---------------------------------------------------------------- the children

@dataclass
class _Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    proc: subprocess.Popen | None = None
    restarts: int = 0
    restart_at: float | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.argv, env=self.env, stdin=subprocess.DEVNULL,
            # Own process group: the terminal's Ctrl-C reaches only the supervisor, which
            # forwards exactly one SIGTERM (a second signal means "cold stop" to a worker).
            process_group=0,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        self.restart_at = None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def _die_with_parent() -> None:
    """Linux: SIGTERM the child if the supervisor itself is killed (no orphaned workers)."""
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1
    except Exception:
        pass


def _streamlit_argv(app_file: Path, host: str, port: int) -> list[str]:
    return [sys.executable, "-m", "streamlit", "run", str(app_file),
            "--server.port", str(port), "--server.address", host,
            "--server.headless", "true", "--browser.gatherUsageStats", "false",
            # No file watcher: nothing to reload in an installed app, and polling costs CPU.
            "--server.fileWatcherType", "none"]


def _worker_children(n: int, gpus: int, db_url: str, artifacts: Path,
                     base_env: dict[str, str], stale_after: float | None = None) -> list[_Child]:
    options = _worker_options() or set()
    children = []
    threads = max(1, (os.cpu_count() or 1) // max(n, 1))
    for i in range(n):
        device = f"cuda:{i % gpus}" if gpus else "cpu"
        argv = [sys.executable, "-m", "studio.cli", "worker"]
        if "--device" in options:
            argv += ["--device", device]
        if "--artifacts" in options:
            argv += ["--artifacts", str(artifacts)]
        if stale_after is not None and "--stale-after" in options:
            argv += ["--stale-after", f"{stale_after:g}"]
        # The database URL goes in the environment, never on the command line: every user of
        # the machine can read command lines (ps, /proc/*/cmdline), and it may hold a password.
        env = dict(base_env, DM_DATABASE_URL=db_url)
        if not gpus and n > 1:
            # N CPU workers share the cores instead of each starting one thread per core.
            env.setdefault("OMP_NUM_THREADS", str(threads))
        children.append(_Child(f"worker {i} ({device})", argv, env))
    return children


def _wait_healthy(child: _Child, host: str, port: int, timeout: float, stop) -> bool:
    """Poll Streamlit's health endpoint until it answers ``ok`` (PITFALLS.md 13)."""
    probe_host = "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host == "::" else host)
    if ":" in probe_host:
        probe_host = f"[{probe_host}]"
    url = f"http://{probe_host}:{port}/_stcore/health"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not stop():
        if not child.alive():
            return False
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (local URL)
                if response.status == 200 and response.read().strip() == b"ok":
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    return False


def _signal_all(children: list[_Child]) -> None:
    for c in children:
        if c.alive():
            try:
                c.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass


def _stop_all(children: list[_Child], timeout: float, signals_seen) -> None:
    """SIGTERM every live child once (a worker's warm stop: checkpoint, re-queue) and wait up
    to ``timeout`` s. Another Ctrl-C meanwhile forwards a second SIGTERM (a worker's cold
    stop) and shortens the wait to 5 s. Whatever is left is killed with its process group."""
    live = [c for c in children if c.alive()]
    _signal_all(live)
    signals_at_start = signals_seen()
    deadline = time.monotonic() + timeout
    cold = False
    while any(c.alive() for c in live) and time.monotonic() < deadline:
        if not cold and signals_seen() > signals_at_start:
            cold = True
            _signal_all(live)
            deadline = min(deadline, time.monotonic() + 5.0)
        time.sleep(POLL_S)
    for c in live:
        if c.alive():
            typer.echo(f"dm up: {c.name} did not stop in time; killing it", err=True)
            try:
                os.killpg(c.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                c.proc.kill()
            c.proc.wait()
    # Its own process group may still hold helpers (e.g. data-loader processes): end them too.
    for c in children:
        if c.proc is not None:
            try:
                os.killpg(c.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


# ---------------------------------------------------------------- the command

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
    from dm_core.store import mask_url
    from dm_core.store.artifacts import resolve_artifacts

    if no_workers and workers:
        raise _fail("--workers and --no-workers contradict each other; give one", code=2)

    app_file = _app_file()
    if not app_file.is_file():
        raise _fail(f"the dashboard file {app_file} is missing; reinstall DM Studio "
                    "(pip install -e . in a checkout)")
    _check_port_free(host, port)
    artifacts_dir = resolve_artifacts(artifacts)
    try:
        artifacts_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise _fail(f"--artifacts {artifacts_dir}: cannot create it ({err.strerror})") from None
    db_url = _prepare_database(db, artifacts_dir)

    gpus = 0 if no_workers else _visible_gpus()
    n_workers = 0 if no_workers else (workers if workers is not None else max(gpus, 1))
    if n_workers and _worker_options() is None:
        raise _fail("this installation has no `dm worker` command; start with --no-workers")

    _warn_about_access(host, port, app_file)

    env = dict(os.environ, DM_DATABASE_URL=db_url, DM_ARTIFACTS=str(artifacts_dir),
               PYTHONUNBUFFERED="1")
    dashboard = _Child("dashboard", _streamlit_argv(app_file, host, port), env)
    worker_children = _worker_children(n_workers, gpus, db_url, artifacts_dir, env, stale_after)
    children = [dashboard, *worker_children]

    # Signals only count (first: warm stop, second: cold); the loop below does the work.
    from workers.signals import StopSignals

    stops = StopSignals((signal.SIGINT, signal.SIGTERM, signal.SIGHUP), on_cold=lambda _name: typer.echo(
        "dm up: second signal: asking the children to stop at once", err=True)).install()
    exit_code = 0
    try:
        for child in children:
            child.start()
        if _wait_healthy(dashboard, host, port, HEALTH_TIMEOUT_S, lambda: stops.warm):
            shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
            typer.echo(f"dm up: DM Studio is running at http://{shown}:{port} with "
                       f"{n_workers} worker(s); database {mask_url(db_url)}. Ctrl-C stops it.")
        elif not stops.warm:
            code = dashboard.proc.poll()
            raise _fail("the dashboard did not start" + (
                f" (streamlit exited with code {code}; see its messages above)" if code is not None
                else f" within {HEALTH_TIMEOUT_S:.0f} s"))
        exit_code = _supervise(dashboard, worker_children, lambda: stops.count)
    finally:
        if any(c.alive() for c in children):
            typer.echo("dm up: stopping ...", err=True)
        _stop_all(children, stop_timeout, lambda: stops.count)
        stops.restore()
    if exit_code:
        raise typer.Exit(exit_code)
    typer.echo("dm up: stopped.")


def _supervise(dashboard: _Child, workers: list[_Child], signals_seen) -> int:
    """Run until a signal (→ 0) or the dashboard dies (→ 1). Crashed workers are restarted
    with a growing delay (1 s, 2 s, ... 60 s); one that exits with 0 has stopped on purpose."""
    while not signals_seen():
        if not dashboard.alive():
            typer.echo(f"dm up: error: the dashboard exited unexpectedly "
                       f"(code {dashboard.proc.returncode})", err=True)
            return 1
        now = time.monotonic()
        for w in workers:
            if w.proc is None or w.alive():
                continue
            if w.restart_at is None:
                code = w.proc.returncode
                if code == 0:
                    continue
                delay = min(60.0, 2.0 ** min(w.restarts, 6))
                typer.echo(f"dm up: {w.name} exited with code {code}; restarting in {delay:.0f} s",
                           err=True)
                w.restart_at = now + delay
            elif now >= w.restart_at:
                w.restarts += 1
                w.start()
        time.sleep(POLL_S)
    return 0
