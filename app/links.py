"""Every Monitor and Compare view has a URL that reloads to it: ``monitor?run=N``,
``compare?runs=3,4,7`` or ``compare?group=NAME``.

Pages read their selection from ``st.query_params`` when they load (a shared or reloaded
link), and write it back whenever the user changes it, so the address bar always names the
view on screen. The Runs page builds the same links (a link column in its table, and
``st.switch_page(..., query_params=...)`` for its buttons).
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlencode

import streamlit as st

RUN = "run"
RUNS = "runs"
GROUP = "group"

__all__ = ["GROUP", "RUN", "RUNS", "compare_params", "monitor_params", "opened_by_link",
           "page_url", "read_group", "read_run", "read_runs", "show_params"]


def monitor_params(run_id: int) -> dict[str, str]:
    return {RUN: str(int(run_id))}


def compare_params(run_ids: Iterable[int] = (), group: str | None = None) -> dict[str, str]:
    """A group when one is given, else the runs (in id order)."""
    if group is not None:
        return {GROUP: group}
    return {RUNS: ",".join(str(i) for i in sorted({int(i) for i in run_ids}))}


def page_url(page: str, params: dict[str, str]) -> str:
    """A link relative to the dashboard's root, e.g. ``compare?group=sweep%20%231``.

    >>> page_url("compare", compare_params(group="λ grid #1"))
    'compare?group=%CE%BB+grid+%231'
    """
    return f"{page}?{urlencode(params)}"


def read_run() -> int | None:
    """``?run=N`` of this page's URL, or None (absent or not a number)."""
    value = st.query_params.get(RUN)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def read_runs() -> list[int] | None:
    """``?runs=1,2,3``, or None when absent; ids that are not numbers are dropped."""
    value = st.query_params.get(RUNS)
    if value is None:
        return None
    return [int(v) for v in value.split(",") if v.strip().isdigit()]


def read_group() -> str | None:
    return st.query_params.get(GROUP)


def opened_by_link(page: str) -> bool:
    """Whether this page's URL parameters were set from outside (a link opened, the page
    reloaded) rather than by the page itself on its previous run: only then do they
    override the selection kept in the session. Without this, the URL a page wrote for
    the old selection would undo every change the user makes."""
    return st.query_params.to_dict() != st.session_state.get(f"{page}.url")


def show_params(page: str, params: dict[str, str]) -> None:
    """Make the address bar name this view: exactly ``params`` in the URL (written only
    when it changed: each write is a message to the browser), remembered for
    ``opened_by_link``."""
    if st.query_params.to_dict() != params:
        st.query_params.from_dict(params)
    st.session_state[f"{page}.url"] = dict(params)
