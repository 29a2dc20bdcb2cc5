"""Queue throughput: tiny runs claimed and finished per second by 1, 2 and 4 worker processes, on SQLite and PostgreSQL.

    python benchmarks/bench_queue.py                       # SQLite + a throw-away PostgreSQL
    python benchmarks/bench_queue.py --runs 120 --workers 1,2,4,8
    python benchmarks/bench_queue.py --postgres postgresql+psycopg://dm@127.0.0.1:5432/postgres

Each trial queues ``--runs`` tiny runs (digits, MLP 32, 10 iterations, one evaluation and
checkpoint each) in a fresh database, then starts K worker processes (the ``Worker`` class
that ``dm worker --exit-when-idle --device cpu`` runs, one torch thread each). Every process
first trains one run outside the queue, so imports and data loading are behind it, and
waits; the clock starts when all are told to go and stops at the last run's ``finished_at``
(both on the database clock). So the figures are the queue's steady throughput -- claim,
train, stream metrics, checkpoint, finish -- not the start-up of Python and torch.

PostgreSQL: a temporary cluster (``dm_store.testing``) unless ``--postgres`` names a
server (a fresh database is made in it per trial); skipped, with the reason, where PostgreSQL
is not installed. Every trial also checks that each run succeeded and was claimed exactly once.

No target is set for this one. A worker trains one run at a time, so throughput can grow up
to the number of cores (this benchmark prints them); past that, extra workers only queue for
the CPU, and on SQLite for the write lock.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dm_core.config import parse_config  # noqa: E402
from dm_store import RunStatus, Store  # noqa: E402
from dm_store.testing import (  # noqa: E402
    PostgresStartFailed,
    PostgresUnavailable,
    fresh_database,
    temporary_cluster,
)

# One tiny run: the queue's own costs (claim, heartbeat, batched writes, checkpoint, finish)
# stay visible next to training.
TINY = {"dataset": {"name": "digits"}, "model": {"name": "mlp", "hidden": [32]},
        "iterations": 10, "eval_every": 10, "batch_size": 32, "histogram_bins": 20,
        "device": "cpu"}


def tiny_config(name: str, seed: int):
    return parse_config({**TINY, "name": name, "seed": seed})


def _worker_process(url: str, artifacts: str, ready, go) -> None:
    """One worker process: warm up outside the queue, report ready, wait for go, drain."""
    import torch

    torch.set_num_threads(1)
    from dm_core.train import train
    from workers.worker import Worker

    train(tiny_config("warm-up", 0))  # imports, the data set, the allocator
    worker = Worker(Store(url, artifacts), device="cpu", poll=0.05, exit_when_idle=True,
                    artifacts_dir=artifacts)
    worker.store.queue_counts()  # connected and the schema checked before the clock starts
    ready.put(os.getpid())
    go.wait()
    worker.run()


@dataclass
class Trial:
    backend: str
    workers: int
    runs: int
    seconds: float  # go → last run finished
    claim_seconds: float  # go → last run claimed

    @property
    def per_second(self) -> float:
        return self.runs / self.seconds

    @property
    def claims_per_second(self) -> float:
        return self.runs / self.claim_seconds


def trial(url: str, backend: str, workers: int, runs: int) -> Trial:
    ctx = mp.get_context("spawn")  # a clean process, like `dm worker`; no forked engine
    with tempfile.TemporaryDirectory(prefix="dm-bench-queue-") as tmp:
        store = Store(url, Path(tmp) / "artifacts")
        ids = store.submit([tiny_config(f"queue-{i}", i) for i in range(runs)],
                           group="bench-queue").run_ids
        ready, go = ctx.Queue(), ctx.Event()
        procs = [ctx.Process(target=_worker_process, args=(url, str(store.artifacts_dir), ready, go))
                 for _ in range(workers)]
        for p in procs:
            p.start()
        try:
            for _ in procs:
                ready.get(timeout=300)
            started = store.db_now()
            go.set()
            for p in procs:
                p.join(timeout=600)
        finally:
            for p in procs:
                if p.is_alive():
                    p.kill()
                    p.join()
        if any(p.exitcode != 0 for p in procs):
            raise SystemExit(f"{backend}, {workers} workers: a worker exited with "
                             f"{[p.exitcode for p in procs]}")
        infos = store.list_runs(group="bench-queue")
        claims = store.claims()
        bad = [i.id for i in infos if i.status != RunStatus.SUCCEEDED]
        if bad or sorted(c["run_id"] for c in claims) != sorted(ids):
            raise SystemExit(f"{backend}, {workers} workers: runs {bad} did not succeed, or a "
                             f"run was claimed twice ({len(claims)} claims for {len(ids)} runs)")
        finished = max(i.finished_at for i in infos)
        last_claim = max(c["claimed_at"] for c in claims)
        store.dispose()
    return Trial(backend, workers, runs, (finished - started).total_seconds(),
                 max((last_claim - started).total_seconds(), 1e-3))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100, help="tiny runs queued per trial")
    parser.add_argument("--workers", default="1,2,4", help="comma-separated worker counts")
    parser.add_argument("--postgres", default=None,
                        help="a PostgreSQL server URL (default: start a temporary cluster)")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    args = parser.parse_args()
    counts = [int(k) for k in args.workers.split(",") if k.strip()]
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # inherited by the worker processes
    os.environ.setdefault("MKL_NUM_THREADS", "1")
    print(f"{args.runs} tiny runs per trial ({TINY['iterations']} iterations, digits, MLP 32); "
          f"workers {counts}; {os.cpu_count()} cores")

    trials: list[Trial] = []
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="dm-bench-queue-db-") as tmp:
        backends: list[tuple[str, object]] = [("sqlite", None)]
        if not args.no_postgres:
            try:
                server = args.postgres or stack.enter_context(temporary_cluster())
                backends.append(("postgresql", server))
            except (PostgresUnavailable, PostgresStartFailed) as err:
                print(f"postgresql: skipped ({err})")
        print(f"{'backend':10} {'workers':>7} {'runs':>5} {'seconds':>8} {'finished/s':>10} "
              f"{'claimed/s':>9} {'s per run':>9}")
        for backend, server in backends:
            for k in counts:
                with (fresh_database(server, "dm_bench") if server else nullcontext(
                        f"sqlite:///{Path(tmp) / f'queue-{k}.sqlite'}")) as url:
                    t = trial(url, backend, k, args.runs)
                trials.append(t)
                print(f"{t.backend:10} {t.workers:7d} {t.runs:5d} {t.seconds:8.2f} "
                      f"{t.per_second:10.1f} {t.claims_per_second:9.1f} "
                      f"{t.workers / t.per_second:9.3f}", flush=True)

    print("ratios (finished per second, same backend):")
    for backend in dict.fromkeys(t.backend for t in trials):
        mine = {t.workers: t for t in trials if t.backend == backend}
        base = mine.get(min(mine))
        parts = [f"{k} workers / {base.workers} = {mine[k].per_second / base.per_second:.2f}×"
                 for k in sorted(mine) if k != base.workers]
        print(f"  {backend}: " + ", ".join(parts))
    by = {(t.backend, t.workers): t for t in trials}
    same = [k for k in counts if ("postgresql", k) in by and ("sqlite", k) in by]
    if same:
        print("  postgresql / sqlite: " + ", ".join(
            f"{k} worker(s) {by['postgresql', k].per_second / by['sqlite', k].per_second:.2f}×"
            for k in same))


if __name__ == "__main__":
    main()
