"""A small process supervisor: the dashboard and N workers as children of one process.

``run`` starts every child, waits for the dashboard's health endpoint, restarts crashed
workers with a growing delay, and on a signal stops the children exactly once. Each child
leads its own process group, so a Ctrl-C in the terminal reaches only the supervisor, which
then sends SIGTERM (a worker checkpoints its run and puts it back in the queue), waits a
grace period, then SIGKILLs whatever is left. A second signal forwards a second SIGTERM (a
worker's cold stop) and cuts the grace period to 5 s.

``dm up`` (``studio.cli.up``) is the command-line front end: it checks its options, prepares
the database and decides who may log in; this module only runs processes.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

HEALTH_TIMEOUT_S = 90.0  # a cold start imports torch, plotly and pandas: slow on a small machine
COLD_STOP_GRACE_S = 5.0
POLL_S = 0.2
MAX_RESTART_DELAY_S = 60.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class SupervisorError(RuntimeError):
    """The children cannot be started (a port in use, a dashboard that does not come up)."""


def say(message: str) -> None:
    """The supervisor's own messages, on stderr (the children's output shares the terminal)."""
    print(f"dm up: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- the children

@dataclass
class Child:
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


def dashboard_child(app_file: Path, host: str, port: int, env: dict[str, str]) -> Child:
    return Child("dashboard", streamlit_argv(app_file, host, port), env)


def streamlit_argv(app_file: Path, host: str, port: int) -> list[str]:
    return [sys.executable, "-m", "streamlit", "run", str(app_file),
            "--server.port", str(port), "--server.address", host,
            "--server.headless", "true", "--browser.gatherUsageStats", "false",
            # No file watcher: nothing to reload in an installed app, and polling costs CPU.
            "--server.fileWatcherType", "none"]


def worker_children(n: int, gpus: int, db_url: str, artifacts: Path, base_env: dict[str, str],
                    stale_after: float | None = None) -> list[Child]:
    """``n`` ``dm worker`` processes: one GPU each, round robin, or the CPU when there is none."""
    children = []
    threads = max(1, (os.cpu_count() or 1) // max(n, 1))
    for i in range(n):
        device = f"cuda:{i % gpus}" if gpus else "cpu"
        argv = [sys.executable, "-m", "studio.cli", "worker", "--device", device,
                "--artifacts", str(artifacts)]
        if stale_after is not None:
            argv += ["--stale-after", f"{stale_after:g}"]
        # The database URL goes in the environment, never on the command line: every user of
        # the machine can read command lines (ps, /proc/*/cmdline), and it may hold a password.
        env = dict(base_env, DM_DATABASE_URL=db_url)
        if not gpus and n > 1:
            # N CPU workers share the cores instead of each starting one thread per core.
            env.setdefault("OMP_NUM_THREADS", str(threads))
        children.append(Child(f"worker {i} ({device})", argv, env))
    return children


# ---------------------------------------------------------------- start-up

def check_port_free(host: str, port: int) -> None:
    """Raise ``SupervisorError`` if something already listens on ``host:port``.

    SO_REUSEADDR is set as the server will set it, so a port left in TIME_WAIT by a
    previous run counts as free while a live listener does not.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as err:
        raise SupervisorError(f"--host {host!r}: cannot resolve it ({err.strerror})") from None
    for family, socktype, proto, _, sockaddr in infos:
        with socket.socket(family, socktype, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(sockaddr)
            except OSError as err:
                raise SupervisorError(f"port {port} on {host} is not available ({err.strerror}); "
                                      f"stop what uses it or pick another with --port") from None


def health_url(host: str, port: int) -> str:
    """Streamlit's health endpoint for a server bound to ``host``: a wildcard address is
    probed on the loopback address of its family."""
    probe_host = "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host == "::" else host)
    if ":" in probe_host:
        probe_host = f"[{probe_host}]"
    return f"http://{probe_host}:{port}/_stcore/health"


def wait_healthy(child: Child, url: str, timeout: float, stop: Callable[[], bool]) -> bool:
    """Poll the health endpoint until it answers ``ok``; False if the child exits, ``stop()``
    turns true, or ``timeout`` passes first (Streamlit answers only once its server is up,
    so the port being open is not enough)."""
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


# ---------------------------------------------------------------- signals

@contextmanager
def counted_stop_signals() -> Iterator[Callable[[], int]]:
    """While inside, SIGINT, SIGTERM and SIGHUP only count (the supervisor's loop does the
    work, so nothing re-enters a handler); yields the number seen so far. The first asks for
    a warm stop, the second for a cold one (see ``stop_all``): the convention of every
    long-running DM Studio process, kept in one place (``workers.signals.StopSignals``)."""
    from workers.signals import StopSignals

    stops = StopSignals(STOP_SIGNALS, on_cold=lambda _name: say(
        "second signal: asking the children to stop at once"))
    with stops:
        yield lambda: stops.count


# ---------------------------------------------------------------- running and stopping

def _signal_all(children: list[Child]) -> None:
    for c in children:
        if c.alive():
            try:
                c.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass


def stop_all(children: list[Child], timeout: float, signals_seen: Callable[[], int]) -> None:
    """SIGTERM every live child once (a worker's warm stop: checkpoint, re-queue) and wait up
    to ``timeout`` s. Another signal meanwhile forwards a second SIGTERM (a worker's cold
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
            deadline = min(deadline, time.monotonic() + COLD_STOP_GRACE_S)
        time.sleep(POLL_S)
    for c in live:
        if c.alive():
            say(f"{c.name} did not stop in time; killing it")
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


def supervise(dashboard: Child, workers: list[Child], signals_seen: Callable[[], int]) -> int:
    """Run until a signal (→ 0) or the dashboard dies (→ 1). Crashed workers are restarted
    with a growing delay (1 s, 2 s, ... 60 s); one that exits with 0 has stopped on purpose."""
    while not signals_seen():
        if not dashboard.alive():
            say(f"error: the dashboard exited unexpectedly (code {dashboard.proc.returncode})")
            return 1
        now = time.monotonic()
        for w in workers:
            if w.proc is None or w.alive():
                continue
            if w.restart_at is None:
                code = w.proc.returncode
                if code == 0:
                    continue
                delay = min(MAX_RESTART_DELAY_S, 2.0 ** min(w.restarts, 6))
                say(f"{w.name} exited with code {code}; restarting in {delay:.0f} s")
                w.restart_at = now + delay
            elif now >= w.restart_at:
                w.restarts += 1
                w.start()
        time.sleep(POLL_S)
    return 0


def run(dashboard: Child, workers: list[Child], health: str, *, stop_timeout: float,
        on_ready: Callable[[], None], health_timeout: float = HEALTH_TIMEOUT_S) -> int:
    """Start the children, announce (``on_ready``) once the dashboard answers ``health``,
    supervise until a signal, then stop them all. Returns the exit code (0 after a signal,
    1 when the dashboard died); raises ``SupervisorError`` when the dashboard never came up."""
    children = [dashboard, *workers]
    with counted_stop_signals() as signals_seen:
        try:
            for child in children:
                child.start()
            if wait_healthy(dashboard, health, health_timeout, lambda: signals_seen() > 0):
                on_ready()
            elif not signals_seen():
                code = dashboard.proc.poll()
                raise SupervisorError("the dashboard did not start" + (
                    f" (streamlit exited with code {code}; see its messages above)"
                    if code is not None else f" within {health_timeout:.0f} s"))
            return supervise(dashboard, workers, signals_seen)
        finally:
            if any(c.alive() for c in children):
                say("stopping ...")
            stop_all(children, stop_timeout, signals_seen)
