"""Monitor: one run, live while it trains.

Accuracy on the test set and on the training set against the corrupted and the intact labels
("meaningful fitting"), loss and learning rate, the mean p_i of clean vs corrupted examples
(the paper's Figure 2a), the p_i histograms as iteration × bin heatmaps for clean and for
corrupted examples, one iteration's histograms overlaid with the run's EDF, and the emphasis
variance over time.

The live part is a fragment that reruns itself every ``REFRESH_S`` seconds while the run is
queued or running (``run_every=None`` otherwise). Each tick reads only the rows after the
last iteration it has (kept in ``st.session_state["monitor.live"]``, PITFALLS.md 3), through
short-lived store sessions; what accumulates stays within a fixed budget on a uniform
iteration grid (``app.live``), which the store applies in SQL, so a long run's first read is
downsampled there.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from app.charts import (
    CLEAN,
    NOISY,
    edf_curves,
    histogram_bars,
    histogram_heatmaps,
    lines_figure,
    loss_lr_figure,
)
from app.db import store_or_stop
from app.live import LiveHistograms, LiveScalars, stride_for
from dm_core.losses import LOSSES
from dm_core.registry import ConfigError
from dm_core.store import RunInfo, RunNotFound, RunStatus

REFRESH_S = 2.0
MAX_POINTS = 3000  # scalar rows kept per run (the grid's stride doubles beyond twice this)
MAX_HIST = 1000  # histogram rows kept, likewise
ACTIVE = (RunStatus.QUEUED, RunStatus.RUNNING)
LIVE = "monitor.live"


# ----------------------------------------------------------------------------- incremental data

def live_state(run: RunInfo) -> dict[str, Any]:
    """This run's accumulated data; reset when the run changes or its data was rewound
    (a retry clears it, a resumed attempt truncates after its checkpoint)."""
    live = st.session_state.get(LIVE)
    stale = (live is None or live["run_id"] != run.id or run.iteration < live["scalars"].last
             or run.attempt != live["attempt"])
    if stale:
        if live is None or live["run_id"] != run.id:  # another run: follow its latest iteration
            st.session_state.pop("monitor.scrub_value", None)
            st.session_state["monitor.follow"] = True
        # A long run's first read is already on a grid coarse enough for the budget.
        live = {"run_id": run.id, "attempt": run.attempt, "evals": pd.DataFrame(), "fetches": 0,
                "scalars": LiveScalars(MAX_POINTS, stride_for(run.iteration, MAX_POINTS)),
                "hist": LiveHistograms(MAX_HIST, stride_for(run.iteration, MAX_HIST))}
        st.session_state[LIVE] = live
    return live


def fetch_new(s, run: RunInfo, live: dict[str, Any]) -> None:
    """Append what the store has after the last iteration seen (scalars, histograms, evals),
    read on the accumulated series' own iteration grid (``app.live``)."""
    live["fetches"] += 1
    scalars, hist = live["scalars"], live["hist"]
    new = s.scalars(run.id, after=scalars.last, stride=scalars.stride)
    scalars.append(new)
    if len(new) or live["fetches"] == 1:
        live["evals"] = s.evals(run.id)  # one row per evaluation: small
    series = s.histograms(run.id, start=hist.last + 1, max_rows=None, stride=hist.stride)
    hist.append(series.iterations, series.clean, series.noisy)


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
    cfg = run.config
    loss = dict(cfg.get("loss") or {})
    noise = (cfg.get("dataset") or {}).get("noise") or {}
    params = ", ".join(f"{k}={v:g}" for k, v in loss.items()
                       if k not in ("name", "eps") and isinstance(v, int | float))
    edf = run_edf(run)
    st.markdown(
        f"**{run.name}** · {(cfg.get('dataset') or {}).get('name')} with {noise.get('kind', 'none')} "
        f"noise r = {noise.get('rate', 0):g} · {(cfg.get('model') or {}).get('name')} · loss "
        f"**{loss.get('name')}**" + (f" ({params})" if params else "")
        + (f" · emphasis mode ψ = {edf.mode:.3g}" if edf is not None else ""))


def metrics(run: RunInfo, live: dict[str, Any]) -> None:
    evals = live["evals"]
    total = run.total_iterations or run.config.get("iterations") or 0
    c = st.columns(4)
    c[0].metric("status", str(run.status))
    c[1].metric("iteration", f"{live['scalars'].last}/{total}")
    if len(evals) and "test_acc" in evals:
        acc = evals["test_acc"].dropna()
        c[2].metric("test acc", f"{acc.iloc[-1]:.3f}" if len(acc) else "–")
        c[3].metric("best test acc", f"{acc.max():.3f}" if len(acc) else "–")
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
        st.warning(run.error.splitlines()[0][:500])


