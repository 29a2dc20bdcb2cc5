"""Links from other pages to the Examples page of a run (``examples?run=N``)."""

from __future__ import annotations

from collections.abc import Iterable

import streamlit as st

from app.links import page_url
from app.nav import page_link


def examples_link(run_id: int) -> None:
    """A link to this run's training examples (the Monitor's)."""
    page_link("examples", f"Training examples of run #{run_id}: suspects, data map",
              {"run": str(run_id)})


def examples_links(run_ids: Iterable[int]) -> None:
    """One line of links, one per run, to each run's training examples (the Compare page's):
    relative URLs, so they work whether or not the page runs inside the navigation."""
    links = [f"[#{i}]({page_url('examples', {'run': str(i)})})" for i in run_ids]
    if links:
        st.markdown("Training examples of each run: " + " · ".join(links))
