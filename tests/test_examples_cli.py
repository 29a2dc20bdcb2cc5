"""``dm examples`` and ``dm export --what examples`` on a store holding a tiny real digits run
(tests/example_run_support.py): rankings and AUROCs recomputed here from the stored arrays,
the export's rows, the labels file a retrain reads, and the errors (exit 2)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from example_run_support import tiny_config, trained_run
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from dm_core.config import parse_config, read_config_file
from dm_core.data import load_dataset
from dm_core.example_stats import STATISTICS, suspicion
from dm_store import Store
from studio.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def run_db(tmp_path_factory):
    path = tmp_path_factory.mktemp("examples")
    url = f"sqlite:///{path / 'dm.sqlite'}"
    store = Store(url, path / "artifacts")
    run_id = trained_run(store, tiny_config())
    [empty] = store.submit([tiny_config(name="queued")]).run_ids
    store.dispose()
    return url, run_id, empty


def dm(url, *args):
    return runner.invoke(app, [*map(str, args), "--db", url])


def stored(url, run_id, iteration=None):
    store = Store(url)
    at, snapshot = store.examples(run_id, iteration)
    clean, noisy, corrupted = store.labels(run_id)
    store.dispose()
    return at, snapshot, clean, noisy, corrupted


@pytest.mark.parametrize("by", ["confidence", "aum", "forgetting", "first_learned", "label_quality"])
def test_the_suspects_are_ranked_as_the_stored_arrays_say(run_db, by):
    url, run_id, _ = run_db
    result = dm(url, "examples", run_id, "--by", by, "--top", 15, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    at, snapshot, clean, noisy, corrupted = stored(url, run_id)
    assert report["iteration"] == at == 40
    values = snapshot[by].astype(np.float64)
    score = -values if by == "label_quality" else suspicion(by, snapshot[by])
    expected = np.argsort(-score, kind="stable")[:15]
    rows = report["suspects"]
    assert [r["example"] for r in rows] == expected.tolist()
    for r in rows:
        i = r["example"]
        assert (r["label"], r["original_label"], r["corrupted"]) == (noisy[i], clean[i], bool(corrupted[i]))
        assert set(STATISTICS) <= set(r)
        assert r["confidence"] == pytest.approx(float(snapshot["confidence"][i]))


def test_the_json_auroc_is_scikit_learns_on_the_stored_arrays(run_db):
    url, run_id, _ = run_db
    report = json.loads(dm(url, "examples", run_id, "--json", "--iteration", 25).output)
    at, snapshot, _, _, corrupted = stored(url, run_id, 25)
    assert report["iteration"] == at == 20  # the snapshot at or before the asked iteration
    assert set(report["auroc"]) == set(report["precision_at_k"]) == set(snapshot)
    for name, values in snapshot.items():
        score = -values.astype(np.float64) if name == "label_quality" else suspicion(name, values)
        assert report["auroc"][name] == pytest.approx(roc_auc_score(corrupted, score))
    k = int(corrupted.sum())
    least = np.argsort(snapshot["confidence"].astype(np.float64), kind="stable")[:k]
    assert report["precision_at_k"]["confidence"] == pytest.approx(corrupted[least].mean())
    assert report["auroc"]["confidence"] > 0.5  # the run fitted its clean labels first


def test_the_table_lists_the_suspects_and_the_detection(run_db):
    url, run_id, _ = run_db
    result = dm(url, "examples", run_id, "--top", 3)
    assert result.exit_code == 0, result.output
    _, snapshot, *_ = stored(url, run_id)
    first = int(np.argsort(snapshot["confidence"].astype(np.float64), kind="stable")[0])
    lines = result.output.splitlines()
    assert "3 most suspect by confidence" in lines[0]
    assert lines[2].split()[:2] == ["1", str(first)]
    assert any(line.split()[:1] == ["label_quality"] for line in lines)


def test_export_writes_one_row_per_training_example(run_db, tmp_path, monkeypatch):
    url, run_id, _ = run_db
    monkeypatch.setenv("DM_EXPORT_DIR", str(tmp_path))
    result = dm(url, "export", run_id, "--what", "examples", "-o", "ex.csv")
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(tmp_path / "ex.csv")
    _, snapshot, clean, noisy, corrupted = stored(url, run_id)
    assert list(frame.columns) == ["example", "label", "original_label", "corrupted", *snapshot]
    assert len(frame) == len(noisy) == 1297
    assert frame["example"].tolist() == list(range(len(noisy)))
    assert np.array_equal(frame["label"], noisy) and np.array_equal(frame["original_label"], clean)
    assert np.array_equal(frame["corrupted"], corrupted)
    np.testing.assert_array_equal(frame["forgetting"], snapshot["forgetting"])


def test_a_labels_file_retrains_without_the_top_suspects(run_db, tmp_path, monkeypatch):
    url, run_id, _ = run_db
    monkeypatch.setenv("DM_DATA_DIRS", str(tmp_path))
    target = tmp_path / "clean" / "labels.npy"
    result = dm(url, "examples", run_id, "--by", "aum", "--write-labels", target, "--drop-top", 100)
    assert result.exit_code == 0, result.output
    _, snapshot, clean, noisy, corrupted = stored(url, run_id)
    dropped = np.argsort(-suspicion("aum", snapshot["aum"]), kind="stable")[:100]
    labels = np.load(target)
    assert np.array_equal(np.load(tmp_path / "clean" / "labels.dropped.npy"), np.sort(dropped))
    assert np.array_equal(labels[dropped], np.full(100, -1))
    keep = np.setdiff1d(np.arange(len(noisy)), dropped)
    assert np.array_equal(labels[keep], noisy[keep])
    config_path = tmp_path / "clean" / "labels.config.json"
    assert f"dm submit {config_path}" in result.output
    config = parse_config(read_config_file(config_path))
    assert config.dataset.noise.kind == "file" and config.dataset.noise.path == str(target)
    bundle = load_dataset("digits", seed=config.seed, noise_kind="file",
                          noise_params={"path": str(target)})
    assert len(bundle.y_train) == len(noisy) - 100
    assert np.array_equal(bundle.is_noisy.numpy(), corrupted[keep])  # still knows its corrupted labels


@pytest.mark.parametrize("args, says", [
    (("examples", 999), "999"),
    (("examples", "{empty}"), "no per-example snapshot yet"),
    (("examples", "{run}", "--by", "loss"), "choose one of: confidence, variability, aum"),
    (("examples", "{run}", "--iteration", 5), "snapshots at: 10, 20, 30, 40"),
    (("examples", "{run}", "--write-labels", "/elsewhere/labels.npy", "--drop-top", 5),
     "outside the allowed data directories"),
    (("examples", "{run}", "--drop-top", 5), "--write-labels and --drop-top go together"),
    (("export", "{empty}", "--what", "examples"), "no per-example snapshot yet"),
])
def test_errors_say_what_is_wrong_and_exit_2(run_db, args, says):
    url, run_id, empty = run_db
    result = dm(url, *(str(a).format(run=run_id, empty=empty) for a in args))
    assert result.exit_code == 2, result.output
    assert says in result.output
    assert "Traceback" not in result.output


def test_labels_for_a_run_that_itself_left_examples_out_are_placed_by_its_file(tmp_path, monkeypatch):
    from studio.suspects import ExamplesUnavailable, RunExamples, retrain_labels

    monkeypatch.setenv("DM_DATA_DIRS", str(tmp_path))
    previous = np.array([3, -1, 4, 1, -1, 5])  # the run trained on examples 0, 2, 3, 5
    np.save(tmp_path / "previous.npy", previous)
    run = RunExamples(1, 10, {}, label=np.array([3, 4, 1, 5]), original_label=np.array([3, 4, 2, 5]),
                      corrupted=np.array([False, False, True, False]))
    config = {"dataset": {"noise": {"kind": "file", "path": str(tmp_path / "previous.npy")}}}
    assert retrain_labels(run, np.array([2]), config).tolist() == [3, -1, 4, -1, -1, 5]
    with pytest.raises(ExamplesUnavailable, match="validation split"):
        retrain_labels(run, np.array([2]), {"dataset": {"val_fraction": 0.2, "noise": {}}})
    with pytest.raises(ExamplesUnavailable, match="class imbalance"):
        retrain_labels(run, np.array([2]), {"dataset": {"noise": {"kind": "imbalance"}}})
