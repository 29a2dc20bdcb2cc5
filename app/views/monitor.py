"""Monitor: one run, live while it trains.

Accuracy on the test set and on the training set against the corrupted and the intact labels
("meaningful fitting"), loss (the method's own beside the comparable cross-entropy, with
what the method's value is) and learning rate (log scale), the mean p_i of clean vs
corrupted examples (the paper's Figure 2a), the p_i histograms as iteration × bin heatmaps
for clean and for corrupted examples, one iteration's histograms overlaid with the run's
EDF (chosen with a slider or by clicking the heatmaps, which mark it), the emphasis
variance over time, and how concentrated each batch's weight is (its effective sample size
and the largest share one example took). Per-iteration curves can be smoothed and drawn on a
log scale. A diverged run says at which iteration, with the figures measured then.

The URL names the run and the controls (``?run=N&smooth=0.6&log=1&it=400``, ``app.links``):
reloading or sharing it opens the same view; a link's invalid value is refused with a warning.

The live part is a fragment that reruns itself while the run is queued or running
(``run_every=None`` otherwise). Each tick reads only the rows after the last iteration it
has (kept in ``st.session_state["monitor.live"]``), through short-lived store sessions;
what accumulates stays within a fixed budget on a uniform iteration grid (``app.live``),
which the store applies in SQL. A tick never replays a backlog: when many rows arrived since
the last one (a busy machine, a page opened half-way through a run), it reads a thinned
window that ends at the newest row, so the page jumps to the present and one tick's work is
bounded. The ticks are paced by their own cost: the interval is a few times the last tick's
duration (at least ``REFRESH_S``), so ticks never queue behind one another on a loaded
machine (docs/architecture.md, "Streamlit: pacing a live fragment"). A line above the
charts says which iteration the page shows and how long ago it was the newest. A tick
builds again only the charts whose data changed and sends the others as the same figures
(``app.live.FigureCache``): Streamlit gives a changed figure a new element, which the
browser draws from scratch, and that drawing is most of a tick's cost in the browser.
For the same reason the per-iteration curves beside the histogram (emphasis variance, loss
with learning rate, batch concentration) are panels of one figure over a shared x axis: a
tick with new rows redraws five charts, not seven. Each chart sits in a slot of its own, and
the page's style sheet keeps a replaced chart in view until its successor is drawn
(``KEEP_REPLACED_CHART_CSS``); the slots are laid out first and the text is written before
any chart, so that no text waits, faded, behind the charts' drawing.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from app.charts import (
    CLEAN,
    NOISY,
    CurveStyle,
    Panel,
    edf_curves,
    emphasis_summary,
    histogram_bars,
    histogram_heatmaps,
    lines_figure,
    picked_iteration,
    stacked_lines_figure,
)
from app.db import runs_or_stop, store_or_stop
from app.examples_links import examples_link
from app.links import (
    MonitorView,
    linked_view,
    monitor_params,
    opened_by_link,
    read_monitor_view,
    show_params,
)
from app.live import (
    FigureCache,
    LiveHistograms,
    LiveScalars,
    lateness,
    paced_interval,
    rearm,
    stride_for,
    window_stride,
)
from app.tables import selected_accuracies
from app.text import md
from app.widgets import curve_controls, set_curve_controls
from dm_core.losses import LOSSES
from dm_core.registry import ConfigError
from dm_store import RunInfo, RunNotFound, RunStatus
from dm_store.downsample import every_kth

REFRESH_S = 4.0  # the shortest interval between two ticks (the browser redraws every chart)
MAX_REFRESH_S = 16.0  # the longest, however slow the machine
PACE = 3.0  # the interval is at least this many times the last tick's duration
MAX_POINTS = 1500  # scalar rows kept per run (the grid's stride doubles beyond twice this)
MAX_HIST = 500  # histogram rows kept, likewise
TICK_ROWS = 2 * MAX_POINTS  # at most this many scalar rows read by one tick (and the newest)
TICK_HIST = 2 * MAX_HIST  # histogram rows, likewise
# While the run trains every tick sends each chart whose data changed again, and the browser
# draws it from scratch (a changed figure is a new element to Streamlit): a line has no use
# for more points than a half-width chart is pixels wide, and each heatmap column carries an
# invisible click target per panel, which cost the browser twice the heatmap itself at 400
# columns. A finished run is drawn once, from every row kept.
LIVE_POINTS = 500
LIVE_COLUMNS = 200
# Each chart's margins hold what plotly's automargin adds around it in Streamlit's theme (the
# tick labels, axis titles and the legend below, as drawn in a half-width column of about
# 460 px): a chart whose first drawing finds its margins too small is drawn a second time
# with larger ones, and a changed chart is drawn from scratch at every tick. Measured in
# Chromium on the right column's figure: a drawing with margins that already fit took a
# quarter of the time. A label wider than these still gets its room, at that cost.
MARGINS = {"lines": {"l": 72, "r": 24, "t": 40, "b": 100},
           "accuracy": {"l": 72, "r": 24, "t": 40, "b": 128},  # its legend takes two rows
           "heatmap": {"l": 80, "r": 104, "t": 40, "b": 78},
           "bars": {"l": 80, "r": 66, "t": 40, "b": 128}}
# The training curves' legend entries each take a row under the figure at that width.
TRAINING_MARGIN, LEGEND_ROW_PX, X_AXIS_PX = {"l": 80, "r": 90, "t": 40}, 32, 50
# Each chart sits alone in a keyed container, a slot ("st-key-" + key is its class). A changed
# figure is a new element to Streamlit: the browser mounts it empty, measures its width, then
# draws it, while the element it replaces is kept in the page hidden ("retained", until the
# run ends). Between the two a chart would be missing from view on every tick, for as long
# as the charts drawn before it take. The rule shows the replaced chart, as it was (not
# faded), until its successor has a drawing of its own (plotly's .main-svg): double
# buffering in the page's style sheet (docs/architecture.md, "Streamlit: pacing a live
# fragment"). A successor's plot is hidden by an inline style until Streamlit has measured
# its height, drawing or not: only a plot without one counts as shown.
SLOT = "monitor-slot-"
SHOWN_PLOT = ('.js-plotly-plot:not([style*="display: none"]):not([style*="visibility: hidden"])'
              " .main-svg")
KEEP_REPLACED_CHART_CSS = f"""<style>
[class*="st-key-{SLOT}"]:not(:has(> [data-testid="stElementContainer"]:not([data-retained]) {SHOWN_PLOT}))
  > [data-testid="stElementContainer"][data-retained]:has(.main-svg) {{
  display: block !important; opacity: 1 !important; transition: none !important;
}}
</style>"""
ACTIVE = (RunStatus.QUEUED, RunStatus.RUNNING)
LIVE = "monitor.live"
PAGE = "monitor"
# The batch-concentration scalars the training loop logs, in plain words.
CONCENTRATION = {"max_share": "one example's share of the batch's weight (max_share)",
                 "ess_fraction": "effective sample size, fraction of the batch (ess_fraction)"}
# The figures a diverged run's ``divergence`` may hold (``TrainingDiverged.figures``).
DIVERGENCE_FIGURES = {"loss": "training loss",
                      "logit_max": "largest absolute logit in the batch",
                      "ess_fraction": "effective sample size, fraction of the batch",
                      "max_share": "one example's share of the batch's weight",
                      "grad_norm": "gradient norm before clipping",
                      "lr": "learning rate"}


# ----------------------------------------------------------------------------- incremental data

def live_state(run: RunInfo) -> dict[str, Any]:
    """This run's accumulated data; reset when the run changes or its data was rewound
    (a retry clears it, a resumed attempt truncates after its checkpoint)."""
    live = st.session_state.get(LIVE)
    stale = (live is None or live["run_id"] != run.id or run.iteration < live["scalars"].last
             or run.attempt != live["attempt"])
    if stale:
        # A long run's first read is already on a grid coarse enough for the budget.
        live = {"run_id": run.id, "attempt": run.attempt, "evals": pd.DataFrame(), "fetches": 0,
                "scalars": LiveScalars(MAX_POINTS, stride_for(run.iteration, MAX_POINTS)),
                "hist": LiveHistograms(MAX_HIST, stride_for(run.iteration, MAX_HIST)),
                "read": (0, 0), "newest_at": time.time(), "figures": FigureCache()}
        st.session_state[LIVE] = live
    return live


def fetch_new(s, run: RunInfo, live: dict[str, Any]) -> None:
    """Append what the store has after the last iteration seen (scalars, histograms, evals),
    up to the newest row, on the accumulated series' iteration grid, coarsened for this read
    when the backlog is larger than one tick's budget (``app.live.window_stride``).
    ``live["read"]`` keeps how many scalar and histogram rows this read returned."""
    live["fetches"] += 1
    scalars, hist = live["scalars"], live["hist"]
    before = scalars.last
    k = window_stride(scalars.stride, run.iteration - scalars.last, TICK_ROWS)
    new = s.scalars(run.id, after=scalars.last, stride=k)
    scalars.append(new, stride=k)
    if len(new) or live["fetches"] == 1:
        live["evals"] = s.evals(run.id)  # one row per evaluation: small
    k = window_stride(hist.stride, run.iteration - hist.last, TICK_HIST)
    series = s.histograms(run.id, start=hist.last + 1, max_rows=None, stride=k)
    hist.append(series.iterations, series.clean, series.noisy, stride=k)
    live["read"] = (len(new), len(series.iterations))
    if scalars.last != before:
        live["newest_at"] = time.time()


# ----------------------------------------------------------------------------- pacing

def refresh_interval() -> float:
    """Seconds between ticks, from the last tick's duration on the server and how late the
    browser's timer fired (``app.live.paced_interval``)."""
    ss = st.session_state
    return paced_interval(float(ss.get("monitor.tick_s", 0.0)), REFRESH_S, MAX_REFRESH_S, PACE,
                          float(ss.get("monitor.late_s", 0.0)))


