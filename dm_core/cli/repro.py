"""``dm repro``: rerun the paper's findings as named experiment grids and write a report."""

from __future__ import annotations

import platform
import shlex
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from dm_core.cli._app import app

console = Console(stderr=True)


@app.command("repro")
def repro_command(
    name: str = typer.Argument("", help="Experiment name (see --list)."),
    local: bool = typer.Option(False, "--local", help="Run in the foreground in this process."),
    seeds: str = typer.Option("", "--seeds", help="Comma-separated seeds (default: the experiment's)."),
    iterations: int | None = typer.Option(None, "--iterations", min=1,
                                          help="Shrink every run to this many iterations (smoke test)."),
    out: Path = typer.Option(Path("docs/reproduction"), "--out", help="Folder for the report."),
    device: str | None = typer.Option(None, "--device", help="Override the device of every run."),
    list_: bool = typer.Option(False, "--list", help="List the experiments and exit."),
) -> None:
    """Reproduce one of the paper's findings and write a markdown table with plotly figures."""
    from dm_core.registry import ConfigError
    from dm_core.repro import (
        EXPERIMENTS,
        get_experiment,
        plan,
        results_frame,
        run_local,
        write_report,
    )

    if list_ or not name:
        for entry in EXPERIMENTS.entries():
            typer.echo(f"{entry.name:20} {entry.description}")
        return
    try:
        experiment = get_experiment(name)
        seed_tuple = tuple(int(s) for s in seeds.split(",") if s.strip()) if seeds else None
        p = plan(experiment, seed_tuple, iterations)
    except (ConfigError, ValueError) as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from None
    if not local:
        console.print("[red]error:[/red] queued reproduction is not available yet; use --local "
                      "(runs every run in this process) or submit the runs with `dm submit`")
        raise typer.Exit(2)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task(f"{name}: runs", total=p.total())
        results, chosen = run_local(p, on_done=lambda _: progress.advance(task), device=device)
    command = "dm repro " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if len(sys.argv) > 2 else f"dm repro {name} --local"
    machine = f"{platform.machine()}, {platform.system()}, Python {platform.python_version()}"
    path = write_report(experiment, results_frame(results), out, command, machine)
    typer.echo(str(path))
