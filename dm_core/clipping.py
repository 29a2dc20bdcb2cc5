r"""Gradient-norm clipping: at a fixed norm, and relative to the gradient's own running norm.

With :math:`g` the gradient's global L2 norm before clipping, a step is scaled by

.. math::
    s_t = \min\Bigl(1, \frac{\tau_t}{g_t + 10^{-6}}\Bigr), \qquad
    \tau_t = \min(c,\; \kappa\, r_{t-1}) \quad (t > T_0), \qquad \tau_t = c \quad (t \le T_0),

where :math:`c` is the fixed threshold (``clip_grad_norm``; absent when off),
:math:`\kappa r_{t-1}` the relative one (``clip_relative``), which binds only after the first
:math:`T_0` steps (``clip_relative_after``, the ``after`` of :func:`threshold`), and
:math:`r` is a running mean of the norms *after* clipping,

.. math::
    r_1 = g_1, \qquad r_t = \delta\, r_{t-1} + (1 - \delta) \min(g_t, \tau_t),
    \qquad \delta = 0.99 .

Why relative: DM gives every batch one unit of gradient whatever it has fitted, so its norm
stays several times cross-entropy's for the whole run, and a fixed threshold low enough to stop
its rare blow-ups binds on most of its ordinary steps (a smaller learning rate for DM alone,
which in long runs lets it memorise the corrupted labels). A threshold relative to the method's
own typical norm leaves its ordinary steps alone and cuts a spike. Tracking the clipped norm,
not the raw one, keeps a spike out of the reference; a norm that keeps rising is still followed,
by at most :math:`(1-\delta)(\kappa-1)` of itself per step (1 % at κ = 2: a doubling in about
70 steps), far slower than a blow-up, which multiplies the norm within a few steps.

Why it waits (:math:`T_0` = 100 by default): while a network leaves its initialisation DM's
norm rises about tenfold in its first hundred steps, so a relative clip from the first step
binds on most of them and acts as a warm-up of DM's step size, which changes what DM ends at
(measured: benchmarks/bench_stability.py, docs/benchmarks.md). After those steps the ratio of
a healthy DM run's norm to its running mean stayed below 3.4, while the blow-ups of large β
reached 8 to 30: :math:`\kappa = 4` after 100 steps leaves DM's ordinary steps alone (it never
bound on 142 of 144 noisy DM runs at its defaults) and still cuts a late spike. It does not
hold a run that blows up within its first hundred steps (DM at λ = ½, β = 16 at lr 0.1): a
relative clip from the first step (``clip_relative_after = 0``, κ = 2) does, at that cost.

>>> import torch
>>> grads = [torch.tensor([3.0, 4.0])]                  # norm 5
>>> threshold(absolute=None, relative=2.0, reference=torch.tensor(1.0))
tensor(2.)
>>> threshold(absolute=3.0, relative=2.0, reference=initial_reference())  # first step
tensor(3.)
>>> threshold(absolute=None, relative=2.0, reference=torch.tensor(1.0), step=50, after=100) is None
True
>>> scale = clip_(grads, torch.tensor(5.0), torch.tensor(2.0))
>>> grads[0], round(float(scale), 4)
(tensor([1.2000, 1.6000]), 0.4)
>>> updated_reference(torch.tensor(1.0), torch.tensor(5.0), torch.tensor(2.0))
tensor(1.0100)
"""

from __future__ import annotations

import torch
from torch import Tensor

REFERENCE_DECAY = 0.99
_TINY = 1e-6  # as torch.nn.utils.clip_grad_norm_: no division by a zero norm


def initial_reference(device: torch.device | str = "cpu") -> Tensor:
    """:math:`r_0`: no reference yet (infinite), so the relative threshold never clips the
    first step."""
    return torch.full((), float("inf"), device=device)


def threshold(absolute: float | None, relative: float | None, reference: Tensor,
              step: int = 1, after: int = 0) -> Tensor | None:
    """The clipping threshold :math:`\\tau_t` of ``step`` (1-based, within a training phase):
    infinite while there is no reference yet, and without the relative limit while ``step``
    is at most ``after`` (:math:`T_0`); None when no kind of clipping is in force."""
    if step <= after:
        relative = None
    if relative is None and absolute is None:
        return None
    tau = reference * relative if relative is not None else torch.full_like(reference, float("inf"))
    return tau.clamp(max=absolute) if absolute is not None else tau


def clip_(grads: list[Tensor], norm: Tensor, tau: Tensor | None) -> Tensor:
    """Scale ``grads`` in place so their global norm ``norm`` is at most ``tau``; return the
    factor applied :math:`s_t` (1 when not clipped). 0-d tensors throughout: no device sync."""
    if tau is None:
        return torch.ones((), device=norm.device)
    scale = (tau.to(norm) / (norm + _TINY)).clamp(max=1.0)
    if grads:
        torch._foreach_mul_(grads, scale)
    return scale


def updated_reference(reference: Tensor, norm: Tensor, tau: Tensor | None) -> Tensor:
    """:math:`r_t` from :math:`r_{t-1}`, this step's norm and threshold. A norm that is not
    finite (an AMP overflow, whose step the scaler skips) leaves the reference as it was."""
    raw = norm.detach().float()
    kept = raw if tau is None else torch.minimum(raw, tau.float())
    blended = torch.where(torch.isinf(reference), kept,
                          reference * REFERENCE_DECAY + kept * (1.0 - REFERENCE_DECAY))
    return torch.where(torch.isfinite(raw), blended, reference)
