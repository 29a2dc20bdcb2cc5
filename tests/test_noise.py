"""Label-noise generators: actual rates, exact mappings, determinism, bad rates rejected."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dm_core.noise import CIFAR100_SUPERCLASSES, NOISE, actual_noise_rate, corrupt_labels
from dm_core.registry import ConfigError


def labels_for(c, per_class=300):
    return np.arange(c).repeat(per_class)


@settings(max_examples=60, deadline=None)
@given(c=st.integers(2, 20), frac=st.floats(0, 0.999), seed=st.integers(0, 2**31 - 1))
def test_symmetric_rate_and_targets(c, frac, seed):
    rate = frac * (c - 1) / c  # always below the majority bound
    y = labels_for(c, 200)
    noisy, is_noisy = corrupt_labels(y, "symmetric", rate, c, seed)
    assert np.array_equal(is_noisy, noisy != y)
    assert np.all((noisy >= 0) & (noisy < c))
    # Binomial tolerance: 5 standard deviations.
    sd = np.sqrt(rate * (1 - rate) / len(y))
    assert abs(is_noisy.mean() - rate) <= 5 * sd + 1e-9
    again, _ = corrupt_labels(y, "symmetric", rate, c, seed)
    assert np.array_equal(noisy, again)


def test_symmetric_goes_to_every_other_class_uniformly():
    y = np.zeros(40000, dtype=int)
    noisy, is_noisy = corrupt_labels(y, "symmetric", 0.5, 5, seed=1)
    counts = np.bincount(noisy[is_noisy], minlength=5)
    assert counts[0] == 0
    assert np.allclose(counts[1:] / counts[1:].sum(), 0.25, atol=0.02)


def test_different_seeds_differ():
    y = labels_for(10)
    a, _ = corrupt_labels(y, "symmetric", 0.4, 10, seed=1)
    b, _ = corrupt_labels(y, "symmetric", 0.4, 10, seed=2)
    assert not np.array_equal(a, b)


def test_pairflip_maps_k_to_k_plus_one():
    y = labels_for(7)
    noisy, is_noisy = corrupt_labels(y, "pairflip", 0.3, 7, seed=0)
    assert np.array_equal(noisy[is_noisy], (y[is_noisy] + 1) % 7)
    assert abs(is_noisy.mean() - 0.3) < 0.05


def test_cifar100_asymmetric_swaps_inside_superclasses_only():
    coarse = np.empty(100, dtype=int)
    for g, fines in enumerate(CIFAR100_SUPERCLASSES):
        coarse[list(fines)] = g
    assert sorted(f for fines in CIFAR100_SUPERCLASSES for f in fines) == list(range(100))
    y = labels_for(100, 100)
    noisy, is_noisy = corrupt_labels(y, "asymmetric", 0.4, 100, seed=3, dataset="cifar100")
    assert np.array_equal(coarse[noisy], coarse[y])
    # Exactly two classes of each superclass are involved, swapping with each other.
    pairs = {(a, b) for a, b in zip(y[is_noisy], noisy[is_noisy], strict=True)}
    assert len({a for a, _ in pairs}) == 40
    assert all((b, a) in pairs for a, b in pairs)
    assert abs(is_noisy.mean() - 0.4 * 40 / 100) < 0.02


def test_cifar10_asymmetric_flips():
    y = labels_for(10)
    noisy, is_noisy = corrupt_labels(y, "asymmetric", 0.5, 10, seed=0, dataset="cifar10")
    mapping = {int(a): int(b) for a, b in zip(y[is_noisy], noisy[is_noisy], strict=True)}
    assert mapping == {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}


def test_transition_matrix():
    t = np.eye(3) * 0.8 + np.roll(np.eye(3), 1, axis=1) * 0.2
    y = labels_for(3, 3000)
    noisy, is_noisy = corrupt_labels(y, "asymmetric", 0.0, 3, seed=0, transition=t.tolist())
    assert np.array_equal(noisy[is_noisy], (y[is_noisy] + 1) % 3)
    assert abs(is_noisy.mean() - 0.2) < 0.02
    with pytest.raises(ConfigError, match="transition"):
        corrupt_labels(y, "asymmetric", 0.0, 3, seed=0, transition=[[1.0, 0.5, 0.0]] * 3)


def test_imbalance_keeps_a_fraction():
    y = labels_for(2, 1000)
    noisy, is_noisy = corrupt_labels(y, "imbalance", 0.0, 2, seed=0, classes=[1], keep_fraction=0.1)
    assert (noisy == 1).sum() == 100 and (noisy == 0).sum() == 1000
    assert (noisy == -1).sum() == 900 and not is_noisy.any()
    assert actual_noise_rate(is_noisy, noisy) == 0.0


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5, float("nan"), float("inf")])
def test_bad_rates_name_the_field_and_range(rate):
    with pytest.raises(ConfigError) as err:
        corrupt_labels(labels_for(10), "symmetric", rate, 10, seed=0)
    assert "rate" in str(err.value) and "[0, 1)" in str(err.value)


def test_symmetric_majority_bound():
    with pytest.raises(ConfigError, match="majority"):
        corrupt_labels(labels_for(2), "symmetric", 0.5, 2, seed=0)


def test_unknown_kind_lists_allowed():
    with pytest.raises(ConfigError, match="symmetric"):
        corrupt_labels(labels_for(3), "gaussian", 0.1, 3, seed=0)
    assert set(NOISE.names()) == {"none", "symmetric", "pairflip", "asymmetric", "imbalance",
                                  "instance", "file"}


# -- property tests: every kind is deterministic from its seed, and its actual rate is the
# -- requested one for large N (binomial tolerance: 5 standard deviations) ---------------------

def _within_binomial(actual, expected, n):
    sd = np.sqrt(max(expected * (1 - expected), 1e-12) / n)
    return abs(actual - expected) <= 5 * sd + 1e-9


def _deterministic(y, kind, rate, c, seed, **kw):
    a = corrupt_labels(y, kind, rate, c, seed, **kw)
    b = corrupt_labels(y, kind, rate, c, seed, **kw)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    return a


@settings(max_examples=40, deadline=None)
@given(c=st.integers(2, 20), rate=st.floats(0, 0.95), seed=st.integers(0, 2**31 - 1))
def test_pairflip_properties(c, rate, seed):
    y = labels_for(c, 500)
    noisy, is_noisy = _deterministic(y, "pairflip", rate, c, seed)
    assert np.array_equal(noisy[is_noisy], (y[is_noisy] + 1) % c)
    assert np.array_equal(noisy[~is_noisy], y[~is_noisy])
    assert _within_binomial(is_noisy.mean(), rate, len(y))


@settings(max_examples=30, deadline=None)
@given(rate=st.floats(0, 0.95), seed=st.integers(0, 2**31 - 1))
def test_cifar10_asymmetric_properties(rate, seed):
    y = labels_for(10, 1000)
    noisy, is_noisy = _deterministic(y, "asymmetric", rate, 10, seed, dataset="cifar10")
    # Reference (Patrini et al. 2017): truck→automobile, bird→airplane, deer→horse, cat↔dog.
    flips = {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}
    assert all(flips[int(a)] == int(b) for a, b in zip(y[is_noisy], noisy[is_noisy], strict=True))
    # Only half the classes can flip: the expected actual rate is r × 5/10.
    sources = np.isin(y, list(flips))
    assert _within_binomial(is_noisy[sources].mean(), rate, int(sources.sum()))
    assert not is_noisy[~sources].any()


@settings(max_examples=20, deadline=None)
@given(rate=st.floats(0, 0.95), seed=st.integers(0, 2**31 - 1))
def test_cifar100_asymmetric_properties(rate, seed):
    y = labels_for(100, 200)
    noisy, is_noisy = _deterministic(y, "asymmetric", rate, 100, seed, dataset="cifar100")
    group = {f: g for g, fines in enumerate(CIFAR100_SUPERCLASSES) for f in fines}
    assert all(group[int(a)] == group[int(b)] for a, b in zip(y, noisy, strict=True))
    # Two of the five fine classes of each superclass swap: 40 of the 100 classes can flip.
    swapped = {int(a) for a in y[is_noisy]}
    assert len(swapped) <= 40
    if rate > 0.1:
        assert len(swapped) == 40
        sources = np.isin(y, sorted(swapped))
        assert _within_binomial(is_noisy[sources].mean(), rate, int(sources.sum()))
    assert _within_binomial(is_noisy.mean(), 0.4 * rate, len(y))


@st.composite
def _transition(draw):
    c = draw(st.integers(2, 6))
    rows = []
    for _ in range(c):
        raw = np.array(draw(st.lists(st.floats(0.01, 1.0), min_size=c, max_size=c)))
        rows.append((raw / raw.sum()).tolist())
    return np.array(rows)


@settings(max_examples=30, deadline=None)
@given(t=_transition(), seed=st.integers(0, 2**31 - 1))
def test_transition_matrix_properties(t, seed):
    c = len(t)
    y = labels_for(c, 3000)
    noisy, is_noisy = _deterministic(y, "asymmetric", 0.0, c, seed, transition=t.tolist())
    # Each row of the empirical transition matrix matches the given one.
    for k in range(c):
        got = np.bincount(noisy[y == k], minlength=c) / 3000
        sd = np.sqrt(t[k] * (1 - t[k]) / 3000)
        assert np.all(np.abs(got - t[k]) <= 5 * sd + 1e-9), (k, got, t[k])
    expected = float(np.mean(1 - t[y, y]))  # the actual rate the matrix implies
    assert abs(is_noisy.mean() - expected) <= 5 * np.sqrt(expected * (1 - expected) / len(y)) + 1e-9


@settings(max_examples=40, deadline=None)
@given(c=st.integers(2, 10), keep=st.floats(0.01, 1.0), seed=st.integers(0, 2**31 - 1),
       data=st.data())
def test_imbalance_properties(c, keep, seed, data):
    classes = sorted(data.draw(st.sets(st.integers(0, c - 1), min_size=1, max_size=c)))
    y = labels_for(c, 400)
    noisy, is_noisy = _deterministic(y, "imbalance", 0.0, c, seed, classes=classes, keep_fraction=keep)
    assert not is_noisy.any()
    for k in range(c):
        kept = int((noisy == k).sum())
        # Exactly the requested fraction (rounded) of a subsampled class survives; others all do.
        assert kept == (round(keep * 400) if k in classes else 400)
    assert np.array_equal(noisy[noisy >= 0], y[noisy >= 0])


@pytest.mark.parametrize(("kind", "rate", "kw", "field"), [
    ("none", 0.4, {}, "dataset.noise.rate"),
    ("imbalance", 0.3, {"classes": [0]}, "dataset.noise.rate"),
    ("asymmetric", 0.3, {"transition": np.eye(3).tolist()}, "dataset.noise.rate"),
    ("symmetric", 0.3, {"classes": [1]}, "dataset.noise.classes"),
    ("pairflip", 0.3, {"transition": np.eye(3).tolist()}, "dataset.noise.transition"),
], ids=["none-rate", "imbalance-rate", "matrix-rate", "symmetric-classes", "pairflip-transition"])
def test_settings_the_kind_would_ignore_are_rejected(kind, rate, kw, field):
    # Without the check each of these ran and silently dropped the setting.
    with pytest.raises(ConfigError) as err:
        corrupt_labels(labels_for(3), kind, rate, 3, seed=0, **kw)
    assert str(err.value).startswith(field + ":")
