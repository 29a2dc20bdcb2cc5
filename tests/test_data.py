"""Dataset loaders, each on tiny files the test writes in the format torchvision reads.

Every test's files live under ``tmp_path``, which the ``data_dirs`` fixture makes the allowed
data directory (``DM_DATA_DIRS``); the confinement tests narrow it to ``tmp_path/allowed``.
"""

from __future__ import annotations

import math
import os
import pickle
import struct

import numpy as np
import pytest
import torch

from dm_core.data import (
    DATASETS,
    VEHICLES10,
    augment_batch,
    balanced_batch_indices,
    batch_indices,
    load_dataset,
)
from dm_core.registry import ConfigError

RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def data_dirs(tmp_path, monkeypatch):
    """Datasets may be read from anywhere under ``tmp_path`` (and only there)."""
    monkeypatch.setenv("DM_DATA_DIRS", str(tmp_path))
    return tmp_path


def test_digits_shapes_split_and_noise():
    b = load_dataset("digits", seed=1, noise_kind="symmetric", noise_rate=0.4, val_fraction=0.2)
    assert b.num_classes == 10 and b.input_shape == (1, 8, 8)
    assert len(b.x_train) + len(b.x_val) == 1297 and len(b.x_test) == 500
    assert abs(len(b.x_val) - 0.2 * 1297) < 10
    # Noise only on the training part; is_noisy says exactly which labels changed.
    assert torch.equal(b.is_noisy, b.y_train != b.y_train_clean)
    assert abs(b.actual_noise_rate - 0.4) < 0.05
    # The trusted split is clean and disjoint from training: count rows across both.
    rows = {tuple(r) for r in b.x_train.flatten(1).numpy().round(5)}
    assert not any(tuple(r) in rows for r in b.x_val.flatten(1).numpy().round(5)[:50])
    # Normalised on training statistics.
    assert abs(float(b.x_train.mean())) < 1e-4


def test_digits_deterministic_from_seed():
    a = load_dataset("digits", seed=5, noise_kind="pairflip", noise_rate=0.3)
    b = load_dataset("digits", seed=5, noise_kind="pairflip", noise_rate=0.3)
    assert torch.equal(a.y_train, b.y_train)


def _idx(path, array):
    dims = array.shape
    with open(path, "wb") as fh:
        fh.write(struct.pack(">BBBB", 0, 0, 8, len(dims)))
        fh.write(struct.pack(">" + "I" * len(dims), *dims))
        fh.write(array.astype(np.uint8).tobytes())


