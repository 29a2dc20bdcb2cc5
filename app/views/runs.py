"""Runs: every run with its status, progress, device, attempt, elapsed time and ETA; cancel,
retry, delete, clone into the launch form, open in Monitor or Compare.

The table lives in a fragment that refreshes itself every few seconds while anything is
queued or running (a full page rerun only happens for an action).
"""

from __future__ import annotations

import streamlit as st

from app.db import store_or_stop
from app.nav import go_to
from app.tables import ACTIVE, runs_frame
from dm_core.store import InvalidTransition, RunInfo, RunNotFound, RunStatus, StoreError

REFRESH_S = 3.0


COLUMNS = {
    "id": st.column_config.NumberColumn("id", width="small"),
    "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0,
                                                format="percent"),
    "test acc": st.column_config.NumberColumn("test acc", format="%.3f"),
    "error": st.column_config.TextColumn("error", width="medium"),
}


def filtered_runs() -> list[RunInfo]:
    runs = s.list_runs(group=st.session_state.get("runs.group") or None)
    statuses = st.session_state.get("runs.status") or []
    return [r for r in runs if not statuses or str(r.status) in statuses]


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


st.title("Runs")
s = store_or_stop()

c1, c2, c3 = st.columns([2, 2, 1], vertical_alignment="bottom")
c1.multiselect("Status", [str(x) for x in RunStatus], key="runs.status", placeholder="all")
c2.selectbox("Group", [None, *s.groups()], key="runs.group",
             format_func=lambda g: "all groups" if g is None else g)
c3.button("Refresh", key="runs.refresh", icon=":material/refresh:")

runs = filtered_runs()
active = any(r.status in ACTIVE for r in runs)


@st.fragment(run_every=REFRESH_S if active else None)
def run_table() -> None:
    current = filtered_runs()
    if not current:
        st.info("No runs here yet. Queue some on the Launch page.")
        return
    counts = s.queue_counts()
    st.caption(" · ".join(f"{k}: {v}" for k, v in counts.items()))
    st.dataframe(runs_frame(current, s.db_now()), hide_index=True, width="stretch",
                 column_config=COLUMNS, key="runs.table")
    if active and not any(r.status in ACTIVE for r in current):
        st.rerun()  # everything finished: redraw once (actions, sidebar), and stop the timer


run_table()

for key in ("runs.flash",):
    if key in st.session_state:
        kind, message = st.session_state.pop(key)
        getattr(st, kind)(message)
for message in st.session_state.pop("runs.refused", []):
    st.warning(message)

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
    if b[1].button("Retry", key="runs.retry", disabled=not selected, icon=":material/replay:",
                   help="Queue again from scratch: everything the run logged is cleared."):
        act("retry", selected)
        st.rerun()
    if b[6].button("Resume", key="runs.retry_resume", disabled=not selected,
                   icon=":material/play_arrow:",
                   help="Queue again from the run's last checkpoint: the rows up to it are "
                        "kept, training continues from there."):
        act("retry", selected, resume=True)
        st.rerun()
    if b[2].button("Delete…", key="runs.delete", disabled=not selected, icon=":material/delete:"):
        st.session_state["runs.confirm_delete"] = list(selected)
    if b[3].button("Clone into Launch", key="runs.clone", disabled=len(selected) != 1,
                   icon=":material/content_copy:"):
        st.session_state["launch.clone"] = s.get_run(selected[0]).config
        go_to("launch")
    if b[4].button("Monitor", key="runs.monitor", disabled=len(selected) != 1,
                   icon=":material/monitoring:"):
        st.session_state["monitor.run_id"] = selected[0]
        go_to("monitor")
    if b[5].button("Compare", key="runs.compare", disabled=len(selected) < 1,
                   icon=":material/compare_arrows:"):
        st.session_state["compare.run_ids"] = list(selected)
        go_to("compare")

    pending = st.session_state.get("runs.confirm_delete")
    if pending:
        st.warning(f"Delete {', '.join(f'#{i}' for i in pending)} and everything they logged? "
                   "This cannot be undone.")
        y, n, _ = st.columns([1, 1, 4])
        if y.button("Delete for good", key="runs.delete_confirm", type="primary"):
            del st.session_state["runs.confirm_delete"]
            act("delete", pending)
            st.rerun()
        if n.button("Keep them", key="runs.delete_abort"):
            del st.session_state["runs.confirm_delete"]
            st.rerun()
