"""Losses against independent references: autograd of the formula losses (float64), the
paper's Eq. 7 in numpy (float64) and in mpmath (50 digits, unbounded exponent) for the float32
stability checks, and one shared tester run over every name in the registry."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import example, given, settings
from hypothesis import strategies as st

from dm_core.losses import (
    LOSSES,
    CoTeachingLoss,
    DMLoss,
    LossStats,
    SchemeLoss,
    concentration,
    dm_loss,
    list_losses,
    make_loss,
    scheme_loss,
)
from dm_core.registry import ConfigError
from dm_core.schemes import SCHEMES, make_scheme

ALL_LOSSES = list_losses()
SCHEME_LOSSES = [n for n in ALL_LOSSES if LOSSES.get(n).extra["family"] == "scheme"]


def _batch(n=16, c=7, dtype=torch.float64, seed=0, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    logits = scale * torch.randn(n, c, generator=g, dtype=dtype)
    targets = torch.randint(0, c, (n,), generator=g)
    return logits, targets


def _call(loss_fn, logits, targets):
    """Call a loss as the training loop does: a loss that keeps per-example state (ELR) gets a
    table sized to the batch and each example's index; a two-network method (co-teaching) gets
    ``logits`` as its first network's and a fixed other batch as its second's (its statistics
    describe the first); the others take logits and targets."""
    if isinstance(loss_fn, CoTeachingLoss):
        second = torch.flip(logits.detach(), dims=[0]) * 0.5
        return loss_fn(torch.stack([logits, second]), targets, epoch=100.0)
    if not hasattr(loss_fn, "bind_examples"):
        return loss_fn(logits, targets)
    if tuple(loss_fn.target.shape) != tuple(logits.shape):
        loss_fn.bind_examples(*logits.shape)
    return loss_fn(logits, targets, index=torch.arange(len(targets)))


def _grad(loss_fn, logits, targets):
    z = logits.detach().clone().requires_grad_(True)
    out = _call(loss_fn, z, targets)
    out.backward()
    return out, z.grad


def _p_y(z, y):
    return torch.softmax(z, dim=1).gather(1, y[:, None]).squeeze(1)


# -- THE identity: scheme weights + mean over the batch + eps = 0 == the formula loss --------

FORMULAS = {
    "cce": lambda z, y: F.cross_entropy(z, y),
    "mae": lambda z, y: (1 - _p_y(z, y)).mean(),
    # the MSE on p_i alone, (1 - p_y)^2: a scheme; see test_full_vector_mse_is_not_a_scheme
    "mse": lambda z, y: ((1 - _p_y(z, y)) ** 2).mean(),
    "gce": lambda z, y: ((1 - _p_y(z, y) ** 0.7) / 0.7).mean(),
}


@pytest.mark.parametrize("name", list(FORMULAS))
@pytest.mark.parametrize("seed", [0, 1])
def test_scheme_gradient_equals_formula_gradient(name, seed):
    logits, targets = _batch(seed=seed)
    _, expected = _grad(FORMULAS[name], logits, targets)
    _, got = _grad(SchemeLoss(make_scheme(name), normalise=False, eps=0.0), logits, targets)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-15)
    _, registry = _grad(make_loss(name), logits, targets)  # the registry's plain losses
    torch.testing.assert_close(registry, expected, rtol=1e-12, atol=1e-15)


def test_full_vector_mse_is_not_a_scheme():
    """sum_j (p_j - y_j)^2 depends on how the wrong mass is spread, so its gradient is not
    along CCE's direction; (1 - p_y)^2, the MSE on p_y alone, is the one with w = 4p(1-p)^2."""
    logits, targets = _batch(seed=3)
    full = lambda z, y: ((torch.softmax(z, 1) - F.one_hot(y, z.shape[1])) ** 2).sum(1).mean()  # noqa: E731
    _, expected = _grad(full, logits, targets)
    _, got = _grad(make_loss("mse"), logits, targets)
    assert not torch.allclose(got, expected, rtol=1e-3)


# -- DM against the paper's Eq. 7 (float64 numpy) ----------------------------------------------


