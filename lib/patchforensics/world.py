"""The fake half of the embedded world (docs/world.md; Chai et al. 2020, Sec. 3.1).

For every (dataset, generator) of the default zoo, sample as many fakes per split as the real
set has (the test split: ``WorldConfig.test_fakes``, 500 by default, so a test AUC is decided by
more than 100 fakes), and write them through the SAME parity pipeline as the reals
(``embedded.write_set``: centre crop, LANCZOS to the world size, PNG; generated images first
get the reals' resampling history, ``WorldConfig.fake_resample``), to
``<world>/fake/<dataset>/<generator>/{train,val,test}/<generator>_<split>_<i>.png``. Identical
preprocessing leaves the detector nothing to learn but the pixels.

The paper trains on samples *plus inversions of the real training images*, so content cannot
separate the classes. For every generator of ``WorldConfig.invert`` that has a differentiable
latent, the real images of every split are inverted by latent optimisation
(``generators.invert_images``) and written to ``<world>/fake/<dataset>/<generator>_inverted/``
under the *same file names* as the reals they reconstruct (index pairing), with their PSNR to
the reals in the manifest. Inversions are cached next to the generator's weights
(``inversions_<fingerprint>.pt``, saved after every split), so a rebuilt world does not redo
them and a killed build resumes at the split it was in.

Each split gets its own seed, derived from (world seed, dataset, generator, split), so no two
sets share latents. A set's fingerprint covers the generator's weights (SHA-256), the seeds,
the counts and the pipeline: a rerun skips every set whose files still verify.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score

from . import paths
from .audit import grid_auc, grid_gain
from .config import WorldConfig, fingerprint, from_dict, to_dict
from .data import load_folder
from .embedded import (
    REAL_DATASETS,
    SPLITS,
    built_real_world,
    fake_jpeg_history,
    read_manifest,
    set_is_complete,
    write_set,
)
from .generators import (
    CONTROLS,
    Generator,
    InversionConfig,
    TorchGenerator,
    get_generator,
    psnr_uint8,
    world_generators,
)
from .generators.training import load_torch, save_torch
from .jpeg import JpegHistory, ijg_history
from .layout import fake_key, inverted, real_key
from .preprocess import PIPELINE, prepare_array, prepare_generated
from .progress import bar as progress_bar
from .provenance import run_record
from .quality import load_split, radial_spectra, spectrum_distance


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
    """Sample and write every fake set of the world, then its inversion sets; returns the
    manifest.

    ``root`` defaults to ``paths.world_dir(cfg.name)`` and must already hold the real world
    (``embedded.build_real_world``); the train and val fake splits get the real split's count,
    the test split :func:`fake_counts`. Generators are trained or loaded by
    ``generators.get_generator`` (``retrain`` forces training); ``force`` rewrites sets even
    when they verify (cached inversions are reused unless ``retrain``). ``device``: where
    generators run (default CUDA when present). Manifest entries of fake sets carry
    ``resample`` (the resampling history) and ``real_counts``; inversion sets
    (``fake/<dataset>/<generator>_inverted``) carry ``inversion`` (config, cache file),
    ``paired_with`` (the real set), ``real_files`` ({split: {name: SHA-256 of the real}}) and
    ``psnr`` ({split: {mean, median, min, max}}, dB, stored image vs real image).
    """
    root = Path(root) if root is not None else paths.world_dir(cfg.name)
    jobs = [(d, g) for d in REAL_DATASETS for g in world_generators(d)]
    manifest = built_real_world(root, cfg, sorted({d for d, _ in jobs}))
    world = manifest["world"]
    for dataset, name in progress_bar(jobs, desc="fake sets", disable=not progress, unit="set"):
        real_set = real_key(dataset)
        gen = get_generator(dataset, name, world_root=root, smoke=cfg.smoke, device=device,
                            force=retrain, progress=progress)
        _write_fake_set(cfg, root, dataset, name, gen, manifest["sets"][real_set], world,
                        force=force, progress=progress)
        if name in cfg.invert and isinstance(gen, TorchGenerator):
            build_inversion_set(cfg, root, gen, force=force, recompute=retrain,
                                progress=progress)
        manifest = read_manifest(root)
    # Controls are part of the zoo (trained here, so a cached zoo holds them) but write no set
    # here: notebook 05 samples its control like the finetuned generator it is compared with.
    for dataset, name in [(d, g) for d in REAL_DATASETS for g in CONTROLS.get(d, ())]:
        get_generator(dataset, name, world_root=root, smoke=cfg.smoke, device=device,
                      force=retrain, progress=progress)
    return read_manifest(root)


def _write_fake_set(cfg: WorldConfig, root: Path, dataset: str, name: str, gen: Generator,
                    real: dict[str, Any], world: dict[str, Any], *, force: bool,
                    progress: bool) -> None:
    """Sample and write ``fake/<dataset>/<name>`` with ``gen`` (skipped when it verifies,
    unless ``force``), with the counts of its dataset's reals (manifest entry ``real``)."""
    real_counts = {s: int(real["splits"][s]["count"]) for s in SPLITS}
    counts = fake_counts(cfg, real_counts)
    seeds = {s: split_seed(cfg.seed, dataset, name, s) for s in SPLITS}
    key = fake_key(dataset, name)
    jpeg = fake_jpeg_history(cfg, real)
    fp = fingerprint({"set": key, "size": cfg.size, "counts": counts, "seeds": seeds,
                      "weights": gen.checkpoint_sha256, "pipeline": PIPELINE,
                      "resample": cfg.fake_resample, "real": real.get("fingerprint"),
                      "jpeg": jpeg.to_dict() if jpeg else None})
    if force or not set_is_complete(root, key, fp):
        meta = {"kind": "fake", "dataset": dataset, "generator": name, "fingerprint": fp,
                "seeds": seeds, "native_size": gen.size, "channels": gen.channels,
                "weights_sha256": gen.checkpoint_sha256,
                "weights": str(gen.checkpoint) if gen.checkpoint else gen.info.get("weights"),
                "generator_source": gen.info.get("source"), "world_seed": cfg.seed,
                "real_counts": real_counts, "provenance": run_record()}
        splits = {s: fake_items(gen, counts[s], seeds[s], s) for s in SPLITS}
        write_set(root, key, splits, size=cfg.size, meta=meta, world=world,
                  progress=progress, history=cfg.fake_resample, jpeg=jpeg)


