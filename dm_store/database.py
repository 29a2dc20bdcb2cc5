"""The database: its URL, the engine and sessions, the schema (Alembic), and its clock.

``Database(url)`` owns one SQLAlchemy engine and one ``session()`` that commits, rolls back,
closes and turns database errors into ``StoreError`` / ``StoreUnavailable`` (after Optuna's
RDB storage). The runs and metrics modules do every query through it.

SQLite (the default, one machine) runs in WAL mode with a busy timeout, and every writing
transaction starts with ``BEGIN IMMEDIATE`` (docs/architecture.md, "SQLite locking"): a writer
takes the lock before it reads, so no read-then-write race and no deadlock-by-upgrade.
Readers -- ``session(readonly=True)`` and the schema check -- use a deferred ``BEGIN`` and
never take the write lock: a frozen writer cannot stop ``dm runs`` or the dashboard. A writer
that finds the write lock taken does not wait in silence: after ``SQLITE_LOCK_NOTICE_S`` it
logs (logger ``dm.store``, on stderr for the CLI) that it waits for the file's lock held by
another process or connection, again every ``SQLITE_LOCK_REPORT_S``, and gives up after
``SQLITE_BUSY_TIMEOUT_S`` (``$DM_SQLITE_LOCK_WAIT_S``) with ``StoreUnavailable`` naming the
file and how to find the holder.

PostgreSQL (many machines) uses READ COMMITTED. Every connection is opened with
``idle_in_transaction_session_timeout`` and ``lock_timeout``: a client frozen inside a
transaction (SIGSTOP, a debugger, a swapped-out laptop) is cut off by the server after
``PG_IDLE_IN_TRANSACTION_TIMEOUT_S``, which rolls its transaction back and frees the row locks
it held, and no statement waits for a lock longer than ``PG_LOCK_TIMEOUT_S`` (it fails with
``StoreUnavailable`` instead, and is retried). Both can be overridden in the URL:
``postgresql://…/dm?options=-c%20lock_timeout%3D5s`` (the URL's settings come last and win).

A database file is created implicitly only by a ``Database(create=True)`` (the default: ``dm
submit``, ``dm worker``, ``dm up``, ``dm db upgrade``). With ``create=False`` (read-only and
run-management commands) a missing SQLite file, or an empty database, is an error naming the
commands that create one -- a deleted database is never silently replaced by an empty one
whose run ids start again at 1.

Every writing session first checks that the database is still the one this process started
with -- the same SQLite file, the same identity (``dm_store.identity``) -- and refuses
with ``DatabaseReplaced`` otherwise. A full disk is ``DatabaseFull``, not an outage.

Times (``created_at``, ``heartbeat_at``, ...) come from the DATABASE clock (``now()``,
``ago()``), never a worker's: staleness is decided by one clock however many machines take part.
"""

from __future__ import annotations

import logging
import math
import os
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, func, select
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

from dm_store.errors import DatabaseFull, StoreError, StoreUnavailable
from dm_store.identity import DatabasePin

log = logging.getLogger("dm.store")

DEFAULT_URL = "sqlite:///./var/dm.sqlite"
URL_ENV = "DM_DATABASE_URL"
URL_FILE_ENV = "DM_DATABASE_URL_FILE"
# How long a writer waits for SQLite's write lock, in all, before it gives up; the variable
# overrides it (a test, or a site whose writers should fail sooner or wait longer).
SQLITE_BUSY_TIMEOUT_S = 60.0
SQLITE_LOCK_WAIT_ENV = "DM_SQLITE_LOCK_WAIT_S"
# A writer that has waited this long for the write lock says so, then again every REPORT_S.
SQLITE_LOCK_NOTICE_S = 1.0
SQLITE_LOCK_REPORT_S = 10.0
# A transaction of this code never idles between its statements for more than milliseconds:
# a session idle in a transaction this long belongs to a frozen client, and is cut off.
PG_IDLE_IN_TRANSACTION_TIMEOUT_S = 10.0
# Longer than the idle timeout: a statement waiting for a frozen client's row lock gets it once
# the server has cut that client off, instead of failing first.
PG_LOCK_TIMEOUT_S = 30.0
# SQLSTATE of a statement that gave up waiting for a lock (lock_timeout): lock_not_available.
PG_LOCK_NOT_AVAILABLE = "55P03"
# pg_advisory_xact_lock key that serialises schema upgrades ("dmst").
PG_MIGRATION_LOCK = 0x646D7374
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
CREATING_COMMANDS = "`dm db upgrade`, `dm submit`, `dm worker` or `dm up`"