def eq7_numpy(logits, targets, weight, eps, normalise=True):
    """Eq. 7 as the authors' code computes it: (w_i / sum w) (p - onehot) / (2(1 - p_i) + eps)."""
    z = logits.detach().double().numpy()
    y = targets.numpy()
    e = np.exp(z - z.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    p_y = p[np.arange(len(y)), y]
    w = weight(p_y)
    coef = w / w.sum() if normalise else w / len(y)
    onehot = np.eye(z.shape[1])[y]
    grad = coef[:, None] * (p - onehot) / (2 * (1 - p_y)[:, None] + eps)
    margin_cap = (1 - p_y) / ((1 - p_y) + eps / 2)
    return grad, coef * margin_cap


@pytest.mark.parametrize(("lam", "beta"), [(0.5, 8.0), (0.0, 12.0), (2.0, 20.0), (1.0, -5.0), (1.0, 0.0)],
                         ids=["default", "lam0", "lam2-beta20", "beta-negative", "beta0"])
@pytest.mark.parametrize("eps", [0.0, 1e-6, 1e-2], ids=["eps0", "eps1e-6", "eps1e-2"])
def test_dm_gradient_matches_eq7(lam, beta, eps):
    logits, targets = _batch(n=12, c=5, seed=7)
    loss_fn = DMLoss(lam=lam, beta=beta, eps=eps)
    _, got = _grad(loss_fn, logits, targets)
    expected, coef = eq7_numpy(logits, targets, lambda p: np.exp(beta * p**lam * (1 - p)), eps)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10, atol=1e-15)
    row_l1 = got.abs().sum(dim=1).numpy()
    np.testing.assert_allclose(row_l1, coef, rtol=1e-10)
    np.testing.assert_allclose(loss_fn.last.weight.numpy(), coef, rtol=1e-10)
    assert row_l1.sum() <= 1 + 1e-12
    if eps == 0:
        assert row_l1.sum() == pytest.approx(1.0, abs=1e-12)  # one unit of emphasis per batch


def test_functional_and_module_twins_agree():
    logits, targets = _batch(seed=2)
    _, a = _grad(DMLoss(lam=1.0, beta=6.0, eps=1e-4), logits, targets)
    _, b = _grad(lambda z, y: dm_loss(z, y, lam=1.0, beta=6.0, eps=1e-4), logits, targets)
    _, c = _grad(lambda z, y: scheme_loss(z, y, make_scheme("dm", lam=1.0, beta=6.0), True, 1e-4),
                 logits, targets)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(a, c, rtol=0, atol=0)


def test_normalise_false_divides_by_batch_size():
    logits, targets = _batch(n=10, seed=4)
    loss_fn = SchemeLoss("exponential", normalise=False, eps=0.0)
    _, got = _grad(loss_fn, logits, targets)
    expected, coef = eq7_numpy(logits, targets, lambda p: np.exp(2.0 * (1 - p)), 0.0, normalise=False)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(loss_fn.last.weight.numpy(), coef, rtol=1e-10)


def test_forward_value_is_the_surrogate():
    logits, targets = _batch(n=6, seed=5)
    loss_fn = DMLoss()
    value = loss_fn(logits, targets)
    p = _p_y(logits, targets)
    surrogate = (loss_fn.last.weight * 0.5 * torch.log((1 - p) / p)).sum()
    torch.testing.assert_close(value, surrogate, rtol=1e-12, atol=1e-12)


# -- float32 stability against a high-precision reference --------------------------------------

# Default-parameter weights of every scheme in mpmath, as functions of (p, 1 - p).
MP_WEIGHTS = {
    "dm": lambda p, om: mpmath.exp(8 * mpmath.sqrt(p) * om),
    "normal": lambda p, om: mpmath.exp(-8 * p * (p - 1)),
    "exponential": lambda p, om: mpmath.exp(2 * om),
    "beta": lambda p, om: p * om,
    "cce": lambda p, om: 2 * om,
    "mae": lambda p, om: 2 * p * om,
    "mse": lambda p, om: 4 * p * om**2,
    "gce": lambda p, om: 2 * p ** mpmath.mpf(0.7) * om,
}


def eq7_mpmath(logits, targets, weight, eps, normalise):
    """Eq. 7 at 50 digits; 1 - p_i is summed from the other classes, so it is exact at any margin."""
    with mpmath.workdps(50):
        return _eq7_mpmath(logits, targets, weight, eps, normalise)


