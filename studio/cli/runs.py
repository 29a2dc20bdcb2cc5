"""Queue and runs commands: ``dm submit``, ``dm runs``, ``dm show``, ``dm cancel``, ``dm retry``,
``dm delete``, ``dm export``, ``dm worker`` and ``dm db upgrade``.

    dm submit configs/digits-symmetric-40-dm.yaml --grid loss.lam=0,0.5,1 --grid loss.beta=4,8,12
    dm submit configs/digits-symmetric-40-dm.yaml --compare cce,gce,mae,dm --seeds 3
    dm runs --status running
    dm show 7 --json
    dm export 7 --what histograms --format parquet -o hist.parquet
    dm worker --device cuda:0

Every command takes ``--db URL`` (default: ``$DM_DATABASE_URL``, else
``sqlite:///./var/dm.sqlite``). Errors print one line on stderr and exit non-zero: 2 for an
invalid config or option, 1 for everything else (unknown run, refused transition, database).
``dm export`` writes only inside the export root (``$DM_EXPORT_DIR``, else the current
directory).

The worker (torch) is imported inside its command, so ``dm --help`` stays fast; the store is
imported here, because ``--status`` offers the store's own ``RunStatus`` values.
"""

from __future__ import annotations

import enum
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from dm_core.config import check_name, read_config_file, visible_controls
from dm_core.registry import ConfigError
from dm_store import RunNotFound, RunStatus, Store, StoreError
from studio.cli._app import app, invalid_config_text
from studio.run_facts import (
    loss_params,
    middle_ellipsis,
    noise_text,
    seed_text,
    selected_test_acc,
    shared_name_prefix,
)
from studio.sweeps import comparison_on_seeds, expand_grid, parse_grid


class ExportTable(enum.StrEnum):
    """What ``dm export`` writes."""

    SCALARS = "scalars"
    HISTOGRAMS = "histograms"
    EVALS = "evals"
    EXAMPLES = "examples"


class ExportFormat(enum.StrEnum):
    CSV = "csv"
    PARQUET = "parquet"


err_console = Console(stderr=True, highlight=False)


def db_option() -> Any:
    return typer.Option(None, "--db", envvar="DM_DATABASE_URL", show_envvar=True,
                        help="Database URL (default: sqlite:///./var/dm.sqlite).")


def _fail(message: str, code: int = 1) -> NoReturn:
    err_console.print(f"error: {message}", markup=False, soft_wrap=True)
    raise typer.Exit(code)


@contextmanager
def _errors() -> Iterator[None]:
    """One clear line instead of a traceback for every error a user can cause."""
    try:
        yield
    except RunNotFound as err:
        _fail(str(err))
    except ConfigError as err:
        _fail(invalid_config_text(err), 2)
    except StoreError as err:
        _fail(str(err))
    except ValueError as err:
        _fail(str(err), 2)


def _say_store_warnings() -> None:
    """Send the store's warnings to stderr when the command set up no logging of its own: a
    writer waiting for a locked SQLite database says so while it waits (``dm cancel`` behind
    a stuck lock holder), instead of a minute of silence."""
    store_log = logging.getLogger("dm.store")
    if not store_log.hasHandlers():
        handler = logging.StreamHandler()  # stderr
        handler.setLevel(logging.WARNING)
        handler.setFormatter(logging.Formatter("dm: %(message)s"))
        store_log.addHandler(handler)


def _open_store(db: str | None, artifacts: Path | None = None, *, create: bool = True):
    """The store at ``db``. Commands that only read or manage existing runs pass
    ``create=False``: given a SQLite file that is not there (moved, deleted) they fail naming
    it, instead of starting an empty database whose run ids begin again at 1. Only commands
    that start something (``dm submit``, ``dm worker``, ``dm db upgrade``) create one."""
    _say_store_warnings()
    return Store(db, artifacts, create=create)


