"""Workers beyond one machine (issue 25, item 10): ``dm slurm`` and the Kubernetes manifest.

- ``dm slurm --cluster local``: submitit's local executor really starts a ``dm worker`` job
  against a test database (SQLite and PostgreSQL), which trains a queued tiny run to success.
- ``dm slurm`` on Slurm, with ``sbatch`` and ``srun`` replaced by scripts that record what
  they are given: one array of one-GPU workers, the options asked for, the database URL in
  the submission's environment and in no file.
- ``deploy/kubernetes/worker.yaml``: parsed; the image is Compose's, the arguments parse as
  ``dm worker``'s own, and every environment variable is one the code reads, the URL from a
  Secret.
"""

from __future__ import annotations

import os
import pickle
import stat
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from dm_core.config import parse_config
from dm_core.data_dirs import DATA_DIRS_ENV
from dm_store import RunStatus, Store
from dm_store.artifacts import ARTIFACTS_ENV
from dm_store.database import URL_ENV, URL_FILE_ENV
from dm_store.testing import fresh_database
from studio.cli import app
from studio.slurm import WorkerJob

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "deploy" / "kubernetes" / "worker.yaml"
runner = CliRunner()

TINY = {"name": "tiny", "seed": 5,
        "dataset": {"name": "digits", "noise": {"kind": "symmetric", "rate": 0.4}},
        "model": {"name": "mlp", "hidden": [16]}, "loss": {"name": "dm", "lam": 1.0, "beta": 8.0},
        "iterations": 20, "eval_every": 10, "batch_size": 32, "histogram_bins": 8,
        "device": "cpu"}


@pytest.fixture
def no_url_in_environment(monkeypatch):
    """The URL reaches the workers only as ``--db`` says: none inherited from the shell."""
    monkeypatch.delenv(URL_ENV, raising=False)
    monkeypatch.delenv(URL_FILE_ENV, raising=False)


# ---------------------------------------------------------------- submitit's local executor

@pytest.mark.slow
def test_a_worker_started_through_submitits_local_executor_trains_a_queued_run(
        db_url, tmp_path, no_url_in_environment):
    store = Store(db_url, tmp_path / "artifacts")
    run_id = store.submit([parse_config(TINY)]).run_ids[0]
    logs = tmp_path / "logs"
    result = runner.invoke(app, ["slurm", "--cluster", "local", "--array", "1",
                                 "--gpus-per-worker", "0", "--logs", str(logs),
                                 "--artifacts", str(tmp_path / "artifacts"), "--db", db_url])
    assert result.exit_code == 0, result.output
    assert "all 1 worker(s) finished" in result.output
    info = store.get_run(run_id)
    assert info.status == RunStatus.SUCCEEDED, info.error
    assert store.scalars(run_id)["iteration"].tolist() == list(range(1, 21))
    assert len(store.evals(run_id)) == 2  # iterations 10 and 20
    [job_dir] = [p for p in logs.iterdir() if any(p.glob("*_log.err"))]
    log = next(job_dir.glob("*_log.err")).read_text()
    assert f"run {run_id}: succeeded" in log and "queue empty; exiting" in log
    # The URL went to the job through its environment only, and the shell's is untouched.
    assert all(db_url.encode() not in p.read_bytes() for p in job_dir.glob("*.pkl"))
    assert URL_ENV not in os.environ
    store.dispose()


# ---------------------------------------------------------------- Slurm, with sbatch recorded

FAKE_SBATCH = """#!/bin/sh
# Records what `sbatch FILE` was given, as a cluster would receive it.
for last; do :; done
cp "$last" "$DM_TEST_RECORD/job.sh"
printf '%s' "$DM_DATABASE_URL" > "$DM_TEST_RECORD/url"
echo "Submitted batch job 4242"
"""


def _fake_slurm(directory: Path) -> Path:
    directory.mkdir()
    for name, text in (("sbatch", FAKE_SBATCH), ("srun", "#!/bin/sh\nexit 1\n")):
        path = directory / name
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return directory


@pytest.fixture
def postgres_db(postgres_url):
    with fresh_database(postgres_url) as url:
        Store(url).dispose()  # the schema, as a dashboard or `dm db upgrade` would have made it
        yield url


