"""User text (run and group names, errors, config strings) is shown as text on every page.

Runs named ``![](http://evil.example/…)`` and ``[Session expired: sign in again](http://…)``,
in a group whose name is a link, one of them failed with an error holding an image: no
element that renders Markdown may carry any of it as markup (an image the browser would
fetch, a link the dashboard would seem to offer), and no plotly text as HTML. The names
must still be readable (select options, tables and legends show them as typed). The
browser test (tests/ui/test_e2e.py) checks the same in Chromium: no request leaves for
the host and no link to it is drawn.
"""

from __future__ import annotations

import json
import re

import pytest
from markdown_it import MarkdownIt
from streamlit.testing.v1 import AppTest
from test_app_support import APP, TIMEOUT, app_db_fixture, fabricate  # noqa: F401

from dm_store import Store

HOST = "evil.example"
IMAGE = f"![](http://{HOST}/pixel.png)"
LINK = f"[Session expired: sign in again](http://{HOST}/login)"
GROUP = f"[group](http://{HOST}/g)"
ERROR = f"boom ![](http://{HOST}/error.png) <a href='http://{HOST}/x'>x</a>"
# The element types Streamlit renders as Markdown (their body, or their label).
MARKDOWN_BODIES = ("markdown", "caption", "title", "header", "subheader", "info", "warning",
                   "error", "success", "exception", "toast")


def _walk(node):
    children = getattr(node, "children", None)
    if isinstance(children, dict):
        for child in children.values():
            yield from _walk(child)
    yield node


def markdown_texts(at: AppTest) -> list[str]:
    """Every text of the page that Streamlit renders as Markdown."""
    out = []
    for node in _walk(at._tree):
        kind = getattr(node, "type", None)
        if kind in MARKDOWN_BODIES:
            out.append(str(getattr(node, "value", "") or getattr(node, "body", "")))
        label = getattr(node, "label", None)
        if isinstance(label, str):
            out.append(label)
    return out


# GitHub-flavoured Markdown (Streamlit's) links these wherever they appear in the text once
# it is parsed, escapes undone: ``http://…``, ``www.…`` and e-mail addresses.
AUTOLINK = re.compile(r"(?i)(https?://|mailto:|\bwww\.|[\w.+-]@[\w-]+\.\w)")


def markup_in(text: str) -> list[str]:
    """Links, images and HTML that ``text`` would render as (CommonMark), and any address
    that GitHub's autolinking would turn into a link in the text it renders."""
    found = []

    def visit(tokens):
        for t in tokens:
            if t.type in ("image", "link_open", "html_inline", "html_block"):
                found.append(f"{t.type}: {t.attrs or t.content}")
            if t.type == "text" and AUTOLINK.search(t.content):
                found.append(f"autolink in {t.content!r}")
            if t.children:
                visit(t.children)

    visit(MarkdownIt("commonmark").parse(text))
    return found


def plotly_markup(at: AppTest) -> list[str]:
    """Anchors or other tags in any plotly text (titles, legend names, axis titles)."""
    found = []
    for el in at.get("plotly_chart"):
        spec = el.proto.spec
        if HOST in spec and ("<a " in spec or "<img" in spec):
            found.append(spec[max(0, spec.index(HOST) - 80):spec.index(HOST) + 40])
    return found


def assert_shown_as_text(at: AppTest) -> None:
    assert not at.exception, at.exception
    problems = [p for text in markdown_texts(at) for p in markup_in(text)] + plotly_markup(at)
    assert not problems, problems


@pytest.fixture
def hostile(app_db):
    store = Store(app_db)
    ids = [fabricate(store, name=IMAGE, iterations=40, eval_every=20, group=GROUP),
           fabricate(store, name=LINK, loss={"name": "dm", "lam": 2.0, "beta": 4.0},
                     iterations=40, eval_every=20, group=GROUP, finish=False)]
    store.finish(ids[1], "test-worker", "failed", error=ERROR)
    return store, ids


def _page(name: str, **state) -> AppTest:
    at = AppTest.from_file(APP.format(name), default_timeout=TIMEOUT)
    for key, value in state.items():
        at.session_state[key] = value
    return at.run()


def test_runs_page(hostile):
    _, ids = hostile
    at = _page("runs")
    assert_shown_as_text(at)
    table = at.dataframe[0].value.set_index("id")
    assert table.loc[ids[0], "name"] == IMAGE and table.loc[ids[1], "error"].startswith("boom ![]")
    options = at.multiselect(key="runs.selected").options
    assert any(IMAGE in o for o in options) and any(LINK in o for o in options)
    # A refused action names the run only by its id.
    at.multiselect(key="runs.selected").set_value([ids[0]]).run()
    at.button(key="runs.retry").click().run()
    assert_shown_as_text(at)


@pytest.mark.parametrize("which", [0, 1])
def test_monitor_page(hostile, which):
    _, ids = hostile
    at = AppTest.from_file(APP.format("monitor"), default_timeout=TIMEOUT)
    at.query_params["run"] = str(ids[which])
    at.run()
    assert_shown_as_text(at)
    assert at.warning if which == 1 else True  # the failed run's error is shown (as text)


def test_compare_page_by_runs_and_by_group(hostile):
    _, ids = hostile
    at = _page("compare", **{"compare.run_ids": ids})
    assert_shown_as_text(at)
    at = AppTest.from_file(APP.format("compare"), default_timeout=TIMEOUT)
    at.query_params["group"] = GROUP
    at.run()
    assert_shown_as_text(at)
    assert sorted(at.dataframe[0].value["id"]) == sorted(ids)
    assert any(IMAGE == n for n in at.dataframe[0].value["name"])


def test_designer_page(hostile):
    _, ids = hostile
    at = _page("designer")
    at.selectbox(key="designer.run").set_value(ids[0]).run()
    assert_shown_as_text(at)


def test_launch_page_group_name(hostile):
    store, _ = hostile
    at = _page("launch")
    at.text_input(key="L.name").input(LINK).run()
    at.text_input(key="L.group").input(GROUP).run()
    at.button(key="L.queue").click().run()
    assert_shown_as_text(at)
    assert any(GROUP in r.group and r.name == LINK for r in store.list_runs())
    assert any("Queued 1 run" in s.value for s in at.success)


def test_plotly_text_is_escaped_not_rendered(hostile):
    """A config string that differs between runs reaches legends and titles: escaped."""
    import numpy as np

    from app.charts import histogram_overlay, overlay_figure

    label = f"<a href='http://{HOST}/x'>sign in</a>"
    fig = overlay_figure({label: (np.arange(3), np.arange(3.0))}, label)
    assert fig.data[0].name.startswith("&lt;a href=") and fig.layout.title.text.startswith("&lt;a")
    fig = histogram_overlay([(label, np.ones(4), np.ones(4))], "t")
    assert "<a" not in json.dumps(fig.to_plotly_json()["data"][0]["name"])
