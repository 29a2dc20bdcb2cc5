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
    assert set(NOISE.names()) == {"none", "symmetric", "pairflip", "asymmetric", "imbalance"}
