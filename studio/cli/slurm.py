"""``dm slurm``: workers on a Slurm cluster, as one job array (``studio.slurm``).

    dm slurm --array 8 --gpus-per-worker 1 --partition gpu --time 240
    dm slurm --array 2 --gpus-per-worker 0 --cluster local      # a rehearsal on this machine

Run it where ``sbatch`` works (a login node), with the database URL in ``DM_DATABASE_URL``
(or ``DM_DATABASE_URL_FILE``, or ``--db``) and ``--artifacts`` on a disk every node shares.
"""

from __future__ import annotations

import enum
from pathlib import Path

import typer

from studio.cli._app import app
from studio.cli.exits import fail, user_errors
from studio.cli.store_access import db_option, open_store

DEFAULT_LOGS = Path("var/slurm")
MAX_ARRAY = 10_000  # Slurm's own MaxArraySize defaults to 1001; a cluster may allow more


class Cluster(enum.StrEnum):
    SLURM = "slurm"
    LOCAL = "local"


@app.command("slurm")
def slurm(
    array: int = typer.Option(..., "--array", min=1, max=MAX_ARRAY,
                              help="How many workers: the size of the job array."),
    gpus_per_worker: int = typer.Option(1, "--gpus-per-worker",
                                        help="GPUs of each worker: 1, or 0 for CPU workers."),
    partition: str | None = typer.Option(None, "--partition", help="Slurm partition "
                                         "(default: the cluster's)."),
    time_min: int = typer.Option(1440, "--time", min=1, help="Each worker's time limit in "
                                 "minutes; near it the worker checkpoints its run and hands it "
                                 "back to the queue."),
    cpus_per_worker: int = typer.Option(4, "--cpus-per-worker", min=1, help="CPUs of each worker."),
    mem_gb: int | None = typer.Option(None, "--mem-gb", min=1, help="Memory of each worker in "
                                      "GB (default: the partition's)."),
    setup: list[str] = typer.Option([], "--setup", help="A shell line each task runs first, "
                                    "e.g. --setup 'module load cuda' (repeatable)."),
    sbatch: list[str] = typer.Option([], "--sbatch", help="Another sbatch option as KEY=VALUE, "
                                     "e.g. --sbatch qos=high --sbatch account=lab (repeatable)."),
    cluster: Cluster = typer.Option(Cluster.SLURM, "--cluster", help="slurm, or local: the same "
                                    "array on this machine (submitit's local executor), waited for."),
    logs: Path = typer.Option(DEFAULT_LOGS, "--logs", help="submitit's folder: each job's "
                              "script, pickled task and log, in a subfolder per job id."),
    exit_when_idle: bool = typer.Option(True, "--exit-when-idle/--keep-polling",
                                        help="A worker exits once the queue is empty (giving "
                                             "its GPU back), or keeps polling until its time limit."),
    poll: float = typer.Option(1.0, "--poll", min=0.05, help="Seconds between queue polls."),
    stale_after: float = typer.Option(30.0, "--stale-after", min=0.5,
                                      help="Seconds without a heartbeat before a run is re-queued."),
    max_outage: float = typer.Option(60.0, "--max-outage", min=0.0,
                                     help="Seconds of database outage a run survives."),
    artifacts: Path | None = typer.Option(None, "--artifacts", envvar="DM_ARTIFACTS",
                                          show_envvar=True, help="Checkpoints directory, shared "
                                          "by every node (default: ./var/artifacts)."),
    db: str | None = db_option(),
) -> None:
    """Start workers on a Slurm cluster: one `dm worker` per array task, on the same queue."""
    from dm_store.database import resolve_url, sqlite_file
    from studio.slurm import (
        WorkerJob,
        make_executor,
        parse_sbatch_options,
        submit_workers,
        worker_arguments,
    )

    with user_errors():  # a bad option: one line, exit 2; the database: one line, exit 1
        extra = parse_sbatch_options(sbatch)
        url = resolve_url(db)
        if cluster == Cluster.SLURM and sqlite_file(url) is not None:
            fail("--db: SQLite serves one machine, and workers on a cluster's nodes would share "
                 "its file over a network disk; give them PostgreSQL "
                 "(postgresql+psycopg://user:password@host/dm), or --cluster local", 2)
        store = open_store(db, artifacts)  # as `dm worker` does: starting workers may create it
        queued = store.queue_counts().get("queued", 0)
        job = WorkerJob(worker_arguments(gpus_per_worker, exit_when_idle=exit_when_idle, poll=poll,
                                         stale_after=stale_after, max_outage=max_outage,
                                         artifacts=store.artifacts_dir))
        executor = _executor(make_executor, cluster, logs, gpus_per_worker=gpus_per_worker,
                             cpus_per_worker=cpus_per_worker, timeout_min=time_min,
                             partition=partition, mem_gb=mem_gb, setup=setup, sbatch=extra)
    try:
        jobs = submit_workers(executor, array, job, url if db else None)
    except Exception as err:  # noqa: BLE001 - sbatch's own message is what the user needs
        fail(f"submitting the job array failed: {err}")
    folder = Path(logs).resolve()
    if cluster == Cluster.SLURM:
        typer.echo(f"submitted {array} worker(s) as Slurm job array {jobs[0].job_id.split('_')[0]} "
                   f"({queued} run(s) queued now); logs in {folder}/<job id>/")
        return
    typer.echo(f"started {array} worker(s) on this machine through submitit's local executor "
               f"({queued} run(s) queued); logs in {folder}/<job id>/; waiting for them")
    failed = []
    for item in jobs:
        try:
            item.result()
        except Exception as err:  # noqa: BLE001 - a failed task is reported, the others awaited
            failed.append(f"{item.job_id}: {str(err).strip().splitlines()[-1]}")
    if failed:
        fail(f"{len(failed)} of {array} worker(s) failed: " + "; ".join(failed))
    typer.echo(f"all {array} worker(s) finished")


def _executor(make, cluster: Cluster, logs: Path, **options):
    """The submitit executor, with a clear error where there is no Slurm to submit to."""
    try:
        return make(str(cluster), Path(logs).resolve() / "%j", **options)
    except RuntimeError as err:  # submitit: 'Could not detect "srun"'
        fail(f"--cluster {cluster}: no Slurm here ({err}); run dm slurm on a node that can "
             "submit jobs (sbatch and srun on PATH), or --cluster local to try it on this "
             "machine", 2)
