"""``dm repro``: rerun the paper's findings as named experiment grids and write a report.

    dm repro --list                                  # the experiments
    dm repro digits-noise --local                    # a study (studies/*.yaml), as `dm study`
    dm repro cifar100-table1                         # a GPU preset: queue it for the workers
    dm repro cifar100-table1 --report                # report of the latest queued group
    dm repro --summary                               # docs/reproduction.md from the reports

The names in ``studies/`` (digits-noise, digits-imbalance) are study files and run exactly as
``dm study studies/NAME.yaml``: every method tuned on the clean validation split (see
``studio.experiments``). The GPU presets (``studio.repro``) train the published settings, with
nothing tuned: a study with a fixed grid, run by the studies' runners and reported by their
report writer and claims. Queued, ``--report`` reads their group back and writes the same
report as ``--local``, from the stored summaries, evaluations and scalars.

Exit codes: 0 done (runs queued, or the report written); 2 a bad option or experiment name
(nothing queued); 3 ``--report`` found runs still queued or running; 1 anything else (a run
failed, an unreachable database).
"""

from __future__ import annotations

import shlex
from pathlib import Path

import typer
from rich.console import Console

from studio.cli._app import app
from studio.cli.exits import fail, user_errors
from studio.cli.store_access import db_option, open_store
from studio.cli.study import checked_study, invoked_as, machine, progress_bar, run_and_report

console = Console(stderr=True)
WAITING = 3


def _options(seeds: str, iterations: int | None) -> str:
    """The plan's options, to repeat in the follow-up command."""
    return (f" --seeds {seeds}" if seeds else "") + (f" --iterations {iterations}" if iterations else "")


@app.command("repro")
def repro_command(
    name: str = typer.Argument("", help="Experiment name (see --list)."),
    local: bool = typer.Option(False, "--local", help="Run every run in this process, now."),
    report: bool = typer.Option(False, "--report",
                                help="Read a queued group back: write the report once every run "
                                     "is done."),
    group: str | None = typer.Option(None, "--group",
                                     help="Group to queue into (new) or to read with --report "
                                          "(default: the latest repro-NAME-… group)."),
    seeds: str = typer.Option("", "--seeds", help="Comma-separated seeds (default: the experiment's)."),
    iterations: int | None = typer.Option(None, "--iterations", min=1,
                                          help="Shrink every run to this many iterations (smoke test)."),
    out: Path = typer.Option(Path("docs/reproduction"), "--out", help="Folder for the report."),
    device: str | None = typer.Option(None, "--device",
                                      help="With --local: the device of every run (queued runs "
                                           "train on their worker's device)."),
    summary: bool = typer.Option(False, "--summary",
                                 help="Write the summary page (--summary-out) from the reports in "
                                      "--out, and exit."),
    summary_out: Path = typer.Option(Path("docs/reproduction.md"), "--summary-out",
                                     help="Where --summary writes."),
    list_: bool = typer.Option(False, "--list", help="List the experiments and exit."),
    budget: int | None = typer.Option(None, "--budget", min=1,
                                      help="Study experiments: override the tuning budget (smoke test)."),
    db: str | None = db_option(),
) -> None:
    """Reproduce one of the paper's findings and write a markdown table with plotly figures."""
    from dm_core.registry import ConfigError
    from studio.experiments.catalogue import find_study, study_files
    from studio.repro.plan import plan
    from studio.repro.presets import EXPERIMENTS, get_experiment
    from studio.repro.summary import write_summary

    if summary:
        with user_errors():
            typer.echo(str(write_summary(out, summary_out)))
        return
    if list_ or not name:
        for study, path in study_files():
            typer.echo(f"{study:20} study file {path}: each method tuned on the clean validation split")
        for entry in EXPERIMENTS.entries():
            typer.echo(f"{entry.name:20} {entry.description}")
        return
    study_path = find_study(name)
    if study_path is not None:  # a shipped study: `dm study` does it
        if report or group or seeds:
            fail(f"{name} is a study (studies/{name}.yaml): --report, --group and --seeds do not "
                 "apply; queued, `dm repro NAME` waits for the workers and writes the report itself", 2)
        _run_study(name, study_path, local, device, out, budget, iterations, db)
        return
    if local and report:
        fail("--local and --report exclude each other: --local runs everything here, --report "
             "reads runs that workers trained", 2)
    if device and not local:
        fail("--device applies to --local only; queued runs train on their worker's device "
             "(dm worker --device ...)", 2)
    # Everything is validated before anything is stored: a bad name or option queues nothing.
    try:
        experiment = get_experiment(name)
        seed_tuple = tuple(int(s) for s in seeds.split(",") if s.strip()) if seeds else None
        p = plan(experiment, seed_tuple, iterations)
    except ConfigError as err:
        fail(str(err), 2)
    except ValueError:
        fail(f"--seeds {seeds!r}: must be comma-separated non-negative integers, e.g. 0,1,2", 2)

    if local:
        if experiment.needs_gpu and not _cuda_for(device):
            console.print(f"[yellow]warning:[/] {name} is a GPU setup ({p.total()} runs of up to "
                          f"{max(c.iterations for *_, c in experiment.runs(p.seeds)):,} iterations); "
                          "on this CPU it takes days. Queue it for GPU workers instead "
                          f"(`dm repro {name}`), or shrink it with --iterations for a smoke test.")
        _run_local(p, name, out, device)
    elif report:
        _advance(p, name, out, group, seeds, iterations, db)
    else:
        _queue(p, name, group, seeds, iterations, db)


