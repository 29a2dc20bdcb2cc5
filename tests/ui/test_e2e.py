"""End to end in a real headless Chromium: ``dm up`` (dashboard + one real worker), then
the designer, a launch, the live monitor while the worker trains, and a comparison of two
finished runs. Screenshots of every page go to docs/screenshots/.

Waiting follows PITFALLS.md 13 (connected, script not running, no skeleton left); the
slider is moved by clicking its track (14); chart point counts are read from the page (15).
"""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import pytest

from dm_core.store import Store

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(400)]

SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
VIEWPORT = {"width": 1400, "height": 1800}
ITERATIONS = 1200


def wait_ready(page, timeout: float = 60_000) -> None:
    page.wait_for_selector("[data-testid=stApp][data-test-connection-state=CONNECTED]",
                           timeout=timeout)
    page.wait_for_selector("[data-testid=stApp][data-test-script-state=notRunning]",
                           timeout=timeout)
    page.wait_for_function("document.querySelectorAll('[data-testid=stSkeleton]').length === 0",
                           timeout=timeout)


def nav(page, title: str) -> None:
    """In-app navigation (keeps the session, unlike page.goto)."""
    page.locator("[data-testid=stSidebarNav] a", has_text=title).first.click()
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
        select.click()
        page.get_by_role("option", name=re.compile(f"^#{run.id} ")).first.click()
        page.keyboard.press("Escape")
        wait_ready(page)


def metric(page, label: str) -> str:
    m = page.locator("[data-testid=stMetric]").filter(
        has=page.locator("[data-testid=stMetricLabel]", has_text=label))
    return m.locator("[data-testid=stMetricValue]").inner_text().strip()


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


def point_counts(page, title_part: str) -> list[int]:
    """Points per trace of the plotly chart whose title (or a subplot title) contains
    ``title_part`` (PITFALLS.md 15)."""
    return page.evaluate(
        """(part) => {
            for (const el of document.querySelectorAll('.js-plotly-plot')) {
                const t = el.layout && el.layout.title;
                const texts = [typeof t === 'string' ? t : (t && t.text) || '',
                               ...((el.layout && el.layout.annotations) || []).map(a => a.text || '')];
                if (texts.some(x => x.includes(part)) && el._fullData)
                    return el._fullData.map(d => (d.x ? d.x.length : 0));
            }
            return null;
        }""", title_part) or []


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.wait_for_timeout(500)
    page.screenshot(path=str(SHOTS / f"{name}.png"))


