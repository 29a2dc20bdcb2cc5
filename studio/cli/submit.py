"""``dm submit``: queue one run, a grid of runs, or a method comparison, for the workers.

    dm submit configs/digits-symmetric-40-dm.yaml --set loss.lam=1.0
    dm submit configs/digits-symmetric-40-dm.yaml --grid loss.lam=0,0.5,1 --grid loss.beta=4,8,12
    dm submit configs/digits-symmetric-40-dm.yaml --compare cce,gce,mae,dm --seeds 3

Every config is validated, and passes the checks the Launch form makes, before anything is
stored: one bad grid point queues nothing. Validation reads the registries' records only, so
the command never imports torch.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from dm_core.config import check_name, read_config_file
from dm_core.registry import ConfigError
from studio.cli._app import app, invalid_config_text
from studio.cli.exits import fail, user_errors
from studio.cli.store_access import db_option, open_store
from studio.sweeps import comparison_on_seeds, expand_grid, parse_grid


@app.command("submit")
def submit(
    config: Path = typer.Argument(..., help="A run config, YAML or JSON (see configs/)."),
    set_: list[str] = typer.Option([], "--set", help="Override a key: --set loss.lam=1.0 (repeatable)."),
    grid: list[str] = typer.Option([], "--grid", help="A grid axis: --grid loss.beta=4,8,12 "
                                   "(repeatable; the runs are the cartesian product)."),
    compare: str | None = typer.Option(None, "--compare", help="A method comparison: the same run "
                                       "with each loss, --compare cce,gce,dm (the config's own "
                                       "loss keeps its parameters; others their defaults)."),
    seeds: int | None = typer.Option(None, "--seeds", min=1, help="With --compare: every loss on "
                                     "this many seeds (the config's seed and the next ones), so "
                                     "Compare can test the methods over seeds."),
    group: str | None = typer.Option(None, "--group", help="Group name (default: generated)."),
    max_attempts: int = typer.Option(3, "--max-attempts", min=1, max=100,
                                     help="Lost workers a run survives before it fails."),
    json_out: bool = typer.Option(False, "--json", help='Print {"group": ..., "runs": [ids]}.'),
    db: str | None = db_option(),
) -> None:
    """Queue one run, a grid of runs, or a method comparison, for the workers.

    Before anything is queued, every config passes the checks the Launch form makes
    (``studio.submission.refusals``): noise at r = 0, a degenerate β, missing data files."""
    from studio.submission import refusals

    if compare is not None and grid:
        fail("--compare and --grid: give one (a grid's keys belong to one loss)", 2)
    if seeds is not None and compare is None:
        fail("--seeds: only with --compare (a grid repeats over seeds with --grid seed=0,1,2)", 2)
    # Everything is validated before anything is stored: one bad grid point queues nothing.
    try:
        if group is not None:
            check_name(group, "--group")
        base = read_config_file(config)
        if compare is not None:
            losses = [name.strip() for name in compare.split(",") if name.strip()]
            if not losses:
                raise ConfigError(f"--compare {compare!r}: expected loss names, e.g. cce,gce,dm")
            configs = comparison_on_seeds(base, losses, seeds or 1, set_)
        else:
            configs = expand_grid(base, parse_grid(grid), set_)
        found = refusals(configs)  # refused now rather than failing on a worker
        if found:
            raise ConfigError(errors=[("", message) for _, message in found])
    except ConfigError as err:
        fail(invalid_config_text(err), 2)
    with user_errors():
        result = open_store(db).submit(configs, group=group, max_attempts=max_attempts)
    if json_out:
        typer.echo(json.dumps({"group": result.group, "runs": result.run_ids}))
        return
    ids = result.run_ids
    shown = str(ids[0]) if len(ids) == 1 else f"{ids[0]}..{ids[-1]}" if ids == list(
        range(ids[0], ids[-1] + 1)) else ", ".join(map(str, ids))
    typer.echo(f"queued {len(ids)} run(s) in group {result.group}: {shown}")