def tick_started(armed: float | None, by_timer: bool) -> float:
    """The tick's start; a tick the browser's timer asked for after another one also
    measures how late it came (``app.live.lateness``): the browser was busy drawing the
    tick before it. (After the page's own run the browser drew the whole page, loading
    included: not what a tick costs it.)"""
    ss = st.session_state
    now = time.monotonic()
    previous, ss["monitor.tick_at"] = ss.get("monitor.tick_at"), now
    after_tick, ss["monitor.by_timer"] = ss.get("monitor.by_timer", False), by_timer
    if by_timer and after_tick and armed is not None and previous is not None:
        ss["monitor.late_s"] = lateness(now - previous, armed, float(ss.get("monitor.late_s", 0.0)))
    return now


def record_tick(took: float, armed: float | None, by_timer: bool) -> None:
    """Remember how long this tick took; when the timer that is running (``armed``) is now
    too short, or four times longer than needed, rerun the page so that the fragment is
    armed with a new interval (its ``run_every`` is read only when the page draws it).

    Only a tick of the timer counts. The page's own run is no tick: it reads the backlog (a
    direct load, a whole window of rows) and builds every chart for the first time, so it
    takes longer than a tick; re-arming after it ran a direct load twice whenever the load
    took over a third of the interval (a busy machine), the page greyed out meanwhile."""
    if not by_timer:
        return
    st.session_state["monitor.tick_s"] = took
    if armed is not None and rearm(refresh_interval(), armed):
        st.rerun(scope="app")


