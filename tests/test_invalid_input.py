"""Property-based: thousands of invalid configs, each rejected with a message naming its field.

The generator takes a valid config, breaks one field in one way (wrong type, out of range,
NaN/inf, unknown key, unknown registry name, negative size) and checks that validation
raises ``ConfigError`` mentioning that field's dotted path -- never another exception from
deep inside pydantic, torch or numpy.

Every example is counted into docs/reliability.md (the ``reliability`` fixture; hypothesis
calls the test body once per example with the same fixture value, which is what a counter
wants, hence the suppressed ``function_scoped_fixture`` health check).
"""

from __future__ import annotations

import json
import math

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from dm_core.config import ConfigError, apply_overrides, parse_config, read_config_file
from dm_store import Store
from studio.cli import app

VALID = {
    "name": "prop", "seed": 1,
    "dataset": {"name": "digits", "noise": {"kind": "symmetric", "rate": 0.2}, "val_fraction": 0.1},
    "model": {"name": "mlp", "hidden": [16]},
    "loss": {"name": "dm", "lam": 1.0, "beta": 8.0},
    "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4},
    "schedule": {"milestones": [5], "gamma": 0.1},
    "iterations": 10, "batch_size": 8, "eval_every": 5, "histogram_bins": 10, "device": "cpu",
}

# field path -> strategies of values that must be rejected
BAD_VALUES = {
    "seed": st.one_of(st.integers(max_value=-1), st.text(max_size=3), st.floats(allow_nan=True).filter(lambda x: not float(x).is_integer())),
    "iterations": st.one_of(st.integers(max_value=0), st.just("many"), st.just(None)),
    "batch_size": st.one_of(st.integers(max_value=0), st.integers(min_value=70_000)),
    "eval_every": st.integers(max_value=0),
    "histogram_bins": st.one_of(st.integers(max_value=1), st.integers(min_value=201)),
    "device": st.text(min_size=1, max_size=8).filter(lambda s: s not in ("auto", "cpu", "cuda", "mps") and not s.startswith("cuda:")),
    "dataset.name": st.text(min_size=1, max_size=10).filter(lambda s: s not in ("digits", "mnist", "fashion_mnist", "cifar10", "cifar100", "vehicles10", "image_folder", "arrays", "digits_binary")),
    "dataset.noise.rate": st.one_of(st.floats(min_value=1.0, allow_infinity=True), st.floats(max_value=-1e-9, allow_infinity=True), st.just(math.nan)),
    "dataset.noise.kind": st.sampled_from(["gaussian", "", "SYMMETRIC", "flip"]),
    # VALID has no balanced_sampler, so any value is refused, and out-of-range ones regardless.
    "dataset.classes_per_batch": st.one_of(st.integers(max_value=0), st.integers(min_value=11, max_value=99), st.just(4)),
    "dataset.val_fraction": st.one_of(st.floats(min_value=0.9001, max_value=1e6), st.floats(max_value=-1e-9, min_value=-1e6)),
    "model.name": st.sampled_from(["transformer", "resnet21", "MLP", ""]),
    "model.hidden": st.one_of(st.lists(st.integers(max_value=0), min_size=1, max_size=3), st.just("wide"), st.just([1.5])),
    "loss.name": st.sampled_from(["hinge", "dm2", "", "CCE"]),
    "loss.lam": st.one_of(st.floats(max_value=-1e-9, min_value=-1e9), st.just(math.inf), st.just("one")),
    "loss.beta": st.one_of(st.just(math.nan), st.just(-math.inf), st.just([1])),
    "loss.eps": st.floats(max_value=-1e-12, min_value=-1.0),
    "optimizer.lr": st.one_of(st.floats(max_value=0.0, min_value=-10), st.floats(min_value=10.001, max_value=1e9)),
    "optimizer.momentum": st.one_of(st.floats(min_value=1.0, max_value=10), st.floats(max_value=-1e-9, min_value=-10)),
    "optimizer.name": st.sampled_from(["lbfgs", "SGD", "rmsprop"]),
    "schedule.gamma": st.one_of(st.floats(max_value=0.0, min_value=-5), st.floats(min_value=1.0001, max_value=100)),
    "schedule.milestones": st.one_of(st.just([0]), st.just([8, 3]), st.just([1000])),
}


