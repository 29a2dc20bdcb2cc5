"""``dm export``: a run's scalars, histograms, evals or examples as CSV or Parquet.

    dm export 7 --what histograms --format parquet -o hist.parquet

It writes only inside the export root (``$DM_EXPORT_DIR``, else the current directory),
whatever the spelling of ``-o`` and ``--out-dir``: a path that resolves outside it is refused.
"""

from __future__ import annotations

import enum
import os
from pathlib import Path
from typing import Any

import typer

from studio.cli._app import app
from studio.cli.exits import fail, user_errors
from studio.cli.store_access import db_option, open_store


class ExportTable(enum.StrEnum):
    """What ``dm export`` writes."""

    SCALARS = "scalars"
    HISTOGRAMS = "histograms"
    EVALS = "evals"
    EXAMPLES = "examples"


class ExportFormat(enum.StrEnum):
    CSV = "csv"
    PARQUET = "parquet"


EXPORT_ROOT_ENV = "DM_EXPORT_DIR"


def export_root() -> Path:
    """The only directory tree ``dm export`` writes into: ``$DM_EXPORT_DIR``, else the current
    directory (symlinks resolved)."""
    return Path(os.environ.get(EXPORT_ROOT_ENV) or Path.cwd()).expanduser().resolve()


def _output_path(run_id: int, what: str, fmt: str, output: Path | None,
                 out_dir: Path | None) -> Path:
    """Where ``dm export`` writes, checked to lie inside ``export_root()``.

    Relative paths are taken from ``--out-dir`` (itself relative to the root), else from the
    root. Whatever the spelling -- ``..``, an absolute path, a symlink anywhere on the way --
    the real location must be inside the root, or this raises ``ValueError`` naming the
    option and the root.
    """
    root = export_root()
    where = (f"the export root {root} ({EXPORT_ROOT_ENV})" if os.environ.get(EXPORT_ROOT_ENV)
             else f"the export root {root} (the current directory; set {EXPORT_ROOT_ENV} to "
                  "export elsewhere)")
    base = root
    if out_dir is not None:
        base = (root / out_dir.expanduser()).resolve()
        if not base.is_relative_to(root):
            raise ValueError(f"--out-dir {out_dir}: resolves to {base}, which is outside "
                             f"{where}; it must stay inside it")
    if output is None:
        return base / f"run-{run_id}-{what}.{fmt}"
    target = (base / output.expanduser()).resolve()  # follows every symlink on the way
    if not target.is_relative_to(root):
        raise ValueError(f"-o/--output {output}: resolves to {target}, which is outside "
                         f"{where}; it must stay inside it")
    if target.is_dir():
        raise ValueError(f"-o/--output {output}: {target} is a directory; give a file name")
    return target


def _histograms_frame(series) -> Any:
    """Tidy histograms: one row per (iteration, group, bin) with the bin's p range and count."""
    import numpy as np
    import pandas as pd

    n = len(series.iterations)
    bins = series.clean.shape[1] if n else 0
    frames = []
    for group, counts in (("clean", series.clean), ("noisy", series.noisy)):
        frames.append(pd.DataFrame({
            "iteration": np.repeat(series.iterations, bins),
            "group": group,
            "bin": np.tile(np.arange(bins), n),
            "p_low": np.tile(np.arange(bins) / max(bins, 1), n),
            "p_high": np.tile((np.arange(bins) + 1) / max(bins, 1), n),
            "count": counts.reshape(-1),
        }))
    return pd.concat(frames).sort_values(["iteration", "group", "bin"], kind="stable",
                                         ignore_index=True)


@app.command("export")
def export(
    run_id: int = typer.Argument(..., metavar="RUN", help="Run id (see `dm runs`)."),
    what: ExportTable = typer.Option(ExportTable.SCALARS, "--what", help="What to write."),
    fmt: ExportFormat = typer.Option(ExportFormat.CSV, "--format", help="The file format."),
    output: Path | None = typer.Option(None, "-o", "--output",
                                       help="Output file (default: run-<RUN>-<what>.<format>), "
                                            "relative to --out-dir. It must lie inside the "
                                            "export root: $DM_EXPORT_DIR, else the current "
                                            "directory."),
    out_dir: Path | None = typer.Option(None, "--out-dir",
                                        help="Base directory inside the export root "
                                             "(default: the root)."),
    db: str | None = db_option(),
) -> None:
    """Write a run's scalars, histograms, evals or examples to CSV or Parquet.

    ``examples``: each training example's labels and statistics at the latest snapshot."""
    with user_errors():
        target = _output_path(run_id, what, fmt, output, out_dir)
        store = open_store(db, create=False)
        store.get_run(run_id)  # a clear error for an unknown run
        if what == "scalars":
            frame = store.scalars(run_id)
        elif what == "evals":
            frame = store.evals(run_id)
        elif what == "examples":  # one row per training example, at the latest snapshot
            from studio.suspects import load_examples

            frame = load_examples(store, run_id).frame()
        else:
            frame = _histograms_frame(store.histograms(run_id, max_rows=None))
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "csv":
            frame.to_csv(target, index=False)
        else:
            frame.to_parquet(target, index=False)
    except OSError as err:
        fail(f"cannot write {target}: {err.strerror or err}")
    typer.echo(f"run {run_id}: {len(frame)} {what} rows written to {target}")
