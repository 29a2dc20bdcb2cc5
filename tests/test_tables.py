"""app/tables.py: the results tables under the fair protocol, against numbers written out."""

from __future__ import annotations

import numpy as np
import pandas as pd

from app.tables import (
    FINAL_TEST,
    OPTIMISTIC_TEST,
    SELECTED_TEST,
    SELECTED_VAL,
    paper_layout,
    ranked_by_validation,
    selected_accuracies,
    with_no_validation_marked,
)


def _table() -> pd.DataFrame:
    """cce and dm at r = 0.2 and 0.4, two seeds each; cce held out no validation split."""
    rows = []
    for method, sel, final, best in (("cce", np.nan, 0.70, 0.80), ("dm(lam=1, beta=8)", 0.84, 0.82, 0.90)):
        for rate, drop in ((0.2, 0.0), (0.4, 0.1)):
            for seed, jitter in ((0, 0.0), (1, 0.02)):
                rows.append({"method": method, "noise rate": rate, "seed": seed,
                             SELECTED_TEST: sel - drop + jitter, FINAL_TEST: final - drop + jitter,
                             OPTIMISTIC_TEST: best - drop + jitter})
    return pd.DataFrame(rows)


def test_paper_layout_is_selected_over_final_and_best_only_labelled_optimistic():
    out = paper_layout(_table())
    assert list(out.columns) == ["r = 0.2 (selected / final)", "r = 0.4 (selected / final)"]
    assert out.loc["dm(lam=1, beta=8)", "r = 0.4 (selected / final)"] == "0.750 / 0.730"  # 0.74, 0.76
    assert out.loc["cce", "r = 0.2 (selected / final)"] == "— / 0.710"
    assert not any("0.9" in c for c in out.to_numpy().ravel())  # no max over test unless asked
    shown = paper_layout(_table(), optimistic=True)
    assert shown.loc["dm(lam=1, beta=8)", "r = 0.2 (selected / final)"] == \
        "0.850 / 0.830 (optimistic best 0.910)"


def test_ranking_reads_validation_only():
    pooled = pd.DataFrame({"setting": ["a", "b", "c", "d"],
                           SELECTED_VAL: [0.80, np.nan, 0.90, 0.85],
                           SELECTED_TEST: [0.99, 0.99, 0.60, 0.70],
                           OPTIMISTIC_TEST: [0.99, 0.99, 0.61, 0.71]})
    assert list(ranked_by_validation(pooled)["setting"]) == ["c", "d", "a"]  # b: no validation


def test_selection_is_the_first_best_validation_accuracy():
    ev = pd.DataFrame({"iteration": [10, 20, 30, 40], "val_acc": [0.5, 0.8, 0.8, 0.7],
                       "test_acc": [0.4, 0.6, 0.9, 0.95]})
    assert selected_accuracies(ev) == (0.8, 0.6)
    val, test = selected_accuracies(ev.drop(columns="val_acc"))
    assert np.isnan(val) and np.isnan(test)
    shown = with_no_validation_marked(pd.DataFrame({SELECTED_VAL: [0.8, np.nan],
                                                    SELECTED_TEST: [0.6, np.nan]}))
    assert shown[SELECTED_TEST].tolist() == ["0.6000", "—"]
    pooled = with_no_validation_marked(pd.DataFrame({f"{SELECTED_VAL} ± std": [0.01, np.nan],
                                                     "final test acc": [0.9, 0.8]}))
    assert pooled[f"{SELECTED_VAL} ± std"].tolist() == ["0.0100", "—"]
    assert pooled["final test acc"].tolist() == [0.9, 0.8]  # numbers stay numbers
