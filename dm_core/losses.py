r"""Losses as gradient designs: DM, the other EDF families, CCE/MAE/MSE/GCE (+ DN), baselines.

A scheme loss does not differentiate a formula; it *writes* the derivative
manipulation gradient (the paper's Eq. 7 with the authors' margin cap :math:`\epsilon`):

.. math::
    \frac{\partial L}{\partial z_i} = \frac{w_i}{\sum_j w_j}\, m_i\,
        \tfrac12 (q_i - e_{y_i}), \qquad
    m_i = \frac{1-p_i}{(1-p_i) + \epsilon/2}

where :math:`w_i = w(p_i)` is the scheme's weight (detached), :math:`q_i` the softmax of
:math:`z_i` over the classes :math:`j \ne y_i`, and :math:`e_{y_i}` the one-hot label. It is
the autograd gradient of the surrogate

.. math::
    L = \sum_i \operatorname{stopgrad}(c_i)\, \tfrac12
        \bigl(\operatorname{logsumexp}_{j \ne y_i} z_{ij} - z_{i y_i}\bigr), \qquad
    c_i = \frac{w_i}{\sum_j w_j} m_i,

with :math:`1 - p_i = \exp(\operatorname{logsumexp}_{j \ne y_i} z_{ij} -
\operatorname{logsumexp}_j z_{ij})` (exact even when tiny): nothing divides by
:math:`1 - p_i`, so the gradient stays finite and exact in float32 at any logit margin.
Equivalently :math:`c_i\,\tfrac12(q_i - e_{y_i}) = \frac{w_i}{\sum_j w_j}
\frac{p - e_{y_i}}{2(1-p_i) + \epsilon}`, the authors' code. With ``normalise=False`` the
weights are divided by the batch size instead of their sum, and with :math:`\epsilon = 0`
and CCE's weight :math:`2(1-p)` the gradient is exactly ``F.cross_entropy``'s.

**The forward value is the surrogate** :math:`L` above, not the scheme's implied loss: only
its gradient is designed (use :meth:`dm_core.schemes.Scheme.implied_loss` for the latter).

Math once in functions, thin ``nn.Module`` wrappers over them, one registry (``LOSSES``):
the scheme losses' designed gradient here (:func:`scheme_loss`, :func:`dm_loss`, wrapped by
:class:`SchemeLoss` and :class:`DMLoss`), each baseline's formula in
``dm_core.loss_formulas`` (wrapped by :class:`FocalLoss`, :class:`ELRLoss`,
:class:`CoTeachingLoss` and the others, which add only ELR's per-example state,
co-teaching's schedule over epochs and the statistics below). Every loss module keeps detached per-example statistics of its
last call in ``last`` (:class:`LossStats`) for the training loop to log.

**Declared once, checked once.** Each loss's record -- name, description, equation,
parameters with ranges and defaults, family -- is declared in ``dm_core.loss_formulas``,
which ``dm submit`` and the forms can read without torch: a baseline's on the function
holding its formula, a scheme loss's generated from its scheme family (its parameters are the
family's, declared with the weight's math in ``dm_core.schemes``). Each class names its record
with ``@_declared("name")`` and takes its defaults and ranges from it, so no default or range
is written twice. Every value is checked once where it enters: by ``make_loss``
(``LOSSES.create``), or by the class's constructor for a loss built by hand
(``DMLoss(lam=1.0)``), and never again on the way to the math.

>>> logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0]], requires_grad=True)
>>> targets = torch.tensor([0, 2])
>>> loss_fn = make_loss("dm", lam=0.5, beta=8.0)
>>> loss_fn(logits, targets).backward()
>>> logits.grad
tensor([[-0.2358,  0.1179,  0.1179],
        [ 0.0125,  0.2516, -0.2642]])
>>> loss_fn.last.weight  # the L1 norm of each row above
tensor([0.4717, 0.5283])
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dm_core import fused_cpu
from dm_core.loss_formulas import (
    LOSSES,
    MARGIN_CAP,
    bootstrap_hard,
    bootstrap_soft,
    co_teaching,
    elr,
    elr_running_average,
    focal,
    forget_rate,
    label_smoothing,
    symmetric_ce,
)
from dm_core.schemes import Scheme, make_scheme, scheme_from_params

__all__ = [
    "LOSSES",
    "BootstrapHardLoss",
    "BootstrapSoftLoss",
    "CoTeachingLoss",
    "DMLoss",
    "ELRLoss",
    "FocalLoss",
    "LabelSmoothingLoss",
    "LossStats",
    "NetworkPair",
    "SchemeLoss",
    "SymmetricCELoss",
    "build_loss",
    "concentration",
    "dm_loss",
    "list_losses",
    "make_loss",
    "scheme_loss",
]

@dataclass(frozen=True)
class LossStats:
    """Detached per-example statistics of one loss call, for logging without recomputation.

    Attributes:
        p: shape ``(N,)``, :math:`p_i`, the probability given to each example's label.
        weight: shape ``(N,)``, the weight actually applied: the L1 norm of that example's
            gradient with respect to its logits (for DN losses these sum to at most 1).

    Example (both checked against autograd and the softmax):
        >>> loss_fn = make_loss("gce")
        >>> logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 3.0]], requires_grad=True)
        >>> targets = torch.tensor([0, 1])
        >>> loss_fn(logits, targets).backward()
        >>> stats = loss_fn.last
        >>> torch.allclose(stats.p, logits.softmax(dim=1)[torch.arange(2), targets])
        True
        >>> torch.allclose(stats.weight, logits.grad.abs().sum(dim=1))
        True
        >>> stats.weight.requires_grad
        False
    """

    p: Tensor
    weight: Tensor


def concentration(weights: Tensor) -> tuple[Tensor, Tensor]:
    r"""How concentrated a batch's example weights are: ``(ess_fraction, max_share)``.

    ``ess_fraction`` is Kish's effective sample size :math:`(\sum_i w_i)^2 / \sum_i w_i^2`
    as a fraction of the batch size :math:`N` (1 when every example weighs the same,
    :math:`1/N` when one example carries everything); ``max_share`` is
    :math:`\max_i w_i / \sum_i w_i`. ``weights`` is ``(N,)`` and non-negative; both are
    NaN when every weight is 0. Returned as 0-d tensors (no device→host copy).

    >>> concentration(torch.tensor([1.0, 1.0, 2.0, 0.0]))
    (tensor(0.6667), tensor(0.5000))
    """
    w = weights.detach().float()  # float32: MPS has no float64
    # Divided by the largest first, so that squaring neither underflows nor overflows.
    u = w / w.max()
    total = u.sum()
    return total * total / (u * u).sum() / u.numel(), 1.0 / total


# ---------------------------------------------------------------------------------------
# The shared check of a loss's inputs.
# ---------------------------------------------------------------------------------------


def _check_inputs(logits: Tensor, targets: Tensor, check_range: bool = True) -> tuple[Tensor, Tensor]:
    """Validate shapes and class indices; return float32-or-wider logits and long targets.

    ``check_range=False`` leaves the class-index range to the caller: the scheme losses let a
    CPU ``gather`` (or the fused kernel) find a bad index and then call :func:`_range_error`:
    five small tensor ops fewer per call.
    """
    if not isinstance(logits, Tensor) or logits.dim() != 2 or not logits.is_floating_point():
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(f"logits: expected a floating-point tensor of shape (batch, classes), got {shape}")
    n, c = logits.shape
    if n == 0:
        raise ValueError("logits: the batch is empty")
    if c < 2:
        raise ValueError(f"logits: need at least 2 classes, got {c}")
    if not isinstance(targets, Tensor) or targets.shape != (n,):
        shape = tuple(targets.shape) if isinstance(targets, Tensor) else type(targets).__name__
        raise ValueError(f"targets: expected class indices of shape ({n},), got {shape}")
    if targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool:
        raise ValueError(f"targets: expected integer class indices, got dtype {targets.dtype}")
    if targets.dtype != torch.long or targets.device != logits.device:
        targets = targets.to(device=logits.device, dtype=torch.long)
    if check_range:
        _range_error(targets, c)
    # Mixed precision: compute in float32 (float64 stays float64, for the reference tests).
    z = logits if logits.dtype in (torch.float32, torch.float64) else logits.float()
    return z, targets


def _range_error(targets: Tensor, c: int) -> None:
    """Raise a ValueError naming the first class index outside ``[0, c)``, if there is one."""
    bad = (targets < 0) | (targets >= c)
    if bool(bad.any()):  # a CPU-GPU sync point; it replaces an unreadable device-side assert
        raise ValueError(f"targets: class index {int(targets[bad][0])} is out of range; "
                         f"must be in [0, {c - 1}] for {c} classes")


# ---------------------------------------------------------------------------------------
# Scheme losses: the functional core.
# ---------------------------------------------------------------------------------------


def _scheme_coefficients(scheme: Scheme, log_p: Tensor, log_1mp: Tensor, normalise: bool,
                         eps: float) -> Tensor:
    r""":math:`c_i = (w_i / \sum_j w_j)\, m_i` (or :math:`w_i / N \cdot m_i`), elementwise over
    any shape with the batch on dim 0. Called where autograd is off (a Function's forward)."""
    log_w = scheme.log_weight(log_p, log_1mp)
    if normalise:
        coef = torch.softmax(log_w, dim=0)  # subtracts the max exponent: no overflow
    else:
        coef = torch.exp(log_w - math.log(log_w.shape[0])).clamp_(max=torch.finfo(log_w.dtype).max)
    coef = coef.nan_to_num_(nan=0.0)
    if eps > 0:
        # m_i = (1 - p_i) / ((1 - p_i) + eps/2) = sigmoid(log(1 - p_i) - log(eps/2))
        coef = coef.mul_(torch.sigmoid(log_1mp - math.log(eps / 2.0)))
    return coef


def _row_parts(z: Tensor, t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    r"""Pass 1 over the logits, per row ``i`` with label :math:`y = t_i` (``t`` is ``(N, 1)``):
    :math:`e_{ij} = \exp(z_{ij} - \max_{k \ne y} z_{ik})` (0 at the label), its row sum
    :math:`s_i`, :math:`d_i = \operatorname{lse}_{j \ne y} z_{ij} - z_{iy} = \log\frac{1-p_i}{p_i}`,
    :math:`\log p_i = \log\sigma(-d_i)` and :math:`\log(1-p_i) = \log\sigma(d_i)`, the last
    four as ``(N, 1)`` columns. ``fused_cpu.cpp`` computes the same in one call.

    Shifting by the largest logit other than the label's puts every :math:`e_{ij}`,
    :math:`j \ne y`, in (0, 1] with a sum of at least 1, however confident the model is, so
    :math:`\log p` and :math:`\log(1-p)` are exact at any margin.
    """
    z_y = z.gather(1, t)  # on the CPU this raises for an out-of-range class index
    others = z.scatter(1, t, -math.inf)
    m_other = others.amax(dim=1, keepdim=True)
    e = others.sub_(m_other).exp_()  # exactly 0 at the label
    s_other = e.sum(dim=1, keepdim=True)
    d = s_other.log().add_(m_other).sub_(z_y)
    # p = sigmoid(-d) and 1 - p = sigmoid(d): log-sigmoid gives both exactly at any d (softplus
    # turns linear past 20, an error of e^-20 that float64 would see).
    return e, s_other, d, F.logsigmoid(d.neg()), F.logsigmoid(d)


def _assemble(e: Tensor, t: Tensor, s_other: Tensor, d: Tensor, coef: Tensor) -> Tensor:
    r"""Pass 2: ``e`` becomes the logit gradient :math:`\tfrac{c_i}{2} (q_i - e_{y_i})`, in place
    (:math:`q_i = e_i / s_i`); returns the surrogate loss :math:`\sum_i \tfrac{c_i}{2} d_i`."""
    half = coef * 0.5
    e.mul_(half / s_other).scatter_(1, t, half.neg())
    return half.mul_(d).sum()


class _DesignedGradient(torch.autograd.Function):
    r"""The surrogate loss and its logit gradient in one pass over the ``(N, C)`` logits.

    Autograd through ``log p`` and ``log(1 - p)`` taken as two logsumexps (as the formula
    losses take them) costs two logsumexps forward and two softmaxes backward. Here one ``exp`` of the shifted logits (:func:`_row_parts`) gives both
    :math:`\operatorname{lse}_{j \ne y_i} z_{ij}` and :math:`q_i`, and the gradient is formed
    in place (:func:`_assemble`) and saved for ``backward`` -- the same cost as cross-entropy
    on large batches. ``fused`` is :func:`dm_core.fused_cpu.kernel`'s module, which does each
    pass in one call (small CPU batches), or None for the tensor ops.
    """

    @staticmethod
    def forward(ctx, z: Tensor, targets: Tensor, scheme: Scheme, normalise: bool,
                eps: float, fused: Any) -> tuple[Tensor, Tensor, Tensor]:
        if fused is not None:  # the same two passes, each one compiled call
            e, rows = fused.row_parts(z, targets)  # rows: s, d, log p, log(1 - p), p
            loss, coef = fused.assemble(e, targets, rows, scheme.log_weight(rows[2], rows[3]),
                                        normalise, eps)
            p = rows[4]
        else:
            t = targets[:, None]
            e, s_other, d, log_p, log_1mp = _row_parts(z, t)
            coef = _scheme_coefficients(scheme, log_p, log_1mp, normalise, eps)
            loss = _assemble(e, t, s_other, d, coef)
            p, coef = log_p.exp_().squeeze(1), coef.squeeze(1)
        ctx.save_for_backward(e)  # now the gradient
        ctx.consumed = False
        ctx.mark_non_differentiable(p, coef)
        return loss, p, coef

    @staticmethod
    def backward(ctx, grad_loss: Tensor, *_unused: Tensor):
        # The saved gradient is scaled in place (one pass fewer than a copy), so it serves
        # exactly one backward call.
        if ctx.consumed:
            raise RuntimeError("scheme losses support one backward pass per forward "
                               "(retain_graph=True with a second backward is not supported)")
        ctx.consumed = True
        (grad,) = ctx.saved_tensors
        # loss.backward() seeds 1: skip a pass over the gradient (reading a CPU scalar is free;
        # on a GPU it would be a sync, so there the multiply always runs).
        if grad_loss.device.type != "cpu" or grad_loss.item() != 1.0:
            grad.mul_(grad_loss)
        return grad, None, None, None, None, None


def _scheme_loss(logits: Tensor, targets: Tensor, scheme: Scheme, normalise: bool,
                 eps: float, fused: bool = True) -> tuple[Tensor, LossStats]:
    on_cpu = logits.device.type == "cpu"
    z, targets = _check_inputs(logits, targets, check_range=not on_cpu)
    kernel = fused_cpu.kernel() if fused and on_cpu else None
    try:
        loss, p, coef = _DesignedGradient.apply(z, targets, scheme, normalise, eps, kernel)
    except RuntimeError:
        if on_cpu:
            _range_error(targets, z.shape[1])  # the clear message, if that was the cause
        raise
    return loss, LossStats(p=p, weight=coef)


def _resolve_scheme(scheme: Scheme | str) -> Scheme:
    """A scheme name becomes its scheme at default parameters; a ``Scheme`` was checked when
    it was built."""
    if isinstance(scheme, str):
        return make_scheme(scheme)
    if not isinstance(scheme, Scheme):
        raise TypeError(f"scheme: expected a Scheme or a scheme name, got {type(scheme).__name__}")
    return scheme


def _margin_cap(eps: float | None) -> float:
    """``eps`` checked against the registered margin cap (``None``: its default)."""
    return float(MARGIN_CAP.check(MARGIN_CAP.default if eps is None else eps, ""))


def scheme_loss(logits: Tensor, targets: Tensor, scheme: Scheme | str, normalise: bool = True,
                eps: float | None = None) -> Tensor:
    r"""The loss whose logit gradient is the scheme's designed gradient (Eq. 7, with DN of Eq. 8).

    .. math::
        \frac{\partial L}{\partial z_i} = \frac{w(p_i)}{\sum_j w(p_j)}\,
            \frac{1-p_i}{(1-p_i)+\epsilon/2}\, \tfrac12 (q_i - e_{y_i})

    The returned value is the surrogate :math:`\sum_i c_i \cdot \tfrac12
    (\operatorname{logsumexp}_{j \ne y_i} z_{ij} - z_{i y_i})`, not the implied loss.

    Args:
        logits: ``(N, C)`` logits :math:`z`; half precision is computed in float32.
        targets: ``(N,)`` annotated class indices :math:`y` in ``[0, C)``.
        scheme: a :class:`~dm_core.schemes.Scheme` or a scheme name (default parameters).
        normalise: derivative normalisation (divide the weights by their batch sum); if
            ``False`` divide by the batch size ``N`` instead.
        eps: the margin cap :math:`\epsilon \ge 0`; 0 gives :math:`m_i = 1`; ``None`` the
            registered default (1e-6).

    Raises:
        ConfigError: ``eps`` out of range.
        ValueError: malformed shapes or a class index outside ``[0, C)``.

    Example:
        >>> logits = torch.tensor([[1.0, 0.0], [0.0, 2.0]], requires_grad=True)
        >>> targets = torch.tensor([0, 0])
        >>> scheme_loss(logits, targets, "cce", normalise=False, eps=0.0).backward()
        >>> logits.grad  # equals F.cross_entropy's gradient
        tensor([[-0.1345,  0.1345],
                [-0.4404,  0.4404]])
    """
    return _scheme_loss(logits, targets, _resolve_scheme(scheme), normalise, _margin_cap(eps))[0]


def dm_loss(logits: Tensor, targets: Tensor, lam: float | None = None, beta: float | None = None,
            eps: float | None = None) -> Tensor:
    r"""The DM loss: :func:`scheme_loss` with :math:`w(p) = \exp(\beta p^\lambda (1-p))` (Eq. 12) and DN.

    Functional twin of :class:`DMLoss`; the returned value is the surrogate (see module doc).

    Args:
        logits: ``(N, C)`` logits.
        targets: ``(N,)`` class indices.
        lam: emphasis mode parameter :math:`\lambda \ge 0` (mode :math:`\lambda/(\lambda+1)`).
        beta: emphasis variance :math:`\beta` (any real).
        eps: margin cap :math:`\epsilon \ge 0`.

    A parameter left ``None`` takes its registered default (``LOSSES.get("dm").defaults()``).

    Example:
        >>> logits = torch.tensor([[0.0, 1.0, 0.0], [3.0, 0.0, 0.0]], requires_grad=True)
        >>> dm_loss(logits, torch.tensor([1, 2]), lam=0.0, beta=2.0).backward()
        >>> logits.grad.abs().sum(dim=1)  # w_i / sum_j w_j (times m_i ~ 1)
        tensor([0.2570, 0.7430])
    """
    return scheme_loss(logits, targets, make_scheme("dm", lam=lam, beta=beta), True, eps)


# ---------------------------------------------------------------------------------------
# Modules: each constructor checks its arguments once, through the registry's records.
# ---------------------------------------------------------------------------------------


def _checks(check: Callable[..., dict[str, Any]], signature: inspect.Signature):
    """Class decorator: the class's own ``__init__`` takes checked values, and constructing the
    class runs ``check`` on the arguments first (``signature`` is the one callers see).

    The unchecked ``__init__`` stays reachable as ``cls._init_checked``, for a caller that
    holds values checked already (``build_loss``, a subclass): each value is checked once.
    """

    def decorate(cls: type[nn.Module]) -> type[nn.Module]:
        init_checked = cls.__init__

        @functools.wraps(init_checked)
        def __init__(self: nn.Module, *args: Any, **kwargs: Any) -> None:
            init_checked(self, **check(*args, **kwargs))

        __init__.__signature__ = signature.replace(parameters=[  # type: ignore[attr-defined]
            inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
            *signature.parameters.values()])
        cls.__init__ = __init__  # type: ignore[method-assign]
        cls._init_checked = init_checked  # type: ignore[attr-defined]
        return cls

    return decorate


# Loss name -> the class built for it (filled by @_declared); the other names are scheme losses.
_DECLARED_CLASSES: dict[str, type[nn.Module]] = {}


def _declared(name: str):
    """Class decorator: the loss module of the ``LOSSES`` entry ``name``.

    Constructing the class checks its arguments against the entry (defaults filled in, an
    unknown name or a value out of range a ``ConfigError``, as ``make_loss`` does), and its
    signature shows the entry's defaults. The class's ``__init__`` lists the entry's
    parameters in the entry's order (checked here, at import) and takes checked values.
    """
    entry = LOSSES.get(name)
    names = [p.name for p in entry.params]

    def check(*args: Any, **params: Any) -> dict[str, Any]:
        if len(args) > len(names):
            raise TypeError(f"{name}: takes at most {len(names)} positional arguments "
                            f"({', '.join(names)}), got {len(args)}")
        for key, value in zip(names, args, strict=False):
            if key in params:
                raise TypeError(f"{name}: got two values for {key!r}")
            params[key] = value
        return LOSSES.validate_params(name, params)

    signature = inspect.Signature([inspect.Parameter(p.name, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                                     default=p.default) for p in entry.params])

    def decorate(cls: type[nn.Module]) -> type[nn.Module]:
        own = list(inspect.signature(cls.__init__).parameters)[1:]
        if own != names:
            raise TypeError(f"{cls.__name__}.__init__ takes {own}; its LOSSES entry {name!r} "
                            f"declares {names}")
        _DECLARED_CLASSES[name] = cls
        return _checks(check, signature)(cls)

    return decorate


def _scheme_loss_arguments(scheme: Scheme | str, normalise: bool = True,
                           eps: float | None = None) -> dict[str, Any]:
    return {"scheme": _resolve_scheme(scheme), "normalise": bool(normalise), "eps": _margin_cap(eps)}


@_checks(_scheme_loss_arguments, inspect.signature(_scheme_loss_arguments))
class SchemeLoss(nn.Module):
    r"""A scheme's designed gradient as a loss module (Eq. 7; DN of Eq. 8 when ``normalise``).

    Thin wrapper over :func:`scheme_loss`; ``forward`` returns the surrogate scalar and
    stores :class:`LossStats` (``p_i`` and the applied weight :math:`c_i`, the L1 norm of
    row ``i`` of the logit gradient) in ``last``.

    Args:
        scheme: a :class:`~dm_core.schemes.Scheme` or a scheme name.
        normalise: divide weights by their batch sum (DN) instead of the batch size.
        eps: margin cap :math:`\epsilon \ge 0` (``ConfigError`` otherwise); ``None``: the
            registered default (1e-6).

    Example:
        >>> from dm_core.schemes import make_scheme
        >>> loss_fn = SchemeLoss(make_scheme("mae"), normalise=False, eps=0.0)
        >>> logits = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
        >>> loss_fn(logits, torch.tensor([0, 1]))
        tensor(0.1050)
        >>> loss_fn.last
        LossStats(p=tensor([0.5000, 0.1192]), weight=tensor([0.2500, 0.1050]))
    """

    def __init__(self, scheme: Scheme, normalise: bool, eps: float) -> None:
        super().__init__()
        self.scheme, self.normalise, self.eps = scheme, normalise, eps
        self.last: LossStats | None = None

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        loss, self.last = _scheme_loss(logits, targets, self.scheme, self.normalise, self.eps)
        return loss

    def extra_repr(self) -> str:
        return f"scheme={self.scheme!r}, normalise={self.normalise}, eps={self.eps:g}"


@_declared("dm")
class DMLoss(SchemeLoss):
    r"""Derivative manipulation: :math:`w(p) = \exp(\beta p^\lambda (1-p))` (Eq. 12) with DN.

    Args (defaults: the ``dm`` entry's, 0.5, 8 and 1e-6):
        lam: emphasis mode parameter :math:`\lambda \ge 0`.
        beta: emphasis variance :math:`\beta`.
        eps: margin cap :math:`\epsilon \ge 0`.

    Example:
        >>> loss_fn = DMLoss(lam=1.0, beta=12.0)
        >>> loss_fn
        DMLoss(scheme=Scheme('dm', lam=1.0, beta=12.0), normalise=True, eps=1e-06)
        >>> _ = loss_fn(torch.tensor([[4.0, 0.0], [0.0, 0.0]]), torch.tensor([0, 1]))
        >>> loss_fn.last.weight  # the p = 0.5 example gets almost all of the emphasis
        tensor([0.0580, 0.9420])
    """

    def __init__(self, lam: float, beta: float, eps: float) -> None:
        SchemeLoss._init_checked(self, scheme_from_params("dm", lam=lam, beta=beta),
                                 normalise=True, eps=eps)

    @property
    def lam(self) -> float:
        return self.scheme.params["lam"]

    @property
    def beta(self) -> float:
        return self.scheme.params["beta"]


class _FormulaLoss(nn.Module):
    """A baseline: the mean over the batch of a per-example formula loss.

    ``last.weight`` is the exact L1 norm of each example's logit gradient, found by
    differentiating the per-example loss at a detached copy of the logits (O(N*C), no
    model pass, so it costs about as much as the loss itself).
    """

    def __init__(self) -> None:
        super().__init__()
        self.last: LossStats | None = None

    def per_example(self, z: Tensor, targets: Tensor) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        z, targets = _check_inputs(logits, targets)
        loss = self.per_example(z, targets).mean()
        # Works under no_grad and inference_mode too (evaluation): a normal-tensor copy.
        with torch.inference_mode(False), torch.enable_grad():
            z_copy = z.detach().clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.per_example(z_copy, targets).mean(), z_copy)
        p = torch.softmax(z.detach(), dim=1).gather(1, targets[:, None]).squeeze(1)
        self.last = LossStats(p=p, weight=grad.abs().sum(dim=1))
        return loss


@_declared("label-smoothing")
class LabelSmoothingLoss(_FormulaLoss):
    r"""Cross-entropy with label smoothing: :func:`~dm_core.loss_formulas.label_smoothing`,
    the mean over the batch.

    Args:
        epsilon: smoothing :math:`\varepsilon \in [0, 1)`.

    Example:
        >>> loss_fn = LabelSmoothingLoss(epsilon=0.1)
        >>> loss_fn(torch.tensor([[2.0, 0.0, 0.0]]), torch.tensor([0]))
        tensor(0.3729)
    """

    def __init__(self, epsilon: float) -> None:
        super().__init__()
        self.epsilon = epsilon

    def per_example(self, z: Tensor, targets: Tensor) -> Tensor:
        return label_smoothing(z, targets, self.epsilon)


@_declared("boot-soft")
class BootstrapSoftLoss(_FormulaLoss):
    r"""Soft bootstrapping (Reed et al. 2015): :func:`~dm_core.loss_formulas.bootstrap_soft`,
    the mean over the batch.

    Args:
        beta: weight of the annotated label, in [0, 1].

    Example:
        >>> BootstrapSoftLoss(beta=0.95)(torch.tensor([[2.0, 0.0]]), torch.tensor([1]))
        tensor(2.0388)
    """

    def __init__(self, beta: float) -> None:
        super().__init__()
        self.beta = beta

    def per_example(self, z: Tensor, targets: Tensor) -> Tensor:
        return bootstrap_soft(z, targets, self.beta)


@_declared("boot-hard")
class BootstrapHardLoss(_FormulaLoss):
    r"""Hard bootstrapping (Reed et al. 2015): :func:`~dm_core.loss_formulas.bootstrap_hard`,
    the mean over the batch.

    Args:
        beta: weight of the annotated label, in [0, 1].

    Example:
        >>> BootstrapHardLoss(beta=0.8)(torch.tensor([[2.0, 0.0]]), torch.tensor([1]))
        tensor(1.7269)
    """

    def __init__(self, beta: float) -> None:
        super().__init__()
        self.beta = beta

    def per_example(self, z: Tensor, targets: Tensor) -> Tensor:
        return bootstrap_hard(z, targets, self.beta)


@_declared("sce")
class SymmetricCELoss(_FormulaLoss):
    r"""Symmetric cross-entropy (Wang et al. 2019): :func:`~dm_core.loss_formulas.symmetric_ce`,
    the mean over the batch.

    Args:
        alpha: weight of CE (>= 0).
        beta: weight of the reverse CE (>= 0).
        A: the value standing in for :math:`\log 0` (< 0; the paper uses -4).

    Example:
        >>> SymmetricCELoss(alpha=0.1, beta=1.0, A=-4.0)(torch.tensor([[2.0, 0.0]]), torch.tensor([0]))
        tensor(0.4895)
    """

    def __init__(self, alpha: float, beta: float, A: float) -> None:  # noqa: N803
        super().__init__()
        self.alpha, self.beta, self.A = alpha, beta, A

    def per_example(self, z: Tensor, targets: Tensor) -> Tensor:
        return symmetric_ce(z, targets, self.alpha, self.beta, self.A)


@_declared("focal")
class FocalLoss(_FormulaLoss):
    r"""Focal loss (Lin et al. 2017): :func:`~dm_core.loss_formulas.focal`, the mean over the batch.

    Args:
        gamma: focusing parameter :math:`\gamma \ge 0` (0 gives CCE).

    Example:
        >>> FocalLoss(gamma=2.0)(torch.tensor([[2.0, 0.0]]), torch.tensor([0]))
        tensor(0.0018)
    """

    def __init__(self, gamma: float) -> None:
        super().__init__()
        self.gamma = gamma

    def per_example(self, z: Tensor, targets: Tensor) -> Tensor:
        return focal(z, targets, self.gamma)


@_declared("elr")
class ELRLoss(_FormulaLoss):
    r"""Early-learning regularisation (Liu et al. 2020): :func:`~dm_core.loss_formulas.elr`,
    the mean over the batch, with each example's running average of predictions :math:`t_i`.

    :math:`t_i` moves by :func:`~dm_core.loss_formulas.elr_running_average` before the loss
    is taken (the authors' order) on training steps (autograd on; a call under ``no_grad``
    reads :math:`t` without moving it); :math:`t_i = 0` before the example's first batch.

    It keeps one row of :math:`t` per training example, so it needs each example's index in the
    training set: :meth:`bind_examples` sizes the table, and ``forward`` takes ``index``. The
    table is a buffer, saved with the module's ``state_dict`` (and so with a checkpoint).

    Args:
        lam: :math:`\lambda \ge 0`, the regulariser's weight (0 gives CCE).
        momentum: :math:`\beta \in [0, 1)`, the running average's momentum.

    Example:
        >>> loss_fn = ELRLoss(lam=3.0, momentum=0.7)
        >>> loss_fn.bind_examples(num_examples=4, num_classes=2)
        >>> logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
        >>> round(float(loss_fn(logits, torch.tensor([0, 1]), index=torch.tensor([3, 0]))), 4)
        -0.4871
        >>> loss_fn.target[1].tolist()  # example 1 was not in the batch
        [0.0, 0.0]
    """

    def __init__(self, lam: float, momentum: float) -> None:
        super().__init__()
        self.lam, self.momentum = lam, momentum
        self.register_buffer("target", torch.zeros(0, 0))

    def bind_examples(self, num_examples: int, num_classes: int) -> None:
        """Size the table of running predictions: one row per training example (zeros)."""
        self.target = torch.zeros(num_examples, num_classes, device=self.target.device)

    def forward(self, logits: Tensor, targets: Tensor, index: Tensor | None = None) -> Tensor:
        z, targets = _check_inputs(logits, targets)
        if index is None or self.target.numel() == 0:
            raise ValueError("elr: needs each example's index in the training set (index=...) "
                             "and bind_examples(num_examples, num_classes) first")
        if self.target.shape[1] != z.shape[1]:
            raise ValueError(f"elr: bound to {self.target.shape[1]} classes, got logits with {z.shape[1]}")
        index = index.to(self.target.device)
        # The running average moves on training steps only: a call under no_grad (evaluation)
        # reads it without changing it.
        if torch.is_grad_enabled() and not torch.is_inference_mode_enabled():
            with torch.no_grad():
                self.target[index] = elr_running_average(self.target[index], z.detach(), self.momentum)
        self._batch_target = self.target[index].to(z)
        return super().forward(z, targets)

    def per_example(self, z: Tensor, targets: Tensor) -> Tensor:
        target = self._batch_target
        if target.is_inference():  # read under inference_mode; the stats' gradient copy needs a normal one
            target = target.clone()
        return elr(z, targets, target, self.lam)


class NetworkPair(nn.Module):
    """Two networks trained side by side (co-teaching). In training mode the forward pass
    returns both networks' logits stacked, shape ``(2, N, C)``; in evaluation mode the first
    network's alone, so evaluation, prediction and checkpoints treat the pair as one model."""

    def __init__(self, first: nn.Module, second: nn.Module) -> None:
        super().__init__()
        self.first, self.second = first, second

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return self.first(x)
        return torch.stack([self.first(x), self.second(x)])


@_declared("co-teaching")
class CoTeachingLoss(nn.Module):
    r"""Co-teaching (Han et al. 2018): :func:`~dm_core.loss_formulas.co_teaching` with the
    share left out at the current epoch, :func:`~dm_core.loss_formulas.forget_rate`.

    Takes the pair's stacked logits ``(2, N, C)`` (see :class:`NetworkPair`) and the epoch
    (``epoch=``, fractional: iterations × batch / training examples). ``selected`` holds the
    examples each network kept; ``last`` describes the first network: :math:`p_i`, and the
    weight it gave each example (the L1 norm of that example's logit gradient, 0 for an
    example left out).

    Args:
        forget_rate: :math:`\tau \in [0, 1)`, the share finally left out (set it to the noise
            rate, as the paper does, or tune it).
        gradual_epochs: :math:`T_k`, the epochs over which the share rises to :math:`\tau`.

    Example:
        >>> loss_fn = CoTeachingLoss(forget_rate=0.5, gradual_epochs=0)
        >>> pair = torch.tensor([[[3.0, 0.0], [0.0, 3.0]], [[0.0, 3.0], [3.0, 0.0]]])
        >>> round(float(loss_fn(pair, torch.tensor([0, 0]), epoch=1.0)), 4)  # each learns its peer's pick
        6.0972
        >>> loss_fn.selected  # kept by the first network, kept by the second
        (tensor([ True, False]), tensor([False,  True]))
    """

    def __init__(self, forget_rate: float, gradual_epochs: float) -> None:
        super().__init__()
        self.tau, self.gradual_epochs = forget_rate, gradual_epochs
        self.last: LossStats | None = None
        self.selected: tuple[Tensor, Tensor] | None = None

    def forward(self, logits: Tensor, targets: Tensor, epoch: float = 0.0) -> Tensor:
        if logits.dim() != 3 or logits.shape[0] != 2:
            raise ValueError("co-teaching: expected the pair's logits of shape (2, batch, classes) "
                             f"(NetworkPair in training mode), got {tuple(logits.shape)}")
        z1, targets = _check_inputs(logits[0], targets)
        z2, _ = _check_inputs(logits[1], targets)
        loss, kept1, kept2 = co_teaching(z1, z2, targets, forget_rate(epoch, self.tau, self.gradual_epochs))
        self.selected = (kept1, kept2)
        with torch.no_grad():
            p = torch.softmax(z1.detach(), dim=1)
            onehot = F.one_hot(targets, p.shape[1]).to(p)
            # d CE_i / d z_i = p_i - e_y, over the examples its peer kept (mean over them)
            weight = (p - onehot).abs().sum(dim=1) * kept2.to(p) / int(kept2.sum())
        self.last = LossStats(p=p.gather(1, targets[:, None]).squeeze(1), weight=weight)
        return loss

# ---------------------------------------------------------------------------------------
# Building losses by name.
# ---------------------------------------------------------------------------------------


def build_loss(name: str, **checked: Any) -> nn.Module:
    """``LOSSES``' factory for every loss: ``name`` built from parameters ``LOSSES.create``
    has checked (every one present, in range), without checking them again. A declared class
    (``@_declared``) is built through its unchecked ``__init__``; any other name is a scheme
    loss, ``SchemeLoss`` of its entry's scheme with or without derivative normalisation.

    >>> build_loss("gce-dn", q=0.5, eps=0.0)
    SchemeLoss(scheme=Scheme('gce', q=0.5), normalise=True, eps=0)
    """
    cls = _DECLARED_CLASSES.get(name)
    if cls is None:
        entry = LOSSES.get(name)
        cls, eps = SchemeLoss, checked.pop("eps", 0.0)
        checked = {"scheme": scheme_from_params(entry.extra["scheme"], **checked),
                   "normalise": entry.extra["normalise"], "eps": eps}
    loss = cls.__new__(cls)
    cls._init_checked(loss, **checked)
    return loss


def make_loss(name: str, **params: Any) -> nn.Module:
    """Build a loss module by name, checking parameters against their registered ranges.

    ``None`` values are dropped, so front-end defaults never override the registry's.

    Raises:
        ConfigError: unknown name, unknown parameter, or a value out of range.

    Example:
        >>> make_loss("gce-dn", q=0.5)
        SchemeLoss(scheme=Scheme('gce', q=0.5), normalise=True, eps=1e-06)
        >>> make_loss("dm", lam=-1)
        Traceback (most recent call last):
        ...
        dm_core.registry.ConfigError: lam: -1.0 is out of range; must be a float in [0, inf)
    """
    return LOSSES.create(name, **params)


def list_losses() -> list[str]:
    """All registered loss names, in registration order.

    Example:
        >>> list_losses()[:4]
        ['cce', 'mae', 'mse', 'gce']
    """
    return LOSSES.names()
