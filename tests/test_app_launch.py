"""Launch page (app/views/launch.py) under AppTest: what it queues, checked in the store."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from streamlit.testing.v1 import AppTest
from test_app_support import APP, TIMEOUT, app_db_fixture, errors_under, rendered  # noqa: F401

from app.presets import PAPER_NOTE, all_presets, paper_presets
from dm_core.config import RunConfig, parse_config
from dm_core.losses import LOSSES
from dm_store import Store

PAGE = APP.format("launch")


@pytest.fixture
def at(app_db):
    return AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()


def _queue(at):
    at.button(key="L.queue").click().run()
    assert not at.exception
    return at


def _configs(url):
    return [r.config for r in sorted(Store(url).list_runs(), key=lambda r: r.id)]


def test_one_run_with_the_default_form(app_db, at):
    assert not at.exception and not at.error
    at.number_input(key="L.iterations").set_value(300).run()
    at.text_input(key="L.model.mlp.hidden").input("32").run()
    at.number_input(key="L.loss.dm.lam").set_value(2.0).run()
    _queue(at)
    [cfg] = _configs(app_db)
    # The form holds out a validation split, which RunConfig's own default does not.
    expected = RunConfig.model_validate({"iterations": 300, "model": {"name": "mlp", "hidden": [32]},
                                         "loss": {"name": "dm", "lam": 2.0},
                                         "dataset": {"val_fraction": 0.2}})
    assert cfg == expected.model_dump(mode="json")
    assert at.session_state["monitor.run_id"] == Store(app_db).list_runs()[0].id


def test_form_is_built_from_the_registries(at):
    from dm_core.data import DATASETS
    from dm_core.models import MODELS
    from dm_core.noise import NOISE

    for key, registry in (("L.loss.name", LOSSES), ("L.dataset.name", DATASETS),
                          ("L.model.name", MODELS), ("L.dataset.noise.kind", NOISE)):
        shown = [o.split(" — ")[0] for o in at.selectbox(key=key).options]
        assert shown == registry.names()
    at.selectbox(key="L.loss.name").set_value("gce").run()
    assert at.number_input(key="L.loss.gce.q").value == LOSSES.get("gce").defaults()["q"]
    at.selectbox(key="L.model.name").set_value("cnn").run()
    assert at.number_input(key="L.model.cnn.channels").value == 32


def test_the_loss_caption_states_one_examples_worst_case_share(at):
    # Checked against the formula max w / (max w + (B - 1) min w), in float64, at the form's
    # batch size: DM's weight lies in [1, exp(β max p^λ (1-p))].
    import math

    at.number_input(key="L.loss.dm.lam").set_value(1.0).run()
    at.number_input(key="L.loss.dm.beta").set_value(8.0).run()
    at.number_input(key="L.batch_size").set_value(64).run()
    top = math.exp(8.0 * 0.25)  # p^λ (1-p) is largest at p = 1/2 for λ = 1
    expected = top / (top + 63 * 1.0)
    assert any(f"up to {expected:.3g} of a batch's gradient (worst case at batch size 64"
               in c.value for c in at.caption), [c.value for c in at.caption]
    assert not any("reaches zero" in i.value for i in at.info)
    # dm-beta's default weight p(1-p) vanishes at both ends: one example can take it all.
    at.selectbox(key="L.loss.name").set_value("dm-beta").run()
    assert any("up to 1 of a batch's gradient" in c.value for c in at.caption)
    [note] = [i.value for i in at.info if "reaches zero on [0, 1]" in i.value]
    assert "mae-dn, mse-dn, gce-dn, dm-beta" in note and "optimizer.clip_grad_norm" in note
    # Without derivative normalisation the share is not a share of the gradient: not shown.
    at.selectbox(key="L.loss.name").set_value("gce").run()
    assert not any("of a batch's gradient" in c.value for c in at.caption)


@pytest.mark.parametrize("key,value,path", [
    ("L.dataset.noise.symmetric.rate", 1.5, "dataset.noise.rate"),
    ("L.optimizer.lr", 0.0, "optimizer.lr"),
    ("L.loss.dm.lam", -1.0, "loss.lam"),
    ("L.iterations", 0, "iterations"),
])
def test_bad_value_shows_an_error_under_its_field_and_queues_nothing(app_db, at, key, value, path):
    at.selectbox(key="L.dataset.noise.kind").set_value("symmetric").run()
    at.number_input(key=key).set_value(value).run()
    messages = errors_under(at, key)
    assert messages and all(m.startswith(path + ":") for m in messages), messages
    _queue(at)
    assert any("Nothing queued" in e.value for e in at.error)
    assert Store(app_db).list_runs() == []


def test_bad_list_text_is_reported_under_its_field(app_db, at):
    at.text_input(key="L.model.mlp.hidden").input("32, abc").run()
    assert any(m.startswith("model.hidden") for m in errors_under(at, "L.model.mlp.hidden"))
    _queue(at)
    assert Store(app_db).list_runs() == []


def test_grid_queues_one_run_per_lambda_beta_pair(app_db):
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.session_state["L.grid_table"] = pd.DataFrame({"λ": [0.0, 0.5, 2.0],
                                                     "β values": ["2, 4", "8", "12, 16, 20"]})
    at.run()
    at.radio(key="L.mode").set_value("λ/β grid").run()
    at.text_input(key="L.group").input("sweep").run()
    assert at.button(key="L.queue").label == "Queue 6 runs"
    _queue(at)
    runs = Store(app_db).list_runs(group="sweep")
    got = sorted((r.config["loss"]["lam"], r.config["loss"]["beta"]) for r in runs)
    assert got == [(0.0, 2.0), (0.0, 4.0), (0.5, 8.0), (2.0, 12.0), (2.0, 16.0), (2.0, 20.0)]
    assert {r.config["seed"] for r in runs} == {0}
    assert all(r.name.startswith("run[loss.lam=") for r in runs)


def test_grid_repeated_over_seeds(app_db):
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.session_state["L.grid_table"] = pd.DataFrame({"λ": [0.0, 1.0], "β values": ["4, 12", "8"]})
    at.run()
    at.radio(key="L.mode").set_value("λ/β grid").run()
    at.text_input(key="L.grid_seeds").input("0, 1").run()
    assert at.button(key="L.queue").label == "Queue 6 runs"
    _queue(at)
    got = sorted((c["loss"]["lam"], c["loss"]["beta"], c["seed"]) for c in _configs(app_db))
    assert got == [(lam, beta, seed) for lam, beta in ((0.0, 4.0), (0.0, 12.0), (1.0, 8.0))
                   for seed in (0, 1)]
    at.text_input(key="L.grid_seeds").input("0, x").run()
    assert any("grid seeds" in rendered(e.value) for e in at.error)


def test_grid_rows_add_up_to_one_cap_and_nothing_is_queued_past_it(app_db):
    """Each row within the cap, together over it (3 rows × 200 β × 2 seeds = 1,200 runs):
    the error is under the grid before the click, no run is built, nothing is queued
    (issue 25, item 1)."""
    from studio.sweeps import MAX_RUNS_PER_SUBMIT

    betas = ", ".join(str(b) for b in range(1, 201))
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.session_state["L.grid_table"] = pd.DataFrame({"λ": [0.0, 0.5, 1.0], "β values": [betas] * 3})
    at.run()
    at.radio(key="L.mode").set_value("λ/β grid").run()
    at.text_input(key="L.grid_seeds").input("0, 1").run()
    assert 200 * 2 <= MAX_RUNS_PER_SUBMIT < 3 * 200 * 2  # each row fits, the rows do not
    said = [rendered(e.value) for e in at.error]
    assert any("1200 runs" in m and f"at most {MAX_RUNS_PER_SUBMIT} per submit" in m
               for m in said), said
    assert at.button(key="L.queue").label == "Queue 0 runs"
    _queue(at)
    assert any("Nothing queued" in rendered(e.value) for e in at.error)
    assert Store(app_db).list_runs() == []


def test_the_form_and_its_presets_hold_out_a_validation_split(at):
    """RunConfig holds out nothing by default, so Compare would name no winner: the form
    starts at 0.2, and so does every preset that held out nothing."""
    assert RunConfig().dataset.val_fraction == 0.0
    assert at.number_input(key="L.dataset.val_fraction").value == 0.2
    presets = all_presets()
    assert presets and all(p["dataset"]["val_fraction"] == 0.2 for p in presets.values())
    # Every preset passes the form's checks but for data files this machine lacks: the paper's
    # clean column (symmetric noise at r = 0 in dm repro) loads as noise kind none.
    from studio.submission import refusals

    for label, preset in presets.items():
        assert [p for p, _ in refusals([parse_config(preset)]) if p != "dataset.root"] == [], label
    clean = next(p for label, p in presets.items() if "CIFAR-100" in label and "r = 0%" in label)
    assert clean["dataset"]["noise"]["kind"] == "none"
    at.selectbox(key="L.preset").set_value("digits-symmetric-40-dm.yaml").run()
    at.button(key="L.load").click().run()
    assert at.number_input(key="L.dataset.val_fraction").value == 0.2


def test_a_grid_without_a_validation_split_is_told_it_will_not_be_ranked(app_db, at):
    at.radio(key="L.mode").set_value("λ/β grid").run()
    assert not any("name no winner" in i.value for i in at.info)  # the form holds one out
    at.number_input(key="L.dataset.val_fraction").set_value(0.0).run()
    assert any("name no winner" in i.value for i in at.info)
    at.number_input(key="L.dataset.val_fraction").set_value(0.1).run()
    assert not any("name no winner" in i.value for i in at.info)
    at.radio(key="L.mode").set_value("one run").run()
    at.number_input(key="L.dataset.val_fraction").set_value(0.0).run()
    assert not any("name no winner" in i.value for i in at.info)  # one run: nothing to rank


def test_grid_with_a_bad_beta_queues_nothing(app_db):
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.session_state["L.grid_table"] = pd.DataFrame({"λ": [1.0], "β values": ["8, oops"]})
    at.run()
    at.radio(key="L.mode").set_value("λ/β grid").run()
    assert any("loss.beta" in rendered(e.value) for e in at.error)
    _queue(at)
    assert Store(app_db).list_runs() == []


def test_grid_needs_a_loss_with_lambda_and_beta(app_db, at):
    at.selectbox(key="L.loss.name").set_value("cce").run()
    at.radio(key="L.mode").set_value("λ/β grid").run()
    assert any("choose dm" in rendered(e.value) for e in at.error)


def test_method_comparison_uses_the_same_data_and_seed(app_db, at):
    at.number_input(key="L.seed").set_value(7).run()
    at.selectbox(key="L.dataset.noise.kind").set_value("symmetric").run()
    at.number_input(key="L.dataset.noise.symmetric.rate").set_value(0.4).run()
    at.number_input(key="L.loss.dm.lam").set_value(1.0).run()
    at.radio(key="L.mode").set_value("method comparison").run()
    at.multiselect(key="L.compare").set_value(["cce", "gce-dn", "dm"]).run()
    at.number_input(key="L.compare_seeds").set_value(1).run()
    _queue(at)
    configs = _configs(app_db)
    assert [c["loss"]["name"] for c in configs] == ["cce", "gce-dn", "dm"]
    assert {c["seed"] for c in configs} == {7}
    assert all(c["dataset"] == configs[0]["dataset"] for c in configs)
    assert configs[0]["dataset"]["noise"]["rate"] == 0.4
    assert configs[2]["loss"]["lam"] == 1.0  # the form's own loss keeps its parameters
    assert configs[1]["loss"] == {"name": "gce-dn", **LOSSES.get("gce-dn").defaults()}
    assert len({r.group for r in Store(app_db).list_runs()}) == 1


def test_method_comparison_queues_each_method_on_three_seeds_by_default(app_db, at):
    """One seed per method gives Compare nothing to test a winner with: the comparison
    queues each method on the form's seed and the next two, as ``dm submit --compare
    --seeds 3`` does (same configs, same names, same order)."""
    import json

    from typer.testing import CliRunner

    from studio.cli import app as cli

    at.number_input(key="L.seed").set_value(4).run()
    at.radio(key="L.mode").set_value("method comparison").run()
    assert at.number_input(key="L.compare_seeds").value == 3
    at.multiselect(key="L.compare").set_value(["cce", "dm"]).run()
    assert at.button(key="L.queue").label == "Queue 6 runs"
    _queue(at)
    form = _configs(app_db)
    assert [(c["loss"]["name"], c["seed"]) for c in form] == [
        ("cce", 4), ("dm", 4), ("cce", 5), ("dm", 5), ("cce", 6), ("dm", 6)]
    assert form[0]["name"] == "run[cce,seed=4]"
    base = dict(form[1], name="run", seed=4)
    config = app_db.replace("sqlite:///", "") + ".json"
    with open(config, "w") as f:
        json.dump(base, f)
    result = CliRunner().invoke(cli, ["submit", config, "--compare", "cce,dm", "--seeds", "3",
                                      "--db", app_db])
    assert result.exit_code == 0, result.output
    assert _configs(app_db)[6:] == form


def test_preset_fills_the_form(app_db, at):
    presets = all_presets()
    at.selectbox(key="L.preset").set_value("digits-symmetric-40-dm.yaml").run()
    at.button(key="L.load").click().run()
    assert at.number_input(key="L.dataset.noise.symmetric.rate").value == 0.4
    assert at.number_input(key="L.loss.dm.beta").value == 12.0
    _queue(at)
    [cfg] = _configs(app_db)
    assert cfg == presets["digits-symmetric-40-dm.yaml"]


def test_paper_presets_without_published_values_are_labelled_as_starting_points(at):
    label = next(label for label in paper_presets() if "Vehicles-10" in label)
    at.selectbox(key="L.preset").set_value(label).run()
    at.button(key="L.load").click().run()
    assert any("starting points" in w.value for w in at.warning)
    assert any(PAPER_NOTE[:40] in c.value for c in at.caption)
    assert at.selectbox(key="L.model.name").value == "resnet44"


def test_paper_presets_are_the_catalogue_runs_they_come_from():
    """Each paper preset is one run that ``dm repro`` would queue for its experiment (read
    through ``Experiment.runs``), equal in every field but its name: a number changed in
    either place alone fails here."""
    from app.presets import paper_sources

    sources = paper_sources()
    assert set(sources) == set(paper_presets()) and len(sources) == 4 + 4 + 2
    for label, preset in paper_presets().items():
        exp, cond_label, method, _ = sources[label]
        queued = {(c, m.label, seed): cfg for c, m, seed, cfg in exp.runs()}
        expected = queued[cond_label, method.label, exp.seeds[0]].model_dump(mode="json")
        got = parse_config(preset).model_dump(mode="json")
        assert got.pop("name") == preset["name"] and expected.pop("name").startswith(exp.name + "/")
        assert got == expected, label
        assert (got["dataset"]["noise"]["rate"], got["loss"]["name"]) == (
            dict(exp.conditions)[cond_label]["dataset"]["noise"]["rate"], "dm")


def test_cifar10_paper_presets_carry_the_papers_best_lambda_and_beta(at):
    # Table 3 of the ICLR 2020 version (dm_core.reference.PAPER_CIFAR10), best final test
    # accuracy per rate: λ=0.5 β=12 (87.8%), λ=1 β=16 (83.3%), λ=2 β=12 (72.5%), λ=2 β=12 (32.8%).
    presets = {label: p for label, p in paper_presets().items() if "CIFAR-10 " in label}
    got = {p["dataset"]["noise"]["rate"]: (p["loss"]["lam"], p["loss"]["beta"]) for p in presets.values()}
    assert got == {0.2: (0.5, 12.0), 0.4: (1.0, 16.0), 0.6: (2.0, 12.0), 0.8: (2.0, 12.0)}
    label = next(label for label, p in presets.items() if p["dataset"]["noise"]["rate"] == 0.4)
    at.selectbox(key="L.preset").set_value(label).run()
    at.button(key="L.load").click().run()
    assert any("83.3% (CCE 60.9%)" in i.value and "rylUOn4Yvr" in i.value for i in at.info)
    assert not any("starting points" in w.value for w in at.warning)
    assert at.selectbox(key="L.model.name").value == "resnet56"
    assert at.number_input(key="L.loss.dm.lam").value == 1.0
    assert at.number_input(key="L.loss.dm.beta").value == 16.0


def test_cifar100_paper_presets_carry_the_authors_lambda_and_beta(at):
    presets = paper_presets()
    # β of the authors' published λ = 0.5 runs: Beta06 at r = 0, 0.2; Beta08 at r = 0.4, 0.6.
    betas = {label: (p["loss"]["lam"], p["loss"]["beta"]) for label, p in presets.items()
             if "CIFAR-100" in label}
    assert sorted(betas.values()) == [(0.5, 6.0), (0.5, 6.0), (0.5, 8.0), (0.5, 8.0)]
    label = next(label for label in betas if "r = 40%" in label)
    assert betas[label] == (0.5, 8.0)
    at.selectbox(key="L.preset").set_value(label).run()
    at.button(key="L.load").click().run()
    assert any("authors' published run" in i.value for i in at.info)
    assert not any("starting points" in w.value for w in at.warning)
    assert at.number_input(key="L.loss.dm.beta").value == 8.0


def test_the_designers_added_dm_curves_come_as_the_grid_and_queue_one_run_each(app_db):
    """The designer's hand-over (app.designer_carry) with its grid: the form opens on the
    λ/β grid of exactly those points, replacing the table there was, and queues them."""
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.session_state["L.grid_table"] = pd.DataFrame({"λ": [9.0], "β values": ["1, 2, 3"]})
    at.run()
    at.radio(key="L.mode").set_value("λ/β grid").run()  # the grid there was, drawn
    at.session_state["designer.carry"] = {"name": "dm", "lam": 0.5, "beta": 12.0,
                                          "grid": [[0.5, [4.0, 12.0]], [2.0, [16.0]]]}
    at.run()
    assert not at.exception
    assert at.radio(key="L.mode").value == "λ/β grid"
    assert at.number_input(key="L.loss.dm.lam").value == 0.5
    assert any("3 curves as the λ/β grid" in i.value for i in at.info)
    assert at.button(key="L.queue").label == "Queue 3 runs"
    _queue(at)
    got = sorted((c["loss"]["name"], c["loss"]["lam"], c["loss"]["beta"]) for c in _configs(app_db))
    assert got == [("dm", 0.5, 4.0), ("dm", 0.5, 12.0), ("dm", 2.0, 16.0)]


def test_designer_scheme_and_cloned_run_fill_the_form(app_db):
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.session_state["designer.carry"] = {"name": "dm", "lam": 3.0, "beta": 20.0}
    at.run()
    assert at.number_input(key="L.loss.dm.lam").value == 3.0
    assert at.number_input(key="L.loss.dm.beta").value == 20.0

    clone = parse_config({"name": "cloned", "seed": 5, "iterations": 123,
                          "loss": {"name": "gce", "q": 0.4},
                          "dataset": {"name": "digits", "noise": {"kind": "pairflip", "rate": 0.3}},
                          "model": {"name": "mlp", "hidden": [64, 32]}}).model_dump(mode="json")
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.session_state["launch.clone"] = clone
    at.run()
    _queue(at)
    [cfg] = _configs(app_db)
    assert cfg == clone


# ---------------------------------------------------------------- property-based form values

_NUMBER_FIELDS = {  # widget key -> (config path, strategy of values the config must reject)
    "L.dataset.noise.symmetric.rate": ("dataset.noise.rate", st.one_of(
        # [0.9, 1): too high for symmetric noise over digits' 10 classes, caught at submit time
        st.floats(min_value=0.9, max_value=1e6), st.floats(min_value=-1e6, max_value=-1e-6))),
    "L.optimizer.lr": ("optimizer.lr", st.one_of(st.floats(min_value=-1e3, max_value=0.0),
                                                 st.floats(min_value=10.001, max_value=1e6))),
    "L.optimizer.momentum": ("optimizer.momentum", st.one_of(
        st.floats(min_value=1.0, max_value=1e3), st.floats(min_value=-1e3, max_value=-1e-6))),
    "L.loss.dm.lam": ("loss.lam", st.floats(min_value=-1e6, max_value=-1e-6)),
    "L.iterations": ("iterations", st.integers(min_value=-10**6, max_value=0)),
    "L.batch_size": ("batch_size", st.one_of(st.integers(min_value=-10**6, max_value=0),
                                             st.integers(min_value=65_537, max_value=10**7))),
}
_HIDDEN_BAD = st.one_of(
    st.lists(st.integers(max_value=0, min_value=-10**6), min_size=1, max_size=3)
    .map(lambda xs: ", ".join(map(str, xs))),
    st.lists(st.floats(min_value=0.01, max_value=1e3).filter(lambda f: not f.is_integer()),
             min_size=1, max_size=3).map(lambda xs: ", ".join(map(repr, xs))),
    st.text(alphabet="abcxyz!@#&*%{}", min_size=1, max_size=6).map(lambda s: f"32, {s}"),
)


@pytest.fixture
def form_session(app_db):
    """One Launch page session reused across hypothesis examples (a page load is slow); each
    example restores what it changed."""
    page = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    page.selectbox(key="L.dataset.noise.kind").set_value("symmetric").run()
    return page, app_db


@pytest.mark.slow  # 60 examples, each two reruns of the page
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_invalid_form_values_are_shown_under_their_field_and_queue_nothing(form_session, reliability,
                                                                           data):
    """Invalid values typed into the Launch form: an error under that field, nothing queued"""
    at, url = form_session
    key = data.draw(st.sampled_from([*_NUMBER_FIELDS, "L.model.mlp.hidden"]), label="field")
    reliability.add(trials=1, faults=1)
    if key == "L.model.mlp.hidden":
        path, widget = "model.hidden", at.text_input(key=key)
        good = widget.value
        widget.input(data.draw(_HIDDEN_BAD, label="text")).run()
    else:
        path, bad = _NUMBER_FIELDS[key]
        widget = at.number_input(key=key)
        good = widget.value
        widget.set_value(data.draw(bad, label="value")).run()
    try:
        messages = errors_under(at, key)
        assert messages and all(m.startswith(path) for m in messages), messages
        assert at.button(key="L.queue").disabled or _queue(at).error
        assert Store(url).list_runs() == []
    finally:
        (widget.input(good) if key == "L.model.mlp.hidden" else at.number_input(key=key).set_value(good)).run()
    assert not errors_under(at, key)  # restored: the next example starts from a valid form


def test_classes_per_batch_from_the_form(app_db, at):
    keys = [w.key for w in at.number_input]
    assert "L.dataset.classes_per_batch" in keys, keys
    assert at.number_input(key="L.dataset.classes_per_batch").value is None  # empty: every class
    at.number_input(key="L.dataset.classes_per_batch").set_value(4).run()
    at.button(key="L.queue").click().run()
    # Without the balanced sampler the value is refused beside its field, and nothing queued.
    assert _configs(app_db) == []
    assert any("dataset.classes_per_batch: needs dataset.balanced_sampler=true" in rendered(e.value)
               for e in at.error), [e.value for e in at.error]
    at.checkbox(key="L.dataset.balanced_sampler").check().run()
    _queue(at)
    [cfg] = _configs(app_db)
    assert cfg["dataset"]["balanced_sampler"] is True and cfg["dataset"]["classes_per_batch"] == 4


# ---------------------------------------------------------------- refused before queueing

def test_choosing_symmetric_noise_proposes_a_rate_and_r0_is_refused(app_db, at):
    """Choosing a noise kind that takes a rate must not leave the rate at 0: "symmetric,
    r = 0" would queue a clean run under a noisy name."""
    at.selectbox(key="L.dataset.noise.kind").set_value("symmetric").run()
    assert at.number_input(key="L.dataset.noise.symmetric.rate").value == 0.4
    at.number_input(key="L.dataset.noise.symmetric.rate").set_value(0.0).run()
    messages = errors_under(at, "L.dataset.noise.symmetric.rate")
    assert messages and "r = 0 corrupts no label" in messages[0], messages
    _queue(at)
    assert Store(app_db).list_runs() == []
    at.number_input(key="L.dataset.noise.symmetric.rate").set_value(0.2).run()
    assert not errors_under(at, "L.dataset.noise.symmetric.rate")
    _queue(at)
    [cfg] = _configs(app_db)
    assert cfg["dataset"]["noise"] == {**cfg["dataset"]["noise"], "kind": "symmetric", "rate": 0.2}


