r"""Emphasis density functions (EDFs): every loss as a weighting scheme ``w(p)``.

A scheme gives each example a gradient magnitude ``w(p_i)`` as a function of ``p_i``, the
probability the model gives to the example's annotated label. The
gradient's direction is always CCE's; only its L1 norm is designed. The families:

- ``dm``: :math:`w = \exp(\beta p^\lambda (1-p))`, mode :math:`\lambda/(\lambda+1)` (Eq. 12)
- ``normal``: :math:`w = \exp(-\beta p (p - 2\psi))`, mode :math:`\psi` (Eq. 9)
- ``exponential``: :math:`w = \exp(\beta (1-p))`, mode 0 for :math:`\beta > 0` (Eq. 10)
- ``beta``: :math:`w = p^{\alpha-1} (1-p)^{\eta-1}`, mode :math:`(\alpha-1)/(\alpha+\eta-2)` (Eq. 11)
- ``cce`` :math:`2(1-p)` (mode 0), ``mae`` :math:`2p(1-p)` (1/2), ``mse`` :math:`4p(1-p)^2`
  (1/3), ``gce`` :math:`2p^q(1-p)` (:math:`q/(q+1)`)

**Each family is declared once**, by :func:`family` on the function that holds its math:
``log w`` as a function of ``(log p, log(1-p))`` -- log space, so that the losses
(``dm_core.losses``) can normalise a batch's weights without overflow and without ever
forming ``1 - p`` by subtraction -- with its description, equation, parameters (ranges,
defaults, slider ranges, help), closed-form mode, endpoint orders and formula text. The
decorator enters it in ``SCHEMES``, the single source of scheme names that config
validation, the CLI, the dashboard's forms and the tests read. :class:`Scheme` wraps one
family with its parameters and adds the analysis the dashboard draws: the mode, the
density, the implied loss, the spread.

**Readable without torch.** ``dm submit`` and the dashboard's forms validate configs
against ``SCHEMES`` (through ``dm_core.registries``, which takes the scheme entries from
here) without importing torch (about 7 s and 700 MB). So this module imports no torch or
scipy at import time: the math is written with tensor methods (``log_p.exp()``, never
``torch.exp(log_p)``), so it needs torch only when a tensor reaches it, and the few places
that make tensors or integrate import torch and scipy inside the function.

>>> import torch
>>> scheme = make_scheme("dm", lam=1.0, beta=8.0)
>>> scheme
Scheme('dm', lam=1.0, beta=8.0)
>>> scheme.formula
'w(p) = exp(8 * p^1 * (1 - p))'
>>> scheme.mode
0.5
>>> scheme.weight(torch.tensor([0.0, 0.5, 1.0]))
tensor([1.0000, 7.3891, 1.0000])
>>> make_scheme("dm", lam=-1.0)
Traceback (most recent call last):
...
dm_core.registry.ConfigError: lam: -1.0 is out of range; must be a float in [0, inf)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from dm_core.registry import Param, Registry

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["SCHEMES", "Scheme", "family", "list_schemes", "make_scheme", "scheme_from_params"]

SCHEMES = Registry("scheme")

# Dense grid for numerical modes (float64); the argmax is then refined on its two neighbours.
_MODE_GRID = np.linspace(0.0, 1.0, 20_001)
_QUAD = {"limit": 200, "epsabs": 0.0, "epsrel": 1e-10}


# ---------------------------------------------------------------------------------------
# The declaration: one decorator per family, on the function holding its math.
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Family:
    """Everything family-specific; :class:`Scheme` does the rest generically."""

    log_weight: Callable[..., Tensor]
    closed_mode: Callable[..., float | None]
    # (k0, k1): w(t) ~ t**k0 as t -> 0 and ~ (1 - t)**k1 as t -> 1. The implied loss
    # integral of w / (2t(1-t)) diverges at an endpoint whose order is <= 0.
    endpoint_orders: Callable[..., tuple[float, float]]
    formula: Callable[..., str]
    closed_stats: Callable[..., tuple[float, float, float]] | None = None


_FAMILIES: dict[str, _Family] = {}


def family(name: str, *, description: str, equation: str, params: Sequence[Param] = (),
           mode: Callable[..., float | None], endpoint_orders: Callable[..., tuple[float, float]],
           formula: Callable[..., str], closed_stats: Callable[..., tuple[float, float, float]] | None = None,
           **extra: Any) -> Callable[[Callable[..., Tensor]], Callable[..., Tensor]]:
    """Declare the scheme family ``name`` on its log-weight function ``log w(log p, log(1-p), **params)``.

    Args:
        name: the name in ``SCHEMES``.
        description, equation, params: its registry record (the parameters' ranges and
            defaults are checked wherever a scheme is built: configs, forms, the CLI, code).
        mode: the closed-form mode for given parameters, or ``None`` to find it numerically.
        endpoint_orders: ``(k0, k1)`` with ``w(t) ~ t**k0`` near 0 and ``(1-t)**k1`` near 1.
        formula: ``w(p)`` as text with the parameter values filled in.
        closed_stats: ``(log normaliser, mean, variance)`` of the density in closed form,
            where numerical quadrature would not resolve it (poles).
        extra: further fields of the record, e.g. ``beta_span`` (the log-weight spans at
            most ``|β| × beta_span`` over p in [0, 1], whatever the other parameters:
            ``studio.submission`` clears most β values with it, without the math).

    Returns the log-weight function unchanged.
    """

    def decorator(log_weight: Callable[..., Tensor]) -> Callable[..., Tensor]:
        _FAMILIES[name] = _Family(log_weight, mode, endpoint_orders, formula, closed_stats)
        SCHEMES.register(name, description=description, params=params, equation=equation,
                         **extra)(_SchemeFactory(name))
        return log_weight

    return decorator


@dataclass(frozen=True)
class _SchemeFactory:
    """``SCHEMES``' factory for one family: a :class:`Scheme` of checked parameters."""

    name: str

    def __call__(self, **params: float) -> Scheme:
        return scheme_from_params(self.name, **params)