def status_line(run: RunInfo, live: dict[str, Any], armed: float | None) -> None:
    """Which iteration the page shows, and how long ago it was the newest one stored."""
    last = live["scalars"].last
    if armed is None:
        st.caption(f"Iteration {last}: the run is {run.status}.")
        return
    age = max(0, round(time.time() - live["newest_at"]))
    st.caption(f"Live: as of iteration {last}, {age} s ago (refreshed every {armed:g} s).")


# ----------------------------------------------------------------------------- drawing

def _col(frame: pd.DataFrame, name: str) -> np.ndarray | None:
    return frame[name].to_numpy(dtype=np.float64) if name in frame.columns else None


def run_edf(run: RunInfo):
    """The EDF of the run's loss, when the loss is a weighting scheme (else None)."""
    loss = dict(run.config.get("loss") or {})
    name = loss.pop("name", None)
    if name not in LOSSES:
        return None
    scheme = LOSSES.get(name).extra.get("scheme")
    if scheme is None:
        return None
    params = {k: v for k, v in loss.items() if k != "eps"}
    try:
        return edf_curves(scheme, params)
    except ConfigError:
        return None


def header(run: RunInfo) -> None:
    """What the run is, in one line (its name and config strings as text: ``app.text.md``)."""
    cfg = run.config
    loss = dict(cfg.get("loss") or {})
    noise = (cfg.get("dataset") or {}).get("noise") or {}
    params = ", ".join(f"{k}={v:g}" for k, v in loss.items()
                       if k not in ("name", "eps") and isinstance(v, int | float))
    edf = run_edf(run)
    st.markdown(
        f"**{md(run.name)}** · {md((cfg.get('dataset') or {}).get('name'))} with "
        f"{md(noise.get('kind', 'none'))} noise r = {noise.get('rate', 0):g} · "
        f"{md((cfg.get('model') or {}).get('name'))} · loss **{md(loss.get('name'))}**"
        + (f" ({md(params)})" if params else "")
        + (f" · emphasis {md(emphasis_summary(edf).where)}" if edf is not None else ""))


