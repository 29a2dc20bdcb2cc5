"""Noise kind ``file``: labels read from tiny files the tests write (.npy, .npz and .pt of named
arrays, as CIFAR-10N ships), every bad file refused with the field it came from, at submit time.

Every file lives under ``tmp_path``, which the ``data_dirs`` fixture makes the allowed data
directory (``DM_DATA_DIRS``).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_app_support import app_db_fixture  # noqa: F401
from typer.testing import CliRunner

from dm_core.config import parse_config
from dm_core.data import DATASETS, check_data_available, load_dataset
from dm_core.registry import ConfigError
from dm_store import Store
from studio.cli import app

N, CLASSES = 40, 4
CLEAN = np.arange(N) % CLASSES
# The file's labels: every fifth example moved to the next class.
MOVED = np.arange(N) % 5 == 0
FILE_LABELS = np.where(MOVED, (CLEAN + 1) % CLASSES, CLEAN)


@pytest.fixture(autouse=True)
def data_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("DM_DATA_DIRS", str(tmp_path))
    return tmp_path


@pytest.fixture
def arrays(tmp_path):
    """An ``arrays`` dataset whose first feature is each training example's index."""
    path = tmp_path / "arrays.npz"
    x = np.stack([np.arange(N, dtype=float), np.random.default_rng(0).normal(size=N)], axis=1)
    np.savez(path, x_train=x, y_train=CLEAN, x_test=np.zeros((8, 2)), y_test=np.arange(8) % CLASSES)
    return str(path)


def load(arrays, val_fraction=0.0, **noise):
    return load_dataset("arrays", seed=0, path=arrays, noise_kind="file", noise_params=noise,
                        val_fraction=val_fraction)


def test_npy_labels_mark_exactly_the_examples_they_change(arrays, tmp_path):
    np.save(tmp_path / "labels.npy", FILE_LABELS)
    b = load(arrays, path=str(tmp_path / "labels.npy"))
    assert np.array_equal(b.y_train.numpy(), FILE_LABELS)
    assert np.array_equal(b.y_train_clean.numpy(), CLEAN)
    assert np.array_equal(b.is_noisy.numpy(), MOVED)
    assert b.actual_noise_rate == MOVED.mean()


def test_file_labels_are_numbered_by_the_whole_training_set(arrays, tmp_path):
    """The validation split is held out by the clean labels and keeps them; each training
    example takes the file's label at its own index in the dataset."""
    np.save(tmp_path / "labels.npy", FILE_LABELS)
    b = load(arrays, val_fraction=0.25, path=str(tmp_path / "labels.npy"))
    n_train = len(b.y_train)
    assert len(b.y_val) == 8 and n_train == 32  # 2 of each class's 10 (round(2.5) is 2)
    # Validation inputs are normalised with the training statistics: the first feature keeps
    # the examples' order across both splits, so its ranks are their indices.
    first = torch.cat([b.x_train[:, 0], b.x_val[:, 0]]).numpy()
    index = np.argsort(np.argsort(first))
    train, val = index[:n_train], index[n_train:]
    assert np.array_equal(b.y_train.numpy(), FILE_LABELS[train])
    assert np.array_equal(b.is_noisy.numpy(), MOVED[train])
    assert np.array_equal(b.y_val.numpy(), CLEAN[val])


def cifar_n_like():
    worse = FILE_LABELS.copy()
    worse[1] = (CLEAN[1] + 2) % CLASSES
    return {"clean_label": CLEAN, "aggre_label": FILE_LABELS, "worse_label": worse}


def test_npz_of_named_arrays(arrays, tmp_path):
    labels = cifar_n_like()
    np.savez(tmp_path / "human.npz", **labels)
    for key in ("aggre_label", "worse_label", "clean_label"):
        b = load(arrays, path=str(tmp_path / "human.npz"), key=key)
        assert np.array_equal(b.y_train.numpy(), labels[key])
        assert np.array_equal(b.is_noisy.numpy(), labels[key] != CLEAN)


