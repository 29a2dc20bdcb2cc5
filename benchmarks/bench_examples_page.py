"""How long the Examples page takes to draw 50,000 training examples in Chromium: a first load,
a load in a new browser session, a rerun after a control changes, and a zoom on the data map.

    python benchmarks/bench_examples_page.py [--examples 50000] [--snapshots 10] [--repeats 3]

``dm up --no-workers`` serves the dashboard on a free port over a throw-away SQLite database
holding two finished runs on the same CIFAR-shaped data and seed (``--examples`` random 3×32×32
images in an ``arrays`` dataset, 40% of the labels corrupted), each with ``--snapshots``
stored snapshots whose arrays are drawn at random with the dtypes a run stores
(``dm_core.example_stats.STATISTICS`` and cleanlab's ``label_quality``): the page shows every
one of its parts, the second run's shares figure (another WebGL scatter of every example)
included. Debian's Chromium, driven by Playwright, opens ``/examples?run=N`` by its URL.

A load has settled when the page is connected, its script is not running, no loading
placeholder is left, and the data map holds every example in the browser (the x values of its
traces, all ``scattergl``, add up to ``--examples``) with its WebGL canvas sized; the time runs from the request
to that state. Figures:

- **first load**: the dashboard has not loaded the run before (its training images are read
  for the thumbnails then, once per process);
- **new session**: a new browser context (a new Streamlit session), the server's caches warm;
- **rerun**: "Rank by" set to another statistic, which reruns the script and resends the
  page's figures, until the suspects table's heading names it and the page has settled;
- **zoom**: a box dragged on the data map, from the mouse's release to plotly's
  ``plotly_relayout`` event (the points redrawn in the zoomed axes, in the browser alone).

No target is set in the issue beyond "50,000 points stay responsive": the figures are printed,
the median of ``--repeats`` each (the first load once).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dashboard_server import free_port, healthy, stop  # noqa: E402 (this folder, on sys.path as the script's)

from dm_core.config import parse_config  # noqa: E402
from dm_core.events import EvalEvent, ExamplesEvent, StartEvent  # noqa: E402
from dm_core.example_stats import STATISTICS  # noqa: E402
from dm_store import Store  # noqa: E402

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--enable-unsafe-swiftshader", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1400, "height": 3000}  # every chart in view: plotly loads when seen
CLASSES = 10
NOISE = 0.4

# The page has settled with the data map holding ``n`` points (see the module docstring).
SETTLED_JS = """(n) => {
    const app = document.querySelector('[data-testid=stApp]');
    if (!app || app.getAttribute('data-test-connection-state') !== 'CONNECTED'
        || app.getAttribute('data-test-script-state') !== 'notRunning'
        || document.querySelectorAll('[data-testid=stSkeleton]').length) return false;
    const plot = [...document.querySelectorAll('.js-plotly-plot')].find(el =>
        el._fullLayout && el._fullLayout.xaxis && el._fullLayout.xaxis.title
        && /^variability/.test(el._fullLayout.xaxis.title.text || ''));
    if (!plot || !plot._fullData) return false;
    const points = plot._fullData.reduce((s, d) => s + (d.x ? d.x.length : 0), 0);
    const webgl = plot._fullData.every(d => d.type === 'scattergl');
    const canvas = [...plot.querySelectorAll('canvas.gl-canvas-context')].some(c => c.width > 0);
    return points === n && webgl && canvas;
}"""
DATA_MAP_JS = """() => [...document.querySelectorAll('.js-plotly-plot')].find(el =>
    el._fullLayout && el._fullLayout.xaxis && el._fullLayout.xaxis.title
    && /^variability/.test(el._fullLayout.xaxis.title.text || ''))"""


def cifar_shaped(directory: Path, n: int) -> Path:
    """An ``arrays`` dataset of ``n`` random 3×32×32 uint8 training images in 10 classes."""
    rng = np.random.default_rng(0)
    path = directory / "cifar-shaped.npz"
    np.savez(path, x_train=rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8),
             y_train=np.arange(n) % CLASSES, x_test=rng.integers(0, 256, (256, 3, 32, 32), dtype=np.uint8),
             y_test=np.arange(256) % CLASSES)
    return path


def snapshot(rng: np.random.Generator, corrupted: np.ndarray, iteration: int, last: int) -> dict[str, np.ndarray]:
    """Random statistics with a run's dtypes: the corrupted examples less confident, more so
    as training goes on."""
    n, progress = len(corrupted), iteration / last
    confidence = np.clip(np.where(corrupted, 0.3 - 0.2 * progress, 0.5 + 0.4 * progress)
                         + rng.normal(0, 0.15, n), 0, 1)
    values = {"confidence": confidence, "variability": rng.uniform(0, 0.5, n),
              "aum": confidence * 6 - 3 + rng.normal(0, 1, n),
              "forgetting": rng.poisson(np.where(corrupted, 3, 1) * progress, n),
              "first_learned": np.where(rng.random(n) < confidence, rng.integers(1, iteration + 1, n), -1),
              "last_p": np.clip(confidence + rng.normal(0, 0.1, n), 0, 1),
              "share": rng.gamma(2.0, 0.5 / 128, n) * np.where(corrupted, 0.5, 1.0)}
    arrays = {k: v.astype(STATISTICS[k][0]) for k, v in values.items()}
    arrays["label_quality"] = np.clip(confidence + rng.normal(0, 0.1, n), 0, 1).astype(np.float16)
    return arrays


def seed_runs(store: Store, data_path: Path, n: int, snapshots: int) -> list[int]:
    """Two finished runs (CCE and DM) on the same data and seed, each with ``snapshots``
    snapshots of ``n`` examples; their ids."""
    rng = np.random.default_rng(1)
    clean = np.arange(n) % CLASSES
    corrupted = rng.random(n) < NOISE
    noisy = np.where(corrupted, (clean + rng.integers(1, CLASSES, n)) % CLASSES, clean)
    iterations, every = 1000 * snapshots, 1000
    ids = []
    for name, loss in (("cce", {"name": "cce"}), ("dm", {"name": "dm", "lam": 1.0, "beta": 12.0})):
        cfg = parse_config({"name": f"page-{name}", "seed": 0, "iterations": iterations,
                            "eval_every": every, "batch_size": 128, "loss": loss,
                            "dataset": {"name": "arrays", "path": str(data_path),
                                        "noise": {"kind": "symmetric", "rate": NOISE}}})
        [run_id] = store.submit([cfg]).run_ids
        claimed = store.claim("bench", "cpu")
        start = StartEvent(total_iterations=iterations, device="cpu", resumed_from=0, num_train=n,
                           num_classes=CLASSES, actual_noise_rate=float(corrupted.mean()),
                           clean_labels=clean.astype(np.int64), noisy_labels=noisy.astype(np.int64),
                           is_noisy=corrupted)
        its = list(range(every, iterations + 1, every))
        store.write_batch(run_id, claimed.attempt, start=start, worker_id="bench",
                          evals=[EvalEvent(i, {"test_acc": 0.5 + 0.3 * i / iterations}) for i in its],
                          examples=[ExamplesEvent(i, snapshot(rng, corrupted, i, iterations)) for i in its])
        store.finish(run_id, "bench", "succeeded", attempt=claimed.attempt,
                     summary={"test_acc_final": 0.8, "test_acc_best": 0.8})
        ids.append(run_id)
    return ids


def load(browser, url: str, n: int) -> tuple[float, object, object]:
    """Open ``url`` in a new session; seconds until it has settled, and the open page."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(600_000)
    t0 = time.perf_counter()
    page.goto(url)
    page.wait_for_function(SETTLED_JS, arg=n, polling="raf")
    return time.perf_counter() - t0, page, context


