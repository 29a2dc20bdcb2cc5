"""One registry per kind (scheme, loss, noise, dataset, model).

Every front end -- config validation, the CLI, the dashboard's forms, the tests -- reads
names, descriptions, parameter ranges and defaults from here, so nothing lists names by
hand. Modelled on timm's ``register_model`` / ``create_model`` / ``list_models``.

>>> reg = Registry("colour")
>>> @reg.register("red", description="A warm colour.", params=[Param("shade", 0.5, low=0, high=1)])
... def red(shade):
...     return ("red", shade)
>>> reg.create("red", shade=0.2)
('red', 0.2)
>>> reg.create("blue")
Traceback (most recent call last):
...
dm_core.registry.ConfigError: colour: unknown name 'blue'; allowed: red
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


class ConfigError(ValueError):
    """A user-facing validation error that names the offending field and the allowed values."""


@dataclass(frozen=True)
class Param:
    """One parameter of a registered entry, with the range the UI and validation enforce.

    ``kind`` is one of ``float``, ``int``, ``bool``, ``str``, ``list[int]``, ``list[float]``,
    ``matrix`` (a list of lists of floats). Bounds apply to numbers (and to every element
    of a number list). ``choices`` restricts strings.
    """

    name: str
    default: Any
    kind: str = "float"
    low: float | None = None
    high: float | None = None
    low_inclusive: bool = True
    high_inclusive: bool = True
    choices: tuple[Any, ...] | None = None
    help: str = ""
    # Suggested slider range for the dashboard (defaults to low/high when finite).
    ui_low: float | None = None
    ui_high: float | None = None

    def range_text(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(map(str, self.choices))
        lo = "-inf" if self.low is None else f"{self.low:g}"
        hi = "inf" if self.high is None else f"{self.high:g}"
        left = "[" if self.low is not None and self.low_inclusive else "("
        right = "]" if self.high is not None and self.high_inclusive else ")"
        return f"a {self.kind} in {left}{lo}, {hi}{right}"

    def check(self, value: Any, where: str) -> Any:
        """Return ``value`` coerced to this parameter's kind, or raise ConfigError."""
        path = f"{where}.{self.name}" if where else self.name
        if value is None:
            return None
        if self.kind in ("float", "int"):
            return self._check_number(value, path)
        if self.kind == "bool":
            if isinstance(value, bool):
                return value
            raise ConfigError(f"{path}: must be true or false (got {value!r})")
        if self.kind == "str":
            if not isinstance(value, str):
                raise ConfigError(f"{path}: must be a string (got {value!r})")
            if self.choices is not None and value not in self.choices:
                raise ConfigError(f"{path}: {value!r} is not allowed; {self.range_text()}")
            return value
        if self.kind in ("list[int]", "list[float]"):
            if not isinstance(value, list | tuple):
                raise ConfigError(f"{path}: must be a list of numbers (got {value!r})")
            inner = Param(self.name, None, self.kind[5:-1], self.low, self.high,
                          self.low_inclusive, self.high_inclusive)
            return [inner._check_number(v, f"{path}[{i}]") for i, v in enumerate(value)]
        if self.kind == "matrix":
            if not isinstance(value, list | tuple) or not all(isinstance(r, list | tuple) for r in value):
                raise ConfigError(f"{path}: must be a list of lists of numbers")
            inner = Param(self.name, None, "float", self.low, self.high)
            return [[inner._check_number(v, f"{path}[{i}][{j}]") for j, v in enumerate(r)]
                    for i, r in enumerate(value)]
        raise ConfigError(f"{path}: unsupported parameter kind {self.kind}")

    def _check_number(self, value: Any, path: str) -> float | int:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{path}: must be a number, {self.range_text()} (got {value!r})")
        if self.kind == "int":
            if isinstance(value, float) and not value.is_integer():
                raise ConfigError(f"{path}: must be a whole number, {self.range_text()} (got {value!r})")
            value = int(value)
        else:
            value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"{path}: must be finite, {self.range_text()} (got {value!r})")
        too_low = self.low is not None and (value < self.low or (not self.low_inclusive and value == self.low))
        too_high = self.high is not None and (value > self.high or (not self.high_inclusive and value == self.high))
        if too_low or too_high:
            raise ConfigError(f"{path}: {value!r} is out of range; must be {self.range_text()}")
        return value


@dataclass(frozen=True)
class Entry:
    """A frozen info record: what the dashboard shows and what validation checks."""

    name: str
    factory: Callable[..., Any]
    description: str
    params: tuple[Param, ...] = ()
    equation: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)


class Registry:
    """Names -> info records for one kind of thing."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, *, description: str, params: Sequence[Param] = (),
                 equation: str = "", **extra: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: store ``factory`` under ``name`` and return it unchanged."""

        def decorator(factory: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = Entry(name, factory, description, tuple(params), equation, dict(extra))
            return factory

        return decorator

    def names(self) -> list[str]:
        return list(self._entries)

    def entries(self) -> list[Entry]:
        return list(self._entries.values())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def get(self, name: str, where: str = "") -> Entry:
        if name not in self._entries:
            prefix = f"{where}: " if where else f"{self.kind}: "
            raise ConfigError(f"{prefix}unknown name {name!r}; allowed: {', '.join(self._entries)}")
        return self._entries[name]

    def validate_params(self, name: str, params: dict[str, Any], where: str = "",
                        open_params: bool = False) -> dict[str, Any]:
        """Check ``params`` against the entry's ranges; fill defaults; drop ``None`` values.

        Unknown keys are rejected unless ``open_params`` (torchvision models take any kwargs).
        """
        entry = self.get(name, f"{where}.name" if where else "")  # the field the name came from
        known = {p.name: p for p in entry.params}
        out = entry.defaults()
        for key, value in params.items():
            if key not in known:
                if open_params or entry.extra.get("open_params"):
                    out[key] = value
                    continue
                allowed = ", ".join(known) or "none"
                path = f"{where}.{key}" if where else key
                raise ConfigError(f"{path}: unknown parameter for {self.kind} {name!r}; allowed: {allowed}")
            if value is None:
                continue
            out[key] = known[key].check(value, where)
        return out

    def create(self, name: str, **params: Any) -> Any:
        """Validate ``params`` and call the registered factory."""
        checked = self.validate_params(name, {k: v for k, v in params.items() if v is not None})
        return self.get(name).factory(**checked)