def test_pt_dict_of_numpy_arrays_and_tensors(arrays, tmp_path):
    """CIFAR-10N is a torch file of a dict of numpy arrays; tensors are taken as well."""
    labels = cifar_n_like()
    torch.save({"aggre_label": labels["aggre_label"], "worse_label": torch.from_numpy(labels["worse_label"]),
                "clean_label": labels["clean_label"].astype(np.int32)}, tmp_path / "human.pt")
    for key in ("aggre_label", "worse_label", "clean_label"):
        b = load(arrays, path=str(tmp_path / "human.pt"), key=key)
        assert np.array_equal(b.y_train.numpy(), labels[key])
        assert np.array_equal(b.is_noisy.numpy(), labels[key] != CLEAN)


class Boom:
    def __reduce__(self):
        return (exec, ("raise SystemExit('unpickled!')",))


def _write(tmp_path, name):
    """A bad labels file ``name``; returns (path, key to ask for)."""
    path = tmp_path / name.split(":")[0]
    kind = name.split(":")[1]
    if kind == "short":
        np.save(path, FILE_LABELS[:-1])
    elif kind == "range":
        np.save(path, np.where(MOVED, CLASSES, CLEAN))
    elif kind == "negative":
        np.save(path, np.where(MOVED, -2, CLEAN))  # -1 leaves an example out
    elif kind == "floats":
        np.save(path, FILE_LABELS.astype(float))
    elif kind == "2d":
        np.save(path, FILE_LABELS.reshape(-1, 1))
    elif kind == "pickled":
        payload = np.empty(1, dtype=object)
        payload[0] = Boom()
        np.save(path, payload, allow_pickle=True)
    elif kind == "npz":
        np.savez(path, **cifar_n_like())
    elif kind == "list":
        torch.save([FILE_LABELS], path)
    elif kind == "tensor":
        torch.save(torch.from_numpy(FILE_LABELS), path)
    elif kind == "object":
        torch.save({"aggre_label": Boom()}, path)
    elif kind == "nested":
        torch.save({"aggre_label": FILE_LABELS, "meta": {"source": "annotators"}}, path)
    elif kind == "garbage":
        path.write_bytes(b"garbage")
    elif kind == "text":
        path.write_text("0\n1\n")
    return path


