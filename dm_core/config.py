"""Run configuration: one pydantic model, loaded from YAML or JSON, with dotted overrides.

Layers, lowest first: the model's defaults, a preset file, overrides (``--set
dotted.key=value``, a study's condition: ``apply_overrides``, the one way a config is
layered). Unknown keys are rejected; every invalid value is reported with its field path
and the allowed range. The resolved config (``RunConfig.model_dump()``) is stored with the
run, so a worker on another machine needs nothing else. Sweeps -- grids, comparisons, the
number of runs one submit may queue -- belong to the queue, not to a run: ``studio.sweeps``.

>>> cfg = RunConfig.model_validate({"loss": {"name": "dm", "lam": 1.0, "beta": 12.0}})
>>> cfg.loss.params()
{'lam': 1.0, 'beta': 12.0, 'eps': 1e-06}
>>> try:
...     RunConfig.model_validate({"loss": {"name": "dm", "lam": -1}})
... except ConfigError as err:
...     print(err)
loss.lam: -1.0 is out of range; must be a float in [0, inf)
"""

from __future__ import annotations

import json
import math
import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import annotated_types
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from dm_core.bounded_load import (
    MAX_CONFIG_BYTES,
    MAX_CONFIG_DEPTH,
    MAX_CONFIG_NODES,
    check_extent,
    load_json,
    load_yaml,
)
from dm_core.registry import ConfigError

__all__ = [
    "ConfigError", "RunConfig", "DatasetConfig", "NoiseConfig", "ModelConfig", "LossConfig",
    "OptimizerConfig", "ScheduleConfig", "load_config", "parse_config", "apply_overrides",
    "parse_value", "MAX_CONFIG_BYTES", "MAX_CONFIG_DEPTH", "MAX_CONFIG_NODES", "check_name",
    "visible_controls",
]


# Characters that move the cursor, clear the screen, ring the bell, reorder the text around
# them or print as nothing: C0 and C1 controls (Unicode category Cc), the line and paragraph
# separators (Zl, Zp), and every format character (Cf) -- the bidirectional marks,
# embeddings, overrides and isolates, zero-width spaces and joiners, the byte-order mark and
# the invisible operators, which make 'adm\u200fin' look like 'admin'.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})


def _is_hidden(character: str) -> bool:
    return unicodedata.category(character) in _HIDDEN_CATEGORIES


def visible_controls(text: str) -> str:
    r"""``text`` with each control or invisible format character spelt out as its escape, for
    a terminal.

    >>> print(visible_controls("run\x1b[2J\u202e"))
    run\x1b[2J\u202e
    >>> print(visible_controls("adm\u200fin\ufeff"))
    adm\u200fin\ufeff
    """
    if text.isprintable():  # false for every hidden category: nothing to spell out
        return text
    return "".join(c.encode("unicode_escape").decode("ascii") if _is_hidden(c) else c for c in text)


def check_name(value: str, path: str) -> str:
    r"""A run or group name: printable text only (it is shown in terminals and on pages), so
    no control characters and no invisible format characters (Unicode category Cf).

    >>> check_name("dm λ=1", "name")
    'dm λ=1'
    >>> check_name("a\x00b", "--group")
    Traceback (most recent call last):
    dm_core.registry.ConfigError: --group: must not contain control characters (found \x00 at position 1)
    >>> check_name("adm\u200fin", "name")
    Traceback (most recent call last):
    dm_core.registry.ConfigError: name: must not contain control characters (found \u200f at position 3)
    """
    if value.isprintable():
        return value
    for position, character in enumerate(value):
        if _is_hidden(character):
            raise ConfigError.at(path, f"must not contain control characters (found "
                                       f"{visible_controls(character)} at position {position})")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True)


