"""Form building blocks read from the registries and from ``RunConfig``'s fields.

Nothing here lists a dataset, model, loss or noise name: a registry ``Param`` (kind, default,
range, help) or a pydantic field (annotation, default, description) decides which widget is
drawn. Every widget is keyed, and its value lives in ``st.session_state`` under that key, so
a page can fill a form from a config (a preset, a cloned run, the designer's scheme) before
drawing it, and read the config back from the state.

Validation is not done here: ``dm_core.config.parse_config`` is the single source of truth.
Its ``ConfigError`` carries ``(field path, message)`` pairs; ``Form.add_config_error`` puts
each message under the widget of its field.
"""

from __future__ import annotations

import json
import math
import re
import types
import typing
from typing import Any

import streamlit as st
import yaml
from pydantic.fields import FieldInfo

from app.text import md
from dm_core.bounded_load import load_yaml
from dm_core.registry import ConfigError, Param

__all__ = [
    "Form", "format_list", "param_state_value", "param_widget", "parse_list_text",
    "errors_by_field", "field_widget", "field_state_value",
]

# ----------------------------------------------------------------------------- errors

def errors_by_field(err: ConfigError) -> dict[str, list[str]]:
    """A ``ConfigError``'s pairs → ``{field path: [messages]}``, list indices dropped from the
    paths (one widget holds a whole list); an error about no single field goes to ``config``.

    Each message keeps its path in front, so it still reads on its own.

    >>> errors_by_field(ConfigError(errors=[("loss.lam", "-1 is out of range"),
    ...                                     ("model.hidden[1]", "must be a number")]))
    {'loss.lam': ['loss.lam: -1 is out of range'], 'model.hidden': ['model.hidden[1]: must be a number']}
    >>> errors_by_field(ConfigError("loss: unknown name 'x'; allowed: cce, dm"))
    {'loss': ["loss: unknown name 'x'; allowed: cce, dm"]}
    """
    out: dict[str, list[str]] = {}
    for (path, _), line in zip(err.errors, err.lines(), strict=True):
        out.setdefault(re.sub(r"\[\d+\]", "", path) or "config", []).append(line)
    return out


class Form:
    """A form whose error messages appear under the widget they are about.

    Each widget reserves a slot (``st.empty()``) under itself for its field path; after the
    whole form is drawn and validated, ``render_errors`` fills the slots. A message about a
    path without a slot goes to the nearest slot above it in the path (``dataset.noise`` →
    ``dataset.noise.kind``), and otherwise is returned as unclaimed.
    """

    def __init__(self) -> None:
        self.slots: dict[str, Any] = {}
        self.errors: dict[str, list[str]] = {}

    def __bool__(self) -> bool:
        return bool(self.errors)

    def slot(self, path: str) -> None:
        self.slots.setdefault(path, st.empty())

    def add(self, path: str, message: str) -> None:
        self.errors.setdefault(path, [])
        if message not in self.errors[path]:
            self.errors[path].append(message)

    def add_config_error(self, err: ConfigError) -> None:
        for path, messages in errors_by_field(err).items():
            for m in messages:
                self.add(path, m)

    def slot_for(self, path: str) -> str | None:
        if path in self.slots:
            return path
        parents = [s for s in self.slots if path.startswith(s + ".")]
        if parents:
            return max(parents, key=len)
        children = [s for s in self.slots if s.startswith(path + ".")]
        return children[0] if children else None

    def render_errors(self) -> list[str]:
        """Fill the slots; return the messages no widget claimed."""
        by_slot: dict[str, list[str]] = {}
        unclaimed: list[str] = []
        for path, messages in self.errors.items():
            target = self.slot_for(path)
            if target is None:
                unclaimed += messages
            else:
                by_slot.setdefault(target, []).extend(messages)
        for target, messages in by_slot.items():
            with self.slots[target].container():
                for m in messages:
                    st.error(md(m), icon=":material/error:")  # may quote user text
        return unclaimed


# ----------------------------------------------------------------------------- lists

def format_list(value: Any) -> str:
    """``[256, 256]`` → ``"256, 256"`` (the text a list widget shows).

    >>> format_list([256, 256]), format_list(None), format_list([[0.5, 0.5]])
    ('256, 256', '', '[[0.5, 0.5]]')
    """
    if value is None:
        return ""
    if isinstance(value, list | tuple) and all(not isinstance(v, list | tuple) for v in value):
        return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    return json.dumps(value)


