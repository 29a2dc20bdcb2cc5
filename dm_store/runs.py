"""Runs and the queue: submitting, claiming, the state machine and the reaper.

Every change of status is ONE guarded ``UPDATE … WHERE id = :id AND status IN (allowed
sources) [AND the caller's claim]`` in its own transaction, after procrastinate and rq: the
database decides, under the row's write lock, whether the change is still allowed, so two
processes racing for the same run (two workers claiming, a reaper and the worker it thinks
dead, ``dm cancel`` and the worker finishing) can never both win, and the loser gets an
error that says why (``InvalidTransition``, ``LostClaim``) instead of a silent overwrite.
A worker's own writes are fenced by its claim (``dm_store.claims``).

Claiming takes the oldest queued run: SQLite, one conditional ``UPDATE … WHERE id = (SELECT
… LIMIT 1) RETURNING`` inside BEGIN IMMEDIATE; PostgreSQL, ``SELECT … FOR UPDATE SKIP
LOCKED`` then the UPDATE, so concurrent workers skip each other's row instead of waiting for
it (docs/architecture.md, "SKIP LOCKED"). The reaper skips locked rows too: a row locked by a
live worker's transaction is not stale, and one locked by a frozen worker is freed by the
server's idle-in-transaction timeout, then reaped by the next pass.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import String, cast, delete, func, insert, literal, or_, select, update
from sqlalchemy.orm import Session

from dm_core.registry import ConfigError
from dm_store import artifacts
from dm_store.claims import fence, held_by, refuse
from dm_store.database import Database, utc
from dm_store.errors import InvalidTransition, LostClaim, RunNotFound
from dm_store.metrics import delete_rows, progress
from dm_store.models import CLAIMS, RUNS, jsonable
from dm_store.status import (
    FINAL_STATUSES,
    STATUSES,
    RunStatus,
    parse_status,
    sources_of,
)

log = logging.getLogger("dm.store")


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


def run_info(row: Mapping[str, Any]) -> RunInfo:
    return RunInfo(
        id=row["id"], name=row["name"], group=row["group_id"], status=RunStatus(row["status"]),
        attempt=row["attempt"], max_attempts=row["max_attempts"],
        iteration=row["last_iteration"] or 0, total_iterations=row["total_iterations"],
        created_at=utc(row["created_at"]), started_at=utc(row["started_at"]),
        finished_at=utc(row["finished_at"]), heartbeat_at=utc(row["heartbeat_at"]),
        worker_id=row["worker_id"], device=row["device"], error=row["error"],
        summary=row["summary"], config=row["config"] or {}, last_test_acc=row["last_test_acc"],
        cancel_requested=bool(row["cancel_requested"]),
        checkpoint_iteration=row["checkpoint_iteration"], checkpoint_path=row["checkpoint_path"],
        retries=row["retries"], diverged_at=row["diverged_at"], divergence=row["divergence"])


def group_name(configs: Sequence[Any]) -> str:
    """A readable, unique group name: ``<config name>-<YYYYmmdd-HHMMSS>-<4 hex>``.

    >>> class C: name = "digits-sym-40[loss.lam=0]"
    >>> bool(re.fullmatch(r"digits-sym-40-\\d{8}-\\d{6}-[0-9a-f]{4}", group_name([C()])))
    True
    """
    base = re.sub(r"\[.*\]$", "", getattr(configs[0], "name", "") or "runs")
    slug = re.sub(r"[^a-z0-9]+", "-", base.lower()).strip("-")[:60] or "runs"
    return f"{slug}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def check_group(group: str) -> str:
    """A group name as ``Store.submit`` takes it: checked like a run name -- printable text
    (``dm_core.config.check_name``) and no longer than a run name may be -- before anything
    is queued. ``ConfigError`` naming ``group`` otherwise.

    >>> check_group("λ sweep")
    'λ sweep'
    >>> check_group("a\\x1b[2Jb")
    Traceback (most recent call last):
    dm_core.registry.ConfigError: group: must not contain control characters (found \\x1b at position 1)
    """
    from dm_core.config import RunConfig, check_name

    check_name(group, "group")
    # The run name's own bound (``RunConfig.name``), read from the model: one number.
    limit = min(m.max_length for m in RunConfig.model_fields["name"].metadata
                if hasattr(m, "max_length"))
    if len(group) > limit:
        raise ConfigError.at("group", f"{len(group)} characters ({group[:24]!r}...); at most "
                                      f"{limit} characters")
    return group


# One submit (a grid, a comparison, a study's phase) queues at most this many runs. The
# front ends' sweeps refuse a larger one before building any config; the store refuses it
# whatever path submits.
MAX_RUNS_PER_SUBMIT = 1000


def check_run_count(count: int) -> int:
    """The number of runs one ``Store.submit`` queues: at most ``MAX_RUNS_PER_SUBMIT``,
    whatever path submits -- ``dm submit``, the Launch page, a study, a script. The pages
    and ``dm runs`` list every run: one click that queued 10,000 made each rerun of the
    dashboard take 39 s. ``ConfigError`` naming ``configs``, the count and
    the cap otherwise.

    >>> check_run_count(1000)
    1000
    >>> check_run_count(5000)
    Traceback (most recent call last):
    dm_core.registry.ConfigError: configs: 5000 runs in one submit; at most 1000 runs per submit: split them into several submits
    """
    if count > MAX_RUNS_PER_SUBMIT:
        raise ConfigError.at("configs", f"{count} runs in one submit; at most {MAX_RUNS_PER_SUBMIT} "
                                        "runs per submit: split them into several submits")
    return count


# ---------------------------------------------------------------------- the runs

class Runs:
    """The runs table: the queue and every status change (see the module docstring).
    ``artifacts_dir`` is where ``delete`` and ``retry`` remove a run's files."""

    def __init__(self, db: Database, artifacts_dir: Path) -> None:
        self.db = db
        self.artifacts_dir = artifacts_dir

    def _transition(self, s: Session, run_id: int, target: RunStatus, verb: str, *,
                    sources: Sequence[RunStatus] | None = None, guards: Sequence[Any] = (),
                    worker_side: bool = False, **values: Any) -> None:
        """The one guarded UPDATE behind every status change (see the module docstring)."""
        allowed = sources_of(target)
        sources = tuple(sources) if sources is not None else tuple(allowed)
        assert set(sources) <= allowed, f"{sources} -> {target} is not an allowed transition"
        result = s.execute(
            update(RUNS)
            .where(RUNS.c.id == run_id, RUNS.c.status.in_([str(x) for x in sources]), *guards)
            .values(status=str(target), **values))
        if result.rowcount != 1:
            refuse(s, run_id, verb, sources, worker_side=worker_side)

    # -- submitting and reading ----------------------------------------------------------

    def submit(self, configs: Sequence[Any], group: str | None = None,
               max_attempts: int = 3) -> SubmitResult:
        if not configs:
            raise ValueError("submit: no configs given")
        check_run_count(len(configs))
        if max_attempts < 1:
            raise ValueError(f"max_attempts: must be at least 1 (got {max_attempts})")
        if group is not None:
            check_group(group)
        group = (group or "").strip() or group_name(configs)
        rows = []
        for cfg in configs:
            data = cfg.model_dump(mode="json")
            total = data["iterations"] * (2 if data.get("relabel") else 1)
            rows.append({"name": data.get("name") or "run", "group_id": group, "config": data,
                         "total_iterations": total})
        stmt = (insert(RUNS)
                .values(status=str(RunStatus.QUEUED), created_at=self.db.now(), attempt=1,
                        max_attempts=max_attempts, cancel_requested=False, last_iteration=0)
                .returning(RUNS.c.id, sort_by_parameter_order=True))
        with self.db.session() as s:
            ids = [int(r[0]) for r in s.execute(stmt, rows)]
        return SubmitResult(group=group, run_ids=ids)

    def list_runs(self, status: str | None = None, group: str | None = None,
                  limit: int | None = None) -> list[RunInfo]:
        stmt = select(RUNS).order_by(RUNS.c.id.desc())
        if status is not None:
            stmt = stmt.where(RUNS.c.status == str(parse_status(status)))
        if group is not None:
            stmt = stmt.where(RUNS.c.group_id == group)
        if limit is not None:
            stmt = stmt.limit(int(limit))
        with self.db.session(readonly=True) as s:
            return [run_info(r) for r in s.execute(stmt).mappings()]

    def get_run(self, run_id: int) -> RunInfo:
        with self.db.session(readonly=True) as s:
            row = s.execute(select(RUNS).where(RUNS.c.id == int(run_id))).mappings().first()
        if row is None:
            raise RunNotFound(run_id)
        return run_info(row)

    def groups(self) -> list[str]:
        newest = func.max(RUNS.c.id)
        with self.db.session(readonly=True) as s:
            return [g for g, _ in s.execute(select(RUNS.c.group_id, newest)
                                            .group_by(RUNS.c.group_id).order_by(newest.desc()))]

    def queue_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATUSES, 0)
        with self.db.session(readonly=True) as s:
            for status, n in s.execute(select(RUNS.c.status, func.count())
                                       .group_by(RUNS.c.status)):
                counts[status] = int(n)
        return counts

    def claims(self, run_id: int | None = None) -> list[dict[str, Any]]:
        stmt = select(CLAIMS).order_by(CLAIMS.c.id)
        if run_id is not None:
            stmt = stmt.where(CLAIMS.c.run_id == int(run_id))
        with self.db.session(readonly=True) as s:
            rows = [dict(r) for r in s.execute(stmt).mappings()]
        for r in rows:
            r["claimed_at"] = utc(r["claimed_at"])
        return rows

    # -- user actions ------------------------------------------------------------------

    def cancel(self, run_id: int) -> RunInfo:
        with self.db.session() as s:
            queued = s.execute(
                update(RUNS).where(RUNS.c.id == run_id, RUNS.c.status == str(RunStatus.QUEUED))
                .values(status=str(RunStatus.CANCELLED), finished_at=self.db.now())).rowcount
            if not queued:
                requested = s.execute(
                    update(RUNS).where(RUNS.c.id == run_id,
                                       RUNS.c.status == str(RunStatus.RUNNING))
                    .values(cancel_requested=True)).rowcount
                if not requested:
                    refuse(s, run_id, "cancel", (RunStatus.QUEUED, RunStatus.RUNNING))
        return self.get_run(run_id)

    def retry(self, run_id: int, resume: bool = False) -> RunInfo:
        """Failed or cancelled → queued: from scratch, or from the recorded checkpoint."""
        fresh = {"attempt": 1, "retries": RUNS.c.retries + 1, "worker_id": None, "device": None,
                 "started_at": None, "finished_at": None, "heartbeat_at": None,
                 "cancel_requested": False, "error": None, "summary": None,
                 "diverged_at": None, "divergence": None}
        sources = (RunStatus.FAILED, RunStatus.CANCELLED)
        with self.db.session() as s:
            row = s.execute(select(RUNS.c.status, RUNS.c.checkpoint_path,
                                   RUNS.c.checkpoint_iteration)
                            .where(RUNS.c.id == run_id)).first()
            if row is None:
                raise RunNotFound(run_id)
            status, path, iteration = row
            if not resume:
                self._transition(s, run_id, RunStatus.QUEUED, "retry", sources=sources,
                                 checkpoint_path=None, checkpoint_iteration=None,
                                 last_iteration=0, last_test_acc=None, **fresh)
                delete_rows(s, run_id)
            else:
                if not iteration:
                    if status not in {str(x) for x in sources}:
                        refuse(s, run_id, "retry", sources)  # the status says why first
                    raise InvalidTransition(f"run {run_id} has no checkpoint to resume from; "
                                            "retry it from scratch")
                # The checkpoint and every row up to it stay; the rows after it go, so the
                # resumed attempt continues without a gap or a duplicate. The guard on the
                # checkpoint makes the read above and this change one decision.
                self._transition(s, run_id, RunStatus.QUEUED, "retry", sources=sources,
                                 guards=[RUNS.c.checkpoint_iteration == iteration], **fresh)
                delete_rows(s, run_id, after=iteration)
                s.execute(update(RUNS).where(RUNS.c.id == run_id).values(**progress(s, run_id)))
        # Files last, once the database no longer points at them (never under the lock).
        if resume:
            for folder in artifacts.run_dirs(self.artifacts_dir, run_id, path):
                artifacts.remove_files(folder, keep=[path])
        else:
            artifacts.remove_run(self.artifacts_dir, run_id, path)
        return self.get_run(run_id)

    def delete(self, run_id: int) -> None:
        with self.db.session() as s:
            row = s.execute(select(RUNS.c.status, RUNS.c.checkpoint_path)
                            .where(RUNS.c.id == run_id)).first()
            if row is None:
                raise RunNotFound(run_id)
            delete_rows(s, run_id)
            s.execute(delete(CLAIMS).where(CLAIMS.c.run_id == run_id))
            gone = s.execute(delete(RUNS).where(RUNS.c.id == run_id,
                                                RUNS.c.status != str(RunStatus.RUNNING))).rowcount
            if not gone:
                raise InvalidTransition(f"run {run_id} is running: cancel it first "
                                        f"(dm cancel {run_id}), then delete it")
        artifacts.remove_run(self.artifacts_dir, run_id, row[1])

    # -- worker side -----------------------------------------------------------------------

    def claim(self, worker_id: str, device: str) -> ClaimedRun | None:
        now = self.db.now()
        values = {"status": str(RunStatus.RUNNING), "worker_id": worker_id, "device": device,
                  "heartbeat_at": now, "started_at": func.coalesce(RUNS.c.started_at, now),
                  "finished_at": None}
        queued = RUNS.c.status == str(RunStatus.QUEUED)
        oldest = select(RUNS.c.id).where(queued).order_by(RUNS.c.id).limit(1)
        with self.db.session() as s:
            if self.db.dialect == "postgresql":
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

    def heartbeat(self, run_id: int, worker_id: str, attempt: int) -> bool:
        with self.db.session() as s:
            row = fence(s, run_id, attempt, worker_id, "heartbeat", heartbeat_at=self.db.now(),
                        returning=[RUNS.c.cancel_requested])
            return bool(row[0])

    def cancel_requested(self, run_id: int) -> bool:
        with self.db.session(readonly=True) as s:
            return bool(s.execute(select(RUNS.c.cancel_requested)
                                  .where(RUNS.c.id == run_id)).scalar())

    def finish(self, run_id: int, worker_id: str, status: str | RunStatus,
               summary: Mapping[str, Any] | None = None, error: str | None = None, *,
               attempt: int | None = None, diverged_at: int | None = None,
               divergence: Mapping[str, Any] | None = None) -> None:
        target = parse_status(status)
        if target not in FINAL_STATUSES:
            raise ValueError(f"finish: status must be succeeded, failed or cancelled (got {status!r})")
        guards = [RUNS.c.worker_id == worker_id]
        if attempt is not None:
            guards.append(RUNS.c.attempt == attempt)
        with self.db.session() as s:
            self._transition(s, run_id, target, f"finish as {target}",
                             sources=(RunStatus.RUNNING,), guards=guards, worker_side=True,
                             finished_at=self.db.now(), heartbeat_at=self.db.now(),
                             summary=jsonable(summary) if summary is not None else None,
                             error=error, diverged_at=diverged_at,
                             divergence=jsonable(divergence) if divergence is not None else None)

    def release(self, run_id: int, worker_id: str, attempt: int, *,
                consume_attempt: bool = False, error: str | None = None) -> RunStatus:
        guards = [RUNS.c.worker_id == worker_id, RUNS.c.attempt == attempt]
        with self.db.session() as s:
            max_attempts = s.execute(select(RUNS.c.max_attempts)
                                     .where(*held_by(run_id, attempt, worker_id))).scalar()
            if max_attempts is None:  # not ours any more (or deleted): nothing to hand back
                refuse(s, run_id, "re-queue", (RunStatus.RUNNING,), worker_side=True)
            if consume_attempt and attempt >= max_attempts:
                self._transition(s, run_id, RunStatus.FAILED, "fail", sources=(RunStatus.RUNNING,),
                                 guards=guards, worker_side=True, finished_at=self.db.now(),
                                 worker_id=None,
                                 error=f"gave up after {attempt} attempt(s): {error or 'worker error'}")
                return RunStatus.FAILED
            self._transition(s, run_id, RunStatus.QUEUED, "re-queue", sources=(RunStatus.RUNNING,),
                             guards=guards, worker_side=True, worker_id=None, heartbeat_at=None,
                             attempt=attempt + 1 if consume_attempt else attempt,
                             **({"error": error} if error else {}))
            return RunStatus.QUEUED

    def requeue_stale(self, stale_after_s: float) -> list[int]:
        stale = [RUNS.c.status == str(RunStatus.RUNNING),
                 or_(RUNS.c.heartbeat_at.is_(None),
                     RUNS.c.heartbeat_at < self.db.ago(stale_after_s))]
        lost = (literal("worker ") + func.coalesce(RUNS.c.worker_id, "?")
                + literal(f" stopped sending heartbeats (none for {stale_after_s:g} s) on attempt ")
                + cast(RUNS.c.attempt, String))
        now = self.db.now()
        handled: list[int] = []
        with self.db.session() as s:
            if self.db.dialect == "postgresql":
                # Lock the stale rows we can, skip the ones another transaction holds: a
                # reaper never waits behind a worker (or behind a frozen one).
                mine = [int(r[0]) for r in s.execute(
                    select(RUNS.c.id).where(*stale).with_for_update(skip_locked=True))]
                if not mine:
                    return []
                stale.append(RUNS.c.id.in_(mine))
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


__all__ = ["MAX_RUNS_PER_SUBMIT", "ClaimedRun", "LostClaim", "RunInfo", "Runs", "SubmitResult",
           "group_name", "run_info"]