def set_path(data, path, value):
    node = data
    *parents, leaf = path.split(".")
    for p in parents:
        node = node[p]
    node[leaf] = value
    return data


COUNTED = [HealthCheck.function_scoped_fixture]


@settings(max_examples=1500, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, *COUNTED])
@given(st.sampled_from(sorted(BAD_VALUES)).flatmap(lambda f: st.tuples(st.just(f), BAD_VALUES[f])))
def test_every_invalid_value_is_rejected_naming_its_field(reliability, case):
    """Invalid values in every config field, each rejected naming its field"""
    field, value = case
    reliability.add(trials=1, faults=1)
    data = set_path(json.loads(json.dumps(VALID)), field, value)
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    # The whole dotted path of the broken field, not only its section.
    assert field in str(err.value), (field, value, str(err.value))


@settings(max_examples=300, deadline=None, suppress_health_check=COUNTED)
@given(st.text(min_size=1, max_size=12).filter(lambda k: k.isidentifier()),
       st.sampled_from(["", "dataset.", "model.", "loss.", "optimizer.", "schedule.", "dataset.noise."]))
def test_unknown_keys_are_rejected(reliability, key, section):
    """Unknown keys in every config section, each rejected naming the key"""
    reliability.add(trials=1)
    data = json.loads(json.dumps(VALID))
    known = set(json.dumps(VALID))  # noqa: F841 - only for readability of failures
    path = section + key
    node = data
    for p in section.strip(".").split(".") if section else []:
        node = node[p]
    if key in node or key in ("name",) or (section == "" and key in {"amp", "relabel", "max_logit"}):
        return
    if section == "dataset." and key in {"balanced_sampler", "augment", "classes_per_batch"}:
        return
    if section == "model." and key in {"dropout", "batch_norm"}:
        return
    if section == "loss." and key == "eps":
        return
    if section == "optimizer." and key == "nesterov":
        return
    node[key] = 1
    reliability.add(faults=1)  # a key the config really lacks
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    assert key in str(err.value), (path, str(err.value))


@settings(max_examples=300, deadline=None, suppress_health_check=COUNTED)
@given(st.text(max_size=40))
def test_override_strings_never_crash(reliability, text):
    """Any --set string is either applied or rejected with a ConfigError."""
    reliability.add(trials=1)
    try:
        parse_config(apply_overrides(VALID, [text]))
    except ConfigError:
        reliability.add(faults=1, rejected=1)


@settings(max_examples=200, deadline=None, suppress_health_check=COUNTED)
@given(st.binary(max_size=200))
def test_malformed_files_give_config_errors(reliability, tmp_path_factory, blob):
    """Random bytes as a config file: a ConfigError, never another exception"""
    reliability.add(trials=1)
    path = tmp_path_factory.mktemp("cfg") / "c.yaml"
    path.write_bytes(blob)
    try:
        parse_config(read_config_file(path))
    except ConfigError:
        reliability.add(faults=1, rejected=1)
    except UnicodeDecodeError:
        pytest.fail("a binary file must give a ConfigError, not UnicodeDecodeError")


# ---------------------------------------------------------------- the same through the CLI

def _yaml_literal(value) -> str:
    """``value`` as the text of a ``--set key=VALUE`` that YAML reads back as exactly it."""
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


@settings(max_examples=200, deadline=None, suppress_health_check=COUNTED)
@given(st.sampled_from(sorted(BAD_VALUES)).flatmap(lambda f: st.tuples(st.just(f), BAD_VALUES[f])))
def test_dm_submit_rejects_invalid_values_and_writes_nothing(reliability, tmp_path_factory, case):
    """dm submit --set with an invalid value: exit 2 naming the field, no database written"""
    field, value = case
    reliability.add(trials=1, faults=1)
    work = tmp_path_factory.mktemp("submit")
    config = work / "run.json"
    config.write_text(json.dumps(VALID))
    db = work / "dm.sqlite"
    result = CliRunner().invoke(app, ["submit", str(config), "--set", f"{field}={_yaml_literal(value)}"],
                                env={"DM_DATABASE_URL": f"sqlite:///{db}"})
    assert result.exit_code == 2, (field, value, result.output)
    assert field in result.output, (field, value, result.output)
    assert "Traceback" not in result.output
    assert not db.exists()  # validated before the store is even opened