# ---------------------------------------------------------------------- URLs

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


def sqlite_file(url: str) -> Path | None:
    """The file a SQLite URL names (None for in-memory databases, URIs and other backends).

    >>> str(sqlite_file("sqlite:////var/dm.sqlite")), sqlite_file("sqlite://")
    ('/var/dm.sqlite', None)
    """
    parsed = make_url(url)
    db = parsed.database
    if parsed.get_backend_name() != "sqlite" or not db or db == ":memory:" or db.startswith("file:"):
        return None
    return Path(db)


# ---------------------------------------------------------------------- engines

def _postgres_options(url: Any) -> str:
    """The server settings every connection starts with: ours first, the URL's ``options``
    after them (PostgreSQL applies them in order, so the URL's win)."""
    ours = (f"-c lock_timeout={int(PG_LOCK_TIMEOUT_S * 1000)} "
            f"-c idle_in_transaction_session_timeout={int(PG_IDLE_IN_TRANSACTION_TIMEOUT_S * 1000)}")
    given = url.query.get("options")
    given = " ".join(given) if isinstance(given, tuple) else given
    return f"{ours} {given}" if given else ours


def sqlite_lock_wait_s(environ: Mapping[str, str] | None = None) -> float:
    """Seconds a writer waits for SQLite's write lock before giving up: ``$DM_SQLITE_LOCK_WAIT_S``,
    else ``SQLITE_BUSY_TIMEOUT_S``. Anything but a number of seconds > 0 is a ``StoreError``
    naming the variable.

    >>> sqlite_lock_wait_s({"DM_SQLITE_LOCK_WAIT_S": "2.5"})
    2.5
    >>> sqlite_lock_wait_s({"DM_SQLITE_LOCK_WAIT_S": "soon"})
    Traceback (most recent call last):
    dm_store.errors.StoreError: DM_SQLITE_LOCK_WAIT_S: 'soon' is not a number of seconds > 0 (how long a writer waits for the SQLite database's write lock; default 60)
    """
    raw = (os.environ if environ is None else environ).get(SQLITE_LOCK_WAIT_ENV, "").strip()
    if not raw:
        return SQLITE_BUSY_TIMEOUT_S
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise StoreError(f"{SQLITE_LOCK_WAIT_ENV}: {raw!r} is not a number of seconds > 0 (how "
                         "long a writer waits for the SQLite database's write lock; default "
                         f"{SQLITE_BUSY_TIMEOUT_S:g})")
    return seconds