def _run_study(name: str, path: Path, local: bool, device: str | None, out: Path,
               budget: int | None, iterations: int | None, db: str | None) -> None:
    spec = checked_study(path, local, device, budget, iterations)
    run_and_report(spec, path, local, device, out, db,
                   invoked_as("repro", f"dm repro {name}" + (" --local" if local else "")))


def _cuda_for(device: str | None) -> bool:
    """Whether --local runs would train on a GPU."""
    import torch

    return torch.cuda.is_available() and (device is None or device == "auto"
                                          or device.startswith("cuda"))


def _run_local(p, name: str, out: Path, device: str | None) -> None:
    from studio.experiments.report import write_preset_report
    from studio.repro.plan import run_here

    with progress_bar() as progress:
        task = progress.add_task(f"{name}: runs", total=p.total())
        outcomes = run_here(p, on_done=lambda _: progress.advance(task), device=device)
    path = write_preset_report(p.experiment, outcomes, out,
                               invoked_as("repro", f"dm repro {name} --local"), machine())
    typer.echo(str(path))


def _queue(p, name: str, group: str | None, seeds: str, iterations: int | None,
           db: str | None) -> None:
    from studio.repro.plan import submit_plan

    with user_errors():
        store = open_store(db)
        group, ids = submit_plan(p, store, group)
    typer.echo(f"queued {len(ids)} run(s) of {name} in group {group}")
    db_flag = f" --db {shlex.quote(db)}" if db else ""
    typer.echo(f"  train them:  dm worker --exit-when-idle{db_flag}   (one per core or GPU)")
    typer.echo(f"  watch them:  dm runs --group {group}{db_flag}   (or the dashboard: dm up)")
    typer.echo(f"  then:        dm repro {name} --report --group {group}"
               f"{_options(seeds, iterations)}{db_flag}")


def _advance(p, name: str, out: Path, group: str | None, seeds: str, iterations: int | None,
             db: str | None) -> None:
    from studio.experiments.report import write_preset_report
    from studio.repro.plan import group_outcomes, latest_group, read_group

    again = f"dm repro {name} --report --group {{group}}{_options(seeds, iterations)}" + (
        f" --db {shlex.quote(db)}" if db else "")
    with user_errors():
        store = open_store(db)
        group = group or latest_group(store, p.experiment)
        if group is None:
            fail(f"no queued group of {name} in {store.masked_url}; queue one with `dm repro "
                 f"{name}{_options(seeds, iterations)}`")
        state = read_group(p, store, group)
        if state.problems:
            fail(f"group {group}: {len(state.problems)} run(s) did not finish:\n  "
                 + "\n  ".join(state.problems) + "\nthen run again: " + again.format(group=group))
        if not state.complete:
            typer.echo(f"group {group}: waiting for {state.waiting} run(s) "
                       f"({state.done}/{state.total} done); `dm runs --group {group}` "
                       f"shows them; then: {again.format(group=group)}")
            raise typer.Exit(WAITING)
        outcomes = group_outcomes(store, state)
    command = (f"dm repro {name}{_options(seeds, iterations)}, then `dm worker --exit-when-idle` "
               f"and `dm repro {name} --report{_options(seeds, iterations)}`")
    where = f"{machine()}; workers' devices: {', '.join(state.devices) or '?'}"
    path = write_preset_report(p.experiment, outcomes, out, command, where)
    typer.echo(str(path))