def method_loss(run: RunInfo) -> tuple[str, str | None]:
    """The name of the run's own loss series, and what its value is when that needs saying:
    a weighting scheme's loss is a surrogate whose gradient, not value, is designed."""
    name = str((run.config.get("loss") or {}).get("name"))
    if name in LOSSES and LOSSES.get(name).extra.get("scheme") is not None:
        return (f"{name} surrogate (its gradient is the method)",
                f"The {name} curve is the surrogate the method trains through, "
                "Σᵢ cᵢ·½(logsumexp_{j≠yᵢ} zᵢⱼ − zᵢ,yᵢ) with each example's weight cᵢ held "
                "fixed: its gradient is the designed one, its value is no loss. It falls below "
                "zero once an example's annotated logit exceeds the log-sum-exp of the others, "
                "and it is not comparable between methods; the cross-entropy beside it is.")
    return f"{name} loss", None


def metrics(run: RunInfo, live: dict[str, Any]) -> None:
    evals = live["evals"]
    total = run.total_iterations or run.config.get("iterations") or 0
    c = st.columns(4)
    c[0].metric("status", str(run.status))
    c[1].metric("iteration", f"{live['scalars'].last}/{total}")
    if len(evals) and "test_acc" in evals:
        acc = evals["test_acc"].dropna()
        c[2].metric("test acc", f"{acc.iloc[-1]:.3f}" if len(acc) else "–")
        _, selected = selected_accuracies(evals)
        if np.isfinite(selected):
            c[3].metric("selected test acc", f"{selected:.3f}",
                        help="At the evaluation with the best validation accuracy so far.")
        else:
            c[3].metric("max test acc (optimistic)", f"{acc.max():.3f}" if len(acc) else "–",
                        help="The largest test accuracy of any evaluation: it picks its "
                             "iteration on the test set, so it overstates what early stopping "
                             "without test data would reach. Hold out a validation split "
                             "(dataset.val_fraction) for a fair choice.")
    c = st.columns(4)
    for col, key, label, help_text in (
            (c[0], "train_acc_corrupted", "train acc vs corrupted labels",
             "Accuracy on the training set against its (noisy) annotated labels."),
            (c[1], "train_acc_intact", "train acc vs intact labels",
             "Accuracy on the training set against the true labels: meaningful fitting."),
            (c[2], "fit_corrupted_subset", "corrupted examples fitted",
             "Fraction of the corrupted examples predicted as their WRONG label: memorisation."),
            (c[3], "val_acc", "validation acc (clean split)", None)):
        if len(evals) and key in evals and evals[key].notna().any():
            col.metric(label, f"{evals[key].dropna().iloc[-1]:.3f}", help=help_text)
    st.progress(min(live["scalars"].last / total, 1.0) if total else 0.0)
    if run.error:
        st.warning(md(run.error.splitlines()[0][:1000]))


