"""Schemes (EDFs) against independent references: float64 numpy formulas, closed-form modes,
brute-force grids, scipy quadrature and the losses each scheme is known to imply."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from scipy import integrate

import dm_core.schemes as schemes_module
from dm_core.registry import ConfigError
from dm_core.schemes import SCHEMES, Scheme, list_schemes, make_scheme


def _ones(p):
    return np.ones_like(p)


# id, scheme name, params, float64 numpy w(p) written from the paper, closed-form (or known) mode
CASES: list[tuple[str, str, dict, Callable[[np.ndarray], np.ndarray], float]] = [
    ("dm-default", "dm", {"lam": 0.5, "beta": 8.0}, lambda p: np.exp(8 * p**0.5 * (1 - p)), 1 / 3),
    ("dm-lam0", "dm", {"lam": 0.0, "beta": 8.0}, lambda p: np.exp(8 * (1 - p)), 0.0),
    ("dm-lam2-beta20", "dm", {"lam": 2.0, "beta": 20.0}, lambda p: np.exp(20 * p**2 * (1 - p)), 2 / 3),
    ("dm-flat", "dm", {"lam": 1.0, "beta": 0.0}, _ones, 0.5),
    # beta < 0, lam > 0: w(0) = w(1) = 1 -- a tie, resolved to the smaller p
    ("dm-negative-beta", "dm", {"lam": 1.0, "beta": -5.0}, lambda p: np.exp(-5 * p * (1 - p)), 0.0),
    ("dm-lam0-negative-beta", "dm", {"lam": 0.0, "beta": -5.0}, lambda p: np.exp(-5 * (1 - p)), 1.0),
    ("normal", "normal", {"psi": 0.3, "beta": 10.0}, lambda p: np.exp(-10 * p * (p - 0.6)), 0.3),
    ("normal-negative-beta", "normal", {"psi": 0.3, "beta": -4.0},
     lambda p: np.exp(4 * p * (p - 0.6)), 1.0),
    ("exponential", "exponential", {"beta": 3.0}, lambda p: np.exp(3 * (1 - p)), 0.0),
    ("exponential-negative", "exponential", {"beta": -3.0}, lambda p: np.exp(-3 * (1 - p)), 1.0),
    ("beta", "beta", {"alpha": 3.0, "eta": 2.0}, lambda p: p**2 * (1 - p), 2 / 3),
    ("beta-pole-at-0", "beta", {"alpha": 0.5, "eta": 2.0}, lambda p: p**-0.5 * (1 - p), 0.0),
    ("beta-pole-at-1", "beta", {"alpha": 2.0, "eta": 0.5}, lambda p: p * (1 - p) ** -0.5, 1.0),
    ("beta-uniform", "beta", {"alpha": 1.0, "eta": 1.0}, _ones, 0.5),
    ("cce", "cce", {}, lambda p: 2 * (1 - p), 0.0),
    ("mae", "mae", {}, lambda p: 2 * p * (1 - p), 0.5),
    ("mse", "mse", {}, lambda p: 4 * p * (1 - p) ** 2, 1 / 3),
    ("gce", "gce", {"q": 0.7}, lambda p: 2 * p**0.7 * (1 - p), 0.7 / 1.7),
    ("gce-q0.3", "gce", {"q": 0.3}, lambda p: 2 * p**0.3 * (1 - p), 0.3 / 1.3),
]
IDS = [c[0] for c in CASES]
POLES = {"beta-pole-at-0", "beta-pole-at-1"}
GRID = np.linspace(0.0, 1.0, 101)


def _np_weight(fn, p):
    with np.errstate(divide="ignore"):
        return fn(np.asarray(p, dtype=np.float64))


def _np_moments(fn):
    """(normaliser, mean, variance) of w by scipy quadrature of the numpy formula."""
    quad = lambda f: integrate.quad(f, 0.0, 1.0, limit=200, epsrel=1e-11)[0]  # noqa: E731
    z = quad(lambda t: fn(t))
    mean = quad(lambda t: t * fn(t)) / z
    var = quad(lambda t: (t - mean) ** 2 * fn(t)) / z
    return z, mean, var


@pytest.fixture(params=CASES, ids=IDS)
def case(request):
    case_id, name, params, fn, mode = request.param
    return case_id, make_scheme(name, **params), fn, mode


# -- weights -------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_weight_matches_numpy(case, dtype):
    case_id, scheme, fn, _ = case
    p = torch.tensor(GRID, dtype=dtype)
    w = scheme.weight(p)
    assert w.dtype == dtype and w.shape == p.shape
    assert torch.isfinite(w).all()
    expected = _np_weight(fn, p.double().numpy())
    inside = np.isfinite(expected)  # the beta family's poles are checked for finiteness only
    if case_id not in POLES:
        assert inside.all()
    rtol = 1e-12 if dtype == torch.float64 else 2e-6
    np.testing.assert_allclose(w.double().numpy()[inside], expected[inside], rtol=rtol, atol=1e-300)


@pytest.mark.parametrize("name", list_schemes())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_weight_is_finite_at_slider_extremes(name, dtype):
    entry = SCHEMES.get(name)
    p = torch.linspace(0, 1, 257, dtype=dtype)
    for corner in range(2 ** len(entry.params)):
        params = {prm.name: (prm.ui_high if corner >> i & 1 else prm.ui_low)
                  for i, prm in enumerate(entry.params)}
        w = make_scheme(name, **params).weight(p)
        assert torch.isfinite(w).all() and (w >= 0).all(), params
    # far beyond float32's exp range
    if "beta" in entry.defaults() and name != "beta":
        assert torch.isfinite(make_scheme(name, beta=200.0).weight(p)).all()


# -- mode ----------------------------------------------------------------------------------


def test_mode_matches_closed_form_and_brute_force(case):
    _, scheme, fn, expected = case
    assert scheme.mode == pytest.approx(expected, abs=1e-9)
    grid = np.linspace(0.0, 1.0, 1_000_001)
    values = _np_weight(fn, grid)
    if np.all(np.isfinite(values)) and np.ptp(values) <= 1e-12 * np.max(values):
        brute = 0.5  # flat: documented convention
    else:
        brute = grid[np.argmax(values)]  # first maximum: ties go to the smaller p
    assert scheme.mode == pytest.approx(brute, abs=2e-6)


@pytest.mark.parametrize(("name", "params"), [
    ("dm", {"lam": 0.7, "beta": -3.0}),  # no closed form: numeric path, interior tie-free case
    ("normal", {"psi": 0.5, "beta": -2.0}),
    ("beta", {"alpha": 1.0, "eta": 3.0}),
], ids=["dm-numeric", "normal-symmetric-negative", "beta-alpha1"])
def test_numeric_mode_is_the_argmax(name, params):
    scheme = make_scheme(name, **params)
    p = torch.linspace(0, 1, 100_001, dtype=torch.float64)
    w = scheme.weight(p)
    assert scheme.weight(torch.tensor([scheme.mode], dtype=torch.float64)) >= w.max() * (1 - 1e-12)


@pytest.mark.parametrize(("params", "expected"), [
    ({"lam": 0.5, "beta": 8.0}, 1 / 3), ({"lam": 3.0, "beta": 1.0}, 0.75),
    ({"lam": 0.0, "beta": 8.0}, 0.0), ({"lam": 1.0, "beta": 0.0}, 0.5),
], ids=["interior", "interior-weak", "endpoint", "flat"])
def test_numeric_mode_path_recovers_the_closed_form(monkeypatch, params, expected):
    """Switch off dm's closed form: the grid + refinement must find lam/(lam+1) on its own."""
    family = schemes_module._FAMILIES["dm"]
    monkeypatch.setitem(schemes_module._FAMILIES, "dm",
                        dataclasses.replace(family, closed_mode=lambda **_: None))
    assert make_scheme("dm", **params).mode == pytest.approx(expected, abs=1e-8)