def _times_log(a: float, log_x: Tensor) -> Tensor:
    """``a * log x`` with ``0 * log 0 = 0``, i.e. ``x ** 0 == 1`` even at ``x = 0``."""
    return log_x.new_zeros(log_x.shape) if a == 0 else a * log_x


def _num(x: float) -> str:
    return f"({x:g})" if x < 0 else f"{x:g}"


_BETA_HELP = ("Emphasis variance: how strongly examples near the mode are preferred. "
              "0 weights every example equally; a negative value inverts the curve.")


# ---------------------------------------------------------------------------------------
# The families, in the order the forms list them.
# ---------------------------------------------------------------------------------------


@family(
    "dm",
    description="Derivative manipulation (the paper's main family): the emphasis mode moves "
                "with lambda, the emphasis variance with beta.",
    equation="w(p) = exp(β · p^λ · (1 − p)),  ψ = λ/(λ+1) for β > 0   (Eq. 12)",
    params=[
        Param("lam", 0.5, low=0.0, ui_low=0.0, ui_high=5.0,
              help="Emphasis mode: 0 focuses on the hardest examples (small p); larger values "
                   "move the focus to easier ones (mode = lam/(lam+1)). Raise it with label noise."),
        Param("beta", 8.0, ui_low=-20.0, ui_high=40.0, help=_BETA_HELP),
    ],
    mode=lambda lam, beta: lam / (lam + 1.0) if beta > 0 else None,
    endpoint_orders=lambda lam, beta: (0.0, 0.0),
    formula=lambda lam, beta: f"w(p) = exp({_num(beta)} * p^{lam:g} * (1 - p))",
    beta_span=1.0,
)
def _dm_log_weight(log_p: Tensor, log_1mp: Tensor, lam: float, beta: float) -> Tensor:
    """Eq. 12: ``log w = beta * p**lam * (1 - p)``; bounded by ``|beta|``."""
    # exp(lam log p + log(1 - p)) in three ops, not five: every loss call pays for each op.
    log_w = log_1mp.exp() if lam == 0 else log_1mp.add(log_p, alpha=lam).exp_()
    return log_w.mul_(beta)