def divergence_frame(divergence: dict[str, Any]) -> pd.DataFrame:
    """The measured figures of a diverged run, one row each, named in plain words; a value
    stored as null was not finite (the store keeps no inf or NaN)."""
    def shown(value: Any) -> str:
        if value is None:
            return "not finite (inf or NaN)"
        if isinstance(value, int | float) and not isinstance(value, bool):
            return f"{value:.4g}"
        return str(value)

    return pd.DataFrame([{"figure": DIVERGENCE_FIGURES.get(k, k), "name": k, "value": shown(v)}
                         for k, v in divergence.items()])


def divergence_box(run: RunInfo) -> None:
    """Where a diverged run stopped and what was measured there, and nothing more: which
    figure mattered is for the reader to judge from the numbers."""
    if run.diverged_at is None:
        return
    st.error(f"**Diverged at iteration {int(run.diverged_at)}.** The training loop stopped "
             "there; the figures it measured are below.", icon=":material/error:")
    if run.divergence:
        st.dataframe(divergence_frame(run.divergence), hide_index=True, width="stretch",
                     key="monitor.divergence")


def iteration_controls(run: RunInfo) -> None:
    """"Follow the latest iteration", or a slider over the run's planned iterations: which
    iteration's histograms are shown (and marked on the heatmaps).

    Drawn by the full page run, outside the refreshing fragment: widgets inside a fragment
    that reruns every few seconds were measured reporting stale values back as the user's
    (following stopped by itself at the first value shown). The choice is kept under a
    shadow key (``monitor.scrub_value``) and read by the fragment (``chosen_iteration``).
    """
    ss = st.session_state
    if ss.get("monitor.controls_run") != run.id:  # another run: follow its latest iteration
        ss["monitor.controls_run"] = run.id
        ss["monitor.follow"] = True
        ss.pop("monitor.scrub_value", None)
    total = int(run.total_iterations or run.config.get("iterations") or max(run.iteration, 1))

    def unfollow() -> None:
        if ss["monitor.follow"]:
            ss.pop("monitor.scrub_value", None)
        else:  # start from the iteration on screen
            live = ss.get(LIVE)
            last = live["hist"].last if live and live["run_id"] == run.id else total
            ss["monitor.scrub_value"] = last or total

    def remember() -> None:
        ss["monitor.scrub_value"] = ss["monitor.scrub"]

    left, right = st.columns([2, 3], vertical_alignment="bottom")
    left.toggle("Follow the latest iteration", key="monitor.follow", on_change=unfollow,
                help="The histograms below show the latest iteration logged.")
    if not ss["monitor.follow"] and total > 1:
        ss["monitor.scrub"] = min(max(int(ss.get("monitor.scrub_value") or total), 1), total)
        right.slider("Iteration", 1, total, key="monitor.scrub", on_change=remember,
                     help="The histograms of this iteration (or the nearest before it "
                          "logged); clicking the heatmaps picks one too.")


def chosen_iteration(live: dict[str, Any]) -> int:
    """The iteration whose histograms are shown: the latest logged while following, else
    the user's choice clamped to what has been logged."""
    it = live["hist"].iterations
    lo, hi = int(it[0]), int(it[-1])
    ss = st.session_state
    shadow = ss.get("monitor.scrub_value")
    return hi if ss.get("monitor.follow", True) or shadow is None else min(max(int(shadow), lo), hi)


