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

import importlib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StrictBool,
    StrictStr,
    TypeAdapter,
    ValidationError,
    create_model,
)


class ConfigError(ValueError):
    """A user-facing validation error: ``errors`` holds one ``(field path, message)`` pair per
    problem, and ``str(err)`` is their readable ``path: message; path: message`` text.

    Forms and the CLI read the pairs (a message goes under the widget or option it names);
    the path is dotted, with list indices in brackets (``model.hidden[1]``), and empty for an
    error about no single field. ``ConfigError("path: message")`` takes its path from the
    text's head, so one-line errors keep their plain spelling.

    >>> err = ConfigError("loss.lam: must be >= 0")
    >>> err.errors
    [('loss.lam', 'must be >= 0')]
    >>> both = ConfigError(errors=[("loss.lam", "must be >= 0"), ("", "two problems")])
    >>> str(both), both.paths()
    ('loss.lam: must be >= 0; two problems', ['loss.lam', ''])
    """

    def __init__(self, message: str | None = None, *,
                 errors: Iterable[tuple[str, str]] | None = None) -> None:
        if errors is None:
            errors = [_split_path(message or "")]
        self.errors: list[tuple[str, str]] = [(str(p), str(m)) for p, m in errors]
        super().__init__(str(self))

    @classmethod
    def at(cls, path: str, message: str) -> ConfigError:
        """An error about the field at ``path``."""
        return cls(errors=[(path, message)])

    def lines(self) -> list[str]:
        """One ``path: message`` line per error (the bare message when it has no path)."""
        return [f"{p}: {m}" if p else m for p, m in self.errors]

    def paths(self) -> list[str]:
        return [p for p, _ in self.errors]

    def __str__(self) -> str:
        return "; ".join(self.lines())

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild_config_error, (self.errors,)


def _rebuild_config_error(errors: list[tuple[str, str]]) -> ConfigError:
    return ConfigError(errors=errors)


# The head of a one-line error: a dotted field path (indices allowed) and a colon.
_PATH_HEAD = re.compile(r"([A-Za-z_]\w*(?:\.[A-Za-z_]\w*|\[\d+\])*): (.*)", re.DOTALL)


def _split_path(message: str) -> tuple[str, str]:
    head = _PATH_HEAD.fullmatch(message)
    return (head.group(1), head.group(2)) if head else ("", message)


_KINDS = ("float", "int", "bool", "str", "list[int]", "list[float]", "matrix")
_RANGE_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}


