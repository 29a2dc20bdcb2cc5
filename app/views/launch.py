"""Launch: queue one run, a λ/β grid, or a method comparison.

The form is built from ``RunConfig``'s fields and the registries (DATASETS, NOISE, MODELS,
LOSSES): choosing a dataset, model or loss shows that entry's own parameters. Every value is
validated by ``dm_core.config.parse_config`` on each rerun; its errors appear under the
widget they name (``loss.lam: ...`` under λ), and nothing is queued while any remain.

Widget state lives in ``st.session_state`` under ``L.<config path>`` (registry parameters
under ``L.<section>.<entry>.<param>``), so a preset, a cloned run (``launch.clone``, set by
the runs page) or the designer's scheme (``designer.carry``, ``app.designer_carry``) fills
the form before it is drawn; the designer's added curves of the same scheme come as the λ/β
grid, which the form then shows. The last draft is kept under ``L.draft`` so the form survives a visit to another page.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import streamlit as st
import yaml

from app.charts import edf_curves, emphasis_summary
from app.db import store
from app.designer_carry import CARRY, GRID
from app.forms import (
    Form,
    field_state_value,
    field_widget,
    param_state_value,
    param_widget,
    parse_list_text,
)
from app.launch_checks import PROPOSED_NOISE_RATE, noise_takes_rate, refusals
from app.links import compare_params, monitor_params
from app.nav import page_link
from app.presets import PAPER_NOTE, all_presets, form_defaults, paper_preset_note
from app.text import md
from dm_core.config import (
    ConfigError,
    DatasetConfig,
    OptimizerConfig,
    RunConfig,
    ScheduleConfig,
    check_name,
    parse_config,
)
from dm_core.data import DATASETS
from dm_core.devices import visible_gpus
from dm_core.losses import LOSSES
from dm_core.models import MODELS
from dm_core.noise import NOISE
from dm_core.schemes import make_scheme
from dm_store import StoreError
from studio.repro.presets import get_experiment
from studio.submission import beta_bound
from studio.sweeps import MAX_RUNS_PER_SUBMIT, comparison_on_seeds, expand_grid

MODES = ("one run", "λ/β grid", "method comparison")
SECTIONS = ("dataset", "model", "loss", "optimizer", "schedule")
TOP_FIELDS = [f for f in RunConfig.model_fields if f not in SECTIONS]
DATASET_FIELDS = [f for f in DatasetConfig.model_fields if f not in ("name", "noise")]
REGISTRIES = {"dataset": DATASETS, "model": MODELS, "loss": LOSSES}
PLAIN_SECTIONS = {"optimizer": OptimizerConfig, "schedule": ScheduleConfig}
# The comparison's default losses: the methods of the shipped digits noise study
# (studies/digits-noise.yaml, read through studio.repro), so the two never disagree.
COMPARISON_DEFAULT = tuple(dict.fromkeys(m.loss["name"] for m in get_experiment("digits-noise").methods))
GRID_DEFAULT = pd.DataFrame({"λ": [0.0, 0.5, 1.0, 2.0],
                             "β values": ["1, 2, 4", "4, 8, 12", "8, 12, 16", "12, 16, 20"]})
# Seeds per method of a comparison: Compare's winner is a test over seeds, which one seed
# cannot pass; three is the fewest the studies train a final setting on.
COMPARISON_SEEDS = 3
CLONE = "launch.clone"  # a run's config, set by the runs page
DRAFT = "L.draft"


def k(path: str) -> str:
    return f"L.{path}"


def entry_key(section: str, entry: str, param: str) -> str:
    return f"L.{section}.{entry}.{param}"


# ----------------------------------------------------------------------------- state

def state_from_config(cfg: dict[str, Any]) -> None:
    """Fill every widget of the form from a config dict (a resolved RunConfig dump)."""
    ss = st.session_state
    defaults = form_defaults()
    for f in TOP_FIELDS:
        ss[k(f)] = field_state_value(RunConfig.model_fields[f], cfg.get(f, defaults[f]))
    for section, model in PLAIN_SECTIONS.items():
        values = {**defaults[section], **(cfg.get(section) or {})}
        for f, info in model.model_fields.items():
            ss[k(f"{section}.{f}")] = field_state_value(info, values.get(f))
    for section, registry in REGISTRIES.items():
        values = cfg.get(section) or defaults[section]
        name = values.get("name", defaults[section]["name"])
        ss[k(f"{section}.name")] = name
        for p in registry.get(name).params:
            ss[entry_key(section, name, p.name)] = param_state_value(p, values.get(p.name, p.default))
    ds = cfg.get("dataset") or {}
    for f in DATASET_FIELDS:
        ss[k(f"dataset.{f}")] = field_state_value(DatasetConfig.model_fields[f],
                                                 ds.get(f, defaults["dataset"][f]))
    noise = ds.get("noise") or defaults["dataset"]["noise"]
    kind = noise.get("kind", "none")
    ss[k("dataset.noise.kind")] = kind
    for p in NOISE.get(kind).params:
        value = noise.get(p.name)
        ss[entry_key("dataset.noise", kind, p.name)] = param_state_value(
            p, p.default if value is None else value)


def apply_pending() -> None:
    """Before drawing: a cloned run, the designer's scheme, or the saved draft."""
    ss = st.session_state
    if CLONE in ss:
        state_from_config(ss.pop(CLONE))
        ss["L.mode"] = MODES[0]
        ss["L.flash"] = ("info", "Form filled from the cloned run: change what you like, then queue.")
    elif k("name") not in ss:
        state_from_config(ss.get(DRAFT) or form_defaults())
    if CARRY in ss:
        carry = dict(ss.pop(CARRY))
        name, rows = carry.pop("name"), carry.pop(GRID, None)
        ss[k("loss.name")] = name
        entry = LOSSES.get(name)
        for p in entry.params:
            value = carry.get(p.name, ss.get(entry_key("loss", name, p.name), p.default))
            ss[entry_key("loss", name, p.name)] = param_state_value(p, value)
        message = f"Loss set from the EDF designer: {name} " + ", ".join(
            f"{a}={b:g}" for a, b in carry.items())
        if rows:  # the designer's curves of this scheme, one grid point each
            ss["L.mode"] = MODES[1]
            ss["L.grid_table"] = pd.DataFrame({"λ": [float(lam) for lam, _ in rows],
                                               "β values": [", ".join(f"{b:.12g}" for b in betas)
                                                            for _, betas in rows]})
            ss.pop("L.grid_editor", None)  # edits made to the table it replaces
            message += f"; its {sum(len(b) for _, b in rows)} curves as the λ/β grid below."
        ss["L.flash"] = ("info", message)


