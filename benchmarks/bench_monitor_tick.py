"""What the live Monitor costs on the server: a direct load and one tick of its fragment, and the share of a tick that building its figures takes, two ways side by side. No target: the browser benchmark (bench_monitor_live.py) has the targets; this one says where the server's part of them goes, in figures that hold from one machine to another.

    python benchmarks/bench_monitor_tick.py [--repeats 7]

A 6,000-iteration digits run (evaluated every 200 iterations, 20-bin histograms, the batch
concentration logged) is written as a worker would up to iteration 1,641, where
bench_monitor_live opens it; then each tick finds 700 new rows (a worker training about 175
iterations a second, every 4 s). The Monitor page runs under Streamlit's ``AppTest``, which
runs the fragment inline: every run is a whole page run, so the page's header is in each
figure. Measured:

- **server time**: a direct load (a new session), a tick with 700 new rows, a tick with
  nothing new (every chart sent as it was, none built), the median of ``--repeats``;
- **figures built per tick** (``app.live.FigureCache.builds``) and the bytes of the figures
  a tick sends;
- **building a tick's figures, two ways** (the same specifications, interleaved, median of
  ``--repeats`` rounds): as one specification validated once (``app.charts.style.figure``,
  the builders' way), and assembled by plotly's incremental calls, one ``add_trace`` per
  trace and one ``update_layout`` per layout entry, each of which validates again (the
  builders' way before; they also used ``make_subplots`` and ``add_vline``). The ratio is
  what the change saves, on any machine.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dm_core.config import parse_config  # noqa: E402
from dm_core.events import EvalEvent, HistogramEvent, ScalarsEvent  # noqa: E402
from dm_store import Store  # noqa: E402

PAGE = ROOT / "app" / "views" / "monitor.py"
ITERATIONS = 6000
OPENED_AT = 1641  # where bench_monitor_live's direct load found the run
TICK_ROWS = 700
BINS = 20


def write_rows(store: Store, run_id: int, attempt: int, start: int, end: int,
               rng: np.random.Generator, iterations: int = ITERATIONS) -> None:
    """Iterations ``start..end`` of a run whose clean examples are learnt and corrupted ones
    are not, as the training loop reports them."""
    scalars, hists, evals = [], [], []
    for it in range(start, end + 1):
        f = it / iterations
        scalars.append(ScalarsEvent(it, {
            "loss": 2.0 * (1 - f) + 0.1 + 0.05 * rng.standard_normal(), "ce": 1.5 * (1 - f) + 0.2,
            "lr": 0.02, "batch_acc": 0.5 + 0.4 * f, "p_clean_mean": 0.2 + 0.7 * f,
            "p_noisy_mean": 0.1 + 0.05 * f, "weight_mean": 1.0, "weight_var": 0.5 * (1 - f),
            "ess_fraction": 0.9 - 0.6 * f, "max_share": 0.02 + 0.3 * f * f}))
        clean = rng.multinomial(77, np.linspace(1 - f + 0.01, f + 0.01, BINS)
                                / np.linspace(1 - f + 0.01, f + 0.01, BINS).sum())
        noisy = rng.multinomial(51, np.full(BINS, 1.0 / BINS))
        hists.append(HistogramEvent(it, clean.astype(np.int32), noisy.astype(np.int32)))
        if it % 200 == 0:
            evals.append(EvalEvent(it, {"test_acc": 0.5 + 0.4 * f, "train_acc_corrupted": 0.3 + 0.1 * f,
                                        "train_acc_intact": 0.5 + 0.3 * f,
                                        "fit_corrupted_subset": 0.05 * f}))
    store.write_batch(run_id, attempt, scalars=scalars, histograms=hists, evals=evals,
                      worker_id="bench")


def with_arrays(value: Any) -> Any:
    """A figure's JSON with its base64 arrays back as numpy arrays, as the builders pass them."""
    if isinstance(value, dict) and "bdata" in value:
        out = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        return out.reshape([int(n) for n in str(value["shape"]).split(",")]) if "shape" in value else out
    if isinstance(value, dict):
        return {k: with_arrays(v) for k, v in value.items()}
    if isinstance(value, list):
        return [with_arrays(v) for v in value]
    return value