def parse_list_text(text: str) -> Any:
    """``"256, 256"`` → ``[256, 256]``; ``""`` → ``[]``; anything YAML can read as a list,
    within the bounds every config input has (``dm_core.bounded_load``: size, nesting,
    aliases), so a text field cannot make the server expand a YAML bomb.

    Raises ``ValueError`` with a short reason when the text is not a list.

    >>> parse_list_text("256, 256"), parse_list_text(""), parse_list_text("[[1, 0], [0, 1]]")
    ([256, 256], [], [[1, 0], [0, 1]])
    >>> parse_list_text("[" * 40 + "]" * 40)
    Traceback (most recent call last):
    dm_core.registry.ConfigError: nested more than 32 levels deep
    """
    text = (text or "").strip()
    if not text:
        return []
    source = text if text.startswith("[") else f"[{text}]"
    try:
        value = load_yaml(source, "")
    except yaml.YAMLError:
        raise ValueError(f"cannot read {text!r} as a comma-separated list") from None
    if not isinstance(value, list):
        raise ValueError(f"cannot read {text!r} as a list")
    return value


MATRIX_EXAMPLE = "[[0.6, 0.4], [0.4, 0.6]]"


def parse_matrix_text(text: str) -> Any:
    """A matrix written as JSON, one list per row: ``"[[0.6, 0.4], [0.4, 0.6]]"`` →
    ``[[0.6, 0.4], [0.4, 0.6]]``; ``""`` → ``[]``. Read by the same bounded loader as
    ``parse_list_text`` (JSON is a subset of what it reads).

    Raises ``ValueError`` saying which format is expected, with an example.

    >>> parse_matrix_text("[[0.6, 0.4], [0.4, 0.6]]"), parse_matrix_text("")
    ([[0.6, 0.4], [0.4, 0.6]], [])
    >>> parse_matrix_text("0.6, 0.4")
    Traceback (most recent call last):
    ValueError: cannot read '0.6, 0.4' as a JSON matrix: write one list per row, e.g. [[0.6, 0.4], [0.4, 0.6]]
    """
    text = (text or "").strip()
    if not text:
        return []
    expected = f"cannot read {text!r} as a JSON matrix: write one list per row, e.g. {MATRIX_EXAMPLE}"
    try:
        value = load_yaml(text, "")
    except yaml.YAMLError:
        raise ValueError(expected) from None
    if not isinstance(value, list) or not all(isinstance(row, list) for row in value):
        raise ValueError(expected)
    return value


# ----------------------------------------------------------------------------- registry params

def _is_list(kind: str) -> bool:
    return kind.startswith("list[") or kind == "matrix"


def param_state_value(param: Param, value: Any) -> Any:
    """The session-state value of ``param``'s widget for a config value."""
    if _is_list(param.kind):
        return format_list(value)
    if param.kind == "float":
        return float(value) if value is not None else None
    if param.kind == "int":
        return int(value) if value is not None else None
    if param.kind == "str":
        return "" if value is None else str(value)
    return value


def param_value(param: Param, state_value: Any, path: str, form: Form) -> Any:
    """The config value of a widget's state (list text parsed; a parse error is recorded)."""
    if _is_list(param.kind):
        if not (state_value or "").strip() and param.default is None:
            return None
        try:
            if param.kind == "matrix":
                return parse_matrix_text(state_value)
            return parse_list_text(state_value)
        except ValueError as err:
            form.add(path, f"{path}: {err}")
            return param.default
    if param.kind == "str" and param.choices is None and state_value == "" and param.default is None:
        return None
    return state_value


def _step(param: Param) -> float:
    """A sensible +/- step for a float: 1/100 of the slider range, or of the default."""
    lo, hi = param.ui_low, param.ui_high
    if lo is None and param.low is not None and param.high is not None:
        lo, hi = param.low, param.high
    if lo is not None and hi is not None and hi > lo:
        span = (hi - lo) / 100
    else:
        span = abs(float(param.default or 0.0)) / 10 or 0.01
    return float(10 ** math.floor(math.log10(span)))


