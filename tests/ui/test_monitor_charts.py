"""The live Monitor's charts in a real headless Chromium: a user's zoom across ticks.

- Streamlit 1.67 mounts a plotly chart afresh whenever its figure changes (the element id is
  derived from the figure), so a zoom lasts only as long as the chart's figure does
  (docs/architecture.md, "Streamlit: pacing a live fragment"). What the Monitor guarantees is
  that a tick sends a chart whose data did not change as the very same figure: the accuracy
  chart, between two evaluations, keeps its plot and the user's zoom while the other charts
  take the tick's new rows.
- A chart a tick replaces stays in view until its successor is drawn: Streamlit keeps the
  replaced element hidden ("retained") beside the new one, which is mounted empty and drawn
  only after the charts before it; the page's style sheet shows the retained chart, unfaded,
  while its successor has no drawing (``app.views.monitor.KEEP_REPLACED_CHART_CSS``). How long
  charts are out of view while a worker trains is measured by benchmarks/bench_monitor_live.py.

Rows are written by the test as a worker would (``fabricate``), and every check waits for a
state of the page (the iteration it says it shows, the last point of a chart), never for a
duration.
"""

from __future__ import annotations

import pytest
from test_app_support import fabricate
from test_e2e import FIND_PLOT_JS, last_x, wait_for, wait_ready

from dm_store import Store

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(600)]

VIEWPORT = {"width": 1400, "height": 3000}  # every chart in view: plotly loads when seen
RUN = {"iterations": 400, "eval_every": 100, "bins": 10, "worker": "ui-fabricator"}

# The chart's plot area and x range, and whether it is the plot node marked before the tick
# (a chart mounted afresh is a new node).
PLOT_JS = "(part) => {" + FIND_PLOT_JS + """
    const el = findPlot(part);
    if (!el || !el._fullLayout || !el.querySelector('.nsewdrag')) return null;
    const box = el.querySelector('.nsewdrag').getBoundingClientRect();
    return {box: [box.left, box.top, box.width, box.height], marked: el.dataset.probe === 'kept',
            range: el._fullLayout.xaxis.range.map(Number),
            autorange: el._fullLayout.xaxis.autorange}; }"""
MARK_JS = "(part) => {" + FIND_PLOT_JS + "findPlot(part).dataset.probe = 'kept'; }"


def zoom_x(page, title: str, start: float, end: float) -> list[float]:
    """Drag across the chart's plot area from ``start`` to ``end`` (fractions of its width),
    level, as a user zooms the x axis; the new x range once plotly has applied it."""
    before = page.evaluate(PLOT_JS, title)
    left, top, width, height = before["box"]
    page.mouse.move(left + start * width, top + height / 2)
    page.mouse.down()
    page.mouse.move(left + end * width, top + height / 2, steps=10)
    page.mouse.up()
    return wait_for(lambda: (lambda now: now and not now["autorange"] and now["range"])(
        page.evaluate(PLOT_JS, title)), 30, f"the zoom on {title!r}", 0.1)


def test_a_zoom_survives_a_tick_that_does_not_change_its_chart(browser, dm_up):
    store = Store(dm_up.db)
    run_id = fabricate(store, name="zoom", upto=300, finish=False, **RUN)
    page = browser.new_context(viewport=VIEWPORT).new_page()
    page.set_default_timeout(60_000)
    try:
        page.goto(f"{dm_up.url}/monitor?run={run_id}")
        wait_ready(page, timeout=120_000)
        page.get_by_text("as of iteration 300,", exact=False).wait_for()
        wait_for(lambda: page.evaluate(PLOT_JS, "Accuracy") and last_x(page, "Mean p_i of clean")
                 == 300, 60, "the accuracy and mean p_i charts drawn", 0.2)
        full = page.evaluate(PLOT_JS, "Accuracy")["range"]
        zoomed = zoom_x(page, "Accuracy", 0.4, 0.7)
        assert full[0] < zoomed[0] < zoomed[1] < full[1]
        page.evaluate(MARK_JS, "Accuracy")

        # New rows up to 350, no evaluation among them: the next tick redraws the curves
        # (their last point is 350) and sends the accuracy chart as it was.
        fabricate(store, run_id=run_id, start_at=301, upto=350, finish=False, **RUN)
        page.get_by_text("as of iteration 350,", exact=False).wait_for()
        wait_for(lambda: last_x(page, "Mean p_i of clean") == 350, 60,
                 "the tick's new rows drawn", 0.2)
        wait_ready(page)
        after = page.evaluate(PLOT_JS, "Accuracy")
        assert after["marked"], "the accuracy chart was mounted afresh by a tick that did not change it"
        assert not after["autorange"]
        assert after["range"] == pytest.approx(zoomed)
    finally:
        page.context.close()



# The states of a slot while a tick replaces its chart, set up on a drawn chart as Streamlit
# leaves it: the old element retained (hidden and faded by Streamlit's own style, here inline)
# and its successor mounted empty beside it; then the successor's plot drawn but still hidden
# (Streamlit shows it once it has measured its height); then shown.
REPLACE_JS = """(slot) => {
    const box = document.querySelector('.st-key-' + slot);
    const old = [...box.children].find(el => el.dataset.testid === 'stElementContainer'
                                            && el.querySelector('.main-svg'));
    if (!old) return null;
    old.dataset.retained = 'true';
    old.style.display = 'none';
    old.style.opacity = '0.33';
    const successor = document.createElement('div');
    successor.dataset.testid = 'stElementContainer';
    box.appendChild(successor);
    const shown = el => el.checkVisibility() && parseFloat(getComputedStyle(el).opacity) === 1;
    const whileEmpty = shown(old);
    const plot = document.createElement('div');
    plot.className = 'js-plotly-plot';
    plot.style.display = 'none';
    const drawing = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
    drawing.classList.add('main-svg');
    plot.appendChild(drawing);
    successor.appendChild(plot);
    const whileHidden = shown(old);
    plot.style.display = '';
    return {whileEmpty, whileHidden, onceShown: old.checkVisibility()};
}"""


def test_a_replaced_chart_stays_in_view_until_its_successor_is_drawn(browser, dm_up):
    store = Store(dm_up.db)
    run_id = fabricate(store, name="buffer", upto=400, **RUN)
    page = browser.new_context(viewport=VIEWPORT).new_page()
    page.set_default_timeout(60_000)
    try:
        page.goto(f"{dm_up.url}/monitor?run={run_id}")
        wait_ready(page, timeout=120_000)
        wait_for(lambda: last_x(page, "Mean p_i of clean") == 400, 60, "the charts drawn", 0.2)
        for slot in ("monitor-slot-acc", "monitor-slot-pmean", "monitor-slot-heatmap",
                     "monitor-slot-bars", "monitor-slot-training"):
            assert page.evaluate(REPLACE_JS, slot) == {
                "whileEmpty": True, "whileHidden": True, "onceShown": False}, slot
    finally:
        page.context.close()
