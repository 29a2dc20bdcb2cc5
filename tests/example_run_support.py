"""A store holding tiny real digits runs with per-example snapshots: trained in this process
by ``dm_core.train.train`` and written with ``Store.write_batch`` as a worker's sink writes
them (the tests of ``dm examples`` and of the Examples page)."""

from __future__ import annotations

import json

from dm_core.config import parse_config
from dm_core.events import EvalEvent, ExamplesEvent, ScalarsEvent, StartEvent
from dm_core.train import train
from dm_store import Store


def tiny_config(name: str = "ex", loss: dict | None = None, seed: int = 6, **overrides):
    base = {"name": name, "seed": seed,
            "dataset": {"name": "digits", "noise": {"kind": "symmetric", "rate": 0.4}},
            "model": {"name": "mlp", "hidden": [32]}, "loss": loss or {"name": "cce"},
            "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
            "iterations": 40, "batch_size": 64, "eval_every": 10, "device": "cpu"}
    return parse_config(base, [f"{k}={json.dumps(v)}" for k, v in overrides.items()])


def trained_run(store: Store, config) -> int:
    """Queue ``config``, train it here and store what a worker would; the run's id."""
    [run_id] = store.submit([config]).run_ids
    claimed = store.claim("test-worker", "cpu")
    events: list = []
    train(config, on_event=events.append)
    store.write_batch(run_id, claimed.attempt,
                      scalars=[e for e in events if isinstance(e, ScalarsEvent)],
                      evals=[e for e in events if isinstance(e, EvalEvent)],
                      examples=[e for e in events if isinstance(e, ExamplesEvent)],
                      start=next(e for e in events if isinstance(e, StartEvent)),
                      worker_id="test-worker")
    store.finish(run_id, "test-worker", "succeeded", attempt=claimed.attempt)
    return run_id
