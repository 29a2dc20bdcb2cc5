"""Synthetic label noise and class imbalance, deterministic from a seed.

>>> import numpy as np
>>> labels = np.arange(10).repeat(100)
>>> noisy, is_noisy = corrupt_labels(labels, "pairflip", 0.2, 10, seed=0)
>>> bool(np.all(noisy[is_noisy] == (labels[is_noisy] + 1) % 10))
True
>>> corrupt_labels(labels, "symmetric", 1.5, 10, seed=0)
Traceback (most recent call last):
...
dm_core.registry.ConfigError: dataset.noise.rate: 1.5 is out of range; must be a float in [0, 1)

A setting the chosen kind would ignore is an error, never a silently clean run:

>>> corrupt_labels(labels, "none", 0.4, 10, seed=0)
Traceback (most recent call last):
...
dm_core.registry.ConfigError: dataset.noise.rate: kind 'none' takes no rate (got 0.4); leave it at 0, or choose a kind that takes one: symmetric, pairflip, asymmetric
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dm_core.registry import ConfigError, Param, Registry

NOISE = Registry("noise")

_RATE = Param("rate", 0.0, "float", 0.0, 1.0, high_inclusive=False, ui_high=0.9,
              help="probability that an example's label is corrupted")

# The 20 CIFAR-100 superclasses, as fine-label indices (Krizhevsky 2009, the dataset's meta).
CIFAR100_SUPERCLASSES: tuple[tuple[int, ...], ...] = (
    (4, 30, 55, 72, 95), (1, 32, 67, 73, 91), (54, 62, 70, 82, 92), (9, 10, 16, 28, 61),
    (0, 51, 53, 57, 83), (22, 39, 40, 86, 87), (5, 20, 25, 84, 94), (6, 7, 14, 18, 24),
    (3, 42, 43, 88, 97), (12, 17, 37, 68, 76), (23, 33, 49, 60, 71), (15, 19, 21, 31, 38),
    (34, 63, 64, 66, 75), (26, 45, 77, 79, 99), (2, 11, 35, 46, 98), (27, 29, 44, 78, 93),
    (36, 50, 65, 74, 80), (47, 52, 56, 59, 96), (8, 13, 48, 58, 90), (41, 69, 81, 85, 89),
)
# CIFAR-10 class-dependent flips (Patrini et al. 2017): truck→automobile, bird→airplane,
# deer→horse, cat↔dog.
CIFAR10_FLIPS: dict[int, int] = {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}
# Datasets with a built-in asymmetric noise model, and their number of classes.
ASYMMETRIC_BUILTIN: dict[str, int] = {"cifar10": 10, "cifar100": 100}


def _flip(labels: np.ndarray, rate: float, rng: np.random.Generator, target: np.ndarray) -> np.ndarray:
    """With probability ``rate`` replace label k by ``target[k]`` (where that differs)."""
    flip = rng.random(len(labels)) < rate
    out = labels.copy()
    out[flip] = target[labels[flip]]
    return out


@NOISE.register("none", description="No label noise: train on the annotated labels.")
def _none(labels: np.ndarray, rate: float, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    return labels.copy()


def check_symmetric_rate(rate: float, num_classes: int, where: str = "dataset.noise.rate") -> None:
    """Symmetric noise must stay below ``(C - 1) / C``: at that rate a label is as likely any
    other class as its own, and beyond it the noise becomes the majority label.

    >>> check_symmetric_rate(0.95, 10)
    Traceback (most recent call last):
    ...
    dm_core.registry.ConfigError: dataset.noise.rate: 0.95 is too high for symmetric noise over 10 classes; must be in [0, 0.9) or the noise would become the majority label
    """
    if rate >= (num_classes - 1) / num_classes:
        raise ConfigError(
            f"{where}: {rate:g} is too high for symmetric noise over {num_classes} classes; "
            f"must be in [0, {(num_classes - 1) / num_classes:.4g}) or the noise would become the "
            "majority label")


@NOISE.register("symmetric", params=[_RATE],
                description="With probability r the label becomes a uniformly chosen other class.")
def _symmetric(labels: np.ndarray, rate: float, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    check_symmetric_rate(rate, num_classes)
    flip = rng.random(len(labels)) < rate
    # An offset in 1..C-1 picks a uniformly chosen *other* class.
    offset = rng.integers(1, num_classes, size=len(labels))
    out = labels.copy()
    out[flip] = (labels[flip] + offset[flip]) % num_classes
    return out


@NOISE.register("pairflip", params=[_RATE],
                description="With probability r class k is labelled k+1 (mod C).")
def _pairflip(labels: np.ndarray, rate: float, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    return _flip(labels, rate, rng, (np.arange(num_classes) + 1) % num_classes)


@NOISE.register(
    "asymmetric",
    params=[_RATE, Param("transition", None, "matrix", 0.0, 1.0,
                         help="a C×C row-stochastic matrix (datasets other than CIFAR)")],
    description="Class-dependent noise: CIFAR-100 swaps two fine classes inside each superclass; "
                "CIFAR-10 flips truck→automobile, bird→airplane, deer→horse, cat↔dog; "
                "otherwise a transition matrix you give.")
def _asymmetric(labels: np.ndarray, rate: float, num_classes: int, rng: np.random.Generator,
                dataset: str | None = None, transition: list[list[float]] | None = None) -> np.ndarray:
    if transition is not None:
        t = np.asarray(transition, dtype=np.float64)
        if t.shape != (num_classes, num_classes) or np.any(t < 0) or not np.allclose(t.sum(1), 1.0):
            raise ConfigError(f"dataset.noise.transition: must be a {num_classes}×{num_classes} matrix "
                              "of non-negative rows that each sum to 1")
        cum = np.cumsum(t, axis=1)
        draws = rng.random(len(labels))
        return np.minimum((draws[:, None] > cum[labels]).sum(1), num_classes - 1).astype(np.int64)
    if dataset == "cifar100" and num_classes == ASYMMETRIC_BUILTIN["cifar100"]:
        target = np.arange(100)
        for group in CIFAR100_SUPERCLASSES:
            a, b = rng.choice(group, size=2, replace=False)
            target[a], target[b] = b, a
        return _flip(labels, rate, rng, target)
    if dataset == "cifar10" and num_classes == ASYMMETRIC_BUILTIN["cifar10"]:
        target = np.arange(10)
        for src, dst in CIFAR10_FLIPS.items():
            target[src] = dst
        return _flip(labels, rate, rng, target)
    raise ConfigError(_needs_transition(dataset))


def _needs_transition(dataset: str | None) -> str:
    return ("dataset.noise.transition: asymmetric noise needs a transition matrix for this dataset "
            f"({dataset or 'unknown'}); built-in ones exist for {' and '.join(ASYMMETRIC_BUILTIN)}")


@NOISE.register(
    "imbalance",
    params=[Param("classes", [1], "list[int]", 0, help="classes to subsample"),
            Param("keep_fraction", 0.1, "float", 0.0, 1.0, low_inclusive=False,
                  help="fraction of the chosen classes' examples to keep (0.1 → 10:1)")],
    description="Class imbalance: keep only a fraction of the chosen classes' examples. "
                "Removed examples get label -1 and are dropped by the data layer.")
def _imbalance(labels: np.ndarray, rate: float, num_classes: int, rng: np.random.Generator,
               classes: list[int] | None = None, keep_fraction: float = 0.1) -> np.ndarray:
    classes = [1] if classes is None else list(classes)
    if any(not 0 <= c < num_classes for c in classes):
        raise ConfigError(f"dataset.noise.classes: {classes} must be class indices in [0, {num_classes - 1}]")
    if not 0 < keep_fraction <= 1:
        raise ConfigError(f"dataset.noise.keep_fraction: {keep_fraction!r} must be in (0, 1]")
    out = labels.copy()
    for c in classes:
        idx = np.flatnonzero(labels == c)
        drop = rng.permutation(idx)[int(round(keep_fraction * len(idx))):]
        out[drop] = -1
    return out


def check_noise_settings(kind: str, rate: float, params: dict[str, Any], dataset: str | None = None,
                         where: str = "dataset.noise") -> None:
    """Reject noise settings that ``kind`` would ignore, naming the field and what is allowed.

    The registry is the source of truth: a kind takes ``rate`` and the other keys of
    ``params`` only if its entry lists them as parameters (``none`` takes nothing,
    ``imbalance`` takes ``classes`` and ``keep_fraction`` but no rate). A rate of 0 is the
    same as no rate. A user transition matrix sets every flip probability itself, so it
    takes no rate either. Given ``dataset``, asymmetric noise without a matrix is checked to
    have a built-in model for it. ``None`` values in ``params`` count as unset.

    >>> check_noise_settings("symmetric", 0.4, {"classes": [1]})
    Traceback (most recent call last):
    ...
    dm_core.registry.ConfigError: dataset.noise.classes: not a setting of kind 'symmetric' (it would be ignored); symmetric takes: rate
    >>> check_noise_settings("asymmetric", 0.2, {}, dataset="cifar10")  # built-in CIFAR-10 flips
    """
    entry = NOISE.get(kind, where=f"{where}.kind")
    takes = [p.name for p in entry.params]
    if rate != 0 and "rate" not in takes:
        with_rate = ", ".join(e.name for e in NOISE.entries() if any(p.name == "rate" for p in e.params))
        others = f"; its settings are {', '.join(takes)}" if takes else ""
        raise ConfigError(f"{where}.rate: kind {kind!r} takes no rate (got {rate:g}){others}; leave it "
                          f"at 0, or choose a kind that takes one: {with_rate}")
    for key, value in params.items():
        if value is not None and key not in takes:
            raise ConfigError(f"{where}.{key}: not a setting of kind {kind!r} (it would be ignored); "
                              f"{kind} takes: {', '.join(takes) or 'nothing'}")
    if kind == "asymmetric" and params.get("transition") is not None and rate != 0:
        raise ConfigError(f"{where}.rate: a transition matrix ({where}.transition) sets every flip "
                          f"probability itself, so rate must be 0 (got {rate:g}); the actual noise "
                          "rate is measured and reported with the run")
    if (kind == "asymmetric" and params.get("transition") is None and dataset is not None
            and dataset not in ASYMMETRIC_BUILTIN):
        raise ConfigError(_needs_transition(dataset))


def corrupt_labels(labels: np.ndarray, kind: str, rate: float, num_classes: int, seed: int,
                   **kw: Any) -> tuple[np.ndarray, np.ndarray]:
    """Corrupt ``labels`` and return ``(noisy_labels, is_noisy)``; deterministic from ``seed``.

    Kinds: see ``NOISE``. For ``imbalance`` the removed examples get label ``-1`` (and
    ``is_noisy`` False): the data layer drops them. ``kw`` holds the kind's other settings
    (``transition``, ``classes``, ``keep_fraction``) and the ``dataset`` name; a setting the
    kind would ignore raises ``ConfigError`` (see ``check_noise_settings``).

    >>> import numpy as np
    >>> noisy, is_noisy = corrupt_labels(np.zeros(1000, dtype=int), "symmetric", 0.3, 4, seed=1)
    >>> abs(float(is_noisy.mean()) - 0.3) < 0.03, bool(np.all(noisy[is_noisy] != 0))
    (True, True)
    """
    NOISE.get(kind, where="dataset.noise.kind")
    rate = _RATE.check(rate, "dataset.noise")
    settings = {k: v for k, v in kw.items() if k != "dataset"}
    check_noise_settings(kind, rate, settings)
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ConfigError("labels: must be a 1-D array of integer class indices")
    labels = labels.astype(np.int64)
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise ConfigError(f"labels: class indices must be in [0, {num_classes - 1}]")
    rng = np.random.default_rng(seed)
    if kind == "asymmetric":
        noisy = _asymmetric(labels, rate, num_classes, rng, dataset=kw.get("dataset"),
                            transition=kw.get("transition"))
    elif kind == "imbalance":
        noisy = _imbalance(labels, rate, num_classes, rng, classes=kw.get("classes"),
                           keep_fraction=kw.get("keep_fraction", 0.1))
    else:
        noisy = NOISE.get(kind).factory(labels, rate, num_classes, rng)
    is_noisy = (noisy != labels) & (noisy >= 0)
    return noisy, is_noisy


def actual_noise_rate(is_noisy: np.ndarray, noisy_labels: np.ndarray) -> float:
    """The fraction of the kept examples whose label was changed (what a run reports)."""
    kept = np.asarray(noisy_labels) >= 0
    return float(np.asarray(is_noisy)[kept].mean()) if kept.any() else 0.0