class _Named(BaseModel):
    """A section whose ``name`` picks a registry entry and whose other keys are its parameters."""

    model_config = ConfigDict(extra="allow", strict=True)
    name: str

    _section: str = ""

    def params(self) -> dict[str, Any]:
        return dict(self.__pydantic_extra__ or {})

    @model_validator(mode="after")
    def _check_params(self) -> _Named:
        registry = self._registry()
        checked = registry.validate_params(self.name, self.params(), where=self._section)
        # An entry whose parameters are open (torchvision models) checks them itself.
        check = registry.get(self.name).extra.get("check_params")
        if check is not None:
            checked = check(checked, self._section)
        # Store the validated, default-filled parameters back, so the resolved config is explicit.
        self.__pydantic_extra__ = checked
        return self

    @classmethod
    def _registry(cls):  # pragma: no cover - overridden
        raise NotImplementedError


class NoiseConfig(_Strict):
    """Synthetic label noise applied to the training labels (the generators: ``dm_core.noise``)."""

    kind: str = "none"
    rate: float = Field(0.0, ge=0.0, lt=1.0, description="requested noise rate r in [0, 1)")
    classes: list[int] | None = Field(None, description="imbalance: the classes to subsample")
    keep_fraction: float | None = Field(None, gt=0.0, le=1.0, description="imbalance: fraction kept")
    transition: list[list[float]] | None = Field(None, description="asymmetric: a C×C row-stochastic matrix")
    path: str | None = Field(None, description="file: the labels file (.npy, or .npz/.pt of named arrays)")
    key: str | None = Field(None, description="file: the named array of a .npz or .pt labels file")

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, v: str) -> str:
        from dm_core.noise import NOISE

        NOISE.get(v, where="dataset.noise.kind")
        return v

    @model_validator(mode="after")
    def _only_settings_of_the_kind(self) -> NoiseConfig:
        # A rate or key the chosen kind would ignore is an error, not a silently clean run.
        from dm_core.noise import check_noise_settings

        check_noise_settings(self.kind, self.rate, self.extra_params())
        return self

    def extra_params(self) -> dict[str, Any]:
        return {k: v for k, v in (("classes", self.classes), ("keep_fraction", self.keep_fraction),
                                   ("transition", self.transition), ("path", self.path),
                                   ("key", self.key)) if v is not None}


class DatasetConfig(_Named):
    """Which data, with which noise, and how much trusted clean validation data to hold out."""

    name: str = "digits"
    noise: NoiseConfig = Field(default_factory=NoiseConfig)
    val_fraction: float = Field(0.0, ge=0.0, le=0.9)
    balanced_sampler: bool = Field(False, description="batches with equal shares of classes, "
                                                       "by (noisy) label")
    classes_per_batch: int | None = Field(
        None, ge=1, description="with balanced sampler: this many classes per batch, chosen at "
                                "random (the authors' CIFAR-100 batches: 32 × 8); empty: every class")
    augment: bool | None = None
    _section: str = "dataset"

    @model_validator(mode="after")
    def _noise_fits_the_dataset(self) -> DatasetConfig:
        from dm_core.noise import check_noise_settings, check_symmetric_rate

        check_noise_settings(self.noise.kind, self.noise.rate, self.noise.extra_params(),
                             dataset=self.name)
        # Where the registry knows the class count, the symmetric bound is checked now, at
        # submit time, not when a worker loads the data.
        classes = self._registry().get(self.name).extra.get("num_classes")
        if self.noise.kind == "symmetric" and classes:
            check_symmetric_rate(self.noise.rate, classes)
        if self.classes_per_batch is not None:
            if not self.balanced_sampler:
                raise ConfigError.at("dataset.classes_per_batch", "needs dataset.balanced_sampler=true")
            if classes and self.classes_per_batch > classes:
                raise ConfigError.at("dataset.classes_per_batch",
                                     f"{self.classes_per_batch} is out of range; must be in "
                                     f"[1, {classes}] ({self.name} has {classes} classes)")
        return self

    @classmethod
    def _registry(cls):
        from dm_core.registries import DATASETS

        return DATASETS


class ModelConfig(_Named):
    name: str = "mlp"
    _section: str = "model"

    @classmethod
    def _registry(cls):
        from dm_core.registries import MODELS

        return MODELS


class LossConfig(_Named):
    name: str = "dm"
    _section: str = "loss"

    @classmethod
    def _registry(cls):
        from dm_core.registries import LOSSES

        return LOSSES