@pytest.mark.parametrize(("name", "folder"), [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_mnist_like_from_raw_idx_files(tmp_path, name, folder):
    raw = tmp_path / folder / "raw"
    raw.mkdir(parents=True)
    _idx(raw / "train-images-idx3-ubyte", RNG.integers(0, 256, (30, 28, 28)))
    _idx(raw / "train-labels-idx1-ubyte", np.arange(30) % 10)
    _idx(raw / "t10k-images-idx3-ubyte", RNG.integers(0, 256, (10, 28, 28)))
    _idx(raw / "t10k-labels-idx1-ubyte", np.arange(10))
    b = load_dataset(name, seed=0, root=str(tmp_path))
    assert b.x_train.shape == (30, 1, 28, 28) and b.x_test.shape == (10, 1, 28, 28)
    assert b.y_train.tolist() == (np.arange(30) % 10).tolist()
    assert b.num_classes == 10


def _dump(obj, path, protocol=pickle.DEFAULT_PROTOCOL):
    blob = pickle.dumps(obj, protocol=protocol)
    if protocol == 2:  # as the official files, pickled by numpy 1: numpy.core, not numpy._core
        blob = blob.replace(b"numpy._core.", b"numpy.core.")
    path.write_bytes(blob)


def _cifar_batch(path, n, labels, key, protocol=pickle.DEFAULT_PROTOCOL, bytes_keys=False):
    batch = {"data": RNG.integers(0, 256, (n, 3072)).astype(np.uint8), key: list(labels)}
    if bytes_keys:  # the official files were pickled by Python 2: its str keys are bytes
        batch = {k.encode(): v for k, v in batch.items()} | {b"filenames": [b"x.png"] * n}
    _dump(batch, path, protocol)


def _write_cifar10(root, n=20, protocol=pickle.DEFAULT_PROTOCOL, bytes_keys=False):
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    for i in range(1, 6):
        _cifar_batch(base / f"data_batch_{i}", n, np.arange(n) % 10, "labels", protocol, bytes_keys)
    _cifar_batch(base / "test_batch", n, np.arange(n) % 10, "labels", protocol, bytes_keys)
    names = [f"c{i}" for i in range(10)]
    _dump({b"label_names": [n.encode() for n in names]} if bytes_keys else {"label_names": names},
          base / "batches.meta", protocol)
    return base


def _write_cifar100(root, labels_train, labels_test):
    base = root / "cifar-100-python"
    base.mkdir(parents=True)
    _cifar_batch(base / "train", len(labels_train), labels_train, "fine_labels")
    _cifar_batch(base / "test", len(labels_test), labels_test, "fine_labels")
    with open(base / "meta", "wb") as fh:
        pickle.dump({"fine_label_names": [f"f{i}" for i in range(100)]}, fh)


def test_cifar10_from_python_batches(tmp_path):
    _write_cifar10(tmp_path)
    b = load_dataset("cifar10", seed=0, root=str(tmp_path), noise_kind="asymmetric", noise_rate=0.5)
    assert b.x_train.shape == (100, 3, 32, 32) and b.x_test.shape == (20, 3, 32, 32)
    assert b.augment and b.class_names[0] == "c0"
    # Asymmetric CIFAR-10 noise only ever uses the documented flips.
    flips = {(int(a), int(c)) for a, c in zip(b.y_train_clean[b.is_noisy], b.y_train[b.is_noisy], strict=True)}
    assert flips <= {(9, 1), (2, 0), (4, 7), (3, 5), (5, 3)}


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar10_from_every_pickle_protocol(tmp_path, protocol):
    """Protocol 2 as the official files (numpy.core globals, bytes keys and names; from
    Python 3 bytes come as _codecs.encode), 4 (Python 3's default) and 5 (_frombuffer)."""
    _write_cifar10(tmp_path, protocol=protocol, bytes_keys=protocol == 2)
    b = load_dataset("cifar10", seed=0, root=str(tmp_path))
    assert b.x_train.shape == (100, 3, 32, 32) and b.class_names[:2] == ["c0", "c1"]
    assert b.y_test.tolist() == (np.arange(20) % 10).tolist()


def test_cifar_images_keep_torchvisions_layout(tmp_path):
    """A batch's row is 1024 red, then green, then blue values, row-major (the CIFAR format)."""
    base = _write_cifar10(tmp_path, n=10)
    data = np.zeros((10, 3072), np.uint8)
    data[0, 1024 + 32 * 2 + 5] = 255  # image 0, green, row 2, column 5
    _dump({"data": data, "labels": list(range(10))}, base / "test_batch")
    raw = DATASETS.get("cifar10").factory(root=str(tmp_path), download=False)
    assert raw.x_test[0, 1, 2, 5] == 1.0 and raw.x_test.sum() == 1.0


class _RunsCode:
    """A pickle whose loading calls ``os.system`` (find_class would return it)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Evals:
    def __reduce__(self):
        return (eval, ("__import__('os').getcwd()",))


@pytest.mark.parametrize("where", ["batch", "meta", "inside the array", "eval", "codecs"])
def test_cifar_pickle_that_runs_code_is_refused(tmp_path, where):
    base = _write_cifar10(tmp_path / "data")
    marker = tmp_path / "pwned"
    payload = {"batch": {"data": _RunsCode(marker), "labels": [0]},
               "inside the array": {"data": np.array([_RunsCode(marker)], dtype=object),
                                    "labels": [0]},
               "eval": {"data": _Evals(), "labels": [0]}}
    target = base / ("batches.meta" if where == "meta" else "data_batch_3")
    if where == "meta":
        _dump({"label_names": _RunsCode(marker)}, target)
    elif where == "codecs":  # _codecs.encode with a codec other than latin-1
        target.write_bytes(b"\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00abcX\x05\x00\x00\x00rot13\x86R.")
    else:
        _dump(payload[where], target)
    with pytest.raises(ConfigError, match="dataset.root: refused to load") as err:
        load_dataset("cifar10", seed=0, root=str(tmp_path / "data"))
    assert str(target) in str(err.value)
    assert {"batch": "system", "meta": "system", "inside the array": "system",
            "eval": "builtins.eval", "codecs": "rot13"}[where] in str(err.value)
    assert not marker.exists()  # nothing ran


@pytest.mark.parametrize("bad", ["not a pickle", "a list", "wrong shape", "float labels", "no names"])
def test_cifar_files_that_are_not_batches_are_explained(tmp_path, bad):
    base = _write_cifar10(tmp_path)
    target = base / ("batches.meta" if bad == "no names" else "data_batch_1")
    {"not a pickle": lambda: target.write_bytes(b"\x00garbage"),
     "a list": lambda: _dump([1, 2, 3], target),
     "wrong shape": lambda: _dump({"data": np.zeros((2, 10), np.uint8), "labels": [0, 1]}, target),
     "float labels": lambda: _dump({"data": np.zeros((2, 3072), np.uint8), "labels": [0.5, 1.0]}, target),
     "no names": lambda: _dump({"labels": []}, target)}[bad]()
    with pytest.raises(ConfigError, match="dataset.root") as err:
        load_dataset("cifar10", seed=0, root=str(tmp_path))
    assert str(target) in str(err.value)


def test_cifar_download_goes_through_torchvisions_downloader(tmp_path, monkeypatch):
    """download=true fetches the official archive (md5-checked by torchvision), then the files
    are read by the safe reader; files already there are not fetched again."""
    import torchvision
    import torchvision.datasets.utils as tv_utils

    calls = []

    def fake_download(url, download_root, filename=None, md5=None, **kw):
        calls.append((url, filename, md5))
        _write_cifar10(tmp_path / "dl")

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", fake_download)
    b = load_dataset("cifar10", seed=0, root=str(tmp_path / "dl"), download=True)
    assert len(b.x_train) == 100
    cls = torchvision.datasets.CIFAR10
    assert calls == [(cls.url, cls.filename, cls.tgz_md5)]
    load_dataset("cifar10", seed=0, root=str(tmp_path / "dl"), download=True)
    assert len(calls) == 1


def test_cifar100_and_vehicles10(tmp_path):
    train_labels = np.arange(200) % 100
    _write_cifar100(tmp_path, train_labels, np.arange(100))
    b = load_dataset("cifar100", seed=0, root=str(tmp_path))
    assert b.num_classes == 100 and len(b.x_train) == 200
    v = load_dataset("vehicles10", seed=0, root=str(tmp_path))
    assert v.num_classes == 10 and len(v.x_train) == 20 and len(v.x_test) == 10
    assert sorted(set(v.y_train.tolist())) == list(range(10))
    assert v.class_names[0] == "bicycle" and VEHICLES10[0] == 8


def test_image_folder(tmp_path):
    from PIL import Image

    for split, n in (("train", 4), ("test", 2)):
        for cls in ("cat", "dog"):
            d = tmp_path / split / cls
            d.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(RNG.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(d / f"{i}.png")
    b = load_dataset("image_folder", seed=0, root=str(tmp_path), image_size=16)
    assert b.x_train.shape == (8, 3, 16, 16) and b.class_names == ["cat", "dog"]
    (tmp_path / "test" / "dog").rename(tmp_path / "test" / "bird")
    with pytest.raises(ConfigError, match="same class folders"):
        load_dataset("image_folder", seed=0, root=str(tmp_path))


def test_arrays_features_and_images(tmp_path):
    f = tmp_path / "f.npz"
    np.savez(f, x_train=RNG.normal(size=(40, 5)), y_train=np.arange(40) % 2,
             x_test=RNG.normal(size=(10, 5)), y_test=np.arange(10) % 2)
    b = load_dataset("arrays", seed=0, path=str(f))
    assert b.input_shape == (5,) and b.num_classes == 2
    g = tmp_path / "g.npz"
    np.savez(g, x_train=RNG.normal(size=(12, 6, 6)), y_train=np.arange(12) % 3,
             x_test=RNG.normal(size=(3, 6, 6)), y_test=np.arange(3))
    assert load_dataset("arrays", seed=0, path=str(g)).input_shape == (1, 6, 6)


BAD_ARRAYS = {
    "shapes": dict(x_train=np.zeros((4, 3)), y_train=np.zeros(5, int), x_test=np.zeros((2, 3)), y_test=np.zeros(2, int)),
    "label range": dict(x_train=np.zeros((4, 3)), y_train=np.array([0, 1, -1, 0]), x_test=np.zeros((2, 3)), y_test=np.zeros(2, int)),
    "unseen test class": dict(x_train=np.zeros((4, 3)), y_train=np.zeros(4, int), x_test=np.zeros((2, 3)), y_test=np.array([0, 5])),
    "nan": dict(x_train=np.full((4, 3), np.nan), y_train=np.zeros(4, int), x_test=np.zeros((2, 3)), y_test=np.zeros(2, int)),
    "float labels": dict(x_train=np.zeros((4, 3)), y_train=np.zeros(4), x_test=np.zeros((2, 3)), y_test=np.zeros(2)),
    "missing": dict(x_train=np.zeros((4, 3)), y_train=np.zeros(4, int)),
    "object": dict(x_train=np.array([{"a": 1}] * 4, dtype=object), y_train=np.zeros(4, int), x_test=np.zeros((2, 3)), y_test=np.zeros(2, int)),
    "complex": dict(x_train=np.zeros((4, 3), complex), y_train=np.zeros(4, int), x_test=np.zeros((2, 3)), y_test=np.zeros(2, int)),
    "no features": dict(x_train=np.zeros((4, 0)), y_train=np.zeros(4, int), x_test=np.zeros((2, 0)), y_test=np.zeros(2, int)),
    "bool labels": dict(x_train=np.zeros((4, 3)), y_train=np.zeros(4, bool), x_test=np.zeros((2, 3)), y_test=np.zeros(2, bool)),
    "too many classes": dict(x_train=np.zeros((4, 3)), y_train=np.array([0, 1, 2, 10**9]), x_test=np.zeros((2, 3)), y_test=np.zeros(2, int)),
    "float32 overflow": dict(x_train=np.full((4, 3), 1e300), y_train=np.zeros(4, int), x_test=np.zeros((2, 3)), y_test=np.zeros(2, int)),
    "test shape": dict(x_train=np.zeros((4, 3)), y_train=np.zeros(4, int), x_test=np.zeros((2, 5)), y_test=np.zeros(2, int)),
    "4-d labels": dict(x_train=np.zeros((4, 3)), y_train=np.zeros((4, 1), int), x_test=np.zeros((2, 3)), y_test=np.zeros(2, int)),
}

# What each case's message must say, beyond naming dataset.path.
BAD_ARRAYS_SAY = {"object": "object arrays", "complex": "real numeric", "no features": "≥ 1",
                  "bool labels": "integer labels", "too many classes": "[0, 100000)",
                  "float32 overflow": "float32", "label range": "class indices", "nan": "NaN",
                  "missing": "x_test, y_test", "unseen test class": "never seen",
                  "test shape": "same per-example shape", "4-d labels": "shape (4,)"}


@pytest.mark.parametrize("case", list(BAD_ARRAYS))
def test_arrays_validation_errors(tmp_path, case):
    path = tmp_path / "bad.npz"
    np.savez(path, **BAD_ARRAYS[case])
    with pytest.raises(ConfigError, match="dataset.path") as err:
        load_dataset("arrays", seed=0, path=str(path))
    assert BAD_ARRAYS_SAY.get(case, "") in str(err.value)


def test_arrays_never_unpickle(tmp_path):
    """An .npz is data: a pickled object inside it is refused, never executed."""
    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('unpickled!')",))

    path = tmp_path / "evil.npz"
    payload = np.empty(1, dtype=object)
    payload[0] = Boom()
    np.savez(path, x_train=payload, y_train=np.zeros(1, int), x_test=np.zeros((1, 3)),
             y_test=np.zeros(1, int))
    assert b"unpickled" in path.read_bytes()  # the payload really is in the file
    with pytest.raises(ConfigError, match="object arrays"):
        load_dataset("arrays", seed=0, path=str(path))


def _npz_with(path, members: dict[str, bytes]) -> None:
    """An .npz written member by member (as np.savez does: deflated .npy files)."""
    import zipfile

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def _npy(array: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def _npy_header_only(shape: tuple[int, ...], dtype: str) -> bytes:
    """An .npy that declares ``shape`` but holds no data (a lie a bomb could tell)."""
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": np.dtype(dtype).str, "fortran_order": False,
                                               "shape": shape})
    return buf.getvalue() + b"\0" * 64


SMALL = dict(x_train=np.zeros((4, 3)), y_train=np.arange(4) % 2, x_test=np.zeros((2, 3)),
             y_test=np.arange(2))


def test_arrays_reads_only_the_four_arrays_it_needs(tmp_path):
    """Extra members are never decompressed: one that is not even an array, and one that is a
    pickled object, do not stop the dataset from loading."""
    path = tmp_path / "extra.npz"
    junk = np.empty(1, dtype=object)
    junk[0] = {"a": 1}
    import io
    pickled = io.BytesIO()
    np.save(pickled, junk, allow_pickle=True)
    _npz_with(path, {**{f"{k}.npy": _npy(v) for k, v in SMALL.items()},
                     "junk.npy": b"not an npy file at all", "meta.npy": pickled.getvalue()})
    bundle = load_dataset("arrays", seed=0, path=str(path))
    assert len(bundle.x_train) == 4 and bundle.num_classes == 2


@pytest.mark.parametrize(("key", "shape", "dtype"), [
    ("x_train", (1_000_000, 1_000_000), "<f4"), ("y_test", (10**12,), "<i8"),
])
def test_arrays_refuses_declared_sizes_over_the_limit_before_reading(tmp_path, key, shape, dtype):
    """A member whose .npy header declares terabytes is refused from its header, naming the
    file, the key and the limit in bytes, before any memory is set aside for it."""
    from dm_core.data_dirs import MAX_ARRAYS_BYTES

    path = tmp_path / "bomb.npz"
    members = {f"{k}.npy": _npy(v) for k, v in SMALL.items()}
    members[f"{key}.npy"] = _npy_header_only(shape, dtype)
    _npz_with(path, members)
    with pytest.raises(ConfigError) as err:
        load_dataset("arrays", seed=0, path=str(path))
    message = str(err.value)
    assert message.startswith("dataset.path: ") and str(path) in message and key in message
    nbytes = math.prod(shape) * np.dtype(dtype).itemsize
    assert f"array {key!r} declares {shape} {np.dtype(dtype)}, {nbytes:,} bytes once inflated; " \
        f"a dataset file may hold at most {MAX_ARRAYS_BYTES:,} bytes" in message


def test_arrays_refuses_a_member_that_inflates_beyond_the_limit(tmp_path, monkeypatch):
    """The zip header's uncompressed size is checked before a member is opened: a small file
    of zeros that inflates far beyond its arrays' limit is refused from it."""
    import zipfile

    from dm_core import data_dirs

    monkeypatch.setattr(data_dirs, "MAX_ARRAYS_BYTES", 8000)
    path = tmp_path / "zeros.npz"
    members = {f"{k}.npy": _npy(v) for k, v in SMALL.items()}
    members["x_train.npy"] = _npy(np.zeros((4, 3))) + b"\0" * 1_000_000  # trailing bytes
    _npz_with(path, members)
    assert path.stat().st_size < 10_000  # it compresses to nearly nothing
    assert zipfile.ZipFile(path).getinfo("x_train.npy").file_size > 1_000_000
    with pytest.raises(ConfigError, match=r"dataset\.path: .*'x_train' inflates to 1,000,\d+ "
                                          r"bytes; a dataset file may hold at most 8,000 bytes"):
        load_dataset("arrays", seed=0, path=str(path))


def test_arrays_total_over_the_limit_is_refused(tmp_path, monkeypatch):
    from dm_core import data_dirs

    monkeypatch.setattr(data_dirs, "MAX_ARRAYS_ELEMENTS", 20)  # the arrays hold 4*3 + 4 + 2*3 + 2 = 24
    path = tmp_path / "small.npz"
    np.savez(path, **SMALL)
    with pytest.raises(ConfigError, match="24 values in all; at most 20"):
        load_dataset("arrays", seed=0, path=str(path))
    monkeypatch.setattr(data_dirs, "MAX_ARRAYS_ELEMENTS", 24)
    assert len(load_dataset("arrays", seed=0, path=str(path)).x_train) == 4
    # In bytes: float64 x (12 + 6 values) and int64 y (4 + 2): 24 × 8 = 192 bytes in all.
    monkeypatch.setattr(data_dirs, "MAX_ARRAYS_BYTES", 191)
    with pytest.raises(ConfigError, match="inflate to 192 bytes in all; a dataset file may hold "
                                          "at most 191 bytes"):
        load_dataset("arrays", seed=0, path=str(path))


def test_unknown_dataset_and_missing_root(tmp_path):
    with pytest.raises(ConfigError, match="digits"):
        load_dataset("imagenet22k", seed=0)
    with pytest.raises(ConfigError, match="dataset.root"):
        load_dataset("cifar10", seed=0, root=str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="dataset.path"):
        load_dataset("arrays", seed=0, path=str(tmp_path / "none.npz"))
    assert {"digits", "mnist", "fashion_mnist", "cifar10", "cifar100", "vehicles10",
            "image_folder", "arrays"} <= set(DATASETS.names())


# ---------------------------------------------------------------- allowed data directories

def _write_everything(root):
    """A CIFAR-10 folder, an MNIST folder, an image folder and an .npz under ``root``."""
    from PIL import Image

    _write_cifar10(root / "cifar")
    raw = root / "mnist" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, n in (("train", 10), ("t10k", 10)):
        _idx(raw / f"{prefix}-images-idx3-ubyte", RNG.integers(0, 256, (n, 28, 28)))
        _idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n))
    for split in ("train", "test"):
        for cls in ("cat", "dog"):
            (root / "images" / split / cls).mkdir(parents=True)
            Image.fromarray(RNG.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(
                root / "images" / split / cls / "0.png")
    np.savez(root / "f.npz", x_train=RNG.normal(size=(4, 3)), y_train=np.arange(4) % 2,
             x_test=RNG.normal(size=(2, 3)), y_test=np.arange(2))


def _load_from(root, name):
    """Load ``name`` from a folder written by ``_write_everything``."""
    where = {"cifar10": {"root": str(root / "cifar")}, "mnist": {"root": str(root / "mnist")},
             "image_folder": {"root": str(root / "images"), "image_size": 8},
             "arrays": {"path": str(root / "f.npz")}}[name]
    return load_dataset(name, seed=0, **where)


KINDS = ["cifar10", "mnist", "image_folder", "arrays"]


@pytest.fixture
def confined(tmp_path, monkeypatch):
    """DM_DATA_DIRS = tmp_path/allowed; the same files are in allowed/ and in outside/."""
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    _write_everything(allowed)
    _write_everything(outside)
    monkeypatch.setenv("DM_DATA_DIRS", str(allowed))
    return allowed, outside


def _refused(name, root, field):
    with pytest.raises(ConfigError, match=f"^{field}: ") as err:
        _load_from(root, name)
    message = str(err.value)
    assert "outside the allowed data directories" in message and "DM_DATA_DIRS" in message
    return message


@pytest.mark.parametrize("name", KINDS)
def test_data_inside_the_allowed_dirs_loads(confined, name):
    allowed, _ = confined
    assert len(_load_from(allowed, name).x_train) > 0


@pytest.mark.parametrize("name", KINDS)
def test_a_root_outside_the_allowed_dirs_is_refused(confined, name):
    _, outside = confined
    field = "dataset.path" if name == "arrays" else "dataset.root"
    assert str(confined[0]) in _refused(name, outside, field)  # names what is allowed


@pytest.mark.parametrize("name", KINDS)
def test_dotdot_escapes_are_refused(confined, name):
    allowed, _ = confined
    _refused(name, allowed / ".." / "outside", "dataset.path" if name == "arrays" else "dataset.root")


@pytest.mark.parametrize("name", KINDS)
def test_a_symlink_pointing_outside_is_refused(confined, name):
    allowed, outside = confined
    link = allowed / "link"
    link.mkdir()
    for entry in ("cifar", "mnist", "images", "f.npz"):  # each one a link to its twin outside
        (link / entry).symlink_to(outside / entry)
    _refused(name, link, "dataset.path" if name == "arrays" else "dataset.root")


@pytest.mark.parametrize("inner", ["a CIFAR batch", "an image", "a class folder"])
def test_a_symlink_inside_an_allowed_root_pointing_outside_is_refused(confined, inner):
    allowed, outside = confined
    name = "cifar10" if inner == "a CIFAR batch" else "image_folder"
    target = {"a CIFAR batch": allowed / "cifar" / "cifar-10-batches-py" / "data_batch_2",
              "an image": allowed / "images" / "train" / "cat" / "0.png",
              "a class folder": allowed / "images" / "test" / "dog"}[inner]
    twin = outside / target.relative_to(allowed)
    if target.is_dir():
        for f in target.iterdir():
            f.unlink()
        target.rmdir()
    else:
        target.unlink()
    target.symlink_to(twin)
    message = _refused(name, allowed, "dataset.root")
    assert str(twin) in message


def test_several_allowed_dirs_and_the_default(tmp_path, monkeypatch):
    first, second = tmp_path / "first", tmp_path / "second"
    _write_everything(second)
    monkeypatch.setenv("DM_DATA_DIRS", os.pathsep.join([str(first), str(second)]))
    assert len(_load_from(second, "arrays").x_train) == 4
    # Unset: ./data of the working directory, resolved where the data is loaded.
    monkeypatch.delenv("DM_DATA_DIRS")
    monkeypatch.chdir(tmp_path)
    _write_everything(tmp_path / "data")
    assert len(load_dataset("arrays", seed=0, path="data/f.npz").x_train) == 4
    assert len(load_dataset("arrays", seed=0, path=str(tmp_path / "data" / "f.npz")).x_train) == 4
    message = _refused("arrays", second, "dataset.path")
    assert str(tmp_path / "data") in message


def test_download_into_a_root_outside_is_refused_before_fetching(confined, monkeypatch):
    import torchvision.datasets.utils as tv_utils

    _, outside = confined
    monkeypatch.setattr(tv_utils, "download_and_extract_archive",
                        lambda *a, **k: pytest.fail("downloaded outside the allowed dirs"))
    with pytest.raises(ConfigError, match="^dataset.root: .*outside the allowed"):
        load_dataset("cifar10", seed=0, root=str(outside / "new"), download=True)
    with pytest.raises(ConfigError, match="^dataset.root: .*outside the allowed"):
        load_dataset("mnist", seed=0, root=str(outside / "new"), download=True)
    assert not (outside / "new").exists()


def test_batch_indices_cover_each_epoch_once_and_are_stateless():
    n, bs = 103, 10
    epoch = torch.cat([batch_indices(n, bs, i, seed=4) for i in range(10)])
    assert len(set(epoch.tolist())) == 100  # one epoch: 10 full batches, no repeats
    assert torch.equal(batch_indices(n, bs, 7, 4), batch_indices(n, bs, 7, 4))
    assert not torch.equal(batch_indices(n, bs, 10, 4), batch_indices(n, bs, 0, 4))


def test_balanced_batches():
    labels = torch.tensor([0] * 90 + [1] * 10)
    idx = balanced_batch_indices(labels, 20, 3, seed=0)
    assert len(idx) == 20 and int((labels[idx] == 1).sum()) == 10
    assert torch.equal(idx, balanced_batch_indices(labels, 20, 3, seed=0))


def test_balanced_batches_of_some_classes_as_the_authors_draw_them():
    labels = torch.arange(10).repeat_interleave(30)  # 10 classes x 30
    batches = [balanced_batch_indices(labels, 20, i, seed=1, classes_per_batch=4) for i in range(6)]
    for idx in batches:
        counts = torch.bincount(labels[idx], minlength=10)
        assert sorted(counts.tolist()) == [0] * 6 + [5] * 4  # 4 classes x 5
        assert len(set(idx.tolist())) == 20  # distinct examples within each class
    assert torch.equal(batches[2], balanced_batch_indices(labels, 20, 2, seed=1, classes_per_batch=4))
    assert len({tuple(sorted(set(labels[i].tolist()))) for i in batches}) > 1  # classes vary
    # A class with fewer members than its share is drawn with replacement; the top-up stays
    # within the chosen classes.
    small = torch.tensor([0, 0] + [1] * 10)
    idx = balanced_batch_indices(small, 9, 0, seed=0, classes_per_batch=2)
    assert len(idx) == 9 and int((small[idx] == 0).sum()) >= 4


def test_augment_batch_crops_and_flips_deterministically():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    a = augment_batch(x, torch.Generator().manual_seed(1), pad=2)
    b = augment_batch(x, torch.Generator().manual_seed(1), pad=2)
    assert a.shape == x.shape and torch.equal(a, b)
    # With no padding, a crop is the identity and only flips remain.
    c = augment_batch(x, torch.Generator().manual_seed(2), pad=0)
    for i in range(2):
        assert torch.equal(c[i], x[i]) or torch.equal(c[i], x[i].flip(2))
