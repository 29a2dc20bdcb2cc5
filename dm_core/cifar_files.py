"""CIFAR-10/100 python batches in torchvision's folder layout, read without torchvision's own
loader: ``_SafeCifarUnpickler`` builds numpy arrays and nothing else, so a crafted batch
file cannot run code, and every file is opened through ``confine_data_path``.
"""

from __future__ import annotations

import functools
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dm_core.data_dirs import confine_data_path, require_root
from dm_core.registry import ConfigError


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as a protocol-2 pickle of ``bytes`` calls it (Python 3 writes
    ``encode(text, 'latin1')``): latin-1 only, so no other codec is ever looked up."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"it calls _codecs.encode with encoding {encoding!r}; "
                                     "only latin1 is allowed")
    return text.encode("latin1")


@functools.cache
def _cifar_globals() -> dict[tuple[str, str], Any]:
    """Every global a CIFAR batch may name, mapped to what it builds: numpy arrays, their
    dtypes and scalars (the official files, pickled by numpy 1 under Python 2, name
    ``numpy.core.multiarray``; files pickled by numpy 2 name ``numpy._core``), and latin-1
    bytes (protocol-2 pickles written by Python 3)."""
    try:
        from numpy._core import multiarray, numeric  # numpy >= 2
    except ImportError:  # numpy 1.26
        from numpy.core import multiarray, numeric

    out: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
                                       ("_codecs", "encode"): _latin1_encode}
    for package in ("numpy.core", "numpy._core"):
        out[(f"{package}.multiarray", "_reconstruct")] = multiarray._reconstruct
        out[(f"{package}.multiarray", "scalar")] = multiarray.scalar
        out[(f"{package}.numeric", "_frombuffer")] = numeric._frombuffer  # protocol 5
    return out


class _SafeCifarUnpickler(pickle.Unpickler):
    """An unpickler that builds only plain containers and numpy arrays: any other global
    (``os.system``, ``builtins.eval``, a class ...) is refused before it is looked up, so a
    crafted file cannot run code."""

    def find_class(self, module: str, name: str) -> Any:
        allowed = _cifar_globals().get((module, name))
        if allowed is None:
            raise pickle.UnpicklingError(f"it references {module}.{name}, which a CIFAR batch "
                                         "never needs (only numpy arrays are allowed)")
        return allowed


def read_cifar_pickle(path: Path) -> dict[str, Any]:
    """One CIFAR python batch or meta file (a pickled dict), read by ``_SafeCifarUnpickler``.

    Keys come back as ``str`` (the official files were pickled by Python 2, hence latin-1)."""
    try:
        with open(path, "rb") as fh:
            obj = _SafeCifarUnpickler(fh, encoding="latin1").load()
    except pickle.UnpicklingError as err:
        raise ConfigError(f"dataset.root: refused to load {str(path)!r}: {err}") from None
    except (OSError, EOFError, ValueError, TypeError, AttributeError, IndexError) as err:
        raise ConfigError(f"dataset.root: {str(path)!r} is not a readable CIFAR python file "
                          f"({type(err).__name__}: {err})") from None
    if not isinstance(obj, dict):
        raise ConfigError(f"dataset.root: {str(path)!r} must hold a dict, not {type(obj).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


@dataclass(frozen=True)
class _CifarLayout:
    """Where torchvision's CIFAR folders keep their python batches, and their keys."""

    folder: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    meta: str
    names_key: str
    labels_key: str

    def files(self) -> tuple[str, ...]:
        return (*self.train, *self.test, self.meta)


_CIFAR = {
    "CIFAR10": _CifarLayout("cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)),
                            ("test_batch",), "batches.meta", "label_names", "labels"),
    "CIFAR100": _CifarLayout("cifar-100-python", ("train",), ("test",), "meta",
                             "fine_label_names", "fine_labels"),
}


def _cifar_download(name: str, root: Path) -> None:
    """Fetch the official archive with torchvision's downloader (it checks the archive's md5)
    unless every file is already there."""
    import torchvision
    from torchvision.datasets.utils import download_and_extract_archive

    layout = _CIFAR[name]
    if all((root / layout.folder / f).is_file() for f in layout.files()):
        return
    cls = getattr(torchvision.datasets, name)
    try:
        download_and_extract_archive(cls.url, str(root), filename=cls.filename, md5=cls.tgz_md5)
    except (OSError, RuntimeError) as err:  # no network, a failed md5 check
        raise ConfigError(f"dataset.download: could not fetch {name} into {str(root)!r} ({err})") from None


def _cifar_split(path: Path, files: tuple[str, ...], labels_key: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 32, 32, 3) uint8 and labels (N,) of the named batch files."""
    xs, ys = [], []
    for f in files:
        batch = read_cifar_pickle(confine_data_path(str(path / f), "dataset.root"))
        data, labels = batch.get("data"), batch.get(labels_key)
        if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != 3072 \
                or data.dtype != np.uint8:
            raise ConfigError(f"dataset.root: {str(path / f)!r}: 'data' must be a uint8 array of "
                              "shape (N, 3072)")
        labels = np.asarray(labels if labels is not None else [])
        if labels.shape != (len(data),) or labels.dtype.kind not in "iu":
            raise ConfigError(f"dataset.root: {str(path / f)!r}: {labels_key!r} must be "
                              f"{len(data)} integer labels")
        xs.append(data)
        ys.append(labels.astype(np.int64))
    x = np.concatenate(xs).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # torchvision's HWC
    return x, np.concatenate(ys)


def cifar_arrays(name: str, root: str, download: bool) -> tuple[Any, Any]:
    """Train and test splits of CIFAR-10/100 (``.data`` HWC uint8, ``.targets``, ``.classes``),
    read from torchvision's folder layout with the safe unpickler, never torchvision's own."""
    from types import SimpleNamespace

    layout = _CIFAR[name]
    path = confine_data_path(root, "dataset.root") if download else require_root(root, name)
    if download:
        _cifar_download(name, path)
    base = path / layout.folder
    missing = [f for f in layout.files() if not (base / f).is_file()]
    if missing:
        raise ConfigError(f"dataset.root: no usable {name} files under {str(path)!r} (missing "
                          f"{layout.folder}/{', '.join(missing)}); set dataset.download=true to "
                          "fetch them")
    names = read_cifar_pickle(confine_data_path(str(base / layout.meta), "dataset.root")).get(layout.names_key)
    if not isinstance(names, list) or not all(isinstance(n, str | bytes) for n in names):
        raise ConfigError(f"dataset.root: {str(base / layout.meta)!r} lacks the class names "
                          f"({layout.names_key!r}, a list of strings)")
    classes = [n.decode("latin1") if isinstance(n, bytes) else n for n in names]
    splits = []
    for files in (layout.train, layout.test):
        x, y = _cifar_split(base, files, layout.labels_key)
        splits.append(SimpleNamespace(data=x, targets=y, classes=classes))
    return splits[0], splits[1]


def cifar_files(kind: str) -> Callable[[Path], list[Path]]:
    """The files a run of ``kind`` (``CIFAR10`` or ``CIFAR100``) reads, under its root."""
    layout = _CIFAR[kind]
    return lambda root: [root / layout.folder / f for f in layout.files()]


__all__ = ["cifar_arrays", "cifar_files", "read_cifar_pickle"]
