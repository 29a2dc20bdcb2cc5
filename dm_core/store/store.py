"""The store: the one piece of shared state between the dashboard, the CLI and the workers.

One ``Store(url)`` owns one SQLAlchemy engine and one ``session_scope()`` that commits,
rolls back, closes and turns database errors into ``StoreError`` (after Optuna's RDB
storage). It pickles as its URL, so it crosses process boundaries; each process builds its
own engine.

SQLite (the default, one machine) runs in WAL mode with a busy timeout, and every writing
transaction starts with ``BEGIN IMMEDIATE`` (PITFALLS.md 9): a writer takes the lock before
it reads, so no read-then-write race and no deadlock-by-upgrade. Readers use a deferred
``BEGIN`` and never block writers. PostgreSQL (many machines) uses READ COMMITTED; claiming a
run is ``SELECT … FOR UPDATE SKIP LOCKED`` there (PITFALLS.md 10).

Life of a run (``RunStatus``): every change of status is ONE guarded ``UPDATE … WHERE id = :id
AND status IN (allowed sources)`` that raises when no row changed, so two processes racing
for the same run can never both win. Worker-side writes are fenced by the attempt number and
the worker id: a worker whose run was re-queued behind its back gets ``LostClaim`` and
writes nothing.

Writing metrics is idempotent: ``write_batch`` first deletes any row of the batch's
iterations, so a batch whose commit succeeded on the server but whose answer was lost (the
server restarted mid-commit) can be written again without a duplicate or an error.

Errors: a connection refused, dropped or timed out is ``StoreUnavailable`` (retry it with a
backoff: ``workers.backoff``); any other database error is ``StoreError``.

Times (``created_at``, ``heartbeat_at``, ...) come from the DATABASE clock, never a worker's:
staleness is decided by one clock however many machines take part.
"""

from __future__ import annotations

import enum
import logging
import math
import os
import re
import secrets
import shutil
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import (
    String,
    cast,
    create_engine,
    delete,
    event,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool

from dm_core.store.models import (
    CLAIMS,
    COUNT_DTYPE,
    EVALS,
    FLAG_DTYPE,
    HISTOGRAMS,
    LABEL_DTYPE,
    LABELS,
    PER_ITERATION,
    RUNS,
    SCALAR_COLUMNS,
    SCALARS,
    STATUSES,
)

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("dm.store")

DEFAULT_URL = "sqlite:///./var/dm.sqlite"
DEFAULT_ARTIFACTS = "./var/artifacts"
SQLITE_BUSY_TIMEOUT_S = 60.0
# pg_advisory_xact_lock key that serialises schema upgrades ("dmst").
PG_MIGRATION_LOCK = 0x646D7374
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


# ---------------------------------------------------------------------- statuses

class RunStatus(enum.StrEnum):
    """Where a run is in its life. Allowed transitions (``TRANSITIONS``)::

        queued    -> running     a worker claims it (claim)
                  -> cancelled   cancel before it started (cancel)
        running   -> succeeded   training finished (finish)
                  -> failed      diverged or raised (finish); or its worker was lost and
                                 max_attempts are used up (requeue_stale)
                  -> cancelled   the worker honoured cancel_requested (finish), or the worker
                                 was lost after a cancel was requested (requeue_stale)
                  -> queued      warm stop: the worker checkpointed and handed it back, or its
                                 worker was lost and attempts remain (release, requeue_stale)
        failed    -> queued      retry (data of the old attempts cleared, attempt reset to 1,
                                 retries + 1: (retries, attempt) never repeats)
        cancelled -> queued      retry
        succeeded    final

    ``delete`` removes a run in any status but ``running``.
    """

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.QUEUED: frozenset({RunStatus.RUNNING, RunStatus.CANCELLED}),
    RunStatus.RUNNING: frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED,
                                  RunStatus.QUEUED}),
    RunStatus.SUCCEEDED: frozenset(),
    RunStatus.FAILED: frozenset({RunStatus.QUEUED}),
    RunStatus.CANCELLED: frozenset({RunStatus.QUEUED}),
}
assert tuple(s.value for s in RunStatus) == STATUSES
FINAL_STATUSES = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)


def sources_of(target: RunStatus) -> frozenset[RunStatus]:
    """The statuses from which ``target`` may be reached.

    >>> sorted(str(s) for s in sources_of(RunStatus.QUEUED))
    ['cancelled', 'failed', 'running']
    """
    return frozenset(s for s, targets in TRANSITIONS.items() if target in targets)


# ---------------------------------------------------------------------- errors

class StoreError(RuntimeError):
    """A database problem (unreachable, locked too long, schema mismatch), with a clear message."""


class RunNotFound(KeyError):
    """No run has this id."""

    def __init__(self, run_id: int) -> None:
        super().__init__(run_id)
        self.run_id = run_id

    def __str__(self) -> str:
        return f"run {self.run_id} does not exist (see `dm runs`)"


class StoreUnavailable(StoreError):
    """The database could not be reached or stayed busy: the connection was refused or lost
    (a server restarting, a network blip) or SQLite stayed locked past its busy timeout.
    Worth retrying with a backoff, unlike any other ``StoreError`` (a bug or a bad schema
    fails the same way every time)."""


class InvalidTransition(StoreError):
    """The run's status does not allow this change (e.g. retrying a run that succeeded)."""


class LostClaim(StoreError):
    """The run is no longer held by this worker (it was re-queued, reclaimed or finished)."""


# ---------------------------------------------------------------------- records

@dataclass(frozen=True)
class SubmitResult:
    group: str
    run_ids: list[int]