def rerun(page, n: int, statistic: str) -> float:
    """Set "Rank by" to ``statistic``; seconds until the page has settled with it."""
    box = page.locator("[data-testid=stSelectbox]").filter(
        has=page.locator("[data-testid=stWidgetLabel]", has_text=re.compile("^Rank by$")))
    box.click()
    option = page.get_by_role("option", name=re.compile(f"^{re.escape(statistic)}$")).first
    t0 = time.perf_counter()
    option.click()
    page.get_by_text(f"Most suspect by {statistic}", exact=True).wait_for()
    page.wait_for_function(SETTLED_JS, arg=n, polling="raf")
    return time.perf_counter() - t0


def zoom(page, shrink: float) -> float:
    """Drag a box over the middle ``shrink`` of the data map's plot area; seconds from the
    mouse's release until plotly reports the relayout done."""
    page.evaluate("() => { const gd = (" + DATA_MAP_JS + ")(); window.__relayouts = 0;"
                  " gd.on('plotly_relayout', () => { window.__relayouts += 1; }); }")
    area = page.evaluate("() => { const r = (" + DATA_MAP_JS + ")().querySelector('.nsewdrag')"
                         ".getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; }")
    left, top, width, height = area
    margin = (1 - shrink) / 2
    page.mouse.move(left + width * margin, top + height * margin)
    page.mouse.down()
    page.mouse.move(left + width * (1 - margin), top + height * (1 - margin), steps=8)
    t0 = time.perf_counter()
    page.mouse.up()
    page.wait_for_function("() => window.__relayouts > 0", polling="raf")
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=50_000)
    parser.add_argument("--snapshots", type=int, default=10, help="snapshots stored per run")
    parser.add_argument("--repeats", type=int, default=3, help="of each figure but the first load")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    chromium = os.environ.get("DM_CHROMIUM", "/usr/bin/chromium")
    with tempfile.TemporaryDirectory(prefix="dm-bench-examples-page-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "data").mkdir()
        data_path = cifar_shaped(tmp / "data", args.examples)
        db = f"sqlite:///{tmp / 'dm.sqlite'}"
        store = Store(db, tmp / "artifacts")
        t0 = time.perf_counter()
        run_id, _ = seed_runs(store, data_path, args.examples, args.snapshots)
        print(f"{args.examples:,} examples, 2 runs × {args.snapshots} snapshots stored in "
              f"{time.perf_counter() - t0:.1f} s; Chromium {chromium}; load average (1 min) "
              f"{os.getloadavg()[0]:.1f}", flush=True)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [sys.executable, "-m", "studio.cli", "up", "--port", str(port), "--db", db,
             "--artifacts", str(tmp / "artifacts"), "--no-workers", "--stop-timeout", "10"],
            stdout=(tmp / "dm-up.log").open("w"), stderr=subprocess.STDOUT, cwd=tmp,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "DM_DATA_DIRS": str(tmp / "data")})
        try:
            deadline = time.monotonic() + 180
            while not healthy(url):
                if server.poll() is not None or time.monotonic() > deadline:
                    sys.exit("dm up did not become healthy:\n" + (tmp / "dm-up.log").read_text()[-3000:])
                time.sleep(0.5)
            page_url = f"{url}/examples?run={run_id}"
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
                first, page, context = load(browser, page_url, args.examples)
                context.close()
                print(f"first load: {first:.1f} s", flush=True)
                sessions, reruns, zooms = [], [], []
                for i in range(args.repeats):  # a new session each time: the map not zoomed yet
                    took, page, context = load(browser, page_url, args.examples)
                    sessions.append(took)
                    reruns.append(rerun(page, args.examples, ("aum", "forgetting", "last_p")[i % 3]))
                    zooms.append(zoom(page, 0.5))
                    context.close()
                    print(f"repeat {i + 1}: new session {sessions[-1]:.1f} s, rerun {reruns[-1]:.1f} s, "
                          f"zoom {zooms[-1] * 1e3:.0f} ms", flush=True)
                browser.close()
        finally:
            stop(server)
            store.dispose()
    median = statistics.median
    print(f"first load (training images read for the thumbnails): {first:.1f} s")
    print(f"new session: median {median(sessions):.1f} s of {args.repeats} "
          f"({', '.join(f'{t:.1f}' for t in sessions)})")
    print(f"rerun after 'Rank by' changes: median {median(reruns):.1f} s "
          f"({', '.join(f'{t:.1f}' for t in reruns)})")
    print(f"zoom on the data map (browser only): median {median(zooms) * 1e3:.0f} ms "
          f"({', '.join(f'{t * 1e3:.0f}' for t in zooms)})")
    print(f"every example drawn: the data map held {args.examples:,} points at each load "
          f"(WebGL: scattergl); load average (1 min) {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