def _cifar_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("DM_DATA_DIRS", str(tmp_path))
    root = tmp_path / "cifar"
    root.mkdir()
    return root


def _complete(root):
    batches = root / "cifar-10-batches-py"
    batches.mkdir()
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"]:
        (batches / name).write_bytes(b"")


def test_cifar10_without_its_files_is_refused_at_submit_time(app_db, tmp_path, monkeypatch):
    root = _cifar_folder(tmp_path, monkeypatch)
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    at.selectbox(key="L.dataset.name").set_value("cifar10").run()
    at.text_input(key="L.dataset.cifar10.root").input(str(root)).run()
    messages = errors_under(at, "L.dataset.cifar10.root")
    assert messages and messages[0].startswith("dataset.root: no cifar10 files under"), messages
    assert "cifar-10-batches-py/data_batch_1" in messages[0]
    _queue(at)
    assert Store(app_db).list_runs() == []
    _complete(root)  # the files a worker reads are there now: queued
    at.run()
    assert not errors_under(at, "L.dataset.cifar10.root")
    _queue(at)
    [cfg] = _configs(app_db)
    assert cfg["dataset"]["name"] == "cifar10" and cfg["dataset"]["root"] == str(root)


def test_dm_submit_refuses_cifar10_without_its_files(app_db, tmp_path, monkeypatch):
    import json

    from typer.testing import CliRunner

    from studio.cli import app as cli

    root = _cifar_folder(tmp_path, monkeypatch)
    config = tmp_path / "cifar.yaml"
    config.write_text(json.dumps({"name": "c", "dataset": {"name": "cifar10", "root": str(root)}}))
    result = CliRunner().invoke(cli, ["submit", str(config), "--db", app_db])
    assert result.exit_code == 2, result.output
    assert "dataset.root: no cifar10 files under" in result.output
    assert Store(app_db).list_runs() == []
    _complete(root)
    result = CliRunner().invoke(cli, ["submit", str(config), "--db", app_db])
    assert result.exit_code == 0, result.output
    assert len(Store(app_db).list_runs()) == 1