def fake_counts(cfg: WorldConfig, real_counts: dict[str, int]) -> dict[str, int]:
    """Fake images per split: the real count for train and val (balanced training), and
    ``cfg.test_fakes`` for test (0: the real count)."""
    counts = {s: int(real_counts[s]) for s in SPLITS}
    if cfg.test_fakes:
        counts["test"] = int(cfg.test_fakes)
    return counts


def inversion_config(cfg: WorldConfig) -> InversionConfig:
    """The inversion settings of a world (steps and restarts from ``cfg``, seed = world seed)."""
    return InversionConfig(steps=cfg.invert_steps, restarts=cfg.invert_restarts, seed=cfg.seed)


def _real_split(root: Path, dataset: str, split: str) -> tuple[np.ndarray, list[Path]]:
    images, files, _ = load_folder(root / real_key(dataset) / split)
    return images, files


def invert_reals(gen: TorchGenerator, root: str | Path, inv: InversionConfig, *,
                 recompute: bool = False, progress: bool = True
                 ) -> tuple[dict[str, dict[str, Any]], Path]:
    """Inversions of every real split of ``gen.dataset`` in world ``root``, cached.

    Returns ``({split: {"names": [real file names], "images": N x S x S x 3 uint8 at the
    generator's size, "z": N x latent_dim float32, "psnr": N float64 dB at the generator's
    size}}, cache file)``. The cache ``<generator run dir>/inversions_<fingerprint>.pt`` is
    keyed by the weights, the inversion config and the real set's fingerprint; it is rewritten
    atomically after each split, so an interrupted call resumes at the first missing split.
    ``recompute``: ignore the cache.
    """
    root = Path(root)
    real = read_manifest(root)["sets"][real_key(gen.dataset)]
    fp = fingerprint({"weights": gen.checkpoint_sha256, "inversion": to_dict(inv),
                      "real": real.get("fingerprint"), "size": gen.size})
    folder = Path(gen.info.get("run_dir") or paths.world_checkpoints_dir(root) / "inversions"
                  / root.name / gen.dataset / gen.name)
    cache = folder / f"inversions_{fp}.pt"
    done: dict[str, dict[str, Any]] = {}
    if cache.exists() and not recompute:
        try:
            state = load_torch(cache)
            if state.get("fingerprint") == fp:
                done = state["splits"]
        except (RuntimeError, EOFError, KeyError):  # a damaged cache is recomputed
            done = {}
    for split in SPLITS:
        images, files = _real_split(root, gen.dataset, split)
        names = [f.name for f in files]
        if split in done and list(done[split]["names"]) == names:
            continue
        if images.shape[1] != gen.size:  # trained generators already work at the world size
            images = np.stack([prepare_array(a, gen.size) for a in images])
        t0 = time.perf_counter()
        out, z, psnr = gen.invert(images, inv, progress=progress)
        done[split] = {"names": names, "images": torch.from_numpy(out), "z": z,
                       "psnr": torch.from_numpy(psnr), "seconds": time.perf_counter() - t0}
        folder.mkdir(parents=True, exist_ok=True)
        save_torch({"fingerprint": fp, "config": to_dict(inv), "splits": done}, cache)
    return {s: {**d, "images": np.asarray(d["images"]), "psnr": np.asarray(d["psnr"])}
            for s, d in done.items() if s in SPLITS}, cache