# -- density and spread --------------------------------------------------------------------


def test_density_integrates_to_one_and_matches_numpy(case):
    case_id, scheme, fn, _ = case
    total = integrate.quad(lambda t: float(scheme.density(torch.tensor(t, dtype=torch.float64))),
                           0.0, 1.0, limit=200, epsrel=1e-11)[0]
    assert total == pytest.approx(1.0, rel=1e-8)
    z, _, _ = _np_moments(fn)
    p = GRID[1:-1]
    expected = _np_weight(fn, p) / z
    got = scheme.density(torch.tensor(p, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-8)


def test_spread_matches_numpy(case):
    _, scheme, fn, _ = case
    _, _, var = _np_moments(fn)
    assert scheme.spread() == pytest.approx(math.sqrt(var), rel=1e-7)


def test_flat_scheme_spread_is_uniform_std():
    assert make_scheme("dm", beta=0.0).spread() == pytest.approx(math.sqrt(1 / 12), rel=1e-12)


# -- implied loss --------------------------------------------------------------------------

P_INNER = np.array([0.001, 0.1, 0.25, 0.5, 0.75, 0.9, 0.999])


@pytest.mark.parametrize(("name", "params", "loss"), [
    ("cce", {}, lambda p: -np.log(p)),
    ("mae", {}, lambda p: 1 - p),
    ("mse", {}, lambda p: (1 - p) ** 2),
    ("gce", {"q": 0.7}, lambda p: (1 - p**0.7) / 0.7),
    ("gce-q0.2", {"q": 0.2}, lambda p: (1 - p**0.2) / 0.2),
], ids=["cce", "mae", "mse", "gce", "gce-q0.2"])
def test_implied_loss_of_the_classic_losses(name, params, loss):
    scheme = make_scheme(name.split("-")[0], **params)
    got = scheme.implied_loss(torch.tensor(P_INNER, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(got, loss(P_INNER), rtol=1e-9, atol=1e-13)
    assert float(scheme.implied_loss(torch.tensor(1.0))) == 0.0


def test_implied_loss_divergence():
    cce = make_scheme("cce").implied_loss(torch.tensor([0.0, 1.0]))
    assert cce[0] == math.inf and cce[1] == 0
    assert float(make_scheme("mae").implied_loss(torch.tensor(0.0))) == pytest.approx(1.0)
    # w(1) > 0: the integral to 1 diverges for every p < 1 (the loss is defined up to a constant)
    dm = make_scheme("dm").implied_loss(torch.tensor([0.0, 0.3, 0.999, 1.0]))
    assert dm.tolist() == [math.inf, math.inf, math.inf, 0.0]
    anchored = make_scheme("dm").implied_loss(torch.tensor([0.0, 1.0]), anchor=0.5)
    assert anchored.tolist() == [math.inf, -math.inf]
    with pytest.raises(ValueError, match="p must lie in"):
        make_scheme("cce").implied_loss(torch.tensor([1.5]))


def test_implied_loss_derivative_is_minus_w_over_2p1mp(case):
    _, scheme, fn, _ = case
    h = 1e-5
    p = np.array([0.2, 0.5, 0.8])
    pts = torch.tensor(np.concatenate([p - h, p + h]), dtype=torch.float64)
    loss = scheme.implied_loss(pts, anchor=0.5).numpy()
    derivative = (loss[3:] - loss[:3]) / (2 * h)
    expected = -_np_weight(fn, p) / (2 * p * (1 - p))
    np.testing.assert_allclose(derivative, expected, rtol=1e-6)


def test_designed_gradient_is_the_gradient_of_the_implied_loss(case):
    """SchemeLoss(normalise=False, eps=0) has logit gradient w(p_i)/N · d_i; that must be the
    gradient of mean_i L(p_i) with L(p) = ∫_p^1 w(t)/(2t(1-t)) dt (a weight w rescales CCE's
    logit gradient, and dL/dp = -w(p)/(2p(1-p)) is the loss that rescaling implies). Reference:
    central differences of that mean in float64, each difference one scipy quadrature of the
    numpy w from the paper, L(p(z+h)) - L(p(z-h)) = -∫_{p(z-h)}^{p(z+h)} w(t)/(2t(1-t)) dt
    (the integral to 1 diverges when w(1) > 0; a difference of L never needs it)."""
    from dm_core.losses import SchemeLoss

    _, scheme, fn, _ = case
    g = torch.Generator().manual_seed(4)
    logits = 1.5 * torch.randn(6, 4, generator=g, dtype=torch.float64)
    targets = torch.randint(0, 4, (6,), generator=g)
    z = logits.clone().requires_grad_(True)
    SchemeLoss(scheme, normalise=False, eps=0.0)(z, targets).backward()

    def p_y(row, y):
        e = np.exp(row - row.max())
        return e[y] / e.sum()

    integrand = lambda t: float(_np_weight(fn, t)) / (2 * t * (1 - t))  # noqa: E731
    h = 1e-5
    expected = np.zeros((6, 4))
    for i, (row, y) in enumerate(zip(logits.numpy(), targets.tolist(), strict=True)):
        for j in range(4):
            step = np.eye(4)[j] * h
            lo, hi = p_y(row - step, y), p_y(row + step, y)
            delta = integrate.quad(integrand, lo, hi, epsabs=1e-15, epsrel=1e-12)[0]
            expected[i, j] = -delta / (2 * h) / len(targets)
    np.testing.assert_allclose(z.grad.numpy(), expected, rtol=1e-6, atol=1e-10)


def test_implied_loss_keeps_shape_and_dtype():
    out = make_scheme("mse").implied_loss(torch.full((2, 3), 0.5, dtype=torch.float32))
    assert out.shape == (2, 3) and out.dtype == torch.float32
    assert torch.allclose(out, torch.full((2, 3), 0.25))


# -- registry and validation ---------------------------------------------------------------


@pytest.mark.parametrize("name", list_schemes())
def test_registry_entry_is_complete(name):
    entry = SCHEMES.get(name)
    assert entry.description and "w(p)" in entry.equation
    for prm in entry.params:
        assert prm.help, prm.name
        assert prm.ui_low is not None and prm.ui_high is not None and prm.ui_low < prm.ui_high
        assert prm.check(prm.default, name) == prm.default
    scheme = make_scheme(name)
    assert isinstance(scheme, Scheme) and scheme.name == name
    assert scheme.params == entry.defaults()
    assert scheme.formula.startswith("w(p) = ")
    assert repr(scheme).startswith(f"Scheme({name!r}")
    assert scheme.describe().startswith(f"{name}: w(p)")
    assert 0.0 <= scheme.mode <= 1.0


def test_dm_defaults_and_paper_equation():
    entry = SCHEMES.get("dm")
    assert entry.defaults() == {"lam": 0.5, "beta": 8.0}
    assert "Eq. 12" in entry.equation
    assert (entry.param("beta").ui_low, entry.param("beta").ui_high) == (-20.0, 40.0)
    for name, eq in [("normal", "Eq. 9"), ("exponential", "Eq. 10"), ("beta", "Eq. 11")]:
        assert eq in SCHEMES.get(name).equation


@pytest.mark.parametrize(("name", "params", "field", "range_text"), [
    ("dm", {"lam": -1.0}, "lam", "[0, inf)"),
    ("gce", {"q": 0.0}, "q", "(0, 1]"),
    ("gce", {"q": 1.5}, "q", "(0, 1]"),
    ("normal", {"psi": 1.2}, "psi", "[0, 1]"),
    ("beta", {"alpha": 0.0}, "alpha", "(0, inf)"),
    ("dm", {"beta": float("nan")}, "beta", "(-inf, inf)"),
    ("dm", {"gamma": 1.0}, "gamma", "allowed: lam, beta"),
], ids=["lam-negative", "q-zero", "q-above-one", "psi-above-one", "alpha-zero", "beta-nan",
        "unknown-param"])
def test_bad_params_raise_config_error(name, params, field, range_text):
    with pytest.raises(ConfigError) as err:
        make_scheme(name, **params)
    assert field in str(err.value) and range_text in str(err.value)


def test_unknown_scheme_name():
    with pytest.raises(ConfigError, match="unknown name 'nope'"):
        make_scheme("nope")


def test_scheme_is_a_value():
    a, b = make_scheme("dm", lam=1), make_scheme("dm", lam=1.0)
    assert a == b and hash(a) == hash(b) and a != make_scheme("dm", lam=2.0)
    with pytest.raises(AttributeError):
        a.name = "cce"


def test_implied_loss_of_an_extreme_beta_is_infinite_not_an_error():
    # exp(5000 p (1-p)) overflows float64 near p = 1/2; the integral is honestly inf there,
    # and finite where the weight stays representable.
    p = torch.tensor([0.0005, 0.25, 0.5, 0.75], dtype=torch.float64)
    loss = make_scheme("dm", lam=1.0, beta=5000.0).implied_loss(p, anchor=0.001)
    assert torch.isinf(loss[1:]).all() and (loss[1:] < 0).all()
    assert torch.isfinite(loss[0]) and loss[0] > 0


# ---------------------------------------------------------------- worst-case share of a batch

SHARE_GRID = np.linspace(0.0, 1.0, 2_000_001)  # brute force: every p on a dense float64 grid
SHARE_CASES = CASES + [
    ("dm-lam3-beta40", "dm", {"lam": 3.0, "beta": 40.0}, lambda p: np.exp(40 * p**3 * (1 - p)), 0.75),
    ("dm-lam0.5-beta-20", "dm", {"lam": 0.5, "beta": -20.0},
     lambda p: np.exp(-20 * p**0.5 * (1 - p)), 0.0),
    ("dm-lam2-beta-3", "dm", {"lam": 2.0, "beta": -3.0}, lambda p: np.exp(-3 * p**2 * (1 - p)), 0.0),
]


def _reference_share(fn, batch_size: int) -> float:
    """max w / (max w + (B - 1) min w) from the numpy formula on the dense grid, as
    1 / (1 + (B - 1) min/max) so that a pole (max = inf) gives 1 rather than inf/inf."""
    w = _np_weight(fn, SHARE_GRID)
    top, bottom = float(np.max(w)), float(np.min(w))
    return 1.0 / (1.0 + (batch_size - 1) * (bottom / top))


@pytest.mark.parametrize("batch_size", [2, 32, 128, 4096])
@pytest.mark.parametrize("case", SHARE_CASES, ids=[c[0] for c in SHARE_CASES])
def test_worst_case_share_equals_a_brute_force_grid(case, batch_size):
    _, name, params, fn, _ = case
    got = make_scheme(name, **params).worst_case_share(batch_size)
    assert got == pytest.approx(_reference_share(fn, batch_size), rel=1e-9, abs=1e-15)


@pytest.mark.parametrize("lam", [0.0, 0.5, 1.0, 3.0])
@pytest.mark.parametrize("beta", [-20.0, -1.0, 0.0, 8.0, 40.0])
def test_worst_case_share_of_dm_in_closed_form(lam, beta):
    """DM: p^λ (1 - p) ranges over [0, g] with g = λ^λ / (λ + 1)^(λ+1) (its value at the
    mode λ/(λ+1); 1 at p = 0 for λ = 0), so log w spans |β| g whatever β's sign."""
    g = lam**lam / (lam + 1.0) ** (lam + 1.0)
    expected = 1.0 / (1.0 + 127 * math.exp(-abs(beta) * g))
    assert make_scheme("dm", lam=lam, beta=beta).worst_case_share(128) == pytest.approx(expected, rel=1e-12)


def test_worst_case_share_without_overflow_and_of_bad_batch_sizes():
    # exp(5000 / 4) overflows float64; the share does not: it is 1 to double precision.
    assert make_scheme("dm", lam=1.0, beta=5000.0).worst_case_share(128) == 1.0
    assert make_scheme("dm", lam=1.0, beta=8.0).worst_case_share(1) == 1.0
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="batch_size: must be an integer >= 1"):
            make_scheme("dm").worst_case_share(bad)