# ---------------------------------------------------------------- submit

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
        _fail("--compare and --grid: give one (a grid's keys belong to one loss)", 2)
    if seeds is not None and compare is None:
        _fail("--seeds: only with --compare (a grid repeats over seeds with --grid seed=0,1,2)", 2)
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
        _fail(invalid_config_text(err), 2)
    with _errors():
        result = _open_store(db).submit(configs, group=group, max_attempts=max_attempts)
    if json_out:
        typer.echo(json.dumps({"group": result.group, "runs": result.run_ids}))
        return
    ids = result.run_ids
    shown = str(ids[0]) if len(ids) == 1 else f"{ids[0]}..{ids[-1]}" if ids == list(
        range(ids[0], ids[-1] + 1)) else ", ".join(map(str, ids))
    typer.echo(f"queued {len(ids)} run(s) in group {result.group}: {shown}")


# ---------------------------------------------------------------- runs and show

def _ago(when: datetime | None, now: datetime) -> str:
    if when is None:
        return "-"
    seconds = max(0.0, (now - when).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit} ago"
    return f"{seconds:.0f}s ago"


STATUS_STYLE = {RunStatus.QUEUED: "cyan", RunStatus.RUNNING: "yellow", RunStatus.SUCCEEDED: "green",
                RunStatus.FAILED: "red", RunStatus.CANCELLED: "magenta"}


# The columns of ``dm runs`` in display order, and the order in which they are kept when the
# terminal is narrow: id, status and progress always; the name shrinks (… in its middle) before
# anything after it is dropped; ``--wide`` shows them all, whole.
RUN_COLUMNS = (("id", "right"), ("name", "left"), ("status", "left"), ("test acc", "right"),
               ("sel acc", "right"), ("loss", "left"), ("params", "left"), ("noise", "left"),
               ("seed", "right"), ("progress", "right"), ("attempt", "right"), ("group", "left"),
               ("device", "left"), ("heartbeat", "right"))
KEPT_FIRST = ("id", "status", "progress", "name", "test acc", "params", "loss", "noise", "seed",
              "sel acc", "heartbeat", "attempt", "group", "device")
ALWAYS_KEPT = ("id", "status", "progress", "name")
# What tells runs apart in their configs: where every listed run has the same value, the
# value is said once above the table instead of filling a column.
CONFIG_COLUMNS = ("loss", "params", "noise", "seed")
NAME_MIN_WIDTH = 16
COLUMN_GAP = 3  # a space of padding either side of the (blank) column rule


def _accuracy(value: float | None) -> Text:
    return Text("-" if value is None else f"{value:.4f}")


def _run_cells(info: Any, now: datetime, prefix: str = "") -> dict[str, Text]:
    """One row of ``dm runs`` as plain text cells (stored text with its controls spelt out);
    ``prefix``, shared by every listed name, is left out of the name (shown as …)."""
    status = str(info.status) + (" (cancelling)" if info.cancel_requested
                                 and info.status == RunStatus.RUNNING else "")
    name = visible_controls(info.name)
    return {
        "id": Text(str(info.id)),
        "name": Text("…" + name[len(prefix):] if prefix else name),
        "group": Text(visible_controls(info.group)),
        "status": Text(status, style=STATUS_STYLE.get(info.status, "white")),
        "test acc": _accuracy((info.summary or {}).get("test_acc_final", info.last_test_acc)),
        "sel acc": _accuracy(selected_test_acc(info.summary)),
        "loss": Text(visible_controls(str((info.config.get("loss") or {}).get("name", "-")))),
        "params": Text(visible_controls(loss_params(info.config)) or "-"),
        "noise": Text(visible_controls(noise_text(info.config))),
        "seed": Text(seed_text(info.config)),
        "attempt": Text(f"{info.attempt}/{info.max_attempts}"),
        "progress": Text(f"{info.iteration}/{info.total_iterations or '?'}"),
        "device": Text(visible_controls(info.device or "-")),
        "heartbeat": Text(_ago(info.heartbeat_at, now) if info.status == RunStatus.RUNNING else "-"),
    }


def _shared_values(rows: list[dict[str, Text]]) -> dict[str, str]:
    """The config columns in which every one of two or more rows holds the same value."""
    if len(rows) < 2:
        return {}
    return {c: rows[0][c].plain for c in CONFIG_COLUMNS
            if len({r[c].plain for r in rows}) == 1}


