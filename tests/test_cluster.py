"""The protocol's grid through submitit (issue 27): real processes of its local executor, the
real training code path, no mock. Two runs of a grid finish, their folders are the ones
``train_grid`` would write, and submitting them again skips them (finished runs are kept)."""

from __future__ import annotations

import contextlib
import dataclasses
import json

import pytest

from patchforensics import cluster, grids, runs
from patchforensics.train_config import TrainConfig

from conftest import write_planted


def test_a_two_run_grid_runs_through_submitit_and_is_resumable(tmp_path):
    real = write_planted(tmp_path / "real", 0, 0, n_train=32, n_val=8)
    fake = write_planted(tmp_path / "fake", 50_000, 10, n_train=32, n_val=8)
    base = TrainConfig(arch="xception", epochs=1, patience=1, batch_size=16,
                       steps_per_epoch=2)
    jobs = grids.grid_jobs([("xception", "block1")], real, fake, tmp_path / "runs", base=base,
                           seeds=[0, 1])
    assert [j.cfg.seed for j in jobs] == [0, 1]
    ex = cluster.executor("local", folder=tmp_path / "submitit", timeout_min=10)
    folders = cluster.run_all(jobs, ex, device="cpu")
    assert folders == [j.out_dir for j in jobs]
    for folder in folders:
        done = runs.finished(folder)
        assert done is not None and done["epochs"] == 1, folder
    stamps = [json.loads((tmp_path / "runs" / f / runs.DONE).read_text())
              for f in [j.cfg.run_name() for j in jobs]]
    # Submitted again (one at a time, one thread each: the CLI's local default on a CPU), the
    # finished runs are recognised and kept, not trained anew.
    again = cluster.run_all([dataclasses.replace(j, threads=1) for j in jobs], ex,
                            device="cpu", at_once=1)
    assert again == folders
    assert [json.loads((tmp_path / "runs" / j.cfg.run_name() / runs.DONE).read_text())
            for j in jobs] == stamps
    # Each job ran in a process of its own (submitit's logs, one per job and submission).
    assert len(list((tmp_path / "submitit").glob("*_log.out"))) >= 2


class _Sub:
    """A submitted job of :class:`_Executor`: ends after ``polls`` calls of ``done``."""

    def __init__(self, ex, value, polls):
        self.ex, self.value, self.polls = ex, value, polls

    def done(self):
        self.polls -= 1
        if self.polls <= 0 and self in self.ex.live:
            self.ex.live.remove(self)
        return self.polls <= 0

    def result(self):
        if isinstance(self.value, Exception):
            raise self.value
        return self.value


class _Executor:
    """An executor that records how many of its jobs were in flight at once."""

    def __init__(self, polls):
        self.polls, self.live, self.most = polls, [], 0

    def batch(self):
        return contextlib.nullcontext()

    def submit(self, job, device):
        sub = _Sub(self, job.out_dir if job.cfg.seed != 99 else RuntimeError("boom"),
                   self.polls[job.cfg.seed])
        self.live.append(sub)
        self.most = max(self.most, len(self.live))
        return sub


@pytest.mark.parametrize("at_once", [1, 2, 3])
def test_run_all_keeps_at_most_at_once_jobs_in_flight(tmp_path, at_once):
    base = TrainConfig(arch="xception", epochs=1, batch_size=16)
    jobs = grids.grid_jobs([("xception", "block1")], tmp_path, tmp_path, tmp_path / "runs",
                           base=base, seeds=[0, 1, 2, 3, 4])
    # Jobs of different lengths: the window refills as each ends, results stay in job order.
    ex = _Executor({0: 5, 1: 1, 2: 3, 3: 2, 4: 1})
    out = cluster.run_all(jobs, ex, device="cpu", at_once=at_once, poll_s=0)
    assert out == [j.out_dir for j in jobs]
    assert ex.most == at_once
    # 0 submits every job at once (SLURM's scheduler decides).
    ex = _Executor({0: 5, 1: 1, 2: 3, 3: 2, 4: 1})
    assert cluster.run_all(jobs, ex, device="cpu", at_once=0) == out
    assert ex.most == len(jobs)


def test_run_all_names_the_run_whose_job_failed(tmp_path):
    base = TrainConfig(arch="xception", epochs=1, batch_size=16)
    jobs = grids.grid_jobs([("xception", "block1")], tmp_path, tmp_path, tmp_path / "runs",
                           base=base, seeds=[0, 99])
    with pytest.raises(RuntimeError, match=r"seed99.*the job failed \(boom\)"):
        cluster.run_all(jobs, _Executor({0: 1, 99: 1}), device="cpu", at_once=1, poll_s=0)


def test_local_runs_share_the_cores_and_the_cli_refuses_no_workers(tmp_path, monkeypatch, capsys):
    from patchforensics import cli

    base = TrainConfig(arch="xception", epochs=1, batch_size=16)
    jobs = grids.grid_jobs([("xception", "block1")], tmp_path, tmp_path, tmp_path / "runs",
                           base=base, seeds=[0, 1])
    monkeypatch.setattr(cluster, "cpu_cores", lambda: 8)
    assert [j.threads for j in cluster.share_cores(jobs, 2, "cpu")] == [4, 4]
    assert [j.threads for j in cluster.share_cores(jobs, 3, "cpu")] == [2, 2]
    assert [j.threads for j in cluster.share_cores(jobs, 16, "cpu")] == [1, 1]
    assert [j.threads for j in cluster.share_cores(jobs, 2, "meta")] == [0, 0]  # not the CPU
    with pytest.raises(ValueError, match="workers must be at least 1"):
        cluster.share_cores(jobs, 0, "cpu")
    assert cli.main(["grid", "--smoke", "--workers", "0"]) == 2
    assert "--workers must be at least 1, got 0" in capsys.readouterr().err
