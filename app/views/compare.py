"""Compare: several runs (or a whole group) side by side.

Curves overlaid (any evaluation or per-iteration scalar), a results table in the paper's
terms — best and final test accuracy, training accuracy against the corrupted and against
the intact labels, the fraction of corrupted examples fitted — taken from each finished
run's stored summary (from its latest evaluation while it still runs), the same numbers
pivoted by noise rate as in the paper's Table 10, and the p_i histograms of the runs at one
iteration. The table downloads as CSV and every chart as a self-contained HTML file.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from app.charts import histograms_grid, overlay_figure
from app.db import store_or_stop
from app.tables import SUMMARY_COLUMNS, method_label, paper_layout, results_table

EVAL_METRICS = {"test_acc": "test accuracy", "val_acc": "validation accuracy (clean split)",
                "train_acc_corrupted": "train accuracy vs corrupted labels",
                "train_acc_intact": "train accuracy vs intact labels",
                "fit_corrupted_subset": "corrupted examples fitted to their wrong label"}
SCALAR_METRICS = {"p_clean_mean": "mean p_i of clean examples",
                  "p_noisy_mean": "mean p_i of corrupted examples",
                  "loss": "training loss", "weight_var": "emphasis variance", "lr": "learning rate"}
MAX_RUNS_HIST = 9


def png_config(name: str) -> dict:
    """The chart toolbar's camera button saves a 2× PNG named after the chart (the browser
    renders it: no extra software on the server)."""
    return {"toImageButtonOptions": {"format": "png", "filename": name, "scale": 2},
            "displaylogo": False}


def html_download(fig, name: str, key: str) -> None:
    st.download_button(f"Download {name} (HTML)", data=lambda: fig.to_html(include_plotlyjs=True),
                       file_name=f"{name}.html", mime="text/html", key=key,
                       icon=":material/download:", on_click="ignore")


st.title("Compare")
s = store_or_stop()
all_runs = s.list_runs(limit=1000)
if not all_runs:
    st.info("No runs yet. Queue some on the Launch page (a method comparison, say).")
    st.stop()

ss = st.session_state
labels = {r.id: f"#{r.id} {r.name} ({r.status})" for r in all_runs}
if "compare.run_ids" in ss:  # from the runs page
    ss["compare.runs"] = [i for i in ss.pop("compare.run_ids") if i in labels]
    ss["compare.group_pick"] = None
groups = s.groups()
if ss.get("compare.group") in groups and "compare.group_pick" not in ss:
    ss["compare.group_pick"] = ss["compare.group"]
c1, c2 = st.columns([1, 2])
group = c1.selectbox("Group", [None, *groups], key="compare.group_pick",
                     format_func=lambda g: "pick runs yourself" if g is None else g)
if group is not None:
    chosen = [r for r in all_runs if r.group == group]
    c2.caption(f"{len(chosen)} runs in group {group}")
else:
    ss["compare.runs"] = [i for i in ss.get("compare.runs", []) if i in labels]
    ids = c2.multiselect("Runs", list(labels), key="compare.runs", format_func=labels.get)
    chosen = [r for r in all_runs if r.id in ids]
if not chosen:
    st.info("Choose a group or some runs.")
    st.stop()
chosen.sort(key=lambda r: r.id)

evals = {r.id: s.evals(r.id) for r in chosen}
names = {r.id: f"#{r.id} {method_label(r.config)}" for r in chosen}

st.subheader("Results")
table = results_table(chosen, evals)
st.dataframe(table, hide_index=True, width="stretch", key="compare.table",
             column_config={v: st.column_config.NumberColumn(v, format="%.4f")
                            for v in SUMMARY_COLUMNS.values()})
st.download_button("Download table (CSV)", data=table.to_csv(index=False).encode(),
                   file_name="dm-compare.csv", mime="text/csv", key="compare.csv",
                   icon=":material/download:", on_click="ignore")
if table["noise rate"].nunique() > 1 or table["method"].nunique() > 1:
    st.markdown("**Best / final test accuracy by method and noise rate** (mean over seeds), "
                "as in the paper's Table 10")
    st.dataframe(paper_layout(table), width="stretch", key="compare.paper")

st.subheader("Curves")
st.caption("Charts export as self-contained HTML below each one; for a PNG use the camera icon "
           "in a chart's toolbar (rendered by your browser: no extra software).")
options = list(EVAL_METRICS) + list(SCALAR_METRICS)
metric = st.selectbox("Metric", options, key="compare.metric",
                      format_func=lambda m: {**EVAL_METRICS, **SCALAR_METRICS}[m])
curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
for r in chosen:
    frame = evals[r.id] if metric in EVAL_METRICS else s.scalars(r.id, max_points=2000)
    if len(frame) and metric in frame:
        curves[names[r.id]] = (frame["iteration"].to_numpy(), frame[metric].to_numpy(dtype=np.float64))
if curves:
    label = {**EVAL_METRICS, **SCALAR_METRICS}[metric]
    fig = overlay_figure(curves, label, label,
                         y_range=(0, 1.02) if metric in EVAL_METRICS or metric.startswith("p_") else None,
                         revision=f"compare-{metric}")
    st.plotly_chart(fig, key="compare.curves", theme="streamlit", width="stretch",
                    config=png_config(f"compare-{metric}"))
    html_download(fig, f"compare-{metric}", "compare.curves_html")
else:
    st.caption(f"None of these runs has logged {metric} yet.")

st.subheader("p_i histograms at one iteration")
logged = [r for r in chosen if r.iteration > 0]
if logged:
    common = min(r.iteration for r in logged)
    shown = logged[:MAX_RUNS_HIST]
    if len(logged) > MAX_RUNS_HIST:
        st.caption(f"Showing the first {MAX_RUNS_HIST} runs.")
    if common > 1:
        # The maximum grows while runs train, which resets a keyed slider (PITFALLS.md 4):
        # the choice lives under a shadow key, clamped to the range before the slider is drawn.
        shadow = ss.get("compare.iteration_value")
        ss["compare.iteration"] = common if shadow is None else min(max(int(shadow), 1), common)

        def remember() -> None:
            ss["compare.iteration_value"] = ss["compare.iteration"]

        it = st.slider("Iteration", 1, common, key="compare.iteration", on_change=remember,
                       help="The latest iteration every chosen run has reached is the maximum.")
    else:
        it = common
    items = []
    for r in shown:
        found = s.histogram_at(r.id, int(it))
        if found is not None:
            at, clean, noisy = found
            items.append((f"{names[r.id]} @ {at}", clean, noisy))
    if items:
        fig = histograms_grid(items)
        st.plotly_chart(fig, key="compare.hists", theme="streamlit", width="stretch",
                        config=png_config(f"compare-histograms-{it}"))
        html_download(fig, f"compare-histograms-{it}", "compare.hists_html")
else:
    st.caption("No histograms yet.")