def _eq7_mpmath(logits, targets, weight, eps, normalise):
    rows, coefs = [], []
    for z_row, y in zip(logits.double().tolist(), targets.tolist(), strict=True):
        top = max(z_row)
        e = [mpmath.exp(mpmath.mpf(v) - top) for v in z_row]
        p = [v / sum(e) for v in e]
        one_minus = sum(v for j, v in enumerate(p) if j != y)
        rows.append((p, y, one_minus))
        coefs.append(weight(p[y], one_minus))
    total = sum(coefs) if normalise else len(coefs)
    grad = []
    for (p, y, one_minus), w in zip(rows, coefs, strict=True):
        scale = w / total / (2 * one_minus + eps)
        grad.append([float(scale * (-one_minus if j == y else v)) for j, v in enumerate(p)])
    return torch.tensor(grad, dtype=torch.float64)


def _confident_batch(margin, c=5):
    """Correct-class confident, wrong-class confident, and ordinary rows, in float32."""
    g = torch.Generator().manual_seed(11)
    logits = torch.randn(9, c, generator=g)
    targets = torch.randint(0, c, (9,), generator=g)
    for i in range(3):  # correct class ahead by `margin`
        logits[i, targets[i]] += margin
    for i in range(3, 6):  # another class ahead by `margin`
        logits[i, (targets[i] + 1) % c] += margin
    return logits, targets


@pytest.mark.parametrize("margin", [100.0, 1000.0], ids=["margin100", "margin1000"])
@pytest.mark.parametrize("name", SCHEME_LOSSES)
def test_scheme_losses_float32_stable_and_exact(name, margin):
    logits, targets = _confident_batch(margin)
    loss_fn = make_loss(name)
    out, got = _grad(loss_fn, logits, targets)
    assert torch.isfinite(out) and torch.isfinite(got).all()
    expected = eq7_mpmath(logits, targets, MP_WEIGHTS[loss_fn.scheme.name], loss_fn.eps,
                          loss_fn.normalise)
    torch.testing.assert_close(got.double(), expected, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("margin", [100.0, 1000.0], ids=["margin100", "margin1000"])
def test_exact_dm_without_cap_keeps_direction_when_one_minus_p_underflows(margin):
    """eps = 0: 1 - p_i is 0 in float32 for the confident rows, yet their gradient is exact."""
    logits, targets = _confident_batch(margin)
    out, got = _grad(DMLoss(eps=0.0), logits, targets)
    assert torch.isfinite(out) and torch.isfinite(got).all()
    expected = eq7_mpmath(logits, targets, MP_WEIGHTS["dm"], 0.0, True)
    torch.testing.assert_close(got.double(), expected, rtol=1e-4, atol=1e-7)
    assert got.abs().sum().item() == pytest.approx(1.0, rel=1e-5)


@pytest.mark.parametrize("beta", [60.0, 200.0, -200.0])
def test_large_beta_does_not_overflow(beta):
    logits, targets = _batch(n=32, dtype=torch.float32, seed=6)
    loss_fn = DMLoss(lam=0.5, beta=beta)
    out, got = _grad(loss_fn, logits, targets)
    assert torch.isfinite(out) and torch.isfinite(got).all()
    assert loss_fn.last.weight.sum().item() == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("margin", [100.0, 1000.0], ids=["margin100", "margin1000"])
@pytest.mark.parametrize("name", ALL_LOSSES)
def test_every_loss_is_finite_when_confident(name, margin):
    logits, targets = _confident_batch(margin)
    out, got = _grad(make_loss(name), logits, targets)
    assert torch.isfinite(out) and torch.isfinite(got).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["float16", "bfloat16"])
def test_half_precision_logits_are_computed_in_float32(dtype):
    logits, targets = _confident_batch(30.0)
    loss_fn = DMLoss()
    out, got = _grad(loss_fn, logits.to(dtype), targets)
    assert out.dtype == torch.float32 and got.dtype == dtype
    assert torch.isfinite(got.float()).all()
    assert loss_fn.last.p.dtype == torch.float32