def _pick_from_heatmap() -> None:
    """A click on the heatmaps: show that iteration (no longer the latest); the fragment
    then redraws the whole page, whose controls live outside it."""
    state = st.session_state.get("monitor.heatmap")
    picked = picked_iteration(state.get("selection") if state else None)
    if picked is not None:
        st.session_state["monitor.scrub_value"] = picked
        st.session_state["monitor.follow"] = False
        st.session_state["monitor.picked"] = True


def bars(run: RunInfo, figures: FigureCache, edf, chosen: int) -> None:
    """The clean and corrupted histograms of the chosen iteration, with the run's EDF."""
    found = s.histogram_at(run.id, int(chosen))
    if found is None:
        return
    at, clean, noisy = found
    fig = figures.figure("monitor.bars", histogram_bars, clean, noisy, f"p_i at iteration {at}",
                         edf=edf, revision=f"bars-{run.id}", margin=MARGINS["bars"])
    st.plotly_chart(fig, key="monitor.bars", theme="streamlit", width="stretch")


def drawn(count: int, limit: int | None) -> np.ndarray:
    """Indices of the rows drawn: every one, or evenly spaced ones (the newest always) when
    more than ``limit``."""
    if limit is None or count <= limit:
        return np.arange(count)
    return every_kth(np.arange(count), math.ceil(count / limit))


def charts(run: RunInfo, live: dict[str, Any], style: CurveStyle) -> None:
    """Every chart, each built again only when the data it shows changed (``FigureCache``):
    an unchanged chart is sent as the same figure, which the browser keeps as it is.

    The layout comes first, as empty slots, and the text under the training curves is
    written before any chart: the browser applies a tick's elements in the order they are
    sent and draws each changed chart before it takes the next one, so text sent after the
    charts would stay faded as stale while they draw."""
    active = run.status in ACTIVE
    sc, ev, kept, figures = live["scalars"].frame, live["evals"], live["hist"], live["figures"]
    sc = sc.iloc[drawn(len(sc), LIVE_POINTS if active else None)].reset_index(drop=True)
    columns = drawn(len(kept.iterations), LIVE_COLUMNS if active else None)
    hist = LiveHistograms(kept.limit, kept.stride, kept.iterations[columns],
                          None if kept.clean is None else kept.clean[columns],
                          None if kept.noisy is None else kept.noisy[columns])
    if not len(sc) and not len(ev):
        st.info("Nothing logged yet: the run is waiting for a worker (`dm worker`, or `dm up`)."
                if run.status == RunStatus.QUEUED else "Nothing logged yet.")
        return
    top_left, top_right = st.columns(2)
    accuracy_slot = top_left.container(key=f"{SLOT}acc")
    pmean_slot = top_right.container(key=f"{SLOT}pmean")
    heatmap_slot = st.container(key=f"{SLOT}heatmap")
    bottom_left, right = st.columns(2)
    bars_slot = bottom_left.container(key=f"{SLOT}bars")
    with right:
        training_slot = st.container(key=f"{SLOT}training")
        panels, notes = training_panels(run, sc) if len(sc) else ((), ())
        for note in notes:
            st.caption(note)
    with accuracy_slot:
        series = {label: _col(ev, key) for key, label in (
            ("test_acc", "test"), ("val_acc", "validation (clean)"),
            ("train_acc_corrupted", "train vs corrupted labels"),
            ("train_acc_intact", "train vs intact labels"))} if len(ev) else {}
        series = {k: v for k, v in series.items() if v is not None}
        if series:
            # Evaluations are few and exact: drawn as they are, on a linear axis.
            fig = figures.figure("monitor.acc", lines_figure, ev["iteration"].to_numpy(), series,
                                 "Accuracy", "accuracy", y_range=(0, 1.02),
                                 revision=f"acc-{run.id}", margin=MARGINS["accuracy"])
            st.plotly_chart(fig, key="monitor.acc", theme="streamlit", width="stretch")
        else:
            st.caption("Accuracy appears after the first evaluation.")
    with pmean_slot:
        it = sc["iteration"].to_numpy() if len(sc) else np.zeros(0)
        pm = {label: _col(sc, key) for key, label in (("p_clean_mean", "clean"),
                                                     ("p_noisy_mean", "corrupted"))}
        pm = {k: v for k, v in pm.items() if v is not None}
        if pm:
            fig = figures.figure("monitor.pmean", lines_figure, it, pm,
                                 "Mean p_i of clean vs corrupted examples (Figure 2a)", "mean p_i",
                                 colours={"clean": CLEAN, "corrupted": NOISY}, y_range=(0, 1.02),
                                 revision=f"pmean-{run.id}", style=style, margin=MARGINS["lines"])
            st.plotly_chart(fig, key="monitor.pmean", theme="streamlit", width="stretch")
    chosen = chosen_iteration(live) if len(hist.iterations) else None
    if len(hist.iterations):
        with heatmap_slot:
            fig = figures.figure("monitor.heatmap", histogram_heatmaps, hist.iterations,
                                 hist.clean, hist.noisy, revision=f"heat-{run.id}",
                                 chosen=chosen, margin=MARGINS["heatmap"])
            st.plotly_chart(fig, key="monitor.heatmap", theme="streamlit", width="stretch",
                            on_select=_pick_from_heatmap, selection_mode="points")
        with bars_slot:
            bars(run, figures, run_edf(run), chosen)
    if panels:
        with training_slot:
            training_chart(run, figures, sc, panels, style)


