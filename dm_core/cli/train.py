"""``dm train``: one run in the foreground, with a progress bar and a summary."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from dm_core.cli._app import app
from dm_core.config import load_config
from dm_core.events import EvalEvent, Event, ScalarsEvent, StartEvent, TrainingDiverged
from dm_core.registry import ConfigError

err_console = Console(stderr=True)


@app.command("train")
def train_command(
    config: Path = typer.Argument(..., help="A run config, YAML or JSON (see configs/)."),
    set_: list[str] = typer.Option([], "--set", help="Override a key: --set loss.lam=1.0 (repeatable)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON summary object on stdout."),
    checkpoint_dir: Path | None = typer.Option(None, "--checkpoint-dir", help="Write checkpoints here."),
    resume: Path | None = typer.Option(None, "--resume", help="Continue from this checkpoint file."),
) -> None:
    """Train one run in the foreground and print its summary."""
    from dm_core.train import train  # torch is slow to import: only when training

    try:
        cfg = load_config(config, set_)
    except ConfigError as err:
        err_console.print(f"[red]invalid config:[/red] {err}")
        raise typer.Exit(2) from None

    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[status]}"), TimeRemainingColumn(),
                        console=err_console, disable=not sys.stderr.isatty() and json_out)
    task = progress.add_task(cfg.name, total=cfg.iterations, status="")
    latest: dict[str, float] = {}

    def on_event(event: Event) -> None:
        if isinstance(event, StartEvent):
            progress.update(task, total=event.total_iterations, completed=event.resumed_from)
        elif isinstance(event, ScalarsEvent):
            latest["loss"] = event.values["loss"]
            progress.update(task, completed=event.iteration,
                            status=_status(latest))
        elif isinstance(event, EvalEvent):
            latest["test"] = event.values["test_acc"]

    try:
        with progress:
            summary = train(cfg, on_event=on_event, resume_from=resume, checkpoint_dir=checkpoint_dir)
    except (ConfigError, FileNotFoundError, ValueError) as err:
        err_console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from None
    except TrainingDiverged as err:
        err_console.print(f"[red]{err}[/red]")
        raise typer.Exit(1) from None

    if json_out:
        typer.echo(json.dumps(summary.to_dict()))
        return
    table = Table(title=f"{cfg.name}: summary")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in summary.to_dict().items():
        if value is not None and not isinstance(value, dict):
            table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    Console().print(table)
    if summary.relabel:
        Console().print("label correction:", json.dumps(summary.relabel, indent=1))


def _status(latest: dict[str, float]) -> str:
    text = f"loss {latest['loss']:.4f}"
    if "test" in latest:
        text += f"  test acc {latest['test']:.3f}"
    return text
