"""The protocol's grid of runs on a cluster: one job per run through ``submitit`` (SLURM, or
its local executor: real processes on this machine), each job the same resumable run that
``train`` makes, so a killed or timed-out job resumes where it stopped when submitted again.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import paths
from .grids import RunJob

EXECUTORS = ("local", "slurm")


def executor(kind: str = "local", *, folder: str | os.PathLike | None = None,
             partition: str | None = None, gpus: int = 0, cpus: int = 2,
             timeout_min: int = 240) -> Any:
    """A submitit executor: ``local`` (processes on this machine) or ``slurm`` (one job per
    run in a job array; ``partition``, ``gpus`` per job, ``cpus`` per job, ``timeout_min``).
    Its logs go to ``folder`` (default ``results/logs/submitit``)."""
    import submitit

    if kind not in EXECUTORS:
        raise ValueError(f"executor must be one of {EXECUTORS}, got {kind!r}")
    folder = Path(folder) if folder is not None else paths.results_dir() / "logs" / "submitit"
    if kind == "local":
        ex = submitit.LocalExecutor(folder=folder)
        ex.update_parameters(timeout_min=timeout_min, gpus_per_node=gpus)
        return ex
    ex = submitit.AutoExecutor(folder=folder, cluster="slurm")
    ex.update_parameters(timeout_min=timeout_min, gpus_per_node=gpus, cpus_per_task=cpus,
                         tasks_per_node=1, nodes=1,
                         **({"slurm_partition": partition} if partition else {}))
    return ex


def submit(jobs: Sequence[RunJob], ex: Any, *, device: str | None = None) -> list[Any]:
    """Submit one job per run (as a job array where the executor has them); returns the
    submitit jobs (``job.result()`` waits for the run folder, ``job.job_id`` names it)."""
    with ex.batch():
        submitted = [ex.submit(job, device) for job in jobs]
    return submitted


def run_all(jobs: Sequence[RunJob], ex: Any, *, device: str | None = None) -> list[str]:
    """:func:`submit` the runs and wait for them; returns their run folders, in order. A job
    that failed raises its error here, naming the run."""
    out = []
    for job, sub in zip(jobs, submit(jobs, ex, device=device), strict=True):
        try:
            out.append(sub.result())
        except Exception as err:  # noqa: BLE001 - submitit wraps the job's own error
            raise RuntimeError(f"{job.out_dir}: the job failed ({err})") from err
    return out
