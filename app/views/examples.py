"""Examples: which training examples a run's scheme emphasises, and whether its per-example
statistics find the mislabelled ones.

- **Data map** (dataset cartography): every training example at (variability, confidence),
  blue clean, red corrupted, sized by its share of the gradient.
- **Suspects**: the examples most likely mislabelled by the chosen statistic, with their
  images for image datasets and every statistic.
- **Detection over training**: each statistic's AUROC at flagging the corrupted examples,
  per stored snapshot.
- **Against another run** on the same data and seed: both runs' shares of the gradient, and
  the examples one scheme down-weights while the other does not.

A snapshot is stored at every evaluation (``dm_core.example_stats``); the picker chooses one.
The URL names the run (``?run=N``). The computations live in ``app.examples_view`` and
``studio.suspects``; ``dm examples`` prints the same rankings.
"""

from __future__ import annotations

import json

import streamlit as st

from app.charts.examples import data_map_figure, detection_figure, shares_figure
from app.db import runs_or_stop, store_or_stop
from app.examples_view import (
    DOWN,
    THUMBNAIL_ROWS,
    batch_size,
    down_weighted,
    image_dataset,
    parse_run_link,
    relative_share,
    same_data_runs,
    suspects_table,
    thumbnails,
)
from app.links import opened_by_link, show_params
from app.text import md
from dm_store import RunNotFound
from studio.suspects import DEFAULT_STATISTIC, detection_over_training, load_examples

PAGE = "examples"
TOP = 100  # rows of the suspects table


@st.cache_resource(show_spinner="Loading the training images…", max_entries=2)
def training_images(config_json: str):
    """The run's training inputs, shared by every session (no copy per rerun)."""
    return image_dataset(json.loads(config_json))


def choose_run(runs: list) -> int:
    """The run from the link when the page was opened by one (an invalid or missing run is
    said so), else the one chosen before, else the newest."""
    ss = st.session_state
    labels = {r.id: f"#{r.id} {r.name} ({r.status})" for r in runs}
    if opened_by_link(PAGE):
        linked, refused = parse_run_link(st.query_params.get("run"))
        if refused:
            st.warning(refused)
        elif linked is not None and linked not in labels:
            try:
                runs.append(s.get_run(linked))
                labels[linked] = f"#{linked} {runs[-1].name} ({runs[-1].status})"
            except RunNotFound:
                st.warning(f"Run #{linked} of this link does not exist (it may have been deleted).")
                linked = None
        if linked is not None:
            ss["examples.run"] = linked
    if ss.get("examples.run") not in labels:
        ss["examples.run"] = runs[0].id
    return st.selectbox("Run", list(labels), key="examples.run", format_func=labels.get)


def suspects(examples, by: str) -> None:
    st.subheader(f"Most suspect by {by}")
    images = training_images(json.dumps(run.config, sort_keys=True))
    urls = None
    if images is not None and len(images) == len(examples.label):
        urls = thumbnails(images, examples.ranking(by)[:THUMBNAIL_ROWS])
    st.dataframe(suspects_table(examples, by, TOP, urls), hide_index=True, width="stretch",
                 key="examples.suspects",
                 column_config={"image": st.column_config.ImageColumn("image", width="small")})


def against_another(examples, chosen: int) -> None:
    st.subheader("Against another run on the same data")
    others = [r for r in same_data_runs(run, all_runs) if s.example_iterations(r.id)]
    if not others:
        st.caption("No other run with a snapshot was trained on this dataset, noise and seed.")
        return
    names = {r.id: f"#{r.id} {r.name}" for r in others}
    other_id = st.selectbox("Other run (same dataset, noise and seed)", list(names),
                            format_func=names.get, key="examples.other")
    other = next(r for r in others if r.id == other_id)
    try:
        theirs = load_examples(s, other_id, chosen)
    except ValueError as err:
        st.info(md(err))
        return
    mine_b, theirs_b = batch_size(run), batch_size(other)
    st.caption(f"Both at their snapshot at or before iteration {chosen} (#{run.id}: "
               f"{examples.iteration}, #{other.id}: {theirs.iteration}). A share is relative to an "
               f"equal one (1 = every example of the batch weighed the same).")
    st.plotly_chart(shares_figure(relative_share(examples, mine_b), relative_share(theirs, theirs_b),
                                  examples.corrupted, f"#{run.id}", f"#{other.id}"),
                    key="examples.shares", width="stretch")
    left, right = st.columns(2)
    for col, (a, ab, b, bb, ra, rb) in zip((left, right), (
            (examples, mine_b, theirs, theirs_b, run, other),
            (theirs, theirs_b, examples, mine_b, other, run)), strict=True):
        rows = down_weighted(a, ab, b, bb)
        with col:
            st.markdown(f"**#{ra.id} down-weights, #{rb.id} does not** — {len(rows)} examples "
                        f"({int(rows['corrupted'].sum())} corrupted): under {DOWN:g}× an equal "
                        f"share in #{ra.id}, at least 1× in #{rb.id}")
            st.dataframe(rows.rename(columns={"share_a": f"share #{ra.id}", "share_b": f"share #{rb.id}"}),
                         hide_index=True, width="stretch", key=f"examples.down.{ra.id}", height=260)


st.title("Examples")
s = store_or_stop()
all_runs = runs_or_stop(s, 500, "No runs yet. Queue one on the Launch page.")
run_id = choose_run(all_runs)
show_params(PAGE, {"run": str(run_id)})
run = next(r for r in all_runs if r.id == run_id)
iterations = s.example_iterations(run_id)
if not iterations:
    st.info(f"Run #{run_id} has no per-example snapshot yet: one is stored at each evaluation "
            f"({run.status}).")
    st.stop()
left, right = st.columns([2, 1])
with left:
    chosen = iterations[0] if len(iterations) == 1 else st.select_slider(
        "Snapshot (iteration)", options=iterations, value=iterations[-1],
        key=f"examples.iteration.{run_id}")
examples = load_examples(s, run_id, chosen)
with right:
    by = st.selectbox("Rank by", examples.statistics, key="examples.by",
                      index=examples.statistics.index(DEFAULT_STATISTIC))
found = examples.detection()
k = int(examples.corrupted.sum())
cols = st.columns(4)
cols[0].metric("training examples", f"{len(examples.label):,}")
cols[1].metric("corrupted", f"{k:,}")
cols[2].metric(f"AUROC of {by}", f"{found['auroc'][by]:.3f}")
cols[3].metric(f"precision@{k} of {by}", f"{found['precision_at_k'][by]:.3f}")

st.subheader("Data map")
st.caption("Every training example at (variability, confidence) of the p its label got over "
           "training; the size grows with its share of the gradient.")
st.plotly_chart(data_map_figure(examples.snapshot["variability"], examples.snapshot["confidence"],
                                examples.corrupted, relative_share(examples, batch_size(run))),
                key="examples.map", width="stretch")
suspects(examples, by)
st.subheader("Detection over training")
st.plotly_chart(detection_figure(detection_over_training(s, run_id), chosen),
                key="examples.auroc", width="stretch")
against_another(examples, chosen)