# ----------------------------------------------------------------------------- form sections

def registry_section(section: str, form: Form, title: str) -> dict[str, Any]:
    """Entry picker + that entry's parameters (e.g. model: mlp → hidden, dropout, ...)."""
    registry = REGISTRIES[section]
    names = registry.names()
    name = st.selectbox(title, names, key=k(f"{section}.name"),
                        format_func=lambda n: f"{n} — {registry.get(n).description}"[:90],
                        help="Registered " + registry.kind + "s; each has its own parameters.")
    form.slot(section)
    entry = registry.get(name)
    if entry.equation:
        st.caption(f"`{entry.equation}`")
    out: dict[str, Any] = {"name": name}
    if entry.params:
        cols = st.columns(min(len(entry.params), 3))
        for i, p in enumerate(entry.params):
            with cols[i % len(cols)]:
                out[p.name] = param_widget(p, entry_key(section, name, p.name), f"{section}.{p.name}",
                                           form, label=_label(p.name))
    scheme = entry.extra.get("scheme")
    if section == "loss" and scheme is not None:
        _scheme_caption(scheme, {k: v for k, v in out.items() if k not in ("name", "eps")},
                        normalised=bool(entry.extra.get("normalise")))
        _beta_caption(name, out)
    return out


def _beta_caption(loss: str, params: dict[str, Any]) -> None:
    """The β the checks before queueing allow (``studio.submission.beta_bound``) at the
    form's other parameters and batch size, said before a value past it is refused."""
    try:
        bound = beta_bound(loss, params, _batch_size())
    except (ConfigError, TypeError, ValueError):
        return
    if bound is not None:
        st.caption(f"β may be at most {bound:.4g} in size here (−{bound:.4g} ≤ β ≤ {bound:.4g} "
                   f"at batch size {_batch_size()}): beyond it one example takes all of a "
                   "batch's gradient, to float32 precision.")


