"""The paper's claims, with their evidence, for a study (DM's setting chosen on validation)
and for a paper preset (a fixed grid of published settings, nothing tuned), by one set of
functions: the same runs give the same verdicts whichever command trained them.

(a) under label noise DM beats CCE on test accuracy (final, and selected where a validation
    split was held out); a preset's every ``DM λ=…`` variant with λ > 0 is a DM side;
(b) the λ chosen for DM grows with the noise rate (noisy rates only);
(c) on clean data λ = 0 is the best DM setting;
(d) noisy examples keep a low p_i under DM while CCE memorises them;
(e) DM beats every other method of the study, in every condition (selected test accuracy);
    with, per condition, the method the validation split would pick.

Every comparison goes through ``studio.experiments.verdicts``: Welch's test over the seeds,
Holm-corrected across the comparisons of each claim, undecided unless significant at
``verdicts.ALPHA`` (and always with a single seed). (a), (d) and (e) test the final runs'
per-seed values (``seed_table`` keeps them); "the method with the best validation accuracy"
is named only when it beats every other one (``verdicts.best_of``). (b) "does not hold"
whenever the chosen λ does not increase from the lowest to the highest noisy rate. (b) and
(c) are about which setting is best, which is a validation question: they read the tuning
trials' validation scores (mean and std over the tuning seeds), never test accuracy. Each
claim carries the numbers it was judged on, with n and p, and nothing else: no prose that the
numbers do not show. A preset holds out no validation split and tunes nothing, so (b) and
(c) are stated there as not judged (naming a best λ would choose on test data).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd

from studio.experiments.spaces import canonical
from studio.experiments.tuner import TrialRecord, Tuning
from studio.experiments.verdicts import (
    FAILS,
    HOLDS,
    UNDECIDED,
    Sample,
    best_of,
    combine,
    compare_all,
    spread_text,
)

__all__ = ["FAILS", "HOLDS", "NO_VALIDATION", "UNDECIDED", "Claim", "check_claims", "dm_variants", "seed_table"]

METRICS = ("test_acc_final", "test_acc_selected", "test_acc_best", "val_acc_selected",
           "train_acc_corrupted", "train_acc_intact", "fit_corrupted_subset", "p_noisy_late")


@dataclass(frozen=True)
class Claim:
    text: str
    verdict: str
    evidence: list[str]


def seed_table(final: pd.DataFrame, conditions: list[str] | None = None,
               methods: list[str] | None = None) -> pd.DataFrame:
    """Mean and sample std (ddof = 1; NaN with one seed) over the final seeds per (condition,
    method), and each metric's per-seed values as a tuple (``<metric>_seeds``: what the claims
    test), in the order of ``conditions`` and ``methods`` (the study's) when given, else as
    the runs came."""
    metrics = list(METRICS)
    g = final.groupby(["condition", "method"], sort=False)
    out = g[metrics].mean()
    std = g[metrics].std(ddof=1)
    for m in metrics:
        out[m + "_std"] = std[m]
        out[m + "_seeds"] = g[m].agg(tuple)
    out["params"] = g["params"].first()
    out["noise_rate"] = g["noise_rate"].first()
    out["n"] = g.size()
    out["diverged"] = g["diverged"].sum()
    out = out.reset_index()
    cond_order = {c: i for i, c in enumerate(conditions or dict.fromkeys(final["condition"]))}
    method_order = {m: i for i, m in enumerate(methods or dict.fromkeys(final["method"]))}
    out["_c"], out["_m"] = out["condition"].map(cond_order), out["method"].map(method_order)
    return out.sort_values(["_c", "_m"], kind="stable").drop(columns=["_c", "_m"]).reset_index(drop=True)


def _seeds(row: pd.Series, metric: str) -> Sample:
    return Sample.of(row[metric + "_seeds"])


def _setting(params: str) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in json.loads(params).items())


def dm_variants(by: pd.DataFrame) -> list[tuple[str, pd.Series]]:
    """The DM rows of one condition (rows indexed by method) with the label the claims give
    them: a study's one ``dm``, its setting chosen on validation, or each of a preset's
    published ``DM λ=…`` variants with λ > 0 (λ = 0 is the uniform-emphasis baseline the
    claim sets DM's larger emphasis mode against)."""
    out = []
    for method, row in by.iterrows():
        if method == "dm":
            out.append((f"DM ({_setting(row['params'])})", row))
        elif str(method).startswith("DM λ=") and float(str(method).split("=")[1].split()[0]) > 0:
            out.append((str(method), row))
    return out


def _dm_and_cce_under_noise(table: pd.DataFrame):
    """(condition, DM label, DM's row, CCE's row) for every DM variant of every noisy
    condition where CCE was run too."""
    for cond, part in table[table["noise_rate"] > 0].groupby("condition", sort=False):
        by = part.set_index("method")
        cce = next((m for m in by.index if str(m).lower() == "cce"), None)
        if cce is not None:
            for label, dm in dm_variants(by):
                yield cond, label, dm, by.loc[cce]


def _claim_a(table: pd.DataFrame) -> Claim | None:
    found = list(_dm_and_cce_under_noise(table))
    # Selected test accuracy exists only where a validation split was held out (not a preset's).
    metrics = [(m, w) for m, w in (("test_acc_final", "final"), ("test_acc_selected", "selected"))
               if table[m].notna().any()]
    pairs = [(f"{cond}, {word}: {label}", _seeds(dm, metric), "CCE", _seeds(cce, metric))
             for cond, label, dm, cce in found for metric, word in metrics]
    if not pairs:
        return None
    found = compare_all(pairs)
    return Claim("(a) under label noise DM beats CCE on test accuracy (a study's DM as chosen on "
                 "validation; every preset variant with λ > 0)", combine([c.verdict for c in found]),
                 [c.text() for c in found])


def _trial_best(t: Tuning, keep) -> TrialRecord | None:
    done = [r for r in t.trials if r.state == "complete" and keep(r)]
    return max(done, key=lambda r: r.value) if done else None


def _trained(r: TrialRecord) -> dict[str, float]:
    """The DM setting a trial trained: with β = 0 the weights are 1 whatever λ it names, so
    its λ is 0 (``spaces.canonical``)."""
    return canonical("dm", r.params)


def _trial_sample(r: TrialRecord) -> Sample:
    """A trial's validation score over its tuning seeds (it records a population std)."""
    return Sample.from_population_std(r.value, r.std, r.seeds)


def _lam_pair(t: Tuning) -> tuple[str, Sample, str, Sample] | str:
    """The chosen λ's validation score against the best trial with another λ, or, when no
    other λ was tried, the line that says so."""
    lam = t.chosen["lam"]
    mine = _trial_best(t, lambda r: _trained(r) == t.chosen)
    other = _trial_best(t, lambda r: _trained(r)["lam"] != lam)
    if other is None:
        return f"λ={lam:g} val {spread_text(_trial_sample(mine))} (no other λ was tried) → {UNDECIDED}"
    return (f"chosen λ={lam:g} val", _trial_sample(mine),
            f"best other λ={_trained(other)['lam']:g} val", _trial_sample(other))


def _judged(items: dict[str, tuple[str, Sample, str, Sample] | str]) -> dict[str, tuple[str, str]]:
    """Per key, (verdict, evidence line): the pairs compared under the rule with Holm across
    all of them, a line without a pair undecided."""
    keys = [k for k, v in items.items() if not isinstance(v, str)]
    found = dict(zip(keys, compare_all([items[k] for k in keys]), strict=True))
    return {k: (found[k].verdict, found[k].text()) if k in found else (UNDECIDED, v)
            for k, v in items.items()}


NO_VALIDATION = ("not judged: these runs hold out no validation split, and naming the best λ "
                 "by test accuracy would choose on test data (a study tunes λ on a clean "
                 "validation split)")


def _unjudged(table: pd.DataFrame, text: str) -> Claim | None:
    """Which λ is best asked of runs with no choice made on validation (a preset): DM's runs
    are there, but naming a best one would read test data, so the claim stays open."""
    found = any(dm_variants(part.set_index("method")) for _, part in table.groupby("condition", sort=False))
    return Claim(text, UNDECIDED, [NO_VALIDATION]) if found else None


def _claim_b(tunings: list[Tuning]) -> Claim | None:
    dm = [t for t in tunings if t.method == "dm" and t.noise_rate > 0 and t.chosen]
    if not dm:
        return None
    families: dict[str, list[Tuning]] = {}
    for t in dm:  # one family per named condition (imbalance ratio, …), ordered by rate
        families.setdefault(t.condition.rsplit("r=", 1)[0], []).append(t)
    for fam in families.values():
        fam.sort(key=lambda t: t.noise_rate)
    margins = _judged({t.condition: _lam_pair(t) for fam in families.values() for t in fam})
    verdicts, rows = [], []
    for fam in families.values():
        lams = [t.chosen["lam"] for t in fam]
        rows += [f"{t.condition}: {margins[t.condition][1]}" for t in fam]
        if len(fam) < 2:
            verdicts.append(UNDECIDED)
            rows.append("only one noisy rate: a trend needs two")
        elif not (all(b >= a for a, b in zip(lams, lams[1:], strict=False)) and lams[-1] > lams[0]):
            verdicts.append(FAILS)
            rows.append("chosen λ by rate: " + ", ".join(f"{x:g}" for x in lams) + " (does not increase)")
        else:
            verdicts.append(HOLDS if all(margins[t.condition][0] == HOLDS for t in fam) else UNDECIDED)
            rows.append("chosen λ by rate: " + ", ".join(f"{x:g}" for x in lams))
    return Claim("(b) the λ chosen on validation grows with the noise rate (noisy rates only)",
                 combine(verdicts), rows)


def _zero_against_chosen(t: Tuning) -> tuple[str, Sample, str, Sample] | str:
    """Claim (c) at one clean condition: λ = 0 against the best other λ when λ = 0 was chosen,
    else the best λ = 0 trial against the chosen setting."""
    if t.chosen["lam"] == 0:
        return _lam_pair(t)
    zero = _trial_best(t, lambda r: _trained(r)["lam"] == 0)
    if zero is None:
        return f"chosen λ={t.chosen['lam']:g}; λ = 0 was not among the tried settings → {UNDECIDED}"
    chosen = _trial_best(t, lambda r: _trained(r) == t.chosen)
    return ("best λ=0 val", _trial_sample(zero), f"chosen λ={t.chosen['lam']:g} val",
            _trial_sample(chosen))


def _claim_c(tunings: list[Tuning]) -> Claim | None:
    # Only a pure noise study has clean data at r = 0 (a named condition, e.g. imbalance, is not clean).
    clean = [t for t in tunings if t.method == "dm" and t.noise_rate == 0 and t.chosen
             and t.condition.startswith("r=")]
    if not clean:
        return None
    judged = _judged({t.condition: _zero_against_chosen(t) for t in clean})
    return Claim("(c) on clean data λ = 0 is the best DM setting (validation)",
                 combine([v for v, _ in judged.values()]),
                 [f"{cond}: {line}" for cond, (_, line) in judged.items()])


def _claim_d(table: pd.DataFrame) -> Claim | None:
    # Only where both sides recorded p_i (published numbers hold none).
    found = [f for f in _dm_and_cce_under_noise(table)
             if _seeds(f[2], "p_noisy_late").n and _seeds(f[3], "p_noisy_late").n]
    if not found:
        return None
    # The claim is that DM's p_i is the lower one.
    tested = compare_all([(label, _seeds(dm, "p_noisy_late"), "CCE", _seeds(cce, "p_noisy_late"))
                          for _, label, dm, cce in found], lower=True)
    rows = [f"{cond}: fit of corrupted labels {label} {spread_text(_seeds(dm, 'fit_corrupted_subset'))} vs "
            f"CCE {spread_text(_seeds(cce, 'fit_corrupted_subset'))}; late mean p_i of corrupted "
            f"examples {c.text(percent=False)}"
            for (cond, label, dm, cce), c in zip(found, tested, strict=True)]
    return Claim("(d) corrupted examples keep a lower p_i under DM than under CCE",
                 combine([c.verdict for c in tested]), rows)


def _claim_e(table: pd.DataFrame) -> Claim | None:
    conditions = []
    for cond, part in table.groupby("condition", sort=False):
        by = part.set_index("method")
        if "dm" in by.index and len(by) > 1:
            conditions.append((cond, by))
    if not conditions:
        return None
    pairs = [(f"{cond}: DM", _seeds(by.loc["dm"], "test_acc_selected"), method,
              _seeds(other, "test_acc_selected"))
             for cond, by in conditions for method, other in by.drop(index="dm").iterrows()]
    tested = compare_all(pairs)  # Holm across every comparison of the claim
    rows, at = [], 0
    for cond, by in conditions:
        rows += [c.text() for c in tested[at:at + len(by) - 1]]
        at += len(by) - 1
        val = {method: _seeds(row, "val_acc_selected") for method, row in by.iterrows()}
        if any(s.n for s in val.values()):
            rows.append(f"{cond}: the method with the best validation accuracy is "
                        f"{best_of(val).text()}")
    return Claim("(e) DM beats every other method of the study in every condition (selected test "
                 "accuracy)", combine([c.verdict for c in tested]), rows)


def check_claims(table: pd.DataFrame, tunings: list[Tuning] | None = None) -> list[Claim]:
    """The claims the runs in ``table`` (``seed_table``) can test, others left out. ``tunings``:
    a study's searches, on whose validation scores (b) and (c) are judged; without them (a
    preset, nothing tuned) (b) and (c) are stated as not judged."""
    if tunings:
        b, c = _claim_b(tunings), _claim_c(tunings)
    else:
        b = _unjudged(table, "(b) the best λ grows with the noise rate")
        c = _unjudged(table, "(c) on clean data λ = 0 is best among the DM variants")
    found = [_claim_a(table), b, c, _claim_d(table), _claim_e(table)]
    return [x for x in found if x is not None]
