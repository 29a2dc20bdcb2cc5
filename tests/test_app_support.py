"""Shared helpers for the dashboard's AppTest tests (imported by tests/test_app_*.py).

- ``app_db`` (import ``app_db_fixture``): a fresh SQLite database per test, exported as ``DM_DATABASE_URL``, with the
  dashboard's cached stores cleared before and after (docs/architecture.md, "Streamlit: one
  engine per database URL").
- ``fabricate``: a run with scalars, histograms and evaluations written through the store's
  worker-side API (claim → write_batch → finish), as a real worker would.
- ``figures``: the plotly figures of an AppTest page, with numpy arrays decoded
  (docs/architecture.md, "Plotly payloads").
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dm_core.config import parse_config
from dm_core.events import EvalEvent, HistogramEvent, ScalarsEvent
from dm_store import Store

APP = str(Path(__file__).resolve().parents[1] / "app" / "views" / "{}.py")
TIMEOUT = 120


@pytest.fixture(name="app_db")
def app_db_fixture(tmp_path, monkeypatch):
    """URL of a fresh SQLite database that the pages under test use."""
    from app.db import get_store

    url = f"sqlite:///{tmp_path / 'dm.sqlite'}"
    monkeypatch.setenv("DM_DATABASE_URL", url)
    monkeypatch.setenv("DM_ARTIFACTS", str(tmp_path / "artifacts"))
    get_store.clear()
    yield url
    get_store.clear()


def decode(value: Any) -> np.ndarray:
    """A plotly array as numpy: base64 ``{"dtype", "bdata", "shape"}`` or a plain list."""
    if isinstance(value, dict) and "bdata" in value:
        out = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        if "shape" in value:
            out = out.reshape([int(n) for n in str(value["shape"]).split(",")])
        return out
    return np.asarray(value)


def figures(at) -> dict[str, dict[str, Any]]:
    """Every plotly chart of the page as ``{key: {"data": [...], "layout": {...}}}``."""
    out = {}
    for i, el in enumerate(at.get("plotly_chart")):
        spec = json.loads(el.proto.spec)
        key = el.proto.id or str(i)
        out[key] = spec
    return out


def chart(at, key: str) -> dict[str, Any]:
    """The figure of the chart whose widget key is ``key``."""
    for el in at.get("plotly_chart"):
        if key in (el.proto.id or ""):
            return json.loads(el.proto.spec)
    raise KeyError(f"no plotly chart with key {key!r}; have "
                   f"{[el.proto.id for el in at.get('plotly_chart')]}")


def trace(fig: dict[str, Any], name: str) -> dict[str, Any]:
    for t in fig["data"]:
        if t.get("name") == name:
            return t
    raise KeyError(f"no trace {name!r}; have {[t.get('name') for t in fig['data']]}")


def fabricate(store: Store, name: str = "fake", loss: dict | None = None, iterations: int = 200,
              upto: int | None = None, finish: bool = True, eval_every: int = 50,
              bins: int = 10, seed: int = 0, worker: str = "test-worker",
              run_id: int | None = None, start_at: int = 1, group: str | None = None,
              noise_rate: float = 0.4, acc_shift: float = 0.0, val: bool = False,
              diverge: bool = False, divergence: dict | None = None,
              concentration: bool = False, val_shift: float = 0.0) -> int:
    """Queue (or continue) a run and write iterations ``start_at..upto`` as a worker would.

    p_i of clean examples rises towards 1; of corrupted ones stays low. The summary of a
    finished run holds exact, checkable numbers. ``acc_shift`` moves every test accuracy
    (a setting's or a seed's effect), ``val`` logs a validation accuracy that peaks half-way
    (moved by ``val_shift``), ``diverge`` ends the run as
    diverged at its last iteration (no summary) with the measured figures ``divergence``,
    ``concentration`` logs the batch's ``ess_fraction`` (falling) and ``max_share`` (rising).
    """
    rng = np.random.default_rng(seed)
    upto = iterations if upto is None else upto
    if run_id is None:
        cfg = parse_config({"name": name, "seed": seed, "iterations": iterations,
                            "eval_every": eval_every, "histogram_bins": bins,
                            "dataset": {"name": "digits", "val_fraction": 0.1 if val else 0.0,
                                        "noise": {"kind": "symmetric", "rate": noise_rate}},
                            "loss": loss or {"name": "dm", "lam": 1.0, "beta": 8.0}})
        run_id = store.submit([cfg], group=group).run_ids[0]
        claimed = store.claim(worker, "cpu")
        assert claimed is not None and claimed.id == run_id
    attempt = store.get_run(run_id).attempt
    scalars, hists, evals = [], [], []
    for it in range(start_at, upto + 1):
        frac = it / iterations
        scalars.append(ScalarsEvent(it, {
            "loss": float(2.0 * (1 - frac) + 0.1), "ce": float(1.5 * (1 - frac) + 0.2), "lr": 0.1 if frac < 0.5 else 0.01,
            "batch_acc": float(0.5 + 0.4 * frac), "p_clean_mean": float(0.2 + 0.7 * frac),
            "p_noisy_mean": float(0.1 + 0.05 * frac), "weight_mean": 1.0,
            "weight_var": float(0.5 * (1 - frac)),
            **({"ess_fraction": float(0.9 - 0.6 * frac), "max_share": float(0.02 + 0.3 * frac**2)}
               if concentration else {})}))
        clean = rng.multinomial(60, np.linspace(1 - frac + 0.01, frac + 0.01, bins) /
                                np.linspace(1 - frac + 0.01, frac + 0.01, bins).sum())
        noisy = rng.multinomial(40, np.linspace(1, 0.1, bins) / np.linspace(1, 0.1, bins).sum())
        hists.append(HistogramEvent(it, clean.astype(np.int32), noisy.astype(np.int32)))
        if it % eval_every == 0 or it == iterations:
            values = {"test_acc": round(0.5 + 0.4 * frac + acc_shift, 4),
                      "train_acc_corrupted": round(0.3 + 0.1 * frac, 4),
                      "train_acc_intact": round(0.5 + 0.3 * frac, 4),
                      "fit_corrupted_subset": round(0.05 * frac, 4)}
            if val:
                values["val_acc"] = round(0.9 - abs(frac - 0.5) + val_shift, 4)
            evals.append(EvalEvent(it, values))
    store.write_batch(run_id, attempt, scalars=scalars, histograms=hists, evals=evals,
                      worker_id=worker)
    if diverge:
        store.finish(run_id, worker, "failed", error=f"diverged at iteration {upto}",
                     diverged_at=upto, divergence=divergence or {"max_share": 0.99})
        return run_id
    if finish and upto == iterations:
        accs = [e.values["test_acc"] for e in evals]
        store.finish(run_id, worker, "succeeded", summary={
            "test_acc_final": accs[-1], "test_acc_best": max(accs) + 0.01 * seed,
            "train_acc_corrupted": evals[-1].values["train_acc_corrupted"],
            "train_acc_intact": evals[-1].values["train_acc_intact"],
            "fit_corrupted_subset": evals[-1].values["fit_corrupted_subset"],
            "actual_noise_rate": 0.4, "iterations": iterations, "seconds": 1.0, "device": "cpu",
            "val_acc_best": None, "relabel": None})
    return run_id


def _walk(node, path=()):
    children = getattr(node, "children", None)
    if isinstance(children, dict):
        for i, child in children.items():
            yield from _walk(child, (*path, i))
    else:
        yield path, node


def errors_under(at, key: str) -> list[str]:
    """The error messages drawn in the slot right below the widget ``key`` (same column), as
    the reader sees them (they are Markdown with user text escaped: ``rendered``)."""
    items = list(_walk(at._tree))
    for i, (path, node) in enumerate(items):
        if getattr(node, "key", None) == key:
            slot = (*path[:-1], path[-1] + 1)
            return [rendered(str(n.value)) for p, n in items[i + 1:]
                    if p[:len(slot)] == slot and getattr(n, "type", None) == "error"]
    raise KeyError(f"no widget with key {key!r}")


def frame_with(at, column: str):
    """The value of the first dataframe on the page with a column (or index) named ``column``
    (``st.dataframe`` elements carry no key in AppTest)."""
    for df in at.dataframe:
        value = df.value
        if column in value.columns or value.index.name == column:
            return value
    raise KeyError(f"no dataframe with a column {column!r}; have "
                   f"{[list(d.value.columns) for d in at.dataframe]}")


def rendered(markdown: str) -> str:
    """Markdown source as the reader sees its characters: backslash escapes and invisible
    word joiners (app.text.md puts them into addresses) removed."""
    import re

    return re.sub(r"\\(.)", r"\1", markdown).replace("\u2060", "")
