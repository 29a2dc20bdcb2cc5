"""The one rule behind every verdict (studio/experiments/verdicts.py): Welch's test over seeds,
Holm across a claim's comparisons, undecided below two seeds; and the claims that use it."""

from __future__ import annotations

import itertools
import math
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import special, stats

from studio.experiments.claims import check_claims, seed_table
from studio.experiments.tuner import TrialRecord, Tuning
from studio.experiments.verdicts import (
    ALPHA,
    FAILS,
    HOLDS,
    NO_SPREAD,
    ONE_SEED,
    TIE,
    UNDECIDED,
    Sample,
    best_of,
    compare,
    compare_all,
    holm,
    p_text,
    spread_text,
    welch_p,
)


def reference_welch(m1, s1, n1, m2, s2, n2) -> float:
    """Welch's two-sided p from the formula: t over the unpooled standard error, the
    Welch–Satterthwaite degrees of freedom, and the t tail from ``special.stdtr``."""
    v1, v2 = s1 * s1 / n1, s2 * s2 / n2
    t = (m1 - m2) / math.sqrt(v1 + v2)
    df = (v1 + v2) ** 2 / (v1 * v1 / (n1 - 1) + v2 * v2 / (n2 - 1))
    return float(2.0 * special.stdtr(df, -abs(t)))


# ---------------------------------------------------------------- Welch

@pytest.mark.parametrize("n1, n2", [(2, 2), (3, 3), (3, 5), (8, 4)])
def test_welch_p_matches_the_formula_on_raw_values_and_on_stats(n1, n2):
    rng = np.random.default_rng(n1 * 10 + n2)
    for _ in range(5):
        a = rng.normal(0.80, rng.uniform(0.005, 0.05), n1)
        b = rng.normal(0.82, rng.uniform(0.005, 0.05), n2)
        ref = reference_welch(a.mean(), a.std(ddof=1), n1, b.mean(), b.std(ddof=1), n2)
        p, why = welch_p(Sample.of(a), Sample.of(b))
        assert why == "" and p == pytest.approx(ref, rel=1e-9)
        # Only mean, population std and n known (a tuning trial): the same p.
        p, _ = welch_p(Sample.from_population_std(a.mean(), a.std(ddof=0), n1),
                       Sample.from_population_std(b.mean(), b.std(ddof=0), n2))
        assert p == pytest.approx(ref, rel=1e-9)


def test_the_sample_std_is_ddof_1_whether_read_from_values_or_converted():
    values = [0.81, 0.84, 0.86, 0.80]
    assert Sample.of(values).std == pytest.approx(np.std(values, ddof=1), rel=1e-12)
    converted = Sample.from_population_std(np.mean(values), np.std(values, ddof=0), 4)
    assert converted.std == pytest.approx(np.std(values, ddof=1), rel=1e-12)
    # A diverged seed (NaN) is left out, and n says so.
    assert Sample.of([0.8, float("nan"), 0.9]).n == 2


def test_the_issues_example_pinned():
    """'84.5 ± 0.9 vs 86.0 ± 0.6, n = 3 each' was printed with population stds (ddof = 0), the
    studies' old spread. Read that way (converted to sample stds), the printed figures give
    p = 0.132; the quoted p ≈ 0.155 is inside what the figures' rounding allows under that
    reading, and outside it if the printed stds were sample stds: it was computed from
    population stds of the unrounded figures."""
    root = math.sqrt(3 / 2)  # population → sample std at n = 3
    dm = Sample.from_population_std(0.845, 0.009, 3)
    ls = Sample.from_population_std(0.860, 0.006, 3)
    p, _ = welch_p(dm, ls)
    assert p == pytest.approx(reference_welch(84.5, 0.9 * root, 3, 86.0, 0.6 * root, 3), rel=1e-9)
    assert p == pytest.approx(0.1318, abs=1e-4)
    assert reference_welch(84.5, 0.9, 3, 86.0, 0.6, 3) == pytest.approx(0.0837, abs=1e-4)

    def extremes(scale):  # p over the corners of the rounding box of the printed figures
        ps = [reference_welch(m1, s1 * scale, 3, m2, s2 * scale, 3)
              for m1, m2, s1, s2 in itertools.product((84.45, 84.55), (85.95, 86.05),
                                                      (0.85, 0.95), (0.55, 0.65))]
        return min(ps), max(ps)

    low, high = extremes(root)
    assert low < 0.155 < high
    assert extremes(1.0)[1] < 0.155
    assert compare("DM", dm, "label smoothing", ls).text() == (
        "DM 84.5 ± 1.1% (n=3) vs label smoothing 86.0 ± 0.7% (n=3): p = 0.13 → undecided")