# (file:content, key, field, what the message must say)
BAD_FILES = {
    "missing": ("absent.npy:none", None, "dataset.noise.path", "does not exist"),
    "wrong length": ("labels.npy:short", None, "dataset.noise.path", f"holds 39 labels; arrays has {N} training"),
    "out of range": ("labels.npy:range", None, "dataset.noise.path", f"must be in [0, {CLASSES - 1}]"),
    "negative": ("labels.npy:negative", None, "dataset.noise.path", "[-2, 3]"),
    "float labels": ("labels.npy:floats", None, "dataset.noise.path", "integer class index"),
    "2-d labels": ("labels.npy:2d", None, "dataset.noise.path", f"shape ({N},)"),
    "pickled npy": ("labels.npy:pickled", None, "dataset.noise.path", "object arrays"),
    "key for npy": ("labels.npy:short", "aggre_label", "dataset.noise.key", "leave dataset.noise.key empty"),
    "unknown key": ("human.npz:npz", "noisy_label", "dataset.noise.key",
                    "'noisy_label' is not in"),
    "no key": ("human.npz:npz", None, "dataset.noise.key", "pick one with dataset.noise.key"),
    "pt list": ("human.pt:list", None, "dataset.noise.path", "holds a list; a .pt labels file must hold a dict"),
    "pt tensor": ("human.pt:tensor", None, "dataset.noise.path", "holds a Tensor"),
    "pt object": ("human.pt:object", "aggre_label", "dataset.noise.path", "pickled Python objects"),
    "pt nested": ("human.pt:nested", "aggre_label", "dataset.noise.path", "'meta' holds a dict"),
    "pt garbage": ("human.pt:garbage", "aggre_label", "dataset.noise.path", "its pickle was refused"),
    "unknown type": ("labels.txt:text", None, "dataset.noise.path", "must end in .npy, .npz, .pt"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_label_files_name_their_field(arrays, tmp_path, case):
    name, key, field, says = BAD_FILES[case]
    path = _write(tmp_path, name)
    noise = {"path": str(path), **({"key": key} if key else {})}
    with pytest.raises(ConfigError) as err:
        load(arrays, **noise)
    message = str(err.value)
    assert message.startswith(field + ": "), message
    assert says in message, message
    # The same refusal where runs are submitted, before anything is queued.
    cfg = parse_config({"dataset": {"name": "arrays", "path": arrays, "noise": {"kind": "file", **noise}}})
    with pytest.raises(ConfigError) as at_submit:
        check_data_available(cfg.dataset.model_dump(mode="json"))
    assert str(at_submit.value) == message


def test_a_key_missing_from_the_file_lists_the_keys_it_holds(arrays, tmp_path):
    torch.save(cifar_n_like(), tmp_path / "human.pt")
    with pytest.raises(ConfigError) as err:
        load(arrays, path=str(tmp_path / "human.pt"), key="random_label1")
    assert err.value.errors == [("dataset.noise.key", f"'random_label1' is not in {str(tmp_path / 'human.pt')!r}; "
                                                      "it holds: clean_label, aggre_label, worse_label")]


def test_a_pickled_object_in_a_label_file_is_never_run(arrays, tmp_path):
    for name in ("evil.pt:object", "evil.npy:pickled"):
        path = _write(tmp_path, name)
        assert b"unpickled" in path.read_bytes()  # the payload really is in the file
        with pytest.raises(ConfigError, match="dataset.noise.path"):
            load(arrays, path=str(path), key="aggre_label" if path.suffix == ".pt" else None)


def test_a_label_file_outside_the_data_dirs_is_refused(arrays, tmp_path, monkeypatch):
    outside = tmp_path / "outside"
    outside.mkdir()
    np.save(outside / "labels.npy", FILE_LABELS)
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "arrays.npz").write_bytes(open(arrays, "rb").read())
    monkeypatch.setenv("DM_DATA_DIRS", str(allowed))
    for path in (outside / "labels.npy", allowed / ".." / "outside" / "labels.npy"):
        with pytest.raises(ConfigError, match=r"^dataset\.noise\.path: .*outside the allowed data directories"):
            load(str(allowed / "arrays.npz"), path=str(path))
    (allowed / "link.npy").symlink_to(outside / "labels.npy")
    with pytest.raises(ConfigError, match=r"^dataset\.noise\.path: .*outside the allowed data directories"):
        load(str(allowed / "arrays.npz"), path=str(allowed / "link.npy"))


def test_a_big_pt_is_refused_from_its_size(arrays, tmp_path, monkeypatch):
    from dm_core import noise

    torch.save(cifar_n_like(), tmp_path / "human.pt")
    monkeypatch.setattr(noise, "MAX_LABEL_FILE_BYTES", 100)
    with pytest.raises(ConfigError, match=r"^dataset\.noise\.path: .* bytes; a labels file may be at most 100"):
        load(arrays, path=str(tmp_path / "human.pt"), key="aggre_label")


def test_a_pt_that_inflates_beyond_the_limit_is_refused_from_its_zip_directory(arrays, tmp_path, monkeypatch):
    """A small zip whose member inflates far beyond the limit is refused before torch reads it."""
    import zipfile

    from dm_core import noise

    monkeypatch.setattr(noise, "MAX_LABEL_FILE_BYTES", 100_000)
    with zipfile.ZipFile(tmp_path / "bomb.pt", "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("archive/data/0", b"\0" * 1_000_000)
    assert (tmp_path / "bomb.pt").stat().st_size < 100_000
    with pytest.raises(ConfigError, match=r"inflates to\) 1,000,000 bytes; a labels file may be at most 100,000"):
        load(arrays, path=str(tmp_path / "bomb.pt"), key="aggre_label")


def _header_only_npy(shape: tuple[int, ...], dtype: str) -> bytes:
    """An .npy member that declares ``shape`` of ``dtype`` and holds only zeros after its
    header: however large it claims to be, it deflates to almost nothing (a zip bomb)."""
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": np.dtype(dtype).str,
                                               "fortran_order": False, "shape": shape})
    return buf.getvalue() + b"\0" * 4096


