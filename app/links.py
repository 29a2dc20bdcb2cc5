"""Every Monitor and Compare view has a URL that reloads to it: ``monitor?run=N``,
``compare?runs=3,4,7`` or ``compare?group=NAME``, and the controls that shape the view:

- Monitor: ``smooth=0.6`` (the curves' smoothing), ``log=1`` (a log y axis), ``it=400`` (the
  histograms of iteration 400, no longer following the latest; without ``it`` the page
  follows the latest iteration);
- Compare: ``mode=overlaid`` (the histograms overlaid rather than side by side),
  ``align=fraction`` (runs at one fraction of their training rather than one iteration) and
  ``it=400`` (that iteration) or ``pct=40`` (that percentage of training).

A control at its default is left out, so a plain link stays short. Pages read their view
from ``st.query_params`` when they load (a shared or reloaded link), and write it back
whenever the user changes it, so the address bar always names the view on screen; a page
opened from the sidebar, with no parameters, shows the view it last showed in this session.
A link may be typed or edited by hand: a value that is not valid, and a parameter the page
does not know, are each refused with a warning naming them (``read_monitor_view``,
``read_compare_view``), and the page shows its default for those. The Runs page builds the
same links (a link column in its table, and ``st.switch_page(..., query_params=...)`` for
its buttons).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

import streamlit as st

RUN = "run"
RUNS = "runs"
GROUP = "group"
SMOOTH = "smooth"
LOG = "log"
ITERATION = "it"
MODE = "mode"
ALIGN = "align"
PERCENT = "pct"
OVERLAID = "overlaid"
FRACTION = "fraction"
MAX_SMOOTHING = 0.99  # the smoothing slider's range is [0, 0.99]

__all__ = ["GROUP", "RUN", "RUNS", "CompareView", "MonitorView", "compare_params",
           "monitor_params", "opened_by_link", "page_url", "read_compare_view", "read_group",
           "linked_view", "read_monitor_view", "read_run", "read_runs", "show_params"]


@dataclass(frozen=True)
class MonitorView:
    """What a Monitor link asks for (None: the link leaves it to the page), and a warning
    for each part of it that was refused."""

    run: int | None = None
    smoothing: float = 0.0
    log_y: bool = False
    iteration: int | None = None  # None: follow the latest iteration
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class CompareView:
    """What a Compare link asks for besides its runs or group, and the warnings."""

    overlaid: bool = False
    fraction: bool = False
    iteration: int | None = None
    percent: int | None = None
    warnings: tuple[str, ...] = ()


def monitor_params(run_id: int, smoothing: float = 0.0, log_y: bool = False,
                   iteration: int | None = None) -> dict[str, str]:
    """The Monitor's URL parameters; controls at their defaults are left out.

    >>> monitor_params(3), monitor_params(3, 0.6, True, 400)
    ({'run': '3'}, {'run': '3', 'smooth': '0.6', 'log': '1', 'it': '400'})
    """
    out = {RUN: str(int(run_id))}
    if smoothing:
        out[SMOOTH] = f"{float(smoothing):.2f}".rstrip("0").rstrip(".")
    if log_y:
        out[LOG] = "1"
    if iteration is not None:
        out[ITERATION] = str(int(iteration))
    return out


def compare_params(run_ids: Iterable[int] = (), group: str | None = None, *,
                   overlaid: bool = False, fraction: bool = False, iteration: int | None = None,
                   percent: int | None = None) -> dict[str, str]:
    """A group when one is given, else the runs (in id order); then the histograms' view,
    controls at their defaults left out.

    >>> compare_params([4, 3], overlaid=True, iteration=200)
    {'runs': '3,4', 'mode': 'overlaid', 'it': '200'}
    >>> compare_params(group="g", fraction=True, percent=40)
    {'group': 'g', 'align': 'fraction', 'pct': '40'}
    """
    out = ({GROUP: group} if group is not None else
           {RUNS: ",".join(str(i) for i in sorted({int(i) for i in run_ids}))})
    if overlaid:
        out[MODE] = OVERLAID
    if fraction:
        out[ALIGN] = FRACTION
    if fraction and percent is not None:
        out[PERCENT] = str(int(percent))
    elif not fraction and iteration is not None:
        out[ITERATION] = str(int(iteration))
    return out


def _count(query: Mapping[str, str], key: str, what: str, warnings: list[str],
           high: int | None = None) -> int | None:
    """A whole number >= 1 (and <= ``high``) from the link, or None with a warning."""
    if key not in query:
        return None
    text = query[key]
    if text.strip().isdigit() and 1 <= int(text) <= (high or math.inf):
        return int(text)
    limit = f"from 1 to {high}" if high else "of at least 1"
    warnings.append(f"The link's {key} = {text!r} is refused (it must be a whole number "
                    f"{limit}, {what}): ignored.")
    return None


def _switch(query: Mapping[str, str], key: str, on: str, off: str, warnings: list[str]) -> bool:
    """Whether the link's ``key`` is ``on`` (``off`` and absent: False; anything else is
    refused with a warning)."""
    text = query.get(key, off)
    if text not in (on, off):
        warnings.append(f"The link's {key} = {text!r} is refused (it must be {on!r} or "
                        f"{off!r}): ignored.")
    return text == on


def _unknown(query: Mapping[str, str], known: set[str], page: str, warnings: list[str]) -> None:
    for key in query:
        if key not in known:
            warnings.append(f"The link's {key!r} is not a parameter of the {page} page: ignored.")


def read_monitor_view(query: Mapping[str, str]) -> MonitorView:
    """The Monitor view a link's parameters ask for.

    >>> read_monitor_view({"run": "3", "smooth": "0.6", "log": "1", "it": "400"})
    MonitorView(run=3, smoothing=0.6, log_y=True, iteration=400, warnings=())
    >>> read_monitor_view({"run": "3", "smooth": "2", "it": "-4", "zoom": "1"}).warnings
    ("The link's smooth = '2' is refused (it must be a number from 0 to 0.99): showing no smoothing instead.", "The link's it = '-4' is refused (it must be a whole number of at least 1, an iteration): ignored.", "The link's 'zoom' is not a parameter of the Monitor page: ignored.")
    """
    warnings: list[str] = []
    run = _count(query, RUN, "a run's id", warnings)
    smoothing = 0.0
    if SMOOTH in query:
        try:
            smoothing = float(query[SMOOTH])
        except ValueError:
            smoothing = math.nan
        if not 0.0 <= smoothing <= MAX_SMOOTHING:  # NaN fails too
            warnings.append(f"The link's {SMOOTH} = {query[SMOOTH]!r} is refused (it must be a "
                            f"number from 0 to {MAX_SMOOTHING:g}): showing no smoothing instead.")
            smoothing = 0.0
    log_y = _switch(query, LOG, "1", "0", warnings)
    iteration = _count(query, ITERATION, "an iteration", warnings)
    _unknown(query, {RUN, SMOOTH, LOG, ITERATION}, "Monitor", warnings)
    return MonitorView(run, round(smoothing, 2), log_y, iteration, tuple(warnings))


def read_compare_view(query: Mapping[str, str]) -> CompareView:
    """The histograms' view a Compare link asks for (its runs or group: ``read_runs``,
    ``read_group``).

    >>> read_compare_view({"group": "g", "mode": "overlaid", "it": "200"})
    CompareView(overlaid=True, fraction=False, iteration=200, percent=None, warnings=())
    >>> read_compare_view({"runs": "1,2", "mode": "stacked", "pct": "140"}).warnings
    ("The link's mode = 'stacked' is refused (it must be 'overlaid' or 'side'): ignored.", "The link's pct = '140' is refused (it must be a whole number from 1 to 100, a percentage of training): ignored.")
    """
    warnings: list[str] = []
    overlaid = _switch(query, MODE, OVERLAID, "side", warnings)
    fraction = _switch(query, ALIGN, FRACTION, "iteration", warnings)
    iteration = _count(query, ITERATION, "an iteration", warnings)
    percent = _count(query, PERCENT, "a percentage of training", warnings, high=100)
    _unknown(query, {RUNS, GROUP, MODE, ALIGN, ITERATION, PERCENT}, "Compare", warnings)
    return CompareView(overlaid, fraction, iteration, percent, tuple(warnings))


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


def read_runs(query: Mapping[str, str] | None = None) -> list[int] | None:
    """``?runs=1,2,3`` (of ``query``, else of the URL), or None when absent; ids that are
    not numbers are dropped."""
    value = (st.query_params if query is None else query).get(RUNS)
    if value is None:
        return None
    return [int(v) for v in value.split(",") if v.strip().isdigit()]


def read_group(query: Mapping[str, str] | None = None) -> str | None:
    return (st.query_params if query is None else query).get(GROUP)


def opened_by_link(page: str) -> bool:
    """Whether this page's URL parameters were set from outside (a link opened, the page
    reloaded) rather than by the page itself on its previous run: only then do they
    override the selection kept in the session. Without this, the URL a page wrote for
    the old selection would undo every change the user makes."""
    return st.query_params.to_dict() != st.session_state.get(f"{page}.url")


def linked_view(page: str) -> dict[str, str]:
    """The parameters the page opens with: the URL's, or, when the URL has none (the page
    opened from the sidebar), the view this page last showed in this session. Widgets'
    values are dropped from the session on a page that does not draw them, so the view
    lives on under a key of its own (``show_params`` keeps it)."""
    query = st.query_params.to_dict()
    return query or dict(st.session_state.get(f"{page}.view", {}))


def show_params(page: str, params: dict[str, str]) -> None:
    """Make the address bar name this view: exactly ``params`` in the URL (written only
    when it changed: each write is a message to the browser), remembered for
    ``opened_by_link``."""
    if st.query_params.to_dict() != params:
        st.query_params.from_dict(params)
    st.session_state[f"{page}.url"] = dict(params)
    st.session_state[f"{page}.view"] = dict(params)