def _submit(app_db, tmp_path, *args):
    import json

    from typer.testing import CliRunner

    from studio.cli import app as cli

    config = tmp_path / "run.json"
    config.write_text(json.dumps({"name": "r", "iterations": 50}))
    return CliRunner().invoke(cli, ["submit", str(config), *args, "--db", app_db])


def test_the_form_and_dm_submit_refuse_noise_at_rate_zero_in_the_same_words(app_db, at, tmp_path):
    at.selectbox(key="L.dataset.noise.kind").set_value("pairflip").run()
    at.number_input(key="L.dataset.noise.pairflip.rate").set_value(0.0).run()
    [form] = errors_under(at, "L.dataset.noise.pairflip.rate")
    result = _submit(app_db, tmp_path, "--set", "dataset.noise.kind=pairflip",
                     "--set", "dataset.noise.rate=0")
    assert result.exit_code == 2, result.output
    assert form.startswith("dataset.noise.rate: pairflip noise at r = 0 corrupts no label")
    assert form in result.output
    assert Store(app_db).list_runs() == []
    assert _submit(app_db, tmp_path, "--set", "dataset.noise.kind=pairflip",
                   "--set", "dataset.noise.rate=0.2").exit_code == 0


def test_the_form_and_dm_submit_refuse_a_degenerate_beta_in_the_same_words(app_db, at, tmp_path):
    """β = 10⁶ puts a whole batch's gradient on one example (and overflows float32): refused
    by both, naming loss.beta and the range allowed at this λ and batch size; β at the
    bound is queued."""
    from studio.submission import beta_bound

    at.number_input(key="L.loss.dm.lam").set_value(1.0).run()
    at.number_input(key="L.loss.dm.beta").set_value(1e6).run()
    [form] = errors_under(at, "L.loss.dm.beta")
    bound = beta_bound("dm", {"lam": 1.0}, 128)
    # The form says the allowed range beside the loss before any value is refused.
    assert any(f"−{bound:.4g} ≤ β ≤ {bound:.4g} at batch size 128" in c.value for c in at.caption)
    assert form.startswith("loss.beta: β = 1e+06 is degenerate for dm with λ=1 at batch size 128")
    assert f"allowed here: {-bound:.4g} ≤ β ≤ {bound:.4g}" in form and "overflow float32" in form
    _queue(at)
    assert Store(app_db).list_runs() == []
    result = _submit(app_db, tmp_path, "--set", "loss.lam=1", "--set", "loss.beta=1e6")
    assert result.exit_code == 2 and form in " ".join(result.output.split()), result.output
    assert Store(app_db).list_runs() == []
    at.number_input(key="L.loss.dm.beta").set_value(80.0).run()  # under the bound of 83.15
    assert not errors_under(at, "L.loss.dm.beta")
    assert _submit(app_db, tmp_path, "--set", "loss.lam=1", "--set", "loss.beta=80").exit_code == 0


def test_dm_submit_seeds_belongs_to_a_comparison_and_is_bounded(app_db, tmp_path):
    result = _submit(app_db, tmp_path, "--seeds", "3")
    assert result.exit_code == 2 and "--seeds: only with --compare" in result.output, result.output
    result = _submit(app_db, tmp_path, "--compare", "cce,dm", "--seeds", "501")
    assert result.exit_code == 2, result.output
    assert "--seeds: 501 seeds × 2 losses = 1002 runs; at most 1000" in result.output
    assert Store(app_db).list_runs() == []
    result = _submit(app_db, tmp_path, "--compare", "cce,dm", "--seeds", "2", "--set", "seed=9")
    assert result.exit_code == 0, result.output
    assert sorted(r.name for r in Store(app_db).list_runs()) == [
        "r[cce,seed=10]", "r[cce,seed=9]", "r[dm,seed=10]", "r[dm,seed=9]"]