def _whole_float_as_int(value: Any) -> Any:
    """``3.0`` → ``3``: a YAML or form number that is whole counts as an integer."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


@dataclass(frozen=True)
class Param:
    """One parameter of a registered entry, with the range the UI and validation enforce.

    ``kind`` is one of ``float``, ``int``, ``bool``, ``str``, ``list[int]``, ``list[float]``,
    ``matrix`` (a list of lists of floats). Bounds apply to numbers (and to every element
    of a number list). ``choices`` restricts strings. ``value_type`` turns all of it into a
    pydantic type, which does the checking; this record only words its errors.
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

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"parameter {self.name!r}: kind {self.kind!r} is not one of {', '.join(_KINDS)}")

    def range_text(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(map(str, self.choices))
        lo = "-inf" if self.low is None else f"{self.low:g}"
        hi = "inf" if self.high is None else f"{self.high:g}"
        left = "[" if self.low is not None and self.low_inclusive else "("
        right = "]" if self.high is not None and self.high_inclusive else ")"
        return f"a {self.kind} in {left}{lo}, {hi}{right}"

    def value_type(self) -> Any:
        """The pydantic type of this parameter's values: kind, bounds and choices."""
        if self.kind == "bool":
            return StrictBool
        if self.kind == "str":
            return Literal[self.choices] if self.choices is not None else StrictStr
        bounds = {}
        if self.low is not None:
            bounds["ge" if self.low_inclusive else "gt"] = self.low
        if self.high is not None:
            bounds["le" if self.high_inclusive else "lt"] = self.high
        if self.kind in ("int", "list[int]"):
            number: Any = Annotated[int, Strict(), Field(**bounds), BeforeValidator(_whole_float_as_int)]
        else:
            number = Annotated[float, Strict(), Field(allow_inf_nan=False, **bounds)]
        if self.kind in ("int", "float"):
            return number
        if self.kind == "matrix":
            return list[list[number]]
        return list[number]

    @cached_property
    def _adapter(self) -> TypeAdapter[Any]:
        return TypeAdapter(self.value_type())

    def check(self, value: Any, where: str) -> Any:
        """Return ``value`` coerced to this parameter's kind, or raise ConfigError."""
        if value is None:
            return None
        try:
            return self._adapter.validate_python(value)
        except ValidationError as err:
            raise ConfigError(errors=[self.explain(e, where) for e in err.errors()]) from None

    def explain(self, error: Any, where: str) -> tuple[str, str]:
        """A pydantic error about this parameter's value → ``(path, message)`` naming the
        allowed values. ``error["loc"]`` is relative to the value (list indices only)."""
        loc = [i for i in error["loc"] if isinstance(i, int)]
        path = (f"{where}.{self.name}" if where else self.name) + "".join(f"[{i}]" for i in loc)
        got, kind = error.get("input"), error["type"]
        depth = {"matrix": 2, "list[int]": 1, "list[float]": 1}.get(self.kind, 0)
        if self.kind == "bool":
            return path, f"must be true or false (got {got!r})"
        if self.kind == "str":
            if kind == "literal_error":
                return path, f"{got!r} is not allowed; {self.range_text()}"
            return path, f"must be a string (got {got!r})"
        if len(loc) < depth:
            what = "a list of lists of numbers" if self.kind == "matrix" else "a list of numbers"
            return path, f"must be {what} (got {got!r})"
        if kind in _RANGE_ERRORS:
            shown = float(got) if self.kind in ("float", "list[float]", "matrix") else got
            return path, f"{shown!r} is out of range; must be {self.range_text()}"
        if kind == "finite_number":
            return path, f"must be finite, {self.range_text()} (got {got!r})"
        if kind == "int_type" and isinstance(got, float):
            return path, f"must be a whole number, {self.range_text()} (got {got!r})"
        return path, f"must be a number, {self.range_text()} (got {got!r})"


@dataclass(frozen=True)
class LazyFactory:
    """A factory named by ``module:attribute``, imported at its first call, with ``args`` put
    before the call's own. Registries hold these where the factory's module needs torch, so
    that the names, parameters and ranges can be read (and configs validated) without it.

    >>> hypot = LazyFactory("math:hypot")
    >>> hypot(3, 4)
    5.0
    >>> LazyFactory("operator:add", (1,))(2)
    3
    """

    target: str
    args: tuple[Any, ...] = ()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        module, _, attribute = self.target.partition(":")
        return getattr(importlib.import_module(module), attribute)(*self.args, *args, **kwargs)


def lazy(target: str, *args: Any) -> LazyFactory:
    """``LazyFactory(target, args)``: the factory ``module:attribute``, imported when called."""
    return LazyFactory(target, args)


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

    def params_model(self, open_params: bool = False) -> type[BaseModel]:
        """The pydantic model of this entry's parameters (extra keys allowed if ``open_params``)."""
        cache = self.__dict__.setdefault("_params_models", {})
        if open_params not in cache:
            cache[open_params] = create_model(
                f"{self.name}_params", __config__=ConfigDict(extra="allow" if open_params else "forbid"),
                **{p.name: (p.value_type(), p.default) for p in self.params})
        return cache[open_params]


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
        model = entry.params_model(open_params or bool(entry.extra.get("open_params")))
        given = {k: v for k, v in params.items() if v is not None}
        try:
            return model.model_validate(given).model_dump()
        except ValidationError as err:
            raise ConfigError(errors=[self._explain(entry, e, where) for e in err.errors()]) from None

    def _explain(self, entry: Entry, error: Any, where: str) -> tuple[str, str]:
        key, *rest = error["loc"]
        if error["type"] == "extra_forbidden":
            allowed = ", ".join(p.name for p in entry.params) or "none"
            path = f"{where}.{key}" if where else str(key)
            return path, f"unknown parameter for {self.kind} {entry.name!r}; allowed: {allowed}"
        return entry.param(str(key)).explain({**error, "loc": tuple(rest)}, where)

    def create(self, name: str, **params: Any) -> Any:
        """Validate ``params`` and call the registered factory with the checked values (every
        parameter present, defaults filled in); the factory trusts them and checks nothing again."""
        checked = self.validate_params(name, {k: v for k, v in params.items() if v is not None})
        return self.get(name).factory(**checked)
