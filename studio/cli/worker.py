"""``dm worker``: train queued runs on one device until stopped.

    dm worker --device cuda:0
    dm worker --exit-when-idle      # burst mode: drain the queue, then exit

The worker (and torch) is imported inside the command, so ``dm --help`` stays fast.
"""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from dm_core.registry import ConfigError
from studio.cli._app import app
from studio.cli.exits import fail, user_errors
from studio.cli.store_access import db_option, open_store


@app.command("worker")
def worker(
    device: str = typer.Option("auto", "--device", help="cuda:N, cpu or auto (CUDA if visible)."),
    exit_when_idle: bool = typer.Option(False, "--exit-when-idle",
                                        help="Burst mode: exit once the queue is empty."),
    poll: float = typer.Option(1.0, "--poll", min=0.05, help="Seconds between queue polls."),
    stale_after: float = typer.Option(30.0, "--stale-after", min=0.5,
                                      help="Seconds without a heartbeat before a run is re-queued."),
    max_outage: float = typer.Option(60.0, "--max-outage", min=0.0,
                                     help="Seconds of database outage a run survives (retried "
                                          "with backoff) before the worker gives it up."),
    artifacts: Path | None = typer.Option(None, "--artifacts", envvar="DM_ARTIFACTS",
                                          show_envvar=True,
                                          help="Checkpoints directory (default: ./var/artifacts)."),
    db: str | None = db_option(),
) -> None:
    """Train queued runs on one device until stopped (Ctrl-C: checkpoint and re-queue)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # Alembic logs its plugin set-up and migration context at INFO on every start: noise in a
    # worker's log, where only the worker's own lines and real problems belong.
    logging.getLogger("alembic").setLevel(logging.WARNING)

    with user_errors():
        from workers.worker import Worker

        store = open_store(db, artifacts)
        try:
            w = Worker(store, device=device, poll=poll, stale_after=stale_after,
                       exit_when_idle=exit_when_idle, artifacts_dir=store.artifacts_dir,
                       max_outage=max_outage)
        except ConfigError as err:
            fail(f"--device: {err}", 2)
        store.queue_counts()  # a wrong URL or an unreachable database fails here, in one line
        w.run()