def _scheme_caption(scheme: str, params: dict[str, Any], normalised: bool) -> None:
    """The emphasis mode and spread of the chosen loss's weighting scheme and, for a loss
    with derivative normalisation, the largest share of a batch's gradient one example can
    take (``Scheme.worst_case_share``, at the form's batch size)."""
    batch = _batch_size()
    try:
        curves = edf_curves(scheme, params)
        share = make_scheme(scheme, **params).worst_case_share(batch) if normalised else None
    except (ConfigError, TypeError, ValueError):
        return
    text = (f"Weighting scheme `{curves.formula}`: emphasis {emphasis_summary(curves).where}, "
            f"spread = {curves.spread:.3g} (see the EDF designer).")
    if share is not None:
        text += (f" Under derivative normalisation one example can take up to {share:.3g} of a "
                 f"batch's gradient (worst case at batch size {batch}; "
                 f"{1 / batch:.3g} if all weighed the same).")
    st.caption(text)
    if share == 1.0 and batch > 1:
        # A fact of the formula, not a forecast; which losses carry their own fixed clip is
        # read from the registry, where it was set from the stability benchmark's figures.
        clipped = [e.name for e in LOSSES.entries() if e.extra.get("clip_grad_norm")]
        st.info("This weighting reaches zero on [0, 1], so a whole step can land on a single "
                "example. The Monitor's concentration chart shows how much it does during a run. "
                f"The losses that diverged that way in the stability benchmark ({', '.join(clipped)}) "
                "clip the gradient at a fixed norm by default: leave optimizer.clip_grad_norm "
                "empty for the loss's own default, 0 for none.", icon=":material/info:")


def _batch_size() -> int:
    """The form's batch size (its default before the Run section is first drawn)."""
    value = st.session_state.get(k("batch_size"))
    return int(value) if isinstance(value, int | float) and value >= 1 else int(
        RunConfig.model_fields["batch_size"].default)


def _label(name: str) -> str:
    return {"lam": "λ (lam)", "beta": "β (beta)", "psi": "ψ (psi)", "alpha": "α (alpha)",
            "eta": "η (eta)", "eps": "ε (eps)", "q": "q"}.get(name, name.replace("_", " "))


def _propose_noise_rate() -> None:
    """A noise kind that takes a rate, chosen while its rate is 0: propose a rate that
    corrupts something (a rate of 0 would queue a clean run under a noisy name)."""
    kind = st.session_state[k("dataset.noise.kind")]
    key = entry_key("dataset.noise", kind, "rate")
    if noise_takes_rate(kind) and not st.session_state.get(key):
        st.session_state[key] = PROPOSED_NOISE_RATE


def dataset_section(form: Form) -> dict[str, Any]:
    ds = registry_section("dataset", form, "Dataset")
    c1, c2 = st.columns(2)
    with c1:
        kinds = NOISE.names()
        kind = st.selectbox("Label noise", kinds, key=k("dataset.noise.kind"),
                            format_func=lambda n: f"{n} — {NOISE.get(n).description}"[:80],
                            on_change=_propose_noise_rate)
        form.slot("dataset.noise.kind")
    noise: dict[str, Any] = {"kind": kind}
    with c2:
        for p in NOISE.get(kind).params:
            noise[p.name] = param_widget(p, entry_key("dataset.noise", kind, p.name),
                                         f"dataset.noise.{p.name}", form,
                                         label="noise rate r" if p.name == "rate" else _label(p.name))
    ds["noise"] = noise
    cols = st.columns(len(DATASET_FIELDS))
    for col, f in zip(cols, DATASET_FIELDS, strict=True):
        with col:
            ds[f] = field_widget(DatasetConfig.model_fields[f], k(f"dataset.{f}"), f"dataset.{f}", form)
    return ds


