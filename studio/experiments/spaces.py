"""What each method tunes in a study, and which of two settings is the simpler.

One registry entry per loss a study tunes (``SEARCH_SPACES``, keyed by the loss's name in
``dm_core.losses``). An entry's axes are the loss parameters it tunes, each a finite list of
values (so a grid sampler can cover it when the budget allows), and the direction in which the
setting gets simpler: towards the value at which the loss turns into plain cross-entropy (or,
for DM, into uniform weights and the CCE-like emphasis mode). Losses with no hyperparameter
have no axes and are trained once per seed, untuned.

A study may name any registered loss (``dm_core.losses.list_losses()``). One with no entry here
(``dm-normal``, ``dm-exponential``) is trained untuned at its registered defaults, and the
report says so (``untuned_text``); a name that is not a registered loss is refused with the
allowed names.

``dm-beta``, w(p) = p^(α−1)·(1−p)^(η−1) with derivative normalisation, tunes α and η over
values ≥ 1 (so w stays bounded on [0, 1]); both are simpler low. α = 1 puts the emphasis on the
hardest examples, as cross-entropy does, and a larger α moves it towards easy ones; η = 1 is
flat in 1 − p, so α = η = 1 is uniform weighting (as DM's β = 0), and a larger η concentrates
the weight (α = 1, η = 2 is cross-entropy's own weighting, α = η = 2 MAE's).

Ties in the validation score go to the simpler setting: the one whose axes, compared in the
order listed, are first nearer their simple end (``simplicity_key``).

Some grids hold settings that train the same loss: DM with β = 0 weighs every example 1,
whatever λ. An entry may name a ``canonical`` function mapping each setting to the simplest
one it equals; the tuner trains one of each, so such repeats do not spend a method's budget
(``distinct_settings``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from dm_core.losses import LOSSES
from dm_core.registry import Registry

SEARCH_SPACES = Registry("search space")


@dataclass(frozen=True)
class Axis:
    """One tuned loss parameter: its candidate values and where the simpler setting lies."""

    param: str
    values: tuple[float, ...]
    simpler: Literal["low", "high"] = "low"

    def __post_init__(self) -> None:
        if not self.values or len(set(self.values)) != len(self.values):
            raise ValueError(f"axis {self.param!r}: values must be distinct and non-empty")

    def rank(self, value: float) -> float:
        """Smaller is simpler."""
        return float(value) if self.simpler == "low" else -float(value)


Setting = dict[str, float]


def _dm_canonical(params: Mapping[str, float]) -> Setting:
    """β = 0 makes w(p) = 1 for every λ: all those settings are uniform weighting, λ = 0."""
    return {**params, "lam": 0.0} if float(params["beta"]) == 0.0 else dict(params)


def _space(name: str, why: str, *axes: Axis, canonical: Callable[[Mapping[str, float]], Setting] = dict) -> None:
    loss = LOSSES.get(name)  # a space for a loss that does not exist is a programming error
    for axis in axes:
        loss.param(axis.param)  # KeyError: the loss has no such parameter
        for v in axis.values:
            loss.param(axis.param).check(v, name)
    SEARCH_SPACES.register(name, description=why, axes=tuple(axes), canonical=canonical)(lambda: tuple(axes))


_LOW = "low"
_HIGH = "high"

for _name in ("cce", "mae", "mse", "cce-dn", "mae-dn", "mse-dn"):
    _space(_name, "no hyperparameter: trained untuned")
_space("dm", "λ (emphasis mode) and β (emphasis variance); λ = 0 with β = 0 is uniform weighting",
       Axis("lam", (0.0, 0.5, 1.0, 2.0), _LOW), Axis("beta", (0.0, 2.0, 4.0, 8.0, 12.0, 16.0), _LOW),
       canonical=_dm_canonical)
for _name in ("gce", "gce-dn"):
    _space(_name, "q; q → 0 is cross-entropy", Axis("q", (0.1, 0.3, 0.5, 0.7, 0.9), _LOW))
_space("sce", "α (CE term) and β (reverse-CE term); β = 0 is a scaled cross-entropy",
       Axis("beta", (0.1, 0.5, 1.0), _LOW), Axis("alpha", (0.1, 0.5, 1.0), _LOW))
_space("label-smoothing", "ε; ε = 0 is cross-entropy", Axis("epsilon", (0.05, 0.1, 0.2, 0.4), _LOW))
for _name in ("boot-soft", "boot-hard"):
    _space(_name, "β, the weight of the annotated label; β = 1 is cross-entropy",
           Axis("beta", (0.95, 0.8, 0.6), _HIGH))
_space("focal", "γ; γ = 0 is cross-entropy", Axis("gamma", (0.5, 1.0, 2.0, 5.0), _LOW))
_space("dm-beta", "α (emphasis towards easy examples as it grows) and η (concentration); "
       "α = 1 with η = 1 is uniform weighting, with η = 2 cross-entropy's weighting",
       Axis("alpha", (1.0, 2.0, 3.0, 4.0), _LOW), Axis("eta", (1.0, 2.0, 3.0, 4.0), _LOW))
_space("elr", "λ (weight of the early-learning term) and its momentum; λ = 0 is cross-entropy",
       Axis("lam", (1.0, 3.0, 5.0, 7.0), _LOW), Axis("momentum", (0.5, 0.7, 0.9), _LOW))
_space("co-teaching", "τ, the share of each batch left out once the schedule is done; τ = 0 "
       "trains both networks on every example", Axis("forget_rate", (0.1, 0.2, 0.4, 0.6), _LOW))


def check_method(method: str, where: str = "methods") -> None:
    """``ConfigError`` at ``where`` naming the registered losses unless ``method`` is one."""
    LOSSES.get(method, where=where)


def _entry_extra(method: str) -> dict[str, Any] | None:
    """The search-space entry of ``method``; None for a registered loss with none."""
    if method in SEARCH_SPACES:
        return SEARCH_SPACES.get(method).extra
    check_method(method, "method")
    return None


def axes_of(method: str) -> tuple[Axis, ...]:
    """The tuned axes of ``method``: none for a loss without hyperparameters or without a
    search space (trained untuned); ``ConfigError`` naming the registered losses for a name
    that is not one."""
    extra = _entry_extra(method)
    return extra["axes"] if extra is not None else ()


def untuned_text(method: str) -> str | None:
    """Why ``method`` is trained untuned, for the report; None when it is tuned.

    >>> untuned_text("cce")
    'no hyperparameter'
    >>> untuned_text("dm-exponential")
    'no search space: trained at its defaults beta=2, eps=1e-06'
    >>> untuned_text("dm") is None
    True
    """
    if axes_of(method):
        return None
    if method in SEARCH_SPACES:
        return "no hyperparameter"
    defaults = ", ".join(f"{p.name}={p.default:g}" for p in LOSSES.get(method).params)
    return "no search space: trained at its defaults" + (f" {defaults}" if defaults else "")


def grid_size(method: str) -> int:
    size = 1
    for axis in axes_of(method):
        size *= len(axis.values)
    return size


def canonical(method: str, params: Mapping[str, float]) -> Setting:
    """The simplest setting that trains the same loss as ``params``.

    >>> canonical("dm", {"lam": 2.0, "beta": 0.0})
    {'lam': 0.0, 'beta': 0.0}
    >>> canonical("dm", {"lam": 2.0, "beta": 4.0})
    {'lam': 2.0, 'beta': 4.0}
    """
    extra = _entry_extra(method)
    return extra["canonical"](params) if extra is not None else dict(params)


def setting_key(method: str, params: Mapping[str, float]) -> tuple[tuple[str, float], ...]:
    """A hashable key that settings training the same loss share."""
    return tuple(sorted(canonical(method, params).items()))


def distinct_settings(method: str) -> list[Setting]:
    """One setting per different loss of the grid (the canonical one), in grid order: what a
    search may try.

    >>> len(distinct_settings("dm")), distinct_settings("dm")[0]
    (21, {'lam': 0.0, 'beta': 0.0})
    """
    axes = axes_of(method)
    found: dict[tuple[tuple[str, float], ...], Setting] = {}
    for values in itertools.product(*(a.values for a in axes)):
        params = dict(zip([a.param for a in axes], values, strict=True))
        found.setdefault(setting_key(method, params), canonical(method, params))
    return list(found.values()) if axes else []


def distinct_grid_size(method: str) -> int:
    """How many settings of the grid train different losses (the most a search can try)."""
    return len(distinct_settings(method))


def simplicity_key(method: str, params: Mapping[str, Any]) -> tuple[float, ...]:
    """Sort key of a setting: smaller is simpler (axes compared in their listed order).

    >>> simplicity_key("dm", {"lam": 0.5, "beta": 4.0}) < simplicity_key("dm", {"lam": 1.0, "beta": 2.0})
    True
    >>> simplicity_key("boot-soft", {"beta": 0.95}) < simplicity_key("boot-soft", {"beta": 0.8})
    True
    """
    return tuple(axis.rank(params[axis.param]) for axis in axes_of(method))


def simplicity_text(method: str) -> str:
    """How ties are broken for ``method``, in words, for the report."""
    axes = axes_of(method)
    if not axes:
        return "nothing tuned"
    return ", then ".join(f"{'smaller' if a.simpler == 'low' else 'larger'} {a.param}" for a in axes)
