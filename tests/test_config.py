"""Run configuration: the shipped preset works as written; every bad value names its field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dm_core.config import ConfigError, apply_overrides, load_config, parse_config

ROOT = Path(__file__).resolve().parents[1]
PRESET = ROOT / "configs" / "digits-symmetric-40-dm.yaml"


def test_shipped_preset_loads_as_written():
    cfg = load_config(PRESET)
    assert cfg.name == "digits-symmetric-40-dm"
    assert cfg.seed == 123
    assert cfg.dataset.name == "digits"
    assert cfg.dataset.noise.kind == "symmetric" and cfg.dataset.noise.rate == 0.4
    assert cfg.model.params()["hidden"] == [256, 256]
    assert cfg.loss.params()["lam"] == 1.0 and cfg.loss.params()["beta"] == 12.0
    assert cfg.optimizer.lr == 0.1 and cfg.optimizer.weight_decay == 1e-4
    assert cfg.schedule.milestones == [1500, 2250]
    assert (cfg.iterations, cfg.batch_size, cfg.eval_every, cfg.histogram_bins) == (3000, 128, 100, 20)


def test_overrides_are_typed_and_layered():
    cfg = load_config(PRESET, ["loss.lam=2", "optimizer.lr=1e-3", "model.hidden=[64]", "seed=7"])
    assert cfg.loss.params()["lam"] == 2.0
    assert cfg.optimizer.lr == pytest.approx(1e-3)
    assert cfg.model.params()["hidden"] == [64]
    assert cfg.seed == 7
    # The resolved config is explicit: defaults of the chosen entries are filled in.
    assert cfg.loss.params()["eps"] == pytest.approx(1e-6)


def test_resolved_config_round_trips_through_json():
    cfg = load_config(PRESET)
    again = parse_config(json.loads(json.dumps(cfg.model_dump(mode="json"))))
    assert again == cfg


BAD = [
    ("loss.lam=-1", "loss.lam", "[0, inf)"),
    ("dataset.noise.rate=1.5", "dataset.noise.rate", "must be in [0, 1) (got 1.5)"),
    ("dataset.noise.rate=-0.1", "dataset.noise.rate", "must be in [0, 1) (got -0.1)"),
    ("dataset.name=imagenet22k", "dataset", "digits"),
    ("model.name=transformer9000", "model", "mlp"),
    ("loss.name=hinge", "loss", "dm"),
    ("dataset.noise.kind=gaussian", "dataset.noise.kind", "symmetric"),
    ("optimizer.lr=0", "optimizer.lr", "must be in (0, 10] (got 0)"),
    ("optimizer.name=lbfgs", "optimizer.name", "sgd"),
    ("batch_size=-4", "batch_size", "must be in [1, 65536] (got -4)"),
    ("batch_size=many", "batch_size", "must be an integer in [1, 65536] (got 'many')"),
    ("iterations=0", "iterations", "must be in [1, 10000000] (got 0)"),
    ("histogram_bins=1", "histogram_bins", "must be in [2, 200] (got 1)"),
    ("eval_every=0", "eval_every", "must be in [1, inf) (got 0)"),
    ("optimizer.momentum=1", "optimizer.momentum", "must be in [0, 1) (got 1)"),
    ("schedule.gamma=0", "schedule.gamma", "must be in (0, 1] (got 0)"),
    ("device=tpu", "device", "cuda"),
    ("loss.gamma_typo=3", "loss.gamma_typo", "lam"),
    ("colour=blue", "colour", "unknown"),
    ("schedule.milestones=[3000,1500]", "schedule.milestones", "increasing"),
    ("schedule.milestones=[5000]", "schedule.milestones", "iterations"),
    ("dataset.val_fraction=0.95", "dataset.val_fraction", "0.9"),
    ("model.hidden=[0]", "model.hidden", "1"),
    ("optimizer.nesterov=true", "optimizer.nesterov", "momentum"),
    ("optimizer.warmup=-1", "optimizer.warmup", "must be in [0, 10000000] (got -1)"),
    ("optimizer.warmup=1.5", "optimizer.warmup", "integer"),
    ("optimizer.clip_grad_norm=-2", "optimizer.clip_grad_norm", "must be in [0, 1000000] (got -2)"),
    ("optimizer.clip_grad_norm=\"big\"", "optimizer.clip_grad_norm", "big"),
]


@pytest.mark.parametrize(("overrides", "warmup", "clip"), [
    (["optimizer.warmup=200", "optimizer.clip_grad_norm=3"], 200, 3.0),
    (["optimizer.clip_grad_norm=0"], 0, None),  # 0 and null both mean off
    (["optimizer.clip_grad_norm=null"], 0, None),
])
def test_stabilisers_are_optimizer_fields(overrides, warmup, clip):
    cfg = load_config(PRESET, ["optimizer.warmup=0", *overrides])
    assert cfg.optimizer.warmup == warmup and cfg.optimizer.clip == clip


@pytest.mark.parametrize(("override", "field", "allowed"), BAD, ids=[b[0] for b in BAD])
def test_bad_values_name_the_field_and_the_allowed_values(override, field, allowed):
    extra = ["optimizer.momentum=0"] if override.startswith("optimizer.nesterov") else []
    with pytest.raises(ConfigError) as err:
        load_config(PRESET, [*extra, override])
    message = str(err.value)
    assert field in message
    assert allowed in message


# Noise settings the chosen kind would ignore: each names the field and what is allowed.
IGNORED_NOISE = [
    ({"kind": "none", "rate": 0.4}, "dataset.noise.rate", "symmetric, pairflip, asymmetric"),
    ({"kind": "imbalance", "rate": 0.4}, "dataset.noise.rate", "classes, keep_fraction"),
    ({"kind": "asymmetric", "rate": 0.3, "transition": [[0.8, 0.2], [0.2, 0.8]]},
     "dataset.noise.rate", "rate must be 0"),
    ({"kind": "symmetric", "rate": 0.4, "classes": [1]}, "dataset.noise.classes", "symmetric takes: rate"),
    ({"kind": "symmetric", "rate": 0.4, "transition": [[1.0]]}, "dataset.noise.transition",
     "symmetric takes: rate"),
    ({"kind": "pairflip", "rate": 0.2, "keep_fraction": 0.5}, "dataset.noise.keep_fraction",
     "pairflip takes: rate"),
    ({"kind": "none", "classes": [0]}, "dataset.noise.classes", "none takes: nothing"),
    ({"kind": "imbalance", "transition": [[1.0]]}, "dataset.noise.transition",
     "imbalance takes: classes, keep_fraction"),
    ({"kind": "asymmetric", "rate": 0.2}, "dataset.noise.transition", "cifar10 and cifar100"),
]


@pytest.mark.parametrize(("noise", "field", "allowed"), IGNORED_NOISE,
                         ids=[f"{n['kind']}-{f.rsplit('.', 1)[1]}" for n, f, _ in IGNORED_NOISE])
def test_noise_settings_the_kind_would_ignore_are_rejected(noise, field, allowed):
    with pytest.raises(ConfigError) as err:
        parse_config({"dataset": {"name": "digits", "noise": noise}})
    message = str(err.value)
    assert message.startswith(field + ":"), message
    assert allowed in message


@pytest.mark.parametrize("noise", [
    {"kind": "none"}, {"kind": "none", "rate": 0.0},
    {"kind": "imbalance", "rate": 0.0, "classes": [0], "keep_fraction": 0.1},
    {"kind": "asymmetric", "transition": [[0.9, 0.1], [0.1, 0.9]]},
    {"kind": "asymmetric", "rate": 0.0, "transition": [[0.9, 0.1], [0.1, 0.9]]},
], ids=["none", "none-rate-0", "imbalance", "matrix", "matrix-rate-0"])
def test_noise_settings_the_kind_uses_are_accepted(noise):
    assert parse_config({"dataset": {"name": "digits", "noise": noise}}).dataset.noise.kind == noise["kind"]
    cfg = parse_config({"dataset": {"name": "cifar10", "root": "data",
                                    "noise": {"kind": "asymmetric", "rate": 0.4}}})
    assert cfg.dataset.noise.rate == 0.4


def test_every_shipped_preset_and_experiment_stays_valid():
    from app.presets import all_presets, paper_presets, yaml_presets
    from studio.repro.presets import EXPERIMENTS

    presets = all_presets()
    assert set(presets) == set(yaml_presets()) | set(paper_presets())
    assert {p.name for p in (ROOT / "configs").glob("*.yaml")} <= set(presets)
    for entry in EXPERIMENTS.entries():
        exp = entry.extra["experiment"]
        runs = list(exp.runs())  # every condition × method × seed validates
        assert len(runs) == len(exp.conditions) * len(exp.methods) * len(exp.seeds)
        # and the runs it offers the Launch page are among them
        assert {(c, m.label) for c, m, _ in exp.launch_configs()} <= {(c, m.label) for c, m, _, _ in runs}


def test_nan_and_inf_are_rejected():
    for text in (".nan", ".inf"):
        with pytest.raises(ConfigError, match="loss.beta"):
            load_config(PRESET, [f"loss.beta={text}"])


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("loss: {name: dm, lam: [1\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad_yaml)
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"loss": ')
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(bad_json)
    a_list = tmp_path / "list.yaml"
    a_list.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(a_list)


def test_malformed_override():
    with pytest.raises(ConfigError, match="dotted.key=value"):
        load_config(PRESET, ["loss.lam"])


def test_overrides_as_text_and_as_a_mapping_set_the_same_paths():
    """``--set`` texts and a study's condition (a nested mapping) are one way of layering: each
    sets values at dotted paths, keeping the section's other keys, creating missing sections."""
    base = {"loss": {"name": "dm", "lam": 1.0}, "dataset": {"name": "digits"}}
    texts = ["loss.beta=4", "dataset.noise.kind=symmetric", "dataset.noise.rate=0.2", "seed=3"]
    mapping = {"loss": {"beta": 4}, "dataset": {"noise": {"kind": "symmetric", "rate": 0.2}},
               "seed": 3}
    expected = {"loss": {"name": "dm", "lam": 1.0, "beta": 4},
                "dataset": {"name": "digits", "noise": {"kind": "symmetric", "rate": 0.2}}, "seed": 3}
    assert apply_overrides(base, texts) == apply_overrides(base, mapping) == expected
    assert base == {"loss": {"name": "dm", "lam": 1.0}, "dataset": {"name": "digits"}}  # unchanged
    # A later text wins; a whole section given as a value replaces it.
    assert apply_overrides(base, ["loss={name: cce}", "loss.eps=0"]) == {
        "loss": {"name": "cce", "eps": 0}, "dataset": {"name": "digits"}}
    with pytest.raises(ConfigError, match=r"--set: 'loss.name.x=1': name is not a section"):
        apply_overrides(base, ["loss.name.x=1"])
    with pytest.raises(ConfigError, match=r"'loss.name.x': name is not a section"):
        apply_overrides(base, {"loss": {"name": {"x": 1}}})


