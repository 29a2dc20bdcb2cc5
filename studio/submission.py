"""What ``dm submit`` and the Launch form share before anything is queued.

``dm_core.config.parse_config`` accepts every config a run can train on, including some that
a person almost certainly did not mean, and it cannot see the files a run will read.
``refusals`` lists those, as ``(field path, message)`` pairs; both front ends call it on
every config they are about to queue and queue nothing while any remain, so the form and the
command refuse the same configs with the same words:

- **A noise kind that takes a rate, at r = 0** (symmetric, pair-flip): a clean run under a
  noisy name. A transition matrix sets the flips itself, so asymmetric noise with one is
  left alone.
- **A degenerate β** of a loss with derivative normalisation (``dm``, ``dm-normal``,
  ``dm-exponential``): the weights are ``exp(β·f(p))`` divided by their batch sum, so one
  example can take a share ``Scheme.worst_case_share(B)`` of a batch's gradient. Past the
  bound ``beta_bound`` that share is 1 to float32 precision (the other B − 1 examples
  together hold less than float32's epsilon of it) or the unnormalised weights overflow
  float32: the run trains on one example a step and "succeeds" at chance accuracy.
- **Data files missing** (``dm_core.data_files.check_data_available``), once per dataset section.

The runs both queue from one base (grids, comparisons) are expanded by ``studio.sweeps``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from dm_core.config import RunConfig
from dm_core.data_files import check_data_available
from dm_core.noise import NOISE
from dm_core.registries import LOSSES, SCHEMES
from dm_core.registry import ConfigError
from dm_core.schemes import make_scheme

SYMBOLS = {"lam": "λ", "psi": "ψ"}
# The spread of log-weights over [0, 1] allowed: past ln(float32 max) the largest weight
# overflows float32; past ln((B − 1) / float32 eps) the other B − 1 examples together hold
# less than float32's epsilon of the batch's gradient, so one example takes all of it.
FLOAT32_LOG_MAX = math.log(float(np.finfo(np.float32).max))
FLOAT32_EPS = float(np.finfo(np.float32).eps)

__all__ = ["FLOAT32_EPS", "FLOAT32_LOG_MAX", "beta_bound", "noise_takes_rate", "refusals"]


def noise_takes_rate(kind: str) -> bool:
    """Whether noise ``kind`` corrupts labels at a rate (its registry entry has ``rate``)."""
    return kind in NOISE and any(p.name == "rate" for p in NOISE.get(kind).params)


def _zero_rate(cfg: RunConfig) -> str | None:
    noise = cfg.dataset.noise
    if noise_takes_rate(noise.kind) and noise.rate == 0 and not noise.extra_params():
        return (f"{noise.kind} noise at r = 0 corrupts no label; choose a rate above 0 "
                "(allowed: 0 < r < 1), or the noise kind none for the annotated labels as "
                "they are")
    return None


def _log_gap_limit(batch_size: int) -> float:
    if batch_size <= 1:
        return FLOAT32_LOG_MAX
    return min(FLOAT32_LOG_MAX, math.log((batch_size - 1) / FLOAT32_EPS))


def _scheme_of(loss: str) -> str | None:
    """The weighting scheme of a loss with derivative normalisation and a β, else None."""
    entry = LOSSES.get(loss)
    scheme = entry.extra.get("scheme")
    if scheme is None or not entry.extra.get("normalise"):
        return None
    return scheme if any(p.name == "beta" for p in SCHEMES.get(scheme).params) else None


def _scheme_params(scheme: str, params: Mapping[str, Any]) -> dict[str, float]:
    return {p.name: float(params.get(p.name, p.default)) for p in SCHEMES.get(scheme).params}


def _scheme(name: str, params: Mapping[str, float]) -> Any:
    """The scheme, its parameters checked (``beta_bound`` takes a form's raw values). Its
    math imports torch when it runs, so ``_degenerate_beta`` builds one only past the bound
    the registry states."""
    return make_scheme(name, **params)


def beta_bound(loss: str, params: Mapping[str, Any], batch_size: int) -> float | None:
    """The largest |β| that ``loss`` (its other parameters from ``params``) may take at
    ``batch_size``; None for a loss without a β under derivative normalisation.

    Every such family's log-weight is β times a function of p, so the spread of log-weights
    over [0, 1] is |β| times that of β = 1, and the bound is the allowed spread
    (``FLOAT32_LOG_MAX``, and for a batch of two or more ``ln((B − 1) / FLOAT32_EPS)``)
    divided by it.

    >>> round(beta_bound("dm", {"lam": 1.0}, 128), 2)  # log w spans β/4 at λ = 1
    83.15
    >>> round(beta_bound("dm", {"lam": 0.0}, 128), 2)  # and β at λ = 0
    20.79
    >>> beta_bound("cce", {}, 128) is None
    True
    """
    scheme = _scheme_of(loss)
    if scheme is None:
        return None
    lo, hi = _scheme(scheme, {**_scheme_params(scheme, params), "beta": 1.0}).log_weight_range
    spread = hi - lo
    if not 0 < spread < math.inf:
        return None
    return _log_gap_limit(batch_size) / spread


def _degenerate_beta(cfg: RunConfig) -> str | None:
    params = cfg.loss.params()
    scheme = _scheme_of(cfg.loss.name)
    if scheme is None:
        return None
    beta = float(params.get("beta", SCHEMES.get(scheme).defaults()["beta"]))
    # A family whose log-weight spans at most |β| × beta_span (its registry entry says so)
    # is within the bound at every other parameter while |β| × beta_span fits the allowed
    # spread: cleared without the scheme's math, which would import torch into `dm submit`.
    span = SCHEMES.get(scheme).extra.get("beta_span")
    if span is not None and abs(beta) * span <= _log_gap_limit(cfg.batch_size):
        return None
    bound = beta_bound(cfg.loss.name, params, cfg.batch_size)
    if bound is None or abs(beta) <= bound:
        return None
    weights = _scheme(scheme, _scheme_params(scheme, params))
    share = weights.worst_case_share(cfg.batch_size)
    others = ", ".join(f"{SYMBOLS.get(k, k)}={v:g}" for k, v in _scheme_params(scheme, params).items()
                       if k != "beta")
    where = f"{cfg.loss.name}" + (f" with {others}" if others else "")
    lo, hi = weights.log_weight_range
    what = ("its weights overflow float32 and one example" if hi - lo > FLOAT32_LOG_MAX
            else "one example")
    return (f"β = {beta:g} is degenerate for {where} at batch size {cfg.batch_size}: {what} "
            f"can take {share:.7f} of a batch's gradient, essentially all of it "
            f"(Scheme.worst_case_share); allowed here: {-bound:.4g} ≤ β ≤ {bound:.4g}")


def refusals(configs: Sequence[RunConfig]) -> list[tuple[str, str]]:
    """``(field path, message)`` for every reason not to queue ``configs`` (each distinct
    message once, and each message starting with its field path): a noise kind that takes a rate at r = 0 (``dataset.noise.rate``), a
    degenerate β (``loss.beta``), and data files missing (checked once per distinct dataset
    section)."""
    found: list[tuple[str, str]] = []
    seen: set[str] = set()

    def add(path: str, message: str | None) -> None:
        if message is not None and (path, message) not in found:
            found.append((path, message))

    for cfg in configs:
        for path, check in (("dataset.noise.rate", _zero_rate), ("loss.beta", _degenerate_beta)):
            message = check(cfg)
            add(path, None if message is None else f"{path}: {message}")
        dataset = cfg.dataset.model_dump(mode="json")
        key = json.dumps(dataset, sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        try:
            check_data_available(dataset)
        except ConfigError as err:
            text = str(err)
            add(text.split(":", 1)[0] if text.startswith("dataset.") else "dataset", text)
    return found