def test_an_npz_declaring_gibibytes_of_labels_is_refused_from_its_header(arrays, tmp_path):
    """The reported bomb: a tiny .npz whose labels array declares 2 GiB of float64 (2**28
    values, under the values cap) is refused from its .npy header, naming the file, the array
    and the limit in bytes -- never inflated, then refused by the label check."""
    import zipfile

    from dm_core.noise import MAX_LABEL_FILE_BYTES

    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("worse_label.npy", _header_only_npy((1 << 28,), "<f8"))
    assert path.stat().st_size < 10_000
    with pytest.raises(ConfigError) as err:
        load(arrays, path=str(path), key="worse_label")
    assert str(err.value) == (
        f"dataset.noise.path: {str(path)!r}: array 'worse_label' declares (268435456,) float64, "
        f"2,147,483,648 bytes once inflated; a labels file may hold at most "
        f"{MAX_LABEL_FILE_BYTES:,} bytes")


@pytest.mark.parametrize("suffix", [".npz", ".npy"])
def test_label_arrays_are_bounded_in_bytes_before_they_are_inflated(arrays, tmp_path, monkeypatch,
                                                                    suffix):
    """The limit counts bytes (shape × itemsize from the .npy header), not values: 20,000
    float64 zeros (160,000 bytes, 20,000 values) pass a 100,000-values cap but not a
    100,000-bytes limit, and are refused without a byte of them being read."""
    from dm_core import data_dirs, noise

    monkeypatch.setattr(noise, "MAX_LABEL_FILE_BYTES", 100_000)
    path = tmp_path / f"zeros{suffix}"
    if suffix == ".npz":
        np.savez_compressed(path, worse_label=np.zeros(20_000))
        assert path.stat().st_size < 5_000  # highly compressible: the zip is tiny
        key, named = "worse_label", "array 'worse_label'"
    else:
        np.save(path, np.zeros(20_000))
        key, named = None, "its array"

    real_read, shapes_read = data_dirs.np.lib.format.read_array, []

    def read_array(*args, **kwargs):
        array = real_read(*args, **kwargs)
        shapes_read.append(array.shape)
        return array

    monkeypatch.setattr(data_dirs.np.lib.format, "read_array", read_array)
    with pytest.raises(ConfigError) as err:
        load(arrays, path=str(path), key=key)
    assert (20_000,) not in shapes_read  # refused from its header: never inflated
    assert str(err.value) == (f"dataset.noise.path: {str(path)!r}: {named} declares (20000,) "
                              "float64, 160,000 bytes once inflated; a labels file may hold at "
                              "most 100,000 bytes")


def test_an_arrays_y_train_read_at_submit_is_bounded_like_labels(tmp_path):
    """At submit, a labels file is checked against the arrays dataset's y_train, read alone:
    a y_train declaring 2 GiB of float64 is refused from its header, as a labels file is."""
    import zipfile

    from dm_core.data import check_data_available
    from dm_core.noise import MAX_LABEL_FILE_BYTES

    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("y_train.npy", _header_only_npy((1 << 28,), "<f8"))
    np.save(tmp_path / "labels.npy", FILE_LABELS)
    with pytest.raises(ConfigError) as err:
        check_data_available({"name": "arrays", "path": str(path),
                              "noise": {"kind": "file", "path": str(tmp_path / "labels.npy")}})
    assert str(err.value) == (
        f"dataset.path: {str(path)!r}: array 'y_train' declares (268435456,) float64, "
        f"2,147,483,648 bytes once inflated; a labels array may hold at most "
        f"{MAX_LABEL_FILE_BYTES:,} bytes")


