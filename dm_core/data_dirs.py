"""Where datasets may be read from, and how their array files are read within bounds.

The allowed data directories are those of the machine that loads the data (``DM_DATA_DIRS``,
else ``./data``). A config names a path; the dashboard or worker that reads it decides what it
may reach, and every dataset file is resolved through ``confine_data_path`` before it is
opened. Arrays are read from ``.npz`` and ``.npy`` files by ``read_npz`` and ``read_npy``, which
check the sizes a file declares before reading its data and never unpickle.
"""

from __future__ import annotations

import math
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

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


# The arrays read from one file together inflate to at most this many bytes, counted from the
# shapes and dtypes their .npy headers declare before anything is decompressed.
MAX_ARRAYS_BYTES = 1 << 31
# ... and hold at most this many values: 2 GiB as float32, the dtype the inputs are trained in
# (CIFAR-10's 60,000 images are 184 million values), so the cast after reading stays bounded.
MAX_ARRAYS_ELEMENTS = 1 << 29
# Room for an .npy member's own header beyond its values.
_NPY_HEADER_SLACK = 1 << 16


def read_npz(p: Path, keys: tuple[str, ...], field: str = "dataset.path", *,
             max_bytes: int | None = None, limited: str = "a dataset file") -> dict[str, np.ndarray]:
    """Read only ``keys`` from the .npz at ``p``, after checking the sizes they declare.

    Every member's uncompressed size (its zip header) and every array's shape and dtype (its
    .npy header) are read before any data is decompressed: an array whose declared shape ×
    itemsize passes ``max_bytes`` (default ``MAX_ARRAYS_BYTES``), or arrays that do so
    together, are refused from their headers, as are more than ``MAX_ARRAYS_ELEMENTS`` values.
    Other members are never opened. Object arrays (pickles) are refused (``allow_pickle=False``).
    Errors name ``field`` (the config field that gave the path), the file, the array and the
    limit, which ``limited`` describes ("a labels file may hold at most … bytes").
    """
    where = f"{field}: {str(p)!r}"
    limit = MAX_ARRAYS_BYTES if max_bytes is None else max_bytes
    try:
        with zipfile.ZipFile(p) as zf:
            infos = {name.removesuffix(".npy"): zf.getinfo(name) for name in zf.namelist()
                     if name.removesuffix(".npy") in keys}
            missing = [k for k in keys if k not in infos]
            if missing:
                raise ConfigError(f"{where}: the .npz lacks {', '.join(missing)}")
            total_values = total_bytes = 0
            for key, info in infos.items():
                if info.file_size > limit + _NPY_HEADER_SLACK:
                    raise ConfigError(f"{where}: array {key!r} inflates to {info.file_size:,} "
                                      f"bytes; {limited} may hold at most {limit:,} bytes")
                with zf.open(info) as member:
                    shape, dtype = npy_header(member)
                nbytes = _checked_bytes(where, key, shape, dtype, limit, limited)
                count = _checked_count(where, key, shape, dtype)
                if info.file_size > nbytes + _NPY_HEADER_SLACK:
                    raise ConfigError(f"{where}: {key} inflates to {info.file_size:,} bytes, more "
                                      f"than its {shape} {dtype} values need")
                total_values += count
                total_bytes += nbytes
            if total_bytes > limit:
                raise ConfigError(f"{where}: {', '.join(keys)} inflate to {total_bytes:,} bytes "
                                  f"in all; {limited} may hold at most {limit:,} bytes")
            if total_values > MAX_ARRAYS_ELEMENTS:
                raise ConfigError(f"{where}: {', '.join(keys)} hold {total_values:,} values in "
                                  f"all; at most {MAX_ARRAYS_ELEMENTS:,}")
            arrays = {}
            for key in keys:
                with zf.open(infos[key]) as member:
                    arrays[key] = np.lib.format.read_array(member, allow_pickle=False)
            return arrays
    except ConfigError:
        raise
    except ValueError as err:
        raise ConfigError(f"{where} holds object arrays or is not a valid .npz ({err})") from None
    except (OSError, zipfile.BadZipFile, EOFError) as err:
        raise ConfigError(f"{where} is not a readable .npz file ({err})") from None


def npz_names(p: Path, field: str) -> list[str]:
    """The names of the arrays in the .npz at ``p`` (its members, without ``.npy``), read from
    the zip's directory alone."""
    try:
        with zipfile.ZipFile(p) as zf:
            return [name.removesuffix(".npy") for name in zf.namelist()]
    except (OSError, zipfile.BadZipFile, EOFError) as err:
        raise ConfigError(f"{field}: {str(p)!r} is not a readable .npz file ({err})") from None


def read_npy(p: Path, field: str, *, max_bytes: int | None = None,
             limited: str = "a dataset file") -> np.ndarray:
    """The array in the .npy file at ``p``, after checking the shape and dtype its header
    declares against ``max_bytes`` (default ``MAX_ARRAYS_BYTES``) and ``MAX_ARRAYS_ELEMENTS``;
    object arrays (pickles) are refused. Errors name ``field``, the file and the limit."""
    where = f"{field}: {str(p)!r}"
    limit = MAX_ARRAYS_BYTES if max_bytes is None else max_bytes
    try:
        with p.open("rb") as f:
            shape, dtype = npy_header(f)
            _checked_bytes(where, "its array", shape, dtype, limit, limited)
            _checked_count(where, "its array", shape, dtype)
            f.seek(0)
            return np.lib.format.read_array(f, allow_pickle=False)
    except ConfigError:
        raise
    except ValueError as err:
        raise ConfigError(f"{where} holds object arrays or is not a valid .npy file ({err})") from None
    except (OSError, EOFError) as err:
        raise ConfigError(f"{where} is not a readable .npy file ({err})") from None


def _checked_count(where: str, key: str, shape: tuple[int, ...], dtype: np.dtype) -> int:
    """The number of values an array header declares, once it is known to be plain numbers
    within ``MAX_ARRAYS_ELEMENTS``."""
    if dtype.hasobject:
        raise ConfigError(f"{where}: {key} holds object arrays (pickled Python objects), "
                          "which are never loaded")
    count = math.prod(shape)
    if count > MAX_ARRAYS_ELEMENTS:
        raise ConfigError(f"{where}: {key} declares {count:,} values ({shape} {dtype}); "
                          f"at most {MAX_ARRAYS_ELEMENTS:,}")
    return count


def _checked_bytes(where: str, key: str, shape: tuple[int, ...], dtype: np.dtype, limit: int,
                   limited: str) -> int:
    """The bytes an array header declares (shape × itemsize), once they are within ``limit``."""
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > limit:
        name = key if key == "its array" else f"array {key!r}"
        raise ConfigError(f"{where}: {name} declares {shape} {dtype}, {nbytes:,} bytes once "
                          f"inflated; {limited} may hold at most {limit:,} bytes")
    return nbytes


def npy_header(member: Any) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) from the header of an .npy stream, reading nothing else."""
    version = np.lib.format.read_magic(member)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(member)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(member)
    else:
        raise ValueError(f".npy format version {version} is not supported (1.0 or 2.0)")
    return tuple(shape), dtype


__all__ = ["DATA_DIRS_ENV", "DEFAULT_DATA_DIR", "MAX_ARRAYS_BYTES", "MAX_ARRAYS_ELEMENTS",
           "allowed_data_dirs", "confine_data_path", "npy_header", "npz_names", "read_npy",
           "read_npz", "require_root"]
