"""The dashboard's pages in one list, links between them that also work when a page runs
on its own (``AppTest.from_file("app/views/x.py")``, where no navigation exists), and the
group viewed last, which the sidebar keeps as a link back to its Compare view."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st
from streamlit.errors import StreamlitAPIException

from app.links import compare_params
from app.text import md

LAST_GROUP = "nav.last_group"


@dataclass(frozen=True)
class PageInfo:
    key: str
    path: str  # relative to app/streamlit_app.py
    title: str
    icon: str
    blurb: str


PAGES: tuple[PageInfo, ...] = (
    PageInfo("home", "views/home.py", "Home", ":material/home:", "What DM is, and the queue."),
    PageInfo("designer", "views/designer.py", "EDF designer", ":material/tune:",
             "Shape an emphasis density function and see its weight, density and loss."),
    PageInfo("launch", "views/launch.py", "Launch", ":material/rocket_launch:",
             "Queue one run, a λ/β grid or a method comparison."),
    PageInfo("runs", "views/runs.py", "Runs", ":material/list:",
             "Every run: progress, cancel, retry, delete, clone."),
    PageInfo("monitor", "views/monitor.py", "Monitor", ":material/monitoring:",
             "One run live: accuracy, mean p_i, p_i histograms."),
    PageInfo("compare", "views/compare.py", "Compare", ":material/compare_arrows:",
             "Several runs side by side, as the paper's tables."),
    PageInfo("examples", "views/examples.py", "Examples", ":material/scatter_plot:",
             "One run's training examples: what its scheme emphasises, and the likely mislabelled."),
)
BY_KEY = {p.key: p for p in PAGES}


def page_link(key: str, label: str | None = None, params: dict[str, str] | None = None) -> None:
    """A link to page ``key`` (with ``params`` in its URL, see ``app.links``); plain text
    when the page runs outside the navigation."""
    page = BY_KEY[key]
    try:
        st.page_link(page.path, label=label or page.title, icon=page.icon, query_params=params)
    except StreamlitAPIException:
        st.markdown(f"→ **{label or page.title}** (open it from the sidebar)")


def go_to(key: str, params: dict[str, str] | None = None) -> None:
    """Switch to page ``key`` (with ``params`` in its URL); when that is impossible (a page
    run on its own), say where to go."""
    page = BY_KEY[key]
    try:
        st.switch_page(page.path, query_params=params)
    except StreamlitAPIException:
        st.info(f"Open the **{page.title}** page to continue.")


def remember_group(group: str) -> None:
    """The group on screen, kept for the sidebar's link (``last_group_link``): a key of its
    own, since the session drops a widget's value once a page without it has run."""
    st.session_state[LAST_GROUP] = group


def last_group_link() -> None:
    """A link to the Compare view of the group viewed last in this session, if any."""
    group = st.session_state.get(LAST_GROUP)
    if group is not None:
        page_link("compare", f"Last group viewed: {md(group)}", compare_params(group=group))
