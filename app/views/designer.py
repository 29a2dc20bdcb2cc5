"""EDF designer: shape an emphasis density function and see what it does.

Pick a family from ``SCHEMES``; every parameter gets a slider (its registered ``ui`` range)
and a number input beside it for an exact value (any value the registry allows). A value
typed beyond the slider's range widens the slider to it, so the two always show the same
value. Three linked charts over p ∈ [0, 1]: the relative weight ``w(p)``, the density
``h(p)`` with the emphasis mode ψ and ψ ± spread marked, and the loss the scheme implies; the
losses CCE, MAE, MSE and GCE(q) can be overlaid with a tick, any registered scheme (a second
DM curve, say) added beside them, and the p_i histogram of any run at any logged iteration
drawn underneath. Beside them, the worst-case share of a batch of B one example can take
(``Scheme.worst_case_share``). "Use in Launch" carries the scheme to the launch page, with
the added curves of the same scheme as a λ/β grid when it has λ and β (``app.designer_carry``);
an added curve the Launch form cannot queue as drawn is named as not carried.

The URL names the view (``?family=dm&lam=0.5&beta=8&curves=…``, ``app.designer_url``): a
copied link opens the same curves; a link's invalid parts are refused with a warning naming
them, and the defaults shown instead.

State: the exact value of a parameter lives under ``designer.<family>.<param>``; the slider
and the number input are views of it, kept in sync by their ``on_change`` callbacks, and the
slider's range (the registered one, widened to a value typed beyond it) under
``designer.<family>.<param>.range``. The added schemes are ``designer.extras``.
"""

from __future__ import annotations

import math

import streamlit as st

from app.charts import edf_curves, edf_figure, emphasis_summary, formula_latex, scheme_label
from app.db import store
from app.designer_carry import CARRY, GRID, carry_payload
from app.designer_url import read_view, view_params
from app.forms import errors_by_field
from app.links import opened_by_link, show_params
from app.nav import go_to
from app.text import md
from dm_core.config import RunConfig
from dm_core.losses import LOSSES
from dm_core.registry import ConfigError, Param
from dm_core.schemes import SCHEMES, make_scheme
from dm_store import StoreError

PAGE = "designer"
FAMILY = "designer.family"
BATCH = "designer.batch"
EXTRAS = "designer.extras"  # [(scheme name, {param: value})] drawn beside the main curve
BATCH_FIELD = RunConfig.model_fields["batch_size"]  # the Launch form's default and bounds
LABELS = {"lam": "λ (lam)", "beta": "β (beta)", "psi": "ψ (psi)", "alpha": "α (alpha)",
          "eta": "η (eta)"}


def value_key(family: str, name: str) -> str:
    return f"designer.{family}.{name}"


def slider_range(param: Param) -> tuple[float, float]:
    lo = param.ui_low if param.ui_low is not None else param.low
    hi = param.ui_high if param.ui_high is not None else param.high
    lo = float(lo) if lo is not None else float(param.default) - 10.0
    hi = float(hi) if hi is not None else float(param.default) + 10.0
    return lo, hi


def set_value(family: str, name: str, value: float) -> None:
    """Make ``value`` the exact value of a parameter, as its number input does."""
    key = value_key(family, name)
    st.session_state[key] = float(value)
    st.session_state[key + ".num"] = float(value)
    st.session_state.pop(key + ".range", None)  # back to the registered range, widened to it


def _sync_from_slider(family: str, name: str) -> None:
    value = float(st.session_state[value_key(family, name) + ".slider"])
    st.session_state[value_key(family, name)] = value
    st.session_state[value_key(family, name) + ".num"] = value


def _sync_from_number(family: str, name: str) -> None:
    value = st.session_state[value_key(family, name) + ".num"]
    if value is not None:
        set_value(family, name, float(value))


def shown_range(param: Param, key: str, value: float) -> tuple[float, float]:
    """The slider's range: the registered one, widened to the last value typed beyond it
    (so dragging back from 100 keeps 100 within reach), and always to ``value``.

    A keyed slider whose bounds change is a new widget (docs/architecture.md, "Streamlit:
    sliders whose range grows"): its value is set from the exact value before it is drawn."""
    lo, hi = st.session_state.get(key + ".range") or slider_range(param)
    lo, hi = min(lo, value), max(hi, value)
    st.session_state[key + ".range"] = (lo, hi)
    return lo, hi


