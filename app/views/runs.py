"""Runs: every run with its status, name, test accuracy (final, and selected on validation
data) and a link to its Monitor view first (pinned: they stay in view while the table scrolls
sideways, and fit in 1,400 pixels), then what tells runs apart (loss, its parameters, noise,
seed), progress, ETA and error, then id, device, attempt, elapsed time and a link to the
group's Compare view. Every column sorts (click its header); the status, group and loss
filters narrow the list. Cancel, retry, delete, clone into the launch form, open in Monitor
or Compare. Retry from scratch and Delete clear what a run logged, so
both ask for a confirmation first; Resume keeps it.

The table lives in a fragment that refreshes itself every few seconds while anything is
queued or running. Everything else on the page (the run picker's labels, the sidebar's
counts) is drawn by a full run; so when the fragment sees a status differ from the ones the
full run drew, it reruns the whole page, and nothing offers a finished run as running.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app.db import store_or_stop
from app.links import compare_params, monitor_params, page_url
from app.nav import go_to
from app.tables import ACTIVE, SELECTED_TEST, runs_frame
from app.text import md
from dm_core.losses import LOSSES
from dm_store import InvalidTransition, RunInfo, RunNotFound, RunStatus, StoreError
from studio.experiments.verdicts import MISSING

REFRESH_S = 3.0
# What a user looks for first, in this order; pinned so they stay visible when the table
# scrolls sideways. The columns that tell runs apart follow, then everything else.
KEY_COLUMNS = ("status", "name", "test acc", SELECTED_TEST, "monitor")
ACCURACIES = ("test acc", SELECTED_TEST)

COLUMNS = {
    "status": st.column_config.TextColumn("status", width="small", pinned=True),
    "name": st.column_config.TextColumn("name", width="medium", pinned=True,
                                        help="Hover a cell for a name too long to show whole."),
    "test acc": st.column_config.NumberColumn(
        "test acc", width="small", pinned=True,
        help="The final test accuracy (the last evaluation's while the run trains)."),
    SELECTED_TEST: st.column_config.NumberColumn(
        "selected test acc", width="small", pinned=True,
        help="Test accuracy at the evaluation with the best validation accuracy; "
             f"{MISSING} while the run trains or without a validation split."),
    "monitor": st.column_config.LinkColumn("monitor", display_text="open", width="small",
                                           pinned=True,
                                           help="This run on the Monitor page (a new tab)."),
    "loss params": st.column_config.TextColumn("λ/β (loss params)", width="small"),
    "id": st.column_config.NumberColumn("id", width="small"),
    "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0,
                                                format="percent", width="small"),
    "compare": st.column_config.LinkColumn("compare", display_text="group",
                                           help="Its whole group on the Compare page (a new tab)."),
}


def filtered_runs() -> list[RunInfo]:
    ss = st.session_state
    runs = s.list_runs(group=ss.get("runs.group") or None)
    statuses, losses = ss.get("runs.status") or [], ss.get("runs.loss") or []
    return [r for r in runs if (not statuses or str(r.status) in statuses)
            and (not losses or (r.config.get("loss") or {}).get("name") in losses)]


def table(runs: list[RunInfo]) -> pd.DataFrame:
    """The runs frame with the key columns first and a link per run to its views."""
    frame = runs_frame(runs, s.db_now())
    frame["monitor"] = [page_url("monitor", monitor_params(r.id)) for r in runs]
    frame["compare"] = [page_url("compare", compare_params(group=r.group)) for r in runs]
    first = [c for c in KEY_COLUMNS if c in frame.columns]
    return frame[[*first, *(c for c in frame.columns if c not in first)]]


def styled(frame: pd.DataFrame):
    """Accuracies to four decimals and a missing one as —, the numbers underneath kept (the
    column still sorts by them)."""
    return frame.style.format(precision=4, na_rep=MISSING, subset=list(ACCURACIES))


def statuses(runs: list[RunInfo]) -> dict[int, str]:
    return {r.id: str(r.status) for r in runs}


def act(verb: str, ids: list[int], **options) -> None:
    """Apply ``verb`` (cancel, retry, delete) to each run; report what happened to each.
    ``retry`` with ``resume=True`` continues from each run's checkpoint."""
    done, refused = [], []
    for run_id in ids:
        try:
            info = getattr(s, verb)(run_id, **options)
        except (InvalidTransition, RunNotFound, StoreError) as err:
            refused.append(str(err))
            continue
        resumed = verb == "retry" and info.checkpoint_iteration
        done.append(f"#{run_id}" + (f" (from iteration {info.checkpoint_iteration})"
                                    if resumed else ""))
    if done:
        past = {"cancel": "Cancelled (a running run stops at its next heartbeat):",
                "retry": ("Re-queued from the last checkpoint:" if options.get("resume")
                          else "Re-queued from scratch:"),
                "delete": "Deleted"}[verb]
        st.session_state["runs.flash"] = ("success", f"{past} {', '.join(done)}.")
    if refused:
        st.session_state["runs.refused"] = refused


