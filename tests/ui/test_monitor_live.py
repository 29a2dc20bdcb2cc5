"""The live Monitor and the views' URLs in a real headless Chromium, with a real worker.

- While a worker trains, the Monitor says which iteration it shows ("as of iteration X, N s
  ago"), its charts end at that iteration, and it follows the run to its end with every chart
  drawn; a direct load of the running run settles.
- A Monitor URL with its controls (smoothing, log y, the iteration shown) opens that view in
  a new session, and the address bar follows the controls.
- A Compare URL with the curves' controls and the histograms' mode and iteration opens that
  view; the sidebar keeps a link to the group viewed last, across pages and while a page
  runs, and a click on it opens that group's view.

Nothing waits for a duration: the worker holds the run at ``HELD_AT`` and again at
``HELD_AGAIN`` (``workers.hold``), each until a SIGCONT, so the page is checked in states the
test has waited for however fast the machine trains: a fast machine trains the rest of the
run between two of the page's ticks, and the second hold keeps it running until the page has
followed it there (docs/architecture.md, "Headless Chromium and Playwright"). How far behind
the page is while the run trains is measured by benchmarks/bench_monitor_live.py, not
asserted here.
"""

from __future__ import annotations

import re
import signal
from urllib.parse import parse_qs, urlencode, urlparse

import pytest
from test_app_support import fabricate
from test_e2e import FIND_PLOT_JS, last_x, slider_value, wait_for, wait_ready, widget

from dm_core.config import parse_config
from dm_store import RunStatus, Store

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(600)]

VIEWPORT = {"width": 1400, "height": 3000}  # every chart in view: plotly loads when seen
ITERATIONS = 1500
HELD_AT = 400
HELD_AGAIN = 800  # the page must follow the run there while it still runs
TITLES = ("Accuracy", "Mean p_i of clean", "clean examples: p_i over training", "p_i at iteration",
          "Emphasis variance", "Training loss")


def titles_drawn(page) -> list[str]:
    """Which of ``TITLES`` are drawn on the page now (their charts have data)."""
    return page.evaluate("(titles) => {" + FIND_PLOT_JS + """
        return titles.filter(t => { const el = findPlot(t); return el && el._fullData
                                    && el._fullData.length > 0; }); }""", list(TITLES))


def every_chart_ends_at(page, iteration: int) -> bool:
    """Every chart is drawn, the curves up to ``iteration``. A tick writes its text before its
    charts, and a finished run's charts are new elements drawn after the page's run: wait
    for this, do not assert it once."""
    return (last_x(page, "Mean p_i of clean") == iteration
            and set(titles_drawn(page)) == set(TITLES))


def shown_iteration(page) -> int | None:
    found = re.search(r"as of iteration (\d+), \d+ s ago", page.inner_text("body"))
    return int(found.group(1)) if found else None


def query(page) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlparse(page.url).query).items()}


# Counts the sidebar's changes after which it held no page link (the link to the group viewed
# last): a MutationObserver sees every change, however short-lived, on any machine.
WATCH_SIDEBAR_LINK_JS = """() => {
    window.sidebarLinkGone = 0;
    const sidebar = document.querySelector('[data-testid=stSidebar]');
    new MutationObserver(() => {
        if (!sidebar.querySelector('[data-testid=stPageLink-NavLink]')) window.sidebarLinkGone++;
    }).observe(sidebar, {childList: true, subtree: true});
}"""