# ---------------------------------------------------------------- Holm

def test_holm_on_a_hand_worked_example():
    # Sorted: 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 = 0.04 → raised to 0.06
    # (step-down: an adjusted p never falls below the one before it).
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02], abs=1e-15)
    assert holm([0.04, 0.045]) == pytest.approx([0.08, 0.08])
    assert holm([0.6, 0.7]) == [1.0, 1.0]  # capped at 1
    adjusted = holm([0.02, float("nan")])  # a comparison without a test does not count in m
    assert adjusted[0] == 0.02 and math.isnan(adjusted[1])


def test_holm_turns_two_marginal_wins_into_undecided():
    a, b = Sample.of([0.80, 0.82, 0.84]), Sample.of([0.75, 0.77, 0.79])
    alone = compare("a", a, "b", b)
    assert ALPHA / 2 < alone.p < ALPHA and alone.verdict == HOLDS
    twice = compare_all([("a", a, "b", b), ("a", a, "b", b)])
    assert [c.p_holm for c in twice] == pytest.approx([2 * alone.p] * 2)
    assert [c.verdict for c in twice] == [UNDECIDED, UNDECIDED]
    assert twice[0].text() == "a 82.0 ± 2.0% (n=3) vs b 77.0 ± 2.0% (n=3): p = 0.038 (Holm 0.075) → undecided"


# ---------------------------------------------------------------- verdicts without a test

def test_direction_and_the_cases_without_a_test():
    hi, lo = Sample.of([0.90, 0.91, 0.92]), Sample.of([0.70, 0.71, 0.72])
    assert compare("hi", hi, "lo", lo).verdict == HOLDS
    assert compare("lo", lo, "hi", hi).verdict == FAILS
    assert compare("lo", lo, "hi", hi, lower=True).verdict == HOLDS  # a claim that A is lower
    one = compare("hi", Sample.of([0.95]), "lo", lo)
    assert (one.verdict, one.why) == (UNDECIDED, ONE_SEED) and math.isnan(one.p)
    assert one.text().endswith("hi 95.0% (n=1) vs lo 71.0 ± 1.0% (n=3): one seed: no test possible → undecided")
    tie = compare("a", Sample.of([0.9, 0.9]), "b", Sample.of([0.9, 0.9]))
    assert (tie.verdict, tie.why) == (UNDECIDED, TIE)
    # No spread on either side but different means: scipy calls it certain (p ≈ 0, from a
    # rounding-level variance); the rule has nothing to measure the gap against: undecided.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert stats.ttest_ind([0.9, 0.9, 0.9], [0.8, 0.8, 0.8], equal_var=False).pvalue < 1e-20
    flat = compare("a", Sample.of([0.9, 0.9, 0.9]), "b", Sample.of([0.8, 0.8, 0.8]))
    assert (flat.verdict, flat.why) == (UNDECIDED, NO_SPREAD)
    # One side without spread, the other with: Welch still tests.
    assert compare("a", Sample.of([0.9, 0.9, 0.9]), "b", lo).verdict == HOLDS


def test_text_format():
    assert spread_text(Sample.of([0.84, 0.845, 0.85])) == "84.5 ± 0.5% (n=3)"
    assert spread_text(Sample.of([0.1, 0.12]), percent=False) == "0.110 ± 0.014 (n=2)"
    assert spread_text(Sample.of([])) == "—"
    assert [p_text(p) for p in (0.155, 0.0504, 0.0496, 1.0)] == ["0.15", "0.0504", "0.05", "1"]
    for p in np.linspace(0.04, 0.06, 201):  # the printed p never lands on the other side of α
        assert (float(p_text(p)) <= ALPHA) == (p <= ALPHA)


# ---------------------------------------------------------------- best of several

def test_best_of_names_a_winner_only_when_it_beats_every_other():
    clear = best_of({"dm": Sample.of([0.90, 0.91, 0.92]), "gce": Sample.of([0.80, 0.81, 0.82]),
                     "cce": Sample.of([0.70, 0.71, 0.72])})
    assert clear.name == "dm"
    assert clear.text() == "dm 91.0 ± 1.0% (n=3), ahead of each of the 2 others: largest p = 0.00026 (Holm 0.00026)"
    # The issue's case: gce 78.3 ± 5.0 vs sce 77.3 ± 2.0 (population stds, n = 3).
    close = best_of({"sce": Sample.from_population_std(0.773, 0.020, 3),
                     "gce": Sample.from_population_std(0.783, 0.050, 3)})
    assert close.name is None and close.top == "gce"
    assert close.text() == ("undecided: gce 78.3 ± 6.1% (n=3), sce 77.3 ± 2.4% (n=3) not "
                            "distinguishable (p = 0.81)")
    # Ahead of one, not of the other: only the one not beaten is named beside the top.
    mixed = best_of({"a": Sample.of([0.90, 0.91, 0.92]), "b": Sample.of([0.89, 0.91, 0.93]),
                     "c": Sample.of([0.50, 0.51, 0.52])})
    assert mixed.name is None and "c " not in mixed.text() and "b 91.0 ± 2.0% (n=3)" in mixed.text()