@family(
    "normal",
    description="Normal-shaped EDF: a Gaussian bump in p centred on psi.",
    equation="w(p) = exp(−β · p · (p − 2ψ))   (Eq. 9)",
    params=[
        Param("psi", 0.5, low=0.0, high=1.0, ui_low=0.0, ui_high=1.0,
              help="Emphasis mode: the p at which the weight peaks (for beta > 0)."),
        Param("beta", 8.0, ui_low=-20.0, ui_high=40.0, help=_BETA_HELP),
    ],
    mode=lambda psi, beta: min(max(psi, 0.0), 1.0) if beta > 0 else None,
    endpoint_orders=lambda psi, beta: (0.0, 0.0),
    formula=lambda psi, beta: f"w(p) = exp(-{_num(beta)} * p * (p - 2*{psi:g}))",
    beta_span=1.0,
)
def _normal_log_weight(log_p: Tensor, log_1mp: Tensor, psi: float, beta: float) -> Tensor:
    """Eq. 9: ``log w = -beta * p * (p - 2 psi)``."""
    p = log_p.exp()
    return -beta * p * (p - 2.0 * psi)


@family(
    "exponential",
    description="Exponential EDF: monotone emphasis on hard examples (beta > 0) or easy ones (beta < 0).",
    equation="w(p) = exp(β · (1 − p))   (Eq. 10)",
    params=[Param("beta", 2.0, ui_low=-20.0, ui_high=40.0, help=_BETA_HELP)],
    mode=lambda beta: 0.0 if beta > 0 else (1.0 if beta < 0 else None),
    endpoint_orders=lambda beta: (0.0, 0.0),
    formula=lambda beta: f"w(p) = exp({_num(beta)} * (1 - p))",
    beta_span=1.0,
)
def _exponential_log_weight(log_p: Tensor, log_1mp: Tensor, beta: float) -> Tensor:
    """Eq. 10: ``log w = beta * (1 - p)``."""
    return beta * log_1mp.exp()


def _beta_stats(alpha: float, eta: float) -> tuple[float, float, float]:
    """(log normaliser, mean, variance) of the Beta(alpha, eta) density, in closed form."""
    from scipy import special

    s = alpha + eta
    return float(special.betaln(alpha, eta)), alpha / s, alpha * eta / (s * s * (s + 1.0))


@family(
    "beta",
    description="Beta-shaped EDF; contains CCE, MAE, MSE and GCE as special cases.",
    equation="w(p) = p^(α−1) · (1 − p)^(η−1),  ψ = (α−1)/(α+η−2) for α, η > 1   (Eq. 11)",
    params=[
        Param("alpha", 2.0, low=0.0, low_inclusive=False, ui_low=0.1, ui_high=10.0,
              help="Shape at p = 0: larger values move the emphasis towards easy examples."),
        Param("eta", 2.0, low=0.0, low_inclusive=False, ui_low=0.1, ui_high=10.0,
              help="Shape at p = 1: larger values move the emphasis towards hard examples."),
    ],
    mode=lambda alpha, eta: (alpha - 1.0) / (alpha + eta - 2.0) if alpha > 1 and eta > 1 else None,
    endpoint_orders=lambda alpha, eta: (alpha - 1.0, eta - 1.0),
    formula=lambda alpha, eta: f"w(p) = p^{_num(alpha - 1)} * (1 - p)^{_num(eta - 1)}",
    closed_stats=_beta_stats,
)
def _beta_log_weight(log_p: Tensor, log_1mp: Tensor, alpha: float, eta: float) -> Tensor:
    """Eq. 11: ``log w = (alpha - 1) log p + (eta - 1) log(1 - p)`` (``+inf`` at a pole)."""
    return _times_log(alpha - 1.0, log_p) + _times_log(eta - 1.0, log_1mp)