def test_the_live_monitor_follows_a_training_run_and_its_url_reopens_the_view(browser, dm_up):
    store = Store(dm_up.db)
    [run_id] = store.submit([parse_config({
        "name": "live", "iterations": ITERATIONS, "eval_every": 100, "model": {"hidden": [32]},
        "dataset": {"name": "digits", "noise": {"kind": "symmetric", "rate": 0.4}}})]).run_ids
    worker = dm_up.start_worker(hold_at=(HELD_AT, HELD_AGAIN))
    wait_for(lambda: store.get_run(run_id).iteration == HELD_AT, 600,
             "the worker to hold the run at HELD_AT", 0.2)
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(60_000)
    try:
        # A direct load of the running run (held: nothing new arrives while it is checked).
        page.goto(f"{dm_up.url}/monitor?{urlencode({'run': run_id, 'smooth': '0.5', 'log': '1'})}")
        wait_ready(page, timeout=120_000)
        page.get_by_text(f"as of iteration {HELD_AT},", exact=False).wait_for()
        wait_for(lambda: every_chart_ends_at(page, HELD_AT), 60, "every chart drawn", 0.2)
        assert widget(page, "stCheckbox", "log y").locator("input").is_checked()
        assert query(page) == {"run": str(run_id), "smooth": "0.5", "log": "1"}
        assert page.evaluate("() => {" + FIND_PLOT_JS + """
            const el = findPlot('Mean p_i of clean');
            return [el._fullLayout.yaxis.type, el._fullData.length]; }""") == ["log", 4]

        # Released: the page follows the running run to its newest iteration, every chart
        # drawn, then to its end.
        worker.send_signal(signal.SIGCONT)
        wait_for(lambda: store.get_run(run_id).iteration == HELD_AGAIN, 600,
                 "the worker to hold the run at HELD_AGAIN", 0.2)
        wait_for(lambda: shown_iteration(page) == HELD_AGAIN, 120,
                 "the live page to show the run's newest iteration", 0.2)
        wait_for(lambda: every_chart_ends_at(page, HELD_AGAIN), 60, "every chart drawn there", 0.2)
        worker.send_signal(signal.SIGCONT)
        page.get_by_text("the run is succeeded", exact=False).wait_for(timeout=300_000)
        wait_ready(page)
        assert store.get_run(run_id).status == RunStatus.SUCCEEDED
        wait_for(lambda: every_chart_ends_at(page, ITERATIONS), 60, "every chart drawn to the end",
                 0.2)

        # Stop following: the URL names the iteration shown, and opens it in a new session.
        follow = widget(page, "stCheckbox", "Follow the latest iteration")

        def unfollowed() -> bool:
            # A click that lands while the page reruns (the run has just ended) can be lost:
            # click again while the toggle still says it follows.
            if "it" not in query(page) and follow.locator("input").is_checked():
                follow.locator("label").click()
            return "it" in query(page)

        wait_for(unfollowed, 60, "the URL to name the iteration shown", 1.0)
        wait_ready(page)
        link = page.url
        chosen = int(query(page)["it"])
        other = browser.new_context(viewport=VIEWPORT).new_page()
        other.goto(link)
        wait_ready(other, timeout=120_000)
        other.get_by_text(f"p_i at iteration {chosen}").wait_for()
        assert slider_value(other, "Iteration") == chosen
        assert not widget(other, "stCheckbox", "Follow the latest iteration").locator("input").is_checked()
        assert widget(other, "stCheckbox", "log y").locator("input").is_checked()
        assert query(other) == query(page)
        other.context.close()
    finally:
        context.close()


def test_a_compare_url_opens_its_view_and_the_sidebar_keeps_the_group(browser, dm_up):
    store = Store(dm_up.db)
    ids = [fabricate(store, name=f"g{k}", iterations=60, eval_every=20, seed=k, group="sweep",
                     worker="ui-fabricator") for k in range(2)]
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(60_000)
    try:
        runs = ",".join(map(str, ids))
        url = {"runs": runs, "metric": "p_clean_mean", "x": "fraction", "smooth": "0.5",
               "log": "1", "mode": "overlaid", "it": "30"}
        page.goto(f"{dm_up.url}/compare?{urlencode(url)}")
        wait_ready(page, timeout=120_000)
        page.get_by_text("p_i histograms at one point of training").scroll_into_view_if_needed()
        page.get_by_text("@ 30 · clean", exact=False).first.wait_for()  # overlaid, at 30
        assert slider_value(page, "Iteration") == 30
        # The curves: mean p_i of clean examples by fraction of training, smoothed (a smoothed
        # line over each run's raw one) on a log axis.
        curves = wait_for(lambda: page.evaluate("() => {" + FIND_PLOT_JS + """
            const el = findPlot('mean p_i of clean examples');
            return el && el._fullData && [el._fullLayout.yaxis.type, el._fullData.length,
                                          Math.max(...el._fullData[0].x)]; }"""), 60,
                          "the curves of the link's metric", 0.2)
        assert curves == ["log", 4, 1]  # 2 runs, raw and smoothed; x: the fraction, up to 1
        assert widget(page, "stCheckbox", "log y").locator("input").is_checked()
        assert query(page) == url
        # A link with a value the page cannot show is refused, with a warning naming it.
        page.goto(f"{dm_up.url}/compare?{urlencode({'runs': runs, 'mode': 'sideways'})}")
        wait_ready(page)
        page.get_by_text("The link's mode = 'sideways' is refused", exact=False).wait_for()
        # The group's view by its URL; the sidebar keeps it while other pages are visited.
        page.goto(f"{dm_up.url}/compare?{urlencode({'group': 'sweep'})}")
        wait_ready(page)
        sidebar = page.locator("[data-testid=stSidebar]")
        link = sidebar.locator("[data-testid=stPageLink-NavLink]", has_text="Last group viewed: sweep")
        link.wait_for()
        # It stays there while the next page runs: the sidebar's slots used to be emptied
        # for as long as the page ran, and a click on the link then landed on nothing.
        page.evaluate(WATCH_SIDEBAR_LINK_JS)
        sidebar.locator("[data-testid=stSidebarNav] a", has_text="Runs").first.click()
        page.wait_for_url(re.compile(r"/runs$"))
        page.locator("h1", has_text=re.compile("^Runs$")).wait_for()
        wait_ready(page)
        assert page.evaluate("() => window.sidebarLinkGone") == 0
        # On another page the sidebar still links the group's Compare view, and opens it.
        assert link.get_attribute("href") == "compare?group=sweep"
        link.click()
        # Waited for by Playwright: ``page.url`` is refreshed only while a Playwright call
        # runs, so polling it between sleeps kept reading the Runs page's URL.
        page.wait_for_url(re.compile(r"/compare\?group=sweep$"))
        wait_ready(page)
        page.get_by_text("2 runs in group sweep").wait_for()  # the group's own view
    finally:
        context.close()
