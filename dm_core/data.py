"""Datasets, materialised as in-memory tensors, with a trusted clean split and label noise.

Every dataset here is small enough to hold in memory (the largest, CIFAR, is 600 MB as
float32), so the training loop indexes tensors directly: fast, and a resumed run sees
exactly the same batches with no saved sampler state (``batch_indices``).

>>> bundle = load_dataset("digits", seed=0, noise_kind="symmetric", noise_rate=0.2)
>>> bundle.x_train.shape[1:], bundle.num_classes, round(bundle.actual_noise_rate, 2)
(torch.Size([1, 8, 8]), 10, 0.2)

Files are read only from the allowed data directories (``DM_DATA_DIRS``, else ``./data``),
checked where the data is loaded (on the worker, against its own filesystem), and a CIFAR
batch is unpickled by ``_SafeCifarUnpickler``, which builds numpy arrays and nothing else.
"""

from __future__ import annotations

import functools
import math
import os
import pickle
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dm_core.noise import corrupt_labels
from dm_core.registry import ConfigError, Param, Registry

DATASETS = Registry("dataset")

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

_ROOT = Param("root", "./data", "str", help="folder holding the dataset files")
_DOWNLOAD = Param("download", False, "bool", help="download into root if missing (needs internet)")


@DATASETS.register("digits", description="scikit-learn's bundled 8×8 handwritten digits "
                   "(1,797 images, 10 classes; 1,297 train / 500 test). Needs no network.",
                   num_classes=10)
def _digits() -> _Raw:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = d.images.astype(np.float32)[:, None] / 16.0
    x_tr, x_te, y_tr, y_te = train_test_split(x, d.target, test_size=500, random_state=0,
                                              stratify=d.target)
    return _Raw(x_tr, y_tr, x_te, y_te, [str(i) for i in range(10)])


@DATASETS.register("digits_binary", params=[
    Param("positive", [0, 2, 4, 6, 8], "list[int]", 0, 9, help="digits labelled positive (1); the rest are 0"),
], description="Binary digits: the chosen digits (default even) against the rest, for imbalance "
               "studies like the paper's IMDB one (subsample class 0 with imbalance noise).",
   num_classes=2)
def _digits_binary(positive: list[int]) -> _Raw:
    raw = _digits()
    pos = np.isin(np.arange(10), positive)
    return _Raw(raw.x_train, pos[raw.y_train].astype(np.int64), raw.x_test,
                pos[raw.y_test].astype(np.int64), ["negative", "positive"])


# ---------------------------------------------------------------------- allowed data directories

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


def _require_root(root: str, name: str) -> Path:
    path = confine_data_path(root, "dataset.root")
    if not path.is_dir():
        raise ConfigError(f"dataset.root: folder {str(path)!r} does not exist; put the {name} files "
                          "there (torchvision layout) or set dataset.download=true on a machine "
                          "with internet")
    return path


def _torchvision_split(cls: type, root: str, download: bool, name: str, **kw: Any) -> tuple[Any, Any]:
    path = confine_data_path(root, "dataset.root") if download else _require_root(root, name)
    try:
        train = cls(str(path), train=True, download=download, **kw)
        test = cls(str(path), train=False, download=download, **kw)
    except RuntimeError as err:  # torchvision: "Dataset not found or corrupted."
        raise ConfigError(f"dataset.root: no usable {name} files under {str(path)!r} ({err}); "
                          "set dataset.download=true to fetch them") from None
    return train, test


def _mnist_like(cls_name: str, name: str) -> Any:
    def load(root: str, download: bool) -> _Raw:
        import torchvision

        train, test = _torchvision_split(getattr(torchvision.datasets, cls_name), root, download, name)
        to_x = lambda d: d.data.numpy().astype(np.float32)[:, None] / 255.0  # noqa: E731
        return _Raw(to_x(train), train.targets.numpy(), to_x(test), test.targets.numpy(),
                    list(train.classes))

    return load


