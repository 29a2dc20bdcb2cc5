"""Datasets, materialised as in-memory tensors, with a trusted clean split and label noise.

Every dataset here is small enough to hold in memory (the largest, CIFAR, is 600 MB as
float32), so the training loop indexes tensors directly: fast, and a resumed run sees
exactly the same batches with no saved sampler state (``batch_indices``).

>>> bundle = load_dataset("digits", seed=0, noise_kind="symmetric", noise_rate=0.2)
>>> bundle.x_train.shape[1:], bundle.num_classes, round(bundle.actual_noise_rate, 2)
(torch.Size([1, 8, 8]), 10, 0.2)

Files are read only from the allowed data directories (``DM_DATA_DIRS``, else ``./data``),
checked where the data is loaded (on the worker, against its own filesystem:
``dm_core.data_dirs``), and a CIFAR batch is unpickled by ``dm_core.cifar_files``, which builds
numpy arrays and nothing else. Batches and augmentation are ``dm_core.batches``.

The loaders here are the factories of ``DATASETS``, whose names, parameters and sizes are
declared in ``dm_core.registries``; the files a dataset needs are checked at submit time by
``dm_core.data_files`` (``check_data_available``, re-exported here). Neither needs torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

# Batches live in dm_core.batches; re-exported here, where the training loop imports them.
from dm_core.batches import augment_batch, balanced_batch_indices, batch_indices  # noqa: F401
from dm_core.cifar_files import cifar_arrays
from dm_core.data_dirs import confine_data_path, read_npz, require_root
from dm_core.data_files import (  # noqa: F401  (check_data_available: re-exported)
    ARRAY_KEYS,
    MAX_ARRAY_CLASSES,
    check_array_labels,
    check_data_available,
)
from dm_core.noise import NOISE, corrupt_labels
from dm_core.registries import DATASETS
from dm_core.registry import ConfigError

# The ten vehicle classes of CIFAR-100 (its two "vehicles" superclasses), as fine labels.
VEHICLES10 = (8, 13, 48, 58, 90, 41, 69, 81, 85, 89)
VEHICLES10_NAMES = ("bicycle", "bus", "motorcycle", "pickup_truck", "train", "lawn_mower",
                    "rocket", "streetcar", "tank", "tractor")


@dataclass
class DataBundle:
    """A dataset ready to train on: tensors, the labels used, and which of them are corrupted."""

    name: str
    x_train: torch.Tensor  # float32 (N, ...) normalised
    y_train_clean: torch.Tensor  # int64 (N,) intact labels
    y_train: torch.Tensor  # int64 (N,) labels used for training (noisy)
    is_noisy: torch.Tensor  # bool (N,)
    x_test: torch.Tensor
    y_test: torch.Tensor
    x_val: torch.Tensor | None
    y_val: torch.Tensor | None
    num_classes: int
    input_shape: tuple[int, ...]
    class_names: list[str]
    augment: bool
    actual_noise_rate: float


@dataclass
class _Raw:
    """What a loader returns: un-normalised arrays and metadata."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]
    augment: bool = False


# ---------------------------------------------------------------------- loaders

def _digits() -> _Raw:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = d.images.astype(np.float32)[:, None] / 16.0
    x_tr, x_te, y_tr, y_te = train_test_split(x, d.target, test_size=500, random_state=0,
                                              stratify=d.target)
    return _Raw(x_tr, y_tr, x_te, y_te, [str(i) for i in range(10)])


def _digits_binary(positive: list[int]) -> _Raw:
    raw = _digits()
    pos = np.isin(np.arange(10), positive)
    return _Raw(raw.x_train, pos[raw.y_train].astype(np.int64), raw.x_test,
                pos[raw.y_test].astype(np.int64), ["negative", "positive"])


def _torchvision_split(cls: type, root: str, download: bool, name: str, **kw: Any) -> tuple[Any, Any]:
    path = confine_data_path(root, "dataset.root") if download else require_root(root, name)
    try:
        train = cls(str(path), train=True, download=download, **kw)
        test = cls(str(path), train=False, download=download, **kw)
    except RuntimeError as err:  # torchvision: "Dataset not found or corrupted."
        raise ConfigError(f"dataset.root: no usable {name} files under {str(path)!r} ({err}); "
                          "set dataset.download=true to fetch them") from None
    return train, test


def _mnist_like(cls_name: str, name: str, root: str, download: bool) -> _Raw:
    """MNIST or Fashion-MNIST (torchvision's ``cls_name``, called ``name`` in errors)."""
    import torchvision

    train, test = _torchvision_split(getattr(torchvision.datasets, cls_name), root, download, name)
    to_x = lambda d: d.data.numpy().astype(np.float32)[:, None] / 255.0  # noqa: E731
    return _Raw(to_x(train), train.targets.numpy(), to_x(test), test.targets.numpy(),
                list(train.classes))


