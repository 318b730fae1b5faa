"""Where the search's Dask workers run: processes on this machine, or SLURM jobs.

:func:`start_cluster` turns the config's ``search.cluster`` mapping into a running cluster
and a connected client:

* ``{kind: local}`` (the default): a ``LocalCluster`` of ``workers`` processes with one
  thread each.  The worker processes die with this process (``prctl(PR_SET_PDEATHSIG)``
  through a worker preload, on top of Dask's own parent-alive pipe), so a ``kill -9`` of
  the search leaves none behind scoring and writing partitions.
* ``{kind: slurm, ...}``: ``dask_jobqueue.SLURMCluster`` with one single-threaded worker per
  SLURM job, ``workers`` jobs.  Every other key goes to ``SLURMCluster`` (``queue``,
  ``account``, ``memory``, ``walltime``, ``job_extra_directives``, ...); a name it does not
  take is a :class:`~skyscan.core.errors.ConfigError`.  The jobs run this Python
  (``sys.executable``).  When the search is killed, each worker finds its scheduler gone
  and ends, and its job with it (within seconds on the tests' local SLURM; workers that
  cannot reach the scheduler give up after dask-jobqueue's ``death_timeout``, 60 s).
  ``start_timeout`` (seconds, a skyscan key) bounds the wait for the workers: if no job has
  started one by then, the jobs are cancelled and a
  :class:`~skyscan.core.errors.ResourceError` names the queue; if some have, the search
  goes on with those and the others join when their jobs start.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from skyscan.core.errors import ConfigError, ResourceError
from skyscan.core.process import die_with_parent

__all__ = ["start_cluster", "slurm_options", "SLURM_DEFAULTS", "DEFAULT_START_TIMEOUT"]

log = logging.getLogger(__name__)

#: Seconds to wait for the SLURM jobs to start their workers (``start_timeout``).
DEFAULT_START_TIMEOUT = 600.0

#: What a SLURM worker job asks for unless ``search.cluster`` says otherwise: one
#: single-threaded worker per job (the model is loaded once per worker and scores with one
#: torch thread), and no dashboard.
SLURM_DEFAULTS = {
    "cores": 1,
    "processes": 1,
    "memory": "4GB",
    "walltime": "01:00:00",
}

# SLURMCluster arguments that start_cluster sets itself or that make no sense in a config
# (dashboard_address and host are refused by SLURMCluster itself: scheduler_options takes them).
_NOT_FROM_CONFIG = {
    "self",
    "job_cls",
    "loop",
    "asynchronous",
    "scheduler",
    "config_name",
    "n_workers",  # the search's ``workers``
    "dashboard_address",
    "host",
}


def _slurm_argument_names() -> set[str]:
    """Every keyword ``SLURMCluster`` takes: its own, its job class's and the base job's."""
    from dask_jobqueue.core import Job
    from dask_jobqueue.slurm import SLURMCluster, SLURMJob

    names = set()
    for func in (SLURMCluster.__init__, SLURMJob.__init__, Job.__init__):
        for param in inspect.signature(func).parameters.values():
            if param.kind not in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
                names.add(param.name)
    return names - _NOT_FROM_CONFIG


def slurm_options(cluster: Mapping, log_directory: str | Path) -> dict:
    """The ``SLURMCluster`` keywords for a ``search.cluster`` mapping of kind slurm.

    Parameters
    ----------
    cluster : mapping
        ``search.cluster``: ``kind`` and ``start_timeout`` are skyscan's, the rest go to
        ``SLURMCluster`` over :data:`SLURM_DEFAULTS`.
    log_directory : str or Path
        Where the jobs' logs go unless the mapping names ``log_directory``; it must be
        visible from the compute nodes.

    Returns
    -------
    dict

    Raises
    ------
    ConfigError
        A key that ``SLURMCluster`` does not take, named with the known ones.
    """
    known = _slurm_argument_names()
    options = {k: v for k, v in cluster.items() if k not in ("kind", "start_timeout")}
    for key in sorted(options):
        if key not in known:
            raise ConfigError(
                f"search.cluster: unknown key {key!r} for dask_jobqueue.SLURMCluster "
                f"(known: {', '.join(sorted(known))})",
                key=f"search.cluster.{key}",
            )
    merged = {**SLURM_DEFAULTS, **options}
    # no dashboard unless asked for: several searches on one login node would fight for :8787
    merged["scheduler_options"] = {"dashboard": False, **(options.get("scheduler_options") or {})}
    merged.setdefault("log_directory", str(log_directory))
    merged.setdefault("python", sys.executable)  # the jobs run this very environment
    # `-q` quiets Dask's INFO lines through the environment, which SLURM jobs inherit; their
    # log files are not the console, and "Start worker at" is what one looks for there
    merged["job_script_prologue"] = [
        *(options.get("job_script_prologue") or []),
        "export DASK_LOGGING__DISTRIBUTED=info",
    ]
    Path(merged["log_directory"]).mkdir(parents=True, exist_ok=True)
    return merged


def dask_setup(worker) -> None:
    """Worker preload (run by ``distributed`` in each worker process): die with the parent."""
    die_with_parent()


@contextlib.contextmanager
def start_cluster(
    cluster: Mapping | None, workers: int, log_directory: str | Path | None = None
) -> Iterator:
    """Start Dask workers as ``search.cluster`` says, and yield a connected client.

    On leaving the context the client, the workers and (for SLURM) the jobs are closed.

    Parameters
    ----------
    cluster : mapping or None
        ``search.cluster``: ``{"kind": "local"}`` (also for None) or
        ``{"kind": "slurm", ...}``; see the module docstring.
    workers : int
        Worker processes (local) or SLURM jobs of one worker each; at least 1.
    log_directory : str or Path, optional
        Folder for the SLURM jobs' logs (ignored for local); default a new temporary folder
        (kept). It must be visible from the compute nodes.
        ``search.cluster.log_directory`` takes precedence.

    Yields
    ------
    distributed.Client

    Raises
    ------
    ConfigError
        An unknown kind or SLURMCluster key, or ``workers`` below 1.
    ResourceError
        No SLURM job started a worker within ``start_timeout`` seconds (the jobs are
        cancelled first).

    Examples
    --------
    >>> with start_cluster({"kind": "local"}, 2) as client:  # doctest: +SKIP
    ...     client.submit(sum, [1, 2]).result()
    3
    """
    cluster = dict(cluster or {"kind": "local"})
    kind = cluster.get("kind", "local")
    if workers < 1:
        raise ConfigError(f"search.workers: a cluster needs at least 1 worker, got {workers}")
    if kind == "local":
        unknown = sorted(set(cluster) - {"kind"})
        if unknown:
            raise ConfigError(
                f"search.cluster: key {unknown[0]!r} is for kind slurm, not local",
                key=f"search.cluster.{unknown[0]}",
            )
        with _local(workers) as client:
            yield client
    elif kind == "slurm":
        with _slurm(cluster, workers, log_directory) as client:
            yield client
    else:
        raise ConfigError(
            f"search.cluster.kind: {kind!r} is not one of local, slurm", key="search.cluster.kind"
        )


#: Dask sets MALLOC_TRIM_THRESHOLD_=65536 in its workers to return memory to the OS; a fixed
#: trim threshold also fixes glibc's mmap threshold, so every large tensor of a forward pass
#: is a fresh mmap with page faults: the network ran 1.4x slower in a worker than in the main
#: process (0.90 s against 0.64 s per batch of 512, measured here).  Unset in our workers.
WORKER_ENVIRON = {"MALLOC_TRIM_THRESHOLD_": None}


@contextlib.contextmanager
def _local(workers: int):
    import dask
    from distributed import Client, LocalCluster

    with (
        dask.config.set(
            {f"distributed.nanny.pre-spawn-environ.{k}": v for k, v in WORKER_ENVIRON.items()}
        ),
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            preload=[__name__],  # dask_setup above, run in each worker process (not the nanny)
        ) as dask_cluster,
        Client(dask_cluster) as client,
    ):
        yield client


@contextlib.contextmanager
def _slurm(cluster: dict, workers: int, log_directory):
    from dask.distributed import Client
    from dask_jobqueue import SLURMCluster

    timeout = float(cluster.get("start_timeout", DEFAULT_START_TIMEOUT))
    if log_directory is None:  # kept afterwards: the logs say why a job failed
        log_directory = tempfile.mkdtemp(prefix="skyscan-slurm-")
    options = slurm_options(cluster, log_directory)
    log.info("SLURM worker job logs in %s", options["log_directory"])
    failure = None
    with SLURMCluster(**options) as dask_cluster, Client(dask_cluster) as client:
        _check_job_script(dask_cluster)
        dask_cluster.scale(jobs=workers)
        try:
            client.wait_for_workers(workers, timeout=timeout)
        except TimeoutError:
            running = len(client.scheduler_info(n_workers=-1)["workers"])
            if running == 0:
                failure = _no_worker_error(dask_cluster, options, workers, timeout)
            else:
                log.warning(
                    "%d of %d SLURM worker jobs started within %g s; going on with those "
                    "(the others join when they start)",
                    running,
                    workers,
                    timeout,
                )
        if failure is None:
            yield client
    # raised only now that leaving the cluster's context has cancelled the jobs (scancel)
    if failure is not None:
        raise failure


def _check_job_script(dask_cluster) -> None:
    """Have ``sbatch --test-only`` judge the worker job script, so that a job SLURM refuses
    (unknown partition or account, more memory than any node has) fails at once with
    sbatch's reason rather than after ``start_timeout`` with a traceback in the log."""
    import shlex
    import subprocess

    command = shlex.split(dask_cluster.job_cls.submit_command)
    with tempfile.NamedTemporaryFile("w", suffix=".sh", prefix="skyscan-worker-") as script:
        script.write(dask_cluster.job_script())
        script.flush()
        try:
            result = subprocess.run(
                [*command, "--test-only", script.name], capture_output=True, text=True
            )
        except FileNotFoundError:
            raise ResourceError(
                f"search.cluster: kind slurm needs {command[0]!r}, which is not on PATH "
                "(run the search on a SLURM login node)",
                key="search.cluster.kind",
            ) from None
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        reason = lines[-1] if lines else f"exit code {result.returncode}"
        raise ConfigError(
            f"search.cluster: SLURM refuses the worker job ({reason})", key="search.cluster"
        )


def _no_worker_error(dask_cluster, options: dict, workers: int, timeout: float):
    """The error for jobs that never started a worker: where they waited and what to do."""
    job_ids = sorted(
        str(job.job_id) for job in dask_cluster.workers.values() if getattr(job, "job_id", None)
    )
    where = f"partition {options['queue']!r}" if options.get("queue") else "the default partition"
    jobs = f"jobs {', '.join(job_ids)}" if job_ids else "no job was submitted"
    return ResourceError(
        f"search.cluster: none of the {workers} SLURM job(s) started a Dask worker within "
        f"{timeout:g} s on {where} ({jobs}; cancelled); see `squeue -u $USER` and the job "
        f"logs in {options['log_directory']}, or raise search.cluster.start_timeout",
        key="search.cluster",
    )
