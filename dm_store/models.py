"""The store's tables (SQLAlchemy 2). Migrations in ``migrations/versions`` create exactly these.

Every per-iteration table is keyed by ``(run_id, iteration)``: the primary key is the index
the dashboard reads through, and it makes a duplicate iteration impossible rather than
merely unlikely. Arrays (histogram counts, labels) are stored as little-endian binary
(``int32`` counts and labels, ``uint8`` flags): a 20-bin histogram pair is 160 bytes.

Times are always the DATABASE's clock (see ``Store``): workers on several machines never
compare their own clocks. JSON columns hold plain JSON (``jsonable``): PostgreSQL's json type
rejects NaN, so a non-finite number is stored as null.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from dm_store.status import STATUSES

# Stable constraint names: Alembic's batch mode (SQLite) needs names to drop or alter them.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

COUNT_DTYPE = "<i4"  # histogram counts
LABEL_DTYPE = "<i4"  # class labels
FLAG_DTYPE = "u1"  # is_noisy


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def _status_check() -> CheckConstraint:
    allowed = ", ".join(f"'{s}'" for s in STATUSES)
    return CheckConstraint(f"status IN ({allowed})", name="status")


class Run(Base):
    """One training run: its config, where it is in its life, and a few denormalised
    progress fields (``last_iteration``, ``last_test_acc``) so that listing runs is one query."""

    __tablename__ = "runs"
    __table_args__ = (
        Index("ix_runs_status_id", "status", "id"),
        _status_check(),
        {"sqlite_autoincrement": True},  # ids are never reused: artifacts dirs are named by id
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255))
    group_id: Mapped[str] = mapped_column(String(255), index=True)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    worker_id: Mapped[str | None] = mapped_column(String(255))
    device: Mapped[str | None] = mapped_column(String(64))
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    # ``dm retry`` starts the attempts over at 1 (with a fresh max_attempts); this counts the
    # retries, so (retries, attempt) names every attempt of a run once.
    retries: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    error: Mapped[str | None] = mapped_column(Text)
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    checkpoint_path: Mapped[str | None] = mapped_column(Text)
    checkpoint_iteration: Mapped[int | None] = mapped_column(Integer)
    total_iterations: Mapped[int | None] = mapped_column(Integer)
    last_iteration: Mapped[int] = mapped_column(Integer, default=0)
    last_test_acc: Mapped[float | None] = mapped_column(Float)
    # A diverged run: the iteration it stopped at and the measured figures behind the verdict
    # (loss, largest logit, the emphasis concentration of the iterations just before).
    diverged_at: Mapped[int | None] = mapped_column(Integer)
    divergence: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))


def _run_fk() -> ForeignKey:
    return ForeignKey("runs.id", ondelete="CASCADE")


# The scalars the training loop reports every iteration (dm_core.events.ScalarsEvent), one
# float column each: reading 30,000 iterations is then a plain fetch, no JSON to decode.
# Any other key the loop may add later lands in ``extra`` (JSON) and is read back the same.
SCALAR_COLUMNS = ("loss", "ce", "lr", "batch_acc", "weight_mean", "weight_var",
                  "p_clean_mean", "p_noisy_mean", "ess_fraction", "max_share")


class Scalar(Base):
    """One row per iteration: the loop's scalars (NULL when not reported or not finite)."""

    __tablename__ = "scalars"
    run_id: Mapped[int] = mapped_column(Integer, _run_fk(), primary_key=True)
    iteration: Mapped[int] = mapped_column(Integer, primary_key=True)
    loss: Mapped[float | None] = mapped_column(Float)
    ce: Mapped[float | None] = mapped_column(Float)
    lr: Mapped[float | None] = mapped_column(Float)
    batch_acc: Mapped[float | None] = mapped_column(Float)
    weight_mean: Mapped[float | None] = mapped_column(Float)
    weight_var: Mapped[float | None] = mapped_column(Float)
    p_clean_mean: Mapped[float | None] = mapped_column(Float)
    p_noisy_mean: Mapped[float | None] = mapped_column(Float)
    # How concentrated the batch's normalised emphasis was: (Σw)²/Σw² / B and max w / Σw.
    ess_fraction: Mapped[float | None] = mapped_column(Float)
    max_share: Mapped[float | None] = mapped_column(Float)
    extra: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))


