"""Home: what derivative manipulation is, the live EDF of the designer's current scheme, the
queue at a glance, and the way to every page."""

from __future__ import annotations

import streamlit as st

from app.charts import edf_curves, edf_mini_figure, emphasis_summary
from app.db import database_url, store
from app.nav import PAGES, page_link
from app.text import md
from dm_core.registry import ConfigError
from dm_core.schemes import SCHEMES
from dm_store import StoreError, mask_url

st.title("DM Studio")
left, right = st.columns([3, 2])
with left:
    st.markdown(
        """
**Derivative manipulation (DM)** trains deep models under label noise and class imbalance
by designing each example's *gradient magnitude* directly, instead of choosing a loss.

Every common loss is an example-weighting scheme: CCE, MAE, MSE and GCE all push the logits
the same way and differ only in how hard they push an example as a function of
**p_i**, the probability the model gives to its annotated label. DM picks that weight,
an *emphasis density function* (EDF):
""")
    st.latex(r"w_{DM}(p) = \exp\left(\beta\, p^{\lambda} (1-p)\right), \qquad "
             r"\psi = \frac{\lambda}{\lambda + 1}")
    st.markdown(
        """
λ moves the emphasis mode ψ (0: hardest examples first, as CCE; larger: easier ones),
β sets the emphasis variance. Within a batch the weights are normalised to one unit of total
gradient. The paper's premise: networks fit patterns shared by many examples first, so
mislabelled examples keep a small p_i for a while, and with more label noise ψ should move up.
Whether that holds on your data is for you to measure: the per-iteration **p_i histograms of
clean and corrupted examples** on the Monitor show it run by run, and `dm study` compares
the methods tuned alike (the verdicts of the shipped digits studies, holding or not, are in
`docs/reproduction.md`).
""")
with right:
    # The designer's current DM values if it has been used in this session, else the defaults.
    family = st.session_state.get("designer.family", "dm")
    entry = SCHEMES.get(family)
    params = {p.name: float(st.session_state.get(f"designer.{family}.{p.name}", p.default))
              for p in entry.params}
    try:
        curves = edf_curves(family, params)
    except ConfigError:
        curves = edf_curves("dm", SCHEMES.get("dm").defaults())
    st.plotly_chart(edf_mini_figure(curves), key="home.edf", theme="streamlit", width="stretch")
    st.caption(f"`{curves.formula}` — emphasis {emphasis_summary(curves).where}, "
               f"spread = {curves.spread:.3g}")

st.subheader("Queue")
try:
    counts = store().queue_counts()
except StoreError as err:
    st.error(f"The run database cannot be reached: {md(err)}")
    counts = None
if counts is not None:
    cols = st.columns(len(counts))
    for col, (status, n) in zip(cols, counts.items(), strict=True):
        col.metric(status, n)
    if sum(counts.values()) == 0:
        st.info("No runs yet: design a scheme, then queue a run from the Launch page.")
st.caption(f"Database: {mask_url(database_url())}")

st.subheader("Pages")
cols = st.columns(2)
for i, page in enumerate(p for p in PAGES if p.key != "home"):
    with cols[i % 2]:
        page_link(page.key)
        st.caption(page.blurb)