DATASETS.register("mnist", params=[_ROOT, _DOWNLOAD],
                  description="MNIST handwritten digits (28×28, 60k/10k) from a torchvision folder.",
                  num_classes=10)(_mnist_like("MNIST", "MNIST"))
DATASETS.register("fashion_mnist", params=[_ROOT, _DOWNLOAD],
                  description="Fashion-MNIST (28×28, 60k/10k) from a torchvision folder.",
                  num_classes=10)(_mnist_like("FashionMNIST", "Fashion-MNIST"))


# ---------------------------------------------------------------------- CIFAR python batches

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


def _cifar_arrays(name: str, root: str, download: bool) -> tuple[Any, Any]:
    """Train and test splits of CIFAR-10/100 (``.data`` HWC uint8, ``.targets``, ``.classes``),
    read from torchvision's folder layout with the safe unpickler, never torchvision's own."""
    from types import SimpleNamespace

    layout = _CIFAR[name]
    path = confine_data_path(root, "dataset.root") if download else _require_root(root, name)
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


def _hwc_to_chw(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2)).astype(np.float32) / 255.0


def _cifar_raw(kind: str, root: str, download: bool) -> _Raw:
    train, test = _cifar_arrays(kind, root, download)
    return _Raw(_hwc_to_chw(train.data), np.asarray(train.targets), _hwc_to_chw(test.data),
                np.asarray(test.targets), list(train.classes), augment=True)


@DATASETS.register("cifar10", params=[_ROOT, _DOWNLOAD],
                   description="CIFAR-10 (32×32 colour, 50k/10k) from a torchvision folder.",
                   num_classes=10)
def _cifar10(root: str, download: bool) -> _Raw:
    return _cifar_raw("CIFAR10", root, download)


@DATASETS.register("cifar100", params=[_ROOT, _DOWNLOAD],
                   description="CIFAR-100 (32×32 colour, 100 classes, 50k/10k) from a torchvision folder.",
                   num_classes=100)
def _cifar100(root: str, download: bool) -> _Raw:
    return _cifar_raw("CIFAR100", root, download)


@DATASETS.register("vehicles10", params=[_ROOT, _DOWNLOAD],
                   description="Vehicles-10: the ten vehicle classes of CIFAR-100 (5,000 train / 1,000 test).",
                   num_classes=10)
def _vehicles10(root: str, download: bool) -> _Raw:
    raw = _cifar100(root, download)
    remap = np.full(100, -1)
    remap[list(VEHICLES10)] = np.arange(10)
    keep_tr, keep_te = remap[raw.y_train] >= 0, remap[raw.y_test] >= 0
    return _Raw(raw.x_train[keep_tr], remap[raw.y_train[keep_tr]], raw.x_test[keep_te],
                remap[raw.y_test[keep_te]], list(VEHICLES10_NAMES), augment=True)


@DATASETS.register("image_folder", params=[
    Param("root", "./data/images", "str", help="folder with train/ and test/ ImageFolder trees"),
    Param("image_size", 32, "int", 4, 512, help="images are resized to image_size × image_size"),
    Param("augment", False, "bool", help="CIFAR-style crop and flip augmentation"),
], description="Any image folder: root/train/<class>/*.png and root/test/<class>/*.png.")
def _image_folder(root: str, image_size: int, augment: bool) -> _Raw:
    import torchvision
    from torchvision import transforms

    base = _require_root(root, "image folder")
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


# More classes than this in an .npz is a corrupt label column, not a dataset: the model's
# output layer would be sized by it.
MAX_ARRAY_CLASSES = 100_000
# The four arrays of an .npz together hold at most this many values: 2 GiB as float32, the
# dtype the inputs are trained in (CIFAR-10's 60,000 images are 184 million values).
MAX_ARRAYS_ELEMENTS = 1 << 29
ARRAY_KEYS = ("x_train", "y_train", "x_test", "y_test")
# Room for an .npy member's own header beyond its values.
_NPY_HEADER_SLACK = 1 << 16