# The stabilisers, measured with benchmarks/bench_stability.py (every loss, digits and a
# generated 10-class dataset, 0% and 40% symmetric noise, 3000 iterations at lr 0.1;
# docs/benchmarks.md has the table). A fixed clip at norm 3 (an earlier default) stopped DM's
# divergences at 40% noise but bound on 80-85% of DM's steps and none of cross-entropy's, and DM
# then fitted 96% of the corrupted labels (36% unclipped). Clipping relative to the gradient's
# running norm (dm_core.clipping) from the first step, at twice that norm, bound on 6-7% of DM's
# steps, nearly all in its first few hundred, where DM's norm rises tenfold: a warm-up of DM's
# step size, which cost DM 0.6 points of final accuracy against unclipped runs (144 paired
# runs, 95% interval -1.15 to -0.05). So the relative clip waits for the first 100 steps (the
# running norm learns meanwhile) and then cuts what passes 4x the running norm: after those
# steps a healthy DM run's norm stayed below 3.4x its running mean, the blow-ups of large beta
# reached 8-30x. The DN losses whose weight vanishes at both ends of p diverge under any
# relative clip and train with a fixed one: their registry entries carry it
# (``clip_grad_norm``), which an unset ``optimizer.clip_grad_norm`` takes.
WARMUP_DEFAULT = 0
CLIP_RELATIVE_DEFAULT = 4.0
CLIP_RELATIVE_AFTER_DEFAULT = 100


class OptimizerConfig(_Strict):
    name: Literal["sgd", "adam"] = "sgd"
    lr: float = Field(0.1, gt=0.0, le=10.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    nesterov: bool = False
    weight_decay: float = Field(1e-4, ge=0.0, lt=1.0)
    # Stabilisers, for every loss. DM normalises each batch's gradient to one unit and gives
    # it to the examples near its emphasis mode; when few examples are there, that unit
    # lands on them and a high learning rate can throw the logits away.
    warmup: int = Field(WARMUP_DEFAULT, ge=0, le=10_000_000,
                        description="linear learning-rate warm-up: iteration t uses lr·min(1, t/warmup); 0 = off")
    clip_grad_norm: float | None = Field(
        None, ge=0.0, le=1e6,
        description="clip the gradient's global L2 norm to this before each step; 0 = off; "
                    "unset (null) = the loss's own default (off for most losses)")
    clip_relative: float = Field(
        CLIP_RELATIVE_DEFAULT, ge=0.0, le=1e3,
        description="clip the gradient's global L2 norm to this multiple of its running mean "
                    "(a spike is cut, ordinary steps are not); 0 = off")
    clip_relative_after: int = Field(
        CLIP_RELATIVE_AFTER_DEFAULT, ge=0, le=10_000_000,
        description="the relative clip binds only after this many steps (of each training "
                    "phase); before, the running norm only learns the method's typical norm")

    @property
    def clip(self) -> float | None:
        """The fixed clipping threshold in force, None when it is off (or not yet resolved
        from the loss: ``RunConfig`` resolves it)."""
        return self.clip_grad_norm or None

    @property
    def clip_factor(self) -> float | None:
        """The relative clipping factor in force, None when it is off."""
        return self.clip_relative or None

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self) -> OptimizerConfig:
        if self.name == "sgd" and self.nesterov and self.momentum == 0:
            raise ValueError("optimizer.nesterov: Nesterov momentum needs optimizer.momentum > 0")
        return self


class ScheduleConfig(_Strict):
    """Step learning-rate schedule: multiply the rate by ``gamma`` at each milestone iteration."""

    milestones: list[int] = Field(default_factory=list)
    gamma: float = Field(0.1, gt=0.0, le=1.0)

    @field_validator("milestones")
    @classmethod
    def _increasing(cls, v: list[int]) -> list[int]:
        if any(m <= 0 for m in v) or v != sorted(set(v)):
            raise ValueError("must be strictly increasing positive iterations")
        return v


