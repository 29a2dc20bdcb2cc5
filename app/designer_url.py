"""The EDF designer's view as URL parameters, so a copied link opens the same curves.

``?family=dm&lam=0.5&beta=8`` names the scheme being designed and its parameters;
``&curves=dm:lam=2,beta=16;normal:psi=0.3,beta=10`` the extra schemes drawn beside it. A
link is read with ``read_view`` and written with ``view_params``. A link may be typed or
edited by hand, so every part of it is checked against the scheme registry: an unknown
family, a parameter that is not a number or out of its range, and a malformed curve are each
left out with a warning that names them, and the page shows its defaults instead.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from dm_core.registry import ConfigError, Param
from dm_core.schemes import SCHEMES

FAMILY = "family"
CURVES = "curves"

__all__ = ["CURVES", "FAMILY", "DesignerView", "curve_text", "number_text", "read_curve",
           "read_view", "view_params"]

Curve = tuple[str, dict[str, float]]


@dataclass(frozen=True)
class DesignerView:
    """What a link asks for: the ``family``, the parameters it sets (a refused value is
    replaced by the parameter's default; one the link does not name keeps its current
    value), the extra ``curves`` (None when the link names none) and a ``warnings`` sentence
    for each part that was refused."""

    family: str
    values: dict[str, float] = field(default_factory=dict)
    curves: tuple[Curve, ...] | None = None
    warnings: tuple[str, ...] = ()


def number_text(value: float) -> str:
    """A parameter as the URL writes it: up to 12 significant digits, no trailing zeros.

    >>> number_text(8.0), number_text(0.5), number_text(1 / 3), number_text(-1e-7)
    ('8', '0.5', '0.333333333333', '-1e-07')
    """
    return f"{value:.12g}"


def curve_text(name: str, params: Mapping[str, float]) -> str:
    """``dm:lam=2,beta=16``; a scheme without parameters is its name alone.

    >>> curve_text("dm", {"lam": 2.0, "beta": 16.0}), curve_text("cce", {})
    ('dm:lam=2,beta=16', 'cce')
    """
    if not params:
        return name
    return name + ":" + ",".join(f"{k}={number_text(v)}" for k, v in params.items())


def view_params(family: str, values: Mapping[str, float],
                curves: Sequence[Curve] = ()) -> dict[str, str]:
    """The URL parameters of a view (``read_view`` reads them back).

    >>> view_params("dm", {"lam": 0.5, "beta": 8.0}, [("normal", {"psi": 0.3, "beta": 10.0})])
    {'family': 'dm', 'lam': '0.5', 'beta': '8', 'curves': 'normal:psi=0.3,beta=10'}
    """
    out = {FAMILY: family, **{k: number_text(float(v)) for k, v in values.items()}}
    if curves:
        out[CURVES] = ";".join(curve_text(n, p) for n, p in curves)
    return out


def _number(param: Param, family: str, text: str) -> tuple[float | None, str | None]:
    """(the value, None) or (None, why it is refused), checked against the registry."""
    try:
        value = float(text)
    except ValueError:
        return None, f"{text!r} is not a number"
    if not math.isfinite(value):
        return None, f"{text!r} is not a finite number"
    try:
        SCHEMES.validate_params(family, {param.name: value})
    except ConfigError as err:
        return None, "; ".join(message for _, message in err.errors)
    return value, None


def read_curve(text: str) -> tuple[Curve | None, str | None]:
    """One ``name:k=v,k=v`` item of ``curves``: (the curve, None) or (None, why not).

    >>> read_curve("dm:lam=2,beta=16"), read_curve("cce")
    ((('dm', {'lam': 2.0, 'beta': 16.0}), None), (('cce', {}), None))
    >>> read_curve("dm:lam=-1")[1]
    "curve 'dm:lam=-1': lam: -1.0 is out of range; must be a float in [0, inf)"
    """
    name, _, rest = text.strip().partition(":")
    where = f"curve {text!r}"
    if name not in SCHEMES:
        return None, f"{where}: {name!r} is not a registered scheme"
    entry = SCHEMES.get(name)
    params: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, value_text = item.partition("=")
        known = {p.name: p for p in entry.params}
        if not sep or key not in known:
            return None, f"{where}: {item!r} is not one of {name}'s parameters ({', '.join(known) or 'none'})"
        value, problem = _number(known[key], name, value_text)
        if problem is not None:
            return None, f"{where}: {key}: {problem}"
        params[key] = value
    filled = SCHEMES.validate_params(name, params)  # the defaults of those not given
    return (name, {p.name: float(filled[p.name]) for p in entry.params}), None


def read_view(query: Mapping[str, str], fallback_family: str) -> DesignerView:
    """The view a link's parameters ``query`` ask for; ``fallback_family`` when the link
    names none or one that is not registered.

    >>> read_view({"family": "dm", "lam": "2", "beta": "16"}, "dm")
    DesignerView(family='dm', values={'lam': 2.0, 'beta': 16.0}, curves=None, warnings=())
    >>> view = read_view({"family": "dm", "lam": "-1"}, "dm")
    >>> view.values, view.warnings
    ({'lam': 0.5}, ("The link's lam = '-1' is refused (-1.0 is out of range; must be a float in [0, inf)): showing lam = 0.5 instead.",))
    >>> read_view({"family": "nope"}, "dm").warnings
    ("The link's family 'nope' is not a registered scheme (dm, normal, exponential, beta, cce, mae, mse, gce): showing dm instead.",)
    """
    warnings: list[str] = []
    family = query.get(FAMILY, fallback_family)
    if family not in SCHEMES:
        warnings.append(f"The link's family {family!r} is not a registered scheme "
                        f"({', '.join(SCHEMES.names())}): showing {fallback_family} instead.")
        family = fallback_family
    entry = SCHEMES.get(family)
    values: dict[str, float] = {}
    for param in entry.params:
        if param.name not in query:
            continue
        value, problem = _number(param, family, query[param.name])
        if problem is None:
            values[param.name] = value
        else:
            values[param.name] = float(param.default)
            warnings.append(f"The link's {param.name} = {query[param.name]!r} is refused ({problem}): "
                            f"showing {param.name} = {param.default:g} instead.")
    known = {FAMILY, CURVES, *(p.name for p in entry.params)}
    for key in query:
        if key not in known:
            warnings.append(f"The link's {key!r} is not a parameter of {family}: ignored.")
    curves = None
    if CURVES in query:
        curves = []
        for item in filter(None, (part.strip() for part in query[CURVES].split(";"))):
            curve, problem = read_curve(item)
            if curve is None:
                warnings.append(f"The link's {problem}: left out.")
            else:
                curves.append(curve)
        curves = tuple(curves)
    return DesignerView(family, values, curves, tuple(warnings))