def _is_locked(err: OperationalError) -> bool:
    """SQLITE_BUSY or SQLITE_LOCKED (any extended code): another connection holds the lock."""
    code = getattr(err.orig, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def _begin_writing(connection: Any, what: str, wait_s: float) -> None:
    """``BEGIN IMMEDIATE`` on ``connection``, waiting for the write lock up to ``wait_s`` seconds.

    SQLite's busy handler waits without a word, so the wait is cut into slices: the first
    ``SQLITE_LOCK_NOTICE_S`` long, the others ``SQLITE_LOCK_REPORT_S``; after each slice
    spent waiting a warning says for what, and past ``wait_s`` ``StoreUnavailable`` names
    the file and how to find the process that holds it. The connection's busy timeout is set
    back to ``wait_s`` afterwards (for COMMIT and checkpoints)."""
    raw = connection.connection.driver_connection
    started = time.monotonic()
    slice_s = min(SQLITE_LOCK_NOTICE_S, wait_s)
    try:
        while True:
            raw.execute(f"PRAGMA busy_timeout={max(1, round(slice_s * 1000))}")
            try:
                connection.exec_driver_sql("BEGIN IMMEDIATE")
                return
            except OperationalError as err:
                if not _is_locked(err):
                    raise
            waited = time.monotonic() - started
            if waited >= wait_s:
                raise StoreUnavailable(
                    f"the SQLite database {what} is locked by another process or connection "
                    f"(database is locked): waited {waited:.0f} s for its write lock and gave "
                    f"up. Find the holder with `fuser -v {what}` or `lsof {what}` (a process "
                    "stopped with Ctrl-Z or paused in a debugger keeps the lock until it resumes "
                    f"or ends), let it finish or end it, then try again; {SQLITE_LOCK_WAIT_ENV} "
                    f"sets how long to wait (now {wait_s:g} s)")
            log.warning("waiting for the write lock of the SQLite database %s: another process "
                        "or connection holds it (waited %.0f s; giving up after %g s)",
                        what, waited, wait_s)
            slice_s = min(SQLITE_LOCK_REPORT_S, wait_s - waited)
    finally:
        try:
            raw.execute(f"PRAGMA busy_timeout={round(wait_s * 1000)}")
        except sqlite3.Error:  # the connection itself failed: the pool discards it
            pass


def make_engine(url: str, *, create: bool = True) -> Engine:
    """An engine for ``url`` with the session settings described in the module docstring.
    ``create=False``: a SQLite file is opened read-write but never created."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(parsed, pool_pre_ping=True, pool_size=5, max_overflow=10,
                             connect_args={"options": _postgres_options(parsed)})

    wait_s = sqlite_lock_wait_s()
    kwargs: dict[str, Any] = {"connect_args": {"timeout": wait_s, "check_same_thread": False}}
    if parsed.database in (None, "", ":memory:"):
        kwargs["poolclass"] = StaticPool  # one shared in-memory database
    path = sqlite_file(url)
    if path is not None and not create:
        # mode=rw: SQLite opens the file or fails; it never creates an empty one in its place.
        uri = f"file:{urllib.parse.quote(str(path))}?mode=rw"
        kwargs["creator"] = lambda: sqlite3.connect(uri, uri=True, timeout=wait_s,
                                                    check_same_thread=False)
    engine = create_engine(parsed, **kwargs)
    what = str(path) if path is not None else mask_url(url)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        # pysqlite's own transaction handling runs SELECTs outside the transaction; turn it
        # off and issue BEGIN ourselves (docs/architecture.md, "SQLite locking").
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={round(wait_s * 1000)}")
        cursor.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at checkpoints, fast
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:
        # Writers lock at BEGIN, so the busy handler applies (a deferred read-to-write
        # upgrade fails at once instead of waiting). Readers stay deferred: WAL snapshots.
        if connection.get_execution_options().get("dm_readonly", False):
            connection.exec_driver_sql("BEGIN")
        else:
            _begin_writing(connection, what, wait_s)

    return engine


def alembic_config():
    """Alembic's configuration for the store's migrations."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def utc(value: Any) -> datetime | None:
    """A database timestamp as an aware UTC datetime (SQLite gives naive text)."""
    if value is None:
        return None
    if isinstance(value, str):  # SQLite text timestamps from the database clock
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def disk_full(err: SQLAlchemyError) -> bool:
    """Whether ``err`` says the disk holding the database is full: SQLite's SQLITE_FULL
    ("database or disk is full"), PostgreSQL's SQLSTATE 53100 (disk_full)."""
    orig = getattr(err, "orig", None)
    if getattr(orig, "sqlstate", None) == "53100":
        return True
    code = getattr(orig, "sqlite_errorcode", None)
    if code is not None and code & 0xFF == sqlite3.SQLITE_FULL:
        return True
    return isinstance(orig, sqlite3.OperationalError) and "database or disk is full" in str(orig)


def _first_line(err: SQLAlchemyError) -> str:
    lines = str(getattr(err, "orig", None) or err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


# ---------------------------------------------------------------------- the database

class Database:
    """One database: engine, sessions, schema and clock (see the module docstring).

    ``upgrade=False``: a schema behind this version's is an error naming the command that
    upgrades it, instead of being upgraded on first use. ``create=False``: a missing SQLite
    file or an empty database is an error instead of being created.
    """

    def __init__(self, url: str | None = None, *, upgrade: bool = True,
                 create: bool = True) -> None:
        self.url = resolve_url(url)
        self.auto_upgrade = upgrade
        self.create = create
        self._engine: Engine | None = None
        self._read_engine: Engine | None = None
        self._lock = threading.Lock()
        self._schema_ready = False
        self.pin = DatabasePin(mask_url(self.url), sqlite_file(self.url))

    @property
    def masked_url(self) -> str:
        return mask_url(self.url)

    @property
    def dialect(self) -> str:
        return make_url(self.url).get_backend_name()

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            with self._lock:
                if self._engine is None:
                    self._engine = make_engine(self.url, create=self.create)
                    self.pin.watch(self._engine)
                    self._read_engine = self._engine.execution_options(dm_readonly=True)
        return self._engine

    @property
    def read_engine(self) -> Engine:
        """The same engine, for reads: a deferred BEGIN on SQLite (no write lock)."""
        self.engine  # noqa: B018 (built on first use)
        assert self._read_engine is not None
        return self._read_engine

    def dispose(self) -> None:
        """Close every pooled connection (it reconnects on demand)."""
        if self._engine is not None:
            self._engine.dispose()

    # -- sessions --------------------------------------------------------------------

    @contextmanager
    def session(self, readonly: bool = False) -> Iterator[Session]:
        """One transaction: commit on success, roll back on error, always close.

        Database errors come out as ``StoreError`` (with the password masked), or its subclass
        ``StoreUnavailable`` when the database was unreachable or busy; the store's own errors
        (``RunNotFound``, ``InvalidTransition``, ``LostClaim``) pass through.
        ``readonly=True`` takes no write lock on SQLite (use it for pure reads only). A writing
        session first checks the database's identity (``DatabaseReplaced``, see the module
        docstring).
        """
        self.ensure_schema()
        session = Session(bind=self.read_engine if readonly else self.engine,
                          expire_on_commit=False)
        try:
            if not readonly:
                self.pin.check(session)
            yield session
            session.commit()
        except SQLAlchemyError as err:
            try:
                session.rollback()
            except SQLAlchemyError:  # the connection is gone: nothing left to roll back
                pass
            raise self.error(err) from err
        except BaseException:
            try:
                session.rollback()
            except SQLAlchemyError:
                pass
            raise
        finally:
            session.close()

    def error(self, err: SQLAlchemyError) -> StoreError:
        """``StoreUnavailable`` for a connection refused, lost or timed out, a lock wait that
        timed out, SQLite's "database is locked" or a full disk; else ``StoreError``. The
        message never shows the password."""
        if disk_full(err):
            return DatabaseFull(f"the disk holding the database {self.masked_url} is full "
                                f"({_first_line(err)}): nothing can be written there until "
                                "space is freed on it")
        transient = isinstance(err, OperationalError | InterfaceError) or (
            isinstance(err, DBAPIError) and err.connection_invalidated)
        detail = str(getattr(err, "orig", None) or err).strip().splitlines()
        message = f"database error ({self.masked_url}): {detail[0] if detail else type(err).__name__}"
        if getattr(getattr(err, "orig", None), "sqlstate", None) == PG_LOCK_NOT_AVAILABLE:
            message += (": another connection held a lock this statement needed (a row of a run, "
                        "say) for longer than lock_timeout, and the statement gave up waiting. "
                        "Look in pg_stat_activity for a session 'idle in transaction' or running "
                        "for long (an open transaction in psql, say), let it finish or end it "
                        "(pg_terminate_backend), then try again")
        return (StoreUnavailable if transient else StoreError)(message)

    # -- schema ------------------------------------------------------------------------

    def revisions(self) -> tuple[str | None, str]:
        """(the schema revision the database is at, the newest this code knows).

        A read: it never takes SQLite's write lock, so a frozen writer does not stop it."""
        from alembic.migration import MigrationContext
        from alembic.script import ScriptDirectory

        script = ScriptDirectory.from_config(alembic_config())
        head = script.get_current_head()
        with self.read_engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
            conn.rollback()
        known = {rev.revision for rev in script.walk_revisions()}
        if current is not None and current not in known:
            raise StoreError(
                f"the database {self.masked_url} has schema revision {current!r}, which this "
                f"version of DM Studio does not know (its newest is {head!r}); upgrade DM Studio")
        return current, head

    def _missing(self, what: str) -> StoreError:
        return StoreError(f"{what} (moved or deleted, or not created yet); nothing was created: "
                          f"{CREATING_COMMANDS} creates a new, empty database (or give --db / "
                          f"{URL_ENV} to use another one)")

    def ensure_schema(self) -> None:
        """Check the schema once per process; upgrade it (or refuse, see the class)."""
        if self._schema_ready:
            return
        path = sqlite_file(self.url)
        if not self.create and path is not None and not path.is_file():
            raise self._missing(f"no database at {path}")
        try:
            current, head = self.revisions()
        except SQLAlchemyError as err:
            raise self.error(err) from err
        if current is None and not self.create:
            raise self._missing(f"the database {self.masked_url} is empty (no DM Studio tables)")
        if current != head:
            if not self.auto_upgrade:
                raise StoreError(
                    f"the database {self.masked_url} is at schema revision {current or 'none'} but "
                    f"this DM Studio needs {head}; run: dm db upgrade --db '{self.masked_url}'")
            self.upgrade()
        self._schema_ready = True

    def upgrade(self) -> str:
        """Apply every pending Alembic migration; return the revision now in place.

        Safe when several processes do it at once: the migration runs inside one transaction
        that first takes a lock (SQLite: BEGIN IMMEDIATE; PostgreSQL: an advisory lock), so
        the others wait and then find nothing left to do (docs/architecture.md, "Migrations").
        """
        from alembic import command

        cfg = alembic_config()
        try:
            with self.engine.connect() as conn:
                with conn.begin():
                    if self.dialect == "postgresql":
                        # Alembic imports its scripts between statements: this transaction
                        # may idle for a while without being frozen.
                        conn.exec_driver_sql("SET LOCAL idle_in_transaction_session_timeout = 0")
                        conn.execute(select(func.pg_advisory_xact_lock(PG_MIGRATION_LOCK)))
                    cfg.attributes["connection"] = conn
                    command.upgrade(cfg, "head")
        except SQLAlchemyError as err:
            raise self.error(err) from err
        current, head = self.revisions()
        self._schema_ready = current == head
        log.info("database %s is at schema revision %s", self.masked_url, current)
        return current or ""

    # -- the database clock ----------------------------------------------------------

    def now(self):
        """The database's current time as a SQL expression (ms precision on SQLite)."""
        if self.dialect == "sqlite":
            return func.strftime("%Y-%m-%d %H:%M:%f", "now")
        return func.now()

    def ago(self, seconds: float):
        """The database's time ``seconds`` ago, as a SQL expression."""
        if self.dialect == "sqlite":
            return func.strftime("%Y-%m-%d %H:%M:%f", "now", f"-{float(seconds):.3f} seconds")
        return func.now() - func.make_interval(0, 0, 0, 0, 0, 0, float(seconds))

    def db_now(self) -> datetime:
        """The database server's clock, as an aware UTC datetime (compare heartbeats to this)."""
        with self.session(readonly=True) as s:
            return utc(s.execute(select(self.now())).scalar_one())


__all__ = ["DEFAULT_URL", "Database", "alembic_config", "disk_full", "make_engine", "mask_url",
           "resolve_url", "sqlite_file", "sqlite_lock_wait_s", "url_from_environment", "utc"]
