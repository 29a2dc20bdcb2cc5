"""Workers on a Slurm cluster: ``dm worker`` submitted as a job array through submitit.

No second control plane: each array task is an ordinary worker that claims runs from the
shared queue in PostgreSQL, exactly like one started by hand or by Docker Compose. Slurm only
decides where and when the workers run; what they train, and what happens to a run whose
worker disappears (re-queued and resumed from its last checkpoint), stays with the queue.

    dm submit configs/digits-symmetric-40-dm.yaml --compare cce,gce,dm --seeds 3
    dm slurm --array 8 --gpus-per-worker 1 --partition gpu --time 240

What a job array task needs from the submitting shell:

- **The database URL, through the environment**: ``DM_DATABASE_URL`` or
  ``DM_DATABASE_URL_FILE`` (``--db`` sets the first for the submission only). ``sbatch``
  hands the submitting environment to the job, so the URL (and its password) is never
  written into the job files that submitit keeps in ``--logs``.
- **The same Python environment and checkpoint folder on every node**: the tasks run
  ``sys.executable`` of the submitting process, and ``--artifacts`` (``DM_ARTIFACTS``) must
  be a folder that all nodes share, so that a run can resume on another node.

Slurm warns a job before it ends it (submitit asks for ``SIGUSR2`` 90 s ahead of the time
limit, and preemption sends it too): a task turns that signal into the worker's warm stop
(checkpoint, hand the run back to the queue, exit), and ``scancel``'s ``SIGTERM`` is a warm
stop already. By default a task exits once the queue is empty (``--exit-when-idle``), so an
array gives its GPUs back when the work is done.

``submitit``'s local executor (``--cluster local``) runs the same job array on this machine,
as a rehearsal: ``dm slurm`` then waits for its workers to finish.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dm_store.database import URL_ENV

CLUSTERS = ("slurm", "local")
GPUS_PER_WORKER = (0, 1)  # a worker trains on one device: a second GPU would sit idle
# sbatch options that ``dm slurm`` sets itself; ``--sbatch`` may not set them a second time.
OWN_SBATCH_OPTIONS = frozenset({"array", "gpus_per_node", "gres", "partition", "time",
                                "cpus_per_task", "mem", "job_name", "ntasks_per_node",
                                "nodes", "output", "error", "signal", "wckey"})

__all__ = ["CLUSTERS", "GPUS_PER_WORKER", "WorkerJob", "make_executor", "parse_sbatch_options",
           "submit_workers", "worker_arguments"]


@dataclass(frozen=True)
class WorkerJob:
    """What one array task runs: ``dm worker ARGS`` in the task's own process (submitit
    pickles this object into the job folder, so it holds options only, never the URL)."""

    args: tuple[str, ...]

    def __call__(self) -> int:
        from studio.cli import app

        # submitit's handler for SIGUSR2 would end the job in the middle of a training step;
        # as SIGTERM it is the worker's warm stop (its own handler, installed when it starts).
        signal.signal(signal.SIGUSR2, _as_sigterm)
        code = app(args=["worker", *self.args], prog_name="dm", standalone_mode=False)
        if code:  # typer.Exit(code) returns here instead of leaving the process
            raise RuntimeError(f"dm worker exited with status {code} (its log is above)")
        return 0


def _as_sigterm(signum: int, frame: Any) -> None:  # noqa: ARG001
    signal.raise_signal(signal.SIGTERM)


def worker_arguments(gpus_per_worker: int, *, exit_when_idle: bool, poll: float,
                     stale_after: float, max_outage: float, artifacts: Path) -> tuple[str, ...]:
    """The ``dm worker`` options of every task: CUDA on a GPU task (not ``auto``, so that a
    task without its GPU fails loudly instead of training on the CPU), else the CPU.

    >>> worker_arguments(1, exit_when_idle=True, poll=1.0, stale_after=30.0, max_outage=60.0,
    ...                  artifacts=Path("/shared/artifacts"))  # doctest: +NORMALIZE_WHITESPACE
    ('--device', 'cuda', '--poll', '1.0', '--stale-after', '30.0', '--max-outage', '60.0',
     '--artifacts', '/shared/artifacts', '--exit-when-idle')
    """
    args = ["--device", "cuda" if gpus_per_worker else "cpu", "--poll", str(poll),
            "--stale-after", str(stale_after), "--max-outage", str(max_outage),
            "--artifacts", str(artifacts)]
    return tuple(args + (["--exit-when-idle"] if exit_when_idle else []))


def parse_sbatch_options(items: Sequence[str]) -> dict[str, str]:
    """``--sbatch KEY=VALUE`` items as submitit's ``slurm_additional_parameters`` (``-`` in a
    key becomes ``_``: ``qos=high``, ``account=lab``, ``constraint=a100``).

    >>> parse_sbatch_options(["account=lab", "mail-type=END"])
    {'account': 'lab', 'mail_type': 'END'}
    >>> parse_sbatch_options(["partition=gpu"])
    Traceback (most recent call last):
    ...
    ValueError: --sbatch partition=gpu: dm slurm sets partition itself (--partition)
    """
    options: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().lstrip("-").replace("-", "_")
        if not sep or not key or not value:
            raise ValueError(f"--sbatch {item!r}: expected KEY=VALUE, e.g. --sbatch qos=high")
        if key in OWN_SBATCH_OPTIONS:
            own = {"partition": "--partition", "time": "--time", "cpus_per_task": "--cpus-per-worker",
                   "mem": "--mem-gb", "array": "--array", "gpus_per_node": "--gpus-per-worker",
                   "gres": "--gpus-per-worker"}.get(key, "")
            raise ValueError(f"--sbatch {item}: dm slurm sets {key} itself"
                             + (f" ({own})" if own else ""))
        options[key] = value
    return options


def make_executor(cluster: str, folder: Path, *, gpus_per_worker: int, cpus_per_worker: int,
                  timeout_min: int, partition: str | None = None, mem_gb: int | None = None,
                  setup: Sequence[str] = (), sbatch: dict[str, str] | None = None) -> Any:
    """A submitit executor for ``cluster`` (``slurm`` or ``local``) whose every job is one
    worker: one task on one node with ``gpus_per_worker`` GPUs. Raises ValueError naming the
    option for values outside the allowed ones."""
    if cluster not in CLUSTERS:
        raise ValueError(f"--cluster {cluster!r}: allowed: {', '.join(CLUSTERS)}")
    if gpus_per_worker not in GPUS_PER_WORKER:
        raise ValueError(f"--gpus-per-worker {gpus_per_worker}: allowed: 0 (a CPU worker) or 1 "
                         "(a worker trains on one device; start more workers for more GPUs)")
    try:
        import submitit
    except ImportError:
        raise ValueError("dm slurm needs submitit: pip install 'dm-studio[cluster]' "
                         "(or pip install submitit)") from None
    executor = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
    parameters: dict[str, Any] = {
        "name": "dm-worker", "nodes": 1, "tasks_per_node": 1, "gpus_per_node": gpus_per_worker,
        "cpus_per_task": cpus_per_worker, "timeout_min": timeout_min}
    if mem_gb is not None:
        parameters["mem_gb"] = mem_gb
    if cluster == "slurm":
        if partition:
            parameters["slurm_partition"] = partition
        if setup:
            parameters["slurm_setup"] = list(setup)
        if sbatch:
            parameters["slurm_additional_parameters"] = dict(sbatch)
    elif setup:
        parameters["local_setup"] = list(setup)
    executor.update_parameters(**parameters)
    return executor


@contextlib.contextmanager
def _submission_environment(url: str | None) -> Iterator[None]:
    """``DM_DATABASE_URL`` = ``url`` while jobs are submitted (``sbatch`` and the local
    executor copy the environment then), and the process's own environment again after."""
    if url is None:
        yield
        return
    before = os.environ.get(URL_ENV)
    os.environ[URL_ENV] = url
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(URL_ENV, None)
        else:
            os.environ[URL_ENV] = before


def submit_workers(executor: Any, count: int, job: WorkerJob, url: str | None = None) -> list[Any]:
    """Submit ``count`` workers running ``job`` as one job array (on Slurm, one ``sbatch
    --array``), with the database ``url`` in their environment (None: the environment's own).
    Returns submitit's jobs."""
    if count < 1:
        raise ValueError(f"--array {count}: must be at least 1 worker")
    with _submission_environment(url), executor.batch():
        jobs = [executor.submit(job) for _ in range(count)]
    return jobs
