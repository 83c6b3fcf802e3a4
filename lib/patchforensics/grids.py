"""Grids of classifier runs on the embedded world (notebook 02): the training pair a world gives,
the runs of a grid and their seeds, and what a finished run was trained on.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from . import paths, runs
from .batches import load_split
from .config import WorldConfig, from_dict, to_dict
from .embedded import REAL_DATASETS, build_real_world, read_manifest
from .generators import world_generators
from .layout import fake_key, real_key
from .models import parse_depth
from .receptive_field import field_fraction, receptive_field
from .train import inversions_dir, train
from .train_config import TrainConfig
from .world import build_fake_world


def training_pair(world_cfg: WorldConfig, dataset: str = "celeba", generator: str = "dcgan", *,
                  device: str | None = None, progress: bool = True) -> tuple[Path, Path]:
    """``(real dataset folder, fake dataset folder)`` of one pair of a built world, building the
    world first (``embedded.build_real_world`` then ``world.build_fake_world``) when either set
    is missing from its manifest."""

    if dataset not in REAL_DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; the world has {REAL_DATASETS}")
    if generator not in world_generators(dataset):
        raise ValueError(f"unknown generator {generator!r} for {dataset!r}; the world has "
                         f"{world_generators(dataset)}")
    root = paths.world_dir(world_cfg.name)
    keys = (real_key(dataset), fake_key(dataset, generator))
    if not all(k in read_manifest(root)["sets"] for k in keys):
        build_real_world(world_cfg, progress=progress)
        build_fake_world(world_cfg, device=device, progress=progress)
    missing = [k for k in keys if k not in read_manifest(root)["sets"]]
    if missing:
        raise FileNotFoundError(f"{root}: the world has no {missing}; is {generator!r} a "
                                f"generator of {dataset!r}?")
    return root / keys[0], root / keys[1]


def run_setup(run: str | os.PathLike) -> tuple[TrainConfig, Path, Path]:
    """``(config, real dataset folder, fake dataset folder)`` a finished or running classifier
    run was trained with (its ``config.json``); ``FileNotFoundError`` when its data is gone."""
    folder = runs.run_dir_of(run)
    rec = runs.read_config(folder)
    if "config" not in rec:
        raise FileNotFoundError(f"{folder}: no {runs.CONFIG}; not a classifier run folder")
    real = runs.resolve_recorded(rec["data"]["real"]["dir"])
    fake = runs.resolve_recorded(rec["data"]["fake"]["dir"])
    if real is None or fake is None:
        raise FileNotFoundError(f"{folder}: its training data ({rec['data']['real']['dir']}, "
                                f"{rec['data']['fake']['dir']}) is gone")
    return from_dict(TrainConfig, rec["config"]), real, fake


def seed_runs(run: str | os.PathLike, seeds: Sequence[int], *, device: str | None = None,
              progress: bool = True) -> dict[str, str]:
    """The run's exact configuration trained with each of ``seeds`` (finished runs are skipped,
    the run itself is reused for its own seed), in sibling folders. Returns ``{"<model>
    seed<k>": run folder}``."""
    base, real, fake = run_setup(run)
    inv = inversions_dir(fake) if base.setting == "samples_inversions" else None
    out = {}
    for seed in seeds:
        cfg = from_dict(TrainConfig, {**to_dict(base), "seed": int(seed)})
        res = train(cfg, real, fake, runs.run_dir_of(run).parent / cfg.run_name(),
                    device=device, progress=progress, inversions_dir=inv, replace_stale=True)
        out[f"{cfg.arch}_{cfg.depth} seed{seed}"] = res.out_dir.as_posix()
    return out


def grid_models(xception_depths: Sequence[str | int] = (),
                resnet_depths: Sequence[str | int] = ()) -> list[tuple[str, str]]:
    """``[(arch, depth)]`` for the given Xception and ResNet-18 cuts (numbers or names)."""
    return ([("xception", parse_depth("xception", d)) for d in xception_depths]
            + [("resnet18", parse_depth("resnet18", d)) for d in resnet_depths])


def train_grid(models: Sequence[tuple[str, str]], real_dir: str | os.PathLike,
               fake_dir: str | os.PathLike, run_root: str | os.PathLike, *,
               base: TrainConfig | None = None, device: str | None = None,
               progress: bool = True, force: bool = False,
               inversions: str | os.PathLike | None = None,
               overrides: dict[str, dict[str, Any]] | None = None,
               seeds: Sequence[int] | None = None) -> pd.DataFrame:
    """Train (or skip, when finished) one run per ``(arch, depth)`` and seed under
    ``run_root/<arch>_<depth>_seed<seed>``, the other settings from ``base``, per-model
    changes from ``overrides`` (``{"xception_block1": {"crop": 96}, "xception_full":
    {"load_size": 0}}``) and the seeds from ``seeds`` (default: ``base.seed``).
    ``inversions``: the inversions folder (setting ``samples_inversions``).

    Returns one row per run: model, seed, setting, load size, receptive field (px of the
    network input) and field fraction (of the face side), best epoch, epochs run, why it
    stopped, the patience in force, the best epoch's val metrics, training seconds (from
    ``done.json``, so skipped runs report their original time), the run folder relative to the
    checkpoints root; indexed by model name (``xception_block2``)."""

    side = int(load_split(real_dir, "val", limit=1)[0].shape[-1])
    rows = []
    for job in grid_jobs(models, real_dir, fake_dir, run_root, base=base,
                         inversions=inversions, overrides=overrides, seeds=seeds):
        cfg = job.cfg
        res = train(cfg, job.real_dir, job.fake_dir, job.out_dir, device=device,
                    progress=progress, force=force, inversions_dir=job.inversions_dir,
                    replace_stale=True)
        done = runs.finished(res.out_dir) or {}
        mcfg = cfg.model_config()
        rf = receptive_field(mcfg, side)
        rows.append({"model": f"{cfg.arch}_{cfg.depth}", "seed": cfg.seed, "setting": cfg.setting,
                     "arch": cfg.arch, "depth": cfg.depth, "load_size": cfg.load_size,
                     "crop": cfg.crop, "rf_px": rf.size,
                     "field_fraction": field_fraction(mcfg, side),
                     "best_epoch": res.best_epoch, "epochs": done.get("epochs"),
                     "stopped": res.stopped, "patience": cfg.stop_patience,
                     **{f"val_{k}": v for k, v in res.best.items()},
                     "train_seconds": done.get("seconds"), "skipped": res.skipped,
                     "run": runs.relative_name(res.out_dir)})
    return pd.DataFrame(rows).set_index("model")


@dataclass(frozen=True)
class RunJob:
    """One run of a grid as a job carries it to another process or machine: everything
    ``train.train`` needs. Calling it trains (or skips, when finished; resumes, when
    interrupted) the run and returns its folder."""

    cfg: TrainConfig
    real_dir: str
    fake_dir: str
    out_dir: str
    inversions_dir: str | None = None
    threads: int = 0  # torch CPU threads of the job's process; 0 = torch's default (all cores)

    def __call__(self, device: str | None = None) -> str:
        if self.threads > 0:
            torch.set_num_threads(self.threads)
        res = train(self.cfg, self.real_dir, self.fake_dir, self.out_dir, device=device,
                    progress=False, inversions_dir=self.inversions_dir, replace_stale=True)
        return str(res.out_dir)


def grid_jobs(models: Sequence[tuple[str, str]], real_dir: str | os.PathLike,
              fake_dir: str | os.PathLike, run_root: str | os.PathLike, *,
              base: TrainConfig | None = None, inversions: str | os.PathLike | None = None,
              overrides: dict[str, dict[str, Any]] | None = None,
              seeds: Sequence[int] | None = None) -> list[RunJob]:
    """The runs :func:`train_grid` trains, one :class:`RunJob` per seed and ``(arch, depth)``
    (the same configs and folders), for an executor to run anywhere (``cluster``)."""
    base = base or TrainConfig()
    jobs = []
    for seed in (seeds if seeds is not None else [base.seed]):
        for arch, depth in models:
            depth = parse_depth(arch, depth)
            cfg = from_dict(TrainConfig, {**to_dict(base), "arch": arch, "depth": depth,
                                          "seed": int(seed),
                                          **(overrides or {}).get(f"{arch}_{depth}", {})})
            jobs.append(RunJob(cfg, str(real_dir), str(fake_dir),
                               str(Path(run_root) / cfg.run_name()),
                               None if inversions is None else str(inversions)))
    return jobs
