"""The protocol's grid through submitit (issue 27): real processes of its local executor, the
real training code path, no mock. Two runs of a grid finish, their folders are the ones
``train_grid`` would write, and submitting them again skips them (finished runs are kept)."""

from __future__ import annotations

import json

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
    # Submitted again, the finished runs are recognised and kept, not trained anew.
    again = cluster.run_all(jobs, ex, device="cpu")
    assert again == folders
    assert [json.loads((tmp_path / "runs" / j.cfg.run_name() / runs.DONE).read_text())
            for j in jobs] == stamps
    # Each job ran in a process of its own (submitit's logs, one per job and submission).
    assert len(list((tmp_path / "submitit").glob("*_log.out"))) >= 2