# The actions that destroy what a run logged, and how each is confirmed: (question, the
# confirming button's label). Each verb's pending run ids wait under "runs.confirm_<verb>".
DESTRUCTIVE = {
    "retry": ("Queue {ids} again from scratch? Everything they logged (metrics, histograms, "
              "evaluations, checkpoints) is cleared first. This cannot be undone; Resume keeps "
              "it and continues from the last checkpoint.", "Retry from scratch"),
    "delete": ("Delete {ids} and everything they logged? This cannot be undone.",
               "Delete for good"),
}


def ask_to_confirm(verb: str, ids: list[int]) -> None:
    """Hold ``verb`` on ``ids`` until confirmed; asking for one action withdraws the other."""
    for other in DESTRUCTIVE:
        st.session_state.pop(f"runs.confirm_{other}", None)
    st.session_state[f"runs.confirm_{verb}"] = list(ids)


def confirmation() -> None:
    """The pending destructive action's question, with a button to do it and one not to."""
    for verb, (question, label) in DESTRUCTIVE.items():
        pending = st.session_state.get(f"runs.confirm_{verb}")
        if not pending:
            continue
        st.warning(question.format(ids=", ".join(f"#{i}" for i in pending)))
        y, n, _ = st.columns([1, 1, 4])
        if y.button(label, key=f"runs.{verb}_confirm", type="primary"):
            del st.session_state[f"runs.confirm_{verb}"]
            act(verb, pending)
            st.rerun()
        if n.button("Keep them", key=f"runs.{verb}_abort"):
            del st.session_state[f"runs.confirm_{verb}"]
            st.rerun()


st.title("Runs")
s = store_or_stop()

c1, c2, c3, c4 = st.columns([2, 2, 2, 1], vertical_alignment="bottom")
c1.multiselect("Status", [str(x) for x in RunStatus], key="runs.status", placeholder="all")
c2.selectbox("Group", [None, *s.groups()], key="runs.group",
             format_func=lambda g: "all groups" if g is None else g)
c3.multiselect("Loss", LOSSES.names(), key="runs.loss", placeholder="all")
c4.button("Refresh", key="runs.refresh", icon=":material/refresh:")

runs = filtered_runs()
active = any(r.status in ACTIVE for r in runs)
st.session_state["runs.drawn"] = statuses(runs)  # what this full run shows outside the table


@st.fragment(run_every=REFRESH_S if active else None)
def run_table() -> None:
    current = filtered_runs()
    if statuses(current) != st.session_state.get("runs.drawn"):
        # A run started, finished or appeared since the page was drawn: redraw all of it
        # (the picker's labels, the sidebar's counts, the refresh timer), not just the table.
        st.rerun(scope="app")
    if not current:
        st.info("No runs here yet. Queue some on the Launch page.")
        return
    counts = s.queue_counts()
    st.caption(" · ".join(f"{k}: {v}" for k, v in counts.items()))
    # A NumberColumn draws a missing value as "None" whatever the Styler says; the placeholder
    # makes the browser draw the same dash as the Styler and every other table.
    st.dataframe(styled(table(current)), hide_index=True, width="stretch",
                 column_config=COLUMNS, placeholder=MISSING, key="runs.table")


run_table()

for key in ("runs.flash",):
    if key in st.session_state:
        kind, message = st.session_state.pop(key)
        getattr(st, kind)(message)
for message in st.session_state.pop("runs.refused", []):
    st.warning(md(message))

if runs:
    labels = {r.id: f"#{r.id} {r.name} ({r.status})" for r in runs}
    valid = [i for i in st.session_state.get("runs.selected", []) if i in labels]
    st.session_state["runs.selected"] = valid
    selected = st.multiselect("Select runs", list(labels), key="runs.selected",
                              format_func=labels.get, placeholder="choose runs to act on")
    b = st.columns(7)
    if b[0].button("Cancel", key="runs.cancel", disabled=not selected, icon=":material/stop:"):
        act("cancel", selected)
        st.rerun()
    if b[1].button("Retry…", key="runs.retry", disabled=not selected, icon=":material/replay:",
                   help="Queue again from scratch: everything the run logged is cleared "
                        "(you are asked to confirm)."):
        ask_to_confirm("retry", selected)
    if b[2].button("Resume", key="runs.retry_resume", disabled=not selected,
                   icon=":material/play_arrow:",
                   help="Queue again from the run's last checkpoint: the rows up to it are "
                        "kept, training continues from there."):
        act("retry", selected, resume=True)
        st.rerun()
    if b[3].button("Delete…", key="runs.delete", disabled=not selected, icon=":material/delete:"):
        ask_to_confirm("delete", selected)
    if b[4].button("Clone into Launch", key="runs.clone", disabled=len(selected) != 1,
                   icon=":material/content_copy:"):
        st.session_state["launch.clone"] = s.get_run(selected[0]).config
        go_to("launch")
    if b[5].button("Monitor", key="runs.monitor", disabled=len(selected) != 1,
                   icon=":material/monitoring:"):
        go_to("monitor", monitor_params(selected[0]))
    if b[6].button("Compare", key="runs.compare", disabled=len(selected) < 1,
                   icon=":material/compare_arrows:"):
        go_to("compare", compare_params(selected))

    confirmation()
