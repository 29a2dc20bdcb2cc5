"""Where datasets may be read from: the allowed data directories of the machine that loads
them (``DM_DATA_DIRS``, else ``./data``). A config names a path; the dashboard or worker that
reads it decides what it may reach, and every dataset file is resolved through
``confine_data_path`` before it is opened.
"""

from __future__ import annotations

import os
from pathlib import Path

from dm_core.registry import ConfigError

DATA_DIRS_ENV = "DM_DATA_DIRS"
DEFAULT_DATA_DIR = "./data"


def allowed_data_dirs() -> list[Path]:
    """The directories datasets may be read from (or downloaded into), resolved on this
    machine: ``$DM_DATA_DIRS`` (``os.pathsep``-separated), else ``./data`` of the working
    directory. A config names a path; the machine that loads it decides what it may reach."""
    entries = [e for e in os.environ.get(DATA_DIRS_ENV, "").split(os.pathsep) if e.strip()]
    return [Path(e).expanduser().resolve() for e in entries or [DEFAULT_DATA_DIR]]


def confine_data_path(path: str, field: str) -> Path:
    """``path`` resolved (``~``, ``..`` and every symlink followed) when it lies inside one of
    ``allowed_data_dirs()``; otherwise a ConfigError naming ``field`` and how to allow it."""
    allowed = allowed_data_dirs()
    try:
        resolved = Path(path).expanduser().resolve()
    except (OSError, RuntimeError) as err:  # RuntimeError: a symlink loop (Python < 3.13)
        raise ConfigError(f"{field}: {path!r} cannot be resolved ({err})") from None
    if any(resolved == d or d in resolved.parents for d in allowed):
        return resolved
    shown = ", ".join(repr(str(d)) for d in allowed)
    raise ConfigError(
        f"{field}: {path!r} resolves to {str(resolved)!r}, outside the allowed data directories "
        f"({shown}); put the data under one of them, or allow its directory by adding it to "
        f"{DATA_DIRS_ENV} ({os.pathsep!r}-separated; default {DEFAULT_DATA_DIR} of the working "
        "directory) in the environment of the dashboard or worker that loads it")


def require_root(root: str, name: str) -> Path:
    path = confine_data_path(root, "dataset.root")
    if not path.is_dir():
        raise ConfigError(f"dataset.root: folder {str(path)!r} does not exist; put the {name} files "
                          "there (torchvision layout) or set dataset.download=true on a machine "
                          "with internet")
    return path


__all__ = ["DATA_DIRS_ENV", "DEFAULT_DATA_DIR", "allowed_data_dirs", "confine_data_path",
           "require_root"]
