"""Fixtures for the end-to-end browser tests: a real headless Chromium (Debian's
/usr/bin/chromium, driven by Playwright's sync API) and a real ``dm up`` (dashboard +
worker) on a free port with a throw-away SQLite database.

Without Chromium or the playwright package the tests are SKIPPED with the reason -- except
under ``CI=true``, where every test must run, and they FAIL instead. ``DM_CHROMIUM`` points
at another Chromium binary. Playwright's own browser download is not used.

``dm up`` runs without workers: the test starts a real worker itself, when it wants training
to start. To look at a run half-way it starts one with ``hold_at`` (``workers.hold``): the
worker holds the run after that iteration, every row of it stored, until SIGCONT -- a state
the test waits for, however fast the machine trains, and in which nothing writes while the
page is checked (docs/architecture.md, "Headless Chromium and Playwright").
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from held_worker import held_worker_command

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--enable-unsafe-swiftshader",  # WebGL for plotly's heatmaps: headless has no GPU
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-first-run",
]
STARTUP_TIMEOUT_S = 120.0


def _missing(reason: str) -> None:
    """Skip, or under CI=true fail: CI must run every test."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason)


def find_chromium() -> str | None:
    for candidate in (os.environ.get("DM_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = find_chromium()
    if path is None:
        _missing("Chromium was not found at /usr/bin/chromium (install it: apt-get install "
                 "chromium; or set DM_CHROMIUM to its path)")
    return path


@pytest.fixture(scope="session")
def browser(chromium_path):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright package is not installed (pip install -e .[dev])")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:  # noqa: S310
            return r.status == 200 and r.read().strip() == b"ok"
    except (urllib.error.URLError, OSError):
        return False


@dataclass
class Server:
    """A running ``dm up --no-workers``; ``start_worker`` adds a real worker whose process
    the test controls (``hold_at``: it holds each run after that iteration, or each of
    those, until SIGCONT)."""

    url: str
    db: str
    tmp: Path
    workers: list[subprocess.Popen] = field(default_factory=list)

    def start_worker(self, hold_at: int | tuple[int, ...] | None = None) -> subprocess.Popen:
        log = (self.tmp / f"worker-{len(self.workers)}.log").open("w")
        artifacts = str(self.tmp / "artifacts")
        command = ([sys.executable, "-m", "studio.cli", "worker", "--device", "cpu", "--poll",
                    "0.2", "--db", self.db, "--artifacts", artifacts] if hold_at is None else
                   held_worker_command(self.db, artifacts, hold_at))
        proc = subprocess.Popen(
            command,
            stdout=log, stderr=subprocess.STDOUT, cwd=self.tmp, start_new_session=True,
            env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})
        self.workers.append(proc)
        return proc


def _stop(proc: subprocess.Popen, timeout: float) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGCONT)  # releases a held run
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture
def dm_up(tmp_path):
    """``dm up --no-workers`` on a free port with a fresh SQLite database (see ``Server``)."""
    port = _free_port()
    db = f"sqlite:///{tmp_path / 'dm.sqlite'}"
    log = (tmp_path / "dm-up.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "studio.cli", "up", "--port", str(port), "--db", db,
         "--artifacts", str(tmp_path / "artifacts"), "--no-workers", "--stop-timeout", "10"],
        stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    server = Server(f"http://127.0.0.1:{port}", db, tmp_path)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not _healthy(server.url):
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail("dm up did not become healthy:\n"
                            + (tmp_path / "dm-up.log").read_text()[-3000:], pytrace=False)
            time.sleep(0.5)
        yield server
    finally:
        for worker in server.workers:
            _stop(worker, timeout=30)
        _stop(proc, timeout=45)
        log.close()
