"""Instance-dependent noise (Xia et al. 2020) against a reference computed here in float64 with
numpy and scipy, one example at a time, straight from the paper's recipe."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import truncnorm

from dm_core.data import load_dataset
from dm_core.noise import corrupt_labels, instance_transition
from dm_core.registry import ConfigError

LABELS = np.array([0, 1, 2, 2, 1, 0])
FEATURES = np.array([[0.5, -1.0], [2.0, 0.3], [-0.7, 0.1], [1.5, 1.5], [0.0, -2.0], [-1.2, 0.8]])


def reference(labels, x, rate, k, seed):
    """(p, rng) by the recipe: q_i ~ N(rate, 0.1²) truncated to [0, 1]; W ~ N(0, 1) of shape
    K × d × K; s = x_i · W[y_i] with s[y_i] = -inf; p_i = q_i softmax(s); p_i[y_i] += 1 - q_i.
    ``rng`` is left where the generator leaves it, before the labels are drawn."""
    rng = np.random.default_rng(seed)
    q = truncnorm(-rate / 0.1, (1 - rate) / 0.1, loc=rate, scale=0.1).rvs(size=len(labels),
                                                                          random_state=rng)
    w = rng.standard_normal((k, x.shape[1], k))
    p = np.zeros((len(labels), k))
    for i, (xi, yi) in enumerate(zip(x, labels, strict=True)):
        s = xi @ w[yi]
        s[yi] = -np.inf
        soft = np.exp(s - s.max())
        p[i] = q[i] * soft / soft.sum()
        p[i, yi] += 1 - q[i]
    return p, rng


def test_transition_matches_the_recipe_computed_by_hand():
    want, _ = reference(LABELS, FEATURES, 0.4, 3, seed=7)
    got = instance_transition(LABELS, FEATURES, 0.4, 3, np.random.default_rng(7))
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    assert np.allclose(got.sum(axis=1), 1.0)


def test_drawn_labels_follow_the_recipe_exactly():
    """The labels are drawn after q and W, one uniform u in (0, 1] per example, as the first
    class whose cumulative probability reaches u."""
    p, rng = reference(LABELS, FEATURES, 0.4, 3, seed=7)
    u = 1.0 - rng.random(len(LABELS))
    want = np.argmax(np.cumsum(p, axis=1) >= u[:, None], axis=1)
    noisy, is_noisy = corrupt_labels(LABELS, "instance", 0.4, 3, seed=7, features=FEATURES)
    assert np.array_equal(noisy, want)
    assert np.array_equal(is_noisy, noisy != LABELS)


def test_with_two_classes_each_example_flips_with_its_own_rate():
    """With one other class the masked softmax is 1 whatever W is: p_i = (1 - q_i, q_i)."""
    y = np.array([0, 1, 1, 0])
    x = np.array([[3.0], [-1.0], [0.2], [10.0]])
    q = truncnorm(-0.3 / 0.1, 0.7 / 0.1, loc=0.3, scale=0.1).rvs(size=4, random_state=np.random.default_rng(0))
    p = instance_transition(y, x, 0.3, 2, np.random.default_rng(0))
    np.testing.assert_allclose(p[np.arange(4), 1 - y], q, rtol=1e-12)
    np.testing.assert_allclose(p[np.arange(4), y], 1 - q, rtol=1e-12)


def test_drawn_labels_have_the_distribution_of_p():
    """Many copies of three examples: each class's labels are drawn with the mean of its rows
    of p (5 binomial standard deviations)."""
    copies = 20000
    y = np.tile([0, 1, 2], copies)
    x = np.tile(FEATURES[:3], (copies, 1))
    p, _ = reference(y, x, 0.5, 3, seed=11)
    noisy, _ = corrupt_labels(y, "instance", 0.5, 3, seed=11, features=x)
    for k in range(3):
        expected = p[y == k].mean(axis=0)
        got = np.bincount(noisy[y == k], minlength=3) / copies
        sd = np.sqrt(expected * (1 - expected) / copies)
        assert np.all(np.abs(got - expected) <= 5 * sd + 1e-9), (k, got, expected)


def test_deterministic_per_seed_and_different_across_seeds():
    rng = np.random.default_rng(0)
    y, x = rng.integers(0, 5, 2000), rng.normal(size=(2000, 8))
    a = corrupt_labels(y, "instance", 0.4, 5, seed=3, features=x)
    b = corrupt_labels(y, "instance", 0.4, 5, seed=3, features=x)
    c = corrupt_labels(y, "instance", 0.4, 5, seed=4, features=x)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize("rate", [0.2, 0.4, 0.6])
def test_actual_rate_is_the_requested_one_over_many_examples(rate):
    """Example i flips with probability q_i, so the actual rate is the mean of the truncated
    normal: within 5 binomial standard deviations of it, and within 0.01 of the rate."""
    rng = np.random.default_rng(1)
    n = 40000
    y, x = rng.integers(0, 10, n), rng.normal(size=(n, 16))
    noisy, is_noisy = corrupt_labels(y, "instance", rate, 10, seed=5, features=x)
    mean_q = truncnorm(-rate / 0.1, (1 - rate) / 0.1, loc=rate, scale=0.1).mean()
    assert abs(mean_q - rate) < 0.01
    assert abs(is_noisy.mean() - mean_q) <= 5 * np.sqrt(mean_q * (1 - mean_q) / n)
    assert np.all((noisy >= 0) & (noisy < 10))


def test_rate_zero_corrupts_nothing():
    y = np.arange(300) % 3
    x = np.random.default_rng(0).normal(size=(300, 4))
    noisy, is_noisy = corrupt_labels(y, "instance", 0.0, 3, seed=0, features=x)
    assert np.array_equal(noisy, y) and not is_noisy.any()


def test_features_do_not_change_the_other_kinds():
    y = np.arange(1000) % 5
    x = np.random.default_rng(0).normal(size=(1000, 3))
    for kind in ("symmetric", "pairflip"):
        plain = corrupt_labels(y, kind, 0.3, 5, seed=2)
        given = corrupt_labels(y, kind, 0.3, 5, seed=2, features=x)
        assert np.array_equal(plain[0], given[0])


def test_wide_inputs_over_many_classes():
    """CIFAR-100's shape, d = 3072 and K = 100, on a few examples: W is drawn one class at a
    time, the same values as one K × d × K draw."""
    rng = np.random.default_rng(0)
    y, x = rng.integers(0, 100, 40), rng.normal(size=(40, 3072)).astype(np.float32)
    want, _ = reference(y, x.astype(np.float64), 0.4, 100, seed=9)
    got = instance_transition(y, x, 0.4, 100, np.random.default_rng(9))
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(("call", "field", "says"), [
    (lambda: corrupt_labels(LABELS, "instance", 0.4, 3, seed=0), "dataset.noise.kind", "features="),
    (lambda: corrupt_labels(LABELS, "instance", 0.4, 3, seed=0, features=FEATURES[:4]), "features",
     "6 rows"),
    (lambda: corrupt_labels(np.zeros(6, int), "instance", 0.4, 1, seed=0, features=FEATURES),
     "dataset.noise.kind", "at least 2 classes"),
    (lambda: corrupt_labels(LABELS, "instance", 1.2, 3, seed=0, features=FEATURES), "dataset.noise.rate",
     "[0, 1)"),
    (lambda: corrupt_labels(LABELS, "instance", 0.4, 3, seed=0, features=FEATURES, classes=[1]),
     "dataset.noise.classes", "instance takes: rate"),
], ids=["no-features", "short-features", "one-class", "rate", "ignored-setting"])
def test_bad_input_names_its_field(call, field, says):
    with pytest.raises(ConfigError) as err:
        call()
    assert str(err.value).startswith(field + ":") and says in str(err.value)


def test_load_dataset_corrupts_by_the_normalised_training_inputs():
    """The features are the training split's inputs as the model sees them (normalised,
    flattened); the validation split stays clean."""
    b = load_dataset("digits", seed=3, noise_kind="instance", noise_rate=0.3, val_fraction=0.2)
    again, is_noisy = corrupt_labels(b.y_train_clean.numpy(), "instance", 0.3, 10, seed=3,
                                     features=b.x_train.flatten(1).numpy())
    assert np.array_equal(again, b.y_train.numpy()) and np.array_equal(is_noisy, b.is_noisy.numpy())
    assert torch.equal(b.is_noisy, b.y_train != b.y_train_clean)
    assert abs(b.actual_noise_rate - 0.3) < 0.06
    assert torch.equal(load_dataset("digits", seed=3, noise_kind="instance", noise_rate=0.3,
                                    val_fraction=0.2).y_train, b.y_train)
