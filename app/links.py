"""Every Monitor and Compare view has a URL that reloads to it: ``monitor?run=N``,
``compare?runs=3,4,7`` or ``compare?group=NAME``, and the controls that shape the view:

- Monitor: ``smooth=0.6`` (the curves' smoothing), ``log=1`` (a log y axis), ``it=400`` (the
  histograms of iteration 400, no longer following the latest; without ``it`` the page
  follows the latest iteration);
- Compare: the curves' ``metric=p_clean_mean``, ``x=fraction`` (their x axis the fraction
  of training), ``smooth=0.6`` and ``log=1`` (as on the Monitor); the landscape's
  ``landscape=diverged``; the value of the table by noise rate, ``by_rate=test_acc_final``;
  and the histograms' ``mode=overlaid`` (overlaid rather than side by side),
  ``align=fraction`` (runs at one fraction of their training rather than one iteration) and
  ``it=400`` (that iteration) or ``pct=40`` (that percentage of training).

A control at its default is left out, so a plain link stays short. Pages read their view
from ``st.query_params`` when they load (a shared or reloaded link), and write it back
whenever the user changes it, so the address bar always names the view on screen; a page
opened from the sidebar, with no parameters, shows the view it last showed in this session.
A link may be typed or edited by hand: a value that is not valid, and a parameter the page
does not know, are each refused with a warning naming them (``read_monitor_view``,
``read_compare_view``), and the page shows its default for those. Both pages read and write
the curves' controls with the same functions, so ``smooth`` and ``log`` mean the same on each. The Runs page builds the
same links (a link column in its table, and ``st.switch_page(..., query_params=...)`` for
its buttons).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
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
METRIC = "metric"
X_AXIS = "x"
LANDSCAPE = "landscape"
BY_RATE = "by_rate"
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
    """What a Compare link asks for besides its runs or group (None: the page's default),
    and the warnings: the curves (their metric, x axis by fraction of training, smoothing
    and log y axis), the landscape's metric, the value of the table by noise rate, and the
    histograms (overlaid, aligned by fraction, at an iteration or a percentage)."""

    overlaid: bool = False
    fraction: bool = False
    iteration: int | None = None
    percent: int | None = None
    metric: str | None = None
    x_fraction: bool = False
    smoothing: float = 0.0
    log_y: bool = False
    landscape: str | None = None
    by_rate: str | None = None
    warnings: tuple[str, ...] = ()


def _curve_params(smoothing: float, log_y: bool) -> dict[str, str]:
    """The curves' smoothing and log y axis as URL parameters (left out at their defaults),
    for every page that draws ``app.widgets.curve_controls``."""
    out = {}
    if smoothing:
        out[SMOOTH] = f"{float(smoothing):.2f}".rstrip("0").rstrip(".")
    if log_y:
        out[LOG] = "1"
    return out


def monitor_params(run_id: int, smoothing: float = 0.0, log_y: bool = False,
                   iteration: int | None = None) -> dict[str, str]:
    """The Monitor's URL parameters; controls at their defaults are left out.

    >>> monitor_params(3), monitor_params(3, 0.6, True, 400)
    ({'run': '3'}, {'run': '3', 'smooth': '0.6', 'log': '1', 'it': '400'})
    """
    out = {RUN: str(int(run_id)), **_curve_params(smoothing, log_y)}
    if iteration is not None:
        out[ITERATION] = str(int(iteration))
    return out


def compare_params(run_ids: Iterable[int] = (), group: str | None = None, *,
                   overlaid: bool = False, fraction: bool = False, iteration: int | None = None,
                   percent: int | None = None, metric: str | None = None,
                   x_fraction: bool = False, smoothing: float = 0.0, log_y: bool = False,
                   landscape: str | None = None, by_rate: str | None = None) -> dict[str, str]:
    """A group when one is given, else the runs (in id order); then the view's controls
    (a choice at the page's default is None), controls at their defaults left out.

    >>> compare_params([4, 3], overlaid=True, iteration=200)
    {'runs': '3,4', 'mode': 'overlaid', 'it': '200'}
    >>> compare_params(group="g", fraction=True, percent=40)
    {'group': 'g', 'align': 'fraction', 'pct': '40'}
    >>> compare_params([1], metric="loss", x_fraction=True, smoothing=0.5, log_y=True,
    ...                landscape="diverged", by_rate="test_acc_final")
    {'runs': '1', 'metric': 'loss', 'x': 'fraction', 'smooth': '0.5', 'log': '1', 'landscape': 'diverged', 'by_rate': 'test_acc_final'}
    """
    out = ({GROUP: group} if group is not None else
           {RUNS: ",".join(str(i) for i in sorted({int(i) for i in run_ids}))})
    if metric is not None:
        out[METRIC] = metric
    if x_fraction:
        out[X_AXIS] = FRACTION
    out.update(_curve_params(smoothing, log_y))
    if landscape is not None:
        out[LANDSCAPE] = landscape
    if by_rate is not None:
        out[BY_RATE] = by_rate
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


def _choice(query: Mapping[str, str], key: str, allowed: Collection[str], what: str,
            warnings: list[str]) -> str | None:
    """One of ``allowed`` from the link's ``key`` (None when absent, or refused with a
    warning naming the allowed values)."""
    if key not in query:
        return None
    if query[key] in allowed:
        return query[key]
    warnings.append(f"The link's {key} = {query[key]!r} is refused (it must be {what}: "
                    f"{', '.join(allowed)}): showing the default instead.")
    return None


def _curves(query: Mapping[str, str], warnings: list[str]) -> tuple[float, bool]:
    """The curves' smoothing and log y axis a link asks for (``_curve_params`` writes them)."""
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
    return round(smoothing, 2), _switch(query, LOG, "1", "0", warnings)


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
    smoothing, log_y = _curves(query, warnings)
    iteration = _count(query, ITERATION, "an iteration", warnings)
    _unknown(query, {RUN, SMOOTH, LOG, ITERATION}, "Monitor", warnings)
    return MonitorView(run, smoothing, log_y, iteration, tuple(warnings))


def read_compare_view(query: Mapping[str, str], *, metrics: Collection[str] = (),
                      landscapes: Collection[str] = (),
                      rate_values: Collection[str] = ()) -> CompareView:
    """The view a Compare link asks for besides its runs or group (``read_runs``,
    ``read_group``): a curves' ``metric``, a ``landscape`` metric and a ``by_rate`` value
    must be one of ``metrics``, ``landscapes`` and ``rate_values``.

    >>> read_compare_view({"group": "g", "mode": "overlaid", "it": "200", "metric": "loss",
    ...                    "smooth": "0.5"}, metrics=["test_acc", "loss"])
    CompareView(overlaid=True, fraction=False, iteration=200, percent=None, metric='loss', x_fraction=False, smoothing=0.5, log_y=False, landscape=None, by_rate=None, warnings=())
    >>> read_compare_view({"runs": "1,2", "mode": "stacked", "pct": "140"}).warnings
    ("The link's mode = 'stacked' is refused (it must be 'overlaid' or 'side'): ignored.", "The link's pct = '140' is refused (it must be a whole number from 1 to 100, a percentage of training): ignored.")
    >>> read_compare_view({"runs": "1", "landscape": "speed"}, landscapes=["diverged"]).warnings
    ("The link's landscape = 'speed' is refused (it must be a landscape's metric: diverged): showing the default instead.",)
    """
    warnings: list[str] = []
    metric = _choice(query, METRIC, metrics, "a curves' metric", warnings)
    x_fraction = _switch(query, X_AXIS, FRACTION, "iteration", warnings)
    smoothing, log_y = _curves(query, warnings)
    landscape = _choice(query, LANDSCAPE, landscapes, "a landscape's metric", warnings)
    by_rate = _choice(query, BY_RATE, rate_values, "a result column", warnings)
    overlaid = _switch(query, MODE, OVERLAID, "side", warnings)
    fraction = _switch(query, ALIGN, FRACTION, "iteration", warnings)
    iteration = _count(query, ITERATION, "an iteration", warnings)
    percent = _count(query, PERCENT, "a percentage of training", warnings, high=100)
    _unknown(query, {RUNS, GROUP, METRIC, X_AXIS, SMOOTH, LOG, LANDSCAPE, BY_RATE, MODE, ALIGN,
                     ITERATION, PERCENT}, "Compare", warnings)
    return CompareView(overlaid, fraction, iteration, percent, metric, x_fraction, smoothing,
                       log_y, landscape, by_rate, tuple(warnings))


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
