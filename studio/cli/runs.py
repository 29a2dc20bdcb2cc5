"""``dm runs`` and ``dm show``: the runs in a table that fits the terminal, and one run in full.

    dm runs --status running
    dm runs --group digits-symmetric-40-dm-20261206-120000-abcd --wide
    dm show 7 --json

The store is imported here, because ``--status`` offers the store's own ``RunStatus`` values.
Stored text (names, groups, errors) is printed with its control characters spelt out.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import typer
from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from dm_core.config import visible_controls
from dm_store import RunStatus
from studio.cli._app import app
from studio.cli.exits import user_errors
from studio.cli.store_access import db_option, open_store
from studio.run_facts import (
    loss_params,
    middle_ellipsis,
    noise_text,
    seed_text,
    selected_test_acc,
    shared_name_prefix,
)


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
    with user_errors():
        store = open_store(db, create=False)
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
    with user_errors():
        info = open_store(db, create=False).get_run(run_id)
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