@family(
    "cce", description="Categorical cross-entropy -log p: emphasises the hardest examples.",
    equation="w(p) = 2(1 − p),  ψ = 0",
    mode=lambda: 0.0, endpoint_orders=lambda: (0.0, 1.0), formula=lambda: "w(p) = 2 * (1 - p)",
)
def _cce_log_weight(log_p: Tensor, log_1mp: Tensor) -> Tensor:
    """CCE ``-log p``: ``w = 2(1 - p)``."""
    return math.log(2.0) + log_1mp


@family(
    "mae", description="Mean absolute error 1 - p: emphasises examples with p near 1/2.",
    equation="w(p) = 2p(1 − p),  ψ = 1/2",
    mode=lambda: 0.5, endpoint_orders=lambda: (1.0, 1.0), formula=lambda: "w(p) = 2 * p * (1 - p)",
)
def _mae_log_weight(log_p: Tensor, log_1mp: Tensor) -> Tensor:
    """MAE ``1 - p``: ``w = 2p(1 - p)``."""
    return math.log(2.0) + log_p + log_1mp


@family(
    "mse", description="Mean squared error (1 - p)^2: emphasises examples with p near 1/3.",
    equation="w(p) = 4p(1 − p)²,  ψ = 1/3",
    mode=lambda: 1.0 / 3.0, endpoint_orders=lambda: (1.0, 2.0),
    formula=lambda: "w(p) = 4 * p * (1 - p)^2",
)
def _mse_log_weight(log_p: Tensor, log_1mp: Tensor) -> Tensor:
    """MSE ``(1 - p)^2``: ``w = 4p(1 - p)^2``."""
    return math.log(4.0) + log_p + 2.0 * log_1mp


@family(
    "gce", description="Generalised cross-entropy (1 - p^q)/q: between CCE (q -> 0) and MAE (q = 1).",
    equation="w(p) = 2p^q(1 − p),  ψ = q/(q+1)",
    params=[Param("q", 0.7, low=0.0, high=1.0, low_inclusive=False, ui_low=0.05, ui_high=1.0,
                  help="Interpolates between CCE (q -> 0) and MAE (q = 1); mode q/(q+1).")],
    mode=lambda q: q / (q + 1.0), endpoint_orders=lambda q: (q, 1.0),
    formula=lambda q: f"w(p) = 2 * p^{q:g} * (1 - p)",
)
def _gce_log_weight(log_p: Tensor, log_1mp: Tensor, q: float) -> Tensor:
    """GCE ``(1 - p^q)/q``: ``w = 2 p^q (1 - p)``."""
    return math.log(2.0) + q * log_p + log_1mp


# ---------------------------------------------------------------------------------------
# The scheme object.
# ---------------------------------------------------------------------------------------


def _as_float(p: Any) -> Tensor:
    import torch

    p = torch.as_tensor(p, dtype=None if isinstance(p, torch.Tensor) else torch.float64)
    return p if p.is_floating_point() else p.to(torch.float64)


