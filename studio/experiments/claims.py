"""The paper's claims, judged on the variants chosen on validation, with their evidence.

(a) under label noise DM beats CCE on test accuracy (final and selected);
(b) the λ chosen for DM grows with the noise rate (noisy rates only);
(c) on clean data λ = 0 is the best DM setting;
(d) noisy examples keep a low p_i under DM while CCE memorises them;
(e) DM beats every other method of the study, in every condition (selected test accuracy);
    with, per condition, the method the validation split would pick.

Every comparison has the seed-spread check: a difference no larger than the combined spread
over seeds (√(std_a² + std_b²), population std) is "undecided". (b) "does not hold" whenever the
chosen λ does not increase from the lowest to the highest noisy rate. (b) and (c) are about
which setting is best, which is a validation question: they read the tuning trials'
validation scores (mean ± std over the tuning seeds), never test accuracy. Each claim carries
the numbers it was judged on and nothing else: no prose that the numbers do not show.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import pandas as pd

from studio.experiments.spaces import canonical
from studio.experiments.tuner import StudyResult, TrialRecord, Tuning

HOLDS, FAILS, UNDECIDED = "holds", "does not hold", "undecided"


@dataclass(frozen=True)
class Claim:
    text: str
    verdict: str
    evidence: list[str]


def seed_table(final: pd.DataFrame, conditions: list[str] | None = None,
               methods: list[str] | None = None) -> pd.DataFrame:
    """Mean and population std over the final seeds per (condition, method), in the order of
    ``conditions`` and ``methods`` (the study's) when given, else as the runs came."""
    metrics = ["test_acc_final", "test_acc_selected", "test_acc_best", "val_acc_selected",
               "train_acc_corrupted", "train_acc_intact", "fit_corrupted_subset", "p_noisy_late"]
    g = final.groupby(["condition", "method"], sort=False)
    out = g[metrics].mean()
    std = g[metrics].std(ddof=0).fillna(0.0)
    for m in metrics:
        out[m + "_std"] = std[m]
    out["params"] = g["params"].first()
    out["noise_rate"] = g["noise_rate"].first()
    out["n"] = g.size()
    out["diverged"] = g["diverged"].sum()
    out = out.reset_index()
    cond_order = {c: i for i, c in enumerate(conditions or dict.fromkeys(final["condition"]))}
    method_order = {m: i for i, m in enumerate(methods or dict.fromkeys(final["method"]))}
    out["_c"], out["_m"] = out["condition"].map(cond_order), out["method"].map(method_order)
    return out.sort_values(["_c", "_m"], kind="stable").drop(columns=["_c", "_m"]).reset_index(drop=True)


def compare(a: float, sa: float, b: float, sb: float) -> str:
    """HOLDS when a > b beyond the spread, FAILS when a < b beyond it, else UNDECIDED."""
    if any(math.isnan(x) for x in (a, b)):
        return UNDECIDED
    spread = math.hypot(sa, sb)
    if abs(a - b) <= spread:
        return UNDECIDED
    return HOLDS if a > b else FAILS


def combine(verdicts: list[str]) -> str:
    if not verdicts:
        return UNDECIDED
    if FAILS in verdicts:
        return FAILS
    return HOLDS if all(v == HOLDS for v in verdicts) else UNDECIDED


def _setting(params: str) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in json.loads(params).items())


def _pct(mean: float, std: float) -> str:
    return "–" if math.isnan(mean) else f"{mean * 100:.1f} ± {std * 100:.1f}%"


def _versus(dm_label: str, dm: pd.Series, other_label: str, other: pd.Series,
            metric: str) -> tuple[str, str]:
    """DM's row against another on ``metric``: the verdict, and the evidence line that states it."""
    v = compare(dm[metric], dm[metric + "_std"], other[metric], other[metric + "_std"])
    return v, (f"{dm_label} {_pct(dm[metric], dm[metric + '_std'])} vs "
               f"{other_label} {_pct(other[metric], other[metric + '_std'])} → {v}")


def _dm_and_cce_under_noise(table: pd.DataFrame):
    """(condition, DM's row, CCE's row) for every noisy condition where both were run."""
    for cond, part in table[table["noise_rate"] > 0].groupby("condition", sort=False):
        by = part.set_index("method")
        if "dm" in by.index and "cce" in by.index:
            yield cond, by.loc["dm"], by.loc["cce"]


def _claim_a(table: pd.DataFrame) -> Claim | None:
    rows, verdicts = [], []
    for cond, dm, cce in _dm_and_cce_under_noise(table):
        for metric, word in (("test_acc_final", "final"), ("test_acc_selected", "selected")):
            v, row = _versus(f"{cond}, {word}: DM ({_setting(dm['params'])})", dm, "CCE", cce, metric)
            verdicts.append(v)
            rows.append(row)
    if not rows:
        return None
    return Claim("(a) under label noise DM (its setting chosen on validation) beats CCE on test "
                 "accuracy", combine(verdicts), rows)


def _trial_best(t: Tuning, keep) -> TrialRecord | None:
    done = [r for r in t.trials if r.state == "complete" and keep(r)]
    return max(done, key=lambda r: r.value) if done else None


def _trained(r: TrialRecord) -> dict[str, float]:
    """The DM setting a trial trained: with β = 0 the weights are 1 whatever λ it names, so
    its λ is 0 (``spaces.canonical``)."""
    return canonical("dm", r.params)