def parameter_inputs(family: str) -> tuple[dict[str, float], dict[str, list[str]]]:
    """Slider + number input per parameter; returns (values, errors by parameter name)."""
    entry = SCHEMES.get(family)
    values: dict[str, float] = {}
    for param in entry.params:
        key = value_key(family, param.name)
        ui_lo, ui_hi = slider_range(param)
        if key not in st.session_state:
            st.session_state[key] = float(param.default)
        value = float(st.session_state[key])
        lo, hi = shown_range(param, key, value)
        st.session_state[key + ".slider"] = value
        if key + ".num" not in st.session_state:
            st.session_state[key + ".num"] = value
        widened = (lo, hi) != (ui_lo, ui_hi)
        help_text = (param.help or "") + (f" Widened from [{ui_lo:g}, {ui_hi:g}] to the exact "
                                          "value typed beside it." if widened else "")
        left, right = st.columns([3, 1], vertical_alignment="bottom")
        left.slider(LABELS.get(param.name, param.name), min_value=lo, max_value=hi,
                    step=(ui_hi - ui_lo) / 200, key=key + ".slider", help=help_text.strip() or None,
                    on_change=_sync_from_slider, args=(family, param.name))
        right.number_input(f"{param.name} exact", key=key + ".num", format="%g",
                           step=(ui_hi - ui_lo) / 200,
                           help=f"Any value allowed by the registry: {param.range_text()}.",
                           on_change=_sync_from_number, args=(family, param.name))
        values[param.name] = value
    errors: dict[str, list[str]] = {}
    try:
        SCHEMES.validate_params(family, values)
    except ConfigError as err:
        errors = errors_by_field(err)
    return values, errors


def overlay_inputs() -> list[tuple[str, dict[str, float]]]:
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


def _remove_extra(index: int) -> None:
    extras = list(st.session_state.get(EXTRAS, []))
    if 0 <= index < len(extras):
        del extras[index]
    st.session_state[EXTRAS] = extras


def extra_inputs(family: str, values: dict[str, float]) -> list[tuple[str, dict[str, float]]]:
    """Any registered scheme with parameters of one's choice, added to the chart beside the
    main curve (a second DM curve, say); each can be removed again."""
    extras: list[tuple[str, dict[str, float]]] = list(st.session_state.get(EXTRAS, []))
    names = SCHEMES.names()
    if st.session_state.get("designer.extra.family") not in names:
        st.session_state["designer.extra.family"] = family
    # One column per parameter of the scheme picked (its selectbox's value, read before it
    # is drawn): a scheme registered with more parameters gets a field for each.
    entry = SCHEMES.get(st.session_state["designer.extra.family"])
    cols = st.columns([2, *([1] * len(entry.params)), 1], vertical_alignment="bottom")
    name = cols[0].selectbox("Add a scheme", names, key="designer.extra.family",
                             help="Any registered scheme, drawn dashed beside the one above.")
    params: dict[str, float] = {}
    for col, param in zip(cols[1:-1], entry.params, strict=True):
        key = f"designer.extra.{name}.{param.name}"
        if key not in st.session_state:  # the same family starts from the designed values
            st.session_state[key] = float(values.get(param.name, param.default)
                                          if name == family else param.default)
        params[param.name] = float(col.number_input(param.name, key=key, format="%g",
                                                    help=param.range_text()))
    if cols[-1].button("Add", key="designer.extra.add", icon=":material/add:"):
        try:
            SCHEMES.validate_params(name, params)
        except ConfigError as err:
            for messages in errors_by_field(err).values():
                for m in messages:
                    st.error(m, icon=":material/error:")
        else:
            if (name, params) not in extras:
                extras.append((name, params))
            st.session_state[EXTRAS] = extras
    for i, (extra, extra_params) in enumerate(extras):
        label, remove = st.columns([5, 1], vertical_alignment="center")
        label.caption(f"Drawn beside it: {scheme_label(extra, extra_params)}")
        remove.button("Remove", key=f"designer.extra.remove.{i}", on_click=_remove_extra,
                      args=(i,), icon=":material/close:")
    return extras


def histogram_input() -> tuple | None:
    """Optionally, the p_i histogram of any run that has logged one, at any logged
    iteration (its latest by default), to see where its examples sit."""
    try:
        runs = [r for r in store().list_runs() if r.iteration > 0]
    except StoreError as err:
        st.caption(f"Run histograms unavailable: {md(err)}")
        return None
    by_id = {r.id: r for r in runs}
    if st.session_state.get("designer.run") not in (None, *by_id):
        st.session_state["designer.run"] = None  # a run deleted since
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    run_id = left.selectbox(
        "Overlay the p_i histogram of a run", [None, *by_id], key="designer.run",
        format_func=lambda i: "none" if i is None else
        f"#{i} {by_id[i].name} ({by_id[i].status}, iteration {by_id[i].iteration})",
        help="Every run that has logged a histogram; type to search by id or name.")
    if run_id is None:
        return None
    run = by_id[run_id]
    wanted = right.number_input("at iteration", min_value=1, value=None, step=1,
                                key="designer.run_iteration", placeholder=f"latest ({run.iteration})",
                                help="Any iteration the run has reached: its histogram logged "
                                     "there, or the last one before it. Empty: the latest.")
    iteration = run.iteration if wanted is None else min(int(wanted), run.iteration)
    found = store().histogram_at(run_id, iteration)
    if found is None:
        st.caption(f"That run has no histogram at or before iteration {iteration}.")
        return None
    shown, clean, noisy = found
    st.caption(f"Showing #{run_id} at iteration {shown} (it has reached {run.iteration}).")
    return clean, noisy, f"#{run_id} @ {shown}"


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