def build_inversion_set(cfg: WorldConfig, root: str | Path, gen: TorchGenerator, *,
                        force: bool = False, recompute: bool = False,
                        progress: bool = True) -> dict[str, Any]:
    """Write ``fake/<dataset>/<generator>_inverted`` of world ``root`` (see
    :func:`build_fake_world`); skipped when complete. Returns the set's manifest entry."""
    root = Path(root)
    manifest = read_manifest(root)
    real_set = real_key(gen.dataset)
    real = manifest["sets"][real_set]
    inv = inversion_config(cfg)
    key = fake_key(gen.dataset, inverted(gen.name))
    jpeg = fake_jpeg_history(cfg, real)
    fp = fingerprint({"set": key, "size": cfg.size, "inversion": to_dict(inv),
                      "weights": gen.checkpoint_sha256, "pipeline": PIPELINE,
                      "resample": cfg.fake_resample, "real": real.get("fingerprint"),
                      "jpeg": jpeg.to_dict() if jpeg else None})
    if not force and not recompute and set_is_complete(root, key, fp):
        return manifest["sets"][key]
    result, cache = invert_reals(gen, root, inv, recompute=recompute, progress=progress)
    psnr: dict[str, dict[str, float]] = {}
    for split in SPLITS:
        reals, _ = _real_split(root, gen.dataset, split)
        stored = np.stack([prepare_generated(a, cfg.size, cfg.fake_resample, jpeg)
                           for a in result[split]["images"]])
        p = psnr_uint8(stored, reals)
        psnr[split] = {"mean": float(p.mean()), "median": float(np.median(p)),
                       "min": float(p.min()), "max": float(p.max()),
                       "native_mean": float(result[split]["psnr"].mean())}
    meta = {"kind": "fake", "dataset": gen.dataset, "generator": inverted(gen.name),
            "inverted_from": gen.name, "fingerprint": fp, "native_size": gen.size,
            "channels": gen.channels, "weights_sha256": gen.checkpoint_sha256,
            "weights": str(gen.checkpoint) if gen.checkpoint else None,
            "inversion": {"config": to_dict(inv), "cache": str(cache),
                          "seconds": {s: float(result[s].get("seconds", 0.0)) for s in SPLITS}},
            "paired_with": real_set,
            "real_files": {s: dict(real["splits"][s]["files"]) for s in SPLITS},
            "psnr": psnr, "world_seed": cfg.seed, "provenance": run_record()}
    splits = {s: [(Path(n).stem, a) for n, a in zip(result[s]["names"], result[s]["images"],
                                                       strict=True)] for s in SPLITS}
    return write_set(root, key, splits, size=cfg.size, meta=meta,
                     world=read_manifest(root)["world"], progress=progress,
                     history=cfg.fake_resample, jpeg=jpeg)


def world_config_of(root: str | Path) -> WorldConfig:
    """The ``WorldConfig`` a built world was made with (from its manifest)."""
    world = read_manifest(root).get("world")
    if world is None:
        raise FileNotFoundError(f"{root}: no manifest with a world config")
    return from_dict(WorldConfig, world["config"])



# --- the resampling-parity ablation (issue: reals and fakes with the same resampling history) ---

