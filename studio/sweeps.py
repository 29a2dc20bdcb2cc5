"""Sweeps: the many run configs one submit queues, built from one base config.

A sweep is a queue concept, not a run's: the engine validates one ``RunConfig``
(``dm_core.config``); ``dm submit`` and the Launch page expand a base into the runs they queue
here, all within the store's cap on one submit (``MAX_RUNS_PER_SUBMIT``), refused before any
config is built.

- ``expand_grid``: the cartesian product of ``--grid key=v1,v2`` axes, each point named
  ``name[key=v,...]``.
- ``comparison_configs``: the same data, model and seed with each of several losses.
- ``comparison_on_seeds``: that comparison on several seeds, seed by seed.

Every point is laid over the base with ``dm_core.config.apply_overrides`` (the one way a
config is layered) and validated; a ConfigError names the option (``--grid``, ``compare``,
``--seeds``) and, for a comparison, each loss that fails.

>>> [c.name for c in expand_grid({"name": "g"}, ["loss.lam=0,1", "seed=1,2"])]
['g[loss.lam=0,seed=1]', 'g[loss.lam=0,seed=2]', 'g[loss.lam=1,seed=1]', 'g[loss.lam=1,seed=2]']
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from typing import Any

from dm_core.config import (
    LossConfig,
    RunConfig,
    apply_overrides,
    check_name,
    parse_config,
    parse_value,
)
from dm_core.registry import ConfigError
from dm_store.runs import MAX_RUNS_PER_SUBMIT

__all__ = ["MAX_RUNS_PER_SUBMIT", "comparison_configs", "comparison_on_seeds", "expand_grid",
           "parse_grid"]


def parse_grid(items: list[str]) -> list[tuple[str, list[Any]]]:
    """Parse ``--grid key=v1,v2`` items into (key, values) pairs.

    >>> parse_grid(["loss.lam=0,0.5,1", "loss.name=cce,dm"])
    [('loss.lam', [0, 0.5, 1]), ('loss.name', ['cce', 'dm'])]
    >>> parse_grid(["loss.beta=, ,"])
    Traceback (most recent call last):
    dm_core.registry.ConfigError: --grid: 'loss.beta=, ,': no values after '='; expected dotted.key=v1,v2,...
    """
    axes = []
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip() or not raw.strip():
            raise ConfigError.at("--grid", f"{item!r}: expected dotted.key=v1,v2,..., e.g. loss.lam=0,0.5,1")
        values = [parse_value(v.strip(), "--grid", f"{key.strip()}: ") for v in raw.split(",") if v.strip()]
        if not values:  # "loss.beta=," would be an empty product: no runs at all
            raise ConfigError.at("--grid", f"{item!r}: no values after '='; expected dotted.key=v1,v2,...")
        axes.append((key.strip(), values))
    return axes


def expand_grid(base: dict[str, Any], grid: Sequence[tuple[str, list[Any]]] | Sequence[str],
                overrides: list[str] | None = None) -> list[RunConfig]:
    """The cartesian product of grid axes over a base config; every point validated.

    ``grid`` is ``(dotted key, values)`` pairs or the ``--grid`` texts ``parse_grid`` reads.
    Each run's name gets the grid point appended (``name[loss.lam=1,loss.beta=8]``), and is
    validated with it. A grid of more than ``MAX_RUNS_PER_SUBMIT`` points is refused before
    any point is built.

    >>> expand_grid({}, ["seed=" + ",".join(map(str, range(40))), "loss.lam=" + "0," * 30])
    Traceback (most recent call last):
    dm_core.registry.ConfigError: --grid: 1200 runs (40 × 30 values); at most 1000 runs per submit: split the grid
    """
    axes = parse_grid(list(grid)) if grid and isinstance(grid[0], str) else list(grid)
    sizes = [len(values) for _, values in axes]
    if math.prod(sizes) > MAX_RUNS_PER_SUBMIT:
        raise ConfigError.at("--grid", f"{math.prod(sizes)} runs ({' × '.join(map(str, sizes))} "
                                       f"values); at most {MAX_RUNS_PER_SUBMIT} runs per submit: "
                                       "split the grid")
    base = apply_overrides(base, overrides or [])
    keys = [key for key, _ in axes]
    configs = []
    for point in itertools.product(*[values for _, values in axes]):
        data = apply_overrides(base, [f"{k}={json.dumps(v)}" for k, v in zip(keys, point, strict=True)])
        name = data.get("name", RunConfig.model_fields["name"].default)
        if keys and isinstance(name, str):
            data["name"] = f"{name}[{','.join(f'{k}={v}' for k, v in zip(keys, point, strict=True))}]"
        configs.append(parse_config(data))
    return configs


def comparison_configs(base: dict[str, Any], losses: list[str],
                       overrides: list[str] | None = None) -> list[RunConfig]:
    """The same data, model and seed with each loss in ``losses`` (its registered defaults;
    the base's own loss keeps its parameters); each run named ``name[loss]``.

    Every loss is validated first: a ConfigError names each one that fails.

    >>> runs = comparison_configs({"name": "cmp", "loss": {"name": "dm", "lam": 1.0}}, ["cce", "dm"])
    >>> [(c.name, c.loss.name, c.loss.params().get("lam")) for c in runs]
    [('cmp[cce]', 'cce', None), ('cmp[dm]', 'dm', 1.0)]
    >>> comparison_configs({}, ["cce", "hinge"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    dm_core.registry.ConfigError: compare: hinge: loss.name: unknown name 'hinge'; allowed: cce, mae, ...
    """
    if not losses:
        raise ConfigError.at("compare", "choose at least one loss")
    if len(losses) > MAX_RUNS_PER_SUBMIT:
        raise ConfigError.at("compare", f"{len(losses)} runs; at most {MAX_RUNS_PER_SUBMIT} runs per submit")
    base = apply_overrides(base, overrides or [])
    own = (base.get("loss") or {}).get("name", LossConfig.model_fields["name"].default)
    configs, errors = [], []
    for name in losses:
        loss = dict(base.get("loss") or {}) if name == own else {"name": name}
        try:
            configs.append(parse_config({**base, "loss": loss,
                                         "name": f"{base.get('name') or 'run'}[{name}]"}))
        except ConfigError as err:
            errors += [("compare", f"{name}: {line}") for line in err.lines()]
    if errors:
        raise ConfigError(errors=errors)
    return configs


def comparison_on_seeds(base: dict[str, Any], losses: list[str], seeds: int,
                        overrides: list[str] | None = None) -> list[RunConfig]:
    """``comparison_configs`` on ``seeds`` seeds: the base's seed and the next ``seeds − 1``,
    each with every loss (seed by seed, so the queue completes one whole comparison before it
    starts the next). With one seed, exactly ``comparison_configs``; with more, each run is
    named ``name[loss,seed=S]``. Too many runs is an error about ``--seeds`` (the form caps
    its field below the limit).

    >>> runs = comparison_on_seeds({"name": "cmp", "seed": 4}, ["cce", "dm"], 2)
    >>> [(c.name, c.seed) for c in runs]
    [('cmp[cce,seed=4]', 4), ('cmp[dm,seed=4]', 4), ('cmp[cce,seed=5]', 5), ('cmp[dm,seed=5]', 5)]
    """
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ConfigError.at("--seeds", f"{seeds!r}: must be a whole number ≥ 1")
    if seeds * len(losses) > MAX_RUNS_PER_SUBMIT:
        raise ConfigError.at("--seeds", f"{seeds} seeds × {len(losses)} losses = "
                                      f"{seeds * len(losses)} runs; at most "
                                      f"{MAX_RUNS_PER_SUBMIT} runs per submit")
    base = apply_overrides(base, overrides or [])
    if seeds == 1:
        return comparison_configs(base, losses)
    first = int(base.get("seed", RunConfig.model_fields["seed"].default))
    name = base.get("name") or "run"
    configs = []
    for seed in range(first, first + seeds):
        for cfg in comparison_configs({**base, "seed": seed}, losses):
            renamed = check_name(f"{name}[{cfg.loss.name},seed={seed}]", "name")
            configs.append(cfg.model_copy(update={"name": renamed}))
    return configs