def test_best_of_one_seed_or_a_tie_names_nothing():
    one = best_of({"sce": Sample.of([0.9615]), "dm": Sample.of([0.9615])})
    assert one.name is None
    assert one.text(digits=2) == ("undecided: sce 96.15% (n=1), dm 96.15% (n=1) not distinguishable "
                                  "(one seed: no test possible)")
    tie = best_of({"a": Sample.of([0.9, 0.92]), "b": Sample.of([0.9, 0.92])})
    assert tie.name is None and tie.top == "a"  # equal means: the first given is on top
    assert "(p = 1)" in tie.text()
    with pytest.raises(ValueError):
        best_of({"a": Sample.of([float("nan")])})


# ---------------------------------------------------------------- the claims use it

def _tuning(condition, rate, trials):
    t = Tuning(condition, rate, "dm", None, len(trials), "grid",
               [TrialRecord(i, params, "complete", value, 0.004, 3) for i, (params, value) in enumerate(trials)])
    t.choose()
    return t


def _final_runs():
    rows = []
    accs = {"dm": (0.86, 0.87, 0.88), "cce": (0.70, 0.72, 0.71), "gce": (0.85, 0.88, 0.86)}
    p_i = {"dm": (0.20, 0.22, 0.21), "cce": (0.80, 0.83, 0.81), "gce": (0.5, 0.52, 0.51)}
    for cond, rate in (("r=0", 0.0), ("r=0.4", 0.4)):
        for method, values in accs.items():
            for seed, acc in enumerate(values):
                rows.append({"condition": cond, "method": method, "noise_rate": rate, "seed": seed,
                             "params": '{"lam": 1.0}' if method == "dm" else "{}",
                             "diverged": False, "test_acc_final": acc - 0.01,
                             "test_acc_selected": acc, "test_acc_best": acc + 0.01,
                             "val_acc_selected": acc + 0.02, "train_acc_corrupted": 0.5,
                             "train_acc_intact": 0.5, "fit_corrupted_subset": p_i[method][seed],
                             "p_noisy_late": p_i[method][seed] if rate else math.nan})
    return pd.DataFrame(rows)


def test_every_comparison_of_the_claims_states_n_and_p():
    tunings = [_tuning("r=0", 0.0, [({"lam": 0.0, "beta": 4.0}, 0.95), ({"lam": 1.0, "beta": 4.0}, 0.90)]),
               _tuning("r=0.2", 0.2, [({"lam": 0.5, "beta": 4.0}, 0.90), ({"lam": 0.0, "beta": 4.0}, 0.85)]),
               _tuning("r=0.4", 0.4, [({"lam": 1.0, "beta": 8.0}, 0.85), ({"lam": 0.0, "beta": 4.0}, 0.70)])]
    # The claims read only the tunings and the final table, not the study file.
    claims = check_claims(seed_table(_final_runs()), tunings)
    assert [c.text[:3] for c in claims] == ["(a)", "(b)", "(c)", "(d)", "(e)"]
    compared = [line for c in claims for line in c.evidence if " vs " in line]
    assert len(compared) == 2 + 2 + 1 + 1 + 4  # (a) final and selected, (b) per rate, (c), (d), (e)
    for line in compared:
        assert "(n=3)" in line and "p = " in line and "→" in line, line
    by = {c.text[:3]: c for c in claims}
    assert by["(a)"].verdict == HOLDS and by["(d)"].verdict == HOLDS and by["(e)"].verdict == UNDECIDED
    # (e): DM and GCE within each other's spread on validation too: no pick is named.
    picks = [line for line in by["(e)"].evidence if "best validation accuracy" in line]
    assert picks == [f"{cond}: the method with the best validation accuracy is undecided: dm "
                     "89.0 ± 1.0% (n=3), gce 88.3 ± 1.5% (n=3) not distinguishable (p = 0.57, Holm 0.57)"
                     for cond in ("r=0", "r=0.4")]


def test_the_verdicts_module_stays_light_for_the_dashboard():
    code = ("import sys, studio.experiments.verdicts; "
            "print(sorted(m for m in ('optuna', 'jinja2', 'pandas', 'torch', 'streamlit') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