def wait_for(predicate, timeout: float, what: str, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    pytest.fail(f"timed out after {timeout:g} s waiting for {what}")


def test_design_launch_monitor_compare(browser, dm_up):
    url, store = dm_up.url, Store(dm_up.db)
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(60_000)
    try:
        # -- home
        page.goto(url)
        wait_ready(page, timeout=120_000)
        assert page.get_by_text("Derivative manipulation (DM)", exact=False).count() >= 1
        shot(page, "home")

        # -- designer: click the λ track at 60% (λ ∈ [0, 5] → λ ≈ 3, ψ ≈ 0.75)
        nav(page, "EDF designer")
        before = metric(page, "mode ψ")
        assert before == "0.333"  # λ = 0.5 by default
        track = widget(page, "stSlider", "λ (lam)").locator("[data-orientation=horizontal]").first
        boxed = track.bounding_box()
        page.mouse.click(boxed["x"] + 0.6 * boxed["width"], boxed["y"] + boxed["height"] / 2)
        page.wait_for_function("(args) => {" + METRIC_JS + "return metric(args[0]) !== args[1]; }",
                               arg=["mode ψ", before])
        wait_ready(page)
        after = float(metric(page, "mode ψ"))
        lam = float(widget(page, "stNumberInput", "lam exact").locator("input").input_value())
        assert after != float(before) and after == pytest.approx(lam / (lam + 1), abs=1e-3)
        assert 2.5 <= lam <= 3.5
        shot(page, "designer")

        # -- launch a tiny digits run (symmetric noise 40%, MLP [32], evaluated every 50
        # iterations). 1,200 iterations rather than 300: on a CPU 300 take about a second, less
        # than the worker's flush interval, so there would be no "half-way" to watch.
        nav(page, "Launch")
        choose(page, "Label noise", "symmetric")
        fill(page, "stNumberInput", "noise rate r", 0.4)
        fill(page, "stTextInput", "hidden", "32")
        fill(page, "stNumberInput", "iterations", ITERATIONS)
        fill(page, "stNumberInput", "eval every", 50)
        fill(page, "stTextInput", "name", "e2e-dm")
        assert page.locator("[data-testid=stAlertContentError]").count() == 0
        shot(page, "launch")
        page.get_by_role("button", name=re.compile("Queue 1 run")).click()
        page.get_by_text("Queued 1 run(s)", exact=False).wait_for()
        [first] = store.list_runs()
        assert first.config["iterations"] == ITERATIONS and first.config["model"]["hidden"] == [32]

        # -- monitor: a real worker trains it; the curves grow while we watch. The worker is
        # paused half-way so that "half-way" is on screen however fast the machine is.
        page.get_by_text("Watch the first one on Monitor").click()
        wait_ready(page)
        page.get_by_text("waiting for a worker", exact=False).wait_for()
        worker = dm_up.start_worker()
        wait_for(lambda: store.get_run(first.id).iteration >= 60, 90, "the worker to train")
        worker.send_signal(signal.SIGSTOP)
        stored = store.get_run(first.id).iteration
        assert stored < ITERATIONS, "trained too fast to pause half-way"
        half = wait_for(lambda: (point_counts(page, "Mean p_i of clean") or [0])[0] == stored
                        and point_counts(page, "Accuracy"), 30, "the monitor to catch up")
        assert half and point_counts(page, "Mean p_i of clean")[0] == stored
        assert page.locator(".js-plotly-plot").count() >= 5  # acc, p mean, heatmaps, bars, ...
        assert point_counts(page, "clean examples: p_i over training")[0] > 0  # heatmap columns
        shot(page, "monitor")
        worker.send_signal(signal.SIGCONT)
        page.wait_for_function("(args) => {" + METRIC_JS + "return metric(args[0]) === args[1]; }",
                               arg=["status", "succeeded"], timeout=120_000)
        wait_ready(page)
        final = point_counts(page, "Mean p_i of clean")[0]
        assert final == ITERATIONS > stored  # the point count grew while the worker trained
        assert len(point_counts(page, "Accuracy")) >= 3  # test, train vs corrupted, vs intact

        # -- a second run: the same form (kept across pages), with CCE
        nav(page, "Launch")
        iterations = widget(page, "stNumberInput", "iterations").locator("input").input_value()
        assert iterations == str(ITERATIONS)  # the draft survived the visit to other pages
        choose(page, "Loss", "cce")
        fill(page, "stTextInput", "name", "e2e-cce")
        page.get_by_role("button", name=re.compile("Queue 1 run")).click()
        page.get_by_text("Queued 1 run(s)", exact=False).wait_for()

        # -- runs: wait for both to finish
        nav(page, "Runs")
        page.get_by_text("succeeded: 2", exact=False).wait_for(timeout=150_000)
        shot(page, "runs")
        runs = {r.name: r for r in store.list_runs()}
        assert {r.status for r in runs.values()} == {"succeeded"}

        # -- compare the two finished runs (selected on the runs page)
        pick_runs(page, "Select runs", runs.values())
        page.get_by_role("button", name=re.compile("Compare")).click()
        wait_ready(page)
        page.get_by_text("Best / final test accuracy", exact=False).wait_for()
        shown = point_counts(page, "test accuracy")
        assert sorted(shown) == sorted(len(store.evals(r.id)) for r in runs.values())
        shot(page, "compare")

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
            shot(dark_page, "home-dark")
            for title, name, ready in (("EDF designer", "designer-dark", "density h(p)"),
                                       ("Launch", "launch-dark", None),
                                       ("Runs", "runs-dark", None),
                                       ("Monitor", "monitor-dark", "Mean p_i of clean")):
                nav(dark_page, title)
                if ready:
                    assert point_counts(dark_page, ready), title
                assert dark_page.locator("[data-testid=stException]").count() == 0, title
                shot(dark_page, name)
            nav(dark_page, "Compare")
            pick_runs(dark_page, "Runs", runs.values())
            dark_page.get_by_text("Best / final test accuracy", exact=False).wait_for()
            assert dark_page.locator("[data-testid=stException]").count() == 0
            shot(dark_page, "compare-dark")
        finally:
            dark.close()
    finally:
        context.close()
