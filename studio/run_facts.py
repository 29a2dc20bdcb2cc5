"""What tells listed runs apart, read from each run's stored config and summary: the loss, its
parameters, the label noise, the seed and the selected accuracy. The Runs page and ``dm runs``
show the same texts, and both shorten names by the part every listed run shares.

Plain text, no pandas and no Streamlit: the command line reads it too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

MISSING = "—"
SYMBOLS = {"lam": "λ", "beta": "β", "psi": "ψ", "alpha": "α", "eta": "η", "gamma": "γ",
           "epsilon": "ε"}
# Where a shared prefix of names may end: the parts run names are built from (``name[a=1,b=2]``,
# ``preset-r40-dm``, ``study/method/trial``).
NAME_BREAKS = "[,-_/ ·"

__all__ = ["MISSING", "loss_params", "middle_ellipsis", "noise_text", "seed_text",
           "selected_test_acc", "shared_name_prefix"]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def loss_params(cfg: Mapping[str, Any]) -> str:
    """The loss's numeric parameters, compactly, ε (a numerical guard) left out.

    >>> loss_params({"loss": {"name": "dm", "lam": 1.0, "beta": 12.0, "eps": 1e-6}})
    'λ=1 β=12'
    >>> loss_params({"loss": {"name": "cce"}})
    ''
    """
    loss = cfg.get("loss") or {}
    return " ".join(f"{SYMBOLS.get(k, k)}={v:g}" for k, v in loss.items()
                    if k not in ("name", "eps") and _number(v))


def noise_text(cfg: Mapping[str, Any]) -> str:
    """The label noise: its kind and rate (the kind alone where it takes no rate).

    >>> noise_text({"dataset": {"noise": {"kind": "symmetric", "rate": 0.4}}})
    'symmetric 0.4'
    >>> noise_text({"dataset": {"noise": {"kind": "none", "rate": 0.0}}}), noise_text({})
    ('none', 'none')
    """
    noise = (cfg.get("dataset") or {}).get("noise") or {}
    kind = str(noise.get("kind", "none"))
    rate = noise.get("rate") or 0.0
    return kind if kind == "none" or (kind == "imbalance" and not rate) else f"{kind} {rate:g}"


def seed_text(cfg: Mapping[str, Any]) -> str:
    seed = cfg.get("seed")
    return MISSING if seed is None else str(seed)


def selected_test_acc(summary: Mapping[str, Any] | None) -> float | None:
    """The test accuracy at the evaluation with the best validation accuracy, from a finished
    run's summary (``dm_core.train``); None while it trains or without a validation split."""
    value = (summary or {}).get("test_acc_selected")
    return float(value) if _number(value) else None


def shared_name_prefix(names: Sequence[str]) -> str:
    """The start that every one of two or more ``names`` shares, cut just after the last
    break (``[``, ``,``, ``-``, …) inside it so no name loses part of a word; ``""`` for
    fewer than two names or when a name would be left empty.

    >>> shared_name_prefix(["digits-sym-40[loss.lam=1,loss.beta=8]",
    ...                     "digits-sym-40[loss.lam=1,loss.beta=12]"])
    'digits-sym-40[loss.lam=1,'
    >>> shared_name_prefix(["cmp[cce,seed=4]", "cmp[dm,seed=4]"]), shared_name_prefix(["a"])
    ('cmp[', '')
    """
    if len(names) < 2:
        return ""
    first, last = min(names), max(names)
    common = 0
    while common < min(len(first), len(last)) and first[common] == last[common]:
        common += 1
    cut = max((i + 1 for i in range(common) if first[i] in NAME_BREAKS), default=0)
    return first[:cut] if all(len(n) > cut for n in names) else ""


def middle_ellipsis(text: str, width: int) -> str:
    """``text`` in at most ``width`` characters: its start and its end, ``…`` between, since
    a run name's end (its grid point, its method) is what tells it from its neighbours.

    >>> middle_ellipsis("digits-symmetric-40-dm[loss.beta=12]", 20)
    'digits-sy…s.beta=12]'
    >>> middle_ellipsis("short", 20)
    'short'
    """
    if len(text) <= width:
        return text
    if width <= 1:
        return "…"[:width]
    tail = (width - 1) // 2 + (width - 1) % 2
    head = width - 1 - tail
    return text[:head] + "…" + text[len(text) - tail:]
