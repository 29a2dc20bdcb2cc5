"""Label noise and class imbalance: synthetic kinds, deterministic from a seed (one of them,
``instance``, reads each example's inputs), and labels read from a file (``file``).

>>> import numpy as np
>>> labels = np.arange(10).repeat(100)
>>> noisy, is_noisy = corrupt_labels(labels, "pairflip", 0.2, 10, seed=0)
>>> bool(np.all(noisy[is_noisy] == (labels[is_noisy] + 1) % 10))
True
>>> corrupt_labels(labels, "symmetric", 1.5, 10, seed=0)
Traceback (most recent call last):
...
dm_core.registry.ConfigError: dataset.noise.rate: 1.5 is out of range; must be a float in [0, 1)

A setting the chosen kind would ignore is an error, never a silently clean run:

>>> corrupt_labels(labels, "none", 0.4, 10, seed=0)
Traceback (most recent call last):
...
dm_core.registry.ConfigError: dataset.noise.rate: kind 'none' takes no rate (got 0.4); leave it at 0, or choose a kind that takes one: symmetric, pairflip, asymmetric, instance
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from dm_core.data_dirs import confine_data_path, npz_names, read_npy, read_npz
from dm_core.registry import ConfigError, Param, Registry

NOISE = Registry("noise")

_RATE = Param("rate", 0.0, "float", 0.0, 1.0, high_inclusive=False, ui_high=0.9,
              help="probability that an example's label is corrupted")

# The 20 CIFAR-100 superclasses, as fine-label indices (Krizhevsky 2009, the dataset's meta).
CIFAR100_SUPERCLASSES: tuple[tuple[int, ...], ...] = (
    (4, 30, 55, 72, 95), (1, 32, 67, 73, 91), (54, 62, 70, 82, 92), (9, 10, 16, 28, 61),
    (0, 51, 53, 57, 83), (22, 39, 40, 86, 87), (5, 20, 25, 84, 94), (6, 7, 14, 18, 24),
    (3, 42, 43, 88, 97), (12, 17, 37, 68, 76), (23, 33, 49, 60, 71), (15, 19, 21, 31, 38),
    (34, 63, 64, 66, 75), (26, 45, 77, 79, 99), (2, 11, 35, 46, 98), (27, 29, 44, 78, 93),
    (36, 50, 65, 74, 80), (47, 52, 56, 59, 96), (8, 13, 48, 58, 90), (41, 69, 81, 85, 89),
)
# CIFAR-10 class-dependent flips (Patrini et al. 2017): truck→automobile, bird→airplane,
# deer→horse, cat↔dog.
CIFAR10_FLIPS: dict[int, int] = {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}
# Datasets with a built-in asymmetric noise model, and their number of classes.
ASYMMETRIC_BUILTIN: dict[str, int] = {"cifar10": 10, "cifar100": 100}


def _flip(labels: np.ndarray, rate: float, rng: np.random.Generator, target: np.ndarray) -> np.ndarray:
    """With probability ``rate`` replace label k by ``target[k]`` (where that differs)."""
    flip = rng.random(len(labels)) < rate
    out = labels.copy()
    out[flip] = target[labels[flip]]
    return out


@NOISE.register("none", description="No label noise: train on the annotated labels.")
def _none(labels: np.ndarray, rate: float, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    return labels.copy()


def check_symmetric_rate(rate: float, num_classes: int, where: str = "dataset.noise.rate") -> None:
    """Symmetric noise must stay below ``(C - 1) / C``: at that rate a label is as likely any
    other class as its own, and beyond it the noise becomes the majority label.

    >>> check_symmetric_rate(0.95, 10)
    Traceback (most recent call last):
    ...
    dm_core.registry.ConfigError: dataset.noise.rate: 0.95 is too high for symmetric noise over 10 classes; must be in [0, 0.9) or the noise would become the majority label
    """
    if rate >= (num_classes - 1) / num_classes:
        raise ConfigError(
            f"{where}: {rate:g} is too high for symmetric noise over {num_classes} classes; "
            f"must be in [0, {(num_classes - 1) / num_classes:.4g}) or the noise would become the "
            "majority label")


@NOISE.register("symmetric", params=[_RATE],
                description="With probability r the label becomes a uniformly chosen other class.")
def _symmetric(labels: np.ndarray, rate: float, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    check_symmetric_rate(rate, num_classes)
    flip = rng.random(len(labels)) < rate
    # An offset in 1..C-1 picks a uniformly chosen *other* class.
    offset = rng.integers(1, num_classes, size=len(labels))
    out = labels.copy()
    out[flip] = (labels[flip] + offset[flip]) % num_classes
    return out


@NOISE.register("pairflip", params=[_RATE],
                description="With probability r class k is labelled k+1 (mod C).")
def _pairflip(labels: np.ndarray, rate: float, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    return _flip(labels, rate, rng, (np.arange(num_classes) + 1) % num_classes)


@NOISE.register(
    "asymmetric",
    params=[_RATE, Param("transition", None, "matrix", 0.0, 1.0,
                         help="a C×C row-stochastic matrix (datasets other than CIFAR)")],
    description="Class-dependent noise: CIFAR-100 swaps two fine classes inside each superclass; "
                "CIFAR-10 flips truck→automobile, bird→airplane, deer→horse, cat↔dog; "
                "otherwise a transition matrix you give.")
def _asymmetric(labels: np.ndarray, rate: float, num_classes: int, rng: np.random.Generator,
                dataset: str | None = None, transition: list[list[float]] | None = None) -> np.ndarray:
    if transition is not None:
        t = np.asarray(transition, dtype=np.float64)
        if t.shape != (num_classes, num_classes) or np.any(t < 0) or not np.allclose(t.sum(1), 1.0):
            raise ConfigError(f"dataset.noise.transition: must be a {num_classes}×{num_classes} matrix "
                              "of non-negative rows that each sum to 1")
        cum = np.cumsum(t, axis=1)
        draws = rng.random(len(labels))
        return np.minimum((draws[:, None] > cum[labels]).sum(1), num_classes - 1).astype(np.int64)
    if dataset == "cifar100" and num_classes == ASYMMETRIC_BUILTIN["cifar100"]:
        target = np.arange(100)
        for group in CIFAR100_SUPERCLASSES:
            a, b = rng.choice(group, size=2, replace=False)
            target[a], target[b] = b, a
        return _flip(labels, rate, rng, target)
    if dataset == "cifar10" and num_classes == ASYMMETRIC_BUILTIN["cifar10"]:
        target = np.arange(10)
        for src, dst in CIFAR10_FLIPS.items():
            target[src] = dst
        return _flip(labels, rate, rng, target)
    raise ConfigError(_needs_transition(dataset))


def _needs_transition(dataset: str | None) -> str:
    return ("dataset.noise.transition: asymmetric noise needs a transition matrix for this dataset "
            f"({dataset or 'unknown'}); built-in ones exist for {' and '.join(ASYMMETRIC_BUILTIN)}")


@NOISE.register(
    "imbalance",
    params=[Param("classes", [1], "list[int]", 0, help="classes to subsample"),
            Param("keep_fraction", 0.1, "float", 0.0, 1.0, low_inclusive=False,
                  help="fraction of the chosen classes' examples to keep (0.1 → 10:1)")],
    description="Class imbalance: keep only a fraction of the chosen classes' examples. "
                "Removed examples get label -1 and are dropped by the data layer.")
def _imbalance(labels: np.ndarray, rate: float, num_classes: int, rng: np.random.Generator,
               classes: list[int] | None = None, keep_fraction: float = 0.1) -> np.ndarray:
    classes = [1] if classes is None else list(classes)
    if any(not 0 <= c < num_classes for c in classes):
        raise ConfigError(f"dataset.noise.classes: {classes} must be class indices in [0, {num_classes - 1}]")
    if not 0 < keep_fraction <= 1:
        raise ConfigError(f"dataset.noise.keep_fraction: {keep_fraction!r} must be in (0, 1]")
    out = labels.copy()
    for c in classes:
        idx = np.flatnonzero(labels == c)
        drop = rng.permutation(idx)[int(round(keep_fraction * len(idx))):]
        out[drop] = -1
    return out


# The spread of the per-example flip rates around the requested rate (Xia et al. 2020).
INSTANCE_RATE_STD = 0.1
# Rows of inputs turned into float64 scores at once: bounds the scores' working memory
# (1024 × 3072 float64 inputs of CIFAR are 25 MB) whatever the dataset's size.
_INSTANCE_BLOCK = 1024


def instance_transition(labels: np.ndarray, features: np.ndarray, rate: float, num_classes: int,
                        rng: np.random.Generator) -> np.ndarray:
    """Each example's label distribution under instance-dependent noise: an (N, C) float64
    array whose row i sums to 1 (Xia et al. 2020, "Part-dependent label noise", the generator
    of their code).

    Draws, in this order from ``rng``: the flip rates q_i ~ N(rate, 0.1²) truncated to [0, 1]
    (``scipy.stats.truncnorm``); then W ~ N(0, 1) of shape C × d × C, one class's d × C slice
    at a time (the same values as one C × d × C draw, with at most d × C of them in memory:
    CIFAR-100's whole W would be 245 MB). With x_i the flattened inputs, the scores
    s = x_i · W[y_i] get -inf at the true class, and p_i = q_i · softmax(s), then
    p_i[y_i] += 1 - q_i: example i keeps its label with probability 1 - q_i and otherwise
    moves to the classes its inputs score highest. A rate of 0 keeps every label (rather than
    drawing q from the half-normal that truncating N(0, 0.1²) at 0 would give).

    >>> rng = np.random.default_rng(0)
    >>> p = instance_transition(np.array([0, 1]), np.eye(2), 0.3, 3, rng)
    >>> p.shape, bool(np.allclose(p.sum(1), 1))
    ((2, 3), True)
    """
    from scipy.stats import truncnorm

    x = np.asarray(features)
    n = len(labels)
    if x.ndim < 2 or len(x) != n or x.dtype.kind not in "biuf" or 0 in x.shape[1:]:
        raise ConfigError(f"features: instance noise needs each example's inputs, a real array of "
                          f"{n} rows of at least one value each; got {x.dtype} {x.shape}")
    if num_classes < 2:
        raise ConfigError(f"dataset.noise.kind: instance noise moves labels to other classes, so it "
                          f"needs at least 2 classes (got {num_classes})")
    p = np.zeros((n, num_classes))
    p[np.arange(n), labels] = 1.0
    if rate == 0:
        return p
    x = x.reshape(n, -1)
    spread = INSTANCE_RATE_STD
    q = truncnorm(-rate / spread, (1 - rate) / spread, loc=rate, scale=spread).rvs(
        size=n, random_state=rng)
    for k in range(num_classes):
        w = rng.standard_normal((x.shape[1], num_classes))  # W[k]
        rows = np.flatnonzero(labels == k)
        for start in range(0, len(rows), _INSTANCE_BLOCK):
            r = rows[start:start + _INSTANCE_BLOCK]
            scores = x[r].astype(np.float64) @ w
            scores[:, k] = -np.inf
            e = np.exp(scores - scores.max(axis=1, keepdims=True))
            p[r] = q[r, None] * e / e.sum(axis=1, keepdims=True)
            p[r, k] += 1 - q[r]
    return p


def draw_labels(p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One label per row of ``p`` (rows of class probabilities), by inverting each row's
    cumulative sum at a uniform u in (0, 1]: a class of probability 0 is never drawn."""
    cum = np.cumsum(p, axis=1)
    u = (1.0 - rng.random(len(p)))[:, None] * cum[:, -1:]
    return (cum < u).sum(axis=1).astype(np.int64)


@NOISE.register("instance", params=[_RATE], needs_features=True,
                description="Instance-dependent noise (Xia et al. 2020): each example flips with its "
                            "own probability q ~ N(r, 0.1²) in [0, 1], to the classes a random "
                            "projection of its inputs scores highest.")
def _instance(labels: np.ndarray, rate: float, num_classes: int, rng: np.random.Generator,
              features: np.ndarray | None = None) -> np.ndarray:
    if features is None:
        raise ConfigError("dataset.noise.kind: instance noise depends on each example's inputs; "
                          "corrupt_labels needs them as features=")
    return draw_labels(instance_transition(labels, features, rate, num_classes, rng), rng)


# A labels file holds at most this many bytes (CIFAR-10N's file is under 3 MB; 256 MiB holds 32
# million int64 labels). A .pt is read whole: this bounds its size on disk and, for the zip
# format torch writes, the sizes its members inflate to. .npy and .npz arrays are bounded by
# the bytes their headers declare (shape × itemsize), checked before anything is inflated.
MAX_LABEL_FILE_BYTES = 1 << 28
LABEL_FILE_TYPES = (".npy", ".npz", ".pt")


def _torch_file_arrays(p: Path) -> dict[str, np.ndarray]:
    """The named arrays of the torch file at ``p``: a dict of numpy arrays or tensors, loaded
    with ``weights_only=True`` and only numpy's plain number arrays allowed besides tensors, so
    no other Python object is ever built from the file."""
    import torch

    where = f"dataset.noise.path: {str(p)!r}"
    size = p.stat().st_size
    if zipfile.is_zipfile(p):
        with zipfile.ZipFile(p) as zf:
            size = max(size, sum(info.file_size for info in zf.infolist()))
    if size > MAX_LABEL_FILE_BYTES:
        raise ConfigError(f"{where} is (or inflates to) {size:,} bytes; a labels file may be at "
                          f"most {MAX_LABEL_FILE_BYTES:,}")
    reconstruct = np.ndarray.__reduce__(np.zeros(1))[0]
    plain = [type(np.dtype(code)) for code in "?bhilqBHILQefd"]
    try:
        with torch.serialization.safe_globals([reconstruct, np.ndarray, np.dtype, *plain]):
            loaded = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # torch's message suggests loading the file unsafely; only what it refused is passed on.
        found = re.search(r"GLOBAL ([\w.]+)", str(err))
        if found:
            raise ConfigError(f"{where} holds pickled Python objects ({found.group(1)}) besides "
                              "tensors and number arrays; they are never loaded. Save the labels as "
                              "a dict of arrays or tensors, or as .npy/.npz") from None
        reason = str(err).partition("WeightsUnpickler error:")[2]
        raise ConfigError(f"{where} is not a torch file of named label arrays; its pickle was "
                          f"refused ({_first_line(reason) or 'unreadable'})") from None
    except Exception as err:  # noqa: BLE001 - torch raises many types for a damaged file
        raise ConfigError(f"{where} is not a readable torch file ({type(err).__name__}: "
                          f"{_first_line(str(err))})") from None
    if not isinstance(loaded, dict) or not all(isinstance(k, str) for k in loaded):
        raise ConfigError(f"{where} holds a {type(loaded).__name__}; a .pt labels file must hold a "
                          "dict of named label arrays, e.g. CIFAR-10N's aggre_label, worse_label")
    arrays = {}
    for name, value in loaded.items():
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
        if not isinstance(value, np.ndarray):
            raise ConfigError(f"{where}: {name!r} holds a {type(value).__name__}; a labels file "
                              "holds arrays or tensors only")
        arrays[name] = value
    return arrays


def _first_line(text: str) -> str:
    """The first non-empty line of a library's message, printable characters only, short."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return "".join(c for c in line if c.isprintable())[:200]


def _pick(names: list[str], key: str | None, p: Path) -> str:
    if key is None:
        raise ConfigError(f"dataset.noise.key: {str(p)!r} holds named label arrays; pick one with "
                          f"dataset.noise.key: {', '.join(names) or '(none)'}")
    if key not in names:
        raise ConfigError(f"dataset.noise.key: {key!r} is not in {str(p)!r}; it holds: "
                          f"{', '.join(names) or '(nothing)'}")
    return key


def read_label_file(path: str, key: str | None, num_examples: int, num_classes: int,
                    dataset: str | None = None) -> np.ndarray:
    """The labels of the file at ``path`` (named ``key`` in a file of named arrays), checked
    to be one class index in [0, ``num_classes``) for each of ``num_examples`` examples.

    A ``.npy`` holds one integer array. A ``.npz`` or a ``.pt`` (a torch file, as CIFAR-10N
    ships) holds named arrays, one of which ``key`` picks. Nothing is unpickled beyond tensors
    and numpy number arrays. The path must lie in the allowed data directories. Errors name
    ``dataset.noise.path`` or ``dataset.noise.key`` and what is allowed.
    """
    p = confine_data_path(path, "dataset.noise.path")
    if not p.is_file():
        raise ConfigError(f"dataset.noise.path: {str(p)!r} does not exist")
    suffix = p.suffix.lower()
    if suffix == ".npy":
        if key is not None:
            raise ConfigError(f"dataset.noise.key: {str(p)!r} holds one label array, not named "
                              "arrays; leave dataset.noise.key empty")
        labels = read_npy(p, "dataset.noise.path", max_bytes=MAX_LABEL_FILE_BYTES,
                          limited="a labels file")
        field = "dataset.noise.path"
    elif suffix == ".npz":
        name = _pick(npz_names(p, "dataset.noise.path"), key, p)
        labels = read_npz(p, (name,), "dataset.noise.path", max_bytes=MAX_LABEL_FILE_BYTES,
                          limited="a labels file")[name]
        field = "dataset.noise.key"
    elif suffix == ".pt":
        arrays = _torch_file_arrays(p)
        labels, field = arrays[_pick(list(arrays), key, p)], "dataset.noise.key"
    else:
        raise ConfigError(f"dataset.noise.path: {str(p)!r} is not a labels file; must end in "
                          f"{', '.join(LABEL_FILE_TYPES)}")
    what = f"{key!r} of {str(p)!r}" if key is not None else repr(str(p))
    data = f"{dataset} has" if dataset else "the dataset has"
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise ConfigError(f"{field}: {what} must hold one integer class index per example, of "
                          f"shape ({num_examples},); got {labels.dtype} {labels.shape}")
    if len(labels) != num_examples:
        raise ConfigError(f"{field}: {what} holds {len(labels):,} labels; {data} {num_examples:,} "
                          "training examples (counted before dataset.val_fraction holds any out), "
                          "and the file needs one label for each, in the dataset's order")
    # -1 leaves an example out, as class imbalance does (the data layer drops it): a labels
    # file from ``dm examples --drop-top`` retrains without the suspects it ranked.
    if len(labels) and (labels.min() < -1 or labels.max() >= num_classes):
        raise ConfigError(f"{field}: {what} holds labels in [{labels.min()}, {labels.max()}]; "
                          f"{data} {num_classes} classes, so labels must be in "
                          f"[0, {num_classes - 1}], or -1 to leave an example out")
    if len(labels) and (labels < 0).all():
        raise ConfigError(f"{field}: {what} leaves every example out (all labels are -1)")
    return labels.astype(np.int64)


@NOISE.register(
    "file",
    params=[Param("path", None, "str", help="a .npy of one label per training example (-1 leaves "
                                            "it out), or a .npz or .pt of named label arrays "
                                            "(e.g. CIFAR-10N's)"),
            Param("key", None, "str", help="which named array of a .npz or .pt, e.g. worse_label")],
    whole_training_set=True,
    description="Labels from a file, e.g. human annotations (CIFAR-10N, CIFAR-100N): the examples "
                "whose file label differs from the dataset's are the corrupted ones.")
def _from_file(labels: np.ndarray, rate: float, num_classes: int, rng: np.random.Generator,
               path: str = "", key: str | None = None, dataset: str | None = None) -> np.ndarray:
    return read_label_file(path, key, len(labels), num_classes, dataset)


def check_noise_settings(kind: str, rate: float, params: dict[str, Any], dataset: str | None = None,
                         where: str = "dataset.noise") -> None:
    """Reject noise settings that ``kind`` would ignore, naming the field and what is allowed.

    The registry is the source of truth: a kind takes ``rate`` and the other keys of
    ``params`` only if its entry lists them as parameters (``none`` takes nothing,
    ``imbalance`` takes ``classes`` and ``keep_fraction`` but no rate). A rate of 0 is the
    same as no rate. A user transition matrix sets every flip probability itself, so it
    takes no rate either. Given ``dataset``, asymmetric noise without a matrix is checked to
    have a built-in model for it. ``None`` values in ``params`` count as unset.

    >>> check_noise_settings("symmetric", 0.4, {"classes": [1]})
    Traceback (most recent call last):
    ...
    dm_core.registry.ConfigError: dataset.noise.classes: not a setting of kind 'symmetric' (it would be ignored); symmetric takes: rate
    >>> check_noise_settings("asymmetric", 0.2, {}, dataset="cifar10")  # built-in CIFAR-10 flips
    """
    entry = NOISE.get(kind, where=f"{where}.kind")
    takes = [p.name for p in entry.params]
    if rate != 0 and "rate" not in takes:
        with_rate = ", ".join(e.name for e in NOISE.entries() if any(p.name == "rate" for p in e.params))
        others = f"; its settings are {', '.join(takes)}" if takes else ""
        raise ConfigError(f"{where}.rate: kind {kind!r} takes no rate (got {rate:g}){others}; leave it "
                          f"at 0, or choose a kind that takes one: {with_rate}")
    for key, value in params.items():
        if value is not None and key not in takes:
            raise ConfigError(f"{where}.{key}: not a setting of kind {kind!r} (it would be ignored); "
                              f"{kind} takes: {', '.join(takes) or 'nothing'}")
    if kind == "asymmetric" and params.get("transition") is not None and rate != 0:
        raise ConfigError(f"{where}.rate: a transition matrix ({where}.transition) sets every flip "
                          f"probability itself, so rate must be 0 (got {rate:g}); the actual noise "
                          "rate is measured and reported with the run")
    if (kind == "asymmetric" and params.get("transition") is None and dataset is not None
            and dataset not in ASYMMETRIC_BUILTIN):
        raise ConfigError(_needs_transition(dataset))
    if kind == "file" and not params.get("path"):
        raise ConfigError(f"{where}.path: kind 'file' needs the labels file: a .npy of one label "
                          f"per training example, or a .npz or .pt of named label arrays (with "
                          f"{where}.key)")


def corrupt_labels(labels: np.ndarray, kind: str, rate: float, num_classes: int, seed: int,
                   *, features: np.ndarray | None = None,
                   **kw: Any) -> tuple[np.ndarray, np.ndarray]:
    """Corrupt ``labels`` and return ``(noisy_labels, is_noisy)``; deterministic from ``seed``.

    Kinds: see ``NOISE``. For ``imbalance`` the removed examples get label ``-1`` (and
    ``is_noisy`` False): the data layer drops them. ``kw`` holds the kind's other settings
    (``transition``, ``classes``, ``keep_fraction``, ``path``, ``key``) and the ``dataset``
    name; a setting the kind would ignore raises ``ConfigError`` (see ``check_noise_settings``).

    ``features`` are the examples' inputs, one row each, for the kinds whose registry entry
    says ``needs_features`` (``instance``); the other kinds never read them, so their labels
    for a seed are the same with or without. ``file`` reads one label per example of
    ``labels``, in order (the data layer passes the whole training set: registry entry
    ``whole_training_set``).

    >>> import numpy as np
    >>> noisy, is_noisy = corrupt_labels(np.zeros(1000, dtype=int), "symmetric", 0.3, 4, seed=1)
    >>> abs(float(is_noisy.mean()) - 0.3) < 0.03, bool(np.all(noisy[is_noisy] != 0))
    (True, True)
    """
    NOISE.get(kind, where="dataset.noise.kind")
    rate = _RATE.check(rate, "dataset.noise")
    settings = {k: v for k, v in kw.items() if k != "dataset"}
    check_noise_settings(kind, rate, settings)
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ConfigError("labels: must be a 1-D array of integer class indices")
    labels = labels.astype(np.int64)
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise ConfigError(f"labels: class indices must be in [0, {num_classes - 1}]")
    rng = np.random.default_rng(seed)
    if kind == "asymmetric":
        noisy = _asymmetric(labels, rate, num_classes, rng, dataset=kw.get("dataset"),
                            transition=kw.get("transition"))
    elif kind == "imbalance":
        noisy = _imbalance(labels, rate, num_classes, rng, classes=kw.get("classes"),
                           keep_fraction=kw.get("keep_fraction", 0.1))
    elif kind == "instance":
        noisy = _instance(labels, rate, num_classes, rng, features=features)
    elif kind == "file":
        noisy = _from_file(labels, rate, num_classes, rng, path=kw["path"], key=kw.get("key"),
                           dataset=kw.get("dataset"))
    else:
        noisy = NOISE.get(kind).factory(labels, rate, num_classes, rng)
    is_noisy = (noisy != labels) & (noisy >= 0)
    return noisy, is_noisy


def actual_noise_rate(is_noisy: np.ndarray, noisy_labels: np.ndarray) -> float:
    """The fraction of the kept examples whose label was changed (what a run reports)."""
    kept = np.asarray(noisy_labels) >= 0
    return float(np.asarray(is_noisy)[kept].mean()) if kept.any() else 0.0