def plain_section(section: str, form: Form) -> dict[str, Any]:
    model = PLAIN_SECTIONS[section]
    fields = list(model.model_fields)
    cols = st.columns(len(fields))
    out = {}
    for col, f in zip(cols, fields, strict=True):
        with col:
            out[f] = field_widget(model.model_fields[f], k(f"{section}.{f}"), f"{section}.{f}", form)
    return out


def run_section(form: Form) -> dict[str, Any]:
    out = {}
    devices = ["auto", "cpu", "cuda", *visible_gpus(), "mps"]
    cols = st.columns(4)
    for i, f in enumerate(TOP_FIELDS):
        with cols[i % 4]:
            out[f] = field_widget(RunConfig.model_fields[f], k(f), f, form,
                                  options=devices if f == "device" else None)
    return out


def build_form(form: Form) -> dict[str, Any]:
    """Draw the whole form; return the draft config dict (not yet validated)."""
    with st.container(border=True):
        st.markdown("##### Data and label noise")
        dataset = dataset_section(form)
    with st.container(border=True):
        st.markdown("##### Model")
        model = registry_section("model", form, "Model")
    with st.container(border=True):
        st.markdown("##### Loss / weighting scheme")
        loss = registry_section("loss", form, "Loss")
    with st.container(border=True):
        st.markdown("##### Optimiser and learning-rate schedule")
        optimizer = plain_section("optimizer", form)
        schedule = plain_section("schedule", form)
    with st.container(border=True):
        st.markdown("##### Run")
        top = run_section(form)
    return {**top, "dataset": dataset, "model": model, "loss": loss, "optimizer": optimizer,
            "schedule": schedule}


# ----------------------------------------------------------------------------- modes

def grid_seeds(text: str, form: Form) -> list[int]:
    """The grid's seeds from "0, 1, 2" (empty: the form's own seed only)."""
    try:
        seeds = parse_list_text(text)
    except ValueError as err:
        form.add("grid", f"grid seeds: {err}")
        return []
    if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        form.add("grid", f"grid seeds: {text!r} must be whole numbers ≥ 0, e.g. 0, 1, 2")
        return []
    return list(dict.fromkeys(seeds))


def grid_configs(draft: dict[str, Any], table: pd.DataFrame, form: Form,
                 seeds: list[int] | None = None) -> list[RunConfig]:
    """One run per (λ, β) of the table and seed: each row is a λ with its own list of β
    values; with several ``seeds``, every point is repeated once per seed.

    The runs of all rows together are counted before any is built: more than
    ``MAX_RUNS_PER_SUBMIT`` is an error under the grid, and none is built (each row within
    the cap, ten rows used to add up to 10,000 runs)."""
    loss = draft["loss"]
    if not {"lam", "beta"} <= set(loss):
        form.add("grid", f"grid: the loss {loss['name']!r} has no λ and β; choose dm for a λ/β grid")
        return []
    rows: list[tuple[int, float, list[Any]]] = []
    for i, row in enumerate(table.itertuples(index=False), start=1):
        lam, betas_text = row[0], row[1]
        if lam is None or (isinstance(lam, float) and pd.isna(lam)):
            continue
        try:
            betas = parse_list_text(str(betas_text or ""))
        except ValueError as err:
            form.add("grid", f"grid row {i}: {err}")
            continue
        if not betas:
            form.add("grid", f"grid row {i} (λ = {lam:g}): no β values")
            continue
        rows.append((i, lam, betas))
    per_seed = sum(len(betas) for _, _, betas in rows)
    total = per_seed * (len(seeds) if seeds else 1)
    if total > MAX_RUNS_PER_SUBMIT:
        times_seeds = f" × {len(seeds)} seeds" if seeds else ""
        form.add("grid", f"grid: {per_seed} (λ, β) points in {len(rows)} rows{times_seeds} = "
                         f"{total} runs; at most {MAX_RUNS_PER_SUBMIT} per submit: remove rows, "
                         "β values or seeds, or queue the grid in parts")
        return []
    configs: list[RunConfig] = []
    for i, lam, betas in rows:
        try:
            axes = [("loss.lam", [float(lam)]), ("loss.beta", betas)]
            configs += expand_grid(draft, axes + ([("seed", seeds)] if seeds else []))
        except ConfigError as err:
            form.add("grid", f"grid row {i} (λ = {lam:g}): {err}")
    return configs