@settings(max_examples=150, deadline=None, suppress_health_check=COUNTED)
@given(st.text(max_size=40), st.sampled_from(["loss.beta", "loss.lam", "optimizer.lr", "seed", ""]))
@example(",", "loss.beta")  # found by this test: an axis with no values was an empty grid
def test_dm_submit_grid_strings_are_queued_whole_or_not_at_all(reliability, tmp_path_factory, text, key):
    """Any --grid string: exit 0 with every grid point queued, or exit 2 with nothing queued"""
    reliability.add(trials=1)
    work = tmp_path_factory.mktemp("grid")
    config = work / "run.json"
    config.write_text(json.dumps(VALID))
    url = f"sqlite:///{work / 'dm.sqlite'}"
    axis = f"{key}={text}" if key else text
    result = CliRunner().invoke(app, ["submit", str(config), "--grid", axis, "--json"],
                                env={"DM_DATABASE_URL": url})
    assert result.exit_code in (0, 2), (axis, result.output)
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        reliability.add(faults=1, rejected=1)
        assert "--grid" in result.output or "invalid config" in result.output, result.output
        assert not (work / "dm.sqlite").exists()
    else:
        queued = json.loads(result.stdout.strip().splitlines()[-1])["runs"]
        assert len(Store(url).list_runs()) == len(queued) >= 1


def test_dm_submit_lists_every_problem_on_its_own_line(tmp_path):
    """Several bad fields: exit 2 and one `field: message` line per field, nothing stored."""
    config = tmp_path / "run.json"
    config.write_text(json.dumps(VALID))
    db = tmp_path / "dm.sqlite"
    result = CliRunner().invoke(app, ["submit", str(config), "--set", "batch_size=0",
                                      "--set", "loss.lam=-2", "--set", "model.hidden=[4,0]"],
                                env={"DM_DATABASE_URL": f"sqlite:///{db}"})
    assert result.exit_code == 2, result.output
    lines = [line.strip() for line in result.output.splitlines()]
    assert lines[0] == "error: invalid config (3 problems):"
    assert sorted(line.split(":")[0] for line in lines[1:]) == [
        "batch_size", "loss.lam", "model.hidden[1]"]
    assert not db.exists()


# ---------------------------------------------------------------- hostile sizes (issue F)

DEEP = 20_000
# 324 bytes that a naive YAML load expands into 9**9 (387 million) strings.
ALIAS_BOMB = "\n".join(
    ["a: &a [lol,lol,lol,lol,lol,lol,lol,lol,lol]"]
    + [f"{b}: &{b} [{','.join([f'*{a}'] * 9)}]" for a, b in zip("abcdefgh", "bcdefghi", strict=True)]
) + "\n"


def _submit(tmp_path, config_text: str, suffix: str, *args: str):
    config = tmp_path / f"run{suffix}"
    config.write_text(config_text)
    db = tmp_path / "dm.sqlite"
    result = CliRunner().invoke(app, ["submit", str(config), *args],
                                env={"DM_DATABASE_URL": f"sqlite:///{db}"})
    return result, db


