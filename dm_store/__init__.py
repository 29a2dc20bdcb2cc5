"""The store: runs, their metrics and the work queue, in SQLite or PostgreSQL.

>>> from dm_store import Store, RunStatus
>>> sorted(s.value for s in RunStatus)
['cancelled', 'failed', 'queued', 'running', 'succeeded']

See ``dm_store.store`` for the facade and the modules behind it. The names below are
imported on first use (PEP 562), so that ``dm_store.status`` -- the status names the CLI
shows in its help -- loads without SQLAlchemy, numpy or pandas.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# name -> the module that defines it
_EXPORTS = {
    "TRANSITIONS": "status", "RunStatus": "status", "sources_of": "status",
    "DatabaseFull": "errors", "DatabaseReplaced": "errors",
    "InvalidTransition": "errors", "LostClaim": "errors", "RunNotFound": "errors",
    "StoreError": "errors", "StoreUnavailable": "errors",
    "ClaimedRun": "runs", "RunInfo": "runs", "SubmitResult": "runs",
    "HistogramSeries": "metrics",
    "mask_url": "database", "resolve_url": "database",
    "DEFAULT_ARTIFACTS": "artifacts",
    "Store": "store",
}

__all__ = [
    "DEFAULT_ARTIFACTS", "TRANSITIONS", "ClaimedRun", "DatabaseFull", "DatabaseReplaced",
    "HistogramSeries", "InvalidTransition",
    "LostClaim", "RunInfo", "RunNotFound", "RunStatus", "Store", "StoreError",
    "StoreUnavailable", "SubmitResult", "mask_url", "resolve_url", "sources_of",
]
assert sorted(__all__) == sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dm_store' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"dm_store.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:
    from dm_store.artifacts import DEFAULT_ARTIFACTS
    from dm_store.database import mask_url, resolve_url
    from dm_store.errors import (
        DatabaseFull,
        DatabaseReplaced,
        InvalidTransition,
        LostClaim,
        RunNotFound,
        StoreError,
        StoreUnavailable,
    )
    from dm_store.metrics import HistogramSeries
    from dm_store.runs import ClaimedRun, RunInfo, SubmitResult
    from dm_store.status import TRANSITIONS, RunStatus, sources_of
    from dm_store.store import Store