def _read_npz(p: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Read only ``keys`` from the .npz at ``p``, after checking the sizes they declare.

    Every member's uncompressed size (its zip header) and every array's shape and dtype (its
    .npy header) are read before any data is decompressed: a file that inflates beyond
    ``MAX_ARRAYS_ELEMENTS`` values is refused from its headers. Other members are never
    opened. Object arrays (pickles) are refused (``allow_pickle=False``).
    """
    where = f"dataset.path: {str(p)!r}"
    try:
        with zipfile.ZipFile(p) as zf:
            infos = {name.removesuffix(".npy"): zf.getinfo(name) for name in zf.namelist()
                     if name.removesuffix(".npy") in keys}
            missing = [k for k in keys if k not in infos]
            if missing:
                raise ConfigError(f"{where}: the .npz lacks {', '.join(missing)}")
            total = 0
            for key, info in infos.items():
                if info.file_size > MAX_ARRAYS_ELEMENTS * 8 + _NPY_HEADER_SLACK:
                    raise ConfigError(f"{where}: {key} inflates to {info.file_size:,} bytes; its "
                                      f"arrays may hold at most {MAX_ARRAYS_ELEMENTS:,} values in all")
                with zf.open(info) as member:
                    shape, dtype = _npy_header(member)
                count = math.prod(shape)
                if dtype.hasobject:
                    raise ConfigError(f"{where}: {key} holds object arrays (pickled Python objects), "
                                      "which are never loaded")
                if count > MAX_ARRAYS_ELEMENTS:
                    raise ConfigError(f"{where}: {key} declares {count:,} values ({shape} {dtype}); "
                                      f"at most {MAX_ARRAYS_ELEMENTS:,}")
                if info.file_size > count * dtype.itemsize + _NPY_HEADER_SLACK:
                    raise ConfigError(f"{where}: {key} inflates to {info.file_size:,} bytes, more "
                                      f"than its {shape} {dtype} values need")
                total += count
            if total > MAX_ARRAYS_ELEMENTS:
                raise ConfigError(f"{where}: {', '.join(keys)} hold {total:,} values in all; at "
                                  f"most {MAX_ARRAYS_ELEMENTS:,}")
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


def _npy_header(member: Any) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) from the header of an .npy stream, reading nothing else."""
    version = np.lib.format.read_magic(member)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(member)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(member)
    else:
        raise ValueError(f".npy format version {version} is not supported (1.0 or 2.0)")
    return tuple(shape), dtype


@DATASETS.register("arrays", params=[
    Param("path", "./data/arrays.npz", "str", help=".npz with x_train, y_train, x_test, y_test"),
], description="Precomputed arrays: images (N,H,W)/(N,C,H,W) or feature vectors (N,D), e.g. "
               "document vectors for sentiment.")
def _arrays(path: str) -> _Raw:
    p = confine_data_path(path, "dataset.path")
    if not p.is_file():
        raise ConfigError(f"dataset.path: {str(p)!r} does not exist")
    arrays = _read_npz(p, ARRAY_KEYS)
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        # Real numbers only: bool, int, uint or float ("c" complex would lose its imaginary part).
        if x.dtype.kind not in "biuf" or x.ndim not in (2, 3, 4) or 0 in x.shape[1:]:
            raise ConfigError(f"dataset.path: x_{split} must be a real numeric array of shape "
                              f"(N,D), (N,H,W) or (N,C,H,W) with D, H, W, C ≥ 1; got {x.dtype} "
                              f"{x.shape}")
        if y.ndim != 1 or len(y) != len(x) or y.dtype.kind not in "iu":
            raise ConfigError(f"dataset.path: y_{split} must be integer labels of shape ({len(x)},); "
                              f"got {y.dtype} {y.shape}")
        if len(y) == 0 or y.min() < 0 or y.max() >= MAX_ARRAY_CLASSES:
            raise ConfigError(f"dataset.path: y_{split} must be non-empty class indices in "
                              f"[0, {MAX_ARRAY_CLASSES}); got values in [{y.min() if len(y) else '-'}, "
                              f"{y.max() if len(y) else '-'}]")
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


# ---------------------------------------------------------------------- data present at submit time

def _torchvision_raw_files(cls_name: str) -> Callable[[Path], list[Path]]:
    """The decompressed files torchvision's ``cls_name`` looks for (``root/<cls>/raw/...``)."""

    def files(root: Path) -> list[Path]:
        import torchvision

        cls = getattr(torchvision.datasets, cls_name)
        raw = root / cls_name / "raw"
        return [raw / Path(url).stem for url, _ in cls.resources]

    return files


def _cifar_files(kind: str) -> Callable[[Path], list[Path]]:
    layout = _CIFAR[kind]
    return lambda root: [root / layout.folder / f for f in layout.files()]


# What a worker will read, for each dataset read from files (the bundled digits need none).
_DATA_FILES: dict[str, Callable[[Path], list[Path]]] = {
    "mnist": _torchvision_raw_files("MNIST"),
    "fashion_mnist": _torchvision_raw_files("FashionMNIST"),
    "cifar10": _cifar_files("CIFAR10"),
    "cifar100": _cifar_files("CIFAR100"),
    "vehicles10": _cifar_files("CIFAR100"),
    "image_folder": lambda root: [root / "train", root / "test"],
}


def check_data_available(dataset: Mapping[str, Any]) -> None:
    """Raise ConfigError (naming ``dataset.root`` or ``dataset.path``) unless the files that a
    run of ``dataset`` (a resolved ``dataset`` config section) reads are there, as seen from
    this machine; with ``download: true`` only that the folder may be written.

    Called where runs are submitted (the Launch page, ``dm submit``), so that a run whose data
    is missing is refused before it is queued rather than failing on a worker. Workers that
    read their data from another filesystem are checked again when they load it.

    >>> check_data_available({"name": "digits"})  # bundled with scikit-learn: nothing to check
    """
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
    base = _require_root(root, str(name))
    missing = [f for f in files(base) if not f.exists()]
    if missing:
        shown = ", ".join(str(f.relative_to(base)) for f in missing[:3])
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise ConfigError(f"dataset.root: no {name} files under {str(base)!r} (missing {shown}"
                          f"{more}); put them there, point dataset.root at them, or set "
                          "dataset.download=true")


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
    """
    entry = DATASETS.get(name, where="dataset.name")
    checked = DATASETS.validate_params(name, params, where="dataset")
    if not 0.0 <= val_fraction <= 0.9:
        raise ConfigError(f"dataset.val_fraction: {val_fraction!r} is out of range; must be in [0, 0.9]")
    raw = entry.factory(**checked)
    y_all = np.asarray(raw.y_train, dtype=np.int64)
    num_classes = max(int(y_all.max()), int(np.max(raw.y_test))) + 1
    num_classes = max(num_classes, len(raw.class_names))

    train_idx, val_idx = _stratified_split(y_all, val_fraction, seed)
    y_clean = y_all[train_idx]
    kw = dict(noise_params or {})
    kw.setdefault("dataset", name)
    noisy, is_noisy = corrupt_labels(y_clean, noise_kind, noise_rate, num_classes, seed, **kw)
    kept = noisy >= 0  # class imbalance removes examples
    train_idx, y_clean, noisy, is_noisy = train_idx[kept], y_clean[kept], noisy[kept], is_noisy[kept]

    x_train = torch.from_numpy(np.ascontiguousarray(raw.x_train[train_idx], dtype=np.float32))
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


def _normalisation(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std of the training inputs: per channel for images, per feature for vectors."""
    dims = (0, 2, 3) if x.dim() == 4 else (0,)
    mean = x.mean(dim=dims, keepdim=True)[0]
    std = x.std(dim=dims, keepdim=True)[0].clamp(min=1e-6)
    if x.dim() == 4:  # one scalar per channel, broadcast over H and W
        mean, std = mean.reshape(-1, 1, 1), std.reshape(-1, 1, 1)
    return mean, std


# ---------------------------------------------------------------------- batches and augmentation

@functools.lru_cache(maxsize=4)
def _epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=gen)


