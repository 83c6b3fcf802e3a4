"""Do the fakes look like faces? The realism table of notebook 01 (issue 23).

Chai et al. (2020, Sec. 3.1) study which *local* artifacts give away fakes that look real: their
ProGAN, StyleGAN and Glow samples are photographs to a human eye. The embedded world's small
generators must be measured, not assumed, to be there. Per fake set of a world (a generator's
samples, or its inversions of the reals) on the test split:

- ``face_found``: the share of images in which MediaPipe's face mesh finds a face, exactly the
  "found" of the project's face parser (``segment.parse_set``; its cache is shared with
  notebook 04). The goal, pre-registered in ``generators.REALISM_GOAL`` before the defaults
  were measured, is >= 0.9 for every generator trained here; reals score ~1.0.
- ``fd_pca``: a Frechet distance (FID's formula, Heusel et al. 2017) between Gaussians fitted to
  the images' coordinates on the top ``PCA_DIM`` principal components of the REAL TRAINING faces
  (pixels in [0, 1]; units: squared pixel-L2). No pretrained ImageNet network is available
  offline, and a randomly initialised one measures nothing in particular; the principal
  components of real faces are the directions in which faces vary (pose, lighting, hair, face
  layout: what the face mesh sees), so the distance asks whether a generator reproduces the
  faces' global variation. It is blind to fine texture, which is fine here: those artifacts are
  what the detectors study, not realism. The GMM is fitted in a PCA space of the same images,
  so it is favoured; read its value with that in mind. The ``real (val)`` row (unseen reals
  against the test reals) is the floor to read every value against. FD is biased upwards
  for small sets, so every row's FD uses as many images as the real test split holds (the
  first ones of a larger fake set): the rows share one bias.
- ``near_copy_fraction`` and ``median_copy_ratio``: the memorization check of
  ``quality.memorization`` (a sample that copies a training face is not a generated face).
- ``psnr`` (inversion sets: the mean PSNR of the stored inversions against their reals, from
  the manifest) and ``psnr_random`` (a generator's random samples against the same reals, the
  baseline an inversion must clearly beat).

``meets_goal`` is True/False for trained generators' samples and empty elsewhere;
:func:`record_realism` warns about every miss and writes ``realism.json`` beside the world, so
a generator that misses the goal is reported, never silently used.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import linalg

from . import paths
from .embedded import built_datasets, read_manifest
from .generators import REALISM_GOAL, TRAINED, psnr_uint8
from .images import atomic_write_text
from .layout import INVERTED, fake_prefix, real_key
from .quality import flatten_unit, load_split, memorization
from .segment import FaceParser, ParserConfig, parse_set
from .stats import wilson_interval

PCA_DIM = 32  # principal components of the real training faces (the distance's feature space)


def face_found(images: np.ndarray, cfg: ParserConfig | None = None) -> np.ndarray:
    """N bool: whether the face mesh finds a face in each N x H x W x 3 uint8 image (the
    parser's "found", without building label maps)."""
    if images.ndim != 4 or images.shape[3] != 3 or images.dtype != np.uint8:
        raise ValueError(f"expected N x H x W x 3 uint8, got {images.shape} {images.dtype}")
    with FaceParser(cfg) as parser:
        return np.array([parser.landmarks(im) is not None for im in images], bool)


def pca_basis(train: np.ndarray, dim: int = PCA_DIM) -> tuple[np.ndarray, np.ndarray]:
    """(mean D, basis k x D) of the top ``k = min(dim, N - 1)`` principal components of
    N x H x W x 3 uint8 ``train`` images on [0, 1] pixels (D = H*W*3); rows orthonormal."""
    x = flatten_unit(train)
    mean = x.mean(0)
    k = min(dim, len(x) - 1)
    if k < 1:
        raise ValueError(f"need at least 2 training images for a PCA basis, got {len(x)}")
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    return mean, vt[:k]


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to feature rows ``a`` (N x k) and ``b``
    (M x k): |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)); >= 0, 0 for equal moments."""
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(f"expected N x k and M x k features (N, M >= 2), got {a.shape}, "
                         f"{b.shape}")
    mu = a.mean(0) - b.mean(0)
    sa, sb = np.atleast_2d(np.cov(a.T)), np.atleast_2d(np.cov(b.T))
    root = linalg.sqrtm(sa @ sb)
    root = root.real if np.iscomplexobj(root) else root  # numerical noise of sqrtm
    return float(max(mu @ mu + np.trace(sa + sb - 2 * root), 0.0))


def fd_pca(images: np.ndarray, reals: np.ndarray, basis: tuple[np.ndarray, np.ndarray]) -> float:
    """:func:`frechet_distance` of two N x H x W x 3 uint8 sets in the PCA space ``basis``
    (from :func:`pca_basis`)."""
    mean, vt = basis
    return frechet_distance((flatten_unit(images) - mean) @ vt.T,
                            (flatten_unit(reals) - mean) @ vt.T)


def set_realism(images: np.ndarray, found: np.ndarray, train: np.ndarray, test: np.ndarray,
                basis: tuple[np.ndarray, np.ndarray]) -> dict[str, float]:
    """The table's numbers for one set: ``images`` N x H x W x 3 uint8 with ``found`` N bool
    from the face mesh, against the real ``train`` (memorization) and ``test`` reals. The
    distance uses the first ``len(test)`` images only (one sample size, one FD bias)."""
    mem = memorization(images, train, test)
    m = min(len(images), len(test))
    lo, hi = wilson_interval(int(np.sum(found)), len(found))
    return {"n": len(images), "face_found": float(np.mean(found)),
            "face_found_low": float(lo), "face_found_high": float(hi),
            "fd_pca": fd_pca(images[:len(test)], test, basis),
            "near_copy_fraction": mem["near_copy_fraction"],
            "median_copy_ratio": mem["median_copy_ratio"],
            "psnr_random": float(psnr_uint8(images[:m], test[:m]).mean())}


def _fake_sets(manifest: dict[str, Any], dataset: str) -> list[tuple[str, dict[str, Any]]]:
    """The generated sets (samples and inversions) of one dataset: manipulations excluded."""
    return [(k, e) for k, e in sorted(manifest["sets"].items())
            if k.startswith(fake_prefix(dataset)) and "manipulation" not in e]


def realism_table(world_root: str | Path, *, split: str = "test",
                  cfg: ParserConfig | None = None, progress: bool = False) -> pd.DataFrame:
    """One row per dataset's ``real (val)`` baseline and per generated set of a built world.

    Columns: dataset, generator (``dcgan``, ``dcgan_inverted``, ...), kind (``real``,
    ``samples``, ``inversions``), trained (the generator was trained here), n, face_found
    (0..1) with its 95 % Wilson interval (face_found_low, face_found_high), fd_pca,
    near_copy_fraction, median_copy_ratio, psnr (inversions only, dB),
    psnr_random (dB; for inversions: their generator's samples vs the same reals), goal,
    meets_goal (trained generators' samples only). See the module docstring.
    """
    root = Path(world_root)
    manifest = read_manifest(root)
    rows: list[dict[str, Any]] = []
    datasets = built_datasets(manifest)
    for dataset in datasets:
        train = load_split(root, real_key(dataset), "train")
        test = load_split(root, real_key(dataset), split)
        basis = pca_basis(train)
        base = "val" if split != "val" else "test"
        sets = [(real_key(dataset), base, {})] + [(k, split, e)
                                                   for k, e in _fake_sets(manifest, dataset)]
        for key, s, entry in sets:
            images = load_split(root, key, s)
            found = parse_set(root, key, s, cfg=cfg, progress=progress)[1]
            name = f"real ({base})" if key.startswith("real/") else key.split("/")[2]
            source = entry.get("inverted_from")
            row = {"dataset": dataset, "generator": name,
                   "kind": "real" if not entry else ("inversions" if source else "samples"),
                   "trained": (source or name) in TRAINED,
                   **set_realism(images, found, train, test, basis)}
            row["psnr"] = (entry.get("psnr", {}).get(split, {}).get("mean", np.nan)
                           if source else np.nan)
            rows.append(row)
    return with_goal(pd.DataFrame(rows))


def with_goal(table: pd.DataFrame) -> pd.DataFrame:
    """Add ``goal`` and ``meets_goal`` (trained generators' samples), and put each inversion
    set's ``psnr_random`` from its generator's samples row (the baseline it must beat)."""
    goal = REALISM_GOAL["face_found"]
    judged = (table.kind == "samples") & table.trained
    table["goal"] = np.where(judged, goal, np.nan)
    table["meets_goal"] = pd.Series(np.where(judged, table.face_found >= goal, None),
                                    dtype="object")
    samples = table[table.kind == "samples"].set_index(["dataset", "generator"]).psnr_random
    for i in table.index[table.kind == "inversions"]:
        key = (table.at[i, "dataset"], table.at[i, "generator"].removesuffix(INVERTED))
        table.at[i, "psnr_random"] = samples.get(key, np.nan)
    table.loc[table.kind == "real", "psnr_random"] = np.nan
    return table


def misses(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of trained generators that miss the pre-registered realism goal."""
    return table[table.meets_goal.eq(False)]


def record_realism(table: pd.DataFrame, world_root: str | Path, *,
                   reference: bool = False) -> list[str]:
    """Warn about every generator that misses the goal, write ``<world>/realism.json``
    (the goal, the misses, every row) and ``results/reference/realism.csv`` when
    ``reference`` (the default world only: a smoke run must not overwrite the committed
    numbers). Returns the missing sets as ``"dataset/generator"``."""
    missed = [f"{r.dataset}/{r.generator}" for r in misses(table).itertuples()]
    for name in missed:
        row = table[(table.dataset + "/" + table.generator) == name].iloc[0]
        warnings.warn(f"{name}: the face mesh found a face in {row.face_found:.0%} of its "
                      f"samples, below the pre-registered goal {REALISM_GOAL['face_found']:.0%}",
                      stacklevel=2)
    record = {"goal": REALISM_GOAL, "misses": missed,
              "rows": json.loads(table.to_json(orient="records"))}
    atomic_write_text(Path(world_root) / "realism.json", json.dumps(record, indent=1))
    if reference:
        atomic_write_text(paths.reference_dir() / "realism.csv",
                          table.to_csv(index=False, float_format="%.4g"))
    return missed
