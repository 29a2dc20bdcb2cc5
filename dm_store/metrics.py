"""A run's metrics: what the training loop reported, written by its worker and read by the
dashboard and ``dm export``.

Writing is idempotent: ``write_batch`` first deletes any row of the batch's iterations, so a
batch whose commit succeeded on the server but whose answer was lost (the server restarted
mid-commit) can be written again without a duplicate or an error. Every write is fenced by
the writer's claim (``dm_store.claims``): a worker that lost the run writes and deletes
nothing. Rows are built before the transaction begins, so the write lock is held only while
statements run.

Reads never take SQLite's write lock; long series are downsampled in SQL to "every k-th
iteration plus the last" (``dm_store.downsample``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.orm import Session

from dm_store.claims import fence
from dm_store.database import Database
from dm_store.downsample import smallest_stride
from dm_store.frames import records_frame, scalars_frame
from dm_store.models import (
    COUNT_DTYPE,
    EVALS,
    EXAMPLES,
    FLAG_DTYPE,
    HISTOGRAMS,
    LABEL_DTYPE,
    LABELS,
    PER_ITERATION,
    RUNS,
    SCALAR_COLUMNS,
    SCALARS,
    jsonable,
    pack,
)

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class HistogramSeries:
    """Histograms of p_i over iterations: ``clean`` and ``noisy`` are (n, bins) int32 arrays."""

    iterations: np.ndarray
    clean: np.ndarray
    noisy: np.ndarray

    def __len__(self) -> int:
        return len(self.iterations)


# ---------------------------------------------------------------------- rows

def scalar_row(run_id: int, event: Any) -> dict[str, Any]:
    """A ScalarsEvent as a row: the known scalars in their columns, the rest in ``extra``."""
    values = jsonable(event.values)
    row: dict[str, Any] = {"run_id": run_id, "iteration": int(event.iteration)}
    for name in SCALAR_COLUMNS:
        value = values.get(name)
        if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
            row[name] = None if value is None else float(values.pop(name))
        else:
            row[name] = None  # not a number: kept as given, in extra
    row["extra"] = values or None
    return row


def last_test_acc(rows: Sequence[Mapping[str, Any]]) -> float | None:
    """The newest finite ``test_acc`` of evaluation rows in iteration order."""
    for data in reversed(rows):
        value = data.get("test_acc")
        if isinstance(value, int | float) and math.isfinite(value):
            return float(value)
    return None


def delete_rows(s: Session, run_id: int, after: int | None = None) -> None:
    """Delete a run's per-iteration rows after iteration ``after`` (all of them, labels too,
    when ``after`` is None)."""
    if after is None:
        for table in (*PER_ITERATION, LABELS):
            s.execute(delete(table).where(table.c.run_id == run_id))
        return
    for table in PER_ITERATION:
        s.execute(delete(table).where(table.c.run_id == run_id, table.c.iteration > after))


def progress(s: Session, run_id: int) -> dict[str, Any]:
    """The run's denormalised progress fields as the stored rows say: ``last_iteration`` and
    ``last_test_acc``."""
    last = s.execute(select(func.max(SCALARS.c.iteration))
                     .where(SCALARS.c.run_id == run_id)).scalar()
    recent = s.execute(select(EVALS.c.data).where(EVALS.c.run_id == run_id)
                       .order_by(EVALS.c.iteration.desc()).limit(1)).scalars().all()
    return {"last_iteration": int(last or 0), "last_test_acc": last_test_acc(recent)}


# ---------------------------------------------------------------------- the metrics

class Metrics:
    """Writes (by the worker holding a run) and reads (by anyone) of a run's metrics."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- writing -------------------------------------------------------------------------

    def write_batch(self, run_id: int, attempt: int, scalars: Sequence[Any] = (),
                    histograms: Sequence[Any] = (), evals: Sequence[Any] = (),
                    checkpoint: Any | None = None, start: Any | None = None, *,
                    worker_id: str | None = None, examples: Sequence[Any] = ()) -> None:
        """Append what the training loop reported, in ONE transaction (see ``Store``)."""
        from dm_core.example_stats import pack as pack_snapshot

        values: dict[str, Any] = {"heartbeat_at": self.db.now()}
        if scalars:
            values["last_iteration"] = max(e.iteration for e in scalars)
        acc = last_test_acc([e.values for e in sorted(evals, key=lambda e: e.iteration)])
        if acc is not None:
            values["last_test_acc"] = acc
        if checkpoint is not None:
            values["checkpoint_path"] = str(checkpoint.path)
            values["checkpoint_iteration"] = int(checkpoint.iteration)
        if start is not None:
            values["total_iterations"] = int(start.total_iterations)
            values["device"] = str(start.device)
        # Every row is built before BEGIN: the write lock is held only while statements run.
        rows = {
            SCALARS: [scalar_row(run_id, e) for e in scalars],
            HISTOGRAMS: [{"run_id": run_id, "iteration": int(e.iteration), "bins": len(e.clean),
                          "clean": pack(e.clean, COUNT_DTYPE), "noisy": pack(e.noisy, COUNT_DTYPE)}
                         for e in histograms],
            EVALS: [{"run_id": run_id, "iteration": int(e.iteration), "data": jsonable(e.values)}
                    for e in evals],
            EXAMPLES: [{"run_id": run_id, "iteration": int(e.iteration), "data": pack_snapshot(e.arrays)}
                       for e in examples],
        }
        labels = None
        if start is not None:
            labels = {"run_id": run_id, "phase": getattr(start, "phase", "train") or "train",
                      "clean": pack(start.clean_labels, LABEL_DTYPE),
                      "noisy": pack(start.noisy_labels, LABEL_DTYPE),
                      "is_noisy": pack(start.is_noisy, FLAG_DTYPE)}
        with self.db.session() as s:
            # First statement: the fence (and a heartbeat). A worker that lost the run gets
            # LostClaim here and the transaction writes nothing.
            fence(s, run_id, attempt, worker_id, "write to", **values)
            for table, new in rows.items():
                if new:  # idempotent: a batch written twice replaces its own rows
                    s.execute(delete(table).where(table.c.run_id == run_id,
                                                  table.c.iteration >= min(r["iteration"] for r in new)))
                    s.execute(insert(table), new)
            if labels is not None:
                s.execute(delete(LABELS).where(LABELS.c.run_id == run_id,
                                               LABELS.c.phase == labels["phase"]))
                s.execute(insert(LABELS).values(**labels))

    def truncate_after(self, run_id: int, iteration: int, *, attempt: int | None = None,
                       worker_id: str | None = None) -> None:
        """Delete every scalar, histogram and eval after ``iteration`` and fix the run's
        progress fields, in one transaction fenced by ``attempt``/``worker_id`` when given
        (see ``Store.truncate_after``)."""
        with self.db.session() as s:
            if attempt is not None:
                fence(s, run_id, attempt, worker_id, "truncate", heartbeat_at=self.db.now())
            delete_rows(s, run_id, after=iteration)
            s.execute(update(RUNS).where(RUNS.c.id == run_id).values(**progress(s, run_id)))

    # -- reading -------------------------------------------------------------------------

    def scalars(self, run_id: int, after: int = 0, max_points: int | None = None,
                stride: int | None = None) -> pd.DataFrame:
        cond = [SCALARS.c.run_id == run_id, SCALARS.c.iteration > after]
        with self.db.session(readonly=True) as s:
            cond += self._stride_filter(s, SCALARS, cond, max_points, stride)
            rows = s.execute(select(SCALARS.c.iteration, *(SCALARS.c[n] for n in SCALAR_COLUMNS),
                                    SCALARS.c.extra).where(*cond)
                             .order_by(SCALARS.c.iteration)).all()
        return scalars_frame(rows)

    def example_iterations(self, run_id: int) -> list[int]:
        with self.db.session(readonly=True) as s:
            return list(s.execute(select(EXAMPLES.c.iteration).where(EXAMPLES.c.run_id == run_id)
                                  .order_by(EXAMPLES.c.iteration)).scalars())

    def examples(self, run_id: int, iteration: int | None = None) -> tuple[int, dict[str, np.ndarray]] | None:
        from dm_core.example_stats import unpack

        cond = [EXAMPLES.c.run_id == run_id]
        if iteration is not None:
            cond.append(EXAMPLES.c.iteration <= iteration)
        with self.db.session(readonly=True) as s:
            row = s.execute(select(EXAMPLES.c.iteration, EXAMPLES.c.data).where(*cond)
                            .order_by(EXAMPLES.c.iteration.desc()).limit(1)).first()
        return None if row is None else (int(row[0]), unpack(row[1]))

    def evals(self, run_id: int) -> pd.DataFrame:
        with self.db.session(readonly=True) as s:
            rows = s.execute(select(EVALS.c.iteration, EVALS.c.data)
                             .where(EVALS.c.run_id == run_id).order_by(EVALS.c.iteration)).all()
        return records_frame(rows)

    def histograms(self, run_id: int, start: int | None = None, end: int | None = None,
                   max_rows: int | None = 2000, stride: int | None = None) -> HistogramSeries:
        cond = [HISTOGRAMS.c.run_id == run_id]
        if start is not None:
            cond.append(HISTOGRAMS.c.iteration >= start)
        if end is not None:
            cond.append(HISTOGRAMS.c.iteration <= end)
        with self.db.session(readonly=True) as s:
            cond += self._stride_filter(s, HISTOGRAMS, cond, max_rows, stride)
            rows = s.execute(select(HISTOGRAMS.c.iteration, HISTOGRAMS.c.bins,
                                    HISTOGRAMS.c.clean, HISTOGRAMS.c.noisy)
                             .where(*cond).order_by(HISTOGRAMS.c.iteration)).all()
        if not rows:
            empty = np.zeros((0, 0), dtype=np.int32)
            return HistogramSeries(np.zeros(0, dtype=np.int64), empty, empty.copy())
        bins = rows[0][1]
        iterations = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        clean = np.frombuffer(b"".join(r[2] for r in rows), dtype=COUNT_DTYPE)
        noisy = np.frombuffer(b"".join(r[3] for r in rows), dtype=COUNT_DTYPE)
        return HistogramSeries(iterations, clean.reshape(len(rows), bins).astype(np.int32),
                               noisy.reshape(len(rows), bins).astype(np.int32))

    def histogram_at(self, run_id: int, iteration: int
                     ) -> tuple[int, np.ndarray, np.ndarray] | None:
        with self.db.session(readonly=True) as s:
            row = s.execute(select(HISTOGRAMS.c.iteration, HISTOGRAMS.c.clean, HISTOGRAMS.c.noisy)
                            .where(HISTOGRAMS.c.run_id == run_id,
                                   HISTOGRAMS.c.iteration <= iteration)
                            .order_by(HISTOGRAMS.c.iteration.desc()).limit(1)).first()
        if row is None:
            return None
        return (int(row[0]), np.frombuffer(row[1], COUNT_DTYPE).astype(np.int32),
                np.frombuffer(row[2], COUNT_DTYPE).astype(np.int32))

    def labels(self, run_id: int, phase: str = "train"
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        with self.db.session(readonly=True) as s:
            row = s.execute(select(LABELS.c.clean, LABELS.c.noisy, LABELS.c.is_noisy)
                            .where(LABELS.c.run_id == run_id, LABELS.c.phase == phase)).first()
        if row is None:
            return None
        return (np.frombuffer(row[0], LABEL_DTYPE).astype(np.int64),
                np.frombuffer(row[1], LABEL_DTYPE).astype(np.int64),
                np.frombuffer(row[2], FLAG_DTYPE).astype(bool))

    def _stride_filter(self, s: Session, table, cond: list[Any], limit: int | None,
                       stride: int | None = None) -> list[Any]:
        """Every k-th iteration and the last one, in SQL: k is ``stride``, or chosen so that
        at most ``limit`` rows remain (``smallest_stride``)."""
        if stride is not None and stride < 1:
            raise ValueError(f"stride: must be a positive integer, got {stride}")
        if not limit and not stride or stride == 1:
            return []
        count, first, last = s.execute(select(func.count(), func.min(table.c.iteration),
                                              func.max(table.c.iteration)).where(*cond)).one()
        k = stride or smallest_stride(int(count or 0), limit, int(first or 1), int(last or 1))
        if k == 1:
            return []
        return [or_(table.c.iteration % k == 0, table.c.iteration == last)]


__all__ = ["HistogramSeries", "Metrics", "delete_rows", "last_test_acc", "progress", "scalar_row"]
