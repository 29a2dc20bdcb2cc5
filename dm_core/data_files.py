"""The files a run's dataset reads, checked where runs are submitted; without torch.

``check_data_available`` is what ``dm submit``, the Launch form and study files run on every
dataset section before anything is queued: the dataset's files are there (as seen from this
machine), and a labels file matches the training set. It reads the registry's records
(``dm_core.registries``) and the files themselves, never the dataset, so it is cheap and
needs no torch, except for MNIST's file names (torchvision's) and a dataset whose training
size the registry does not know (it is loaded).

The limits of an ``arrays`` file's labels live here too, shared with its loader in
``dm_core.data``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from dm_core.cifar_files import cifar_files
from dm_core.data_dirs import confine_data_path, read_npz, require_root
from dm_core.noise import MAX_LABEL_FILE_BYTES
from dm_core.registries import DATASETS
from dm_core.registry import ConfigError

__all__ = ["ARRAY_KEYS", "MAX_ARRAY_CLASSES", "check_array_labels", "check_data_available"]

# More classes than this in an .npz is a corrupt label column, not a dataset: the model's
# output layer would be sized by it.
MAX_ARRAY_CLASSES = 100_000
ARRAY_KEYS = ("x_train", "y_train", "x_test", "y_test")


def check_array_labels(y: np.ndarray, split: str, n: int | None) -> None:
    """``y_<split>`` of an ``arrays`` file holds ``n`` class indices (any number if None)."""
    if y.ndim != 1 or (n is not None and len(y) != n) or y.dtype.kind not in "iu":
        raise ConfigError(f"dataset.path: y_{split} must be integer labels of shape "
                          f"({'N' if n is None else n},); got {y.dtype} {y.shape}")
    if len(y) == 0 or y.min() < 0 or y.max() >= MAX_ARRAY_CLASSES:
        raise ConfigError(f"dataset.path: y_{split} must be non-empty class indices in "
                          f"[0, {MAX_ARRAY_CLASSES}); got values in [{y.min() if len(y) else '-'}, "
                          f"{y.max() if len(y) else '-'}]")


def _torchvision_raw_files(cls_name: str) -> Callable[[Path], list[Path]]:
    """The decompressed files torchvision's ``cls_name`` looks for (``root/<cls>/raw/...``)."""

    def files(root: Path) -> list[Path]:
        import torchvision

        cls = getattr(torchvision.datasets, cls_name)
        raw = root / cls_name / "raw"
        return [raw / Path(url).stem for url, _ in cls.resources]

    return files


# What a worker will read, for each dataset read from files (the bundled digits need none).
_DATA_FILES: dict[str, Callable[[Path], list[Path]]] = {
    "mnist": _torchvision_raw_files("MNIST"),
    "fashion_mnist": _torchvision_raw_files("FashionMNIST"),
    "cifar10": cifar_files("CIFAR10"),
    "cifar100": cifar_files("CIFAR100"),
    "vehicles10": cifar_files("CIFAR100"),
    "image_folder": lambda root: [root / "train", root / "test"],
}


def check_data_available(dataset: Mapping[str, Any]) -> None:
    """Raise ConfigError (naming ``dataset.root``, ``dataset.path`` or ``dataset.noise.path``)
    unless the files that a run of ``dataset`` (a resolved ``dataset`` config section) reads
    are there, as seen from this machine; with ``download: true`` only that the folder may be
    written. A labels file (noise kind ``file``) is read and checked against the dataset: one
    class index in range per training example.

    Called where runs are submitted (the Launch page, ``dm submit``), so that a run whose data
    is missing is refused before it is queued rather than failing on a worker. Workers that
    read their data from another filesystem are checked again when they load it.

    >>> check_data_available({"name": "digits"})  # bundled with scikit-learn: nothing to check
    """
    _check_dataset_files(dataset)
    noise = dataset.get("noise") or {}
    if noise.get("kind") == "file":
        from dm_core.noise import check_noise_settings, read_label_file

        check_noise_settings("file", float(noise.get("rate") or 0.0),
                             {k: noise.get(k) for k in ("path", "key")})
        num_train, num_classes = _training_size(dataset)
        read_label_file(str(noise["path"]), noise.get("key"), num_train, num_classes,
                        str(dataset.get("name")))


def _check_dataset_files(dataset: Mapping[str, Any]) -> None:
    name = dataset.get("name")
    if name == "arrays":
        path = confine_data_path(str(dataset.get("path")), "dataset.path")
        if not path.is_file():
            raise ConfigError(f"dataset.path: {str(path)!r} does not exist")
        return
    files = _DATA_FILES.get(str(name))
    if files is None:
        return
    root = str(dataset.get("root"))
    if dataset.get("download"):
        confine_data_path(root, "dataset.root")
        return
    base = require_root(root, str(name))
    missing = [f for f in files(base) if not f.exists()]
    if missing:
        shown = ", ".join(str(f.relative_to(base)) for f in missing[:3])
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise ConfigError(f"dataset.root: no {name} files under {str(base)!r} (missing {shown}"
                          f"{more}); put them there, point dataset.root at them, or set "
                          "dataset.download=true")


def _training_size(dataset: Mapping[str, Any]) -> tuple[int, int]:
    """(examples, classes) of the training set of ``dataset`` as loaded, before the validation
    split: registered for the datasets of fixed size, counted from the labels of an ``arrays``
    file or the files of an image folder, and otherwise read by loading the dataset."""
    name = str(dataset.get("name"))
    entry = DATASETS.get(name, where="dataset.name")
    if "num_train" in entry.extra:
        return entry.extra["num_train"], entry.extra["num_classes"]
    if name == "arrays":
        # Labels only: bounded like a labels file, so a huge y_train is refused from its header.
        y = read_npz(confine_data_path(str(dataset.get("path")), "dataset.path"), ("y_train",),
                     max_bytes=MAX_LABEL_FILE_BYTES, limited="a labels array")["y_train"]
        check_array_labels(y, "train", None)
        return len(y), int(y.max()) + 1
    if name == "image_folder":
        import torchvision

        train = require_root(str(dataset.get("root")), "image folder") / "train"
        try:  # lists the files and class folders; reads no image
            folder = torchvision.datasets.ImageFolder(str(train))
        except (FileNotFoundError, OSError) as err:
            raise ConfigError(f"dataset.root: no images under {str(train)!r} ({err})") from None
        return len(folder.samples), len(folder.classes)
    from dm_core.data import _num_classes  # loading it needs torch

    checked = DATASETS.validate_params(name, {p.name: dataset.get(p.name) for p in entry.params},
                                       where="dataset")
    raw = entry.factory(**checked)
    return len(raw.y_train), _num_classes(raw)