def scrub(run: RunInfo, live: dict[str, Any], edf) -> None:
    """A slider to pick one iteration (its maximum grows: the value is kept under a shadow
    key and clamped, PITFALLS.md 4), and that iteration's histograms overlaid."""
    ss = st.session_state
    it = live["hist"].iterations
    lo, hi = int(it[0]), int(it[-1])
    ss.setdefault("monitor.follow", True)
    follow = st.toggle("Follow the latest iteration", key="monitor.follow")
    shadow = ss.get("monitor.scrub_value")
    # The slider's state is set before it is drawn: the latest iteration when following,
    # else the remembered choice clamped to the current range.
    ss["monitor.scrub"] = hi if follow or shadow is None else min(max(int(shadow), lo), hi)

    def remember() -> None:
        ss["monitor.scrub_value"] = ss["monitor.scrub"]
        ss["monitor.follow"] = False

    if hi > lo:
        chosen = st.slider("Iteration", lo, hi, key="monitor.scrub", on_change=remember)
    else:
        chosen = hi
    found = s.histogram_at(run.id, int(chosen))
    if found is None:
        return
    at, clean, noisy = found
    fig = histogram_bars(clean, noisy, f"p_i at iteration {at}", edf=edf, revision=f"bars-{run.id}")
    st.plotly_chart(fig, key="monitor.bars", theme="streamlit", width="stretch")


def charts(run: RunInfo, live: dict[str, Any]) -> None:
    sc, ev, hist = live["scalars"].frame, live["evals"], live["hist"]
    if not len(sc) and not len(ev):
        st.info("Nothing logged yet: the run is waiting for a worker (`dm worker`, or `dm up`)."
                if run.status == RunStatus.QUEUED else "Nothing logged yet.")
        return
    left, right = st.columns(2)
    with left:
        series = {label: _col(ev, key) for key, label in (
            ("test_acc", "test"), ("val_acc", "validation (clean)"),
            ("train_acc_corrupted", "train vs corrupted labels"),
            ("train_acc_intact", "train vs intact labels"))} if len(ev) else {}
        series = {k: v for k, v in series.items() if v is not None}
        if series:
            fig = lines_figure(ev["iteration"].to_numpy(), series, "Accuracy", "accuracy",
                               y_range=(0, 1.02), revision=f"acc-{run.id}")
            st.plotly_chart(fig, key="monitor.acc", theme="streamlit", width="stretch")
        else:
            st.caption("Accuracy appears after the first evaluation.")
    with right:
        it = sc["iteration"].to_numpy() if len(sc) else np.zeros(0)
        pm = {label: _col(sc, key) for key, label in (("p_clean_mean", "clean"),
                                                     ("p_noisy_mean", "corrupted"))}
        pm = {k: v for k, v in pm.items() if v is not None}
        if pm:
            fig = lines_figure(it, pm, "Mean p_i of clean vs corrupted examples (Figure 2a)",
                               "mean p_i", colours={"clean": CLEAN, "corrupted": NOISY},
                               y_range=(0, 1.02), revision=f"pmean-{run.id}")
            st.plotly_chart(fig, key="monitor.pmean", theme="streamlit", width="stretch")
    if len(hist.iterations):
        fig = histogram_heatmaps(hist.iterations, hist.clean, hist.noisy,
                                 revision=f"heat-{run.id}")
        st.plotly_chart(fig, key="monitor.heatmap", theme="streamlit", width="stretch")
    left, right = st.columns(2)
    with left:
        if len(hist.iterations):
            scrub(run, live, run_edf(run))
    with right:
        if len(sc) and "weight_var" in sc:
            series = {"emphasis variance (weight variance)": _col(sc, "weight_var")}
            fig = lines_figure(it, series, "Emphasis variance over training", "variance of w_i",
                               revision=f"wvar-{run.id}")
            st.plotly_chart(fig, key="monitor.wvar", theme="streamlit", width="stretch")
        if len(sc) and "loss" in sc:
            # Cross-entropy against the training labels is comparable across methods; a
            # scheme's own loss is a surrogate whose gradient, not value, is designed.
            losses = {"cross-entropy (training labels)": _col(sc, "ce")} if "ce" in sc else {}
            losses["loss (the method's own)"] = _col(sc, "loss")
            fig = loss_lr_figure(it, losses, _col(sc, "lr"))
            st.plotly_chart(fig, key="monitor.loss", theme="streamlit", width="stretch")


# ----------------------------------------------------------------------------- page

st.title("Monitor")
s = store_or_stop()
runs = s.list_runs(limit=500)
if not runs:
    st.info("No runs yet. Queue one on the Launch page.")
    st.stop()

labels = {r.id: f"#{r.id} {r.name}" for r in runs}
wanted = st.session_state.pop("monitor.run_id", None)
if wanted in labels:
    st.session_state["monitor.run"] = wanted
elif st.session_state.get("monitor.run") not in labels:
    running = [r.id for r in runs if r.status == RunStatus.RUNNING]
    st.session_state["monitor.run"] = running[0] if running else runs[0].id
run_id = st.selectbox("Run", list(labels), key="monitor.run", format_func=labels.get)
first = next(r for r in runs if r.id == run_id)
header(first)


@st.fragment(run_every=REFRESH_S if first.status in ACTIVE else None)
def live_view() -> None:
    try:
        run = s.get_run(run_id)
    except RunNotFound:
        st.warning(f"Run #{run_id} was deleted.")
        return
    live = live_state(run)
    fetch_new(s, run, live)
    metrics(run, live)
    charts(run, live)
    if first.status in ACTIVE and run.status not in ACTIVE:
        st.rerun()  # the run ended: redraw the page once, without the timer


live_view()
