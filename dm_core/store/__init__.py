"""The store: runs, their metrics and the work queue, in SQLite or PostgreSQL.

>>> from dm_core.store import Store, RunStatus
>>> sorted(s.value for s in RunStatus)
['cancelled', 'failed', 'queued', 'running', 'succeeded']

See ``dm_core.store.store`` for the full API and the run life cycle.
"""

from dm_core.store.store import (
    TRANSITIONS,
    ClaimedRun,
    HistogramSeries,
    InvalidTransition,
    LostClaim,
    RunInfo,
    RunNotFound,
    RunStatus,
    Store,
    StoreError,
    StoreUnavailable,
    SubmitResult,
    mask_url,
    resolve_url,
    sources_of,
)

__all__ = [
    "TRANSITIONS", "ClaimedRun", "HistogramSeries", "InvalidTransition", "LostClaim", "RunInfo",
    "RunNotFound", "RunStatus", "Store", "StoreError", "StoreUnavailable", "SubmitResult",
    "mask_url", "resolve_url", "sources_of",
]