@pytest.mark.parametrize(("noise", "field", "says"), [
    ({"kind": "file"}, "dataset.noise.path", "needs the labels file"),
    ({"kind": "file", "path": "x.npy", "rate": 0.2}, "dataset.noise.rate", "takes no rate"),
    ({"kind": "symmetric", "rate": 0.2, "path": "x.npy"}, "dataset.noise.path", "symmetric takes: rate"),
    ({"kind": "pairflip", "rate": 0.2, "key": "aggre_label"}, "dataset.noise.key", "pairflip takes: rate"),
    ({"kind": "instance", "rate": 0.2, "path": "x.npy"}, "dataset.noise.path", "instance takes: rate"),
])
def test_settings_the_kind_would_ignore_or_needs(noise, field, says):
    with pytest.raises(ConfigError) as err:
        parse_config({"dataset": {"name": "digits", "noise": noise}})
    assert str(err.value).startswith(field + ":") and says in str(err.value)


# ---------------------------------------------------------------- sizes known at submit time

def test_registered_training_sizes_are_the_loaded_ones():
    for name in ("digits", "digits_binary"):
        assert DATASETS.get(name).extra["num_train"] == len(load_dataset(name, seed=0).y_train)


def test_fixed_size_datasets_are_checked_without_their_files(tmp_path):
    """CIFAR-10's 50,000 training examples are known without reading its batches: a file of
    the wrong length is refused whether or not the data is there yet."""
    np.save(tmp_path / "labels.npy", np.zeros(49_999, dtype=np.int64))
    cfg = parse_config({"dataset": {"name": "cifar10", "root": str(tmp_path / "cifar"), "download": True,
                                    "noise": {"kind": "file", "path": str(tmp_path / "labels.npy")}}})
    with pytest.raises(ConfigError, match=r"^dataset\.noise\.path: .* 49,999 labels; cifar10 has 50,000"):
        check_data_available(cfg.dataset.model_dump(mode="json"))
    np.save(tmp_path / "labels.npy", np.full(50_000, 10, dtype=np.int64))
    with pytest.raises(ConfigError, match=r"cifar10 has 10 classes, so labels must be in \[0, 9\]"):
        check_data_available(cfg.dataset.model_dump(mode="json"))
    np.save(tmp_path / "labels.npy", np.full(50_000, 9, dtype=np.int64))
    check_data_available(cfg.dataset.model_dump(mode="json"))


def test_an_image_folder_is_counted_from_its_files(tmp_path):
    from PIL import Image

    for split in ("train", "test"):
        for cls in ("cat", "dog", "eel"):
            (tmp_path / "images" / split / cls).mkdir(parents=True)
            for i in range(2):
                Image.new("RGB", (4, 4)).save(tmp_path / "images" / split / cls / f"{i}.png")
    np.save(tmp_path / "labels.npy", np.array([0, 0, 1, 1, 2, 0]))
    dataset = {"name": "image_folder", "root": str(tmp_path / "images"), "image_size": 4,
               "noise": {"kind": "file", "path": str(tmp_path / "labels.npy")}}
    check_data_available(parse_config({"dataset": dataset}).dataset.model_dump(mode="json"))
    b = load_dataset("image_folder", seed=0, root=dataset["root"], image_size=4, noise_kind="file",
                     noise_params={"path": dataset["noise"]["path"]})
    assert b.is_noisy.tolist() == [False, False, False, False, False, True]
    np.save(tmp_path / "labels.npy", np.array([0, 0, 1, 1, 3, 0]))
    with pytest.raises(ConfigError, match=r"image_folder has 3 classes, so labels must be in \[0, 2\]"):
        check_data_available(parse_config({"dataset": dataset}).dataset.model_dump(mode="json"))


