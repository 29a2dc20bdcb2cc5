"""DM Studio's dashboard: page config, sidebar and navigation (run with ``dm up``, or
``streamlit run app/streamlit_app.py`` with ``DM_DATABASE_URL`` set).

Each page is its own file in ``app/views/`` and runs on its own too (that is how the tests
drive them); this file only signs the session in (``app.auth``: ``DM_PASSWORD`` or an OIDC
``[auth]`` section, with its allowlist of accounts) and routes between them. Until the
session is signed in (and allowed), the sign-in page (or the refusal) is the only page there is.

The folder is deliberately NOT called ``pages/``: beside the entry file, Streamlit takes a
``pages/`` folder for an old-style multipage app, and until the first session of a fresh
server has called ``st.navigation`` it runs ``pages/x.py`` for a request of ``/x`` without
this file -- without the sign-in (tests/test_app_auth.py checks every page's URL).
"""

from __future__ import annotations

import streamlit as st

from app.auth import requested_before_sign_in, require_login
from app.db import database_url, store
from app.nav import BY_KEY, PAGES, last_group_link
from app.text import md
from dm_store import StoreError, mask_url

st.set_page_config(page_title="DM Studio", page_icon=":material/tune:", layout="wide")
require_login()  # st.stop()s with the sign-in page unless this session may come in

pages = [st.Page(p.path, title=p.title, icon=p.icon, default=p.key == "home",
                 url_path="" if p.key == "home" else p.key) for p in PAGES]
navigation = st.navigation(pages)
wanted = requested_before_sign_in()
if wanted is not None and wanted[0] in BY_KEY:  # a link opened before signing in
    st.switch_page(BY_KEY[wanted[0]].path, query_params=wanted[1])


COUNTS = "nav.counts"  # the sidebar's queue counts as last read: (st method, text)


def show_sidebar_state(counts_slot, group_slot, fresh: bool) -> None:
    """How many runs are in each status, and the link to the group viewed last, into the
    sidebar's slots: the counts read from the store when ``fresh``, else as last read."""
    ss = st.session_state
    if fresh:
        try:
            counts = store().queue_counts()
            ss[COUNTS] = ("caption", " · ".join(f"{k} {v}" for k, v in counts.items() if v)
                          or "no runs yet")
        except StoreError as err:
            ss[COUNTS] = ("error", f"Database unavailable: {md(err)}")
    if COUNTS in ss:
        kind, text = ss[COUNTS]
        getattr(counts_slot, kind)(text)
    with group_slot.container():  # the group the page showed, if it showed one
        last_group_link()


with st.sidebar:
    st.markdown("**DM Studio** — derivative manipulation workbench")
    counts_slot = st.empty()
    group_slot = st.empty()
    st.caption(f"Database: `{mask_url(database_url())}`")
# An empty slot would take the counts and the link away for as long as the page runs
# (seconds on a busy machine), and a click on the link would land on nothing: the slots
# show what they showed after the previous run until the page has run.
show_sidebar_state(counts_slot, group_slot, fresh=False)

try:
    navigation.run()
finally:
    # Counted after the page has run (also when it stopped or asked for a rerun): a run it
    # just queued, cancelled, retried or deleted is in the counts at once, not one click later.
    show_sidebar_state(counts_slot, group_slot, fresh=True)