def spectrum_auc(reals: np.ndarray, fakes: np.ndarray, *, folds: int = 5, seed: int = 0) -> float:
    """Cross-validated AUC of a logistic regression on the radially averaged log spectrum
    (``quality.radial_spectra``), real vs fake: 0.5 = the spectra do not tell them apart.

    ``reals``, ``fakes``: N x S x S x 3 uint8 (counts may differ; folds are stratified).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler


    x = np.concatenate([radial_spectra(reals), radial_spectra(fakes)])[:, 1:]  # no DC ring
    y = np.r_[np.zeros(len(reals), int), np.ones(len(fakes), int)]
    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    cv = StratifiedKFold(min(folds, int(np.bincount(y).min())), shuffle=True, random_state=seed)
    scores = cross_val_predict(model, x, y, cv=cv, method="predict_proba")[:, 1]
    return float(roc_auc_score(y, scores))


def grid_gains(images: np.ndarray, history: JpegHistory) -> np.ndarray:
    """``audit.grid_gain`` of each of N x S x S x 3 uint8 images for the reals' ``history``:
    N float (NaN where none is measurable)."""
    return np.array([grid_gain(x, history) for x in images], dtype=np.float64)


def resampling_ablation(world_root: str | Path | None = None, *, split: str = "train",
                        histories: tuple[str, ...] = ("native", "updown", "jpeg"),
                        seed: int = 0, generators: list[Generator] | None = None,
                        device: str | None = None, progress: bool = False) -> pd.DataFrame:
    """What the fakes' history changes: one row per (dataset, generator, history).

    For every generator of the default zoo, samples as many fakes as ``real/<dataset>/<split>``
    has (the split's own sampling seed), puts them through each history in memory
    (``preprocess.prepare_generated``; nothing is written) and compares them with those reals.
    Histories: ``native`` and ``updown`` (resampling only, no JPEG) and ``jpeg`` (the reals'
    whole history, JPEG included: the default world's; only for reals that were JPEGs).
    Columns: dataset, generator, history, n_real, n_fake, ``spectrum_distance`` /
    ``spectrum_distance_high`` (``quality.spectrum_distance``, log10 units), ``spectrum_auc``
    (:func:`spectrum_auc`, cross-validated), ``jpeg_grid_auc`` (``audit.grid_auc``: how well
    "lacks the reals' JPEG block grid" alone separates the sets, the audit's ``jpeg_grid``;
    NaN for gray sets). Generators are loaded from the
    world's cache (trained first if missing), or ``generators`` (ready generators, each
    compared with the reals of its ``dataset``). ``world_root`` defaults to the default world.
    """
    root = Path(world_root) if world_root is not None else paths.world_dir(WorldConfig().name)
    cfg = world_config_of(root)
    manifest = read_manifest(root)
    if generators is None:
        generators = [get_generator(d, g, world_root=root, smoke=cfg.smoke, device=device,
                                    progress=progress)
                      for d in REAL_DATASETS for g in world_generators(d)]
    rows = []
    real_sets: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # dataset -> (images, grid)
    for gen in generators:
        dataset, name = gen.dataset, gen.name
        # the reals' JPEG history whatever cfg.fake_history says: the ablation shows both
        jpeg = manifest["sets"][real_key(dataset)].get("jpeg_source")
        grid_history = JpegHistory.from_dict(jpeg) if jpeg else ijg_history()
        if dataset not in real_sets:
            images = load_split(root, real_key(dataset), split)
            real_sets[dataset] = images, grid_gains(images, grid_history)
        reals, real_grid = real_sets[dataset]
        native = gen.sample(len(reals), split_seed(cfg.seed, dataset, name, split))
        for history in histories:
            if history == "jpeg" and not jpeg:
                continue  # reals that never were JPEGs: nothing to copy
            fakes = np.stack([prepare_generated(a, cfg.size, cfg.fake_resample,
                                                JpegHistory.from_dict(jpeg))
                              if history == "jpeg" else prepare_generated(a, cfg.size, history)
                              for a in native])
            rows.append({"dataset": dataset, "generator": name, "history": history,
                         "n_real": len(reals), "n_fake": len(fakes),
                         "spectrum_distance": spectrum_distance(fakes, reals),
                         "spectrum_distance_high": spectrum_distance(fakes, reals,
                                                                     high_only=True),
                         "spectrum_auc": spectrum_auc(reals, fakes, seed=seed),
                         "jpeg_grid_auc": grid_auc(real_grid,
                                                   grid_gains(fakes, grid_history))})
    return pd.DataFrame(rows)


def inversion_table(manifest: dict[str, Any]) -> pd.DataFrame:
    """The inverted sets of a world manifest with their reconstruction quality: one row per
    (set, split) with the generator, the count and the PSNR (dB) of the stored inversions
    against their reals (mean, median, min)."""
    rows = []
    for key, entry in sorted(manifest.get("sets", {}).items()):
        if "psnr" not in entry:
            continue
        for split, q in entry["psnr"].items():
            rows.append({"set": key, "generator": entry.get("inverted_from", key),
                         "split": split,
                         "count": entry.get("splits", {}).get(split, {}).get("count"),
                         "psnr_mean": q.get("mean"), "psnr_median": q.get("median"),
                         "psnr_min": q.get("min")})
    return pd.DataFrame(rows)

