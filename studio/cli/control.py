"""``dm cancel``, ``dm retry`` and ``dm delete``: what a user may do to a run.

    dm cancel 7
    dm retry 7 --resume
    dm delete 7

Each is one guarded transition in the store (``dm_store.runs``): a run in a status that does
not allow it is refused with the reason, exit code 1.
"""

from __future__ import annotations

from pathlib import Path

import typer

from studio.cli._app import app
from studio.cli.exits import user_errors
from studio.cli.store_access import db_option, open_store


@app.command("cancel")
def cancel(
    run_id: int = typer.Argument(..., metavar="RUN", help="Run id (see `dm runs`)."),
    db: str | None = db_option(),
) -> None:
    """Cancel a queued run, or ask a running run's worker to stop it."""
    with user_errors():
        info = open_store(db, create=False).cancel(run_id)
    if info.status == "cancelled":
        typer.echo(f"run {run_id}: cancelled")
    else:
        typer.echo(f"run {run_id}: cancel requested; its worker stops it within a few seconds "
                   "(what was logged is kept)")


@app.command("retry")
def retry(
    run_id: int = typer.Argument(..., metavar="RUN", help="Run id (see `dm runs`)."),
    resume: bool = typer.Option(False, "--resume/--from-scratch",
                                help="Continue from the run's last checkpoint (its rows up to "
                                     "it kept), or start over with everything cleared."),
    db: str | None = db_option(),
) -> None:
    """Queue a failed or cancelled run again: from scratch, or from its checkpoint (--resume)."""
    with user_errors():
        info = open_store(db, create=False).retry(run_id, resume=resume)
    if info.checkpoint_iteration:
        typer.echo(f"run {run_id}: queued again, resuming from its checkpoint at iteration "
                   f"{info.checkpoint_iteration} (the rows after it were cleared)")
    else:
        typer.echo(f"run {run_id}: queued again from scratch (attempt 1; the old attempts' "
                   "data was cleared)")


@app.command("delete")
def delete(
    run_id: int = typer.Argument(..., metavar="RUN", help="Run id (see `dm runs`)."),
    artifacts: Path | None = typer.Option(None, "--artifacts", envvar="DM_ARTIFACTS",
                                          help="Artifacts directory (default: ./var/artifacts)."),
    db: str | None = db_option(),
) -> None:
    """Delete a run that is not running: its rows and checkpoints."""
    with user_errors():
        open_store(db, artifacts, create=False).delete(run_id)
    typer.echo(f"run {run_id}: deleted")
