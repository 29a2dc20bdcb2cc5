"""The live Monitor in a real browser while a worker trains: how far the page is behind the database (median and worst, in seconds), how often it is greyed out or missing a chart, and how long a direct load of a running run takes to settle. Targets: median lag ≤ 5 s, worst ≤ 12 s, no sample with a chart missing and no painted frame with a chart out of view, at most 10% greyed, a direct load settled within 6 s.

    python benchmarks/bench_monitor_live.py [--iterations 6000] [--workers 2] [--every 2]

``dm up --no-workers`` serves the dashboard on a free port over a throw-away SQLite
database; ``--workers`` real worker processes (one torch thread each) train digits runs of
``--iterations`` iterations, so that both cores of a 2-core machine are busy; the first run
is the one watched. Debian's Chromium, driven by Playwright, opens the Monitor by its URL
while the run trains (the time until it has settled is the direct-load figure), then reads
the page every ``--every`` seconds on average (jittered, so that samples do not lock to the page's own refresh period) until the run ends.

The lag of a sample is read against a record of the database: a thread polls the run's
newest stored iteration every 0.1 s, and a page that shows iteration X at time t is t - t_X
behind, where t_X is when the database first held X. "Greyed" counts samples in which some
element of the page was visibly faded as stale (its opacity below 0.9, and visible); "missing"
those in which a chart the page had drawn before was not drawn and visible (by its title), or
a loading placeholder stood in for one. Visible, because Streamlit keeps a replaced chart in
the page, hidden (``display: none``) and still marked stale, until the run that replaced it
ends: the column "hidden" counts those, which no one sees. Each sample also reads how long
the browser's main thread spent in long tasks since the previous sample (the Long Tasks
API), its JavaScript heap and its number of DOM nodes. Between samples, a callback before
every frame the browser paints checks that each chart the page has drawn is in view (drawn
and visible), and keeps each stretch of frames in which one is not. A direct load has
settled when the page is connected, its script is not running, no placeholder is left, the
line "as of iteration ..." is shown and the charts are drawn. Nothing here waits for a fixed
duration except the sampling period itself.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from bisect import bisect_left
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dashboard_server import free_port, healthy, stop  # noqa: E402 (this folder, on sys.path as the script's)

from dm_core.config import parse_config  # noqa: E402
from dm_store import RunStatus, Store  # noqa: E402

MEDIAN_TARGET_S = 5.0
WORST_TARGET_S = 12.0
SETTLE_TARGET_S = 6.0
GREYED_TARGET = 0.1  # share of samples with an element faded as stale
CHARTS = 5  # accuracy, mean p_i, heatmaps, one iteration's bars, loss: at least these
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--enable-unsafe-swiftshader", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--enable-precise-memory-info"]
AS_OF = re.compile(r"as of iteration (\d+), (\d+) s ago")

# One sample of the page: the iteration it says it shows, how many charts are drawn, whether
# a loading placeholder is left, and how many elements are faded as stale.
SAMPLE_JS = """() => {
    const text = document.body.innerText;
    const m = text.match(/as of iteration (\\d+), (\\d+) s ago/);
    const drawn = [...new Set([...document.querySelectorAll('.js-plotly-plot')]
        .filter(el => el._fullData && el._fullData.length && el.layout && el.checkVisibility())
        .map(el => { const t = el.layout.title; const a = el.layout.annotations || [];
                     return ((t && (t.text || t)) || (a[0] && a[0].text) || '')
                         .replace(/<[^>]*>/g, '').replace(/\\d+/g, 'N'); }))];
    const faded = [...document.querySelectorAll('[data-testid=stElementContainer][data-stale=true]')]
        .filter(el => parseFloat(getComputedStyle(el).opacity) < 0.9);
    const seen = faded.filter(el => el.checkVisibility());
    const kind = el => { const c = el.querySelector('[data-testid]'); return c ? c.dataset.testid : '?'; };
    const busy = window.__busy || 0;
    window.__busy = 0;
    return {iteration: m ? parseInt(m[1]) : null, drawn,
            skeletons: document.querySelectorAll('[data-testid=stSkeleton]').length,
            greyed: seen.length, hidden: faded.length - seen.length, kinds: seen.map(kind), busy,
            heap: performance.memory ? performance.memory.usedJSHeapSize / 1e6 : 0,
            nodes: document.getElementsByTagName('*').length,
            ended: /Iteration \\d+: the run is/.test(text)};
}"""
# The browser's main thread: the time spent in tasks longer than 50 ms (the Long Tasks API),
# summed between two samples. A page whose main thread is busy drawing cannot show the
# newest elements, which stay faded meanwhile.
BUSY_JS = """new PerformanceObserver(list => {
    window.__busy = (window.__busy || 0) + list.getEntries().reduce((a, e) => a + e.duration, 0);
}).observe({type: 'longtask', buffered: true});
// Before every frame the browser paints: is a chart the page has drawn before missing from
// view (hidden, or not drawn yet)? Each such stretch is kept as [start ms, duration ms, titles].
window.__blank = [];
(() => {
    const wanted = new Set();
    let since = null, gone = [];
    const title = el => { const t = el.layout.title; const a = el.layout.annotations || [];
        return ((t && (t.text || t)) || (a[0] && a[0].text) || '').replace(/<[^>]*>/g, '')
            .replace(/\\d+/g, 'N'); };
    const frame = now => {
        const drawn = new Set([...document.querySelectorAll('.js-plotly-plot')]
            .filter(el => el._fullData && el._fullData.length && el.layout && el.checkVisibility())
            .map(title));
        drawn.forEach(t => wanted.add(t));
        const missing = [...wanted].filter(t => !drawn.has(t));
        if (missing.length && since === null) { since = now; gone = missing; }
        if (!missing.length && since !== null) { window.__blank.push([since, now - since, gone]); since = null; }
        requestAnimationFrame(frame);
    };
    requestAnimationFrame(frame);
})();"""
SETTLED_JS = """(charts) => {
    const app = document.querySelector('[data-testid=stApp]');
    return app && app.getAttribute('data-test-connection-state') === 'CONNECTED'
        && app.getAttribute('data-test-script-state') === 'notRunning'
        && document.querySelectorAll('[data-testid=stSkeleton]').length === 0
        && /as of iteration \\d+/.test(document.body.innerText)
        && [...document.querySelectorAll('.js-plotly-plot')]
            .filter(el => el._fullData && el._fullData.length).length >= charts;
}"""


def start(command: list[str], log: Path, cwd: Path, threads: bool) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **({"OMP_NUM_THREADS": "1"} if threads else {})}
    return subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=cwd,
                            start_new_session=True, env=env)


class DatabaseClock:
    """When the database first held each iteration of a run (polled every 0.1 s)."""

    def __init__(self, store: Store, run_id: int) -> None:
        self.store, self.run_id = store, run_id
        self.times: list[float] = []
        self.iterations: list[int] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()

    def _poll(self) -> None:
        while not self.done.is_set():
            run = self.store.get_run(self.run_id)
            if not self.iterations or run.iteration > self.iterations[-1]:
                self.times.append(time.monotonic())
                self.iterations.append(run.iteration)
            if run.status not in (RunStatus.QUEUED, RunStatus.RUNNING):
                self.done.set()
            time.sleep(0.1)

    def reached(self, iteration: int) -> float | None:
        """When the database first held ``iteration`` or a later one."""
        i = bisect_left(self.iterations, iteration)
        return self.times[i] if i < len(self.iterations) else None

    def newest(self) -> int:
        return self.iterations[-1] if self.iterations else 0


def direct_load(browser, url: str, run_id: int) -> tuple[float, object, object]:
    """Open the Monitor of ``run_id`` by its URL in a fresh session: (seconds to settle,
    the context, the page)."""
    context = browser.new_context(viewport={"width": 1400, "height": 3200})
    context.add_init_script(BUSY_JS)
    page = context.new_page()
    t0 = time.monotonic()
    page.goto(f"{url}/monitor?run={run_id}")
    page.wait_for_function("() => /as of iteration \\d+/.test(document.body.innerText)",
                           timeout=180_000, polling=100)
    shown = time.monotonic() - t0
    page.wait_for_function(SETTLED_JS, arg=CHARTS, timeout=180_000, polling=100)
    settled = time.monotonic() - t0
    print(f"direct load of run {run_id}: the line saying what is shown after {shown:.1f} s, "
          f"settled after {settled:.1f} s")
    return settled, context, page


def verdict(name: str, value: float, target: float, unit: str = " s") -> str:
    return f"verdict: {name} {value:.1f}{unit} ≤ {target:g}{unit}: {'met' if value <= target else 'MISSED'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=6000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--every", type=float, default=2.0,
                        help="mean seconds between samples (each period jittered ±50%%)")
    parser.add_argument("--chromium", default=os.environ.get("DM_CHROMIUM", "/usr/bin/chromium"))
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    load_before = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="bench-monitor-"))
    db = f"sqlite:///{tmp / 'dm.sqlite'}"
    store = Store(db, tmp / "artifacts")
    # lr 0.02: at the default 0.1 the DM runs of this length diverged past 4,000 iterations,
    # which would end the measurement early.
    cfg = {"iterations": args.iterations, "eval_every": 200, "histogram_bins": 20,
           "optimizer": {"lr": 0.02},
           "dataset": {"name": "digits", "noise": {"kind": "symmetric", "rate": 0.4}}}
    ids = store.submit([parse_config({**cfg, "name": f"live-{k}", "seed": k})
                        for k in range(args.workers)]).run_ids
    watched = ids[0]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    procs = [start([sys.executable, "-m", "studio.cli", "up", "--port", str(port), "--db", db,
                    "--artifacts", str(tmp / "artifacts"), "--no-workers"], tmp / "up.log", tmp,
                   threads=False)]
    try:
        while not healthy(url):
            if procs[0].poll() is not None:
                raise SystemExit((tmp / "up.log").read_text()[-3000:])
            time.sleep(0.5)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
            # A server that has served the page before, as a running dashboard has: the
            # first session of a fresh server also imports the page's modules.
            warm = browser.new_context()
            warm.new_page().goto(f"{url}/monitor?run={watched}")
            warm.pages[0].get_by_text("waiting for a worker", exact=False).wait_for(timeout=180_000)
            warm.close()
            for k in range(args.workers):
                procs.append(start([sys.executable, "-m", "studio.cli", "worker", "--device",
                                    "cpu", "--poll", "0.2", "--db", db, "--artifacts",
                                    str(tmp / "artifacts")], tmp / f"worker-{k}.log", tmp,
                                   threads=True))
            while store.get_run(watched).iteration < args.iterations // 20:  # rows to show
                time.sleep(0.2)
            clock = DatabaseClock(store, watched)
            settle, context, page = direct_load(browser, url, watched)
            at_load = clock.newest()
            samples = []
            seen: set[str] = set()
            # Jittered sampling: a period equal to the page's own refresh period (4 s) would
            # hit the same phase of every tick, and count a tick in flight in every sample or
            # in none.
            jitter = random.Random(0)
            started = time.monotonic()
            page_started = page.evaluate("() => performance.now()")  # the page's clock, in ms
            while True:
                t = time.monotonic()
                sample = page.evaluate(SAMPLE_JS)
                if sample["ended"]:
                    break
                drawn = set(sample["drawn"])
                seen |= drawn
                reached = clock.reached(sample["iteration"]) if sample["iteration"] else None
                samples.append({**sample, "at": t - started,
                                "lag": None if reached is None else max(0.0, t - reached),
                                "db": clock.newest(), "drawn": len(drawn),
                                "missing": sample["skeletons"] > 0 or bool(seen - drawn)})
                period = args.every * jitter.uniform(0.5, 1.5)
                time.sleep(max(0.0, period - (time.monotonic() - t)))
            blank = page.evaluate("() => window.__blank")
            context.close()
            browser.close()
        clock.done.set()
    finally:
        for proc in reversed(procs):
            stop(proc)
    shown = [s for s in samples if s["lag"] is not None]
    lags = [s["lag"] for s in shown] or [float("inf")]
    greyed = sum(s["greyed"] > 0 for s in samples)
    missing = sum(s["missing"] for s in samples)
    print(f"{args.workers} workers training {args.iterations}-iteration digits runs on "
          f"{os.cpu_count()} cores; one watched, sampled every {args.every:g} s on average "
          f"(jittered ±50%); load average "
          f"(1 min) {load_before:.1f} before, {os.getloadavg()[0]:.1f} after")
    final = store.get_run(watched)
    print(f"watched run: {final.status} at iteration {final.iteration} of {args.iterations}")
    print(f"direct load of the running run (at iteration {at_load}): settled in {settle:.1f} s")
    print(f"{'t (s)':>6} {'page it':>8} {'db it':>7} {'lag (s)':>8} {'charts':>6} {'greyed':>6} "
          f"{'hidden':>6} {'busy (ms)':>9} {'heap (MB)':>9} {'nodes':>6}  greyed elements")
    for s in samples:
        lag = "—" if s["lag"] is None else f"{s['lag']:.1f}"
        print(f"{s['at']:6.1f} {s['iteration'] or 0:8d} {s['db']:7d} {lag:>8} "
              f"{s['drawn']:6d} {s['greyed']:6d} {s['hidden']:6d} {s['busy']:9.0f} "
              f"{s['heap']:9.1f} {s['nodes']:6d}  {' '.join(sorted(set(s['kinds'])))}")
    elapsed = max(samples[-1]["at"], 1e-9) if samples else 1e-9
    print(f"the browser's main thread in long tasks: {sum(s['busy'] for s in samples) / 1000:.1f} s "
          f"of {elapsed:.0f} s sampled")
    print(f"samples {len(samples)}: lag median {statistics.median(lags):.1f} s, worst "
          f"{max(lags):.1f} s; greyed in {greyed} ({greyed / max(len(samples), 1):.0%}), a chart "
          f"missing in {missing} ({missing / max(len(samples), 1):.0%})")
    print(f"frames painted with a chart out of view (hidden or not drawn yet): {len(blank)} "
          f"stretches, {sum(b[1] for b in blank) / 1000:.2f} s in all, the longest "
          f"{max((b[1] for b in blank), default=0):.0f} ms")
    for at, duration, titles in sorted(blank, key=lambda b: -b[1])[:5]:
        print(f"  {duration:6.0f} ms at t = {(at - page_started) / 1000:.1f} s: {', '.join(titles)}")
    print(verdict("Monitor lag median", statistics.median(lags), MEDIAN_TARGET_S))
    print(verdict("Monitor lag worst", max(lags), WORST_TARGET_S))
    print(f"verdict: samples with a chart missing {missing} of {len(samples)} (target 0): "
          f"{'met' if missing == 0 else 'MISSED'}")
    share = greyed / max(len(samples), 1)
    print(f"verdict: samples greyed {share:.0%} ≤ {GREYED_TARGET:.0%}: "
          f"{'met' if share <= GREYED_TARGET else 'MISSED'}")
    print(f"verdict: stretches of painted frames with a chart out of view {len(blank)} (target 0): "
          f"{'met' if not blank else 'MISSED'}")
    print(verdict("direct load of a running run settled in", settle, SETTLE_TARGET_S))


if __name__ == "__main__":
    main()
