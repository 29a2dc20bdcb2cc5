"""The study file (YAML): what to compare, on what, with how much tuning.

    name: my-data                  # the report is DIR/my-data.md, the runs DIR/my-data-runs.csv
    base:                          # a run config inline, or the path of one (relative to this file)
      dataset: {name: arrays, path: ./data/mine.npz}
      iterations: 2000
    noise_rates: [0.0, 0.2, 0.4]   # symmetric noise unless base.dataset.noise.kind says otherwise
    methods: [cce, gce, dm]        # registered loss names (dm_core.losses.list_losses())
    seeds: 3                       # seeds of the final runs (0, 1, ...)
    budget: 8                      # settings trained per (method, condition) search
    val_fraction: 0.2              # the trusted clean validation split tuning and selection use

Optional: ``description``, ``tune_seeds`` (≥ 3, default 3: the seeds each trial averages
over, distinct from the final seeds), ``conditions`` (label → overrides of ``base``, crossed
with the noise rates: e.g. imbalance ratios), ``seed`` (default 0: seeds the searches; each
(condition, method) search draws from a seed derived from it and the two names, so the order
of the file changes nothing and another study seed tries other settings; see ``tuner``).

A method with a search space (``spaces.SEARCH_SPACES``) is tuned; a registered loss without
one is trained untuned at its defaults (``spaces.untuned_text``).

Everything is checked at load, before anything is queued: every run config the study will
train is built and validated, and every data file its runs read exists under an allowed data
directory (``dm_core.data.check_data_available``, the check ``dm submit`` and the Launch form
make), so a bad value fails here with its field (``base.dataset.path``) and allowed values.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from dm_core.config import RunConfig, apply_overrides, check_name, parse_config, read_config_file
from dm_core.registry import ConfigError
from studio.experiments.spaces import axes_of, check_method

# Tuning seeds start here, far from the final seeds (0, 1, ...): a setting is never chosen
# on the runs that then report it.
TUNE_SEED_BASE = 1000
MAX_BUDGET = 500
MAX_SEEDS = 20
MAX_STUDY_SEED = 2**31 - 1

# field -> the allowed values, as every error about it says them
_ALLOWED = {
    "name": "1-64 characters: letters, digits, '.', '_', '-' (it names the report's files)",
    "description": "text",
    "base": "a run config (mapping) or the path of a YAML/JSON run config",
    "noise_rates": "a non-empty list of distinct numbers in [0, 1)",
    "conditions": "a mapping of condition label to overrides of base",
    "methods": "a non-empty list of distinct loss names",
    "seeds": f"an integer in [1, {MAX_SEEDS}]",
    "tune_seeds": f"an integer in [3, {MAX_SEEDS}]",
    "budget": f"an integer in [1, {MAX_BUDGET}]",
    "val_fraction": "a number in (0, 0.9]",
    "seed": f"an integer in [0, {MAX_STUDY_SEED}]",
}


class StudySpec(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    description: str = ""
    base: dict[str, Any]
    noise_rates: list[float] = Field(min_length=1)
    conditions: dict[str, dict[str, Any]] | None = None
    methods: list[str] = Field(min_length=1)
    seeds: int = Field(ge=1, le=MAX_SEEDS)
    tune_seeds: int = Field(3, ge=3, le=MAX_SEEDS)
    budget: int = Field(ge=1, le=MAX_BUDGET)
    val_fraction: float = Field(gt=0.0, le=0.9)
    seed: int = Field(0, ge=0, le=MAX_STUDY_SEED)

    @field_validator("noise_rates", mode="before")
    @classmethod
    def _rates(cls, v: Any) -> Any:
        if isinstance(v, list):
            v = [float(x) if isinstance(x, int) and not isinstance(x, bool) else x for x in v]
            for i, x in enumerate(v):
                if not isinstance(x, float) or not 0.0 <= x < 1.0:
                    raise ValueError(f"noise_rates[{i}]: {x!r} is out of range")
            if len(set(v)) != len(v):
                raise ValueError("noise_rates: a rate is listed twice")
        return v

    @field_validator("val_fraction", mode="before")
    @classmethod
    def _fraction(cls, v: Any) -> Any:
        return float(v) if isinstance(v, int) and not isinstance(v, bool) else v

    @field_validator("methods")
    @classmethod
    def _methods(cls, v: list[str]) -> list[str]:
        for i, m in enumerate(v):
            check_method(m, where=f"methods[{i}]")
        if len(set(v)) != len(v):
            raise ValueError("methods: a method is listed twice")
        return v

    @field_validator("conditions")
    @classmethod
    def _labels(cls, v: dict[str, dict[str, Any]] | None) -> dict[str, dict[str, Any]] | None:
        for label in v or {}:
            check_name(label, "conditions")
        return v

    # -- what the study trains -----------------------------------------------------------

    def condition_labels(self) -> list[tuple[str, float]]:
        """(condition label, noise rate) pairs, in file order: ``r=0.2`` or ``10:1 r=0``."""
        out = []
        for cond in self.conditions or {"": {}}:
            for rate in self.noise_rates:
                out.append(((f"{cond} " if cond else "") + f"r={rate:g}", rate))
        return out

    def config(self, condition: str, method: str, params: dict[str, Any], seed: int,
               phase: str) -> RunConfig:
        """The run config of one run: base, the condition's overrides, the noise rate, the
        method with ``params``, the seed, the validation split, and a readable name."""
        cond, rate = dict((c, (c.rsplit(" ", 1)[0] if " " in c else "", r))
                          for c, r in self.condition_labels())[condition]
        data = apply_overrides(self.base, (self.conditions or {}).get(cond, {}))
        dataset = data.setdefault("dataset", {})
        noise = dataset.setdefault("noise", {})
        noise.setdefault("kind", "symmetric")
        noise["rate"] = rate
        dataset["val_fraction"] = self.val_fraction
        data["loss"] = {"name": method, **params}
        data["seed"] = seed
        shown = ",".join(f"{k}={v:g}" for k, v in params.items())
        data["name"] = f"{self.name}/{condition}/{method}" + (f"({shown})" if shown else "") + f"/{phase}/seed{seed}"
        return parse_config(data)

    def tune_seed_list(self) -> list[int]:
        return [TUNE_SEED_BASE + i for i in range(self.tune_seeds)]

    def final_seed_list(self) -> list[int]:
        return list(range(self.seeds))


def _errors(err: ValidationError) -> list[tuple[str, str]]:
    pairs = []
    for e in err.errors():
        loc = [str(p) for p in e["loc"]]
        top = loc[0] if loc else ""
        ctx = (e.get("ctx") or {}).get("error")
        if isinstance(ctx, ConfigError):  # a registry lookup: it names the allowed values
            pairs += ctx.errors
            continue
        message = e["msg"].removeprefix("Value error, ")
        named, text = ConfigError(message).errors[0]
        path = named or ".".join(loc)
        if e["type"] == "extra_forbidden":
            text = f"unknown key; allowed keys: {', '.join(_ALLOWED)}"
        elif e["type"] == "missing":
            text = f"missing; must be {_ALLOWED.get(top, 'given')}"
        else:
            got = e.get("input")
            text = f"{text}; must be {_ALLOWED.get(top, 'valid')}" + (
                f" (got {json.dumps(got, default=str)[:60]})" if not isinstance(got, dict) else "")
        pairs.append((path, text))
    return pairs


def parse_study(data: Any, where: Path | None = None) -> StudySpec:
    """Validate a study (a parsed mapping) and every run config it implies; ``ConfigError``
    naming each bad field and its allowed values. ``where``: the study file (``base`` given
    as a path is read relative to its folder)."""
    if not isinstance(data, dict):
        raise ConfigError(f"study{f' file {str(where)!r}' if where else ''}: the top level must "
                          f"be a mapping with the keys {', '.join(_ALLOWED)}")
    data = dict(data)
    if isinstance(data.get("base"), str):
        path = Path(data["base"])
        if not path.is_absolute() and where is not None:
            path = where.parent / path
        try:
            data["base"] = read_config_file(path)
        except ConfigError as err:
            raise ConfigError.at("base", str(err)) from None
    try:
        spec = StudySpec.model_validate(data)
    except ValidationError as err:
        raise ConfigError(errors=_errors(err)) from None
    _check_every_config(spec)
    return spec


def _check_every_config(spec: StudySpec) -> None:
    """Build one config per (condition, method) at each extreme of its axes: the values the
    tuner may pick are then known to be valid for this base. Then check the data files of each
    distinct dataset the runs read."""
    for condition, _ in spec.condition_labels():
        for method in spec.methods:
            axes = axes_of(method)
            for pick in (0, -1):
                params = {a.param: a.values[pick] for a in axes}
                try:
                    spec.config(condition, method, params, 0, "tune")
                except ConfigError as err:
                    raise ConfigError(errors=[(p, f"{m} (in the runs of {condition}, {method})")
                                              for p, m in err.errors]) from None
    _check_data(spec)


def _check_data(spec: StudySpec) -> None:
    """Every data file a run of the study reads exists and lies in an allowed data directory,
    with the check ``dm submit`` and the Launch form make before queueing. The error names the
    field of the study file that set the path: the condition's override, else ``base``."""
    from dm_core.data import check_data_available

    seen: set[str] = set()
    for condition, _ in spec.condition_labels():
        cfg = spec.config(condition, spec.methods[0], {}, 0, "tune")
        dataset = cfg.dataset.model_dump(mode="json")
        # The whole dataset section: two conditions that differ only in a labels file
        # (dataset.noise.path) are each checked.
        key = json.dumps(dataset, sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        try:
            check_data_available(dataset)
        except ConfigError as err:
            label = condition.rsplit(" ", 1)[0] if " " in condition else ""
            overrides = (spec.conditions or {}).get(label, {}).get("dataset", {})
            errors = []
            for path, message in err.errors:
                key_name = path.removeprefix("dataset.")
                owner = f"conditions.{label}" if isinstance(overrides, dict) and key_name in overrides else "base"
                errors.append((f"{owner}.{path}" if path else owner, f"{message} (read by the runs of {condition})"))
            raise ConfigError(errors=errors) from None


def load_study(path: str | Path) -> StudySpec:
    """Read and validate a study file; ``ConfigError`` for a missing, unreadable, malformed
    or invalid one."""
    return parse_study(read_config_file(path, "study file"), Path(path))