def param_widget(param: Param, key: str, path: str, form: Form, label: str | None = None) -> Any:
    """Draw the widget for a registry parameter; return its config value.

    The widget's state is ``st.session_state[key]`` (set it before the call to fill the form).

    Numbers get a number input without bounds: the range is checked by ``parse_config``, so a
    wrong value produces the registry's own message (naming the field and the range) under
    the widget instead of being silently clamped.
    """
    if key not in st.session_state:
        st.session_state[key] = param_state_value(param, param.default)
    label = label or param.name
    help_text = (param.help + " " if param.help else "") + f"Allowed: {param.range_text()}."
    if param.kind == "bool":
        st.checkbox(label, key=key, help=param.help or None)
    elif param.kind == "float":
        st.number_input(label, key=key, step=_step(param), format="%g", help=help_text)
    elif param.kind == "int":
        st.number_input(label, key=key, step=1, help=help_text)
    elif param.kind == "str" and param.choices is not None:
        st.selectbox(label, list(param.choices), key=key, help=help_text)
    elif param.kind == "str":
        st.text_input(label, key=key, help=param.help or None)
    elif param.kind == "matrix":
        st.text_area(label, key=key, help=help_text + f" JSON, one list per row, e.g. {MATRIX_EXAMPLE};"
                     " empty for none.", height=80)
    else:
        st.text_input(label, key=key, help=help_text + " Comma-separated, e.g. 256, 256.")
    form.slot(path)
    return param_value(param, st.session_state[key], path, form)


# ----------------------------------------------------------------------------- pydantic fields

def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """(inner annotation, is optional) of ``X | None``."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return annotation, False


def _field_kind(info: FieldInfo) -> tuple[str, tuple[Any, ...] | None, bool]:
    annotation, optional = _unwrap(info.annotation)
    if typing.get_origin(annotation) is typing.Literal:
        return "choice", typing.get_args(annotation), optional
    if annotation is bool:
        return "bool", None, optional
    if annotation is int:
        return "int", None, optional
    if annotation is float:
        return "float", None, optional
    if typing.get_origin(annotation) is list:
        return "list", None, optional
    return "str", None, optional


def _field_default(info: FieldInfo) -> Any:
    if info.default_factory is not None:
        return info.default_factory()
    return info.default


def _bounds_text(info: FieldInfo) -> str:
    parts = []
    for m in info.metadata:
        for attr, sym in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
            v = getattr(m, attr, None)
            if v is not None:
                parts.append(f"{sym} {v:g}" if isinstance(v, int | float) else f"{sym} {v}")
    return ("Allowed: " + ", ".join(parts) + ".") if parts else ""


def field_state_value(info: FieldInfo, value: Any) -> Any:
    """The session-state value of a pydantic field's widget for a config value."""
    kind, _, optional = _field_kind(info)
    if kind == "list":
        return format_list(value)
    if kind == "bool" and optional:
        return {None: "default", True: "on", False: "off"}[value]
    if kind == "float" and value is not None:
        return float(value)
    if kind == "int" and value is not None:
        return int(value)
    return value


def field_value(info: FieldInfo, state_value: Any, path: str, form: Form) -> Any:
    kind, _, optional = _field_kind(info)
    if kind == "list":
        try:
            return parse_list_text(state_value)
        except ValueError as err:
            form.add(path, f"{path}: {err}")
            return _field_default(info)
    if kind == "bool" and optional:
        return {"default": None, "on": True, "off": False}[state_value]
    return state_value


def field_widget(info: FieldInfo, key: str, path: str, form: Form, label: str | None = None,
                 options: list[str] | None = None) -> Any:
    """Draw the widget for a ``RunConfig`` field from its annotation; return its config value."""
    kind, choices, optional = _field_kind(info)
    if key not in st.session_state:
        st.session_state[key] = field_state_value(info, _field_default(info))
    label = label or path.rsplit(".", 1)[-1].replace("_", " ")
    help_text = " ".join(t for t in (info.description or "", _bounds_text(info)) if t) or None
    if options is not None:
        if st.session_state[key] not in options:
            options = [st.session_state[key], *options]
        st.selectbox(label, options, key=key, help=help_text)
    elif kind == "choice":
        st.selectbox(label, list(choices or ()), key=key, help=help_text)
    elif kind == "bool" and optional:
        st.selectbox(label, ["default", "on", "off"], key=key, help=help_text)
    elif kind == "bool":
        st.checkbox(label, key=key, help=help_text)
    elif kind == "int":
        st.number_input(label, key=key, step=1, help=help_text)
    elif kind == "float":
        st.number_input(label, key=key, format="%g", step=_float_step(_field_default(info)),
                        help=help_text)
    elif kind == "list":
        st.text_input(label, key=key, help=(help_text or "") + " Comma-separated.")
    else:
        st.text_input(label, key=key, help=help_text)
    form.slot(path)
    return field_value(info, st.session_state[key], path, form)


def _float_step(value: Any) -> float:
    v = abs(float(value or 0.0))
    return float(10 ** math.floor(math.log10(v))) / 10 if v > 0 else 0.01
