"""Compare: several runs (or a whole group) side by side.

- **Results**: one row per run, in the paper's terms under a fair protocol: the test accuracy
  at the evaluation with the best validation accuracy ("selected", ``dm_core.selection``;
  ``—`` without a validation split), the final one, and the maximum over test evaluations,
  labelled optimistic (it picks its iteration on the test set); training accuracy against the
  corrupted and against the intact labels, the fraction of corrupted examples fitted; from
  each finished run's stored summary (its evaluations so far while it still runs), with the
  setting each run belongs to; as CSV too.
- **One notation** for every value over seeds, in tables, messages and charts alike: mean ±
  sample std with n, ``0.9615 ± 0.0054 (n=3)`` (``app.runsets.spread_cell``); a missing value
  is ``—`` in every table.
- **Ranked by validation accuracy**: the settings ordered by their mean selected validation
  accuracy. The top one is named the winner, with its selected test accuracy, only when it
  beats every other setting under the studio's one rule for verdicts
  (``studio.experiments.verdicts.best_of``: Welch's test over seeds, Holm-corrected, α =
  0.05); with one seed, a tie or an overlap the page says which settings it cannot tell
  apart, with n and p. Nothing on this page ranks runs by a test number.
- **Mean over seeds**: the same numbers pooled over seed replicates only: runs that differ in
  anything but their seed are separate rows, labelled by what differs (``app.runsets``); by
  noise rate, as the paper's Table 10, when the noise rate varies.
- **Landscape**: a metric over the parameters the runs sweep (``app.landscape``): a heatmap,
  points, a line or parallel coordinates, with mean ± std over seeds and diverged runs marked;
  for a method comparison, one point per method (per noise rate when the runs span several)
  with its sample std as an error bar.
- **Curves** of any evaluation or per-iteration scalar overlaid, smoothed or on a log scale,
  by iteration or by fraction of training.
- **p_i histograms** of the runs at one point of training, side by side or overlaid.

The URL names the view (``?runs=3,4`` or ``?group=NAME``) and every control that shapes it
(``app.links``): the curves' metric, x axis, smoothing and log y axis
(``&metric=loss&x=fraction&smooth=0.6&log=1``), the landscape's metric
(``&landscape=diverged``), the value of the table by noise rate (``&by_rate=test_acc_final``)
and the histograms' (``&mode=overlaid&align=fraction&pct=40`` or ``&it=400``); a control at
its default is left out. Reloading it or sharing it opens the same view; a link's invalid
value is refused with a warning. The group
shown last stays linked in the sidebar. Charts export as HTML (a download button) and PNG (the
chart's camera button).
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from app.charts import (
    CurveStyle,
    histogram_overlay,
    histograms_grid,
    landscape_figure,
    overlay_figure,
)
from app.curves import ALIGNMENTS, training_fraction
from app.db import runs_or_stop, store_or_stop
from app.downloads import csv_download
from app.examples_links import examples_links
from app.landscape import METRICS, RATE_KEY, build_landscape, cells_frame
from app.links import (
    compare_params,
    linked_view,
    opened_by_link,
    read_compare_view,
    read_group,
    read_runs,
    show_params,
)
from app.nav import remember_group
from app.runsets import (
    SPREAD_DIGITS,
    pivot_by,
    result_columns,
    run_labels,
    seed_spread_table,
    seed_table,
    seed_values,
    settings,
    spread_cell,
)
from app.tables import (
    FINAL_TEST,
    NUMBER_COLUMNS,
    RESULT_KEYS,
    SELECTED_TEST,
    SELECTED_VAL,
    ranked_by_validation,
    results_table,
    shown,
    with_no_validation_marked,
)
from app.text import md
from app.widgets import curve_controls, set_curve_controls
from dm_store import RunInfo
from studio.experiments.verdicts import ALPHA, Sample, best_of

EVAL_METRICS = {"test_acc": "test accuracy", "val_acc": "validation accuracy (clean split)",
                "train_acc_corrupted": "train accuracy vs corrupted labels",
                "train_acc_intact": "train accuracy vs intact labels",
                "fit_corrupted_subset": "corrupted examples fitted to their wrong label"}
SCALAR_METRICS = {"p_clean_mean": "mean p_i of clean examples",
                  "p_noisy_mean": "mean p_i of corrupted examples",
                  "loss": "training loss", "weight_var": "emphasis variance", "lr": "learning rate"}
CURVE_METRICS = {**EVAL_METRICS, **SCALAR_METRICS}  # the first is the default
MAX_RUNS_HIST = 9
PAGE = "compare"


def png_config(name: str) -> dict:
    """The chart toolbar's camera button saves a 2× PNG named after the chart (the browser
    renders it: no extra software on the server)."""
    return {"toImageButtonOptions": {"format": "png", "filename": name, "scale": 2},
            "displaylogo": False}


def html_download(fig, name: str, key: str) -> None:
    st.download_button(f"Download {name} (HTML)", data=lambda: fig.to_html(include_plotlyjs=True),
                       file_name=f"{name}.html", mime="text/html", key=key,
                       icon=":material/download:", on_click="ignore")


def total_iterations(run: RunInfo) -> int:
    return int(run.total_iterations or run.config.get("iterations") or max(run.iteration, 1))


# ----------------------------------------------------------------------------- selection

def open_link(query: dict[str, str]) -> None:
    """Set every control of the view as a link (or the view last shown here) asks for: the
    curves', the landscape's, the table by noise rate's and the histograms'; a control the
    link leaves out is back at its default, a refused part is named in a warning."""
    view = read_compare_view(query, metrics=list(CURVE_METRICS), landscapes=list(METRICS),
                             rate_values=list(RESULT_KEYS))
    for warning in view.warnings:
        st.warning(md(warning))
    ss = st.session_state
    set_curve_controls("compare.curves", view.smoothing, view.log_y, view.x_fraction)
    ss["compare.hist_view"] = "overlaid" if view.overlaid else "side by side"
    ss["compare.hist_align"] = "fraction" if view.fraction else "iteration"
    for key, value in (("compare.metric", view.metric),
                       ("compare.landscape_metric", view.landscape),
                       ("compare.pivot_value", RESULT_KEYS.get(view.by_rate or "")),
                       ("compare.iteration_value", view.iteration),
                       ("compare.percent_value", view.percent)):
        if value is None:
            ss.pop(key, None)
        else:
            ss[key] = value


def view_params(group: str | None, chosen: list[RunInfo], drawn: dict) -> dict[str, str]:
    """The URL of the view on screen: the group or the runs, the controls the sections
    ``drawn`` (as ``compare_params`` arguments, a choice at its default left out), and the
    histograms' controls (an iteration or a percentage only once the user picked one; else
    the latest)."""
    ss = st.session_state
    fraction = ss.get("compare.hist_align") == "fraction"
    return compare_params([r.id for r in chosen], group,
                          overlaid=ss.get("compare.hist_view") == "overlaid", fraction=fraction,
                          iteration=ss.get("compare.iteration_value"),
                          percent=ss.get("compare.percent_value"), **drawn)


def choose_runs(all_runs: list[RunInfo], groups: list[str]) -> tuple[str | None, list[RunInfo]]:
    """The group or the runs to compare: from the URL when the page was opened by a link
    (or, opened from the sidebar, the view it last showed; or a handover from the Runs
    page), else from the widgets."""
    ss = st.session_state
    labels = {r.id: f"#{r.id} {r.name} ({r.status})" for r in all_runs}
    if "compare.run_ids" in ss:  # handed over by another page in this session
        ss["compare.runs"] = [i for i in ss.pop("compare.run_ids") if i in labels]
        ss["compare.group_pick"] = None
    elif opened_by_link(PAGE) or "compare.group_pick" not in ss:
        # Also when the URL is the one this page wrote but its widgets' values are gone: the
        # session drops them while other pages run (a link back, e.g. the sidebar's group).
        query = linked_view(PAGE)
        group, ids = read_group(query), read_runs(query)
        if group in groups:
            ss["compare.group_pick"] = group
        elif ids is not None:
            ss["compare.runs"] = [i for i in ids if i in labels]
            ss["compare.group_pick"] = None
        open_link(query)
    if ss.get("compare.group") in groups and "compare.group_pick" not in ss:
        ss["compare.group_pick"] = ss["compare.group"]  # the group the Launch page queued
    if ss.get("compare.group_pick") not in (None, *groups):
        ss["compare.group_pick"] = None
    c1, c2 = st.columns([1, 2])
    group = c1.selectbox("Group", [None, *groups], key="compare.group_pick",
                         format_func=lambda g: "pick runs yourself" if g is None else g)
    if group is not None:
        chosen = [r for r in all_runs if r.group == group]
        c2.caption(f"{len(chosen)} runs in group {md(group)}")
        remember_group(group)
    else:
        ss["compare.runs"] = [i for i in ss.get("compare.runs", []) if i in labels]
        ids = c2.multiselect("Runs", list(labels), key="compare.runs", format_func=labels.get)
        chosen = [r for r in all_runs if r.id in ids]
    return group, sorted(chosen, key=lambda r: r.id)


# ----------------------------------------------------------------------------- sections

def results_section(chosen: list[RunInfo], evals: dict) -> dict[str, str]:
    """The results tables; returns the table by noise rate's value for the URL when it is
    drawn and not at its default (``{"by_rate": key}``)."""
    st.subheader("Results")
    st.caption("Selected: the test accuracy at the evaluation with the best validation "
               "accuracy (— when the run held out no validation split, dataset.val_fraction "
               "= 0). Best (optimistic) picks its evaluation on the test set itself: for "
               "comparison with published tables only.")
    table = results_table(chosen, evals)
    labels = run_labels(chosen)
    table.insert(2, "setting", [labels[i] for i in table["id"]])
    st.dataframe(shown(with_no_validation_marked(table), NUMBER_COLUMNS), hide_index=True,
                 width="stretch", key="compare.table")
    csv_download(table, "dm-compare", "compare.csv")

    pooled = seed_table(table, chosen)
    ranking_section(table, chosen, pooled)
    if (pooled["runs"] > 1).any():
        st.markdown("**Mean over seeds** (only runs that differ in nothing but the seed are "
                    "pooled; each cell: mean ± sample standard deviation (n = seeds with a "
                    "value), the std left out below two seeds)")
        spread = seed_spread_table(table, chosen)
        st.dataframe(shown(spread, ()), hide_index=True, width="stretch", key="compare.seeds")
        csv_download(spread, "dm-compare-seeds", "compare.seeds_csv", "Download mean over seeds (CSV)")
    if table["noise rate"].nunique() <= 1:
        return {}
    values = result_columns(table)
    default = SELECTED_TEST if table[SELECTED_TEST].notna().any() else FINAL_TEST
    if st.session_state.get("compare.pivot_value") not in values:  # a link's, or none yet
        st.session_state["compare.pivot_value"] = default
    value = st.selectbox("By noise rate, as the paper's Table 10", values, key="compare.pivot_value",
                         help="Mean ± std over the seeds of each setting at each noise rate.")
    st.dataframe(pivot_by(table, chosen, value), width="stretch", key="compare.paper")
    keys = {label: key for key, label in RESULT_KEYS.items()}
    return {"by_rate": keys[value]} if value != default and value in keys else {}


def ranking_section(table, chosen: list[RunInfo], pooled) -> None:
    """The settings by mean selected validation accuracy (``app.tables.ranked_by_validation``
    over the seed-pooled ``pooled``), shown when at least two settings have a validation
    accuracy. The top setting is named the winner only when ``best_of`` says it beats every
    other one on its seeds' selected validation accuracies (``app.runsets.seed_values``);
    otherwise the page says which settings it cannot tell apart, and why."""
    ranked = ranked_by_validation(pooled)
    if len(ranked) < 2:
        return
    validation = seed_values(table, chosen, SELECTED_VAL)
    test = seed_values(table, chosen, SELECTED_TEST)
    best = best_of({label: Sample.of(validation[label]) for label in ranked["setting"]})
    rule = (f"Welch's t-test over seeds, Holm-corrected across the settings, α = {ALPHA:g}: a "
            "setting is named only when it beats every other one")
    st.markdown("**Ranked by validation accuracy** (mean over seeds of each run's best "
                "validation accuracy; its test accuracy is read at that same evaluation; each "
                "cell: mean ± sample standard deviation (n = seeds))")
    if best.name is not None:
        st.success(f"Highest validation accuracy: **{md(best.name)}**, "
                   f"{spread_cell(best.sample)} on validation, ahead of every other "
                   f"setting ({best.lead_text(nested=True)}); selected test accuracy "
                   f"{spread_cell(test[best.name])}. {rule}.",
                   icon=":material/trophy:")
    else:
        st.info(f"No winner: on validation, "
                f"{md(best.tie_text(percent=False, digits=SPREAD_DIGITS))}. {rule}; more "
                "seeds make the test sharper.", icon=":material/balance:")
    spread = seed_spread_table(table, chosen, (SELECTED_VAL, SELECTED_TEST, FINAL_TEST))
    shown_ranked = spread.set_index("setting").loc[list(ranked["setting"])].reset_index()
    st.dataframe(shown(shown_ranked, ()), hide_index=True, width="stretch",
                 key="compare.ranking")


def landscape_section(group: str | None, chosen: list[RunInfo], evals: dict) -> dict[str, str]:
    """The landscape of two settings or more; returns its metric for the URL when it is
    drawn and not the default (``{"landscape": metric}``)."""
    if len(settings(chosen)) < 2:
        return {}
    st.subheader("Landscape")
    metric = st.selectbox("Metric", list(METRICS), key="compare.landscape_metric",
                          format_func=METRICS.get,
                          help="Over the parameters these runs sweep, mean ± std over seeds. "
                               "Selected: test accuracy at the evaluation with the best "
                               "validation accuracy (needs dataset.val_fraction > 0).")
    drawn = {"landscape": metric} if metric != next(iter(METRICS)) else {}
    land = build_landscape(chosen, evals, metric)
    title = METRICS[metric] + (f" — group {group}" if group is not None else "")
    fig = landscape_figure(land, title)
    if fig is None:
        return drawn
    st.plotly_chart(fig, key="compare.landscape", theme="streamlit", width="stretch",
                    config=png_config(f"landscape-{metric}"))
    if land.compares_methods:
        rates = any(a.key == RATE_KEY for a in land.axes)
        st.caption(f"{len(land.cells)} settings: one point per method"
                   + (", coloured by noise rate" if rates else "")
                   + ", at its mean over seeds, the error bar its sample standard deviation "
                     "(none below two seeds; n in the hover and the table). ⊗ marks a method "
                     "with diverged runs, which are left out of its mean.")
    else:
        shape = ("a heatmap (a full grid)" if land.full else
                 "parallel coordinates (one line per setting)" if len(land.axes) > 2 else
                 "points (the grid has holes: nothing is interpolated between them)"
                 if len(land.axes) == 2 else "one line")
        st.caption(f"{len(land.cells)} settings over {len(land.axes)} parameter(s), drawn as "
                   f"{shape}. ✕ marks settings with diverged runs, which are left out of the "
                   "mean.")
    html_download(fig, f"landscape-{metric}", "compare.landscape_html")
    cells = cells_frame(land)
    st.dataframe(shown(cells, ()), hide_index=True, width="stretch", key="compare.cells")
    csv_download(cells, f"landscape-{metric}", "compare.cells_csv", "Download landscape table (CSV)")
    return drawn


def curves_section(s, chosen: list[RunInfo], evals: dict) -> dict:
    """The curves of one metric over the runs; returns their controls for the URL
    (``compare_params`` arguments)."""
    st.subheader("Curves")
    st.caption("Charts export as self-contained HTML below each one; for a PNG use the camera "
               "icon in a chart's toolbar (rendered by your browser: no extra software).")
    metric = st.selectbox("Metric", list(CURVE_METRICS), key="compare.metric",
                          format_func=CURVE_METRICS.get)
    align, style = curve_controls("compare.curves", align=True)
    drawn = {"metric": metric if metric != next(iter(CURVE_METRICS)) else None,
             "x_fraction": align == "fraction", "smoothing": style.smoothing,
             "log_y": style.log_y}
    if metric == "lr":
        style = CurveStyle(style.smoothing, log_y=True)  # schedules step the rate by factors
    labels = run_labels(chosen)
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for r in chosen:
        frame = evals[r.id] if metric in EVAL_METRICS else s.scalars(r.id, max_points=2000)
        if len(frame) and metric in frame:
            x = frame["iteration"].to_numpy()
            if align == "fraction":
                x = training_fraction(x, total_iterations(r))
            curves[labels[r.id]] = (x, frame[metric].to_numpy(dtype=np.float64))
    if not curves:
        st.caption(f"None of these runs has logged {metric} yet.")
        return drawn
    label = CURVE_METRICS[metric]
    bounded = metric in EVAL_METRICS or metric.startswith("p_")
    fig = overlay_figure(curves, label, label, y_range=(0, 1.02) if bounded else None,
                         revision=f"compare-{metric}-{align}", x_title=ALIGNMENTS[align],
                         style=style)
    st.plotly_chart(fig, key="compare.curves", theme="streamlit", width="stretch",
                    config=png_config(f"compare-{metric}"))
    html_download(fig, f"compare-{metric}", "compare.curves_html")
    return drawn


def histogram_point(logged: list[RunInfo], align: str) -> dict[int, int] | None:
    """The iteration to show for each run: one iteration every run has reached, or one
    fraction of training (each run at that fraction of its own length). The slider's
    maximum grows while runs train, which resets a keyed slider (docs/architecture.md,
    Streamlit sliders): the choice lives under a shadow key, clamped before drawing."""
    ss = st.session_state
    if align == "iteration":
        common = min(r.iteration for r in logged)
        if common <= 1:
            return {r.id: common for r in logged}
        shadow = ss.get("compare.iteration_value")
        ss["compare.iteration"] = common if shadow is None else min(max(int(shadow), 1), common)
        it = st.slider("Iteration", 1, common, key="compare.iteration",
                       on_change=lambda: ss.update({"compare.iteration_value": ss["compare.iteration"]}),
                       help="The latest iteration every chosen run has reached is the maximum.")
        return {r.id: int(it) for r in logged}
    reached = min(100 * r.iteration // total_iterations(r) for r in logged)
    if reached < 2:
        st.caption("Not every run has reached 2% of its training yet.")
        return None
    shadow = ss.get("compare.percent_value")
    ss["compare.percent"] = reached if shadow is None else min(max(int(shadow), 1), reached)
    pct = st.slider("Fraction of training (%)", 1, reached, key="compare.percent",
                    on_change=lambda: ss.update({"compare.percent_value": ss["compare.percent"]}),
                    help="Each run at this fraction of its own planned iterations; the "
                         "maximum is the least progress among the chosen runs.")
    return {r.id: max(1, round(pct / 100 * total_iterations(r))) for r in logged}


def histograms_section(s, chosen: list[RunInfo]) -> None:
    st.subheader("p_i histograms at one point of training")
    logged = [r for r in chosen if r.iteration > 0]
    if not logged:
        st.caption("No histograms yet.")
        return
    shown = logged[:MAX_RUNS_HIST]
    if len(logged) > MAX_RUNS_HIST:
        st.caption(f"Showing the first {MAX_RUNS_HIST} runs.")
    c1, c2 = st.columns(2)
    align = c1.radio("Align runs by", list(ALIGNMENTS), key="compare.hist_align",
                     horizontal=True, format_func=ALIGNMENTS.get)
    view = c2.radio("Show", ["side by side", "overlaid"], key="compare.hist_view",
                    horizontal=True,
                    help="Overlaid: every run's clean (solid) and corrupted (dashed) examples "
                         "on one axis.")
    where = histogram_point(shown, align)
    if where is None:
        return
    labels = run_labels(chosen)
    items = []
    for r in shown:
        found = s.histogram_at(r.id, where[r.id])
        if found is not None:
            at, clean, noisy = found
            items.append((f"{labels[r.id]} @ {at}", clean, noisy))
    if not items:
        return
    name = (f"compare-histograms-{where[shown[0].id]}" if align == "iteration" else
            f"compare-histograms-{st.session_state.get('compare.percent')}pct")
    if view == "overlaid":
        fig = histogram_overlay(items, "p_i of clean (solid) and corrupted (dashed) examples")
    else:
        fig = histograms_grid(items)
    st.plotly_chart(fig, key="compare.hists", theme="streamlit", width="stretch",
                    config=png_config(name))
    html_download(fig, name, "compare.hists_html")


# ----------------------------------------------------------------------------- page

st.title("Compare")
s = store_or_stop()
all_runs = runs_or_stop(s, 1000, "No runs yet. Queue some on the Launch page (a method comparison, say).")

group, chosen = choose_runs(all_runs, s.groups())
if not chosen:
    show_params(PAGE, {})
    st.info("Choose a group or some runs.")
    st.stop()

evals = {r.id: s.evals(r.id) for r in chosen}
drawn = results_section(chosen, evals)
examples_links(r.id for r in chosen)
drawn |= landscape_section(group, chosen, evals)
drawn |= curves_section(s, chosen, evals)
histograms_section(s, chosen)
show_params(PAGE, view_params(group, chosen, drawn))  # after the controls it names were drawn