class RunConfig(_Strict):
    """Everything one training run needs, and nothing it does not."""

    name: str = Field("run", min_length=1, max_length=200)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    iterations: int = Field(1000, ge=1, le=10_000_000)
    batch_size: int = Field(128, ge=1, le=65_536)
    eval_every: int = Field(100, ge=1)
    histogram_bins: int = Field(20, ge=2, le=200)
    device: str = "auto"
    amp: bool = Field(False, description="mixed precision on CUDA")
    relabel: bool = Field(False, description="label correction: retrain on the model's own predictions")
    # Why 1e4 and not 1e3: derivative normalisation keeps a unit of gradient on the examples a
    # clean batch has not fitted yet, so DM and the -DN losses at their defaults reach logits of
    # a few thousand on clean data and then settle (digits, 3000 iterations, dm, cce-dn and
    # dm-exponential: peaks 1.3e3-3.7e3, final test accuracy 96.8-97.8%); 1e3 stopped those
    # healthy runs as diverged. Runs that do blow up pass 1e4 by orders of magnitude (mae-dn
    # unclipped: 1e34; dm-beta unclipped: 3e9, 13% accuracy), and 1e4 keeps a margin below
    # float16's largest value (65504) for AMP runs.
    max_logit: float = Field(1e4, gt=0, description="stop as diverged when any |logit| exceeds this")

    @field_validator("name")
    @classmethod
    def _printable_name(cls, v: str) -> str:
        return check_name(v, "name")

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if v in ("auto", "cpu", "cuda", "mps") or (v.startswith("cuda:") and v[5:].isdigit()):
            return v
        raise ValueError("must be one of auto, cpu, cuda, cuda:N, mps")

    @model_validator(mode="after")
    def _schedule_within_run(self) -> RunConfig:
        if self.schedule.milestones and self.schedule.milestones[-1] > self.iterations:
            raise ConfigError.at(
                "schedule.milestones", f"{self.schedule.milestones[-1]} is after the last iteration "
                f"({self.iterations}); milestones must be in [1, iterations]")
        per_batch = self.dataset.classes_per_batch
        if per_batch is not None and per_batch > self.batch_size:
            raise ConfigError.at("dataset.classes_per_batch", f"{per_batch} is out of range; must be "
                                 f"in [1, batch_size = {self.batch_size}]")
        return self

    @model_validator(mode="after")
    def _loss_default_clip(self) -> RunConfig:
        """An unset fixed clip takes the loss's own default (0, off, unless its registry entry
        names one), so the stored config says what the run trained with."""
        if self.optimizer.clip_grad_norm is None:
            entry = LossConfig._registry().get(self.loss.name, where="loss.name")
            self.optimizer.clip_grad_norm = float(entry.extra.get("clip_grad_norm", 0.0))
        return self

    @classmethod
    def model_validate(cls, obj: Any, *args: Any, **kwargs: Any) -> RunConfig:  # type: ignore[override]
        """Validate, turning pydantic's errors into one ConfigError that names every field."""
        try:
            return super().model_validate(obj, *args, **kwargs)
        except ValidationError as err:
            raise ConfigError(errors=_config_errors(err)) from None


def _config_errors(err: ValidationError) -> list[tuple[str, str]]:
    """pydantic's errors → ``(field path, message)`` pairs, one per error.

    A number out of range, or of the wrong type, is reported with the field's whole allowed
    range, read from its constraints (pydantic itself names only the bound that was crossed):

    >>> try:
    ...     RunConfig.model_validate({"dataset": {"noise": {"kind": "symmetric", "rate": 1}}})
    ... except ConfigError as e:
    ...     print(e.errors)
    [('dataset.noise.rate', 'must be in [0, 1) (got 1)')]
    >>> try:
    ...     RunConfig.model_validate({"batch_size": "many", "eval_every": 0})
    ... except ConfigError as e:
    ...     print(e)
    batch_size: must be an integer in [1, 65536] (got 'many'); eval_every: must be in [1, inf) (got 0)
    """
    pairs: list[tuple[str, str]] = []
    for e in err.errors():
        loc = [p for p in e["loc"] if not str(p).startswith("function-after")]
        path = _dotted(loc)
        ctx = e.get("ctx") or {}
        if isinstance(ctx.get("error"), ConfigError):  # a check that names its own fields
            pairs += ctx["error"].errors
            continue
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "value_error":
            # A validator's plain ValueError: "field.path: message" names a field at or below
            # the one pydantic reports; anything else is about the reported field itself.
            named, text = ConfigError(msg).errors[0]
            if named and (not path or named == path or named.startswith(path + ".")):
                pairs.append((named, text))
            else:
                pairs.append((path, msg))
            continue
        if e["type"] == "extra_forbidden":
            pairs.append((path, "unknown key"))
            continue
        if e["type"] == "string_too_long":  # the text itself may be long: show its start
            text = str(e.get("input"))
            pairs.append((path, f"{len(text)} characters ({text[:24]!r}...); at most "
                                f"{ctx['max_length']} characters"))
            continue
        got = f" (got {e.get('input')!r})"
        interval = _allowed_range(loc)
        if interval and e["type"] in _RANGE_ERRORS:
            pairs.append((path, f"must be in {interval}{got}"))
        elif interval and e["type"] in _NUMBER_TYPE_ERRORS:
            what = "an integer" if e["type"].startswith("int") else "a number"
            pairs.append((path, f"must be {what} in {interval}{got}"))
        else:
            pairs.append((path, f"{msg}{got}"))
    return pairs