def incremental(spec: dict) -> object:
    """The figure of ``spec`` assembled call by call, each call validating again."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for trace in spec["data"]:
        fig.add_trace(trace)
    for key, value in spec["layout"].items():
        fig.update_layout({key: value})
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--iterations", type=int, default=ITERATIONS, help="the run's length")
    parser.add_argument("--opened-at", type=int, default=OPENED_AT,
                        help="the iteration the page is opened at (the history it holds)")
    args = parser.parse_args()
    import plotly.graph_objects as go
    from streamlit.testing.v1 import AppTest

    from app.db import get_store

    tmp = Path(tempfile.mkdtemp(prefix="bench-monitor-tick-"))
    url = f"sqlite:///{tmp / 'dm.sqlite'}"
    os.environ["DM_DATABASE_URL"], os.environ["DM_ARTIFACTS"] = url, str(tmp / "artifacts")
    get_store.clear()
    store = Store(url, tmp / "artifacts")
    iterations, opened_at = args.iterations, args.opened_at
    cfg = parse_config({"name": "live", "iterations": iterations, "eval_every": 200,
                        "histogram_bins": BINS, "optimizer": {"lr": 0.02},
                        "dataset": {"name": "digits", "noise": {"kind": "symmetric", "rate": 0.4}}})
    run_id = store.submit([cfg]).run_ids[0]
    claimed = store.claim("bench", "cpu")
    rng = np.random.default_rng(0)
    write_rows(store, run_id, claimed.attempt, 1, opened_at, rng, iterations)

    def page() -> AppTest:
        at = AppTest.from_file(str(PAGE), default_timeout=300)
        at.session_state["monitor.run_id"] = run_id
        return at

    def timed(at: AppTest) -> float:
        t = time.perf_counter()
        at.run()
        took = time.perf_counter() - t
        if at.exception:
            raise SystemExit(f"the Monitor failed: {at.exception}")
        return took

    timed(page())  # imports the page's modules once, as a running dashboard has them
    loads = [timed(page()) for _ in range(args.repeats)]
    at = page()
    timed(at)
    figures = at.session_state["monitor.live"]["figures"]
    ticks, idle, built, sent = [], [], [], []
    last = opened_at
    specs: list[dict] = []
    for _ in range(args.repeats):
        if last + TICK_ROWS >= iterations:
            break
        write_rows(store, run_id, claimed.attempt, last + 1, last + TICK_ROWS, rng, iterations)
        last += TICK_ROWS
        before = figures.builds
        ticks.append(timed(at))
        built.append(figures.builds - before)
        charts = at.get("plotly_chart")
        sent.append(sum(len(el.proto.spec) for el in charts))
        specs = [with_arrays(json.loads(el.proto.spec)) for el in charts]
        for spec in specs:  # plotly's default template, inlined in the JSON: both ways add it
            spec["layout"].pop("template", None)
        before = figures.builds
        idle.append(timed(at))
        if figures.builds != before:
            raise SystemExit("a tick with nothing new built a figure")

    one_spec, step_by_step = [], []
    for _ in range(args.repeats):  # interleaved: the machine's load weighs on both alike
        t = time.perf_counter()
        for spec in specs:
            go.Figure(spec)
        one_spec.append(time.perf_counter() - t)
        t = time.perf_counter()
        for spec in specs:
            incremental(spec)
        step_by_step.append(time.perf_counter() - t)

    med = statistics.median
    print(f"Monitor of a {iterations}-iteration run opened at iteration {opened_at}, "
          f"{TICK_ROWS} new rows per tick; {os.cpu_count()} cores, load average (1 min) "
          f"{os.getloadavg()[0]:.1f}; median of {len(loads)} loads and {len(ticks)} ticks "
          "(AppTest: whole page runs, fragment inline)")
    print(f"server time: direct load {med(loads):.3f} s, tick with {TICK_ROWS} new rows "
          f"{med(ticks):.3f} s, tick with nothing new {med(idle):.3f} s "
          f"({med(idle) / med(ticks):.2f} of a tick with new rows)")
    print(f"figures per tick with new rows: {med(built):g} of {len(specs)} built, "
          f"{med(sent) / 1e3:.0f} kB of figures sent; with nothing new: 0 built, the same "
          "figures sent (the browser keeps them)")
    ratio = med(step_by_step) / med(one_spec)
    print(f"building one tick's {len(specs)} figures: one specification each "
          f"{1e3 * med(one_spec):.1f} ms, plotly's incremental calls {1e3 * med(step_by_step):.1f} ms: "
          f"incremental / one specification {ratio:.1f}")


if __name__ == "__main__":
    main()