def restore_from_link() -> list[str]:
    """Open the view the URL names when it was set from outside (a link opened, the page
    reloaded): its family, parameters and added schemes. Returns a warning for each part of
    the link that was refused (the page shows the defaults for those)."""
    if not opened_by_link(PAGE):
        return []
    view = read_view(st.query_params.to_dict(), st.session_state[FAMILY])
    st.session_state[FAMILY] = view.family
    for name, value in view.values.items():
        set_value(view.family, name, value)
    if view.curves is not None:
        st.session_state[EXTRAS] = list(view.curves)
    return list(view.warnings)


def mode_metric(peaks: tuple[float, ...], where: str) -> tuple[str, str]:
    """The mode metric's value, short enough for its column (a long one is cut to "both …"),
    and its help, which says the whole of it."""
    explain = "ψ = argmax w(p): the p of the examples that get the largest gradient."
    if len(peaks) == 1:
        return f"{peaks[0]:.3f}", explain
    value = "none" if not peaks else "0 & 1" if peaks == (0.0, 1.0) else f"{len(peaks)} peaks"
    return value, f"{explain} Read off the curve: {where}."


def compact_number(x: float) -> str:
    """A number in at most 7 characters, so a metric shows it whole (``5.23e+17`` was cut
    to "5.2e…"): three significant digits below 1000, else one decimal and a power of ten.

    >>> compact_number(7.389), compact_number(523.4), compact_number(5.234e17)
    ('7.39', '523', '5.2e17')
    >>> compact_number(999.6), compact_number(0.000123), compact_number(math.inf)
    ('1.0e3', '1.2e-4', '∞')
    """
    if math.isinf(x):
        return "∞" if x > 0 else "-∞"
    short = f"{x:.3g}"
    if x == 0 or (abs(x) >= 1e-3 and "e" not in short):
        return short
    mantissa, exponent = f"{x:.1e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def use_in_launch(family: str, values: dict[str, float]) -> None:
    """The button that carries the designed scheme, and the added curves the Launch form
    can queue as drawn, to the Launch page; what it carries and what it leaves out, said
    under it."""
    payload, left_out = carry_payload(family, values, st.session_state.get(EXTRAS, []))
    if payload is None:
        return
    rows = payload.get(GRID)
    runs = sum(len(betas) for _, betas in rows) if rows else 1
    what = f"loss `{payload['name']}`" + (f", a λ/β grid of {runs} runs" if rows else "")
    if st.button(f"Use in Launch ({what})", type="primary", key="designer.use",
                 icon=":material/rocket_launch:"):
        st.session_state[CARRY] = payload
        go_to("launch")
    if rows:
        st.caption("The curves of this scheme go to Launch as its λ/β grid, one run each: "
                   + "; ".join(f"λ = {lam:g}: β = {', '.join(f'{b:g}' for b in betas)}"
                               for lam, betas in rows) + ".")
    if left_out:
        st.caption("Not carried: " + ", ".join(md(scheme_label(n, p)) for n, p in left_out)
                   + ". The Launch form's grid spans the designed scheme's λ and β only, and "
                     "its method comparison trains other losses at their registered "
                     "defaults: queue these from Launch one by one.")


st.title("EDF designer")
st.caption("An emphasis density function (EDF) gives every example a gradient magnitude "
           "w(p) as a function of p, the probability the model gives to its annotated label. "
           "The paper's idea: mislabelled examples sit at small p early in training, so "
           "moving the emphasis mode ψ up gives them less gradient (the Monitor's p_i "
           "histograms show where they sit in a run).")

names = SCHEMES.names()
if FAMILY not in st.session_state:
    st.session_state[FAMILY] = names[0]
for warning in restore_from_link():
    st.warning(md(warning), icon=":material/link_off:")
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
    mode, mode_help = mode_metric(curves.peaks, emphasis.where)
    m1.metric("mode ψ", mode, help=mode_help)
    m2.metric("spread", f"{curves.spread:.3f}",
              help="Standard deviation of the density h(p): the emphasis variance.")
    m3.metric("max w", compact_number(curves.weight_peak),
              help=f"The largest weight over p ∈ [0, 1]: {curves.weight_peak:.6g}.")
    st.caption(emphasis.advice)
    concentration(family, values)

chart_slot = st.container()  # the chart goes above the overlay controls that shape it
with st.container(border=True):
    added = overlay_inputs() + extra_inputs(family, values)
    overlays = [edf_curves(n, p) for n, p in added]
    histogram = histogram_input()
fig = edf_figure(curves, overlays, histogram=histogram)
chart_slot.plotly_chart(fig, key="designer.chart", theme="streamlit", width="stretch")
show_params(PAGE, view_params(family, values, st.session_state.get(EXTRAS, [])))

use_in_launch(family, values)
