r"""Every loss's record, each declared once beside its mathematics, readable without torch.

``LOSSES`` is the registry of losses that config validation (``dm_core.config``), ``dm
submit``, the dashboard's forms and the tests read: each entry's name, description,
equation, parameters with their ranges and defaults, and the fields front ends read (its
``family``, ``scheme``, ``normalise``, ``clip_grad_norm``, ``two_networks``,
``per_example_state``). Its factory is ``dm_core.losses.build_loss``, imported on the first
``create``.

Two kinds of loss, each declared once:

- **Scheme losses** (``cce``, ``mae``, ``mse``, ``gce``, their ``-dn`` twins, ``dm`` and
  ``dm-*``) write the designed gradient of Eq. 7 for a scheme's weight ``w(p)``. Their math
  is that weight, declared with its parameters on its family in ``dm_core.schemes``, and the
  gradient itself, which ``dm_core.losses`` writes once for all of them; so their records are
  generated here from the scheme table: their parameters are their family's, plus the margin
  cap under derivative normalisation.
- **The other losses** (the baselines and co-teaching) are formulas: each is a function of
  the logits declared by :func:`loss`, which enters its record in ``LOSSES`` and the function
  in :data:`FORMULAS`. The modules of ``dm_core.losses`` (per-example state, the two networks,
  the gradient statistics) call these functions, and hold no math of their own.

**Readable without torch.** ``dm submit`` and the forms read ``LOSSES`` without importing
torch (about 7 s and 700 MB), so, as in ``dm_core.schemes``, this module imports no torch when
it loads: the formulas use tensor methods (``z.log_softmax(dim=1)``, never
``F.log_softmax(z, dim=1)``) and import ``torch`` or ``torch.nn.functional`` inside the
function where they need more. A formula takes checked inputs (``dm_core.losses`` checks the
shapes and class indices) and its parameters, and returns one loss per example.

>>> LOSSES.names()[:4], LOSSES.get("focal").defaults()
(['cce', 'mae', 'mse', 'gce'], {'gamma': 2.0})
>>> import torch
>>> focal(torch.tensor([[2.0, 0.0], [0.0, 0.0]]), torch.tensor([0, 1]), gamma=2.0)
tensor([0.0018, 0.1733])
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from dm_core.registry import Param, Registry, lazy
from dm_core.schemes import SCHEMES

if TYPE_CHECKING:
    from torch import Tensor

__all__ = [
    "FORMULAS",
    "LOSSES",
    "MARGIN_CAP",
    "bootstrap_hard",
    "bootstrap_soft",
    "co_teaching",
    "elr",
    "elr_running_average",
    "focal",
    "forget_rate",
    "label_smoothing",
    "loss",
    "symmetric_ce",
]

LOSSES = Registry("loss")


def _register(name: str, **record: Any) -> None:
    """Enter ``name``'s record in ``LOSSES``: ``dm_core.losses.build_loss`` builds it
    (imported on the first ``create``) from the parameters ``create`` has checked."""
    LOSSES.register(name, **record)(lazy("dm_core.losses:build_loss", name))


# ---------------------------------------------------------------------------------------
# Scheme losses: generated from the scheme families (dm_core.schemes).
# ---------------------------------------------------------------------------------------

# The margin cap eps. The authors' Caffe layer uses 1e-6 and their PyTorch code (ProSelfLC)
# 1e-8; the default here is the Caffe layer's. m_i = (1-p_i)/((1-p_i) + eps/2) reaches 1/2
# where 1 - p_i = eps/2, i.e. at the logit margin z_y - logsumexp_{j != y} z_j =
# log((1 - eps/2)/(eps/2)) (since 1 - p_i = 1/(1 + exp(margin))): 14.51 for 1e-6 and 19.11
# for 1e-8, computed with that formula (tests/test_losses.py checks it against the gradient).
MARGIN_CAP = Param("eps", 1e-6, low=0.0, ui_low=0.0, ui_high=1e-3,
                   help="Margin cap: examples fitted to within eps (m_i = 1/2 at a logit margin of 14.5) fade "
                        "out, so a batch's gradient decays as it is fitted. 0 gives the exact Eq. 7.")


# loss name -> (scheme, normalise, description)
_SCHEME_LOSSES: dict[str, tuple[str, bool, str]] = {
    "cce": ("cce", False, "Categorical cross-entropy, mean over the batch."),
    "mae": ("mae", False, "Mean absolute error 1 - p_i (robust to label noise, slow to fit)."),
    "mse": ("mse", False, "Mean squared error (1 - p_i)^2."),
    "gce": ("gce", False, "Generalised cross-entropy (1 - p_i^q)/q (Zhang & Sabuncu 2018)."),
    "cce-dn": ("cce", True, "CCE's weights with derivative normalisation."),
    "mae-dn": ("mae", True, "MAE's weights with derivative normalisation."),
    "mse-dn": ("mse", True, "MSE's weights with derivative normalisation."),
    "gce-dn": ("gce", True, "GCE's weights with derivative normalisation."),
    "dm": ("dm", True, "Derivative manipulation: exp(beta p^lam (1-p)) weights with DN."),
    "dm-normal": ("normal", True, "DM with the normal-shaped EDF and DN."),
    "dm-exponential": ("exponential", True, "DM with the exponential EDF and DN."),
    "dm-beta": ("beta", True, "DM with the beta-shaped EDF and DN."),
}


# The DN losses whose weight vanishes at both ends of p (MAE's 2p(1-p), MSE's, GCE's and the
# beta family's at its defaults): when a batch's examples sit near p = 0 or 1, its whole unit of
# gradient lands on the few in between, the gradient norm jumps a hundredfold and a relative clip
# only slows the climb. They diverged within a few hundred steps at lr 0.1 under clipping
# relative to the running norm and at a fixed norm of 2 and 3, and trained at 1
# (benchmarks/bench_stability.py, docs/benchmarks.md): their default fixed clip.
_VANISHING_WEIGHT_CLIP = {"mae-dn": 1.0, "mse-dn": 1.0, "gce-dn": 1.0, "dm-beta": 1.0}


# A scheme loss's parameters are its family's, plus the margin cap under DN.
for _name, (_scheme, _normalise, _description) in _SCHEME_LOSSES.items():
    _entry = SCHEMES.get(_scheme)
    _register(
        _name,
        description=_description,
        params=[*_entry.params, MARGIN_CAP] if _normalise else list(_entry.params),
        equation=_entry.equation + ("; weights / Σ_batch w (DN), Eq. 7 gradient" if _normalise
                                    else "; weights / N: the loss's own gradient"),
        family="scheme", scheme=_scheme, normalise=_normalise,
        **({"clip_grad_norm": _VANISHING_WEIGHT_CLIP[_name]} if _name in _VANISHING_WEIGHT_CLIP else {}),
    )


# ---------------------------------------------------------------------------------------
# The declaration: one decorator per formula loss, on the function holding its math.
# ---------------------------------------------------------------------------------------

# Loss name -> the function holding its math, for every loss declared with @loss.
FORMULAS: dict[str, Callable[..., Any]] = {}


def loss(name: str, *, description: str, equation: str, params: Sequence[Param] = (),
         family: str = "baseline", **extra: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare the loss ``name`` on the function holding its math.

    Args:
        name: the name in ``LOSSES``.
        description, equation, params: its registry record (the parameters' ranges and
            defaults are checked wherever the loss is built: configs, forms, the CLI, code).
        family: ``"baseline"`` for a loss of one network, ``"method"`` for a training method
            (co-teaching).
        extra: further fields front ends read, e.g. ``two_networks`` or ``per_example_state``
            (the training loop hands such a loss the pair's logits or each example's index).

    Returns the function unchanged.
    """

    def decorator(formula: Callable[..., Any]) -> Callable[..., Any]:
        _register(name, description=description, params=params, equation=equation,
                  family=family, **extra)
        FORMULAS[name] = formula
        return formula

    return decorator


