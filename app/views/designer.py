"""EDF designer: shape an emphasis density function and see what it does.

Pick a family from ``SCHEMES``; every parameter gets a slider (its registered ``ui`` range)
and a number input beside it for an exact value (any value the registry allows, also
outside the slider's range). Three linked charts over p ∈ [0, 1]: the relative weight
``w(p)``, the density ``h(p)`` with the emphasis mode ψ and ψ ± spread marked, and the loss
the scheme implies; the losses CCE, MAE, MSE and GCE(q) can be overlaid, and so can the p_i
histogram of a run. Beside them, the worst-case share of a batch of B one example can take
(``Scheme.worst_case_share``). "Use in Launch" carries the scheme to the launch page.

State: the exact value of a parameter lives under ``designer.<family>.<param>``; the slider
and the number input are views of it, kept in sync by their ``on_change`` callbacks.
"""

from __future__ import annotations

import math

import streamlit as st

from app.charts import edf_curves, edf_figure, emphasis_summary, formula_latex
from app.db import store
from app.forms import errors_by_field
from app.nav import go_to
from app.text import md
from dm_core.config import RunConfig
from dm_core.losses import LOSSES
from dm_core.registry import ConfigError, Param
from dm_core.schemes import SCHEMES, make_scheme
from dm_core.store import StoreError

FAMILY = "designer.family"
CARRY = "designer.carry"  # read by the launch page
BATCH = "designer.batch"
BATCH_FIELD = RunConfig.model_fields["batch_size"]  # the Launch form's default and bounds


def value_key(family: str, name: str) -> str:
    return f"designer.{family}.{name}"


def slider_range(param: Param) -> tuple[float, float]:
    lo = param.ui_low if param.ui_low is not None else param.low
    hi = param.ui_high if param.ui_high is not None else param.high
    lo = float(lo) if lo is not None else float(param.default) - 10.0
    hi = float(hi) if hi is not None else float(param.default) + 10.0
    return lo, hi


def _sync_from_slider(family: str, name: str) -> None:
    value = float(st.session_state[value_key(family, name) + ".slider"])
    st.session_state[value_key(family, name)] = value
    st.session_state[value_key(family, name) + ".num"] = value


def _sync_from_number(family: str, name: str, lo: float, hi: float) -> None:
    value = st.session_state[value_key(family, name) + ".num"]
    if value is None:
        return
    st.session_state[value_key(family, name)] = float(value)
    st.session_state[value_key(family, name) + ".slider"] = min(max(float(value), lo), hi)


def parameter_inputs(family: str) -> tuple[dict[str, float], dict[str, list[str]]]:
    """Slider + number input per parameter; returns (values, errors by parameter name)."""
    entry = SCHEMES.get(family)
    values: dict[str, float] = {}
    for param in entry.params:
        key = value_key(family, param.name)
        lo, hi = slider_range(param)
        if key not in st.session_state:
            st.session_state[key] = float(param.default)
        value = float(st.session_state[key])
        # The widgets show the exact value (the slider clamped to its range).
        if key + ".slider" not in st.session_state:
            st.session_state[key + ".slider"] = min(max(value, lo), hi)
        if key + ".num" not in st.session_state:
            st.session_state[key + ".num"] = value
        label = {"lam": "λ (lam)", "beta": "β (beta)", "psi": "ψ (psi)", "alpha": "α (alpha)",
                 "eta": "η (eta)"}.get(param.name, param.name)
        left, right = st.columns([3, 1], vertical_alignment="bottom")
        left.slider(label, min_value=lo, max_value=hi, step=(hi - lo) / 200, key=key + ".slider",
                    help=param.help or None, on_change=_sync_from_slider, args=(family, param.name))
        right.number_input(f"{param.name} exact", key=key + ".num", format="%g", step=(hi - lo) / 200,
                           help=f"Any value allowed by the registry: {param.range_text()}.",
                           on_change=_sync_from_number, args=(family, param.name, lo, hi))
        values[param.name] = value
    errors: dict[str, list[str]] = {}
    try:
        SCHEMES.validate_params(family, values)
    except ConfigError as err:
        errors = errors_by_field(err)
    return values, errors


def overlay_inputs(family: str) -> list[tuple[str, dict[str, float]]]:
    """Toggles for the plain losses' schemes (those registered as non-normalised losses)."""
    candidates = [e for e in SCHEMES.entries()
                  if e.name in LOSSES and not LOSSES.get(e.name).extra.get("normalise")]
    chosen: list[tuple[str, dict[str, float]]] = []
    st.markdown("**Compare with**")
    cols = st.columns(len(candidates))
    for col, entry in zip(cols, candidates, strict=True):
        params: dict[str, float] = {}
        with col:
            label = entry.name.upper() + ("(" + ", ".join(p.name for p in entry.params) + ")"
                                          if entry.params else "")
            on = st.checkbox(label, key=f"designer.overlay.{entry.name}",
                             value=entry.name in ("cce", "mae"), help=entry.description)
            for param in entry.params:
                lo, hi = slider_range(param)
                params[param.name] = st.slider(param.name, lo, hi, float(param.default),
                                               step=(hi - lo) / 100,
                                               key=f"designer.overlay.{entry.name}.{param.name}",
                                               disabled=not on)
        if on:
            chosen.append((entry.name, params))
    return chosen