def _hwc_to_chw(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2)).astype(np.float32) / 255.0


def _cifar_raw(kind: str, root: str, download: bool) -> _Raw:
    train, test = cifar_arrays(kind, root, download)
    return _Raw(_hwc_to_chw(train.data), np.asarray(train.targets), _hwc_to_chw(test.data),
                np.asarray(test.targets), list(train.classes), augment=True)


def _cifar10(root: str, download: bool) -> _Raw:
    return _cifar_raw("CIFAR10", root, download)


def _cifar100(root: str, download: bool) -> _Raw:
    return _cifar_raw("CIFAR100", root, download)


def _vehicles10(root: str, download: bool) -> _Raw:
    raw = _cifar100(root, download)
    remap = np.full(100, -1)
    remap[list(VEHICLES10)] = np.arange(10)
    keep_tr, keep_te = remap[raw.y_train] >= 0, remap[raw.y_test] >= 0
    return _Raw(raw.x_train[keep_tr], remap[raw.y_train[keep_tr]], raw.x_test[keep_te],
                remap[raw.y_test[keep_te]], list(VEHICLES10_NAMES), augment=True)


def _image_folder(root: str, image_size: int, augment: bool) -> _Raw:
    import torchvision
    from torchvision import transforms

    base = require_root(root, "image folder")
    tf = transforms.Compose([transforms.Resize((image_size, image_size)), transforms.ToTensor()])
    splits = {}
    for split in ("train", "test"):
        if not (base / split).is_dir():
            raise ConfigError(f"dataset.root: {str(base / split)!r} is missing; an image folder needs "
                              "train/<class>/... and test/<class>/... subfolders")
        ds = torchvision.datasets.ImageFolder(str(base / split), transform=tf)
        for file, _ in ds.samples:  # a symlinked file or class folder may point elsewhere
            confine_data_path(file, "dataset.root")
        xs = [ds[i][0] for i in range(len(ds))]
        splits[split] = (torch.stack(xs).numpy(), np.asarray(ds.targets), ds.classes)
    if splits["train"][2] != splits["test"][2]:
        raise ConfigError("dataset.root: train/ and test/ must have the same class folders")
    return _Raw(splits["train"][0], splits["train"][1], splits["test"][0], splits["test"][1],
                list(splits["train"][2]), augment=augment)


def _arrays(path: str) -> _Raw:
    p = confine_data_path(path, "dataset.path")
    if not p.is_file():
        raise ConfigError(f"dataset.path: {str(p)!r} does not exist")
    arrays = read_npz(p, ARRAY_KEYS)
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        # Real numbers only: bool, int, uint or float ("c" complex would lose its imaginary part).
        if x.dtype.kind not in "biuf" or x.ndim not in (2, 3, 4) or 0 in x.shape[1:]:
            raise ConfigError(f"dataset.path: x_{split} must be a real numeric array of shape "
                              f"(N,D), (N,H,W) or (N,C,H,W) with D, H, W, C ≥ 1; got {x.dtype} "
                              f"{x.shape}")
        check_array_labels(y, split, len(x))
    if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
        raise ConfigError("dataset.path: x_train and x_test must have the same per-example shape")
    num_classes = int(arrays["y_train"].max()) + 1
    if arrays["y_test"].max() >= num_classes:
        raise ConfigError(f"dataset.path: y_test has class {int(arrays['y_test'].max())}, "
                          f"never seen in y_train (classes 0..{num_classes - 1})")
    with np.errstate(over="ignore"):  # checked just below, with a clearer message
        x_tr, x_te = arrays["x_train"].astype(np.float32), arrays["x_test"].astype(np.float32)
    for split, x in (("train", x_tr), ("test", x_te)):  # after the cast: 1e300 becomes inf
        if not np.all(np.isfinite(x)):
            raise ConfigError(f"dataset.path: x_{split} contains NaN or infinite values (or "
                              "values beyond float32's range, ±3.4e38)")
    if x_tr.ndim == 3:
        x_tr, x_te = x_tr[:, None], x_te[:, None]
    return _Raw(x_tr, arrays["y_train"], x_te, arrays["y_test"], [str(i) for i in range(num_classes)])


# ---------------------------------------------------------------------- assembling a bundle

def _stratified_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val): ``fraction`` of every class, drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    val = []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        val.append(idx[:int(round(fraction * len(idx)))])
    val_idx = np.sort(np.concatenate(val)) if val else np.array([], dtype=np.int64)
    train_idx = np.setdiff1d(np.arange(len(y)), val_idx)
    return train_idx, val_idx


