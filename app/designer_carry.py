"""What the EDF designer's "Use in Launch" hands to the Launch page.

The designed scheme becomes the loss that trains with it under derivative normalisation
(``carry_loss``: dm → dm, normal → dm-normal, cce → cce-dn), with the designed parameters.
The curves added beside it (a second DM curve, say) go along when the Launch form can queue
each of them with its own parameters: curves of the same scheme, when its loss has λ and β
(DM), become the form's λ/β grid, one row per λ with its β values, so that every curve is
one run and no other point is added. The form cannot queue any other added curve as drawn
(its method comparison trains every other loss at the registered defaults; its grid spans λ
and β only), so those are named as left out instead, for the designer to say so.

The hand-over is a plain dict under ``CARRY`` in the session: the loss's ``name`` and
parameters, and under ``GRID`` (only when more than one curve goes) the grid's rows as
``[[λ, [β, ...]], ...]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dm_core.losses import LOSSES

CARRY = "designer.carry"  # set by the designer, read (and removed) by the Launch page
GRID = "grid"
GRID_PARAMS = ("lam", "beta")  # what the Launch form's grid spans

__all__ = ["CARRY", "GRID", "carry_loss", "carry_payload", "grid_rows"]

Curve = tuple[str, Mapping[str, float]]


def carry_loss(scheme: str) -> str | None:
    """The loss that trains with ``scheme`` under derivative normalisation, or None.

    >>> carry_loss("dm"), carry_loss("normal"), carry_loss("cce")
    ('dm', 'dm-normal', 'cce-dn')
    """
    for entry in LOSSES.entries():
        if entry.extra.get("scheme") == scheme and entry.extra.get("normalise"):
            return entry.name
    return None


def grid_rows(points: Sequence[tuple[float, float]]) -> list[list[Any]]:
    """(λ, β) points as the Launch form's grid rows: one per λ, in increasing order, with
    its β values in increasing order, each point once.

    >>> grid_rows([(2.0, 16.0), (0.5, 8.0), (0.5, 12.0), (0.5, 8.0)])
    [[0.5, [8.0, 12.0]], [2.0, [16.0]]]
    """
    rows: dict[float, set[float]] = {}
    for lam, beta in points:
        rows.setdefault(float(lam), set()).add(float(beta))
    return [[lam, sorted(betas)] for lam, betas in sorted(rows.items())]


def carry_payload(scheme: str, values: Mapping[str, float],
                  extras: Sequence[Curve]) -> tuple[dict[str, Any] | None, list[Curve]]:
    """What "Use in Launch" hands over for the designed ``scheme`` at ``values`` with the
    added curves ``extras``, and the added curves it leaves out; (None, []) when the scheme
    trains with no loss.

    >>> carry_payload("dm", {"lam": 0.5, "beta": 8.0}, [("dm", {"lam": 2.0, "beta": 16.0}),
    ...                                                 ("normal", {"psi": 0.3, "beta": 10.0})])
    ({'name': 'dm', 'lam': 0.5, 'beta': 8.0, 'grid': [[0.5, [8.0]], [2.0, [16.0]]]}, [('normal', {'psi': 0.3, 'beta': 10.0})])
    >>> carry_payload("dm", {"lam": 0.5, "beta": 8.0}, [("dm", {"lam": 0.5, "beta": 8.0})])
    ({'name': 'dm', 'lam': 0.5, 'beta': 8.0}, [])
    """
    loss = carry_loss(scheme)
    if loss is None:
        return None, []
    payload: dict[str, Any] = {"name": loss, **{k: float(v) for k, v in values.items()}}
    if not set(GRID_PARAMS) <= {p.name for p in LOSSES.get(loss).params}:
        return payload, list(extras)
    lam, beta = GRID_PARAMS
    same = [params for name, params in extras if name == scheme]
    rows = grid_rows([(values[lam], values[beta]), *((p[lam], p[beta]) for p in same)])
    if sum(len(betas) for _, betas in rows) > 1:
        payload[GRID] = rows
    return payload, [(name, params) for name, params in extras if name != scheme]