def _fit_columns(rows: list[dict[str, Text]], width: int | None,
                 candidates: tuple[str, ...] = KEPT_FIRST) -> tuple[list[str], int, int]:
    """The columns to show within ``width`` terminal cells (all of them, whole, when None),
    in ``candidates`` order until one does not fit; the width left for the name; the
    table's width."""
    natural = {c: max([cell_len(c), *(r[c].cell_len for r in rows)]) for c, _ in RUN_COLUMNS}
    if width is None:
        total = sum(natural.values()) + COLUMN_GAP * (len(natural) - 1)
        return [c for c, _ in RUN_COLUMNS], natural["name"], total
    shown: list[str] = []
    for column in candidates:
        need = min(natural[column], NAME_MIN_WIDTH) if column == "name" else natural[column]
        used = sum(natural[c] for c in shown if c != "name") + COLUMN_GAP * len(shown)
        used += min(natural["name"], NAME_MIN_WIDTH) if "name" in shown else 0
        if column not in ALWAYS_KEPT and used + need > width:
            break
        shown.append(column)
    others = sum(natural[c] for c in shown if c != "name") + COLUMN_GAP * (len(shown) - 1)
    name_width = min(natural["name"], max(NAME_MIN_WIDTH, width - others))
    return [c for c, _ in RUN_COLUMNS if c in shown], name_width, others + name_width


def _runs_table(rows: list[dict[str, Text]], columns: list[str], name_width: int) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for column, justify in RUN_COLUMNS:
        if column in columns:
            table.add_column(column, justify=justify, no_wrap=True,  # type: ignore[arg-type]
                             overflow="ellipsis" if column == "name" else "fold",
                             width=name_width if column == "name" else None)
    for row in rows:
        # The end of a name (its grid point, its method) tells it from its neighbours: a name
        # too long loses its middle, not its end.
        name = Text(middle_ellipsis(row["name"].plain, name_width))
        table.add_row(*(name if c == "name" else row[c] for c in columns))
    return table


