"""``dm examples``: a run's training examples ranked by how likely their label is wrong, how
well each per-example statistic finds the corrupted ones, and a labels file to retrain without
the top suspects.

    dm examples 7                         # the 20 least confident examples, every statistic
    dm examples 7 --by aum --top 50 --json
    dm examples 7 --write-labels data/run7-clean.npy --drop-top 100

The rankings come from ``studio.suspects``. Errors print one line and exit 2 (an unknown
run, no snapshot yet, an unknown statistic, a labels file outside the data directories).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from dm_core.registry import ConfigError
from dm_store import RunNotFound, StoreError
from studio.cli._app import app, invalid_config_text
from studio.cli.exits import fail
from studio.cli.store_access import db_option, open_store

if TYPE_CHECKING:  # studio.suspects needs torch: imported by the command, not by `dm`
    from studio.suspects import RunExamples


def _value(value: Any) -> Any:
    """A JSON value: numpy scalars as Python ones, NaN as null."""
    if isinstance(value, np.generic):
        value = value.item()
    return None if isinstance(value, float) and math.isnan(value) else value


def _report(examples: RunExamples, by: str, top: int) -> dict[str, Any]:
    found = examples.detection()
    rows = examples.suspects(by, top).to_dict(orient="records")
    return {"run": examples.run_id, "iteration": examples.iteration, "by": by,
            "auroc": {k: _value(v) for k, v in found["auroc"].items()},
            "precision_at_k": {k: _value(v) for k, v in found["precision_at_k"].items()},
            "suspects": [{k: _value(v) for k, v in row.items()} for row in rows]}


def _print_report(report: dict[str, Any], statistics: list[str]) -> None:
    out = Console(highlight=False)
    out.print(f"run {report['run']}, snapshot at iteration {report['iteration']}: "
              f"{len(report['suspects'])} most suspect by {report['by']}")
    table = Table(box=None, pad_edge=False)
    for column in ("rank", "example", "label", "original", "corrupted", *statistics):
        table.add_column(column, justify="left" if column == "corrupted" else "right")
    for rank, row in enumerate(report["suspects"], start=1):
        cells = [str(rank), str(row["example"]), str(row["label"]), str(row["original_label"]),
                 "yes" if row["corrupted"] else "no"]
        cells += [_cell(row[name]) for name in statistics]
        table.add_row(*cells)
    out.print(table)
    out.print("detection of the corrupted labels (AUROC / precision@k, k = their number):")
    for name in statistics:
        auroc, precision = report["auroc"].get(name), report["precision_at_k"].get(name)
        out.print(f"  {name:<14} {_cell(auroc)} / {_cell(precision)}")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _write_labels(store: Any, examples: RunExamples, by: str, drop_top: int, path: Path) -> None:
    """The labels file without the top ``drop_top`` suspects, the indices left out beside it
    and the run's config set to train on them, then the command that queues it."""
    from dm_core.data_dirs import confine_data_path

    if path.suffix.lower() != ".npy":
        raise ConfigError(f"--write-labels {path}: the noise kind file reads a .npy here; name it *.npy")
    target = confine_data_path(str(path), "--write-labels")
    drop = examples.ranking(by)[:drop_top]
    config = store.get_run(examples.run_id).config
    from studio.suspects import retrain_labels

    labels = retrain_labels(examples, drop, config)
    noise = {"kind": "file", "path": str(target)}
    retrain = {**config, "name": f"{config.get('name', 'run')}-without-{drop_top}-by-{by}",
               "dataset": {**config["dataset"], "noise": noise}}
    dropped_path = target.with_name(f"{target.stem}.dropped.npy")
    config_path = target.with_name(f"{target.stem}.config.json")
    target.parent.mkdir(parents=True, exist_ok=True)
    np.save(target, labels)
    np.save(dropped_path, np.sort(drop).astype(np.int64))
    config_path.write_text(json.dumps(retrain, indent=1) + "\n")
    corrupted = int(examples.corrupted[drop].sum())
    typer.echo(f"run {examples.run_id}, iteration {examples.iteration}: the {len(drop)} most suspect "
               f"by {by} left out ({corrupted} of them corrupted, {len(drop) - corrupted} clean)")
    typer.echo(f"  labels:  {target} (-1 leaves an example out; the others keep the run's labels)")
    typer.echo(f"  left out: {dropped_path} (indices in run {examples.run_id}'s training set)")
    typer.echo(f"  config:  {config_path} (run {examples.run_id}'s, with dataset.noise = {json.dumps(noise)})")
    typer.echo(f"retrain on it: dm submit {config_path}")


@app.command("examples")
def examples_command(
    run_id: int = typer.Argument(..., metavar="RUN", help="Run id (see `dm runs`)."),
    by: str | None = typer.Option(None, "--by", help="The statistic to rank by: confidence (the "
                                  "default), variability, aum, forgetting, first_learned, "
                                  "last_p, share or label_quality (most suspect first)."),
    top: int = typer.Option(20, "--top", min=1, help="How many suspects to list."),
    iteration: int | None = typer.Option(None, "--iteration", help="The snapshot at or before this "
                                         "iteration (default: the latest)."),
    json_out: bool = typer.Option(False, "--json", help="Print iteration, auroc, precision_at_k "
                                  "and the suspects as one JSON object."),
    write_labels: Path | None = typer.Option(None, "--write-labels", help="Write a labels file "
                                             "(.npy, for dataset.noise.kind=file) without the "
                                             "--drop-top suspects; it must lie in the allowed "
                                             "data directories."),
    drop_top: int | None = typer.Option(None, "--drop-top", min=1, help="With --write-labels: "
                                        "leave out this many of the most suspect examples."),
    db: str | None = db_option(),
) -> None:
    """List a run's most suspect training examples (likely wrong labels) and their statistics.

    Or write a labels file to retrain without them (--write-labels, --drop-top)."""
    from studio.suspects import DEFAULT_STATISTIC, ExamplesUnavailable, load_examples

    by = by or DEFAULT_STATISTIC
    if (write_labels is None) != (drop_top is None):
        fail("--write-labels and --drop-top go together: the file leaves out the --drop-top "
             "most suspect examples", 2)
    try:
        store = open_store(db, create=False)
        examples = load_examples(store, run_id, iteration)
        if write_labels is not None:
            _write_labels(store, examples, by, drop_top, write_labels)
            return
        report = _report(examples, by, top)
    except (RunNotFound, ExamplesUnavailable) as err:
        fail(str(err), 2)
    except ConfigError as err:
        fail(invalid_config_text(err), 2)
    except StoreError as err:
        fail(str(err))
    except OSError as err:
        fail(f"cannot write {write_labels}: {err.strerror or err}")
    if json_out:
        typer.echo(json.dumps(report))
    else:
        _print_report(report, examples.statistics)