@dataclass(frozen=True)
class RunInfo:
    """One run as the dashboard and ``dm runs`` see it. Times are aware UTC datetimes from the
    database clock; ``iteration`` is the latest stored iteration."""

    id: int
    name: str
    group: str
    status: RunStatus
    attempt: int
    max_attempts: int
    iteration: int
    total_iterations: int | None
    created_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    worker_id: str | None
    device: str | None
    error: str | None
    summary: dict[str, Any] | None
    config: dict[str, Any]
    last_test_acc: float | None
    cancel_requested: bool
    checkpoint_iteration: int | None = None
    checkpoint_path: str | None = None
    retries: int = 0
    diverged_at: int | None = None  # the iteration a diverged run stopped at
    divergence: dict[str, Any] | None = None  # the measured figures behind that verdict

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: datetimes as ISO 8601 strings."""
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, datetime):
                out[key] = value.isoformat()
        out["status"] = str(self.status)
        return out


@dataclass(frozen=True)
class ClaimedRun:
    """What a worker gets from ``claim``: enough to train (and resume) the run.
    ``retries`` counts ``dm retry``s: attempts start over at 1 after each."""

    id: int
    name: str
    group: str
    config: dict[str, Any]
    attempt: int
    max_attempts: int
    worker_id: str
    device: str
    checkpoint_path: str | None
    checkpoint_iteration: int | None
    total_iterations: int | None
    retries: int = 0


@dataclass(frozen=True)
class HistogramSeries:
    """Histograms of p_i over iterations: ``clean`` and ``noisy`` are (n, bins) int32 arrays."""

    iterations: np.ndarray
    clean: np.ndarray
    noisy: np.ndarray

    def __len__(self) -> int:
        return len(self.iterations)


# ---------------------------------------------------------------------- URLs and engines

URL_ENV = "DM_DATABASE_URL"
URL_FILE_ENV = "DM_DATABASE_URL_FILE"


def url_from_environment() -> str | None:
    """``$DM_DATABASE_URL``, else the URL in the file ``$DM_DATABASE_URL_FILE`` names (e.g. a
    Docker or Kubernetes secret; surrounding whitespace ignored), else None.

    The variable wins over the file (``dm up`` hands its children the resolved URL in it).
    A file that is missing, unreadable or empty is an error naming the variable.
    """
    if os.environ.get(URL_ENV):
        return os.environ[URL_ENV]
    name = os.environ.get(URL_FILE_ENV)
    if not name:
        return None
    try:
        text = Path(name).expanduser().read_text(encoding="utf-8").strip()
    except OSError as err:
        raise StoreError(f"{URL_FILE_ENV}: cannot read {name!r} ({err.strerror or err}); it "
                         "must name a readable file holding the database URL") from None
    except UnicodeDecodeError:
        raise StoreError(f"{URL_FILE_ENV}: {name!r} is not a UTF-8 text file; it must hold "
                         "the database URL") from None
    if not text:
        raise StoreError(f"{URL_FILE_ENV}: {name!r} is empty; it must hold the database URL")
    return text


def resolve_url(url: str | None = None) -> str:
    """The database URL to use: ``url``, else ``$DM_DATABASE_URL``, else the contents of
    ``$DM_DATABASE_URL_FILE``, else ./var/dm.sqlite (``url_from_environment``).

    A relative SQLite path becomes absolute (every process opens the same file whatever its
    working directory) and its folder is created; ``postgresql://`` means psycopg 3.
    """
    raw = url or url_from_environment() or DEFAULT_URL
    try:
        parsed = make_url(raw)
    except (ArgumentError, ValueError):  # ValueError: e.g. a port that is not a number
        # Never echo the raw text: it may hold a password.
        raise StoreError(f"the database URL (--db / {URL_ENV} / {URL_FILE_ENV}) is not a URL; "
                         "expected e.g. sqlite:///var/dm.sqlite or "
                         "postgresql+psycopg://user:password@host/dm") from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        db = parsed.database
        if db and db != ":memory:" and not db.startswith("file:"):
            path = Path(db).expanduser()
            if not path.is_absolute():
                path = Path.cwd() / path
            path.parent.mkdir(parents=True, exist_ok=True)
            parsed = parsed.set(database=str(path))
    elif backend != "postgresql":
        raise StoreError(f"database {backend!r} is not supported; use sqlite or postgresql")
    return parsed.render_as_string(hide_password=False)


def mask_url(url: str) -> str:
    """The URL with its password replaced by ***, safe to print or log.

    >>> mask_url("postgresql+psycopg://dm:secret@db:5432/dm")
    'postgresql+psycopg://dm:***@db:5432/dm'
    """
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "<invalid database URL>"


def _make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(parsed, pool_pre_ping=True, pool_size=5, max_overflow=10)

    kwargs: dict[str, Any] = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S,
                                               "check_same_thread": False}}
    if parsed.database in (None, "", ":memory:"):
        kwargs["poolclass"] = StaticPool  # one shared in-memory database
    engine = create_engine(parsed, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        # pysqlite's own transaction handling runs SELECTs outside the transaction; turn it
        # off and issue BEGIN ourselves (PITFALLS.md 9).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        cursor.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at checkpoints, fast
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:
        # Writers lock at BEGIN, so the busy handler applies (a deferred read-to-write
        # upgrade fails at once instead of waiting). Readers stay deferred: WAL snapshots.
        readonly = connection.get_execution_options().get("dm_readonly", False)
        connection.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")

    return engine


def _alembic_config():
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


# ---------------------------------------------------------------------- helpers

def _utc(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):  # SQLite text timestamps from the database clock
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _jsonable(value: Any) -> Any:
    """Plain JSON: numpy scalars to Python, non-finite floats to None (PostgreSQL's json
    rejects NaN), nested dicts and lists converted too."""
    if type(value) is float:  # the common case (every logged scalar): checked first, cheaply
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _pack(array: np.ndarray, dtype: str) -> bytes:
    return np.ascontiguousarray(array, dtype=dtype).tobytes()


def _group_name(configs: Sequence[Any]) -> str:
    """A readable, unique group name: ``<config name>-<YYYYmmdd-HHMMSS>-<4 hex>``.

    >>> import re
    >>> class C: name = "digits-sym-40[loss.lam=0]"
    >>> bool(re.fullmatch(r"digits-sym-40-\\d{8}-\\d{6}-[0-9a-f]{4}", _group_name([C()])))
    True
    """
    base = re.sub(r"\[.*\]$", "", getattr(configs[0], "name", "") or "runs")
    slug = re.sub(r"[^a-z0-9]+", "-", base.lower()).strip("-")[:60] or "runs"
    return f"{slug}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def _frame(rows: Sequence[Any]) -> pd.DataFrame:
    """(iteration, dict) rows → a DataFrame: ``iteration`` plus one column per key."""
    import pandas as pd  # only the dashboard's reads need it
    iterations = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    df = pd.DataFrame.from_records([dict(r[1]) for r in rows]) if rows else pd.DataFrame()
    for column in df.columns:
        if df[column].dtype == object:  # None (a non-finite value when stored) → NaN
            try:
                df[column] = pd.to_numeric(df[column])
            except (TypeError, ValueError):
                pass
    df.insert(0, "iteration", iterations)
    return df


def _scalar_row(run_id: int, event: Any) -> dict[str, Any]:
    """A ScalarsEvent as a row: the known scalars in their columns, the rest in ``extra``."""
    values = _jsonable(event.values)
    row: dict[str, Any] = {"run_id": run_id, "iteration": int(event.iteration)}
    for name in SCALAR_COLUMNS:
        value = values.get(name)
        if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
            row[name] = None if value is None else float(values.pop(name))
        else:
            row[name] = None  # not a number: kept as given, in extra
    row["extra"] = values or None
    return row


def _scalars_frame(rows: Sequence[Any]) -> pd.DataFrame:
    """Scalar rows → ``iteration`` plus a float column per known scalar (always all of them,
    NaN where not reported: a fixed schema), then any extra scalar the loop reported."""
    import pandas as pd  # only the dashboard's reads need it
    columns = list(zip(*rows, strict=True)) if rows else [()] * (len(SCALAR_COLUMNS) + 2)
    data = {"iteration": np.asarray(columns[0], dtype=np.int64)}
    for name, values in zip(SCALAR_COLUMNS, columns[1:-1], strict=True):
        data[name] = np.asarray(values, dtype=np.float64)  # None → NaN
    df = pd.DataFrame(data)
    extra = [(i, e) for i, e in enumerate(columns[-1]) if e]  # usually none at all
    if extra:
        more = pd.DataFrame.from_records([e for _, e in extra], index=[i for i, _ in extra])
        more = more.drop(columns=[c for c in more.columns if c in df.columns])
        df = pd.concat([df, more.reindex(df.index)], axis=1)
    return df


def _kept(k: int, first: int, last: int) -> int:
    """At most how many rows of iterations ``first..last`` stride ``k`` keeps: the multiples
    of k in that range, plus ``last`` when it is not one (iterations count from 1).

    >>> _kept(2, 2, 11)  # 2, 4, 6, 8, 10 and 11
    6
    """
    return last // k - (first - 1) // k + (last % k != 0)


def _stride(count: int, limit: int | None, first: int, last: int) -> int:
    """The stride k that keeps at most ``limit`` of ``count`` rows with iterations in
    ``first..last``: the smallest k from ``(last - first + 1) / limit`` up for which the
    multiples of k AND the last row fit (``_kept``; the last row may be one more than
    ``count / k``). Counted over the whole range, so it holds even if rows are missing.

    >>> _stride(30_000, 2000, 1, 30_000), _stride(10, 5, 2, 11), _stride(100, 2000, 1, 100)
    (15, 3, 1)
    >>> _stride(10, None, 1, 10), _stride(10, 1, 5, 14)
    (1, 14)
    >>> all(_kept(_stride(n, m, a, a + n - 1), a, a + n - 1) <= m
    ...     for n in range(1, 300) for m in range(1, 40) for a in (1, 2, 7, 999))
    True
    """
    if not limit or count <= limit:
        return 1
    if limit == 1:
        return last  # its only multiple in the range is the last row itself
    k = max(1, math.ceil((last - first + 1) / limit))
    # Ends by k = ceil(span / (limit - 1)): at most ceil(span / k) multiples, plus the last.
    while _kept(k, first, last) > limit:
        k += 1
    return k


def _last_test_acc(rows: Sequence[Mapping[str, Any]]) -> float | None:
    for data in reversed(rows):
        value = data.get("test_acc")
        if isinstance(value, int | float) and math.isfinite(value):
            return float(value)
    return None


# ---------------------------------------------------------------------- the store

class Store:
    """Runs, their metrics and the queue, in SQLite or PostgreSQL.

    ``Store()`` uses ``$DM_DATABASE_URL`` or ``sqlite:///./var/dm.sqlite``. The schema is
    brought to the latest Alembic revision on first use (safe when several processes start
    together); pass ``upgrade=False`` to fail instead with the command that fixes it.
    ``artifacts_dir`` (default ``$DM_ARTIFACTS`` or ``./var/artifacts``) is where workers put
    checkpoints: ``delete`` and ``retry`` remove ``artifacts_dir/run-<id>``.

    >>> from dm_core.config import RunConfig
    >>> store = Store("sqlite://")            # in memory, for a quick look
    >>> store.submit([RunConfig(name="demo")]).run_ids
    [1]
    >>> store.get_run(1).status
    <RunStatus.QUEUED: 'queued'>
    """

    def __init__(self, url: str | None = None, artifacts_dir: str | Path | None = None, *,
                 upgrade: bool = True) -> None:
        self.url = resolve_url(url)
        self.artifacts_dir = Path(artifacts_dir or os.environ.get("DM_ARTIFACTS")
                                  or DEFAULT_ARTIFACTS).expanduser().resolve()
        self._auto_upgrade = upgrade
        self._engine: Engine | None = None
        self._read_engine: Engine | None = None
        self._lock = threading.Lock()
        self._schema_ready = False

    # -- identity, pickling ----------------------------------------------------------

    @property
    def masked_url(self) -> str:
        return mask_url(self.url)

    @property
    def dialect(self) -> str:
        return make_url(self.url).get_backend_name()

    def __repr__(self) -> str:
        return f"Store({self.masked_url!r})"

    def __getstate__(self) -> dict[str, Any]:
        # Pickled by URL: each process builds its own engine (PITFALLS.md 11).
        return {"url": self.url, "artifacts_dir": str(self.artifacts_dir),
                "upgrade": self._auto_upgrade}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["url"], state["artifacts_dir"], upgrade=state["upgrade"])

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            with self._lock:
                if self._engine is None:
                    self._engine = _make_engine(self.url)
                    self._read_engine = self._engine.execution_options(dm_readonly=True)
        return self._engine

    def dispose(self) -> None:
        """Close every pooled connection (the Store stays usable: it reconnects on demand)."""
        if self._engine is not None:
            self._engine.dispose()

    # -- sessions and schema ---------------------------------------------------------

    @contextmanager
    def session_scope(self, readonly: bool = False) -> Iterator[Session]:
        """One transaction: commit on success, roll back on error, always close.

        Database errors come out as ``StoreError`` (with the password masked), or its subclass
        ``StoreUnavailable`` when the database was unreachable or busy; this module's own errors (``RunNotFound``, ``InvalidTransition``, ``LostClaim``) pass through.
        ``readonly=True`` takes no write lock on SQLite (use it for pure reads only).
        """
        self._ensure_schema()
        engine = self.engine
        session = Session(bind=self._read_engine if readonly else engine, expire_on_commit=False)
        try:
            yield session
            session.commit()
        except SQLAlchemyError as err:
            try:
                session.rollback()
            except SQLAlchemyError:  # the connection is gone: nothing left to roll back
                pass
            raise self._error(err) from err
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def _error(self, err: SQLAlchemyError) -> StoreError:
        """``StoreUnavailable`` for a connection refused, lost or timed out (and SQLite's
        "database is locked"), else ``StoreError``; the message never shows the password."""
        transient = isinstance(err, OperationalError | InterfaceError) or (
            isinstance(err, DBAPIError) and err.connection_invalidated)
        return (StoreUnavailable if transient else StoreError)(self._describe(err))

    def _describe(self, err: SQLAlchemyError) -> str:
        detail = str(getattr(err, "orig", None) or err).strip().splitlines()
        return f"database error ({self.masked_url}): {detail[0] if detail else type(err).__name__}"

    def _revisions(self) -> tuple[str | None, str]:
        from alembic.migration import MigrationContext
        from alembic.script import ScriptDirectory

        script = ScriptDirectory.from_config(_alembic_config())
        head = script.get_current_head()
        with self.engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
            conn.rollback()
        known = {rev.revision for rev in script.walk_revisions()}
        if current is not None and current not in known:
            raise StoreError(
                f"the database {self.masked_url} has schema revision {current!r}, which this "
                f"version of DM Studio does not know (its newest is {head!r}); upgrade DM Studio")
        return current, head

    def _ensure_schema(self) -> None:
        if self._schema_ready:
            return
        try:
            current, head = self._revisions()
        except SQLAlchemyError as err:
            raise self._error(err) from err
        if current != head:
            if not self._auto_upgrade:
                raise StoreError(
                    f"the database {self.masked_url} is at schema revision {current or 'none'} but "
                    f"this DM Studio needs {head}; run: dm db upgrade --db '{self.masked_url}'")
            self.upgrade()
        self._schema_ready = True

    def upgrade(self) -> str:
        """Apply every pending Alembic migration; return the revision now in place.

        Safe when several processes do it at once: the migration runs inside one transaction
        that first takes a lock (SQLite: BEGIN IMMEDIATE; PostgreSQL: an advisory lock), so
        the others wait and then find nothing left to do (PITFALLS.md 12).
        """
        from alembic import command

        cfg = _alembic_config()
        try:
            with self.engine.connect() as conn:
                with conn.begin():
                    if self.dialect == "postgresql":
                        conn.execute(select(func.pg_advisory_xact_lock(PG_MIGRATION_LOCK)))
                    cfg.attributes["connection"] = conn
                    command.upgrade(cfg, "head")
        except SQLAlchemyError as err:
            raise self._error(err) from err
        current, head = self._revisions()
        self._schema_ready = current == head
        log.info("database %s is at schema revision %s", self.masked_url, current)
        return current or ""

    def revision(self) -> str | None:
        """The schema revision the database is at (None: empty database)."""
        return self._revisions()[0]

    # -- the database clock ----------------------------------------------------------

    def _now(self):
        """The database's current time as a SQL expression (ms precision on SQLite)."""
        if self.dialect == "sqlite":
            return func.strftime("%Y-%m-%d %H:%M:%f", "now")
        return func.now()

    def _ago(self, seconds: float):
        if self.dialect == "sqlite":
            return func.strftime("%Y-%m-%d %H:%M:%f", "now", f"-{float(seconds):.3f} seconds")
        return func.now() - func.make_interval(0, 0, 0, 0, 0, 0, float(seconds))

    def db_now(self) -> datetime:
        """The database server's clock, as an aware UTC datetime (compare heartbeats to this)."""
        with self.session_scope(readonly=True) as s:
            return _utc(s.execute(select(self._now())).scalar_one())

    # -- guarded transitions -----------------------------------------------------------

    def _transition(self, s: Session, run_id: int, target: RunStatus, verb: str, *,
                    sources: Sequence[RunStatus] | None = None, guards: Sequence[Any] = (),
                    worker_side: bool = False, **values: Any) -> None:
        allowed = sources_of(target)
        sources = tuple(sources) if sources is not None else tuple(allowed)
        assert set(sources) <= allowed, f"{sources} -> {target} is not an allowed transition"
        result = s.execute(
            update(RUNS)
            .where(RUNS.c.id == run_id, RUNS.c.status.in_([str(x) for x in sources]), *guards)
            .values(status=str(target), **values))
        if result.rowcount != 1:
            self._refuse(s, run_id, verb, sources, worker_side=worker_side)

    def _refuse(self, s: Session, run_id: int, verb: str, sources: Sequence[RunStatus], *,
                worker_side: bool = False) -> None:
        """Raise the right error for an UPDATE that changed no row: ``RunNotFound``;
        ``LostClaim`` for a worker acting on a run it does not hold (any more);
        ``InvalidTransition`` for a user action the status does not allow."""
        row = s.execute(select(RUNS.c.status, RUNS.c.attempt, RUNS.c.worker_id)
                        .where(RUNS.c.id == run_id)).first()
        if row is None:
            raise RunNotFound(run_id)
        status, attempt, worker = row
        if worker_side or status in sources:
            raise LostClaim(f"run {run_id} is no longer held by this worker "
                            f"(it is {status}, attempt {attempt}, worker {worker or '-'})")
        allowed = " or ".join(sorted(str(x) for x in sources))
        raise InvalidTransition(f"run {run_id} is {status}: cannot {verb} it "
                                f"(only {allowed} runs can be)")

    # -- submitting and reading runs ---------------------------------------------------

    def submit(self, configs: Sequence[Any], group: str | None = None,
               max_attempts: int = 3) -> SubmitResult:
        """Queue validated ``RunConfig``s in one transaction, as one group (named when None)."""
        if not configs:
            raise ValueError("submit: no configs given")
        if max_attempts < 1:
            raise ValueError(f"max_attempts: must be at least 1 (got {max_attempts})")
        group = (group or "").strip() or _group_name(configs)
        rows = []
        for cfg in configs:
            data = cfg.model_dump(mode="json")
            total = data["iterations"] * (2 if data.get("relabel") else 1)
            rows.append({"name": data.get("name") or "run", "group_id": group, "config": data,
                         "total_iterations": total})
        stmt = (insert(RUNS)
                .values(status=str(RunStatus.QUEUED), created_at=self._now(), attempt=1,
                        max_attempts=max_attempts, cancel_requested=False, last_iteration=0)
                .returning(RUNS.c.id, sort_by_parameter_order=True))
        with self.session_scope() as s:
            ids = [int(r[0]) for r in s.execute(stmt, rows)]
        return SubmitResult(group=group, run_ids=ids)

    def list_runs(self, status: str | None = None, group: str | None = None,
                  limit: int | None = None) -> list[RunInfo]:
        """Runs, newest first, optionally of one status and/or group. One query."""
        stmt = select(RUNS).order_by(RUNS.c.id.desc())
        if status is not None:
            stmt = stmt.where(RUNS.c.status == str(_status(status)))
        if group is not None:
            stmt = stmt.where(RUNS.c.group_id == group)
        if limit is not None:
            stmt = stmt.limit(int(limit))
        with self.session_scope(readonly=True) as s:
            return [_run_info(r) for r in s.execute(stmt).mappings()]

    def get_run(self, run_id: int) -> RunInfo:
        with self.session_scope(readonly=True) as s:
            row = s.execute(select(RUNS).where(RUNS.c.id == int(run_id))).mappings().first()
        if row is None:
            raise RunNotFound(run_id)
        return _run_info(row)

    def groups(self) -> list[str]:
        """Group names, the most recently submitted first."""
        newest = func.max(RUNS.c.id)
        with self.session_scope(readonly=True) as s:
            return [g for g, _ in s.execute(select(RUNS.c.group_id, newest)
                                            .group_by(RUNS.c.group_id).order_by(newest.desc()))]

    def queue_counts(self) -> dict[str, int]:
        """How many runs are in each status (every status present, zeros included)."""
        counts = dict.fromkeys(STATUSES, 0)
        with self.session_scope(readonly=True) as s:
            for status, n in s.execute(select(RUNS.c.status, func.count())
                                       .group_by(RUNS.c.status)):
                counts[status] = int(n)
        return counts

    def claims(self, run_id: int | None = None) -> list[dict[str, Any]]:
        """The claim audit log (run_id, retry, attempt, worker_id, device, claimed_at), oldest
        first."""
        stmt = select(CLAIMS).order_by(CLAIMS.c.id)
        if run_id is not None:
            stmt = stmt.where(CLAIMS.c.run_id == int(run_id))
        with self.session_scope(readonly=True) as s:
            rows = [dict(r) for r in s.execute(stmt).mappings()]
        for r in rows:
            r["claimed_at"] = _utc(r["claimed_at"])
        return rows

    # -- user actions ------------------------------------------------------------------

    def cancel(self, run_id: int) -> RunInfo:
        """Queued: cancelled at once. Running: ``cancel_requested`` is set; its worker notices
        within about a second (``cancel_requested`` polled between heartbeats), stops (keeping
        what was logged) and marks it cancelled."""
        with self.session_scope() as s:
            queued = s.execute(
                update(RUNS).where(RUNS.c.id == run_id, RUNS.c.status == str(RunStatus.QUEUED))
                .values(status=str(RunStatus.CANCELLED), finished_at=self._now())).rowcount
            if not queued:
                requested = s.execute(
                    update(RUNS).where(RUNS.c.id == run_id,
                                       RUNS.c.status == str(RunStatus.RUNNING))
                    .values(cancel_requested=True)).rowcount
                if not requested:
                    self._refuse(s, run_id, "cancel", (RunStatus.QUEUED, RunStatus.RUNNING))
        return self.get_run(run_id)

    def retry(self, run_id: int) -> RunInfo:
        """Failed or cancelled → queued, everything the old attempts logged cleared: attempts
        start over at 1 (a fresh ``max_attempts``) and ``retries`` goes up by one, so the
        claims audit tells the new attempts from the old ones."""
        with self.session_scope() as s:
            old_checkpoint = s.execute(select(RUNS.c.checkpoint_path)
                                       .where(RUNS.c.id == run_id)).scalar()
            self._transition(
                s, run_id, RunStatus.QUEUED, "retry",
                sources=(RunStatus.FAILED, RunStatus.CANCELLED),
                attempt=1, retries=RUNS.c.retries + 1, worker_id=None, device=None,
                started_at=None, finished_at=None,
                heartbeat_at=None, cancel_requested=False, error=None, summary=None,
                checkpoint_path=None, checkpoint_iteration=None, last_iteration=0,
                last_test_acc=None, diverged_at=None, divergence=None)
            self._delete_data(s, run_id)
        self._remove_artifacts(run_id, old_checkpoint)
        return self.get_run(run_id)

    def delete(self, run_id: int) -> None:
        """Delete a run that is not running: its rows and its artifacts directory."""
        with self.session_scope() as s:
            row = s.execute(select(RUNS.c.status, RUNS.c.checkpoint_path)
                            .where(RUNS.c.id == run_id)).first()
            if row is None:
                raise RunNotFound(run_id)
            self._delete_data(s, run_id)
            s.execute(delete(CLAIMS).where(CLAIMS.c.run_id == run_id))
            gone = s.execute(delete(RUNS).where(RUNS.c.id == run_id,
                                                RUNS.c.status != str(RunStatus.RUNNING))).rowcount
            if not gone:
                raise InvalidTransition(f"run {run_id} is running: cancel it first "
                                        f"(dm cancel {run_id}), then delete it")
        self._remove_artifacts(run_id, row[1])

    def _delete_data(self, s: Session, run_id: int) -> None:
        for table in (*PER_ITERATION, LABELS):
            s.execute(delete(table).where(table.c.run_id == run_id))

    def run_dir(self, run_id: int) -> Path:
        """Where a run's artifacts (checkpoints) live: ``artifacts_dir/run-<id>``."""
        return self.artifacts_dir / f"run-{int(run_id)}"

    def _remove_artifacts(self, run_id: int, checkpoint_path: str | None) -> None:
        candidates = {self.run_dir(run_id)}
        if checkpoint_path:  # a worker may have used another artifacts dir
            for parent in Path(checkpoint_path).parents:
                if parent.name == f"run-{run_id}":
                    candidates.add(parent)
                    break
        for path in candidates:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)

    # -- dashboard reads -----------------------------------------------------------------

    def scalars(self, run_id: int, after: int = 0, max_points: int | None = None,
                stride: int | None = None) -> pd.DataFrame:
        """Per-iteration scalars after ``after``: column ``iteration``, one float column per
        known scalar (``models.SCALAR_COLUMNS``, always present, NaN where not reported),
        then one per any other scalar the loop reported.

        With ``max_points``, every k-th iteration is selected in SQL (and the last one), so
        at most ``max_points`` rows come back however long the run; ``stride`` gives k itself
        (iterations that are multiples of it, and the last one), for a reader that keeps
        its own grid across incremental reads. Unknown runs give an empty frame (this is the
        polling path: no existence check).
        """
        cond = [SCALARS.c.run_id == run_id, SCALARS.c.iteration > after]
        with self.session_scope(readonly=True) as s:
            cond += self._stride_filter(s, SCALARS, cond, max_points, stride)
            rows = s.execute(select(SCALARS.c.iteration, *(SCALARS.c[n] for n in SCALAR_COLUMNS),
                                    SCALARS.c.extra).where(*cond)
                             .order_by(SCALARS.c.iteration)).all()
        return _scalars_frame(rows)

    def evals(self, run_id: int) -> pd.DataFrame:
        """Evaluations: column ``iteration`` plus test_acc, train_acc_corrupted, ..."""
        with self.session_scope(readonly=True) as s:
            rows = s.execute(select(EVALS.c.iteration, EVALS.c.data)
                             .where(EVALS.c.run_id == run_id).order_by(EVALS.c.iteration)).all()
        return _frame(rows)

    def histograms(self, run_id: int, start: int | None = None, end: int | None = None,
                   max_rows: int | None = 2000, stride: int | None = None) -> HistogramSeries:
        """Histograms for iterations in [start, end], every k-th one selected in SQL so that
        at most ``max_rows`` come back (``max_rows=None``: all); ``stride`` gives k
        itself instead, as in :meth:`scalars`."""
        cond = [HISTOGRAMS.c.run_id == run_id]
        if start is not None:
            cond.append(HISTOGRAMS.c.iteration >= start)
        if end is not None:
            cond.append(HISTOGRAMS.c.iteration <= end)
        with self.session_scope(readonly=True) as s:
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

    def histogram_at(self, run_id: int, iteration: int) -> tuple[int, np.ndarray, np.ndarray] | None:
        """The stored histogram nearest at or before ``iteration``: (iteration, clean, noisy)."""
        with self.session_scope(readonly=True) as s:
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
        """The run's training labels: (clean int64, noisy int64, is_noisy bool), or None."""
        with self.session_scope(readonly=True) as s:
            row = s.execute(select(LABELS.c.clean, LABELS.c.noisy, LABELS.c.is_noisy)
                            .where(LABELS.c.run_id == run_id, LABELS.c.phase == phase)).first()
        if row is None:
            return None
        return (np.frombuffer(row[0], LABEL_DTYPE).astype(np.int64),
                np.frombuffer(row[1], LABEL_DTYPE).astype(np.int64),
                np.frombuffer(row[2], FLAG_DTYPE).astype(bool))

    def _stride_filter(self, s: Session, table, cond: list[Any], limit: int | None,
                       stride: int | None = None) -> list[Any]:
        """Every k-th iteration and the last one: k is ``stride``, or chosen so that at most
        ``limit`` rows remain (``_stride``)."""
        if stride is not None and stride < 1:
            raise ValueError(f"stride: must be a positive integer, got {stride}")
        if not limit and not stride or stride == 1:
            return []
        count, first, last = s.execute(select(func.count(), func.min(table.c.iteration),
                                              func.max(table.c.iteration)).where(*cond)).one()
        k = stride or _stride(int(count or 0), limit, int(first or 1), int(last or 1))
        if k == 1:
            return []
        return [or_(table.c.iteration % k == 0, table.c.iteration == last)]

    # -- worker side -----------------------------------------------------------------------

    def claim(self, worker_id: str, device: str) -> ClaimedRun | None:
        """Take the oldest queued run (lowest id) for ``worker_id``, or None. Committed at once.

        SQLite: one conditional ``UPDATE … WHERE id = (SELECT … LIMIT 1) RETURNING`` inside
        BEGIN IMMEDIATE. PostgreSQL: ``SELECT … FOR UPDATE SKIP LOCKED`` then the UPDATE, so
        concurrent workers skip each other's row instead of waiting for it.
        """
        now = self._now()
        values = {"status": str(RunStatus.RUNNING), "worker_id": worker_id, "device": device,
                  "heartbeat_at": now, "started_at": func.coalesce(RUNS.c.started_at, now),
                  "finished_at": None}
        queued = RUNS.c.status == str(RunStatus.QUEUED)
        oldest = select(RUNS.c.id).where(queued).order_by(RUNS.c.id).limit(1)
        with self.session_scope() as s:
            if self.dialect == "postgresql":
                run_id = s.execute(oldest.with_for_update(skip_locked=True)).scalar()
                if run_id is None:
                    return None
                target = RUNS.c.id == run_id
            else:
                target = RUNS.c.id == oldest.scalar_subquery()
            row = s.execute(
                update(RUNS).where(target, queued).values(**values)
                .returning(RUNS.c.id, RUNS.c.name, RUNS.c.group_id, RUNS.c.config,
                           RUNS.c.attempt, RUNS.c.retries, RUNS.c.max_attempts,
                           RUNS.c.checkpoint_path, RUNS.c.checkpoint_iteration,
                           RUNS.c.total_iterations)).mappings().first()
            if row is None:
                return None
            s.execute(insert(CLAIMS).values(run_id=row["id"], retry=row["retries"],
                                            attempt=row["attempt"], worker_id=worker_id,
                                            device=device, claimed_at=now))
            return ClaimedRun(id=row["id"], name=row["name"], group=row["group_id"],
                              config=row["config"], attempt=row["attempt"],
                              max_attempts=row["max_attempts"], worker_id=worker_id, device=device,
                              checkpoint_path=row["checkpoint_path"],
                              checkpoint_iteration=row["checkpoint_iteration"],
                              total_iterations=row["total_iterations"], retries=row["retries"])

    def _held(self, run_id: int, attempt: int, worker_id: str | None) -> list[Any]:
        guards = [RUNS.c.id == run_id, RUNS.c.status == str(RunStatus.RUNNING),
                  RUNS.c.attempt == attempt]
        if worker_id is not None:
            guards.append(RUNS.c.worker_id == worker_id)
        return guards

    def heartbeat(self, run_id: int, worker_id: str, attempt: int) -> bool:
        """Record that the worker is alive (database time); return ``cancel_requested``.

        Raises ``LostClaim`` when the run is no longer this worker's attempt.
        """
        with self.session_scope() as s:
            row = s.execute(update(RUNS).where(*self._held(run_id, attempt, worker_id))
                            .values(heartbeat_at=self._now())
                            .returning(RUNS.c.cancel_requested)).first()
            if row is None:
                self._refuse(s, run_id, "heartbeat", (RunStatus.RUNNING,), worker_side=True)
            return bool(row[0])

    def cancel_requested(self, run_id: int) -> bool:
        """Whether a cancel was requested for the run: one primary-key read that takes no
        write lock, cheap enough for a worker to poll every second between heartbeats."""
        with self.session_scope(readonly=True) as s:
            return bool(s.execute(select(RUNS.c.cancel_requested)
                                  .where(RUNS.c.id == run_id)).scalar())

    def write_batch(self, run_id: int, attempt: int, scalars: Sequence[Any] = (),
                    histograms: Sequence[Any] = (), evals: Sequence[Any] = (),
                    checkpoint: Any | None = None, start: Any | None = None, *,
                    worker_id: str | None = None) -> None:
        """Append what the training loop reported, in ONE transaction.

        ``scalars``/``histograms``/``evals`` are ``ScalarsEvent``/``HistogramEvent``/
        ``EvalEvent`` lists; ``checkpoint`` a ``CheckpointEvent`` whose iteration and path are
        recorded with the rows (so rows ≤ the checkpoint and the checkpoint commit together);
        ``start`` a ``StartEvent`` (labels, total iterations, device). The first statement is
        a guarded UPDATE of the run (also a heartbeat): a worker that lost the run gets
        ``LostClaim`` and nothing is written.

        Idempotent: rows at or after the batch's first iteration of each table are deleted
        before the insert. Each batch carries every event after the previous batch's (the
        loop reports in order), so this deletes nothing -- unless this very batch was
        already committed and its answer lost, when it replaces the rows with themselves.
        """
        values: dict[str, Any] = {"heartbeat_at": self._now()}
        if scalars:
            values["last_iteration"] = max(e.iteration for e in scalars)
        acc = _last_test_acc([e.values for e in sorted(evals, key=lambda e: e.iteration)])
        if acc is not None:
            values["last_test_acc"] = acc
        if checkpoint is not None:
            values["checkpoint_path"] = str(checkpoint.path)
            values["checkpoint_iteration"] = int(checkpoint.iteration)
        if start is not None:
            values["total_iterations"] = int(start.total_iterations)
            values["device"] = str(start.device)
        with self.session_scope() as s:
            if s.execute(update(RUNS).where(*self._held(run_id, attempt, worker_id))
                         .values(**values)).rowcount != 1:
                self._refuse(s, run_id, "write to", (RunStatus.RUNNING,), worker_side=True)
            for table, events in ((SCALARS, scalars), (HISTOGRAMS, histograms),
                                  (EVALS, evals)):
                if events:
                    s.execute(delete(table).where(
                        table.c.run_id == run_id,
                        table.c.iteration >= min(int(e.iteration) for e in events)))
            if scalars:
                s.execute(insert(SCALARS), [_scalar_row(run_id, e) for e in scalars])
            if histograms:
                s.execute(insert(HISTOGRAMS), [
                    {"run_id": run_id, "iteration": int(e.iteration), "bins": len(e.clean),
                     "clean": _pack(e.clean, COUNT_DTYPE), "noisy": _pack(e.noisy, COUNT_DTYPE)}
                    for e in histograms])
            if evals:
                s.execute(insert(EVALS), [
                    {"run_id": run_id, "iteration": int(e.iteration), "data": _jsonable(e.values)}
                    for e in evals])
            if start is not None:
                phase = getattr(start, "phase", "train") or "train"
                s.execute(delete(LABELS).where(LABELS.c.run_id == run_id,
                                               LABELS.c.phase == phase))
                s.execute(insert(LABELS).values(
                    run_id=run_id, phase=phase, clean=_pack(start.clean_labels, LABEL_DTYPE),
                    noisy=_pack(start.noisy_labels, LABEL_DTYPE),
                    is_noisy=_pack(start.is_noisy, FLAG_DTYPE)))

    def truncate_after(self, run_id: int, iteration: int) -> None:
        """Delete every scalar, histogram and eval after ``iteration`` (a resumed run continues
        from its checkpoint at ``iteration``: no gap, no duplicate), and fix the run's
        ``last_iteration`` / ``last_test_acc``."""
        with self.session_scope() as s:
            for table in PER_ITERATION:
                s.execute(delete(table).where(table.c.run_id == run_id,
                                              table.c.iteration > iteration))
            last = s.execute(select(func.max(SCALARS.c.iteration))
                             .where(SCALARS.c.run_id == run_id)).scalar()
            recent = s.execute(select(EVALS.c.data).where(EVALS.c.run_id == run_id)
                               .order_by(EVALS.c.iteration.desc()).limit(1)).scalars().all()
            s.execute(update(RUNS).where(RUNS.c.id == run_id)
                      .values(last_iteration=int(last or 0),
                              last_test_acc=_last_test_acc(recent)))

    def finish(self, run_id: int, worker_id: str, status: str | RunStatus,
               summary: Mapping[str, Any] | None = None, error: str | None = None, *,
               attempt: int | None = None, diverged_at: int | None = None,
               divergence: Mapping[str, Any] | None = None) -> None:
        """running → succeeded | failed | cancelled, by the worker that holds the run.

        A run that diverged is ``failed`` with ``diverged_at`` (its iteration) and
        ``divergence`` (the measured figures: ``TrainingDiverged.figures``) as fields."""
        target = _status(status)
        if target not in FINAL_STATUSES:
            raise ValueError(f"finish: status must be succeeded, failed or cancelled (got {status!r})")
        guards = [RUNS.c.worker_id == worker_id]
        if attempt is not None:
            guards.append(RUNS.c.attempt == attempt)
        with self.session_scope() as s:
            self._transition(s, run_id, target, f"finish as {target}",
                             sources=(RunStatus.RUNNING,), guards=guards, worker_side=True,
                             finished_at=self._now(), heartbeat_at=self._now(),
                             summary=_jsonable(summary) if summary is not None else None,
                             error=error, diverged_at=diverged_at,
                             divergence=_jsonable(divergence) if divergence is not None else None)

    def release(self, run_id: int, worker_id: str, attempt: int, *,
                consume_attempt: bool = False, error: str | None = None) -> RunStatus:
        """running → queued by the worker that holds it, checkpoint kept.

        ``consume_attempt=False`` (a warm stop) leaves the attempt number alone.
        ``consume_attempt=True`` (the worker hit a problem it cannot record, e.g. the database
        went away mid-run) counts it like a lost worker: attempt + 1, or failed once
        ``max_attempts`` are used up. Returns the new status.
        """
        guards = [RUNS.c.worker_id == worker_id, RUNS.c.attempt == attempt]
        with self.session_scope() as s:
            max_attempts = s.execute(select(RUNS.c.max_attempts)
                                     .where(RUNS.c.id == run_id)).scalar()
            if max_attempts is None:
                raise RunNotFound(run_id)
            if consume_attempt and attempt >= max_attempts:
                self._transition(s, run_id, RunStatus.FAILED, "fail", sources=(RunStatus.RUNNING,),
                                 guards=guards, worker_side=True, finished_at=self._now(), worker_id=None,
                                 error=f"gave up after {attempt} attempt(s): {error or 'worker error'}")
                return RunStatus.FAILED
            self._transition(s, run_id, RunStatus.QUEUED, "re-queue", sources=(RunStatus.RUNNING,),
                             guards=guards, worker_side=True, worker_id=None, heartbeat_at=None,
                             attempt=attempt + 1 if consume_attempt else attempt,
                             **({"error": error} if error else {}))
            return RunStatus.QUEUED

    def requeue_stale(self, stale_after_s: float) -> list[int]:
        """Deal with running runs whose heartbeat is older than ``stale_after_s`` (database
        time): re-queued with attempt + 1 and their checkpoint kept; failed once
        ``max_attempts`` are used up; cancelled if a cancel had been requested.

        Returns the ids handled. Safe when several reapers run at once (idle workers between
        runs, busy ones from their heartbeat thread): each guarded UPDATE re-checks ``status =
        'running'`` and the stale heartbeat under the row's write lock (SQLite: BEGIN
        IMMEDIATE; PostgreSQL re-evaluates the WHERE on the locked row), so a run is handled
        exactly once and a reaper that lost the race changes nothing.
        """
        stale = [RUNS.c.status == str(RunStatus.RUNNING),
                 or_(RUNS.c.heartbeat_at.is_(None), RUNS.c.heartbeat_at < self._ago(stale_after_s))]
        lost = (literal("worker ") + func.coalesce(RUNS.c.worker_id, "?")
                + literal(f" stopped sending heartbeats (none for {stale_after_s:g} s) on attempt ")
                + cast(RUNS.c.attempt, String))
        now = self._now()
        handled: list[int] = []
        with self.session_scope() as s:
            for target, extra, values in (
                (RunStatus.CANCELLED, [RUNS.c.cancel_requested.is_(True)],
                 {"finished_at": now, "error": lost}),
                (RunStatus.FAILED, [RUNS.c.cancel_requested.is_(False),
                                    RUNS.c.attempt >= RUNS.c.max_attempts],
                 {"finished_at": now,
                  "error": literal("gave up after ") + cast(RUNS.c.attempt, String)
                  + literal(" attempt(s): ") + lost}),
                (RunStatus.QUEUED, [RUNS.c.cancel_requested.is_(False),
                                    RUNS.c.attempt < RUNS.c.max_attempts],
                 {"attempt": RUNS.c.attempt + 1, "worker_id": None, "heartbeat_at": None,
                  "error": lost}),
            ):
                assert RunStatus.RUNNING in sources_of(target)
                ids = [int(r[0]) for r in s.execute(
                    update(RUNS).where(*stale, *extra).values(status=str(target), **values)
                    .returning(RUNS.c.id))]
                for run_id in ids:
                    log.warning("run %d: its worker is gone; now %s", run_id, target)
                handled += ids
        return sorted(handled)


# ---------------------------------------------------------------------- row → record

def _status(value: str | RunStatus) -> RunStatus:
    try:
        return RunStatus(str(value))
    except ValueError:
        raise ValueError(f"status: {value!r} is not one of {', '.join(STATUSES)}") from None


def _run_info(row: Mapping[str, Any]) -> RunInfo:
    return RunInfo(
        id=row["id"], name=row["name"], group=row["group_id"], status=RunStatus(row["status"]),
        attempt=row["attempt"], max_attempts=row["max_attempts"],
        iteration=row["last_iteration"] or 0, total_iterations=row["total_iterations"],
        created_at=_utc(row["created_at"]), started_at=_utc(row["started_at"]),
        finished_at=_utc(row["finished_at"]), heartbeat_at=_utc(row["heartbeat_at"]),
        worker_id=row["worker_id"], device=row["device"], error=row["error"],
        summary=row["summary"], config=row["config"] or {}, last_test_acc=row["last_test_acc"],
        cancel_requested=bool(row["cancel_requested"]),
        checkpoint_iteration=row["checkpoint_iteration"], checkpoint_path=row["checkpoint_path"],
        retries=row["retries"], diverged_at=row["diverged_at"], divergence=row["divergence"])