def training_panels(run: RunInfo, sc: pd.DataFrame) -> tuple[tuple[Panel, ...], tuple[str, ...]]:
    """The panels of the training curves the run logged (the emphasis variance, the training
    losses with the learning rate, the batch concentration), and what is to be said under
    them: what the method's loss value is, and what the concentration measures."""
    panels = []
    notes = []
    if "weight_var" in sc:
        panels.append(Panel("Emphasis variance over training", "variance of w_i",
                            {"emphasis variance (weight variance)": _col(sc, "weight_var")}))
    if "loss" in sc:
        # Cross-entropy against the training labels (comparable across methods) beside the
        # method's own loss, and the learning rate on a log axis at the right.
        name, note = method_loss(run)
        losses = {"cross-entropy (training labels)": _col(sc, "ce")} if "ce" in sc else {}
        losses[name] = _col(sc, "loss")
        lr = _col(sc, "lr")
        panels.append(Panel("Training loss and learning rate", "loss", losses, dotted=True,
                            right=None if lr is None else ("learning rate", lr)))
        if note is not None:
            notes.append(note)
    # Each batch's effective sample size (Σw)²/Σw² as a fraction of the batch, and the
    # largest share max w/Σw one example took: drawn when the run logged them.
    concentration = {label: _col(sc, key) for key, label in CONCENTRATION.items()
                     if key in sc and sc[key].notna().any()}
    if concentration:
        panels.append(Panel("Batch concentration", "fraction of the batch", concentration,
                            y_range=(0, 1.02)))
        notes.append("Effective sample size: (Σw)² / Σw² over the batch's normalised weights "
                     "w, divided by the batch size (1: every example weighs the same). Share: "
                     "the largest w / Σw, one example's part of the batch's weight (under "
                     "derivative normalisation, of the batch's summed gradient magnitude).")
    return tuple(panels), tuple(notes)


def training_chart(run: RunInfo, figures: FigureCache, sc: pd.DataFrame,
                   panels: tuple[Panel, ...], style: CurveStyle) -> None:
    """The training curves' ``panels`` as one figure over the iteration.

    One figure rather than one per panel: every tick with new rows changes them all, and
    the browser draws each changed figure from scratch, at a cost that is mostly per figure."""
    entries = sum(len(p.series) + (p.right is not None) for p in panels)
    margin = {**TRAINING_MARGIN, "b": X_AXIS_PX + LEGEND_ROW_PX * entries}
    fig = figures.figure("monitor.training", stacked_lines_figure, sc["iteration"].to_numpy(),
                         panels, revision=f"training-{run.id}", style=style, margin=margin)
    st.plotly_chart(fig, key="monitor.training", theme="streamlit", width="stretch")


