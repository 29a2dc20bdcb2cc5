"""Curves made readable: exponential smoothing, and runs of different lengths put on one axis
by the fraction of their training. Plain numpy, no Streamlit."""

from __future__ import annotations

import numpy as np

__all__ = ["ALIGNMENTS", "smooth", "training_fraction"]

ALIGNMENTS = {"iteration": "iteration", "fraction": "fraction of training"}


def smooth(y: np.ndarray, weight: float) -> np.ndarray:
    """Exponential moving average with bias correction (as TensorBoard's smoothing slider):
    ``s_t = w s_{t-1} + (1 - w) y_t``, divided by ``1 - w^k`` after ``k`` finite points, so
    the start is not pulled towards 0. NaN points are skipped (and stay NaN); ``weight`` 0
    returns ``y`` unchanged.

    >>> smooth(np.array([1.0, 3.0, np.nan, 3.0]), 0.5).round(4).tolist()
    [1.0, 2.3333, nan, 2.7143]
    """
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"smoothing weight: must be in [0, 1), got {weight!r}")
    y = np.asarray(y, dtype=np.float64)
    if weight == 0.0:
        return y.copy()
    out = np.full_like(y, np.nan)
    acc, k = 0.0, 0
    for i, v in enumerate(y):
        if not np.isfinite(v):
            continue
        acc = weight * acc + (1.0 - weight) * v
        k += 1
        out[i] = acc / (1.0 - weight**k)
    return out


def training_fraction(iterations: np.ndarray, total: int) -> np.ndarray:
    """Iterations as the fraction of a run's ``total`` planned iterations.

    >>> training_fraction(np.array([500, 2000]), 2000).tolist()
    [0.25, 1.0]
    """
    if total <= 0:
        raise ValueError(f"total iterations: must be positive, got {total!r}")
    return np.asarray(iterations, dtype=np.float64) / float(total)