@app.command("runs")
def runs(
    status: RunStatus | None = typer.Option(None, "--status", help="Only runs in this status."),
    group: str | None = typer.Option(None, "--group", help="Only runs of this group."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="At most this many (newest first)."),
    wide: bool = typer.Option(False, "--wide", help="Every column, whole, however wide the "
                                                    "terminal (default: what fits)."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON list of run objects."),
    db: str | None = db_option(),
) -> None:
    """List runs, newest first: status, accuracy, loss, λ/β, noise, seed and progress.

    "test acc" is the final test accuracy, "sel acc" the one at the evaluation with the best
    validation accuracy. To fit the terminal, a name loses the start every listed name shares (said once above the
    table) and then its middle, and a loss, parameter, noise or seed that every listed run
    shares is said once above the table instead of taking a column."""
    with _errors():
        store = _open_store(db, create=False)
        infos = store.list_runs(status=status, group=group, limit=limit)
        now = store.db_now() if infos else datetime.now(UTC)
    if json_out:
        typer.echo(json.dumps([i.to_dict() for i in infos]))
        return
    if not infos:
        typer.echo("no runs" + (f" with status {status}" if status else "") + "; queue some with "
                   "`dm submit CONFIG`")
        return
    out = Console()
    prefix = "" if wide else shared_name_prefix([visible_controls(i.name) for i in infos])
    rows = [_run_cells(i, now, prefix) for i in infos]
    shared = {} if wide else _shared_values(rows)
    candidates = tuple(c for c in KEPT_FIRST if c not in shared)
    columns, name_width, table_width = _fit_columns(rows, None if wide else out.width, candidates)
    if wide:  # as wide as the table: the terminal wraps, a pager (less -S) scrolls
        out = Console(width=max(out.width, table_width))
    if prefix:
        out.print(Text(f"names: {prefix}…"), style="dim", highlight=False)
    if shared:
        out.print(Text("every run listed: " + " · ".join(
            f"{c} {v}" for c, v in shared.items())), style="dim", highlight=False)
    out.print(_runs_table(rows, columns, name_width))
    hidden = [c for c, _ in RUN_COLUMNS if c not in columns and c not in shared]
    if hidden:
        out.print(f"hidden at {out.width} columns: {', '.join(hidden)} (--wide shows them)",
                  style="dim", highlight=False)


@app.command("show")
def show(
    run_id: int = typer.Argument(..., metavar="RUN", help="Run id (see `dm runs`)."),
    json_out: bool = typer.Option(False, "--json", help="Print the run as one JSON object."),
    db: str | None = db_option(),
) -> None:
    """Show one run: status, progress, config, summary and error."""
    with _errors():
        info = _open_store(db, create=False).get_run(run_id)
    if json_out:
        typer.echo(json.dumps(info.to_dict()))
        return
    out = Console(highlight=False)
    out.print(f"[bold]run {info.id}[/bold]  {escape(visible_controls(info.name))}")
    rows = [("group", info.group), ("status", str(info.status) + (" (cancel requested)"
                                                                   if info.cancel_requested else "")),
            ("attempt", f"{info.attempt} of {info.max_attempts}"
             + (f" (after {info.retries} retr{'y' if info.retries == 1 else 'ies'})" if info.retries else "")),
            ("progress", f"{info.iteration}/{info.total_iterations or '?'}"),
            ("test acc", "-" if info.last_test_acc is None else f"{info.last_test_acc:.4f}"),
            ("device", info.device or "-"), ("worker", info.worker_id or "-"),
            ("checkpoint", f"iteration {info.checkpoint_iteration}: {info.checkpoint_path}"
             if info.checkpoint_iteration else "-")]
    for key in ("created_at", "started_at", "finished_at", "heartbeat_at"):
        value = getattr(info, key)
        rows.append((key.replace("_at", ""), value.isoformat(timespec="seconds") if value else "-"))
    for key, value in rows:
        out.print(f"  {key:<11} {visible_controls(str(value))}", markup=False)
    if info.error:
        out.print(f"  {'error':<11} {visible_controls(info.error)}", markup=False, style="red")
    if info.summary:
        out.print("  summary")
        for key, value in info.summary.items():
            if value is not None and not isinstance(value, dict):
                out.print(f"    {key:<22} {value:.4f}" if isinstance(value, float)
                          else f"    {key:<22} {visible_controls(str(value))}", markup=False)
    out.print("  config", json.dumps(info.config, indent=1).replace("\n", "\n  "), markup=False)


# ---------------------------------------------------------------- cancel, retry, delete

@app.command("cancel")
def cancel(
    run_id: int = typer.Argument(..., metavar="RUN", help="Run id (see `dm runs`)."),
    db: str | None = db_option(),
) -> None:
    """Cancel a queued run, or ask a running run's worker to stop it."""
    with _errors():
        info = _open_store(db, create=False).cancel(run_id)
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
    with _errors():
        info = _open_store(db, create=False).retry(run_id, resume=resume)
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
    with _errors():
        _open_store(db, artifacts, create=False).delete(run_id)
    typer.echo(f"run {run_id}: deleted")


# ---------------------------------------------------------------- export

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
    with _errors():
        target = _output_path(run_id, what, fmt, output, out_dir)
        store = _open_store(db, create=False)
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
        _fail(f"cannot write {target}: {err.strerror or err}")
    typer.echo(f"run {run_id}: {len(frame)} {what} rows written to {target}")


# ---------------------------------------------------------------- worker

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

    with _errors():
        from workers.worker import Worker

        store = _open_store(db, artifacts)
        try:
            w = Worker(store, device=device, poll=poll, stale_after=stale_after,
                       exit_when_idle=exit_when_idle, artifacts_dir=store.artifacts_dir,
                       max_outage=max_outage)
        except ConfigError as err:
            _fail(f"--device: {err}", 2)
        store.queue_counts()  # a wrong URL or an unreachable database fails here, in one line
        w.run()


# ---------------------------------------------------------------- db

db_app = typer.Typer(help="Database schema: dm db upgrade.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade(db: str | None = db_option()) -> None:
    """Apply pending schema migrations (safe while other processes run)."""
    with _errors():
        store = _open_store(db)
        revision = store.upgrade()
    typer.echo(f"database {store.masked_url} is at schema revision {revision}")