def _log_p_parts(z: Tensor, targets: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``log p_i``, ``log(1 - p_i)`` and the half margin ``½(lse_{j≠y} z - z_y)``, per row.

    ``log(1 - p_i) = lse_{j≠y_i} z_ij - lse_j z_ij`` is exact however small ``1 - p_i`` is.
    """
    from torch.nn import functional as F

    lse_all = z.logsumexp(dim=1)
    z_y = z.gather(1, targets[:, None]).squeeze(1)
    others = z.masked_fill(F.one_hot(targets, z.shape[1]).bool(), -math.inf)
    lse_other = others.logsumexp(dim=1)
    return z_y - lse_all, lse_other - lse_all, 0.5 * (lse_other - z_y)


def _log_softmax_y(z: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    log_probs = z.log_softmax(dim=1)
    return log_probs, log_probs.gather(1, targets[:, None]).squeeze(1)


_UNIT = {"low": 0.0, "high": 1.0, "ui_low": 0.0, "ui_high": 1.0}


# ---------------------------------------------------------------------------------------
# The baselines and co-teaching, in the order the forms list them.
# ---------------------------------------------------------------------------------------


@loss(
    "label-smoothing", description="Cross-entropy with label smoothing.",
    equation="L = CE(z, (1 − ε)·onehot(y) + ε/C)",
    params=[Param("epsilon", 0.1, low=0.0, high=1.0, high_inclusive=False, ui_low=0.0, ui_high=0.5,
                  help="Probability mass spread uniformly over all classes.")],
)
def label_smoothing(z: Tensor, targets: Tensor, epsilon: float) -> Tensor:
    r"""Cross-entropy against :math:`(1-\varepsilon)\, e_y + \varepsilon / C` (Szegedy et al. 2016).

    >>> import torch
    >>> label_smoothing(torch.tensor([[2.0, 0.0, 0.0]]), torch.tensor([0]), epsilon=0.1)
    tensor([0.3729])
    """
    from torch.nn import functional as F

    return F.cross_entropy(z, targets, reduction="none", label_smoothing=epsilon)


@loss(
    "boot-soft", description="Soft bootstrapping (Reed et al. 2015): the target mixes the label "
                             "with the model's own prediction.",
    equation="L = −Σ_k (β·onehot(y)_k + (1 − β)·p_k) log p_k",
    params=[Param("beta", 0.95, **_UNIT, help="Weight of the annotated label (1 gives CCE).")],
)
def bootstrap_soft(z: Tensor, targets: Tensor, beta: float) -> Tensor:
    r"""Soft bootstrapping (Reed et al. 2015): :math:`-\sum_k (\beta e_{y,k} + (1-\beta) p_k) \log p_k`.

    The prediction in the target is not detached, as in the paper (it equals
    :math:`\beta\,` CE :math:`+ (1-\beta)` entropy).

    >>> import torch
    >>> bootstrap_soft(torch.tensor([[2.0, 0.0]]), torch.tensor([1]), beta=0.95)
    tensor([2.0388])
    """
    log_probs, log_p_y = _log_softmax_y(z, targets)
    entropy = -(log_probs.exp() * log_probs).sum(dim=1)
    return -beta * log_p_y + (1.0 - beta) * entropy


@loss(
    "boot-hard", description="Hard bootstrapping (Reed et al. 2015): the target mixes the label "
                             "with the model's predicted class.",
    equation="L = −β log p_y − (1 − β) log p_argmax",
    params=[Param("beta", 0.8, **_UNIT, help="Weight of the annotated label (1 gives CCE).")],
)
def bootstrap_hard(z: Tensor, targets: Tensor, beta: float) -> Tensor:
    r"""Hard bootstrapping (Reed et al. 2015): :math:`-\beta \log p_y - (1-\beta) \log p_{\hat y}`,
    :math:`\hat y = \arg\max_k p_k` (the predicted class, not differentiated).

    >>> import torch
    >>> bootstrap_hard(torch.tensor([[2.0, 0.0]]), torch.tensor([1]), beta=0.8)
    tensor([1.7269])
    """
    log_probs, log_p_y = _log_softmax_y(z, targets)
    log_p_hat = log_probs.gather(1, z.detach().argmax(dim=1, keepdim=True)).squeeze(1)
    return -beta * log_p_y - (1.0 - beta) * log_p_hat


@loss(
    "sce", description="Symmetric cross-entropy (Wang et al. 2019): CE plus reverse CE.",
    equation="L = α·CE + β·RCE,  RCE = −A·(1 − p_y)",
    params=[
        Param("alpha", 0.1, low=0.0, ui_low=0.0, ui_high=2.0, help="Weight of the CE term."),
        Param("beta", 1.0, low=0.0, ui_low=0.0, ui_high=2.0, help="Weight of the reverse CE term."),
        Param("A", -4.0, high=0.0, high_inclusive=False, ui_low=-10.0, ui_high=-1.0,
              help="The value that stands in for log 0 in the reverse CE."),
    ],
)
def symmetric_ce(z: Tensor, targets: Tensor, alpha: float, beta: float, A: float) -> Tensor:  # noqa: N803
    r"""Symmetric cross-entropy (Wang et al. 2019): :math:`\alpha\,\mathrm{CE} + \beta\,\mathrm{RCE}`.

    The reverse CE with :math:`\log 0 := A` is :math:`-\sum_k p_k \log e_{y,k} = -A (1 - p_y)`,
    computed with :math:`1 - p_y` taken in log space (exact when tiny).

    >>> import torch
    >>> symmetric_ce(torch.tensor([[2.0, 0.0]]), torch.tensor([0]), alpha=0.1, beta=1.0, A=-4.0)
    tensor([0.4895])
    """
    log_p, log_1mp, _ = _log_p_parts(z, targets)
    return -alpha * log_p - beta * A * log_1mp.exp()


@loss(
    "focal", description="Focal loss (Lin et al. 2017): CE down-weighted on well-fitted examples.",
    equation="L = −(1 − p_y)^γ log p_y",
    params=[Param("gamma", 2.0, low=0.0, ui_low=0.0, ui_high=5.0,
                  help="Focusing parameter; 0 gives CCE.")],
)
def focal(z: Tensor, targets: Tensor, gamma: float) -> Tensor:
    r"""Focal loss (Lin et al. 2017): :math:`-(1 - p_y)^\gamma \log p_y`.

    :math:`(1-p_y)^\gamma` is taken as :math:`\exp(\gamma \log(1 - p_y))` from the logits, so
    the loss and its gradient stay finite and exact for confident models.

    >>> import torch
    >>> focal(torch.tensor([[2.0, 0.0]]), torch.tensor([0]), gamma=2.0)
    tensor([0.0018])
    """
    log_p, log_1mp, _ = _log_p_parts(z, targets)
    focus = log_1mp.new_ones(log_1mp.shape) if gamma == 0 else (gamma * log_1mp).exp()
    return -focus * log_p


def forget_rate(epoch: float, tau: float, gradual_epochs: float) -> float:
    r"""Co-teaching's share of each batch left out at ``epoch`` (Han et al. 2018):
    :math:`R = \min(\tau\, e / T_k,\; \tau)`, rising linearly to :math:`\tau` over the first
    :math:`T_k` epochs (the network first fits the easy, mostly clean, examples).

    >>> forget_rate(0.0, 0.4, 10), forget_rate(5.0, 0.4, 10), forget_rate(30.0, 0.4, 10)
    (0.0, 0.2, 0.4)
    """
    return tau if gradual_epochs <= 0 else min(tau * epoch / gradual_epochs, tau)


@loss(
    "co-teaching", description="Co-teaching (Han et al. 2018): two networks, each trained on the "
                               "examples with the smallest loss under the other.",
    equation="L = CE₁ over the (1 − R) easiest under net 2 + CE₂ over the (1 − R) easiest under net 1,  "
             "R = min(τ·epoch/T_k, τ)",
    params=[Param("forget_rate", 0.2, low=0.0, high=1.0, high_inclusive=False, ui_low=0.0, ui_high=0.8,
                  help="τ: the share of each batch finally left out (the noise rate, if known)."),
            Param("gradual_epochs", 10.0, low=0.0, ui_low=0.0, ui_high=50.0,
                  help="T_k: epochs over which the left-out share rises from 0 to τ.")],
    family="method", two_networks=True,
)
def co_teaching(z1: Tensor, z2: Tensor, targets: Tensor, rate: float) -> tuple[Tensor, Tensor, Tensor]:
    r"""Co-teaching (Han et al. 2018) for one batch, its share :math:`R` = ``rate`` left out
    (:func:`forget_rate` gives it for an epoch): each network keeps the
    :math:`\max(1, \operatorname{round}((1-R) N))` examples with the smallest cross-entropy
    under it, and the *other* network is trained on those (mean cross-entropy over them).

    Returns the loss and the examples kept by the first and by the second network, as masks.
    Equal losses keep the batch's order (a stable sort), so the choice is deterministic.

    >>> import torch
    >>> z1, z2 = torch.tensor([[3.0, 0.0], [0.0, 3.0]]), torch.tensor([[0.0, 3.0], [3.0, 0.0]])
    >>> co_teaching(z1, z2, torch.tensor([0, 0]), rate=0.5)  # each learns its peer's pick
    (tensor(6.0972), tensor([ True, False]), tensor([False,  True]))
    """
    import torch
    from torch.nn import functional as F

    ce1 = F.cross_entropy(z1, targets, reduction="none")
    ce2 = F.cross_entropy(z2, targets, reduction="none")
    n = len(targets)
    keep = max(1, int(round((1.0 - rate) * n)))
    kept1 = torch.zeros(n, dtype=torch.bool, device=z1.device)
    kept2 = torch.zeros_like(kept1)
    kept1[ce1.detach().sort(stable=True).indices[:keep]] = True
    kept2[ce2.detach().sort(stable=True).indices[:keep]] = True
    # Each network learns from the examples its peer found easy.
    return ce1[kept2].mean() + ce2[kept1].mean(), kept1, kept2


@loss(
    "elr", description="Early-learning regularisation (Liu et al. 2020): CE plus λ·log(1 − ⟨t_i, p_i⟩), "
                       "t_i a running average of the model's predictions for example i.",
    equation="L = CE(z, y) + λ·log(1 − ⟨t_i, p_i⟩),  t_i ← β t_i + (1 − β) p_i",
    params=[Param("lam", 3.0, low=0.0, ui_low=0.0, ui_high=10.0, help="Weight of the regulariser (0 gives CCE)."),
            Param("momentum", 0.7, low=0.0, high=1.0, high_inclusive=False, ui_low=0.0, ui_high=0.99,
                  help="Momentum β of each example's running average of predictions.")],
    per_example_state=True,
)
def elr(z: Tensor, targets: Tensor, running: Tensor, lam: float) -> Tensor:
    r"""Early-learning regularisation (Liu et al. 2020): cross-entropy plus
    :math:`\lambda \log(1 - \langle t_i, \hat p_i \rangle)`, :math:`\hat p_i =
    \operatorname{clamp}(p_i, 10^{-4}, 1 - 10^{-4})`, where ``running`` holds :math:`t_i`, the
    running average of the model's own predictions for each example of the batch
    (:func:`elr_running_average`). The regulariser pulls :math:`p_i` towards what the model
    predicted early in training, when it still fits the clean patterns, so a memorised wrong
    label costs more.

    >>> import torch
    >>> elr(torch.tensor([[2.0, 0.0]]), torch.tensor([0]), torch.tensor([[0.5, 0.5]]), lam=3.0)
    tensor([-1.9525])
    """
    from torch.nn import functional as F

    p = z.softmax(dim=1).clamp(1e-4, 1.0 - 1e-4)
    agreement = (running * p).sum(dim=1)
    return F.cross_entropy(z, targets, reduction="none") + lam * (-agreement).log1p()


def elr_running_average(running: Tensor, z: Tensor, momentum: float) -> Tensor:
    r"""ELR's running average moved by one batch: :math:`t_i \leftarrow \beta\, t_i + (1 - \beta)\,
    \hat p_i / \sum_k \hat p_{ik}`, :math:`\hat p_i = \operatorname{clamp}(p_i, 10^{-4},
    1 - 10^{-4})` (:math:`\beta` = ``momentum``), in ``running``'s dtype. ``z`` is detached by
    the caller: the average follows the predictions, it is not trained.

    >>> import torch
    >>> elr_running_average(torch.zeros(1, 2), torch.tensor([[0.0, 0.0]]), momentum=0.7)
    tensor([[0.1500, 0.1500]])
    """
    p = z.softmax(dim=1).clamp(1e-4, 1.0 - 1e-4)
    return momentum * running + (1.0 - momentum) * (p / p.sum(dim=1, keepdim=True)).to(running)
