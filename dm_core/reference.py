"""Published results of the authors' own reference code, to set reproduced numbers beside.

The paper's tables exist only as images, but the authors' repositories keep the test
accuracy of every training run they published for CIFAR-100 with ResNet-44 (one
``accuracy.txt`` per run: test accuracy every 1,000 iterations up to 30,000). The numbers
below were read from those files:

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

CIFAR-10 (the paper's Table 10) and Vehicles-10 (Table 8) have no such files: nothing is
bundled for them.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["AUTHORS_CIFAR100", "ReferenceResult", "SOURCES", "authors_beta", "reference_for"]

SOURCES = ("github.com/XinshaoAmosWang/DerivativeManipulation@baf25e4 and "
           "github.com/XinshaoAmosWang/Improving-Mean-Absolute-Error-against-CCE@507074c "
           "(accuracy.txt of each published CIFAR-100 ResNet-44 run)")


class ReferenceResult(NamedTuple):
    """One published run: noise rate, method (this project's labels), β (DM only), accuracy."""

    rate: float
    method: str
    beta: float | None
    final: float
    best: float


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


def reference_for(rate: float, method: str) -> ReferenceResult | None:
    """The authors' CIFAR-100 ResNet-44 run for ``method`` at noise ``rate``, if published.

    >>> reference_for(0.4, "DM λ=0.5").final, reference_for(0.4, "CCE").final
    (0.5989, 0.5081)
    >>> reference_for(0.8, "CCE") is None
    True
    """
    for r in AUTHORS_CIFAR100:
        if r.method == method and abs(r.rate - rate) < 1e-9:
            return r
    return None


def authors_beta(lam: float, rate: float) -> float:
    """The β the authors trained DM with at this λ and noise rate (CIFAR-100, ResNet-44).

    >>> authors_beta(0.5, 0.2), authors_beta(0.5, 0.4), authors_beta(0.0, 0.6)
    (6.0, 8.0, 1.0)
    """
    found = reference_for(rate, f"DM λ={lam:g}")
    if found is None or found.beta is None:
        raise KeyError(f"no published DM run with λ={lam:g} at noise rate {rate:g}")
    return found.beta
