"""What a failed run records as its error, and the unfinished files its attempt leaves.

The error is the traceback's last line -- of the root cause when the exception wraps an
``OSError`` (a checkpoint that hit a full disk says "No space left on device", not the
serialiser's follow-up error). Unfinished writes (``*.tmp``) are removed when an attempt
ends: nothing reads them again, and on a full disk they hold the space that is missing.
"""

from __future__ import annotations

import errno
import os
import traceback
from pathlib import Path

from dm_core.checkpoints import os_error_behind


def last_line(err: BaseException) -> str:
    """``ValueError: message`` -- the traceback's last line."""
    return traceback.format_exception_only(err)[-1].strip()


def describe_failure(err: BaseException, checkpoint_dir: Path) -> str:
    """The error a failed run records: the traceback's last line, or -- when ``err`` is the
    follow-up of an ``OSError`` (torch's serialiser reports a write that hit a full disk as
    ``RuntimeError: … unexpected pos …``) -- that ``OSError``, naming the checkpoint folder
    when a checkpoint was being written there."""
    cause = os_error_behind(err)
    if cause is None or cause is err:
        return last_line(err)
    if any(p.name.endswith(".pt.tmp") for p in _partial_files(checkpoint_dir)):
        return (f"OSError: [Errno {cause.errno}] cannot write a checkpoint in {checkpoint_dir}: "
                f"{cause.strerror or os.strerror(cause.errno or errno.EIO)}")
    return last_line(cause)


def _partial_files(folder: Path) -> list[Path]:
    """Files a write left unfinished in ``folder`` (``*.tmp``: renamed into place only
    once complete)."""
    try:
        return [p for p in Path(folder).iterdir() if p.name.endswith(".tmp") and p.is_file()]
    except OSError:
        return []


def remove_partial_files(folder: Path) -> None:
    """An attempt's unfinished writes are never read again; on a full disk they only take
    the space that is missing."""
    for path in _partial_files(folder):
        path.unlink(missing_ok=True)


__all__ = ["describe_failure", "last_line", "remove_partial_files"]
