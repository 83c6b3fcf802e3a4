"""What a notebook studies: one data root, one training pair, one device: the one call every
notebook opens with.

A *data root* holds ``real/<dataset>/{train,val,test}`` and
``fake/<dataset>/<generator>/{train,val,test}`` of images prepared at one size (optionally
``fake/<dataset>/<generator>_inverted``: the generator's inversions of the reals, named like
them, for the paper's samples + inversions setting). The embedded world (``data/default64``,
built on demand) is the default root; a root ``patchforensics import`` filled is another::

    st = study.open_study("", "celeba", "dcgan", smoke=False)            # the embedded world
    st = study.open_study("data/paper", "celebahq", "pgan")              # your own data

Runs of the pair are filed under the root's name (``runs.run_root``), where ``patchforensics
train`` puts them too, so notebooks and the command line find the same runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from . import paths, protocol, runs
from .audit import save_table
from .config import WorldConfig, world_config
from .devices import resolve_device
from .evaluate import save_world_table
from .grids import training_pair
from .images import list_images
from .layout import fake_key, inverted, real_key
from .viz import savefig


@dataclass(frozen=True)
class DataRoot:
    """A data root (``real/<dataset>``, ``fake/<dataset>/<generator>``, each with ``train/``,
    ``val/``, ``test/``), the device and, for the embedded world, its config: the one owner of
    that layout for the studies, and of their tables' names."""

    root: Path  # the data root
    name: str  # its name: tables get a ``_<name>`` suffix, runs are filed under it
    dataset: str  # the real dataset studied
    device: object  # torch.device the notebook computes on
    smoke: bool = False
    world: WorldConfig | None = None  # the embedded world's config (None: own data)

    @property
    def real_dir(self) -> Path:
        return self.root / real_key(self.dataset)

    def set_dir(self, generator: str) -> Path:
        """``fake/<dataset>/<generator>`` of this root (a generator or manipulation set)."""
        return self.root / fake_key(self.dataset, generator)

    @property
    def embedded(self) -> bool:
        return self.world is not None

    def table(self, frame: pd.DataFrame, base: str) -> Path:
        """Save a notebook table as ``results/tables/<base>[_<name>].csv``."""
        return save_world_table(frame, base, self.name)

    def shown_table(self, frame: pd.DataFrame, base: str) -> pd.DataFrame:
        """Save a table a notebook shows (its index kept) as
        ``results/tables/<base>_<name>.csv`` and return it for display. The study's result
        tables, compared with the references, go through :meth:`table`."""
        save_table(frame, f"{base}_{self.name}")
        return frame

    def figure(self, fig: Any, base: str) -> Any:
        """Save a notebook figure as ``results/figures/<base>_<name>.png`` (``viz.savefig``)
        and return it for display."""
        return savefig(fig, f"{base}_{self.name}")


@dataclass(frozen=True)
class Study(DataRoot):
    """A data root with the training pair of notebooks 02-06 in it."""

    generator: str = field(kw_only=True)  # generator whose fakes train the classifiers

    @property
    def fake_dir(self) -> Path:
        return self.set_dir(self.generator)

    @property
    def inversions_dir(self) -> Path | None:
        """The generator's inversions of the reals, when the root has them."""
        inv = self.fake_dir.parent / inverted(self.generator)
        return inv if (inv / "train").is_dir() else None

    @property
    def size(self) -> int:
        """Side (px) of the pair's images."""
        from PIL import Image

        files = list_images(self.real_dir / "val") or list_images(self.real_dir / "train")
        with Image.open(files[0]) as im:
            return int(im.size[0])

    def profile(self, name: str, epochs: int = 0) -> protocol.Profile:
        """Protocol profile ``name`` (the smoke one in smoke mode) with its epoch cap replaced
        when ``epochs``, restricted to the settings this root can train: without inversions the
        paper's samples + inversions setting is left out (and said so)."""
        p = protocol.with_epochs(protocol.profile(name, smoke=self.smoke), epochs)
        if self.inversions_dir is None and protocol.PRIMARY_SETTING in p.settings:
            print(f"{self.fake_dir}: no inversions ({inverted(self.generator)}) beside it, so "
                  "the classifiers train on samples only (the paper trained on samples + "
                  "inversions)")
            p = replace(p, settings=("samples",))
        return p

    def run_root(self, setting: str = protocol.PRIMARY_SETTING) -> Path:
        """Where the pair's runs of ``setting`` live (``train`` and notebook 02 write there)."""
        return runs.run_root(self.name, self.dataset, self.generator, setting)

    def primary_setting(self) -> str:
        """The setting notebooks 04-06 read: the paper's when this root has inversions."""
        return protocol.PRIMARY_SETTING if self.inversions_dir is not None else "samples"

    def find_runs(self, seed: int = 0, setting: str | None = None,
                  profile: str = "default") -> dict[str, str]:
        """``{model: run folder}`` of the pair's finished runs of ``seed`` (``runs.find_runs``);
        where two runs of a model differ in load size, the one of ``profile`` is taken."""
        sizes = {m: o["load_size"] for m, o in
                 protocol.profile(profile, smoke=self.smoke).overrides().items()}
        return runs.find_runs(self.run_root(setting or self.primary_setting()), seed,
                              load_sizes=sizes)


