"""End to end in a real headless Chromium: ``dm up`` (dashboard) and a real worker, then every
page as a user walks it: the designer, a launch, the live monitor while the worker trains
(its URL, smoothing, a click on the heatmaps), the runs page while statuses change (its
counts and labels follow, its buttons open URLs), a comparison (curves, histograms overlaid)
and a λ × β landscape opened by its URL. Along the way: no chart draws an axis title or a
legend over something else, and a run named like a Markdown image, in a group named like a
link, never makes the browser fetch from, or link to, that address.

Screenshots of every page are written to ``$DM_SCREENSHOTS`` when it is set (``make
screenshots`` sets it to docs/screenshots); otherwise to the test's temporary folder, so
``make test`` changes no tracked file.

Waiting follows docs/architecture.md ("Headless Chromium and Playwright"): connected, script
not running, no skeleton left; the slider is moved by clicking its track; chart point counts
are read from the page. Nothing waits for a duration: the worker holds the run at the
iteration the test looks at (``hold_at``, workers.hold) until the test sends SIGCONT.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import time
from pathlib import Path
from urllib.parse import urlencode, urlparse

import pytest
from test_app_support import fabricate

from dm_store import RunStatus, Store

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(600)]

VIEWPORT = {"width": 1400, "height": 1800}
ITERATIONS = 3000  # the live series keeps every point up to 2 × 1,500 (app.views.monitor)
HELD_AT = 1200  # the worker holds the run there (its rows stored) while the monitor is checked
HOST = "evil.example"
HOSTILE_NAME = f"![](http://{HOST}/pixel.png)"
HOSTILE_GROUP = f"[Session expired: sign in again](http://{HOST}/login)"
GRID_GROUP = "λ×β grid"


@pytest.fixture
def shots(tmp_path) -> Path:
    """Where screenshots go: ``$DM_SCREENSHOTS`` (make screenshots), else a temporary folder."""
    folder = Path(os.environ.get("DM_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def wait_ready(page, timeout: float = 60_000) -> None:
    page.wait_for_selector("[data-testid=stApp][data-test-connection-state=CONNECTED]",
                           timeout=timeout)
    page.wait_for_selector("[data-testid=stApp][data-test-script-state=notRunning]",
                           timeout=timeout)
    page.wait_for_function("document.querySelectorAll('[data-testid=stSkeleton]').length === 0",
                           timeout=timeout)


def nav(page, title: str) -> None:
    """In-app navigation (keeps the session, unlike page.goto): waits for the address bar to
    name the page (Streamlit writes it once the page's run has begun), then for that run."""
    link = page.locator("[data-testid=stSidebarNav] a", has_text=title).first
    path = urlparse(link.get_attribute("href") or "").path
    link.click()
    page.wait_for_url(lambda address: urlparse(address).path == path)
    page.wait_for_timeout(300)
    wait_ready(page)


def widget(page, testid: str, label: str):
    return page.locator(f"[data-testid={testid}]").filter(
        has=page.locator("[data-testid=stWidgetLabel]", has_text=re.compile(f"^{re.escape(label)}$")))


def fill(page, testid: str, label: str, value) -> None:
    box = widget(page, testid, label).locator("input").first
    box.fill(str(value))
    box.press("Enter")
    page.wait_for_timeout(300)
    wait_ready(page)


def choose(page, label: str, option_prefix: str) -> None:
    widget(page, "stSelectbox", label).click()
    page.get_by_role("option", name=re.compile(f"^{re.escape(option_prefix)}")).first.click()
    page.wait_for_timeout(300)
    wait_ready(page)


def pick_runs(page, label: str, runs) -> None:
    """Select each of ``runs`` in the multiselect labelled ``label`` (options start "#id ")."""
    select = widget(page, "stMultiSelect", label)
    for run in runs:
        chosen = select.locator("[data-tag]").evaluate_all(
            "tags => tags.map(t => t.getAttribute('aria-label'))")
        if any(t.startswith(f"#{run.id} ") for t in chosen):
            continue  # already selected (the page keeps a selection across visits)
        select.click()
        page.get_by_role("option", name=re.compile(f"^#{run.id} ")).first.click()
        page.keyboard.press("Escape")
        wait_ready(page)


def options(page, label: str) -> list[str]:
    """The option texts of the multiselect labelled ``label`` (its dropdown opened and closed)."""
    widget(page, "stMultiSelect", label).click()
    texts = page.get_by_role("option").all_inner_texts()
    page.keyboard.press("Escape")
    return texts


def radio(page, label: str, option: str) -> None:
    widget(page, "stRadio", label).get_by_text(option, exact=True).click()
    page.wait_for_timeout(300)
    wait_ready(page)


# A JS helper: the shown value of the metric whose label is exactly ``label``.
METRIC_JS = """
const metric = (label) => {
    for (const m of document.querySelectorAll('[data-testid=stMetric]')) {
        const l = m.querySelector('[data-testid=stMetricLabel]');
        const v = m.querySelector('[data-testid=stMetricValue]');
        if (l && v && l.innerText.trim() === label) return v.innerText.trim();
    }
    return null;
};
"""

# The plotly element whose title (or a subplot title) is ``part``, else the first whose title
# contains it.
FIND_PLOT_JS = """
const findPlot = (part) => {
    const titled = [...document.querySelectorAll('.js-plotly-plot')].map(el => {
        const t = el.layout && el.layout.title;
        // Streamlit's theme wraps titles in <b>: compare the text only.
        return [el, [typeof t === 'string' ? t : (t && t.text) || '',
                     ...((el.layout && el.layout.annotations) || []).map(a => a.text || '')]
                    .map(x => x.replace(/<[^>]*>/g, ''))];
    });
    const exact = titled.find(([, texts]) => texts.includes(part));
    const loose = titled.find(([, texts]) => texts.some(x => x.includes(part)));
    return (exact || loose || [null])[0];
};
"""

# For every chart on the page, what is drawn over something else: an axis title over a plot
# area or over another axis title, a legend over an axis title or a plot area, or a legend
# (partly) outside the figure (an exported PNG would cut it off).
OVERLAPS_JS = """
() => {
  const out = [];
  const inter = (a, b) => a.left < b.right - 1 && b.left < a.right - 1 && a.top < b.bottom - 1
                          && b.top < a.bottom - 1;
  for (const gd of document.querySelectorAll('.js-plotly-plot')) {
    const svg = gd.querySelector('.main-svg').getBoundingClientRect();
    const areas = [...gd.querySelectorAll('.nsewdrag')].map(e => e.getBoundingClientRect());
    const titles = [...gd.querySelectorAll('g[class*="title"] text')]
      .filter(t => /^g-[xy]\\d*title$/.test(t.parentNode.getAttribute('class') || '') && t.textContent)
      .map(t => [t.textContent, t.getBoundingClientRect()]);
    const legend = gd.querySelector('g.legend');
    for (const [text, r] of titles)
      for (const a of areas) if (inter(r, a)) out.push(`axis title "${text}" over a plot area`);
    titles.forEach(([t1, r1], i) => titles.slice(i + 1).forEach(([t2, r2]) => {
      if (inter(r1, r2)) out.push(`axis titles "${t1}" and "${t2}" overlap`); }));
    if (legend) {
      const l = legend.getBoundingClientRect();
      for (const [text, r] of titles) if (inter(l, r)) out.push(`legend over axis title "${text}"`);
      for (const a of areas) if (inter(l, a)) out.push('legend over a plot area');
      if (l.left < svg.left - 1 || l.right > svg.right + 1 || l.top < svg.top - 1
          || l.bottom > svg.bottom + 1) out.push('legend outside the figure');
    }
  }
  return out;
}
"""


def charts_laid_out(page) -> None:
    """Wait until every chart is drawn at its container's width (plotly redraws after its
    container is resized, legends included)."""
    page.wait_for_function("""() => [...document.querySelectorAll('.js-plotly-plot')].every(el =>
        el._fullLayout && el.querySelector('.main-svg')
        && Math.abs(el._fullLayout.width - el.getBoundingClientRect().width) < 2)""")


def overlaps(page) -> list[str]:
    charts_laid_out(page)
    return page.evaluate(OVERLAPS_JS)


def assert_nothing_overlaps(page) -> None:
    """No chart on the page draws one part over another, on a wide and on a narrow screen
    (charts reflow to the window; the overlaps this catches showed on narrower ones)."""
    for width in (VIEWPORT["width"], 900):
        page.set_viewport_size({**VIEWPORT, "width": width})
        assert overlaps(page) == [], width
    page.set_viewport_size(VIEWPORT)


def point_counts(page, title_part: str) -> list[int]:
    """Points per trace of the plotly chart whose title (or a subplot title) contains
    ``title_part`` (read from the page)."""
    return page.evaluate(
        "(part) => {" + FIND_PLOT_JS + """
            const el = findPlot(part);
            return el && el._fullData ? el._fullData.map(d => (d.x ? d.x.length : 0)) : null;
        }""", title_part) or []


def last_x(page, title_part: str) -> float | None:
    """The last x of the first trace of the plotly chart whose title contains ``title_part``."""
    return page.evaluate(
        "(part) => {" + FIND_PLOT_JS + """
            const el = findPlot(part);
            const x = el && el._fullData && el._fullData[0] && el._fullData[0].x;
            return x && x.length ? Number(x[x.length - 1]) : null;
        }""", title_part)


def hostile_links(page) -> list[str]:
    """Links and images on the page that point at the hostile host. A link of the dashboard's
    own that carries the hostile name in its query (the sidebar's link to the group viewed
    last, ``compare?group=...``) points at the dashboard, not at that host."""
    return page.evaluate(f"""() => [...document.querySelectorAll('a[href], img[src]')]
        .filter(e => {{ try {{ return new URL(e.getAttribute('href') || e.getAttribute('src'),
                                           location.href).hostname === '{HOST}'; }}
                        catch (err) {{ return false; }} }})
        .map(e => e.outerHTML)""")


def shot(page, folder: Path, name: str) -> None:
    page.wait_for_timeout(500)
    page.screenshot(path=str(folder / f"{name}.png"))


def wait_for(predicate, timeout: float, what: str, every: float = 0.05):
    """Poll ``predicate`` until it returns something true. It must call into Playwright (a
    locator, ``page.evaluate``): Playwright's sync API takes in the browser's events, a
    navigation included, only during such a call, so ``page.url`` alone never changes here
    (use ``page.wait_for_url``)."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    pytest.fail(f"timed out after {timeout:g} s waiting for {what} (last: {value!r})")


def slider_value(page, label: str) -> int:
    return int(widget(page, "stSlider", label).locator("input[type=range]").first.input_value())


def fabricate_grid(store: Store) -> dict[tuple[float, float], list[int]]:
    """A λ × β grid of 2 seeds (as a worker would have written it); one run diverged."""
    cells: dict[tuple[float, float], list[int]] = {}
    for lam in (0.5, 1.0):
        for beta in (4.0, 8.0, 12.0):
            for seed in (0, 1):
                cells.setdefault((lam, beta), []).append(fabricate(
                    store, name="grid", loss={"name": "dm", "lam": lam, "beta": beta},
                    iterations=60, eval_every=20, seed=seed, group=GRID_GROUP,
                    acc_shift=0.02 * lam - 0.004 * beta + 0.002 * seed,
                    diverge=(lam, beta, seed) == (0.5, 12.0, 1), worker="e2e-fabricator"))
    return cells


def test_design_launch_monitor_compare(browser, dm_up, shots):
    url, store = dm_up.url, Store(dm_up.db)
    context = browser.new_context(viewport=VIEWPORT)
    hostile_requests: list[str] = []
    context.on("request", lambda r: hostile_requests.append(r.url)
               if urlparse(r.url).hostname == HOST else None)
    page = context.new_page()
    page.set_default_timeout(60_000)
    try:
        # -- home
        page.goto(url)
        wait_ready(page, timeout=120_000)
        assert page.get_by_text("Derivative manipulation (DM)", exact=False).count() >= 1
        shot(page, shots, "home")

        # -- designer: click the λ track at 60% (λ ∈ [0, 5] → λ ≈ 3, ψ ≈ 0.75)
        nav(page, "EDF designer")
        before = page.evaluate("() => {" + METRIC_JS + "return metric('mode ψ'); }")
        assert before == "0.333"  # λ = 0.5 by default
        track = widget(page, "stSlider", "λ (lam)").locator("[data-orientation=horizontal]").first
        boxed = track.bounding_box()
        page.mouse.click(boxed["x"] + 0.6 * boxed["width"], boxed["y"] + boxed["height"] / 2)
        page.wait_for_function("(args) => {" + METRIC_JS + "return metric(args[0]) !== args[1]; }",
                               arg=["mode ψ", before])
        wait_ready(page)
        after = float(page.evaluate("() => {" + METRIC_JS + "return metric('mode ψ'); }"))
        lam = float(widget(page, "stNumberInput", "lam exact").locator("input").input_value())
        assert after != float(before) and after == pytest.approx(lam / (lam + 1), abs=1e-3)
        assert 2.5 <= lam <= 3.5
        assert overlaps(page) == []
        shot(page, shots, "designer")

        # -- launch a digits run. Choosing symmetric noise proposes a rate (0 would corrupt
        # nothing); the worker holds the run at HELD_AT while the monitor is looked at.
        nav(page, "Launch")
        choose(page, "Label noise", "symmetric")
        rate = widget(page, "stNumberInput", "noise rate r").locator("input").input_value()
        assert float(rate) == 0.4
        fill(page, "stTextInput", "hidden", "32")
        fill(page, "stNumberInput", "iterations", ITERATIONS)
        fill(page, "stNumberInput", "eval every", 100)
        fill(page, "stTextInput", "name", "e2e-dm")
        assert page.locator("[data-testid=stAlertContentError]").count() == 0
        shot(page, shots, "launch")
        page.get_by_role("button", name=re.compile("Queue 1 run")).click()
        page.get_by_text("Queued 1 run(s)", exact=False).wait_for()
        [first] = store.list_runs()
        assert first.config["iterations"] == ITERATIONS and first.config["model"]["hidden"] == [32]
        assert first.config["dataset"]["noise"] == {**first.config["dataset"]["noise"],
                                                    "kind": "symmetric", "rate": 0.4}

        # -- monitor, opened by the link under the success message: its URL names the run
        page.get_by_text("Watch the first one on Monitor").click()
        wait_ready(page)
        page.get_by_text("waiting for a worker", exact=False).wait_for()
        assert page.url.endswith(f"/monitor?run={first.id}")
        worker = dm_up.start_worker(hold_at=HELD_AT)
        # Held: every row up to HELD_AT stored, none after, until SIGCONT (workers.hold).
        stored = wait_for(lambda: store.get_run(first.id).iteration == HELD_AT and HELD_AT, 600,
                          "the worker to hold the run at iteration HELD_AT", 0.2)
        # Caught up: the page says it shows the held iteration, and its curves end there
        # (drawn thinned while the run trains: app.views.monitor, LIVE_POINTS).
        page.get_by_text(f"as of iteration {stored},", exact=False).wait_for()
        half = wait_for(lambda: last_x(page, "Mean p_i of clean") == stored
                        and point_counts(page, "Accuracy"), 30, "the monitor to catch up", 0.2)
        assert half and 0 < point_counts(page, "Mean p_i of clean")[0] <= stored
        # The live fragment redraws while we scroll: an element may be replaced under us.
        wait_for(lambda: scrolled_into_view(page.locator("[data-testid=stPlotlyChart]").last), 60,
                 "the last chart to scroll into view", 0.2)
        wait_for(lambda: page.locator(".js-plotly-plot").count() >= 5, 30,  # charts load when seen
                 "acc, p mean, heatmaps, bars, ... to be drawn", 0.2)
        assert point_counts(page, "clean examples: p_i over training")[0] > 0  # heatmap columns
        shot(page, shots, "monitor")
        assert store.get_run(first.id).iteration == stored  # still held
        worker.send_signal(signal.SIGCONT)  # releases the hold
        page.wait_for_function("(args) => {" + METRIC_JS + "return metric(args[0]) === args[1]; }",
                               arg=["status", "succeeded"], timeout=180_000)
        wait_ready(page)
        # A warm stop (SIGTERM): the next run stays queued until the runs page is open.
        worker.terminate()
        worker.wait(timeout=60)
        # The finished run's charts are new elements, drawn after the page's run: wait for them.
        final = wait_for(lambda: (point_counts(page, "Mean p_i of clean") or [0])[0] == ITERATIONS
                         and ITERATIONS, 60, "the finished run's curves", 0.2)
        assert final == ITERATIONS > stored  # the point count grew while the worker trained
        assert len(point_counts(page, "Accuracy")) >= 3  # test, train vs corrupted, vs intact
        assert overlaps(page) == []

        # Smoothing: a smoothed line over each raw one.
        # A click that lands while the page reruns (the run has just finished) can be lost, and
        # a mouse click at coordinates outside the viewport goes nowhere (the slider sits at
        # the top of the page, the test last scrolled to the charts): scroll the slider into
        # view, click, and click again until the smoothed lines are there, each time at another
        # spot, so that every click changes the value and makes the page rerun.
        spots = itertools.cycle((0.9, 0.8))

        def smoothed() -> bool:
            track = widget(page, "stSlider", "Smoothing").locator("[data-orientation=horizontal]").first
            if not scrolled_into_view(track) or (boxed := track.bounding_box()) is None:
                return False
            page.mouse.click(boxed["x"] + next(spots) * boxed["width"], boxed["y"] + boxed["height"] / 2)
            try:
                page.wait_for_function("() => {" + FIND_PLOT_JS + """
                    const el = findPlot('Mean p_i of clean');
                    return el && el._fullData && el._fullData.length === 4; }""", timeout=10_000)
            except Exception:  # playwright's TimeoutError: not yet, click again
                return False
            return True

        wait_for(smoothed, 120, "the smoothed lines over the raw ones", 0.5)
        wait_ready(page)

        # A click on the heatmaps shows that iteration (no longer the latest); the heatmaps
        # mark it, and the iteration slider appears at it.
        marks_js = "() => {" + FIND_PLOT_JS + """
            return findPlot('clean examples: p_i over training').layout.shapes.map(s => s.x0); }"""
        page.get_by_text(f"p_i at iteration {ITERATIONS}").wait_for()  # following the latest
        assert set(page.evaluate(marks_js)) == {ITERATIONS}
        heat = page.evaluate_handle("() => {" + FIND_PLOT_JS +
                                    "return findPlot('clean examples: p_i over training'); }")
        drag = heat.as_element().query_selector(".nsewdrag")
        drag.scroll_into_view_if_needed()  # a mouse click outside the viewport goes nowhere
        area = drag.bounding_box()
        x, y = area["x"] + 0.25 * area["width"], area["y"] + 0.5 * area["height"]
        page.mouse.move(x, y)
        page.mouse.click(x, y)
        wait_for(lambda: widget(page, "stSlider", "Iteration").count(), 30,
                 "the iteration slider to appear at the clicked iteration", 0.2)
        wait_ready(page)
        picked = slider_value(page, "Iteration")
        assert abs(picked - 0.25 * ITERATIONS) < 0.05 * ITERATIONS, picked
        page.get_by_text(f"p_i at iteration {picked}").wait_for()
        assert set(page.evaluate(marks_js)) == {picked}

        # -- a second run, named like a Markdown image, in a group named like a link; no
        # worker runs, so it stays queued until the runs page is open.
        nav(page, "Launch")
        iterations = widget(page, "stNumberInput", "iterations").locator("input").input_value()
        assert iterations == str(ITERATIONS)  # the draft survived the visit to other pages
        choose(page, "Loss", "cce")
        fill(page, "stTextInput", "name", HOSTILE_NAME)
        fill(page, "stTextInput", "Group name (optional)", HOSTILE_GROUP)
        page.get_by_role("button", name=re.compile("Queue 1 run")).click()
        page.get_by_text("Queued 1 run(s)", exact=False).wait_for()
        second = next(r for r in store.list_runs() if r.id != first.id)
        assert second.name == HOSTILE_NAME and second.status == RunStatus.QUEUED
        assert hostile_links(page) == []

        # -- runs: when the table sees the second run start, the picker's labels and the
        # sidebar's counts follow (they used to keep saying "queued").
        nav(page, "Runs")
        page.get_by_text("queued: 1", exact=False).wait_for()
        assert "queued 1" in page.locator("[data-testid=stSidebar]").inner_text()
        worker = dm_up.start_worker(hold_at=1)  # held running while the page is looked at
        wait_for(lambda: (r := store.get_run(second.id)).status == RunStatus.RUNNING
                 and r.iteration == 1, 120, "the second run to be held at iteration 1")
        page.get_by_text("running: 1", exact=False).wait_for()  # the table's own caption
        page.wait_for_function("() => document.querySelector('[data-testid=stSidebar]')"
                               ".innerText.includes('running 1')", timeout=20_000)
        wait_ready(page)  # the rerun that redrew the sidebar redraws the picker too
        labels = options(page, "Select runs")
        assert any(label.startswith(f"#{second.id} ") and label.endswith("(running)")
                   for label in labels), labels
        assert any(HOSTILE_NAME in label for label in labels)  # shown as typed, as text
        assert hostile_links(page) == []
        shot(page, shots, "runs")
        worker.send_signal(signal.SIGCONT)  # releases the hold
        wait_for(lambda: store.get_run(second.id).status == RunStatus.SUCCEEDED, 180,
                 "the second run to finish")
        worker.terminate()  # nothing else to train; the grid below is written by the test
        worker.wait(timeout=60)
        second = store.get_run(second.id)

        # -- compare the two runs: the Runs page's button opens the comparison's URL
        nav(page, "Runs")
        pick_runs(page, "Select runs", [first, second])
        page.get_by_role("button", name=re.compile("Compare")).click()
        page.wait_for_url(re.compile(rf"/compare\?runs={first.id}(%2C|,){second.id}$"))
        wait_ready(page)
        page.get_by_text("Curves", exact=True).scroll_into_view_if_needed()  # charts load when seen
        expected = sorted(len(store.evals(r.id)) for r in (first, second) if len(store.evals(r.id)))
        wait_for(lambda: sorted(point_counts(page, "test accuracy")) == expected, 30,
                 f"the curves ({expected} points per run)", 0.2)
        shot(page, shots, "compare")
        page.get_by_text("p_i histograms at one point of training").scroll_into_view_if_needed()
        assert_nothing_overlaps(page)  # side by side
        radio(page, "Show", "overlaid")
        page.get_by_text("p_i histograms at one point of training").scroll_into_view_if_needed()
        overlay = "p_i of clean (solid) and corrupted (dashed) examples"
        wait_for(lambda: point_counts(page, overlay), 30, "the overlaid histograms", 0.2)
        logged = [r for r in map(store.get_run, (first.id, second.id)) if r.iteration > 0]
        assert len(point_counts(page, overlay)) == 2 * len(logged)
        assert_nothing_overlaps(page)
        assert hostile_links(page) == []
        page.get_by_text("p_i histograms at one point of training").scroll_into_view_if_needed()
        shot(page, shots, "compare-overlay")

        # -- the designer overlays a run's p_i histogram without drawing over the loss panel
        nav(page, "EDF designer")
        choose(page, "Overlay the p_i histogram of a run", f"#{first.id} ")
        wait_for(lambda: point_counts(page, "density h(p)"), 60, "the overlaid density", 0.2)
        assert_nothing_overlaps(page)

        # -- a λ × β grid of 2 seeds opens in the landscape view by its URL
        cells = fabricate_grid(store)
        page.goto(f"{url}/compare?{urlencode({'group': GRID_GROUP})}")
        wait_ready(page)
        page.get_by_text("Landscape", exact=True).wait_for()
        heat = page.evaluate("() => {" + FIND_PLOT_JS + """
            const el = findPlot('final test accuracy');
            return el && {x: el.data[0].x, y: el.data[0].y, text: el.data[0].text,
                          marks: el.data.slice(1).map(d => [d.x, d.y])}; }""")
        assert heat["x"] == ["4", "8", "12"] and heat["y"] == ["0.5", "1"]  # numeric order
        assert heat["marks"] == [[["12"], ["0.5"]]]  # the diverged cell
        assert "± " in heat["text"][1][0] and "(n=2)" in heat["text"][1][0]
        assert "✕ 1/2 diverged" in heat["text"][0][2]
        assert len(cells) == 6 and overlaps(page) == []
        page.get_by_text("Landscape", exact=True).scroll_into_view_if_needed()
        shot(page, shots, "landscape")

        # -- the group named like a link: its Compare view, by its URL
        page.goto(f"{url}/compare?{urlencode({'group': HOSTILE_GROUP})}")
        wait_ready(page)
        page.get_by_text("Results", exact=True).wait_for()
        assert hostile_links(page) == []
        # A Monitor URL opens its run in a new session (a reload, a shared link).
        page.goto(f"{url}/monitor?run={first.id}")
        wait_ready(page)
        page.locator("[data-testid=stMarkdownContainer] strong", has_text="e2e-dm").first.wait_for()
        assert page.evaluate("() => {" + METRIC_JS + "return metric('iteration'); }") == \
            f"{ITERATIONS}/{ITERATIONS}"
        page.goto(f"{url}/monitor?run={second.id}")
        wait_ready(page)
        assert hostile_links(page) == []
        assert hostile_requests == [], hostile_requests

        # -- the dark theme (followed from the viewer's colour-scheme preference), every page
        dark = browser.new_context(viewport=VIEWPORT, color_scheme="dark")
        try:
            dark_page = dark.new_page()
            dark_page.set_default_timeout(60_000)
            dark_page.goto(url)
            wait_ready(dark_page, timeout=60_000)
            background = dark_page.evaluate(
                "getComputedStyle(document.querySelector('[data-testid=stApp]')).backgroundColor")
            rgb = [int(v) for v in re.findall(r"\d+", background)[:3]]
            assert sum(rgb) < 3 * 80, f"the dark theme was not applied: {background}"
            shot(dark_page, shots, "home-dark")
            for title, name, ready in (("EDF designer", "designer-dark", "density h(p)"),
                                       ("Launch", "launch-dark", None),
                                       ("Runs", "runs-dark", None),
                                       ("Monitor", "monitor-dark", "Mean p_i of clean")):
                nav(dark_page, title)
                if ready:
                    wait_for(lambda r=ready: point_counts(dark_page, r), 60, f"{title}'s chart", 0.2)
                assert dark_page.locator("[data-testid=stException]").count() == 0, title
                shot(dark_page, shots, name)
            dark_page.goto(f"{url}/compare?runs={first.id},{second.id}")
            wait_ready(dark_page)
            dark_page.get_by_text("Curves", exact=True).wait_for()
            assert dark_page.locator("[data-testid=stException]").count() == 0
            shot(dark_page, shots, "compare-dark")
        finally:
            dark.close()
    finally:
        context.close()


def scrolled_into_view(locator) -> bool:
    """Scroll ``locator`` into view; False when a rerun replaced the element meanwhile."""
    from playwright.sync_api import Error as PlaywrightError  # imported only where installed

    try:
        locator.scroll_into_view_if_needed(timeout=5000)
    except PlaywrightError:
        return False
    return True