class Histogram(Base):
    """One row per iteration: clean and noisy counts of the batch's p_i, int32 arrays."""

    __tablename__ = "histograms"
    run_id: Mapped[int] = mapped_column(Integer, _run_fk(), primary_key=True)
    iteration: Mapped[int] = mapped_column(Integer, primary_key=True)
    bins: Mapped[int] = mapped_column(Integer)
    clean: Mapped[bytes] = mapped_column(LargeBinary)
    noisy: Mapped[bytes] = mapped_column(LargeBinary)


class Eval(Base):
    """One row per evaluation: test_acc, train_acc_corrupted, ... as JSON."""

    __tablename__ = "evals"
    run_id: Mapped[int] = mapped_column(Integer, _run_fk(), primary_key=True)
    iteration: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)


class ExampleSnapshot(Base):
    """One row per evaluation: every training example's statistics at that point
    (``dm_core.example_stats``), the arrays of one ``.npz`` blob (no pickles)."""

    __tablename__ = "example_snapshots"
    run_id: Mapped[int] = mapped_column(Integer, _run_fk(), primary_key=True)
    iteration: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class RunLabels(Base):
    """The training labels a run used: clean, corrupted and the is-noisy flags (per phase:
    ``train``; ``relabel`` holds the predicted labels of the label-correction phase)."""

    __tablename__ = "run_labels"
    run_id: Mapped[int] = mapped_column(Integer, _run_fk(), primary_key=True)
    phase: Mapped[str] = mapped_column(String(16), primary_key=True)
    clean: Mapped[bytes] = mapped_column(LargeBinary)
    noisy: Mapped[bytes] = mapped_column(LargeBinary)
    is_noisy: Mapped[bytes] = mapped_column(LargeBinary)


class Claim(Base):
    """An audit row per claim: which worker took which attempt (of which retry) of a run,
    and when. A warm stop hands a run back without using up its attempt, so the same
    (retry, attempt) is claimed again when it resumes."""

    __tablename__ = "claims"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(Integer, _run_fk(), index=True)
    retry: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # runs.retries
    attempt: Mapped[int] = mapped_column(Integer)
    worker_id: Mapped[str] = mapped_column(String(255))
    device: Mapped[str | None] = mapped_column(String(64))
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class DatabaseIdentity(Base):
    """One row, written once when the schema is created (or upgraded to include this table):
    a random UUID naming this database. A database dropped and created again, or another one
    put in its place, has another UUID; a worker compares it with the one it started with
    before every write (``dm_store.identity``)."""

    __tablename__ = "database_identity"
    uuid: Mapped[str] = mapped_column(String(36), primary_key=True)
    created_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


RUNS = Run.__table__
SCALARS = Scalar.__table__
HISTOGRAMS = Histogram.__table__
EVALS = Eval.__table__
EXAMPLES = ExampleSnapshot.__table__
LABELS = RunLabels.__table__
CLAIMS = Claim.__table__
IDENTITY = DatabaseIdentity.__table__
PER_ITERATION = (SCALARS, HISTOGRAMS, EVALS, EXAMPLES)


# ---------------------------------------------------------------------- storage formats

def pack(array: np.ndarray, dtype: str) -> bytes:
    """An array as the little-endian bytes a binary column holds."""
    return np.ascontiguousarray(array, dtype=dtype).tobytes()


def jsonable(value: Any) -> Any:
    """Plain JSON: numpy scalars to Python, non-finite floats to None (PostgreSQL's json
    rejects NaN), nested dicts and lists converted too.

    >>> jsonable({"a": np.float32(0.5), "b": [float("nan"), 2]})
    {'a': 0.5, 'b': [None, 2]}
    """
    if type(value) is float:  # the common case (every logged scalar): checked first, cheaply
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
