"""The protocol's grid of runs on a cluster: one job per run through ``submitit`` (SLURM, or
its local executor: real processes on this machine), each job the same resumable run that
``train`` makes, so a killed or timed-out job resumes where it stopped when submitted again.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from . import paths
from .devices import cpu_cores, resolve_device
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


def share_cores(jobs: Sequence[RunJob], workers: int, device: str | None) -> list[RunJob]:
    """The jobs, each with ``cores // workers`` torch threads (at least 1) when they train on
    the CPU, so ``workers`` local runs side by side share the cores instead of each taking them
    all; unchanged on another device."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if resolve_device(device).type != "cpu":
        return list(jobs)
    return [replace(j, threads=max(1, cpu_cores() // workers)) for j in jobs]


def submit(jobs: Sequence[RunJob], ex: Any, *, device: str | None = None) -> list[Any]:
    """Submit one job per run (as a job array where the executor has them); returns the
    submitit jobs (``job.result()`` waits for the run folder, ``job.job_id`` names it)."""
    with ex.batch():
        submitted = [ex.submit(job, device) for job in jobs]
    return submitted


def run_all(jobs: Sequence[RunJob], ex: Any, *, device: str | None = None, at_once: int = 0,
            poll_s: float = 2.0) -> list[str]:
    """:func:`submit` the runs and wait for them; returns their run folders, in order. With
    ``at_once`` > 0 at most that many jobs are in flight (the next is submitted when one ends:
    a local executor starts every job it is given at once, and nine runs of the default grid
    do not fit one small machine); 0 submits all. A job that failed raises its error here,
    naming the run (jobs already running are left to finish: they are resumable runs)."""
    if at_once <= 0:
        return [_result(job, sub) for job, sub in
                zip(jobs, submit(jobs, ex, device=device), strict=True)]
    out: list[str] = [""] * len(jobs)
    waiting = list(enumerate(jobs))
    running: dict[int, Any] = {}
    while waiting or running:
        while waiting and len(running) < at_once:
            i, job = waiting.pop(0)
            running[i] = ex.submit(job, device)
        ended = [i for i, sub in running.items() if sub.done()]
        if not ended:
            time.sleep(poll_s)
        for i in ended:
            out[i] = _result(jobs[i], running.pop(i))
    return out


def _result(job: RunJob, sub: Any) -> str:
    """The run folder a submitted job returned; its failure re-raised naming the run."""
    try:
        return sub.result()
    except Exception as err:  # noqa: BLE001 - submitit wraps the job's own error
        raise RuntimeError(f"{job.out_dir}: the job failed ({err})") from err
