"""YAML and JSON from users, read within bounds: size, nesting depth and alias expansion.

Every way a config reaches the studio -- a file, a ``--set`` or ``--grid`` value, a text
field of the Launch form, a study file -- goes through ``load_yaml`` / ``load_json``, so a
hostile or mistaken input is refused quickly with a ``ConfigError`` instead of exhausting
memory or the stack:

- more than ``MAX_CONFIG_BYTES`` of text;
- nesting deeper than ``MAX_CONFIG_DEPTH`` (a 20,000-deep ``[[[…]]]`` would overflow the
  recursive YAML composer, and every recursive walk after it);
- more than ``MAX_CONFIG_NODES`` values once YAML aliases are expanded (nine anchors of nine
  aliases each are 324 bytes and 9⁹ strings: the "billion laughs"), or an alias inside the
  node it names (a structure that contains itself).

Anchors and aliases within the bounds keep working.

>>> load_yaml("w: &w [32, 32]\\nhidden: *w", "")
{'w': [32, 32], 'hidden': [32, 32]}
>>> load_yaml("[" * 100 + "]" * 100, "--set")
Traceback (most recent call last):
dm_core.registry.ConfigError: --set: nested more than 32 levels deep
"""

from __future__ import annotations

import json
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

from dm_core.registry import ConfigError

__all__ = ["MAX_CONFIG_BYTES", "MAX_CONFIG_DEPTH", "MAX_CONFIG_NODES", "check_extent",
           "load_json", "load_yaml"]

# A run config is a few hundred bytes, about five levels deep; its largest value, a CIFAR-100
# noise transition matrix, is 100 × 100 numbers (about 60 kB, 10,101 values).
MAX_CONFIG_BYTES = 1 << 20
MAX_CONFIG_DEPTH = 32
MAX_CONFIG_NODES = 100_000


class _Bounds(Exception):
    """Why a text is refused (the caller's ConfigError says where it came from)."""


def _too_deep() -> _Bounds:
    return _Bounds(f"nested more than {MAX_CONFIG_DEPTH} levels deep")


def _too_many() -> _Bounds:
    return _Bounds(f"more than {MAX_CONFIG_NODES} values once its aliases are expanded")


class _BoundedSafeLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing deep nesting while it composes (its composer recurses
    once per level) and bounding each document's size with its aliases expanded."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        if self._depth >= MAX_CONFIG_DEPTH:
            raise _too_deep()
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self) -> Node:
        node = super().compose_document()
        _expanded_extent(node)
        return node


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _expanded_extent(root: Node) -> tuple[int, int]:
    """(values, depth) of the node graph with every alias expanded; an alias is the node it
    names, so each shared node is measured once (iteratively: the graph may be deep)."""
    done: dict[int, tuple[int, int]] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            measures = [done[id(c)] for c in _children(node)]
            size = 1 + sum(m[0] for m in measures)
            depth = 1 + max((m[1] for m in measures), default=0)
            if depth > MAX_CONFIG_DEPTH:
                raise _too_deep()
            if size > MAX_CONFIG_NODES:
                raise _too_many()
            done[key] = (size, depth)
            open_nodes.discard(key)
            continue
        if key in done:
            continue
        if key in open_nodes:  # reached again below itself
            raise _Bounds("an alias names a node that contains it (a structure inside itself)")
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in _children(node) if id(c) not in done)
    return done[id(root)]


def _check_size(text: str) -> None:
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_CONFIG_BYTES:
        raise _Bounds(f"{size} bytes; at most {MAX_CONFIG_BYTES} bytes")


def _refuse(path: str, prefix: str, err: _Bounds) -> ConfigError:
    return ConfigError.at(path, f"{prefix}{err}")


def load_yaml(text: str, path: str, prefix: str = "") -> Any:
    """Parse YAML ``text`` within the bounds; a refusal is a ``ConfigError`` at ``path``
    whose message starts with ``prefix``. Malformed YAML raises ``yaml.YAMLError``."""
    try:
        _check_size(text)
        return yaml.load(text, Loader=_BoundedSafeLoader)  # noqa: S506 - a SafeLoader subclass
    except _Bounds as err:
        raise _refuse(path, prefix, err) from None


def load_json(text: str, path: str, prefix: str = "") -> Any:
    """Parse JSON ``text`` within the bounds (JSON has no aliases: size and depth only).
    Malformed JSON raises ``json.JSONDecodeError``."""
    try:
        _check_size(text)
        try:
            value = json.loads(text)
        except RecursionError:  # the decoder recurses per level; deeper than ours anyway
            raise _too_deep() from None
        _value_extent(value)
    except _Bounds as err:
        raise _refuse(path, prefix, err) from None
    return value


def check_extent(value: Any, path: str, prefix: str = "") -> None:
    """Refuse a parsed value (dicts and lists) deeper or larger than the bounds: for data that
    arrives already parsed (a dict from Python), before anything walks it recursively."""
    try:
        _value_extent(value)
    except _Bounds as err:
        raise _refuse(path, prefix, err) from None


def _value_extent(value: Any) -> None:
    count = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        count += 1
        if depth > MAX_CONFIG_DEPTH:
            raise _too_deep()
        if count > MAX_CONFIG_NODES:
            raise _too_many()
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for pair in item.items() for v in pair)
        elif isinstance(item, list | tuple):
            stack.extend((v, depth + 1) for v in item)
