"""Where a run's files live on disk: checkpoints, one folder per attempt.

    <artifacts>/run-<id>/attempt-<n>/checkpoint-<iteration>.pt
    <artifacts>/run-<id>/retry-<r>/attempt-<n>/...          (after r retries)

Each attempt writes only into its own folder, so a worker of an older attempt that has not
noticed yet that it lost the run (frozen, then woken) never overwrites the current attempt's
files. Files are removed when nobody can need them any more: the whole run folder when the run
is deleted or retried from scratch; every file but the recorded checkpoint once the run
finishes (killed attempts leave theirs behind) or when a worker drops a run it lost.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path

DEFAULT_ARTIFACTS = "./var/artifacts"
ARTIFACTS_ENV = "DM_ARTIFACTS"


def resolve_artifacts(path: str | Path | None = None) -> Path:
    """The artifacts folder: ``path``, else ``$DM_ARTIFACTS``, else ./var/artifacts (absolute)."""
    return Path(path or os.environ.get(ARTIFACTS_ENV) or DEFAULT_ARTIFACTS).expanduser().resolve()


def run_dir(root: Path, run_id: int) -> Path:
    """Where a run's files live: ``root/run-<id>``."""
    return Path(root) / f"run-{int(run_id)}"


def attempt_dir(root: Path, run_id: int, attempt: int, retries: int = 0) -> Path:
    """Where one attempt writes its checkpoints (see the module docstring). A retry starts
    the attempts over at 1, hence the retry number in the path."""
    folder = run_dir(root, run_id)
    if retries:
        folder = folder / f"retry-{retries}"
    return folder / f"attempt-{attempt}"


def run_dirs(root: Path, run_id: int, checkpoint_path: str | None) -> set[Path]:
    """The run's folder under ``root``, and the one holding its recorded checkpoint when a
    worker used another artifacts folder."""
    found = {run_dir(root, run_id)}
    if checkpoint_path:
        for parent in Path(checkpoint_path).parents:
            if parent.name == f"run-{int(run_id)}":
                found.add(parent)
                break
    return found


def remove_run(root: Path, run_id: int, checkpoint_path: str | None = None) -> None:
    """Delete every file of a run (it was deleted, or retried from scratch)."""
    for folder in run_dirs(root, run_id, checkpoint_path):
        if folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)


def remove_files(folder: Path, keep: Iterable[str | Path | None] = ()) -> int:
    """Delete every file under ``folder`` except those in ``keep``, then the folders left
    empty (``folder`` itself included). Returns how many files were deleted; files that
    vanish meanwhile or cannot be deleted are skipped."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    kept = {Path(p).resolve() for p in keep if p}
    removed = 0
    for parent, dirs, files in os.walk(folder, topdown=False):
        for name in files:
            path = Path(parent) / name
            if path.resolve() in kept:
                continue
            try:
                path.unlink()
                removed += 1
            except OSError:
                pass
        for name in dirs:
            try:
                (Path(parent) / name).rmdir()  # only if empty
            except OSError:
                pass
    try:
        folder.rmdir()
    except OSError:
        pass
    return removed


__all__ = ["ARTIFACTS_ENV", "DEFAULT_ARTIFACTS", "attempt_dir", "remove_files", "remove_run",
           "resolve_artifacts", "run_dir", "run_dirs"]
