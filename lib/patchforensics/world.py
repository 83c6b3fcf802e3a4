"""The fake half of the embedded world (DESIGN.md "Data flow"; Chai et al. 2020, Sec. 3.1).

For every (dataset, generator) of the default zoo, sample exactly as many fakes per split as the
real set has, and write them through the SAME parity pipeline as the reals
(``embedded.write_set``: centre crop, LANCZOS to the world size, PNG), to
``<world>/fake/<dataset>/<generator>/{train,val,test}/<generator>_<split>_<i>.png``. Equal
counts and identical preprocessing leave the detector nothing to learn but the pixels.

Each split gets its own seed, derived from (world seed, dataset, generator, split), so no two
sets share latents. A set's fingerprint covers the generator's weights (SHA-256), the seeds,
the counts and the pipeline: a rerun skips every set whose files still verify.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from . import paths
from .config import WorldConfig, fingerprint, from_dict, to_dict
from .embedded import REAL_DATASETS, SPLITS, read_manifest, set_is_complete, write_set
from .generators import Generator, get_generator, world_generators
from .preprocess import PIPELINE
from .progress import bar as progress_bar
from .provenance import run_record


def split_seed(world_seed: int, dataset: str, generator: str, split: str) -> int:
    """A 31-bit seed unique to (world seed, dataset, generator, split), stable across runs."""
    blob = f"{world_seed}/{dataset}/{generator}/{split}".encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:4], "big") >> 1


def fake_items(gen: Generator, n: int, seed: int,
               split: str) -> Iterator[tuple[str, np.ndarray]]:
    """``(id, HxWx3 uint8)`` for ``n`` samples of ``gen`` with ``seed``; ids like
    ``dcgan_train_00012``. Sampled when first iterated (``gen.sample`` batches the forward
    passes; the set itself, n x S x S x 3 bytes, is small for the embedded world)."""
    images = gen.sample(n, seed)
    for i in range(n):
        yield f"{gen.name}_{split}_{i:05d}", images[i]


def build_fake_world(cfg: WorldConfig, root: str | Path | None = None, *, force: bool = False,
                     retrain: bool = False, progress: bool = True,
                     device: str | None = None) -> dict[str, Any]:
    """Sample and write every fake set of the world; returns the manifest.

    ``root`` defaults to ``paths.world_dir(cfg.name)`` and must already hold the real world
    (``embedded.build_real_world``); each fake split gets exactly the real split's count.
    Generators are trained or loaded by ``generators.get_generator`` (``retrain`` forces
    training); ``force`` rewrites sets even when they verify. ``device``: where generators run
    (default CUDA when present).
    """
    root = Path(root) if root is not None else paths.world_dir(cfg.name)
    manifest = read_manifest(root)
    world = manifest.get("world")
    if world is None or not any(k.startswith("real/") for k in manifest["sets"]):
        raise FileNotFoundError(
            f"{root}: no real world here; build it first with "
            "patchforensics.embedded.build_real_world(cfg) (or `patchforensics world`)")
    built = world.get("config", {})
    wanted = to_dict(cfg)
    if built != wanted:
        diff = {k: (built.get(k), v) for k, v in wanted.items() if built.get(k) != v}
        raise ValueError(f"{root}: the real world was built with another config "
                         f"(field: (built, requested)) {diff}")
    jobs = [(d, g) for d in REAL_DATASETS for g in world_generators(d)]
    for dataset, name in progress_bar(jobs, desc="fake sets", disable=not progress, unit="set"):
        real_key = f"real/{dataset}"
        if real_key not in manifest["sets"]:
            raise FileNotFoundError(f"{root}: {real_key} missing from the manifest; rebuild "
                                    "the real world")
        real = manifest["sets"][real_key]
        counts = {s: int(real["splits"][s]["count"]) for s in SPLITS}
        seeds = {s: split_seed(cfg.seed, dataset, name, s) for s in SPLITS}
        gen = get_generator(dataset, name, world_root=root, smoke=cfg.smoke, device=device,
                            force=retrain, progress=progress)
        key = f"fake/{dataset}/{name}"
        fp = fingerprint({"set": key, "size": cfg.size, "counts": counts, "seeds": seeds,
                          "weights": gen.checkpoint_sha256, "pipeline": PIPELINE,
                          "real": real.get("fingerprint")})
        if not force and set_is_complete(root, key, fp):
            continue
        meta = {"kind": "fake", "dataset": dataset, "generator": name, "fingerprint": fp,
                "seeds": seeds, "native_size": gen.size, "channels": gen.channels,
                "weights_sha256": gen.checkpoint_sha256,
                "weights": str(gen.checkpoint) if gen.checkpoint else gen.info.get("weights"),
                "generator_source": gen.info.get("source"), "world_seed": cfg.seed,
                "provenance": run_record()}
        splits = {s: fake_items(gen, counts[s], seeds[s], s) for s in SPLITS}
        write_set(root, key, splits, size=cfg.size, meta=meta, world=world, progress=progress)
        manifest = read_manifest(root)
    return read_manifest(root)


def world_config_of(root: str | Path) -> WorldConfig:
    """The ``WorldConfig`` a built world was made with (from its manifest)."""
    world = read_manifest(root).get("world")
    if world is None:
        raise FileNotFoundError(f"{root}: no manifest with a world config")
    return from_dict(WorldConfig, world["config"])

