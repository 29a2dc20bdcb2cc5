"""The one rule behind every verdict the studio prints ("DM beats CCE", "the best setting is …").

A comparison asks whether side A's mean over seeds is above side B's (or below, for a claim
that A is lower):

- **Test.** Welch's two-sided t-test over the seeds of the two sides (unequal variances):
  ``scipy.stats.ttest_ind(equal_var=False)`` on the per-seed values, or
  ``scipy.stats.ttest_ind_from_stats`` when only mean, std and n are known (a tuning trial
  keeps no per-seed values).
- **Level.** ``ALPHA`` = 0.05, after **Holm's step-down correction** across the comparisons
  of one claim (or of one "which is best?" question): a claim that needs several comparisons
  to hold is not allowed several chances at a lucky one.
- **Verdict.** "holds" when the Holm-adjusted p is at most ``ALPHA`` and A is ahead in the
  claimed direction, "does not hold" when it is significantly behind, "undecided" otherwise.
- **No test, undecided.** A side with fewer than two values ("one seed: no test possible":
  one value says nothing about how much a seed moves the result). Both sides without any
  spread (every seed gave the same value): equal means are a tie; different means are
  undecided too, not a certain difference: Welch's statistic is then infinite (scipy returns
  p ≈ 0), but nothing measured how far a seed moves the result, so the gap has no yardstick,
  and identical values on every seed mostly mean the seed changed nothing that was run.
  Comparisons without a test do not count in Holm's number of comparisons.
- **Spread.** Always the sample standard deviation over seeds (ddof = 1); a population std
  (what a tuning trial records) is converted first (``Sample.from_population_std``).
- **Text.** One value ``84.5 ± 0.9% (n=3)``; a comparison
  ``A 84.5 ± 0.9% (n=3) vs B 86.0 ± 0.6% (n=3): p = 0.16 (Holm 0.31) → undecided``
  (Holm's p only where the claim holds several comparisons).

Only the standard library, numpy and scipy are imported here: the dashboard reads it too.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

ALPHA = 0.05
HOLDS, FAILS, UNDECIDED = "holds", "does not hold", "undecided"
MISSING = "—"
ONE_SEED = "one seed: no test possible"
NO_VALUE = "no value on one side: no test possible"
NO_SPREAD = "every seed gave the same value on both sides: no spread to test the gap against"
TIE = "every seed gave the same value on both sides: a tie"


@dataclass(frozen=True)
class Sample:
    """One side of a comparison: mean, sample std (ddof = 1; NaN below two values), n, and the
    per-seed values when they are known."""

    mean: float
    std: float
    n: int
    values: tuple[float, ...] | None = None

    @classmethod
    def of(cls, values: Iterable[float | None]) -> Sample:
        """The finite ones of ``values`` (a diverged seed's NaN is left out, and n says so)."""
        kept = tuple(float(v) for v in values if v is not None and math.isfinite(float(v)))
        arr = np.asarray(kept, dtype=np.float64)
        if arr.size < 2:
            std = math.nan
        else:  # exactly 0 for identical values (numpy's rounding would leave ~1e-16)
            std = 0.0 if len(set(kept)) == 1 else float(arr.std(ddof=1))
        return cls(float(arr.mean()) if arr.size else math.nan, std, int(arr.size), kept)

    @classmethod
    def from_population_std(cls, mean: float, std: float | None, n: int) -> Sample:
        """From a mean and a population std (ddof = 0) over ``n`` values: the sample std is
        ``std · √(n / (n − 1))``."""
        sample = std * math.sqrt(n / (n - 1)) if n > 1 and std is not None else math.nan
        return cls(float(mean), sample, int(n))


def spread_text(s: Sample, percent: bool = True, digits: int | None = None) -> str:
    """A sample as every verdict prints it: mean ± sample std and n; a fraction in percent
    (1 decimal unless ``digits``), else as is (3 decimals unless ``digits``).

    >>> spread_text(Sample.of([0.835, 0.845, 0.855]))
    '84.5 ± 1.0% (n=3)'
    >>> spread_text(Sample.of([0.12, 0.13]), percent=False)
    '0.125 ± 0.007 (n=2)'
    >>> spread_text(Sample.of([0.9615]), digits=2)
    '96.15% (n=1)'
    >>> spread_text(Sample.of([float("nan")]))
    '—'
    """
    if s.n == 0 or not math.isfinite(s.mean):
        return MISSING
    scale, unit = (100.0, "%") if percent else (1.0, "")
    digits = (1 if percent else 3) if digits is None else digits
    mean = f"{s.mean * scale:.{digits}f}"
    if not math.isfinite(s.std):
        return f"{mean}{unit} (n={s.n})"
    return f"{mean} ± {s.std * scale:.{digits}f}{unit} (n={s.n})"


def p_text(p: float) -> str:
    """A p-value to two significant digits, more when rounding would carry it across
    ``ALPHA`` (0.0504 is not printed as 0.05).

    >>> p_text(0.1553), p_text(0.0504), p_text(0.0496), p_text(3.2e-5)
    ('0.16', '0.0504', '0.05', '3.2e-05')
    """
    if not math.isfinite(p):
        return MISSING
    text = f"{p:.2g}"
    for digits in range(3, 7):
        if (float(text) <= ALPHA) == (p <= ALPHA):
            break
        text = f"{p:.{digits}g}"
    return text


def welch_p(a: Sample, b: Sample) -> tuple[float, str]:
    """The two-sided p of Welch's test that A and B have the same mean, and ``""``; or NaN
    and why no test is possible."""
    if min(a.n, b.n) == 0:
        return math.nan, NO_VALUE
    if min(a.n, b.n) < 2:
        return math.nan, ONE_SEED
    if a.std == 0 and b.std == 0:
        return math.nan, TIE if a.mean == b.mean else NO_SPREAD
    # A side of identical values has a std of exactly 0 (``Sample.of``); from its values,
    # scipy would compute one at rounding level instead, with a warning.
    if a.values is not None and b.values is not None and a.std > 0 and b.std > 0:
        p = stats.ttest_ind(a.values, b.values, equal_var=False).pvalue
    else:
        p = stats.ttest_ind_from_stats(a.mean, a.std, a.n, b.mean, b.std, b.n,
                                       equal_var=False).pvalue
    return float(p), ""


def holm(ps: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given: with the m finite p-values
    sorted, the k-th smallest becomes ``max over j ≤ k of min(1, (m − j + 1) · p_(j))``.
    NaN (no test) stays NaN and does not count in m.

    >>> holm([0.01, 0.04, 0.03, 0.005, float("nan")])
    [0.03, 0.06, 0.06, 0.02, nan]
    """
    tested = sorted((p, i) for i, p in enumerate(ps) if math.isfinite(p))
    out = [math.nan] * len(ps)
    running = 0.0
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (len(tested) - rank) * p))
        out[i] = running
    return out


@dataclass(frozen=True)
class Comparison:
    """A against B under the rule: the claim is that A's mean is above B's (below with
    ``lower``)."""

    a_label: str
    a: Sample
    b_label: str
    b: Sample
    p: float  # Welch, two-sided; NaN without a test
    p_holm: float  # Holm-adjusted over the ``m`` comparisons tested with it
    m: int
    verdict: str
    why: str = ""  # why no test was possible
    lower: bool = False

    def test_text(self, nested: bool = False) -> str:
        """``p = 0.16 (Holm 0.31)`` (``p = 0.16, Holm 0.31`` ``nested`` in parentheses), or
        why there was no test."""
        if self.why:
            return self.why
        if self.m < 2:
            return f"p = {p_text(self.p)}"
        holm_p = p_text(self.p_holm)
        return f"p = {p_text(self.p)}" + (f", Holm {holm_p}" if nested else f" (Holm {holm_p})")

    def text(self, percent: bool = True, digits: int | None = None) -> str:
        return (f"{self.a_label} {spread_text(self.a, percent, digits)} vs {self.b_label} "
                f"{spread_text(self.b, percent, digits)}: {self.test_text()} → {self.verdict}")


def compare_all(pairs: Sequence[tuple[str, Sample, str, Sample]],
                lower: bool = False) -> list[Comparison]:
    """Each (A label, A, B label, B) of one claim, Holm-corrected across all of them."""
    tests = [welch_p(a, b) for _, a, _, b in pairs]
    adjusted = holm([p for p, _ in tests])
    m = sum(math.isfinite(p) for p, _ in tests)
    out = []
    for (a_label, a, b_label, b), (p, why), p_holm in zip(pairs, tests, adjusted, strict=True):
        if why or not p_holm <= ALPHA:
            verdict = UNDECIDED
        else:
            verdict = HOLDS if (a.mean < b.mean if lower else a.mean > b.mean) else FAILS
        out.append(Comparison(a_label, a, b_label, b, p, p_holm, m, verdict, why, lower))
    return out


def compare(a_label: str, a: Sample, b_label: str, b: Sample, lower: bool = False) -> Comparison:
    """One comparison on its own (nothing to correct for)."""
    return compare_all([(a_label, a, b_label, b)], lower)[0]


def combine(verdicts: Sequence[str]) -> str:
    """A claim made of several comparisons: it does not hold if one of them does not, holds
    if every one does, and is undecided otherwise (or with none)."""
    if not verdicts:
        return UNDECIDED
    if FAILS in verdicts:
        return FAILS
    return HOLDS if all(v == HOLDS for v in verdicts) else UNDECIDED


@dataclass(frozen=True)
class Best:
    """The answer to "which is best?": ``name`` when the top one by mean beats every other
    one under the rule, else None; ``top`` is the top by mean either way."""

    name: str | None
    top: str
    sample: Sample
    comparisons: list[Comparison]  # the top against each other one, Holm across them

    def lead_text(self, nested: bool = False) -> str:
        """How clearly the top one is ahead: ``p = 0.01`` against a single other one, the
        largest p against several (``nested``: as ``Comparison.test_text``)."""
        if not self.comparisons:
            return "the only one with a value"
        if len(self.comparisons) == 1:
            return self.comparisons[0].test_text(nested)
        return "largest " + max(self.comparisons, key=lambda c: c.p).test_text(nested)

    def tie_text(self, percent: bool = True, digits: int | None = None) -> str:
        """``A 84.5 ± 0.9% (n=3), B 84.1 ± 1.2% (n=3) not distinguishable (p = 0.71)``: the
        top one and those it does not beat, and why (p, or why there was no test)."""
        open_ = [c for c in self.comparisons if c.verdict != HOLDS]
        names = ", ".join([f"{self.top} {spread_text(self.sample, percent, digits)}"]
                          + [f"{c.b_label} {spread_text(c.b, percent, digits)}" for c in open_])
        detail = (open_[0].test_text(nested=True) if len(open_) == 1 else
                  "; ".join(f"vs {c.b_label}: {c.test_text(nested=True)}" for c in open_))
        return f"{names} not distinguishable ({detail})"

    def text(self, percent: bool = True, digits: int | None = None) -> str:
        """``A 84.5 ± 0.9% (n=3), ahead of B 80.1 ± 1.0% (n=3): p = 0.01``, or ``undecided:``
        and ``tie_text``."""
        if self.name is None:
            return f"{UNDECIDED}: {self.tie_text(percent, digits)}"
        top = f"{self.top} {spread_text(self.sample, percent, digits)}"
        if len(self.comparisons) == 1:
            c = self.comparisons[0]
            return f"{top}, ahead of {c.b_label} {spread_text(c.b, percent, digits)}: {self.lead_text()}"
        if not self.comparisons:
            return f"{top}, {self.lead_text()}"
        return f"{top}, ahead of each of the {len(self.comparisons)} others: {self.lead_text()}"


def best_of(samples: Mapping[str, Sample]) -> Best:
    """The highest mean (the first of equal means, in the order given) is named the best only
    if it beats every other sample significantly, Holm-corrected across those comparisons.
    Samples without a value take no part. Raises ``ValueError`` when none has one."""
    contenders = {k: s for k, s in samples.items() if s.n > 0 and math.isfinite(s.mean)}
    if not contenders:
        raise ValueError("best_of needs at least one sample with a value")
    order = sorted(contenders, key=lambda k: -contenders[k].mean)
    top = order[0]
    found = compare_all([(top, contenders[top], other, contenders[other]) for other in order[1:]])
    name = top if all(c.verdict == HOLDS for c in found) else None
    return Best(name, top, contenders[top], found)