def _lam_margin(t: Tuning) -> tuple[str, str]:
    """Whether the chosen λ's validation score beats the best trial with another λ beyond
    the spread over tuning seeds, and the numbers."""
    lam = t.chosen["lam"]
    mine = _trial_best(t, lambda r: _trained(r) == t.chosen)
    other = _trial_best(t, lambda r: _trained(r)["lam"] != lam)
    if other is None:
        return UNDECIDED, f"λ={lam:g} val {mine.value * 100:.2f}% (no other λ was tried)"
    v = compare(mine.value, mine.std, other.value, other.std)
    return v, (f"chosen λ={lam:g} val {_pct(mine.value, mine.std)} vs best other "
               f"λ={_trained(other)['lam']:g} val {_pct(other.value, other.std)}")


def _claim_b(result: StudyResult) -> Claim | None:
    dm = [t for t in result.tunings if t.method == "dm" and t.noise_rate > 0 and t.chosen]
    if not dm:
        return None
    families: dict[str, list[Tuning]] = {}
    for t in dm:  # one family per named condition (imbalance ratio, …), ordered by rate
        families.setdefault(t.condition.rsplit("r=", 1)[0], []).append(t)
    verdicts, rows = [], []
    for fam in families.values():
        fam.sort(key=lambda t: t.noise_rate)
        lams = [t.chosen["lam"] for t in fam]
        margins = [_lam_margin(t) for t in fam]
        rows += [f"{t.condition}: {text}" for t, (_, text) in zip(fam, margins, strict=True)]
        if len(fam) < 2:
            verdicts.append(UNDECIDED)
            rows.append("only one noisy rate: a trend needs two")
        elif not (all(b >= a for a, b in zip(lams, lams[1:], strict=False)) and lams[-1] > lams[0]):
            verdicts.append(FAILS)
            rows.append("chosen λ by rate: " + ", ".join(f"{x:g}" for x in lams) + " (does not increase)")
        else:
            verdicts.append(HOLDS if all(v == HOLDS for v, _ in margins) else UNDECIDED)
            rows.append("chosen λ by rate: " + ", ".join(f"{x:g}" for x in lams))
    return Claim("(b) the λ chosen on validation grows with the noise rate (noisy rates only)",
                 combine(verdicts), rows)


def _claim_c(result: StudyResult) -> Claim | None:
    # Only a pure noise study has clean data at r = 0 (a named condition, e.g. imbalance, is not clean).
    clean = [t for t in result.tunings if t.method == "dm" and t.noise_rate == 0 and t.chosen
             and t.condition.startswith("r=")]
    if not clean:
        return None
    verdicts, rows = [], []
    for t in clean:
        zero = _trial_best(t, lambda r: _trained(r)["lam"] == 0)
        chosen = _trial_best(t, lambda r, want=t.chosen: _trained(r) == want)
        if t.chosen["lam"] == 0:
            v, text = _lam_margin(t)
        elif zero is None:
            v, text = UNDECIDED, f"chosen λ={t.chosen['lam']:g}; λ = 0 was not among the tried settings"
        else:
            v = compare(zero.value, zero.std, chosen.value, chosen.std)
            text = (f"best λ=0 val {_pct(zero.value, zero.std)} vs chosen λ={t.chosen['lam']:g} "
                    f"val {_pct(chosen.value, chosen.std)}")
        verdicts.append(v)
        rows.append(f"{t.condition}: {text} → {v}")
    return Claim("(c) on clean data λ = 0 is the best DM setting (validation)", combine(verdicts), rows)


def _claim_d(table: pd.DataFrame) -> Claim | None:
    rows, verdicts = [], []
    for cond, dm, cce in _dm_and_cce_under_noise(table):
        v = compare(cce["p_noisy_late"], cce["p_noisy_late_std"], dm["p_noisy_late"], dm["p_noisy_late_std"])
        verdicts.append(v)
        rows.append(f"{cond}: late mean p_i of corrupted examples DM {dm['p_noisy_late']:.3f} ± "
                    f"{dm['p_noisy_late_std']:.3f} vs CCE {cce['p_noisy_late']:.3f} ± "
                    f"{cce['p_noisy_late_std']:.3f}; fit of corrupted labels DM "
                    f"{_pct(dm['fit_corrupted_subset'], dm['fit_corrupted_subset_std'])} vs CCE "
                    f"{_pct(cce['fit_corrupted_subset'], cce['fit_corrupted_subset_std'])} → {v}")
    if not rows:
        return None
    return Claim("(d) corrupted examples keep a lower p_i under DM than under CCE", combine(verdicts), rows)


def _claim_e(table: pd.DataFrame) -> Claim | None:
    rows, verdicts = [], []
    for cond, part in table.groupby("condition", sort=False):
        by = part.set_index("method")
        if "dm" not in by.index or len(by) < 2:
            continue
        dm = by.loc["dm"]
        for method, other in by.drop(index="dm").iterrows():
            v, row = _versus(f"{cond}: DM", dm, method, other, "test_acc_selected")
            verdicts.append(v)
            rows.append(row)
        val = by["val_acc_selected"].dropna()
        if len(val):
            pick = val.idxmax()
            rows.append(f"{cond}: the method with the best validation accuracy is {pick} "
                        f"(val {_pct(by.loc[pick, 'val_acc_selected'], by.loc[pick, 'val_acc_selected_std'])})")
    if not verdicts:
        return None
    return Claim("(e) DM beats every other method of the study in every condition (selected test "
                 "accuracy)", combine(verdicts), rows)


def check_claims(result: StudyResult, table: pd.DataFrame) -> list[Claim]:
    """The claims this study's methods and rates can test (others are left out)."""
    found = [_claim_a(table), _claim_b(result), _claim_c(result), _claim_d(table), _claim_e(table)]
    return [c for c in found if c is not None]
