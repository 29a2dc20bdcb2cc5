"""``dm train``: one run in the foreground, with a progress bar and a summary.

Checkpoints: with ``--checkpoint-dir DIR`` the run writes ``DIR/checkpoint.pt`` after every
evaluation (every ``eval_every`` iterations and at the last one), and when it is stopped by
Ctrl-C: the first Ctrl-C finishes the current step, writes the checkpoint and exits with
code 130; a second one aborts at once. ``--resume`` continues from a checkpoint (a file, or
a directory holding ``checkpoint.pt``), bit for bit on the CPU; the config argument may then
be left out, because a checkpoint carries its own config. Exit codes: 0 done, 1 diverged or
failed, 2 invalid config or input, 130 stopped by Ctrl-C.
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from dm_core.config import RunConfig, load_config
from dm_core.events import (
    EvalEvent,
    Event,
    ScalarsEvent,
    StartEvent,
    TrainingDiverged,
    TrainingInterrupted,
)
from dm_core.registry import ConfigError
from studio.cli._app import app, invalid_config_text

err_console = Console(stderr=True)

CHECKPOINT_HELP = ("Write DIR/checkpoint.pt after every evaluation (every eval_every iterations "
                   "and at the end) and on Ctrl-C, so the run can be resumed. Without it no "
                   "checkpoint is written.")
RESUME_HELP = ("Continue from a checkpoint: a checkpoint.pt file, or the --checkpoint-dir that "
               "holds one. The config argument may then be left out (the checkpoint carries "
               "its config); given, it must be the same run. Checkpoints keep being written to "
               "--checkpoint-dir, or by default next to the checkpoint resumed from.")


def _run_to_train(config: Path | None, set_: list[str],
                  resume: Path | None) -> tuple[RunConfig, Path | None]:
    """The config to train and the checkpoint file to resume (a directory names its
    checkpoint); ``ConfigError`` when neither is given or they contradict each other."""
    from dm_core.train import CHECKPOINT_NAME, load_checkpoint_config

    if resume is not None and resume.is_dir():
        resume = resume / CHECKPOINT_NAME
    if config is not None:
        return load_config(config, set_), resume
    if resume is None:
        raise ConfigError("config: give a run config file (see configs/), or --resume a checkpoint")
    if not resume.is_file():
        raise ConfigError(f"--resume: checkpoint {str(resume)!r} does not exist")
    if set_:
        raise ConfigError("--set: a resumed run keeps its config; give the config file "
                          "with the same overrides, or leave --set out")
    return load_checkpoint_config(resume), resume


@app.command("train")
def train_command(
    config: Path | None = typer.Argument(None, help="A run config, YAML or JSON (see configs/); "
                                                    "optional with --resume."),
    set_: list[str] = typer.Option([], "--set", help="Override a key: --set loss.lam=1.0 (repeatable)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON summary object on stdout."),
    checkpoint_dir: Path | None = typer.Option(None, "--checkpoint-dir", metavar="DIR", help=CHECKPOINT_HELP),
    resume: Path | None = typer.Option(None, "--resume", metavar="PATH", help=RESUME_HELP),
) -> None:
    """Train one run in the foreground and print its summary.

    With --checkpoint-dir DIR the run can be stopped with Ctrl-C (it finishes the step and checkpoints) and continued with dm train --resume DIR: the same final weights as an uninterrupted run.

    Exit codes: 0 done, 1 diverged or failed, 2 invalid config or input, 130 stopped by Ctrl-C.
    """
    from dm_core.train import train  # torch is slow to import

    try:
        cfg, resume = _run_to_train(config, set_, resume)
    except ConfigError as err:
        err_console.print(f"[red]{escape(invalid_config_text(err))}[/red]", soft_wrap=True,
                          highlight=False)
        raise typer.Exit(2) from None
    if resume is not None and checkpoint_dir is None:
        checkpoint_dir = resume.parent

    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[status]}"), TimeRemainingColumn(),
                        console=err_console, disable=not sys.stderr.isatty() and json_out)
    task = progress.add_task(escape(cfg.name), total=cfg.iterations, status="")
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
        with progress, _warm_stop_on_ctrl_c() as should_stop:
            summary = train(cfg, on_event=on_event, resume_from=resume, checkpoint_dir=checkpoint_dir,
                            should_stop=should_stop)
    except (ConfigError, FileNotFoundError, ValueError) as err:
        _error("error:", err)
        raise typer.Exit(2) from None
    except TrainingDiverged as err:
        _error("", err)
        raise typer.Exit(1) from None
    except TrainingInterrupted as err:
        how = (f"resume with: dm train --resume {err.checkpoint}" if err.checkpoint
               else "no checkpoint was written (give --checkpoint-dir to be able to resume)")
        _error("stopped:", f"{err}; {how}")
        raise typer.Exit(130) from None
    except Exception as err:  # noqa: BLE001 - one line, never a traceback
        _error("error:", f"{type(err).__name__}: {_first_line(err)}")
        raise typer.Exit(1) from None

    if json_out:
        typer.echo(json.dumps(summary.to_dict()))
        return
    table = Table(title=escape(f"{cfg.name}: summary"))
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in summary.to_dict().items():
        if value is not None and not isinstance(value, dict):
            table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    Console().print(table)
    if summary.relabel:
        Console().print("label correction:", json.dumps(summary.relabel, indent=1))


@contextmanager
def _warm_stop_on_ctrl_c() -> Iterator[Callable[[], str | None]]:
    """The first Ctrl-C asks the loop to stop after its current step (and checkpoint); the
    second is an ordinary KeyboardInterrupt (``workers.signals.StopSignals``)."""
    from workers.signals import StopSignals

    def cold(_name: str) -> None:
        raise KeyboardInterrupt

    with StopSignals((signal.SIGINT,), on_cold=cold) as stops:
        yield lambda: "stopped by Ctrl-C" if stops.warm else None


def _error(prefix: str, err: object) -> None:
    text = " ".join(str(err).split("\n"))
    err_console.print(f"[red]{escape(prefix)}[/red] {escape(text)}" if prefix else f"[red]{escape(text)}[/red]",
                      soft_wrap=True, highlight=False)


def _first_line(err: BaseException) -> str:
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    return lines[0] if lines else "(no message)"


def _status(latest: dict[str, float]) -> str:
    text = f"loss {latest['loss']:.4f}"
    if "test" in latest:
        text += f"  test acc {latest['test']:.3f}"
    return text
