"""Rows read from the store, as pandas DataFrames (only the dashboard's and the CLI's reads
need pandas: it is imported here, on first use, never by the workers)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from dm_store.models import SCALAR_COLUMNS

if TYPE_CHECKING:
    import pandas as pd


def records_frame(rows: Sequence[Any]) -> pd.DataFrame:
    """(iteration, dict) rows → a DataFrame: ``iteration`` plus one column per key; a value
    stored as null (it was not finite) comes back as NaN."""
    import pandas as pd

    iterations = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    df = pd.DataFrame.from_records([dict(r[1]) for r in rows]) if rows else pd.DataFrame()
    for column in df.columns:
        if df[column].dtype == object:  # None (a non-finite value when stored) → NaN
            try:
                df[column] = pd.to_numeric(df[column])
            except (TypeError, ValueError):
                pass
    df.insert(0, "iteration", iterations)
    return df


def scalars_frame(rows: Sequence[Any]) -> pd.DataFrame:
    """Scalar rows ``(iteration, *SCALAR_COLUMNS, extra)`` → ``iteration`` plus a float
    column per known scalar (always all of them, NaN where not reported: a fixed schema), then
    any extra scalar the loop reported."""
    import pandas as pd

    columns = list(zip(*rows, strict=True)) if rows else [()] * (len(SCALAR_COLUMNS) + 2)
    data = {"iteration": np.asarray(columns[0], dtype=np.int64)}
    for name, values in zip(SCALAR_COLUMNS, columns[1:-1], strict=True):
        data[name] = np.asarray(values, dtype=np.float64)  # None → NaN
    df = pd.DataFrame(data)
    extra = [(i, e) for i, e in enumerate(columns[-1]) if e]  # usually none at all
    if extra:
        more = pd.DataFrame.from_records([e for _, e in extra], index=[i for i, _ in extra])
        more = more.drop(columns=[c for c in more.columns if c in df.columns])
        df = pd.concat([df, more.reindex(df.index)], axis=1)
    return df


__all__ = ["records_frame", "scalars_frame"]