def test_a_quoted_override_stays_a_string():
    """``--set seed='0'`` is the string '0' (refused for an integer field), not the number."""
    assert apply_overrides({}, ["name='7'", "seed=7"]) == {"name": "7", "seed": 7}
    with pytest.raises(ConfigError, match="seed"):
        parse_config({}, ["seed='0'"])


@pytest.mark.parametrize(("dataset", "rate", "ok"), [
    ("digits", 0.89, True), ("digits", 0.9, False), ("digits", 0.95, False),
    ("digits_binary", 0.49, True), ("digits_binary", 0.5, False),
    ("cifar100", 0.95, True), ("cifar100", 0.99, False), ("cifar10", 0.9, False),
])
def test_symmetric_rate_is_bounded_by_the_class_count_at_submit_time(dataset, rate, ok):
    """At (C-1)/C a symmetric label is as likely any other class as its own: refused when the
    config is parsed (nothing queued), not later on a worker."""
    data = {"dataset": {"name": dataset, "noise": {"kind": "symmetric", "rate": rate}}}
    if ok:
        assert parse_config(data).dataset.noise.rate == rate
    else:
        with pytest.raises(ConfigError, match=r"dataset\.noise\.rate: .* too high for symmetric"):
            parse_config(data)


def test_registered_class_counts_are_the_loaded_ones():
    from dm_core.data import DATASETS, load_dataset

    for name in ("digits", "digits_binary"):
        bundle = load_dataset(name, seed=0)
        assert DATASETS.get(name).extra["num_classes"] == bundle.num_classes == len(
            set(bundle.y_test.tolist()))