def _dotted(loc: list[Any]) -> str:
    """``["model", "hidden", 1]`` → ``"model.hidden[1]"``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


_RANGE_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}
_NUMBER_TYPE_ERRORS = {"int_type", "int_parsing", "int_from_float", "float_type", "float_parsing"}


def _allowed_range(loc: list[Any]) -> str | None:
    """The interval a numeric field's constraints allow, e.g. ``[0, 1)``; None without bounds."""
    model: Any = RunConfig
    field = None
    for part in loc:
        fields = getattr(model, "model_fields", None)
        if not isinstance(part, str) or fields is None or part not in fields:
            return None
        field = fields[part]
        model = field.annotation
    if field is None:
        return None
    low = high = None
    low_open = high_open = False
    for c in field.metadata:
        if isinstance(c, annotated_types.Gt):
            low, low_open = c.gt, True
        elif isinstance(c, annotated_types.Ge):
            low = c.ge
        elif isinstance(c, annotated_types.Lt):
            high, high_open = c.lt, True
        elif isinstance(c, annotated_types.Le):
            high = c.le
    if low is None and high is None:
        return None
    lo = "-inf" if low is None else _number(low)
    hi = "inf" if high is None else _number(high)
    return f"{'(' if low is None or low_open else '['}{lo}, {hi}{')' if high is None or high_open else ']'}"


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


# ---------------------------------------------------------------- loading and overrides

def parse_value(text: str, path: str = "--set", prefix: str = "") -> Any:
    """Parse an override value as YAML (``1e-3`` → float, ``[1,2]`` → list, ``true`` → bool),
    within the bounds of ``dm_core.bounded_load`` (a refusal is a ConfigError at ``path``).

    >>> parse_value("1e-3"), parse_value("[256, 256]"), parse_value("sgd"), parse_value("'0'")
    (0.001, [256, 256], 'sgd', '0')
    """
    try:
        value = load_yaml(text, path, prefix)
    except yaml.YAMLError:
        return text
    if isinstance(value, str) and value == text.strip():
        # YAML 1.1 reads "1e-3" as a string; numbers are what users mean (a quoted '1e-3'
        # stays the string it says it is).
        try:
            return float(value) if any(c in value for c in ".eE") else int(value)
        except ValueError:
            return value
    return value