# -- the shared tester over the registry ------------------------------------------------------


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_registry_loss_defaults_backward_and_stats(name):
    entry = LOSSES.get(name)
    assert entry.description and entry.equation
    assert entry.extra["family"] in {"scheme", "baseline", "method"}
    if entry.extra["family"] == "scheme":
        assert entry.extra["scheme"] in SCHEMES
    for prm in entry.params:
        assert prm.help and prm.ui_low is not None and prm.ui_high is not None, prm.name

    loss_fn = make_loss(name)
    assert isinstance(loss_fn, torch.nn.Module) and loss_fn.last is None
    logits, targets = _batch(n=12, c=6, dtype=torch.float32, seed=8)
    out, got = _grad(loss_fn, logits, targets)
    assert out.shape == () and torch.isfinite(out) and torch.isfinite(got).all()
    stats = loss_fn.last
    assert isinstance(stats, LossStats)
    assert stats.p.shape == (12,) and stats.weight.shape == (12,)
    assert not stats.p.requires_grad and not stats.weight.requires_grad
    torch.testing.assert_close(stats.p, _p_y(logits, targets))
    # the weight actually applied is the L1 norm of each example's logit gradient
    torch.testing.assert_close(stats.weight, got.abs().sum(dim=1), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("mode", ["no_grad", "inference_mode"])
@pytest.mark.parametrize("name", ALL_LOSSES)
def test_evaluation_without_autograd_still_records_stats(name, mode):
    logits, targets = _batch(n=5, c=4, dtype=torch.float32, seed=9)
    loss_fn = make_loss(name)
    _, got = _grad(loss_fn, logits, targets)
    expected = loss_fn.last.weight
    with getattr(torch, mode)():
        out = _call(loss_fn, logits, targets)
    assert torch.isfinite(out)
    torch.testing.assert_close(loss_fn.last.weight.clone(), expected)


def test_registry_names_and_metadata():
    assert ALL_LOSSES == ["cce", "mae", "mse", "gce", "cce-dn", "mae-dn", "mse-dn", "gce-dn", "dm",
                          "dm-normal", "dm-exponential", "dm-beta", "label-smoothing", "boot-soft",
                          "boot-hard", "sce", "focal", "co-teaching", "elr"]
    assert LOSSES.get("dm").defaults() == {"lam": 0.5, "beta": 8.0, "eps": 1e-6}
    assert LOSSES.get("dm-beta").extra["scheme"] == "beta"
    assert LOSSES.get("sce").defaults() == {"alpha": 0.1, "beta": 1.0, "A": -4.0}
    assert LOSSES.get("boot-soft").defaults() == {"beta": 0.95}
    assert LOSSES.get("boot-hard").defaults() == {"beta": 0.8}
    assert LOSSES.get("focal").defaults() == {"gamma": 2.0}
    for plain in ("cce", "mae", "mse", "gce"):
        loss_fn = make_loss(plain)
        assert (loss_fn.normalise, loss_fn.eps) == (False, 0.0)
        loss_dn = make_loss(plain + "-dn")
        assert (loss_dn.normalise, loss_dn.eps) == (True, 1e-6)
    assert isinstance(make_loss("dm", lam=2, beta=4), DMLoss)


@pytest.mark.parametrize(("name", "params", "field", "range_text"), [
    ("dm", {"lam": -1}, "lam", "[0, inf)"),
    ("gce", {"q": 0}, "q", "(0, 1]"),
    ("gce-dn", {"q": 1.5}, "q", "(0, 1]"),
    ("dm", {"eps": -1.0}, "eps", "[0, inf)"),
    ("dm-beta", {"alpha": 0.0}, "alpha", "(0, inf)"),
    ("dm-normal", {"psi": 2.0}, "psi", "[0, 1]"),
    ("label-smoothing", {"epsilon": 1.0}, "epsilon", "[0, 1)"),
    ("boot-soft", {"beta": 1.5}, "beta", "[0, 1]"),
    ("sce", {"A": 1.0}, "A", "(-inf, 0)"),
    ("focal", {"gamma": -1.0}, "gamma", "[0, inf)"),
    ("dm", {"gamma": 1.0}, "gamma", "allowed: lam, beta, eps"),
    ("cce", {"eps": 1e-6}, "eps", "allowed: none"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_bad_params_raise_config_error(name, params, field, range_text):
    with pytest.raises(ConfigError) as err:
        make_loss(name, **params)
    assert field in str(err.value) and range_text in str(err.value)


def test_direct_construction_is_validated_too():
    with pytest.raises(ConfigError, match=r"lam.*\[0, inf\)"):
        DMLoss(lam=-0.5)
    with pytest.raises(ConfigError, match=r"eps.*\[0, inf\)"):
        SchemeLoss("cce", eps=-1.0)
    with pytest.raises(ConfigError, match=r"gamma.*\[0, inf\)"):
        type(make_loss("focal"))(gamma=-2.0)
    with pytest.raises(ValueError, match="eps"):
        scheme_loss(*_batch(), "cce", eps=float("nan"))
    with pytest.raises(ConfigError, match="unknown name 'nope'"):
        make_loss("nope")


@pytest.mark.parametrize(("build", "params"), [
    (lambda **kw: make_loss("dm", **kw), {"lam": 1.0, "beta": 4.0, "eps": 0.0}),
    (DMLoss, {"lam": 1.0, "beta": 4.0, "eps": 0.0}),
    (lambda **kw: make_loss("gce-dn", **kw), {"q": 0.5}),
    (lambda **kw: make_loss("elr", **kw), {"lam": 2.0}),
    (lambda **kw: type(make_loss("focal"))(**kw), {"gamma": 1.0}),
    (lambda **kw: SchemeLoss(make_scheme("mae"), eps=kw["eps"]), {"eps": 0.0}),
    (lambda **kw: make_scheme("dm", **kw), {"lam": 2.0}),
], ids=["make_loss-dm", "DMLoss", "make_loss-gce-dn", "make_loss-elr", "FocalLoss",
        "SchemeLoss", "make_scheme"])
def test_each_value_is_checked_once_per_entry_point(monkeypatch, build, params):
    """One check through the registry's records per construction, whichever the entry point
    (before, ``make_loss("dm", lam=...)`` checked λ three times on its way to the scheme)."""
    from dm_core.registry import Param, Registry

    checked: list[str] = []
    validate, check = Registry.validate_params, Param.check

    def counting_validate(self, name, given, *args, **kwargs):
        checked.extend(k for k in given if given[k] is not None)
        return validate(self, name, given, *args, **kwargs)

    def counting_check(self, value, where):
        checked.append(self.name)
        return check(self, value, where)

    monkeypatch.setattr(Registry, "validate_params", counting_validate)
    monkeypatch.setattr(Param, "check", counting_check)
    make_loss("cce")  # the first create imports the factories' module: not counted
    checked.clear()
    build(**params)
    assert sorted(checked) == sorted(params)


def test_a_loss_class_takes_its_defaults_and_parameters_from_its_declaration():
    """Each class's signature is its registry entry's parameters with the entry's defaults,
    and a class whose ``__init__`` disagrees with its entry is refused at import."""
    import inspect

    from dm_core.losses import _declared

    for name in ALL_LOSSES:
        cls = type(make_loss(name))
        if LOSSES.get(name).extra["family"] == "scheme" and cls is SchemeLoss:
            continue
        shown = {k: p.default for k, p in inspect.signature(cls).parameters.items()}
        assert shown == LOSSES.get(name).defaults(), name
    assert list(inspect.signature(SchemeLoss).parameters) == ["scheme", "normalise", "eps"]

    with pytest.raises(TypeError, match=r"takes \['gamma', 'alpha'\].*declares \['gamma'\]"):
        @_declared("focal")
        class _Wrong(torch.nn.Module):
            def __init__(self, gamma, alpha):
                super().__init__()


@pytest.mark.parametrize("name", ALL_LOSSES)
@pytest.mark.parametrize("bad", [-1, 6], ids=["negative", "equal-to-classes"])
def test_out_of_range_targets_raise_value_error(name, bad):
    logits, targets = _batch(n=4, c=6, dtype=torch.float32)
    targets[2] = bad
    with pytest.raises(ValueError, match=rf"class index {bad} is out of range; must be in \[0, 5\]"):
        _call(make_loss(name), logits, targets)


@pytest.mark.parametrize(("logits", "targets", "message"), [
    (torch.zeros(4), torch.zeros(4, dtype=torch.long), "shape \\(batch, classes\\)"),
    (torch.zeros(4, 1), torch.zeros(4, dtype=torch.long), "at least 2 classes"),
    (torch.zeros(0, 3), torch.zeros(0, dtype=torch.long), "empty"),
    (torch.zeros(4, 3), torch.zeros(3, dtype=torch.long), "shape \\(4,\\)"),
    (torch.zeros(4, 3), torch.zeros(4), "integer class indices"),
    (torch.zeros(4, 3, dtype=torch.long), torch.zeros(4, dtype=torch.long), "floating-point"),
], ids=["1d-logits", "one-class", "empty", "length-mismatch", "float-targets", "int-logits"])
def test_malformed_inputs_raise_value_error(logits, targets, message):
    with pytest.raises(ValueError, match=message):
        DMLoss()(logits, targets)


# -- property: DM gradient rows have norm c_i and Eq. 7's direction ----------------------------


@st.composite
def _dm_problem(draw):
    n = draw(st.integers(1, 6))
    c = draw(st.integers(2, 6))
    values = st.floats(-25.0, 25.0, allow_nan=False, allow_infinity=False)
    logits = torch.tensor(draw(st.lists(st.lists(values, min_size=c, max_size=c), min_size=n,
                                        max_size=n)), dtype=torch.float64)
    targets = torch.tensor(draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n)))
    lam = draw(st.floats(0.0, 3.0))
    beta = draw(st.floats(-10.0, 30.0))
    eps = draw(st.sampled_from([0.0, 1e-6, 1e-3]))
    return logits, targets, lam, beta, eps


@settings(max_examples=60, deadline=None, database=None)
@given(_dm_problem())
# Found by this test: d = lse_{j≠y} z - z_y just above 20, where softplus turns linear and
# log(1 - p) came out as 0 instead of -2e-9.
@example((torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 20.0]], dtype=torch.float64),
          torch.tensor([0, 0]), 0.0, 1.0, 0.0))
