"""The Examples page in a real headless Chromium: the data map draws every training example.

A tiny real digits run is trained in this process and stored as a worker stores it
(tests/example_run_support.py), a finished run with a snapshot at each evaluation. The page,
opened by its URL (``/examples?run=N``) from ``dm up``, must hold in the browser's plotly
figure exactly one point per training example -- the clean and the corrupted trace together,
each example's index once -- in WebGL traces (``scattergl``) that have drawn into their
canvas. The counts are read from the page (``.js-plotly-plot`` → ``_fullData``) once the page
has settled and the figure holds data, not from the server's figure.

How fast the page draws 50,000 examples is measured by benchmarks/bench_examples_page.py,
not asserted here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from example_run_support import tiny_config, trained_run
from test_e2e import wait_ready

from dm_store import Store

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(600)]

VIEWPORT = {"width": 1400, "height": 3000}  # every chart in view: plotly loads when seen

# The data map: the plot whose x axis is the variability. Its traces as the browser holds
# them: type, name, number of x values, the examples' indices (customdata's first column) and
# whether plotly's WebGL canvas (which its scattergl traces draw into) exists with a drawing
# size.
DATA_MAP_JS = """() => {
    const plot = [...document.querySelectorAll('.js-plotly-plot')].find(el =>
        el._fullLayout && el._fullLayout.xaxis && el._fullLayout.xaxis.title
        && /^variability/.test(el._fullLayout.xaxis.title.text || ''));
    if (!plot || !plot._fullData) return null;
    const canvases = [...plot.querySelectorAll('canvas.gl-canvas-context')].filter(c =>
        c.width > 0 && c.height > 0);
    return {
        webgl_canvases: canvases.length,
        traces: plot._fullData.map(d => ({
            type: d.type, name: d.name, points: d.x ? d.x.length : 0,
            index: d.customdata ? Array.from(d.customdata, row => Number(row[0])) : [],
        })),
    };
}"""


def data_map(page) -> dict | None:
    return page.evaluate(DATA_MAP_JS)


def test_the_data_map_draws_every_training_example_in_webgl(browser, dm_up):
    store = Store(dm_up.db, Path(dm_up.tmp) / "artifacts")
    run_id = trained_run(store, tiny_config(name="examples-page"))
    _, noisy, corrupted = store.labels(run_id)
    n = len(noisy)
    assert n == 1297 and 0 < corrupted.sum() < n  # digits' training split, 40% noise
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(120_000)
    try:
        page.goto(f"{dm_up.url}/examples?run={run_id}")
        wait_ready(page, timeout=120_000)
        # Settled: the figure holds its traces' data (not an empty placeholder figure).
        page.wait_for_function("() => { const m = (" + DATA_MAP_JS + ")(); return m"
                               " && m.traces.length >= 2 && m.traces.every(t => t.points > 0); }")
        drawn = data_map(page)
        assert [t["type"] for t in drawn["traces"]] == ["scattergl", "scattergl"]
        points = {t["name"]: t["points"] for t in drawn["traces"]}
        assert points == {"clean": n - corrupted.sum(), "corrupted": corrupted.sum()}
        assert sum(points.values()) == n
        # Every example once, each in the trace of its label's state.
        index = {t["name"]: np.array(t["index"], dtype=np.int64) for t in drawn["traces"]}
        assert np.array_equal(np.sort(np.concatenate(list(index.values()))), np.arange(n))
        assert np.array_equal(np.sort(index["corrupted"]), np.flatnonzero(corrupted))
        assert drawn["webgl_canvases"] >= 1
    finally:
        context.close()
        store.dispose()