def apply_overrides(data: Mapping[str, Any],
                    overrides: Mapping[str, Any] | Sequence[str]) -> dict[str, Any]:
    """``data`` with ``overrides`` laid over it (a new dict; neither argument changes): the one
    way a config is layered, for ``--set`` texts, a study's conditions and a preset's settings.

    Every override sets one value at a dotted path, creating the sections on its way: a
    mapping stands for the paths to its leaves (``{"loss": {"lam": 2}}`` sets ``loss.lam``,
    leaving the section's other keys), and a ``dotted.key=value`` text for its path, with the
    value read as YAML (``parse_value``), one after another. A path through something that is
    not a section is a ConfigError.

    >>> apply_overrides({"loss": {"name": "dm"}}, ["loss.lam=2", "seed=7"])
    {'loss': {'name': 'dm', 'lam': 2}, 'seed': 7}
    >>> apply_overrides({"loss": {"name": "dm", "lam": 1}}, {"loss": {"beta": 4}, "seed": 7})
    {'loss': {'name': 'dm', 'lam': 1, 'beta': 4}, 'seed': 7}
    >>> apply_overrides({"loss": "dm"}, ["loss.lam=2"])
    Traceback (most recent call last):
    dm_core.registry.ConfigError: --set: 'loss.lam=2': loss is not a section
    """
    check_extent(data, "", "config: ")
    out = json.loads(json.dumps(data))
    if isinstance(overrides, Mapping):
        settings = [(path, value, ".".join(path)) for path, value in _leaves(overrides, ())]
        field = ""
    else:
        settings = [_read_setting(item) for item in overrides]
        field = "--set"
    for path, value, shown in settings:
        node = out
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError.at(field, f"{shown!r}: {part} is not a section")
            node = child
        node[path[-1]] = value
    return out


def _leaves(overrides: Mapping[str, Any], path: tuple[str, ...]):
    """``(path, value)`` of each leaf of a nested mapping (an empty one sets nothing)."""
    for key, value in overrides.items():
        if isinstance(value, Mapping):
            yield from _leaves(value, (*path, key))
        else:
            yield (*path, key), json.loads(json.dumps(value))


def _read_setting(item: str) -> tuple[tuple[str, ...], Any, str]:
    """``dotted.key=value`` → (the key's path, the value, the text for errors)."""
    if "=" not in item:
        raise ConfigError.at("--set", f"{item!r}: expected dotted.key=value, e.g. loss.lam=1.0")
    key, _, raw = item.partition("=")
    parts = tuple(p for p in key.strip().split(".") if p)
    if not parts:
        raise ConfigError.at("--set", f"{item!r}: empty key")
    return parts, parse_value(raw.strip(), "--set", f"{key.strip()}: "), item


def read_config_file(path: str | Path, kind: str = "config file") -> dict[str, Any]:
    """Read a YAML or JSON file into a dict, with a clear error for a missing or malformed file
    (``kind`` names the file in the errors: a config file, a study file)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{kind} {str(p)!r} does not exist")
    where = f"{kind} {str(p)!r}: "
    try:
        size = p.stat().st_size
        if size > MAX_CONFIG_BYTES:  # refused before it is read into memory
            raise ConfigError.at("", f"{where}{size} bytes; at most {MAX_CONFIG_BYTES} bytes")
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{kind} {str(p)!r} is not UTF-8 text (is it a binary file?)") from None
    except OSError as err:
        raise ConfigError(f"{kind} {str(p)!r} cannot be read: {err.strerror}") from None
    try:
        data = load_json(text, "", where) if p.suffix.lower() == ".json" else load_yaml(text, "", where)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise ConfigError(f"{kind} {str(p)!r} is not valid {'JSON' if p.suffix == '.json' else 'YAML'}: {err}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{kind} {str(p)!r}: the top level must be a mapping of keys to values")
    return data


def parse_config(data: dict[str, Any], overrides: list[str] | None = None) -> RunConfig:
    """Validate a dict (plus overrides) into a RunConfig."""
    check_extent(data, "", "config: ")
    _reject_non_finite(data, "")
    merged = apply_overrides(data, overrides or [])
    _reject_non_finite(merged, "")
    return RunConfig.model_validate(merged)


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> RunConfig:
    """Defaults → preset file → ``--set`` overrides, validated."""
    data = read_config_file(path) if path is not None else {}
    return parse_config(data, overrides)


def _reject_non_finite(obj: Any, path: str) -> None:
    if isinstance(obj, float) and not math.isfinite(obj):
        raise ConfigError.at(path, f"must be a finite number (got {obj})")
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, str):
                raise ConfigError.at(path, f"keys must be strings (got {k!r})")
            _reject_non_finite(v, f"{path}.{k}" if path else k)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            _reject_non_finite(v, f"{path}[{i}]")
