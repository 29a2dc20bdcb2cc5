r"""Published results to set reproduced numbers beside: the authors' runs and tables.

**CIFAR-100, ResNet-44** (``AUTHORS_CIFAR100``). The paper's tables exist only as images, but
the authors' repositories keep the test accuracy of every training run they published for
CIFAR-100 with ResNet-44 (one ``accuracy.txt`` per run: test accuracy every 1,000
iterations up to 30,000). The numbers below were read from those files:

- ``XinshaoAmosWang/DerivativeManipulation`` at commit ``baf25e4``,
  ``DerivativeManipulation_Code/CIFAR100_ResNet44_V03_{lambda0_5, ExpCCE_lambda0,
  lambda1}/train_Res44_<method>_<rate>/accuracy.txt``: DM with λ = 0.5 and λ = 0 (the group
  folder gives λ; ``BetaXX`` in the run folder is β), and the DN baselines (``*_sumW``);
- ``XinshaoAmosWang/Improving-Mean-Absolute-Error-against-CCE`` at commit ``507074c``,
  ``IMAE_Code/CIFAR100_ResNet44_V03_lambda1/...``: CCE, MAE, and DM with λ = 1.

Their setting (``train.m``, ``solver.prototxt``): SGD, momentum 0.9, learning rate 0.1 divided
by 10 at 15k and 22k iterations, 30k iterations, weight decay 5e-4, batches of 256 drawn as 32
classes × 8 images, random crop and flip, symmetric noise to a different class, seed 123, one
run per setting. "final" is the test accuracy at 30k iterations, "best" the highest of the 30.

**CIFAR-10, ResNet-56** (``PAPER_CIFAR10``). Table 3 of the paper's ICLR 2020 submission,
*Robust discriminative representation learning via gradient rescaling: an emphasis
regularisation perspective* (OpenReview ``rylUOn4Yvr``), the earlier version of the paper in
which DM is called GR (gradient rescaling, the same :math:`w = \exp(\beta p^\lambda (1-p))`).
It is the table the later versions carry as Table 10, in the same layout: best and final test
accuracy, and training accuracy on the corrupted and on the intact labels, for CCE, GR with
β = 0 (every example weighted alike) and GR with λ ∈ {0, ½, 1, 2}, each with the best of four
β, at symmetric noise 20/40/60/80%. Setting (its Section 4.1): SGD, momentum 0.9, weight
decay 1e-4, learning rate 0.1 multiplied by 0.1 every 5k iterations, batch 128, pad-4 crop
and flip. It does not state the number of iterations.

Vehicles-10 (the paper's Table 8) has no text source: nothing is bundled for it.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["AUTHORS_CIFAR100", "CIFAR10_SOURCE", "PAPER_CIFAR10", "ReferenceResult", "SOURCES",
           "authors_beta", "reference_for"]

SOURCES = ("github.com/XinshaoAmosWang/DerivativeManipulation@baf25e4 and "
           "github.com/XinshaoAmosWang/Improving-Mean-Absolute-Error-against-CCE@507074c "
           "(accuracy.txt of each published CIFAR-100 ResNet-44 run)")


CIFAR10_SOURCE = ("Table 3 of the paper's ICLR 2020 submission, openreview.net/forum?id=rylUOn4Yvr, "
                  "where DM is called GR")


class ReferenceResult(NamedTuple):
    """One published result: noise rate, method (this project's labels), β (DM only), test
    accuracy, and where published the training accuracy on corrupted and on intact labels."""

    rate: float
    method: str
    beta: float | None
    final: float
    best: float
    train_corrupted: float | None = None
    train_intact: float | None = None


def _rows(method: str, per_rate: dict[float, tuple[float | None, float, float]]
          ) -> list[ReferenceResult]:
    return [ReferenceResult(rate, method, beta, final, best)
            for rate, (beta, final, best) in per_rate.items()]


# (β, final, best) by symmetric noise rate.
AUTHORS_CIFAR100: tuple[ReferenceResult, ...] = tuple(
    _rows("CCE", {0.0: (None, 0.7004, 0.7011), 0.2: (None, 0.5880, 0.6042),
                  0.4: (None, 0.5081, 0.5315), 0.6: (None, 0.3869, 0.4210)})
    + _rows("GCE", {0.0: (None, 0.6333, 0.6360), 0.2: (None, 0.6238, 0.6238),
                    0.4: (None, 0.5842, 0.5864), 0.6: (None, 0.5043, 0.5067)})
    + _rows("MAE", {0.0: (None, 0.0824, 0.0824), 0.2: (None, 0.0636, 0.0636),
                    0.4: (None, 0.0711, 0.0725), 0.6: (None, 0.0519, 0.0519)})
    + _rows("MSE", {0.0: (None, 0.2796, 0.2799), 0.2: (None, 0.2441, 0.2462),
                    0.4: (None, 0.2158, 0.2158), 0.6: (None, 0.1755, 0.1800)})
    + _rows("CCE-DN", {0.0: (None, 0.6826, 0.6914), 0.2: (None, 0.5825, 0.6065),
                       0.4: (None, 0.5098, 0.5418), 0.6: (None, 0.4149, 0.4458)})
    + _rows("GCE-DN", {0.0: (None, 0.6571, 0.6579), 0.2: (None, 0.6187, 0.6253),
                       0.4: (None, 0.5752, 0.5825), 0.6: (None, 0.4796, 0.4838)})
    + _rows("MAE-DN", {0.0: (None, 0.0723, 0.0753), 0.2: (None, 0.0460, 0.0542),
                       0.4: (None, 0.0446, 0.0449), 0.6: (None, 0.0425, 0.0479)})
    + _rows("MSE-DN", {0.0: (None, 0.2532, 0.2578), 0.2: (None, 0.2803, 0.2844),
                       0.4: (None, 0.2677, 0.2699), 0.6: (None, 0.2568, 0.2654)})
    + _rows("DM λ=0", {0.0: (2.0, 0.6938, 0.7014), 0.2: (1.0, 0.6031, 0.6087),
                       0.4: (1.0, 0.5275, 0.5520), 0.6: (1.0, 0.4026, 0.4458)})
    + _rows("DM λ=0.5", {0.0: (6.0, 0.6902, 0.6933), 0.2: (6.0, 0.6435, 0.6573),
                         0.4: (8.0, 0.5989, 0.6100), 0.6: (8.0, 0.5084, 0.5290)})
    + _rows("DM λ=1", {0.0: (6.0, 0.6885, 0.6923), 0.2: (8.0, 0.6206, 0.6340),
                       0.4: (8.0, 0.5299, 0.5468), 0.6: (2.0, 0.4167, 0.4391)})
)


# Table 3 (CIFAR-10, ResNet-56): rate -> (β, best, final, train corrupted, train intact), in %.
_TABLE3: dict[str, dict[float, tuple[float | None, float, float, float, float]]] = {
    "CCE": {0.2: (None, 86.5, 76.8, 95.7, 80.6), 0.4: (None, 82.8, 60.9, 83.0, 64.4),
            0.6: (None, 69.5, 37.2, 84.1, 40.5), 0.8: (None, 36.1, 16.1, 54.3, 18.4)},
    "Uniform (β=0)": {0.2: (0.0, 83.5, 58.1, 50.6, 60.2), 0.4: (0.0, 71.8, 44.9, 31.3, 45.8),
                      0.6: (0.0, 69.9, 57.9, 40.1, 58.6), 0.8: (0.0, 44.4, 28.2, 20.6, 28.8)},
    "DM λ=0": {0.2: (2.0, 84.9, 76.4, 85.3, 80.5), 0.4: (1.0, 78.4, 65.6, 63.3, 66.6),
               0.6: (0.5, 72.3, 53.9, 42.1, 55.1), 0.8: (0.5, 46.2, 21.3, 27.8, 23.1)},
    "DM λ=0.5": {0.2: (12.0, 89.4, 87.8, 81.5, 95.0), 0.4: (12.0, 85.1, 79.9, 67.7, 85.7),
                 0.6: (12.0, 77.5, 58.5, 55.5, 62.6), 0.8: (8.0, 51.6, 22.4, 46.1, 24.4)},
    "DM λ=1": {0.2: (16.0, 87.3, 86.7, 78.4, 93.8), 0.4: (16.0, 84.7, 83.3, 60.3, 88.9),
               0.6: (12.0, 71.9, 70.0, 41.0, 73.9), 0.8: (8.0, 35.5, 31.5, 19.8, 32.3)},
    "DM λ=2": {0.2: (24.0, 85.8, 85.5, 76.0, 91.4), 0.4: (20.0, 52.7, 52.7, 35.4, 53.6),
               0.6: (12.0, 80.2, 72.5, 44.9, 75.4), 0.8: (12.0, 33.0, 32.8, 14.2, 32.6)},
}
PAPER_CIFAR10: tuple[ReferenceResult, ...] = tuple(
    ReferenceResult(rate, method, beta, final / 100, best / 100, corrupted / 100, intact / 100)
    for method, per_rate in _TABLE3.items()
    for rate, (beta, best, final, corrupted, intact) in per_rate.items())


def reference_for(rate: float, method: str,
                  table: tuple[ReferenceResult, ...] = AUTHORS_CIFAR100) -> ReferenceResult | None:
    """The published result for ``method`` at noise ``rate`` in ``table``, if there is one
    (default: the authors' CIFAR-100 ResNet-44 runs).

    >>> reference_for(0.4, "DM λ=0.5").final, reference_for(0.4, "CCE").final
    (0.5989, 0.5081)
    >>> reference_for(0.8, "CCE") is None
    True
    >>> reference_for(0.4, "DM λ=1", PAPER_CIFAR10)
    ReferenceResult(rate=0.4, method='DM λ=1', beta=16.0, final=0.833, best=0.847, train_corrupted=0.603, train_intact=0.889)
    """
    for r in table:
        if r.method == method and abs(r.rate - rate) < 1e-9:
            return r
    return None


def authors_beta(lam: float, rate: float,
                 table: tuple[ReferenceResult, ...] = AUTHORS_CIFAR100) -> float:
    """The β the authors trained DM with at this λ and noise rate (default: CIFAR-100,
    ResNet-44).

    >>> authors_beta(0.5, 0.2), authors_beta(0.5, 0.4), authors_beta(0.0, 0.6)
    (6.0, 8.0, 1.0)
    >>> authors_beta(2.0, 0.4, PAPER_CIFAR10)
    20.0
    """
    found = reference_for(rate, f"DM λ={lam:g}", table)
    if found is None or found.beta is None:
        raise KeyError(f"no published DM run with λ={lam:g} at noise rate {rate:g}")
    return found.beta
