"""Dashboard queries on long runs: the monitor refresh for one 30,000-iteration run, and the
compare page's data for 8 such runs. Median and p95 latency; target < 0.3 s per monitor refresh.

    python benchmarks/bench_queries.py [--iterations 30000] [--db sqlite:///...|postgresql+psycopg://...]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from dm_core.config import parse_config
from dm_core.events import EvalEvent, HistogramEvent, ScalarsEvent
from dm_store import Store

TARGET = 0.3  # seconds, one monitor refresh


def fill(store: Store, n_runs: int, iterations: int, bins: int = 20) -> list[int]:
    cfg = parse_config({"name": "bench", "iterations": iterations, "eval_every": 100,
                        "histogram_bins": bins, "device": "cpu"})
    ids = store.submit([cfg] * n_runs, group="bench").run_ids
    rng = np.random.default_rng(0)
    for k in ids:
        claimed = store.claim(f"bench-{k}", "cpu")
        chunk = 1000  # what a worker writes in about a second on a fast run
        for start in range(1, iterations + 1, chunk):
            its = range(start, min(start + chunk, iterations + 1))
            store.write_batch(
                claimed.id, claimed.attempt,
                scalars=[ScalarsEvent(i, {"loss": 1 / i, "ce": 1 / i, "lr": 0.1, "batch_acc": 0.5,
                                          "p_clean_mean": 0.8, "p_noisy_mean": 0.2,
                                          "weight_mean": 1.0, "weight_var": 0.3}) for i in its],
                histograms=[HistogramEvent(i, rng.integers(0, 50, bins).astype(np.int32),
                                           rng.integers(0, 50, bins).astype(np.int32)) for i in its],
                evals=[EvalEvent(i, {"test_acc": 0.9, "train_acc_corrupted": 0.6,
                                     "train_acc_intact": 0.9, "fit_corrupted_subset": 0.1})
                       for i in its if i % 100 == 0])
    return ids


def timed(fn, repeats: int) -> tuple[float, float]:
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    samples.sort()
    return statistics.median(samples), samples[int(0.95 * (len(samples) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=30_000)
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--db", default=None)
    args = parser.parse_args()
    tmp = tempfile.mkdtemp()
    store = Store(args.db or f"sqlite:///{Path(tmp) / 'bench.sqlite'}")
    t0 = time.perf_counter()
    ids = fill(store, args.runs, args.iterations)
    print(f"{store.dialect}: wrote {args.runs} runs × {args.iterations} iterations in {time.perf_counter() - t0:.1f} s")
    run = ids[0]
    last = args.iterations - 50

    def monitor_first_load():  # what the monitor page draws when opened
        store.scalars(run, max_points=2000)
        store.evals(run)
        store.histograms(run, max_rows=2000)
        store.get_run(run)

    def monitor_refresh():  # one live tick: only what is new since the last iteration seen
        store.scalars(run, after=last)
        store.evals(run)
        store.histogram_at(run, args.iterations)
        store.get_run(run)

    def compare():
        for k in ids:
            store.scalars(k, max_points=2000)
            store.evals(k)
            store.histogram_at(k, args.iterations // 2)
        store.list_runs(group="bench")

    print(f"{'query':34} {'median (s)':>11} {'p95 (s)':>9}")
    measured = {}
    for label, fn in (("monitor, first load", monitor_first_load),
                      (f"monitor, live refresh (target < {TARGET})", monitor_refresh),
                      (f"compare, {args.runs} runs", compare)):
        med, p95 = timed(fn, args.repeats)
        measured[fn.__name__] = (med, p95)
        print(f"{label:34} {med:11.4f} {p95:9.4f}")
    med, p95 = measured["monitor_refresh"]
    ok = p95 < TARGET  # judged on the p95, the stricter of the two
    print(f"verdict: {store.dialect} monitor live refresh p95 {p95:.4f} s (median {med:.4f} s) "
          f"{'<' if ok else '≥'} {TARGET} s: {'met' if ok else 'MISSED'}")


if __name__ == "__main__":
    main()