@pytest.mark.postgres
def test_dm_slurm_submits_one_array_of_one_gpu_workers(postgres_db, tmp_path, monkeypatch,
                                                       no_url_in_environment):
    record = tmp_path / "record"
    record.mkdir()
    monkeypatch.setenv("PATH", f"{_fake_slurm(tmp_path / 'bin')}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("DM_TEST_RECORD", str(record))
    logs = tmp_path / "logs"
    result = runner.invoke(app, ["slurm", "--array", "4", "--gpus-per-worker", "1",
                                 "--partition", "gpu", "--time", "240", "--cpus-per-worker", "6",
                                 "--mem-gb", "32", "--sbatch", "qos=high", "--setup",
                                 "module load cuda", "--logs", str(logs),
                                 "--artifacts", str(tmp_path / "shared"), "--db", postgres_db])
    assert result.exit_code == 0, result.output
    assert "submitted 4 worker(s) as Slurm job array 4242" in result.output
    script = (record / "job.sh").read_text()
    sbatch = {line.split()[1] for line in script.splitlines() if line.startswith("#SBATCH ")}
    assert {"--array=0-3%4", "--gpus-per-node=1", "--partition=gpu", "--time=240",
            "--cpus-per-task=6", "--mem=32GB", "--qos=high", "--nodes=1",
            "--ntasks-per-node=1", "--signal=USR2@90"} <= sbatch
    assert "module load cuda" in script
    # Each task: `dm worker` on its GPU, burst mode, checkpoints on the shared folder.
    [pickled] = list(logs.rglob("*_submitted.pkl"))[:1]
    job = pickle.loads(pickled.read_bytes()).function
    assert isinstance(job, WorkerJob)
    assert job.args == ("--device", "cuda", "--poll", "1.0", "--stale-after", "30.0",
                        "--max-outage", "60.0", "--artifacts", str((tmp_path / "shared").resolve()),
                        "--exit-when-idle")
    # The URL reached sbatch in its environment, which Slurm hands to the job; no file has it.
    assert (record / "url").read_text() == postgres_db
    assert postgres_db not in script
    assert all(postgres_db.encode() not in p.read_bytes() for p in logs.rglob("*") if p.is_file())


def test_dm_slurm_refuses_sqlite_for_a_cluster_and_says_what_is_allowed(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", f"{_fake_slurm(tmp_path / 'bin')}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("DM_TEST_RECORD", str(tmp_path))
    db = f"sqlite:///{tmp_path / 'dm.sqlite'}"
    Store(db).dispose()
    base = ["slurm", "--array", "2", "--logs", str(tmp_path / "logs"), "--db", db]
    result = runner.invoke(app, base)
    assert result.exit_code == 2
    assert "--db: SQLite serves one machine" in result.output and "postgresql" in result.output
    result = runner.invoke(app, [*base, "--cluster", "local", "--gpus-per-worker", "2"])
    assert result.exit_code == 2
    assert "--gpus-per-worker 2: allowed: 0 (a CPU worker) or 1" in result.output
    result = runner.invoke(app, [*base, "--cluster", "local", "--sbatch", "partition=debug"])
    assert result.exit_code == 2 and "dm slurm sets partition itself (--partition)" in result.output
    assert not (tmp_path / "job.sh").exists()  # nothing was submitted


def test_without_slurm_dm_slurm_says_so(tmp_path, monkeypatch, postgres_db):
    monkeypatch.setenv("PATH", str(tmp_path / "no-slurm-here"))
    result = runner.invoke(app, ["slurm", "--array", "1", "--logs", str(tmp_path / "logs"),
                                 "--db", postgres_db])
    assert result.exit_code == 2
    assert "--cluster slurm: no Slurm here" in result.output and "--cluster local" in result.output


# ---------------------------------------------------------------- the Kubernetes manifest

def _manifest() -> dict[str, dict]:
    documents = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]
    return {f"{d['kind']}/{d['metadata']['name']}": d for d in documents}


def test_the_kubernetes_worker_runs_the_compose_image_as_dm_worker_on_the_secret_url():
    objects = _manifest()
    deployment = objects["Deployment/dm-worker"]
    pod = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= \
        deployment["spec"]["template"]["metadata"]["labels"].items()
    [container] = pod["containers"]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert container["image"] == compose["services"]["worker"]["image"]
    # The image's entrypoint is `dm` (Dockerfile), so the arguments are a dm command line,
    # and they parse as `dm worker`'s own options.
    assert '\nENTRYPOINT ["dm"]\n' in (ROOT / "Dockerfile").read_text()
    command, *args = container["args"]
    assert command == "worker" and "command" not in container
    worker_cli = typer.main.get_command(app).commands["worker"]
    worker_cli.make_context("worker", list(args))  # raises on an unknown or invalid option
    # Every variable is one the code reads; the URL comes from a Secret, never inline.
    env = {e["name"]: e for e in container["env"]}
    assert set(env) == {URL_ENV, ARTIFACTS_ENV, DATA_DIRS_ENV}
    assert env[URL_ENV]["valueFrom"]["secretKeyRef"] == {"name": "dm-database", "key": "url"}
    assert "value" not in env[URL_ENV]
    # Checkpoints and datasets are the volumes the variables name: checkpoints on the shared
    # claim, data read-only where DM_DATA_DIRS allows it.
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    artifacts = volumes[mounts[env[ARTIFACTS_ENV]["value"]]["name"]]
    claim = objects[f"PersistentVolumeClaim/{artifacts['persistentVolumeClaim']['claimName']}"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]  # every worker resumes any run
    assert mounts[env[DATA_DIRS_ENV]["value"]]["readOnly"] is True
    # The warm stop's time (checkpoint and re-queue on SIGTERM) as Compose gives it.
    assert pod["terminationGracePeriodSeconds"] == 60
    assert compose["services"]["worker"]["stop_grace_period"] == "60s"
    assert pod["securityContext"]["runAsUser"] == 10001  # the image's user `dm`
    assert "--uid 10001" in (ROOT / "Dockerfile").read_text()


def test_the_readme_shows_the_cluster_commands_beside_compose():
    readme = (ROOT / "README.md").read_text()
    compose = readme.index("docker compose up -d")
    assert compose < readme.index("dm slurm --array") and compose < readme.index(
        "kubectl apply -f deploy/kubernetes/worker.yaml")
