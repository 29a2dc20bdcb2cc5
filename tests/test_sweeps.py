"""Sweeps (studio/sweeps.py): grids and comparisons expand one base into the runs one submit
queues; every point is validated, and too many runs are refused before any is built."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dm_core.config import ConfigError, load_config
from studio.sweeps import (
    MAX_RUNS_PER_SUBMIT,
    comparison_configs,
    comparison_on_seeds,
    expand_grid,
    parse_grid,
)

PRESET = Path(__file__).resolve().parents[1] / "configs" / "digits-symmetric-40-dm.yaml"


def test_grid_is_the_cartesian_product_and_names_each_point():
    base = json.loads(json.dumps(load_config(PRESET).model_dump(mode="json")))
    configs = expand_grid(base, ["loss.lam=0,0.5,1", "loss.beta=4,8,12"])
    points = {(c.loss.params()["lam"], c.loss.params()["beta"]) for c in configs}
    assert points == {(lam, beta) for lam in (0, 0.5, 1) for beta in (4, 8, 12)}
    assert len({c.name for c in configs}) == 9
    assert configs[0].name == f"{base['name']}[loss.lam=0,loss.beta=4]"


def test_grid_validates_every_point():
    with pytest.raises(ConfigError, match="loss.lam"):
        expand_grid({}, ["loss.lam=0,-1"])
    with pytest.raises(ConfigError, match="--grid"):
        parse_grid(["loss.lam"])


def test_grid_overrides_apply_under_every_point():
    configs = expand_grid({"name": "g"}, [("seed", [1, 2])], ["loss.name=cce"])
    assert [(c.name, c.seed, c.loss.name) for c in configs] == [("g[seed=1]", 1, "cce"),
                                                                ("g[seed=2]", 2, "cce")]


def test_too_large_a_sweep_is_refused_before_any_point_is_built():
    rows = ",".join(map(str, range(MAX_RUNS_PER_SUBMIT + 1)))
    with pytest.raises(ConfigError, match=rf"--grid: {MAX_RUNS_PER_SUBMIT + 1} runs"):
        expand_grid({}, [f"seed={rows}"])
    with pytest.raises(ConfigError, match=r"--seeds: 600 seeds × 2 losses = 1200 runs"):
        comparison_on_seeds({}, ["cce", "dm"], 600)


def test_comparison_errors_belong_to_the_comparison():
    with pytest.raises(ConfigError) as caught:
        comparison_configs({"loss": {"name": "dm", "lam": 1.0}}, ["cce", "hinge", "nope"])
    assert caught.value.paths() == ["compare", "compare"]
    assert [m.split(":")[0] for _, m in caught.value.errors] == ["hinge", "nope"]


def test_comparison_on_seeds_goes_seed_by_seed_and_keeps_the_base_loss():
    runs = comparison_on_seeds({"name": "c", "seed": 7, "loss": {"name": "dm", "lam": 2.0}},
                               ["cce", "dm"], 2)
    assert [(c.name, c.seed, c.loss.name, c.loss.params().get("lam")) for c in runs] == [
        ("c[cce,seed=7]", 7, "cce", None), ("c[dm,seed=7]", 7, "dm", 2.0),
        ("c[cce,seed=8]", 8, "cce", None), ("c[dm,seed=8]", 8, "dm", 2.0)]
    assert [c.name for c in comparison_on_seeds({"name": "c"}, ["cce"], 1)] == ["c[cce]"]