def histogram_input() -> tuple | None:
    """Optionally, the latest p_i histogram of a run, to see where its examples sit."""
    try:
        runs = [r for r in store().list_runs(limit=200) if r.iteration > 0]
    except StoreError as err:
        st.caption(f"Run histograms unavailable: {md(err)}")
        return None
    options = [None] + [r.id for r in runs]
    names = {r.id: f"#{r.id} {r.name} ({r.status}, iteration {r.iteration})" for r in runs}
    run_id = st.selectbox("Overlay the p_i histogram of a run", options, key="designer.run",
                          format_func=lambda i: "none" if i is None else names[i],
                          help="Its latest histogram, split into clean and corrupted examples.")
    if run_id is None:
        return None
    run = next(r for r in runs if r.id == run_id)
    found = store().histogram_at(run_id, run.iteration)
    if found is None:
        st.caption("That run has no histogram yet.")
        return None
    iteration, clean, noisy = found
    return clean, noisy, f"#{run_id} @ {iteration}"


def concentration(family: str, values: dict[str, float]) -> None:
    """The worst case of a batch: one example where w is largest, the other B - 1 where it
    is smallest (``Scheme.worst_case_share``); after normalisation that example's share of
    the batch's weight is its share of the summed gradient magnitude."""
    high = next(m.le for m in BATCH_FIELD.metadata if hasattr(m, "le"))
    batch = st.number_input("batch size B", min_value=1, max_value=int(high),
                            value=int(BATCH_FIELD.default), step=1, key=BATCH,
                            help="As on the Launch page (its default there too).")
    scheme = make_scheme(family, **values)
    share = scheme.worst_case_share(int(batch))
    lo, hi = scheme.log_weight_range
    st.metric("worst-case share of one example", f"{share:.4g}",
              help="max w / (max w + (B − 1) · min w), with the max and the min of w over "
                   "p ∈ [0, 1].")
    gap = hi - lo
    if gap == math.inf:
        st.caption("w reaches zero (or has a pole) on [0, 1], so in the worst case one "
                   "example takes the whole batch's weight (under derivative normalisation, the "
                   "whole gradient).")
    else:
        ratio = f"{math.exp(gap):.4g}" if gap < 700 else f"e^{gap:.4g}"  # exp(709) overflows
        st.caption(f"max w / min w = {ratio}: one example at the "
                   f"largest weight against {int(batch) - 1} at the smallest takes "
                   f"{share:.4g} of the batch's weight ({1 / int(batch):.4g} if all weighed "
                   "the same), and that share of its gradient under derivative normalisation.")


def carry_loss(family: str) -> str | None:
    """The loss that trains with this scheme under derivative normalisation (e.g. dm → dm)."""
    for entry in LOSSES.entries():
        if entry.extra.get("scheme") == family and entry.extra.get("normalise"):
            return entry.name
    return None


st.title("EDF designer")
st.caption("An emphasis density function (EDF) gives every example a gradient magnitude "
           "w(p) as a function of p, the probability the model gives to its annotated label. "
           "The paper's idea: mislabelled examples sit at small p early in training, so "
           "moving the emphasis mode ψ up gives them less gradient (the Monitor's p_i "
           "histograms show where they sit in a run).")

names = SCHEMES.names()
if FAMILY not in st.session_state:
    st.session_state[FAMILY] = names[0]
family = st.selectbox("Family", names, key=FAMILY,
                      format_func=lambda n: f"{n} — {SCHEMES.get(n).description}")
entry = SCHEMES.get(family)

controls, text = st.columns([3, 2])
with controls:
    values, param_errors = parameter_inputs(family)
    for messages in param_errors.values():
        for m in messages:
            st.error(m, icon=":material/error:")
with text:
    st.markdown(f"`{entry.equation}`")

if param_errors:
    st.stop()

curves = edf_curves(family, values)
with text:
    st.latex(formula_latex(curves.formula))
    emphasis = emphasis_summary(curves)
    m1, m2, m3 = st.columns(3)
    m1.metric("mode ψ", f"{curves.peaks[0]:.3f}" if emphasis.single else emphasis.where,
              help="ψ = argmax w(p): the p of the examples that get the largest gradient "
                   "(read off the curve: both ends when it is U-shaped).")
    m2.metric("spread", f"{curves.spread:.3f}",
              help="Standard deviation of the density h(p): the emphasis variance.")
    m3.metric("max w", f"{curves.weight_peak:.3g}")
    st.caption(emphasis.advice)
    concentration(family, values)

chart_slot = st.container()  # the chart goes above the overlay controls that shape it
with st.container(border=True):
    overlays = [edf_curves(n, p) for n, p in overlay_inputs(family)]
    histogram = histogram_input()
fig = edf_figure(curves, overlays, histogram=histogram)
chart_slot.plotly_chart(fig, key="designer.chart", theme="streamlit", width="stretch")

loss_name = carry_loss(family)
if loss_name is not None:
    if st.button(f"Use in Launch (loss `{loss_name}`)", type="primary", key="designer.use",
                 icon=":material/rocket_launch:"):
        st.session_state[CARRY] = {"name": loss_name, **values}
        go_to("launch")