def comparison_runs(draft: dict[str, Any], losses: list[str], form: Form,
                    seeds: int = 1) -> list[RunConfig]:
    """Every loss on ``seeds`` seeds, in the order ``dm submit --compare --seeds`` queues
    them (``studio.sweeps.comparison_on_seeds``: seed by seed), with each loss's error
    shown under the comparison field."""
    if not losses:
        form.add("compare", "compare: choose at least one loss")
    per_loss = []
    for name in losses:
        try:
            per_loss.append(comparison_on_seeds(draft, [name], seeds))
        except ConfigError as err:
            form.add_config_error(err)
    if len(per_loss) != len(losses) or not losses:
        return []
    if seeds * len(losses) > MAX_RUNS_PER_SUBMIT:
        form.add("compare", f"compare: {seeds} seeds × {len(losses)} losses = "
                            f"{seeds * len(losses)} runs; at most {MAX_RUNS_PER_SUBMIT} per submit")
        return []
    return [runs[i] for i in range(seeds) for runs in per_loss]


def preview(configs: list[RunConfig]) -> None:
    rows = []
    for c in configs:
        loss = c.loss.params()
        rows.append({"name": c.name, "loss": c.loss.name,
                     **{p: v for p, v in loss.items() if p != "eps"},
                     "dataset": c.dataset.name, "noise": f"{c.dataset.noise.kind} {c.dataset.noise.rate:g}",
                     "model": c.model.name, "iterations": c.iterations, "seed": c.seed})
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", key="L.preview")


# ----------------------------------------------------------------------------- page

st.title("Launch")
apply_pending()
ss = st.session_state

presets = all_presets()
with st.expander("Start from a preset", expanded=False):
    c1, c2 = st.columns([4, 1], vertical_alignment="bottom")
    choice = c1.selectbox("Preset", list(presets), key="L.preset", index=None,
                          placeholder="configs/*.yaml and the paper's setups")
    if c2.button("Load", key="L.load", disabled=choice is None) and choice is not None:
        state_from_config(presets[choice])
        ss["L.flash"] = ("info", f"Loaded preset {choice}.")
    st.caption(PAPER_NOTE)
    note = paper_preset_note(choice) if choice is not None else None
    if note is not None:
        getattr(st, note[0])(note[1])

if "L.flash" in ss:
    kind, message = ss.pop("L.flash")
    getattr(st, kind)(message)

mode = st.radio("What to queue", MODES, key="L.mode", horizontal=True,
                help="One run; a grid of DM runs over λ, each with its own β values (as the "
                     "paper's Figures 6–9); or several losses on the same data and seed.")

form = Form()
draft = build_form(form)
ss[DRAFT] = json.loads(json.dumps(draft, default=str))

configs: list[RunConfig] = []
base_ok = False
if not form:
    try:
        base = parse_config(draft)
        base_ok = True
    except ConfigError as err:
        form.add_config_error(err)