def batch_indices(n: int, batch_size: int, iteration: int, seed: int) -> torch.Tensor:
    """Example indices of the batch at 0-based ``iteration``: epochs of a fresh seeded
    permutation, the last partial batch of each epoch dropped (every batch is full).
    Stateless, so a resumed run sees exactly the batches an uninterrupted one would.

    >>> batch_indices(10, 4, 0, seed=0).tolist() == batch_indices(10, 4, 0, seed=0).tolist()
    True
    >>> len(set(batch_indices(10, 5, 0, 1).tolist() + batch_indices(10, 5, 1, 1).tolist()))
    10
    """
    batch_size = min(batch_size, n)
    per_epoch = n // batch_size
    epoch, pos = divmod(iteration, per_epoch)
    return _epoch_permutation(n, seed, epoch)[pos * batch_size:(pos + 1) * batch_size]


def balanced_batch_indices(labels: torch.Tensor, batch_size: int, iteration: int, seed: int,
                           classes_per_batch: int | None = None) -> torch.Tensor:
    """A class-balanced batch by (noisy) label, stateless like ``batch_indices`` (drawn from a
    generator seeded by ``seed`` and ``iteration``).

    Without ``classes_per_batch``: ``batch_size // C`` examples of every present class (with
    replacement), topped up at random. With it, as the authors' CIFAR-100 runs draw batches
    (32 classes x 8 images): that many classes chosen at random, ``batch_size //
    classes_per_batch`` distinct examples of each (with replacement only for a class that has
    fewer), topped up from those classes.

    >>> labels = torch.tensor([0] * 5 + [1] * 5 + [2] * 5 + [3] * 5)
    >>> idx = balanced_batch_indices(labels, 6, iteration=0, seed=0, classes_per_batch=2)
    >>> sorted(torch.bincount(labels[idx], minlength=4).tolist())
    [0, 0, 3, 3]
    """
    gen = torch.Generator().manual_seed(seed * 1_000_003 + 7_919 * iteration + 1)
    classes = torch.unique(labels)
    if classes_per_batch is not None:
        classes = classes[torch.randperm(len(classes), generator=gen)[:classes_per_batch]]
    per_class = max(1, batch_size // len(classes))
    picks = []
    for c in classes.tolist():
        members = torch.nonzero(labels == c).squeeze(1)
        if classes_per_batch is not None and len(members) >= per_class:
            picks.append(members[torch.randperm(len(members), generator=gen)[:per_class]])
        else:
            picks.append(members[torch.randint(len(members), (per_class,), generator=gen)])
    out = torch.cat(picks)
    if len(out) < batch_size:
        pool = torch.arange(len(labels)) if classes_per_batch is None else torch.nonzero(
            torch.isin(labels, classes)).squeeze(1)
        out = torch.cat([out, pool[torch.randint(len(pool), (batch_size - len(out),), generator=gen)]])
    return out[torch.randperm(len(out), generator=gen)][:batch_size]


def augment_batch(x: torch.Tensor, generator: torch.Generator | None = None, pad: int = 4) -> torch.Tensor:
    """Standard CIFAR augmentation on a batch: zero-pad ``pad``, random crop back, random
    horizontal flip. Vectorised and device-agnostic; draws from ``generator`` (or the global
    RNG, which checkpoints save) so runs are reproducible. Non-image inputs pass unchanged.

    >>> x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).reshape(2, 1, 4, 4)
    >>> augment_batch(x, torch.Generator().manual_seed(0), pad=1).shape
    torch.Size([2, 1, 4, 4])
    """
    if x.dim() != 4:
        return x
    b, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(x.device)
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(x.device)
    flip = (torch.rand(b, generator=generator) < 0.5).to(x.device)
    rows = (oy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = ox[:, None] + torch.arange(w, device=x.device)
    cols = torch.where(flip[:, None], cols.flip(1), cols)[:, None, None, :]
    batch = torch.arange(b, device=x.device)[:, None, None, None]
    chan = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, chan, rows, cols]
