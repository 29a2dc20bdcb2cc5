"""Checkpoint files of the training loop: written atomically, read as data, matched to a run.

A checkpoint (``CHECKPOINT_NAME`` in a run's checkpoint directory) describes itself: the
config, the iteration, the weights, optimiser, schedule and scaler states, the RNG states
and the best scores, so a worker on another machine can resume it without the original
config file (``load_checkpoint_config``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from dm_core.config import RunConfig

__all__ = ["CHECKPOINT_NAME", "check_same_run", "load_checkpoint", "load_checkpoint_config",
           "os_error_behind", "write_atomically"]

CHECKPOINT_NAME = "checkpoint.pt"


def write_atomically(state: dict[str, Any], directory: Path) -> Path:
    """Write ``state`` to ``directory / CHECKPOINT_NAME`` and return that path.

    Write then rename, so a crash mid-write never leaves a truncated checkpoint behind. A
    failed write (disk full, no permission) removes its partial file -- on a full disk it
    would only take more space -- and raises an ``OSError`` naming the directory. torch's
    serialiser reports a write that hit a full disk as ``RuntimeError: … unexpected pos …``
    with the ``OSError`` only as its cause or context: that ``OSError`` is what is raised.
    """
    path = directory / CHECKPOINT_NAME
    tmp = directory / (CHECKPOINT_NAME + ".tmp")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as err:
        cause = os_error_behind(err)
        if cause is None:
            raise
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        reason = cause.strerror or os.strerror(cause.errno)
        raise OSError(cause.errno, f"cannot write a checkpoint in {directory}: {reason}") from err
    return path


def os_error_behind(err: BaseException) -> OSError | None:
    """The first ``OSError`` with an errno in ``err`` and its chain of causes and contexts,
    else None: what the operating system refused (a full disk, a permission), behind the
    follow-up error a library raised about it (torch's serialiser reports a write that hit a
    full disk as ``RuntimeError: … unexpected pos …``). An ``OSError`` without an errno is a
    library's own message, not the system's answer, and is passed over.

    >>> full = OSError(28, "No space left on device")
    >>> wrapped = OSError("the library's own words")  # no errno: passed over
    >>> wrapped.__cause__ = full
    >>> err = RuntimeError("unexpected pos 64")
    >>> err.__context__ = wrapped
    >>> os_error_behind(err) is full, os_error_behind(ValueError("x"))
    (True, None)
    """
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno:
            return current
        current = current.__cause__ or current.__context__
    return None


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint's state; ``FileNotFoundError`` naming ``resume_from`` when it is missing."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"resume_from: checkpoint {str(p)!r} does not exist")
    # weights_only: a checkpoint is data, never code.
    return torch.load(p, map_location="cpu", weights_only=True)


def check_same_run(config: RunConfig, checkpoint: dict[str, Any]) -> None:
    """``ValueError`` unless ``checkpoint`` was written by ``config`` (``name`` and
    ``device`` may differ: they may change on the machine that resumes)."""
    # Through the model, so that a checkpoint written before a config field existed
    # compares with that field's default.
    saved = RunConfig.model_validate(checkpoint["config"]).model_dump(mode="json")
    current = config.model_dump(mode="json")
    for key in ("device", "name"):
        saved.pop(key, None)
        current.pop(key, None)
    if saved != current:
        diff = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
        raise ValueError(f"resume_from: the checkpoint belongs to a different config "
                         f"(differs in {', '.join(diff)})")


def load_checkpoint_config(path: str | Path) -> RunConfig:
    """The config a checkpoint was written with: enough to resume it anywhere."""
    return RunConfig.model_validate(load_checkpoint(path)["config"])