with st.container(border=True):
    if mode == MODES[0]:
        st.markdown("##### One run")
        st.caption("Queues exactly the configuration above.")
        if base_ok:
            configs = [base]
    elif mode == MODES[1]:
        st.markdown("##### λ/β grid")
        st.caption("One DM run per (λ, β): each row is a λ with its own comma-separated β values. "
                   "The rest of the configuration is the form above.")
        table = st.data_editor(ss.get("L.grid_table", GRID_DEFAULT), key="L.grid_editor",
                               num_rows="dynamic", hide_index=True, width="content",
                               column_config={
                                   "λ": st.column_config.NumberColumn("λ", min_value=0.0, format="%g"),
                                   "β values": st.column_config.TextColumn("β values")})
        seeds_text = st.text_input("Seeds", key="L.grid_seeds", placeholder="the form's seed",
                                   help="Comma-separated, e.g. 0, 1, 2: every (λ, β) once per "
                                        "seed, so the Compare page's landscape shows mean ± std.")
        form.slot("grid")
        if base_ok:
            seeds = grid_seeds(seeds_text, form) if seeds_text.strip() else None
            configs = grid_configs(draft, table, form, seeds)
    else:
        st.markdown("##### Method comparison")
        losses = st.multiselect("Losses", LOSSES.names(), key="L.compare",
                                default=[n for n in COMPARISON_DEFAULT if n in LOSSES],
                                help="Each with its registered defaults, except the loss chosen "
                                     "above, which keeps the form's parameters.")
        seeds = st.number_input("Seeds", min_value=1, max_value=100, value=COMPARISON_SEEDS,
                                step=1, key="L.compare_seeds",
                                help="Every loss on this many seeds: the form's seed and the "
                                     "next ones. Compare names a winner only when it beats "
                                     "the others over their seeds, which one seed cannot show.")
        form.slot("compare")
        if base_ok:
            configs = comparison_runs(draft, losses, form, int(seeds))

if mode != MODES[0] and configs and all(c.dataset.val_fraction == 0 for c in configs):
    st.info("These runs hold out no validation split (val fraction 0). The Compare page ranks "
            "settings on validation accuracy only, never on test accuracy, so it will show their "
            "test accuracies but name no winner. Set val fraction (e.g. 0.2) to choose on a "
            "clean held-out split.", icon=":material/info:")

# The checks dm submit makes too (studio.submission): the same configs refused, in the same words.
for path, message in refusals(configs):
    form.add(path, message)

unclaimed = form.render_errors()
for message in unclaimed:
    st.error(md(message), icon=":material/error:")

c1, c2 = st.columns([1, 3], vertical_alignment="center")
group = c2.text_input("Group name (optional)", key="L.group",
                      help="Runs queued together share a group; the Compare page can pick it.")
clicked = c1.button(f"Queue {len(configs)} run{'s' if len(configs) != 1 else ''}",
                    type="primary", key="L.queue", icon=":material/rocket_launch:")
if form:
    st.caption("Fix the fields marked in red: nothing is queued while any value is invalid.")
elif configs:
    with st.expander(f"Preview: {len(configs)} run(s)", expanded=len(configs) > 1):
        preview(configs)
        st.code(yaml.safe_dump(configs[0].model_dump(mode="json"), sort_keys=False), language="yaml")

if clicked:
    if form or not configs:
        st.error("Nothing queued: fix the errors above first.")
    else:
        try:
            result = store().submit(configs, group=check_name(group.strip(), "group") or None)
        except (StoreError, ValueError) as err:
            st.error(f"Nothing queued: {md(err)}")
        else:
            ss["monitor.run_id"] = result.run_ids[0]
            ss["compare.group"] = result.group
            ids = ", ".join(f"#{i}" for i in result.run_ids)
            st.success(f"Queued {len(result.run_ids)} run(s) in group **{md(result.group)}**: "
                       f"{ids}")
            c1, c2, c3 = st.columns(3)
            with c1:
                page_link("monitor", "Watch the first one on Monitor",
                          monitor_params(result.run_ids[0]))
            with c2:
                page_link("runs", "See them on Runs")
            if len(result.run_ids) > 1:
                with c3:
                    page_link("compare", "Compare the group", compare_params(group=result.group))