@dataclass(frozen=True, eq=False)
class Scheme:
    r"""One emphasis density function ``w(p)`` with its parameters (build it with :func:`make_scheme`).

    Args:
        name: a name in ``SCHEMES``.
        params: its parameters; validated against the registry's ranges (defaults filled in).

    Attributes:
        mode: :math:`\psi = \arg\max_{p \in [0,1]} w(p)`, the emphasis focus. Closed form where
            the paper gives one (``dm`` with :math:`\beta > 0`: :math:`\lambda/(\lambda+1)`,
            Eq. 12; ``normal``: :math:`\psi`, Eq. 9; ``beta`` with :math:`\alpha, \eta > 1`:
            :math:`(\alpha-1)/(\alpha+\eta-2)`, Eq. 11; CCE 0, MAE 1/2, MSE 1/3, GCE
            :math:`q/(q+1)`), otherwise the argmax of ``w`` on a dense float64 grid refined
            between the grid neighbours. Conventions: a flat ``w`` (e.g. ``dm`` with
            :math:`\beta = 0`) has mode 0.5; ties (e.g. ``dm`` with :math:`\beta < 0,
            \lambda > 0`, where :math:`w(0) = w(1) = 1`) go to the smaller ``p``.
        formula: human-readable ``w(p)`` with the parameter values filled in.

    Example:
        >>> s = make_scheme("gce", q=0.5)
        >>> s.mode, s.formula
        (0.3333333333333333, 'w(p) = 2 * p^0.5 * (1 - p)')
        >>> round(s.spread(), 6)
        0.233285
        >>> make_scheme("normal", psi=0.25, beta=-4.0).mode
        1.0
    """

    name: str
    params: dict[str, float]

    def __post_init__(self) -> None:
        # Built by hand, a scheme checks its parameters here (defaults filled in); built by
        # make_scheme, they were checked once already and scheme_from_params skips this.
        object.__setattr__(self, "params", SCHEMES.validate_params(self.name, dict(self.params)))

    @classmethod
    def _of_checked(cls, name: str, params: dict[str, float]) -> Scheme:
        scheme = object.__new__(cls)
        object.__setattr__(scheme, "name", name)
        object.__setattr__(scheme, "params", params)
        return scheme

    # Value semantics (a dict field is not hashable, so these are written out).
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Scheme):
            return NotImplemented
        return self.name == other.name and self.params == other.params

    def __hash__(self) -> int:
        return hash((self.name, tuple(self.params.items())))

    def __repr__(self) -> str:
        args = "".join(f", {k}={v!r}" for k, v in self.params.items())
        return f"Scheme({self.name!r}{args})"

    @property
    def _family(self) -> _Family:
        return _FAMILIES[self.name]

    @property
    def formula(self) -> str:
        return self._family.formula(**self.params)

    # -- weights ------------------------------------------------------------------------

    def log_weight(self, log_p: Tensor, log_1mp: Tensor) -> Tensor:
        r"""``log w`` from ``log p`` and ``log(1 - p)``, elementwise.

        The losses call this with ``log p`` and ``log(1 - p)`` taken straight from the logits
        (both exact even when ``p`` or ``1 - p`` underflows), so weights never overflow
        before they are normalised.

        Example:
            >>> import torch
            >>> s = make_scheme("cce")
            >>> s.log_weight(torch.tensor([-1000.0]), torch.tensor([-2000.0]))
            tensor([-1999.3069])
        """
        return self._family.log_weight(log_p, log_1mp, **self.params)

    def weight(self, p: Tensor) -> Tensor:
        r"""The unnormalised weight :math:`w(p)`, elementwise, in ``p``'s dtype.

        Finite for every ``p`` in [0, 1]: a pole of the ``beta`` family (:math:`\alpha < 1` at
        0, :math:`\eta < 1` at 1) and overflow for very large :math:`\beta` return the dtype's
        largest finite number.

        Example:
            >>> import torch
            >>> make_scheme("mse").weight(torch.tensor([0.0, 1 / 3, 1.0], dtype=torch.float64))
            tensor([0.0000, 0.5926, 0.0000], dtype=torch.float64)
            >>> make_scheme("beta", alpha=0.5, eta=2.0).weight(torch.tensor([0.0, 0.25]))
            tensor([3.4028e+38, 1.5000e+00])
        """
        import torch

        p = _as_float(p)
        w = self.log_weight(p.log(), p.neg().log1p()).exp()
        return w.clamp(max=torch.finfo(p.dtype).max)

    def _log_w64(self, t: np.ndarray | float) -> np.ndarray:
        import torch

        p = torch.as_tensor(t, dtype=torch.float64)
        return self.log_weight(p.log(), p.neg().log1p()).numpy()

    # -- mode -----------------------------------------------------------------------------

    @cached_property
    def mode(self) -> float:
        closed = self._family.closed_mode(**self.params)
        if closed is not None:
            return float(closed)
        lw = self._log_w64(_MODE_GRID)
        top = np.max(lw)
        if np.all(np.isfinite(lw)) and top - np.min(lw) <= 1e-12 * max(1.0, abs(top)):
            return 0.5  # flat: every example is emphasised equally
        return self._extremum(1.0)[0]

    def _extremum(self, sign: float) -> tuple[float, float]:
        """``(p, log w(p))`` where ``sign * log w`` is largest on [0, 1] (sign +1: the largest
        weight, -1: the smallest): the first such point of a dense float64 grid, refined
        between its two grid neighbours. ``log w`` is ``±inf`` at a pole or a zero."""
        lw = sign * self._log_w64(_MODE_GRID)
        k = int(np.argmax(lw))  # the first extremum: ties go to the smaller p
        p, best = float(_MODE_GRID[k]), float(lw[k])
        if 0 < k < len(_MODE_GRID) - 1 and math.isfinite(best):
            from scipy import optimize

            res = optimize.minimize_scalar(lambda t: -sign * float(self._log_w64(t)),
                                           method="bounded",
                                           bounds=(_MODE_GRID[k - 1], _MODE_GRID[k + 1]),
                                           options={"xatol": 1e-12})
            if -res.fun >= best:
                p, best = float(res.x), float(-res.fun)
        return p, sign * best

    # -- concentration of a batch's weight ---------------------------------------------------

    @cached_property
    def log_weight_range(self) -> tuple[float, float]:
        r"""``(min, max)`` of :math:`\log w(p)` over :math:`p \in [0, 1]`: ``-inf`` where the
        weight reaches zero (CCE at :math:`p = 1`), ``+inf`` at a pole of the ``beta`` family.

        Example:
            >>> lo, hi = make_scheme("dm", lam=1.0, beta=8.0).log_weight_range
            >>> lo, round(hi, 12)  # w = 1 at both ends, exp(8 / 4) at p = 1/2
            (0.0, 2.0)
        """
        hi = max(self._extremum(1.0)[1], float(self._log_w64(self.mode)))
        return self._extremum(-1.0)[1], hi

    def worst_case_share(self, batch_size: int) -> float:
        r"""The largest share of a normalised batch's weight one example can take:
        :math:`\max w / (\max w + (B - 1) \min w)` over :math:`p \in [0, 1]`, reached when one
        example sits where :math:`w` is largest and the other :math:`B - 1` where it is
        smallest. Under derivative normalisation that share of the batch's summed gradient
        magnitude comes from one example. Log space: no overflow for any :math:`\beta`; 1 when
        the weight reaches zero or has a pole, and for :math:`B = 1`.

        Raises:
            ValueError: ``batch_size`` is not an integer >= 1.

        Example:
            >>> round(make_scheme("dm", lam=1.0, beta=8.0).worst_case_share(128), 6)
            0.054983
            >>> make_scheme("dm", lam=1.0, beta=0.0).worst_case_share(4)  # flat: 1/B
            0.25
            >>> make_scheme("cce").worst_case_share(128)  # w(1) = 0
            1.0
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer) \
                or batch_size < 1:
            raise ValueError(f"batch_size: must be an integer >= 1, got {batch_size!r}")
        lo, hi = self.log_weight_range
        gap = hi - lo  # >= 0; inf when the weight reaches zero or has a pole
        if batch_size == 1 or math.isnan(gap) or gap == math.inf:
            return 1.0
        return 1.0 / (1.0 + (int(batch_size) - 1) * math.exp(-gap))

    # -- density and its moments ------------------------------------------------------------

    @cached_property
    def _stats(self) -> tuple[float, float, float]:
        """(log of the normaliser ``∫_0^1 w``, mean and variance of the density)."""
        if self._family.closed_stats is not None:
            return self._family.closed_stats(**self.params)
        from scipy import integrate

        lw = self._log_w64(_MODE_GRID)
        shift = float(np.max(lw[np.isfinite(lw)]))  # integrate w / e^shift: no overflow
        points = [self.mode] if 0.0 < self.mode < 1.0 else None

        def moment(f: Callable[[float], float]) -> float:
            return integrate.quad(lambda t: f(t) * math.exp(float(self._log_w64(t)) - shift),
                                  0.0, 1.0, points=points, **_QUAD)[0]

        z = moment(lambda t: 1.0)
        mean = moment(lambda t: t) / z
        var = moment(lambda t: (t - mean) ** 2) / z
        return shift + math.log(z), mean, var

    def density(self, p: Tensor) -> Tensor:
        r"""The EDF as a density on [0, 1]: :math:`h(p) = w(p) / \int_0^1 w(t)\,dt` (Eq. 8).

        The integral is taken in float64 (``scipy.integrate.quad``; closed form
        :math:`B(\alpha, \eta)` for the ``beta`` family, whose poles quad would not resolve).
        Poles return the dtype's largest finite number, as :meth:`weight` does.

        Example:
            >>> import torch
            >>> make_scheme("mae").density(torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64))
            tensor([0.0000, 1.5000, 0.0000], dtype=torch.float64)
        """
        import torch

        p = _as_float(p)
        p64 = p.to(torch.float64)
        log_h = self.log_weight(p64.log(), p64.neg().log1p()) - self._stats[0]
        return log_h.exp().clamp(max=torch.finfo(p.dtype).max).to(p.dtype)

    def spread(self) -> float:
        r"""The emphasis spread: standard deviation of the density :math:`h` over [0, 1].

        Example:
            >>> round(make_scheme("beta", alpha=2.0, eta=2.0).spread() ** 2, 12)  # 1/20
            0.05
        """
        return math.sqrt(self._stats[2])

    # -- implied loss -----------------------------------------------------------------------

    def implied_loss(self, p: Tensor, anchor: float = 1.0) -> Tensor:
        r"""The loss this scheme implies: :math:`L(p) = \int_p^{a} \frac{w(t)}{2t(1-t)}\,dt`.

        With the default anchor :math:`a = 1` this is the paper's :math:`L(p) = \int_p^1`
        (so :math:`-\log p` for CCE, :math:`1-p` for MAE, :math:`(1-p)^2` for MSE,
        :math:`(1-p^q)/q` for GCE); :math:`dL/dp = -w(p) / (2p(1-p))` for any anchor. Where
        the integral diverges the value is ``inf`` (``-inf`` for ``p`` beyond the anchor):
        CCE at ``p = 0``, and every ``p < 1`` for a scheme with :math:`w(1) > 0` (``dm``,
        ``normal``, ``exponential``, ``beta`` with :math:`\eta \le 1`), whose loss is only
        defined up to a constant -- pass ``anchor=0.5`` to draw it. Computed numerically in
        float64; returned in ``p``'s dtype.

        Example:
            >>> import torch
            >>> p = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
            >>> make_scheme("cce").implied_loss(p)
            tensor([   inf, 0.6931, 0.0000], dtype=torch.float64)
            >>> make_scheme("dm").implied_loss(p)
            tensor([inf, inf, 0.], dtype=torch.float64)
            >>> make_scheme("dm", lam=0.5, beta=0.0).implied_loss(torch.tensor([0.25, 0.75]), anchor=0.5)
            tensor([ 0.5493, -0.5493])
        """
        import torch
        from scipy import integrate

        p = _as_float(p)
        flat = p.detach().to(torch.float64).reshape(-1).cpu().numpy()
        if not np.all((flat >= 0.0) & (flat <= 1.0)):
            raise ValueError("implied_loss: p must lie in [0, 1]")
        if not 0.0 <= anchor <= 1.0:
            raise ValueError(f"implied_loss: anchor {anchor!r} must lie in [0, 1]")
        k0, k1 = self._family.endpoint_orders(**self.params)

        def integrand(t: float) -> float:
            return math.exp(float(self._log_w64(t)) - math.log(2.0 * t) - math.log1p(-t))

        def segment(lo: float, hi: float) -> float:
            if (lo == 0.0 and k0 <= 0) or (hi == 1.0 and k1 <= 0):
                return math.inf
            try:
                return integrate.quad(integrand, lo, hi, **_QUAD)[0]
            except OverflowError:
                # w(t) itself exceeds float64 (e.g. beta = 1000): so does the integral.
                return math.inf

        # Integrate between consecutive sorted points, then accumulate outwards from the anchor.
        pts = np.unique(np.concatenate([flat, [anchor]]))
        seg = np.array([segment(lo, hi) for lo, hi in zip(pts[:-1], pts[1:], strict=True)])
        a = int(np.searchsorted(pts, anchor))
        value = np.zeros_like(pts)
        value[:a] = np.cumsum(seg[:a][::-1])[::-1]  # p < anchor: +∫_p^a
        value[a + 1:] = -np.cumsum(seg[a:])  # p > anchor: -∫_a^p
        out = value[np.searchsorted(pts, flat)]
        return torch.from_numpy(out).reshape(p.shape).to(p.dtype)

    def describe(self) -> str:
        """A few lines for logs and the dashboard: formula, parameters, mode and spread.

        Example:
            >>> print(make_scheme("mae").describe())
            mae: w(p) = 2 * p * (1 - p)
              mode psi = 0.5, spread = 0.2236
        """
        params = ", ".join(f"{k}={v:g}" for k, v in self.params.items())
        head = f"{self.name}: {self.formula}" + (f"  [{params}]" if params else "")
        return f"{head}\n  mode psi = {self.mode:.4g}, spread = {self.spread():.4g}"


# ---------------------------------------------------------------------------------------
# Building schemes by name. Each value is checked once: by SCHEMES.create (make_scheme) or
# by Scheme's constructor, never by both.
# ---------------------------------------------------------------------------------------


def scheme_from_params(name: str, **params: float) -> Scheme:
    """``SCHEMES``' factory: the scheme ``name`` with ``params`` that were checked already
    (every parameter present, in range: ``SCHEMES.create`` checked them, or a validated
    ``RunConfig`` did); nothing is checked again.

    >>> scheme_from_params("gce", q=0.5)
    Scheme('gce', q=0.5)
    """
    return Scheme._of_checked(name, params)


def make_scheme(name: str, **params: Any) -> Scheme:
    """Build a scheme by name, checking every parameter against its registered range.

    Raises:
        ConfigError: unknown name, unknown parameter, or a value outside its range (the
            message names the parameter and the allowed range).

    Example:
        >>> make_scheme("gce")
        Scheme('gce', q=0.7)
        >>> make_scheme("gce", q=0)
        Traceback (most recent call last):
        ...
        dm_core.registry.ConfigError: q: 0.0 is out of range; must be a float in (0, 1]
    """
    return SCHEMES.create(name, **params)


def list_schemes() -> list[str]:
    """All registered scheme names, in registration order.

    Example:
        >>> list_schemes()
        ['dm', 'normal', 'exponential', 'beta', 'cce', 'mae', 'mse', 'gce']
    """
    return SCHEMES.names()