def test_dm_gradient_rows_have_eq7_norm_and_direction(problem):
    logits, targets, lam, beta, eps = problem
    _, got = _grad(lambda z, y: dm_loss(z, y, lam=lam, beta=beta, eps=eps), logits, targets)
    z = logits.numpy()
    e = np.exp(z - z.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    y = targets.numpy()
    p_y = p[np.arange(len(y)), y]
    one_minus = (p * (1 - np.eye(z.shape[1])[y])).sum(axis=1)  # 1 - p_y without cancellation
    w = np.exp(beta * p_y**lam * one_minus)
    coef = w / w.sum() * one_minus / (one_minus + eps / 2)
    norms = got.abs().sum(dim=1).numpy()
    np.testing.assert_allclose(norms, coef, rtol=1e-9, atol=1e-300)
    onehot = np.eye(z.shape[1])[y]
    # Eq. 7's d_i = (p - onehot) / (2(1 - p_i)), with p_i - 1 written as -(1 - p_i); ||d_i||_1 = 1
    direction = (p * (1 - onehot) - onehot * one_minus[:, None]) / (2 * one_minus[:, None])
    live = coef > 1e-250
    np.testing.assert_allclose(got.numpy()[live] / coef[live, None], direction[live],
                               rtol=1e-8, atol=1e-12)
    assert math.isclose(norms.sum(), coef.sum(), rel_tol=1e-9)


# ---------------------------------------------------------------------- concentration

@given(st.lists(st.floats(0.0, 1e3, allow_nan=False), min_size=1, max_size=300))
@example([1.0, 1.0, 2.0, 0.0])
@example([0.0, 0.0, 5.0])
def test_concentration_matches_a_float64_reference(weights):
    given = torch.tensor(weights, dtype=torch.float32)
    w = given.double().numpy()  # the reference sees the same (float32-rounded) weights
    if w.sum() == 0:
        return
    ess, share = concentration(given)
    reference_ess = w.sum() ** 2 / (w ** 2).sum() / len(w)
    assert float(ess) == pytest.approx(reference_ess, rel=1e-5, abs=1e-30)
    assert float(share) == pytest.approx(w.max() / w.sum(), rel=1e-5, abs=1e-30)


def test_concentration_of_equal_weights_and_of_one_example():
    n = 64
    assert [float(v) for v in concentration(torch.ones(n))] == [1.0, 1.0 / n]
    one = torch.zeros(n)
    one[7] = 0.3
    assert [float(v) for v in concentration(one)] == [1.0 / n, 1.0]


@pytest.mark.parametrize(("eps", "margin"), [(1e-6, 14.5087), (1e-8, 19.1138)])
def test_margin_cap_halves_the_gradient_at_the_documented_margin(eps, margin):
    """m_i = 1/2 at the logit margin log((1 - eps/2)/(eps/2)): measured on the gradient of a
    one-example batch (its normalised weight is 1, so the gradient is m_i times eps=0's)."""
    assert math.log((1 - eps / 2) / (eps / 2)) == pytest.approx(margin, abs=1e-4)
    exact = math.log((1 - eps / 2) / (eps / 2))
    grads = []
    for cap in (eps, 0.0):
        logits = torch.tensor([[exact, 0.0]], dtype=torch.float64, requires_grad=True)
        dm_loss(logits, torch.tensor([0]), lam=1.0, beta=12.0, eps=cap).backward()
        grads.append(logits.grad.abs().sum().item())
    assert grads[0] / grads[1] == pytest.approx(0.5, rel=1e-9)