def test_the_launch_form_refuses_a_bad_label_file_under_its_field(arrays, tmp_path):
    from app.launch_checks import refusals

    np.save(tmp_path / "labels.npy", FILE_LABELS[:10])
    cfg = parse_config({"dataset": {"name": "arrays", "path": arrays,
                                    "noise": {"kind": "file", "path": str(tmp_path / "labels.npy")}}})
    [(field, message)] = refusals([cfg])
    assert field == "dataset.noise.path" and "holds 10 labels" in message


def test_dm_submit_refuses_a_bad_label_file_and_queues_nothing(tmp_path):
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"name": "human", "iterations": 10, "dataset": {"name": "digits"}}))
    labels = tmp_path / "labels.npy"
    np.save(labels, np.zeros(1296, dtype=np.int64))  # digits has 1,297 training examples
    db = tmp_path / "dm.sqlite"
    args = ["submit", str(config), "--set", "dataset.noise.kind=file", "--set",
            f"dataset.noise.path={labels}", "--db", f"sqlite:///{db}"]
    runner = CliRunner()
    result = runner.invoke(app, args, env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert result.exit_code == 2, result.output
    assert "dataset.noise.path" in result.output and "1,296 labels; digits has 1,297" in result.output
    assert not db.exists()
    np.save(labels, np.zeros(1297, dtype=np.int64))
    result = runner.invoke(app, args, env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    [run] = Store(f"sqlite:///{db}").list_runs()
    assert run.config["dataset"]["noise"] == {**run.config["dataset"]["noise"], "kind": "file",
                                               "path": str(labels), "key": None}


def test_the_launch_form_offers_both_kinds_and_queues_only_a_good_file(app_db, tmp_path):
    from streamlit.testing.v1 import AppTest
    from test_app_support import APP, TIMEOUT, errors_under

    at = AppTest.from_file(APP.format("launch"), default_timeout=TIMEOUT).run()
    at.selectbox(key="L.dataset.noise.kind").set_value("instance").run()
    assert at.number_input(key="L.dataset.noise.instance.rate").value == 0.4  # proposed, not 0
    at.selectbox(key="L.dataset.noise.kind").set_value("file").run()
    assert errors_under(at, "L.dataset.noise.file.path")[0].startswith("dataset.noise.path: kind 'file' needs")
    labels = tmp_path / "labels.npy"
    np.save(labels, np.zeros(5, dtype=np.int64))
    at.text_input(key="L.dataset.noise.file.path").input(str(labels)).run()
    [message] = errors_under(at, "L.dataset.noise.file.path")
    assert "holds 5 labels; digits has 1,297 training examples" in message
    at.button(key="L.queue").click().run()
    assert Store(app_db).list_runs() == []
    np.save(labels, np.zeros(1297, dtype=np.int64))
    at.run()
    assert not errors_under(at, "L.dataset.noise.file.path")
    at.button(key="L.queue").click().run()
    [run] = Store(app_db).list_runs()
    assert (run.config["dataset"]["noise"]["kind"], run.config["dataset"]["noise"]["path"]) == ("file", str(labels))


def test_minus_one_in_a_labels_file_leaves_the_example_out(arrays, tmp_path):
    """``dm examples --drop-top`` writes -1 for the examples a retrain should not see."""
    dropped = np.arange(N) % 7 == 3
    np.save(tmp_path / "labels.npy", np.where(dropped, -1, FILE_LABELS))
    b = load(arrays, path=str(tmp_path / "labels.npy"))
    kept = ~dropped
    assert len(b.x_train) == kept.sum()
    assert np.array_equal(b.y_train.numpy(), FILE_LABELS[kept])
    assert np.array_equal(b.is_noisy.numpy(), MOVED[kept])
    np.save(tmp_path / "labels.npy", np.full(N, -1))
    with pytest.raises(ConfigError, match="leaves every example out"):
        load(arrays, path=str(tmp_path / "labels.npy"))