# ---------------------------------------------------------------- errors as data

def test_config_error_carries_one_field_path_and_message_per_problem():
    """Three independent mistakes (a pydantic range, a registry parameter, a noise check)
    come back as three (path, message) pairs, each naming its own field and allowed range."""
    with pytest.raises(ConfigError) as caught:
        parse_config({"batch_size": 0, "loss": {"name": "dm", "lam": -1},
                      "model": {"name": "mlp", "hidden": [8, 0]}})
    err = caught.value
    assert dict(err.errors) == {
        "batch_size": "must be in [1, 65536] (got 0)",
        "loss.lam": "-1.0 is out of range; must be a float in [0, inf)",
        "model.hidden[1]": "0 is out of range; must be a list[int] in [1, 65536]",
    }
    # The text is the pairs, joined: what the CLI and logs show.
    assert str(err) == "; ".join(f"{p}: {m}" for p, m in err.errors)


def test_config_error_paths_of_whole_config_checks_and_nested_models():
    with pytest.raises(ConfigError) as caught:
        parse_config({"iterations": 10, "schedule": {"milestones": [20]}})
    assert caught.value.paths() == ["schedule.milestones"]
    with pytest.raises(ConfigError) as caught:
        parse_config({"optimizer": {"nesterov": True, "momentum": 0}})
    assert caught.value.paths() == ["optimizer.nesterov"]
    with pytest.raises(ConfigError) as caught:
        parse_config({"dataset": {"noise": {"kind": "none", "rate": 0.3}}})
    assert caught.value.paths() == ["dataset.noise.rate"]


def test_config_error_from_one_line_text_and_through_pickle():
    import pickle

    assert ConfigError("dataset.root: folder 'x' does not exist").errors == [
        ("dataset.root", "folder 'x' does not exist")]
    assert ConfigError("config file 'a b.yaml' does not exist").errors == [
        ("", "config file 'a b.yaml' does not exist")]
    many = ConfigError(errors=[("loss.lam", "too low"), ("seed", "too high")])
    again = pickle.loads(pickle.dumps(many))
    assert again.errors == many.errors and str(again) == "loss.lam: too low; seed: too high"
