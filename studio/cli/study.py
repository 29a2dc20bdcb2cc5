"""``dm study STUDY.yaml``: tune every method on the clean validation split (each search trains
up to the study's budget of settings), train the chosen settings on the final seeds, and write
``DIR/<name>.md`` and ``DIR/<name>-runs.csv``.

    dm study studies/digits-noise.yaml --local            # everything in this process
    dm study studies/digits-noise.yaml                    # queued: workers train, this waits

Queued, this command drives the search: it queues each trial's runs, feeds the pruner from
their stored evaluations (cancelling pruned runs as a user would), asks Optuna for the next
trial, queues the final runs once a search is done, and writes the report when every run has
ended. Start workers beside it (``dm worker``). The Optuna studies are kept beside the store
(``studio.experiments.tuner.optuna_storage_url``).

Exit codes: 0 report written; 2 a bad study file or option, missing data files included
(nothing trained or queued); 1 anything else.
"""

from __future__ import annotations

import platform
import secrets
import shlex
import sys
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from studio.cli._app import app
from studio.cli.exits import fail, user_errors
from studio.cli.store_access import db_option, open_store

console = Console(stderr=True)


def machine() -> str:
    import torch

    # The torch build matters: another one sums in another order, and over a long run under
    # noise that moves a run's numbers.
    return (f"{platform.machine()}, {platform.system()}, Python {platform.python_version()}, "
            f"torch {torch.__version__}")


def shrink(spec, budget: int | None, iterations: int | None):
    """``spec`` with a smaller budget and shorter runs (a smoke test of the whole pipeline)."""
    from studio.experiments.spec import parse_study

    data = spec.model_dump()
    if budget is not None:
        data["budget"] = budget
    if iterations is not None:
        base = data["base"]
        base["iterations"] = iterations
        base["eval_every"] = max(1, min(base.get("eval_every", 100), iterations))
        schedule = base.get("schedule") or {}
        if schedule.get("milestones"):
            schedule["milestones"] = [m for m in schedule["milestones"] if m <= iterations]
    return parse_study(data)


def progress_bar() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console)


def invoked_as(verb: str, fallback: str) -> str:
    """The command line that ran ``dm VERB …`` (for the report), else ``fallback``."""
    if len(sys.argv) > 2 and sys.argv[1] == verb:
        return f"dm {verb} " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    return fallback


def checked_study(path: Path, local: bool, device: str | None, budget: int | None,
                  iterations: int | None):
    """The study file at ``path``, shrunk as asked; a bad file or option exits 2 before
    anything is queued."""
    from dm_core.registry import ConfigError
    from studio.experiments.spec import load_study

    if device and not local:
        fail("--device applies to --local only; queued runs train on their worker's device", 2)
    try:
        spec = load_study(path)
        if budget is not None or iterations is not None:
            spec = shrink(spec, budget, iterations)
    except ConfigError as err:
        fail(f"invalid study {path}: {err}", 2)
    return spec


def run_and_report(spec, path: Path, local: bool, device: str | None, out: Path, db: str | None,
                   command: str, resume: str | None = None) -> Path:
    """Run the study (here, or queued and driven from here) and write its report.

    ``resume``: the prefix of a queued study whose driving process stopped; its runs in the
    store are taken again (``QueuedRunner(reuse=True)``), only the rest is queued."""
    from studio.experiments.report import write_report
    from studio.experiments.runners import LocalRunner, QueuedRunner, StudyRunFailed
    from studio.experiments.tuner import PRUNER_TEXT, optuna_storage_url, run_study

    prefix = resume or f"study-{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
    total = _count_runs(spec)
    with progress_bar() as progress:
        task = progress.add_task(f"{spec.name}: runs (at most)", total=total)
        advance = lambda found: progress.advance(task, len(found))  # noqa: E731
        if local:
            result = run_study(spec, LocalRunner(device), prefix, on_batch=advance)
            where = "this process"
        else:
            import optuna

            with user_errors():
                store = open_store(db)
                if resume and not any(g.startswith(f"{resume}-") for g in store.groups()):
                    fail(f"--resume: no group of this store starts with {resume}-; the prefix is "
                         "the one `dm study` printed (queued into groups PREFIX-*)", 2)
                storage = optuna.storages.RDBStorage(optuna_storage_url(store.url))
            queued = QueuedRunner(store, reuse=bool(resume))
            console.print(f"{'resuming' if resume else 'queued into'} groups {prefix}-*; start "
                          f"workers: dm worker. If this command stops, go on with: "
                          f"dm study {shlex.quote(str(path))} --resume {prefix}", soft_wrap=True)  # one line to copy
            try:
                result = run_study(spec, queued, prefix, storage, on_batch=advance)
            except StudyRunFailed as err:
                fail(str(err))
            if resume:
                console.print(f"{queued.reused} run(s) taken from the store, not queued again")
            where = "workers of " + store.masked_url
    md, csv = write_report(result, out, command, f"{machine()} ({where})", PRUNER_TEXT)
    typer.echo(str(md))
    typer.echo(str(csv))
    return md


def _count_runs(spec) -> int:
    from studio.experiments.spaces import axes_of, distinct_grid_size

    per_cond = sum(min(spec.budget, distinct_grid_size(m)) * spec.tune_seeds if axes_of(m) else 0
                   for m in spec.methods) + len(spec.methods) * spec.seeds
    return per_cond * len(spec.condition_labels())


@app.command("study")
def study_command(
    path: Path = typer.Argument(..., help="A study file (YAML); see studies/."),
    local: bool = typer.Option(False, "--local", help="Train every run in this process (Optuna in memory)."),
    device: str | None = typer.Option(None, "--device", help="With --local: the device of every run."),
    out: Path = typer.Option(Path("docs/studies"), "--out", help="Folder for the report and the CSV."),
    budget: int | None = typer.Option(None, "--budget", min=1, help="Override the study's budget."),
    iterations: int | None = typer.Option(None, "--iterations", min=1,
                                          help="Shrink every run to this many iterations (smoke test)."),
    resume: str | None = typer.Option(
        None, "--resume", metavar="PREFIX",
        help="Go on with a queued study whose command stopped: PREFIX as it printed "
             "(queued into groups PREFIX-*). Its stored runs are reused; the rest is queued."),
    db: str | None = db_option(),
) -> None:
    """Compare methods: each tuned on the clean validation split with up to the study's budget."""
    if resume and local:
        fail("--resume applies to a queued study; a --local study keeps nothing to resume", 2)
    spec = checked_study(path, local, device, budget, iterations)
    run_and_report(spec, path, local, device, out, db,
                   invoked_as("study", f"dm study {path}" + (" --local" if local else "")), resume)
