"""What the browser benchmarks need to start the dashboard (`dm up`) on their own: a free
loopback port (the store's test helper's), Streamlit's health check and a clean stop. Not a
benchmark (``run_all.py`` runs only ``bench_*.py``)."""

from __future__ import annotations

import signal
import subprocess
import urllib.error
import urllib.request

from dm_store.testing import free_port

__all__ = ["free_port", "healthy", "stop"]


def healthy(url: str) -> bool:
    """Whether the Streamlit server at ``url`` answers its health check with ``ok``."""
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:  # noqa: S310
            return r.read().strip() == b"ok"
    except (urllib.error.URLError, OSError):
        return False


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM (the dashboard and workers stop cleanly on it), then SIGKILL if it lingers."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
