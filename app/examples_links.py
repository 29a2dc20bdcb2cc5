"""Links from other pages to the Examples page of a run (``examples?run=N``)."""

from __future__ import annotations

from collections.abc import Iterable

import streamlit as st

from app.nav import page_link


def examples_link(run_id: int) -> None:
    """A link to this run's training examples (the Monitor's)."""
    page_link("examples", f"Training examples of run #{run_id}: suspects, data map",
              {"run": str(run_id)})


def examples_links(run_ids: Iterable[int]) -> None:
    """One link per run to its training examples (the Compare page's), through the navigation's
    page links like every other link between pages: never Markdown built from text."""
    ids = list(run_ids)
    if not ids:
        return
    st.caption("Training examples of each run:")
    columns = st.columns(min(len(ids), 6))
    for i, run_id in enumerate(ids):
        with columns[i % len(columns)]:
            page_link("examples", f"#{run_id}", {"run": str(run_id)})