@pytest.mark.parametrize(("suffix", "text"), [
    (".yaml", "a: " + "[" * DEEP + "]" * DEEP + "\n"),
    (".yaml", "".join(f"{' ' * i}k:\n" for i in range(1000)) + " " * 1000 + "k: 1\n"),
    (".json", '{"a": ' + "[" * DEEP + "]" * DEEP + "}"),
    (".json", '{"a": ' + '{"b": ' * DEEP + "1" + "}" * DEEP + "}"),
], ids=["yaml-flow", "yaml-block", "json-lists", "json-objects"])
def test_deeply_nested_files_are_refused_with_the_limit(tmp_path, suffix, text):
    from dm_core.config import MAX_CONFIG_DEPTH

    result, db = _submit(tmp_path, text, suffix)
    assert result.exit_code == 2, result.output
    assert f"nested more than {MAX_CONFIG_DEPTH} levels deep" in result.output, result.output
    assert "Traceback" not in result.output and "RecursionError" not in result.output
    assert not db.exists()


def test_a_yaml_alias_bomb_file_is_refused(tmp_path):
    from dm_core.config import MAX_CONFIG_NODES

    result, db = _submit(tmp_path, ALIAS_BOMB, ".yaml")
    assert result.exit_code == 2, result.output
    assert f"more than {MAX_CONFIG_NODES} values once its aliases are expanded" in result.output
    assert not db.exists()


def test_alias_bombs_and_deep_values_in_set_or_grid_are_refused(tmp_path):
    from dm_core.config import MAX_CONFIG_NODES

    flow = "{" + ALIAS_BOMB.strip().replace("\n", ", ") + "}"
    for args in (["--set", f"model.hidden={flow}"], ["--grid", "loss.lam=" + "[" * DEEP + "]" * DEEP],
                 ["--set", "model.hidden=" + "[" * DEEP + "]" * DEEP]):
        result, db = _submit(tmp_path, json.dumps(VALID), ".json", *args)
        assert result.exit_code == 2, (args[0], result.output)
        assert args[0] in result.output and (f"{MAX_CONFIG_NODES} values" in result.output
                                             or "levels deep" in result.output), result.output
        assert not db.exists()


def test_a_config_file_over_the_size_limit_is_refused(tmp_path):
    from dm_core.config import MAX_CONFIG_BYTES

    result, db = _submit(tmp_path, "name: x\n" + "#" * MAX_CONFIG_BYTES + "\n", ".yaml")
    assert result.exit_code == 2 and f"{MAX_CONFIG_BYTES} bytes" in result.output, result.output


def test_anchors_and_aliases_within_bounds_still_work(tmp_path):
    from dm_core.config import read_config_file

    path = tmp_path / "ok.yaml"
    path.write_text("widths: &w [32, 32]\nmodel: {name: mlp, hidden: *w}\n")
    assert read_config_file(path)["model"]["hidden"] == [32, 32]


@pytest.mark.parametrize("axes", [
    ["seed=" + ",".join(map(str, range(1000))), "loss.lam=" + ",".join(map(str, range(1000)))],
    ["seed=" + ",".join(map(str, range(1001)))],
], ids=["a-million", "one-over"])
def test_a_grid_over_the_run_limit_is_refused_before_it_is_expanded(tmp_path, axes):
    from studio.sweeps import MAX_RUNS_PER_SUBMIT

    args = [a for axis in axes for a in ("--grid", axis)]
    result, db = _submit(tmp_path, json.dumps(VALID), ".json", *args)
    assert result.exit_code == 2, result.output[-500:]
    points = math.prod(len(a.split("=", 1)[1].split(",")) for a in axes)
    assert f"{points} runs" in result.output and f"at most {MAX_RUNS_PER_SUBMIT}" in result.output
    assert not db.exists()


def test_generated_grid_and_comparison_names_are_validated_before_queueing(tmp_path):
    """A 200-character name is valid; with a grid or comparison suffix it is not: refused at
    submit time, naming the field and the limit, and nothing is stored."""
    long = dict(VALID, name="n" * 200)
    for args in (["--grid", "seed=1,2"], ["--compare", "cce,dm"]):
        result, db = _submit(tmp_path, json.dumps(long), ".json", *args)
        assert result.exit_code == 2, (args, result.output)
        assert "name" in result.output and "200 characters" in result.output, result.output
        assert not db.exists()
    ok, _ = _submit(tmp_path, json.dumps(dict(VALID, name="n" * 190)), ".json", "--grid", "seed=1,2")
    assert ok.exit_code == 0, ok.output