def find_root(data_root: str | os.PathLike) -> Path:
    """A data root given as a path, or below the working directory, the project root or the
    data dir (the first that exists); ``FileNotFoundError`` naming where it looked."""
    p = Path(data_root).expanduser()
    bases = [Path.cwd(), paths.root(), paths.data_dir()]
    for cand in ([p] if p.is_absolute() else [b / p for b in bases]):
        if cand.is_dir():
            return cand.resolve()
    raise FileNotFoundError(f"{data_root}: no such data root (looked in "
                            f"{', '.join(str(b) for b in bases)})")


def _check_pair(root: Path, dataset: str, generator: str) -> None:
    """One line naming what is missing and what the root has."""
    real = root / real_key(dataset)
    if not real.is_dir():
        have = sorted(p.name for p in real.parent.glob("*") if p.is_dir())
        raise FileNotFoundError(f"{real}: no such dataset folder; {root} has real/ "
                                f"{have or 'nothing'} (import images with `patchforensics "
                                f"import SRC {real} --size N`)")
    fake = root / fake_key(dataset, generator)
    if not fake.is_dir():
        have = sorted(p.name for p in fake.parent.glob("*") if p.is_dir())
        raise FileNotFoundError(f"{fake}: no such generator folder; {fake.parent} "
                                f"has {have or 'nothing'}")
    for folder in (real, fake):
        for split in ("train", "val", "test"):
            if not list_images(folder / split):
                raise FileNotFoundError(f"{folder / split}: no images (a data root holds "
                                        "train/, val/ and test/ of every set)")


def open_world(*, smoke: bool = False, seed: int = 0, size: int = 0,
               device: str | None = "auto") -> DataRoot:
    """The embedded world notebook 01 builds (nothing is built here): its root, name and config
    as a :class:`DataRoot` whose ``dataset`` is ``""`` (the world holds every real dataset), so
    notebook 01 names its tables and figures as the others do. ``smoke``, ``seed``, ``size``:
    as ``config.world_config``."""
    cfg = world_config(smoke=smoke, seed=seed, size=size)
    return DataRoot(paths.world_dir(cfg.name), cfg.name, "", resolve_device(device), smoke, cfg)


def open_study(data_root: str | os.PathLike = "", dataset: str = "celeba",
               generator: str = "dcgan", *, smoke: bool = False, world_seed: int = 0,
               device: str | None = "auto", build: bool = True) -> Study:
    """The study of notebooks 02-06. ``data_root`` ``""`` is the embedded world (built first
    when the pair is missing and ``build``; ``smoke`` picks the 32 px world), else a folder
    holding ``real/`` and ``fake/`` (as given, or below the working directory, the project
    root or the data dir). ``device``: ``"auto"``
    (CUDA when present), ``"cpu"``, ``"cuda"``, ``"cuda:N"``. Raises ``FileNotFoundError`` /
    ``ValueError`` naming what is missing or unknown."""

    dev = resolve_device(device)
    if data_root in ("", None):
        cfg = world_config(smoke=smoke, seed=world_seed)
        if build:

            training_pair(cfg, dataset, generator, device=str(dev))
        return Study(paths.world_dir(cfg.name), cfg.name, dataset, dev, smoke, cfg,
                     generator=generator)
    root = find_root(data_root)
    _check_pair(root, dataset, generator)
    return Study(root, root.name, dataset, dev, smoke, None, generator=generator)