# ----------------------------------------------------------------------------- page

st.title("Monitor")
s = store_or_stop()
runs = runs_or_stop(s, 500, "No runs yet. Queue one on the Launch page.")

def open_link(view: MonitorView, run_id: int) -> None:
    """Set the controls as a link (or the view last shown here) asks for: the curves'
    smoothing and axis, and the iteration shown (or following the latest)."""
    ss = st.session_state
    for warning in view.warnings:
        st.warning(md(warning))
    set_curve_controls("monitor.curves", view.smoothing, view.log_y)
    ss["monitor.controls_run"] = run_id  # not a change of run: keep what the link says
    ss["monitor.follow"] = view.iteration is None
    if view.iteration is None:
        ss.pop("monitor.scrub_value", None)
    else:
        ss["monitor.scrub_value"] = view.iteration


ss = st.session_state
wanted = ss.pop("monitor.run_id", None)  # handed over by the Launch page
# Also when the URL is the one this page wrote but its widgets' values are gone: the session
# drops them while other pages run.
view = (read_monitor_view(linked_view(PAGE))
        if opened_by_link(PAGE) or "monitor.curves.smoothing" not in ss else None)
linked = view.run if view is not None else None
if linked is not None and all(r.id != linked for r in runs):
    try:  # older than the runs listed: add it
        runs.append(s.get_run(linked))
    except RunNotFound:
        st.warning(f"Run #{linked} of this link does not exist (it may have been deleted).")
        linked = None
labels = {r.id: f"#{r.id} {r.name}" for r in runs}
if wanted in labels:
    ss["monitor.run"] = wanted
elif linked is not None:
    ss["monitor.run"] = linked
elif ss.get("monitor.run") not in labels:
    running = [r.id for r in runs if r.status == RunStatus.RUNNING]
    ss["monitor.run"] = running[0] if running else runs[0].id
run_id = st.selectbox("Run", list(labels), key="monitor.run", format_func=labels.get)
if view is not None:
    open_link(view, run_id)
first = next(r for r in runs if r.id == run_id)
header(first)
examples_link(run_id)
with st.expander("Chart controls: smoothing, log scale, the iteration shown", expanded=True):
    _, curve_style = curve_controls("monitor.curves")
    iteration_controls(first)
show_params(PAGE, monitor_params(
    run_id, curve_style.smoothing, curve_style.log_y,
    None if ss["monitor.follow"] else ss.get("monitor.scrub_value")))


armed = refresh_interval() if first.status in ACTIVE else None


@st.fragment(run_every=armed)
def live_view() -> None:
    # The page's own run sets the flag; a rerun of the fragment alone is the timer's tick.
    by_timer = not st.session_state.pop("monitor.page_run", False)
    started = tick_started(armed, by_timer)
    if st.session_state.pop("monitor.picked", False):
        st.rerun(scope="app")  # a heatmap click: the controls outside show the new choice
    try:
        run = s.get_run(run_id)
    except RunNotFound:
        st.warning(f"Run #{run_id} was deleted.")
        return
    if run.status != first.status:
        # It started or ended: redraw the whole page once (the sidebar's counts, the timer,
        # which stops once the run has ended), before this tick draws what that run will
        # draw again.
        st.rerun()
    live = live_state(run)
    fetch_new(s, run, live)
    status_line(run, live, armed)
    divergence_box(run)
    metrics(run, live)
    charts(run, live, curve_style)
    record_tick(time.monotonic() - started, armed, by_timer)


ss["monitor.page_run"] = True
st.html(KEEP_REPLACED_CHART_CSS)
live_view()