def load_dataset(name: str, *, seed: int, noise_kind: str = "none", noise_rate: float = 0.0,
                 noise_params: dict[str, Any] | None = None, val_fraction: float = 0.0,
                 **params: Any) -> DataBundle:
    """Load ``name``, hold out a trusted clean split, then corrupt the remaining training labels.

    The clean validation split (``val_fraction`` of every class) is taken *before* the noise
    is applied, as the paper's β tuning on 20% clean training data needs. Inputs are
    normalised with statistics of the training split (per channel for images).

    Instance-dependent noise (``instance``) reads the training split's inputs, flattened and
    normalised as the model sees them. A labels file (``file``) holds one label per example of
    the dataset's whole training set, in its order: the split is drawn from the clean labels,
    the training examples take their file labels and the validation examples keep their clean
    ones, so a file serves every ``val_fraction`` alike.
    """
    entry = DATASETS.get(name, where="dataset.name")
    checked = DATASETS.validate_params(name, params, where="dataset")
    if not 0.0 <= val_fraction <= 0.9:
        raise ConfigError(f"dataset.val_fraction: {val_fraction!r} is out of range; must be in [0, 0.9]")
    noise = NOISE.get(noise_kind, where="dataset.noise.kind")
    raw = entry.factory(**checked)
    y_all = np.asarray(raw.y_train, dtype=np.int64)
    num_classes = _num_classes(raw)

    train_idx, val_idx = _stratified_split(y_all, val_fraction, seed)
    y_clean = y_all[train_idx]
    x_train = torch.from_numpy(np.ascontiguousarray(raw.x_train[train_idx], dtype=np.float32))
    kw = dict(noise_params or {})
    kw.setdefault("dataset", name)
    if noise.extra.get("whole_training_set"):
        # A labels file is numbered by the dataset's own training order: every example takes
        # its file label, and the validation split, held out by the clean labels, keeps them.
        noisy_all, is_noisy_all = corrupt_labels(y_all, noise_kind, noise_rate, num_classes, seed, **kw)
        noisy, is_noisy = noisy_all[train_idx], is_noisy_all[train_idx]
    else:
        features = None
        if noise.extra.get("needs_features"):
            # The inputs as the model sees them: normalised with this split's statistics
            # (these kinds remove no example, so they are the statistics used below).
            mean, std = _normalisation(x_train)
            features = ((x_train - mean) / std).flatten(1).numpy()
        noisy, is_noisy = corrupt_labels(y_clean, noise_kind, noise_rate, num_classes, seed,
                                         features=features, **kw)
    kept = noisy >= 0  # class imbalance removes examples
    train_idx, y_clean, noisy, is_noisy = train_idx[kept], y_clean[kept], noisy[kept], is_noisy[kept]
    if not kept.all():
        x_train = x_train[torch.from_numpy(kept)]
    mean, std = _normalisation(x_train)
    norm = lambda a: (torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) - mean) / std  # noqa: E731
    x_val = norm(raw.x_train[val_idx]) if len(val_idx) else None
    return DataBundle(
        name=name,
        x_train=(x_train - mean) / std,
        y_train_clean=torch.from_numpy(y_clean),
        y_train=torch.from_numpy(noisy),
        is_noisy=torch.from_numpy(is_noisy),
        x_test=norm(raw.x_test),
        y_test=torch.from_numpy(np.asarray(raw.y_test, dtype=np.int64)),
        x_val=x_val,
        y_val=torch.from_numpy(y_all[val_idx]) if len(val_idx) else None,
        num_classes=num_classes,
        input_shape=tuple(x_train.shape[1:]),
        class_names=list(raw.class_names),
        augment=raw.augment,
        actual_noise_rate=float(is_noisy.mean()) if len(is_noisy) else 0.0,
    )


def _num_classes(raw: _Raw) -> int:
    """Classes of a loaded dataset: enough for every label of both splits and every name."""
    labels = max(int(np.max(raw.y_train)), int(np.max(raw.y_test))) + 1
    return max(labels, len(raw.class_names))


def _normalisation(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std of the training inputs: per channel for images, per feature for vectors."""
    dims = (0, 2, 3) if x.dim() == 4 else (0,)
    mean = x.mean(dim=dims, keepdim=True)[0]
    std = x.std(dim=dims, keepdim=True)[0].clamp(min=1e-6)
    if x.dim() == 4:  # one scalar per channel, broadcast over H and W
        mean, std = mean.reshape(-1, 1, 1), std.reshape(-1, 1, 1)
    return mean, std
