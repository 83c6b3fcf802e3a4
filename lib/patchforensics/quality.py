"""Sanity checks of a generator's samples before a detector is trained on them.

Chai et al. (2020) detect fakes from *local artifacts* (Sec. 4); two failure modes of a small
embedded world would make that experiment meaningless, and this module measures both:

- **memorization**: a generator trained on 800 faces may copy them. Each sample's nearest
  training image (L2 on [0, 1] pixels) is compared with how far real *test* images sit from the
  training set; a sample closer than the ``near_copy_quantile`` of the real-test distances,
  and much closer to that training image than to the next ones, is a near-copy.
- **trivial cues**: a global statistic that tells fakes apart without looking at artifacts: the
  mean colour, colourfulness (gray reals must get gray fakes), and the radially averaged log
  power spectrum (upsampling leaves spectral peaks, Durall et al. 2020; over-smooth models
  lack high frequencies). Each distance comes with a real-vs-real baseline to read it against.

Plain numpy on N x H x W x 3 uint8 arrays; ``quality_table`` reads a built world into a
pandas table for the notebooks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .data import load_folder
from .embedded import built_datasets, read_manifest
from .layout import fake_prefix, real_key

LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601 weights, as PIL's convert("L")


def _check(images: np.ndarray, what: str) -> None:
    if images.ndim != 4 or images.shape[3] != 3 or images.dtype != np.uint8:
        raise ValueError(f"{what}: expected N x H x W x 3 uint8, got {images.shape} "
                         f"{images.dtype}")
    if len(images) == 0:
        raise ValueError(f"{what}: no images")


def flatten_unit(images: np.ndarray) -> np.ndarray:
    """N x H x W x 3 uint8 -> N x (H*W*3) float64 in [0, 1] (float64: exact distances)."""
    _check(images, "images")
    return images.reshape(len(images), -1).astype(np.float64) / 255.0


def knn_distances(queries: np.ndarray, reference: np.ndarray, k: int = 1, *,
                  batch: int = 256) -> np.ndarray:
    """L2 distances from each query image to its ``k`` nearest reference images, ascending.

    ``queries``: N x H x W x 3 uint8; ``reference``: M x H x W x 3 uint8 (same H, W; M >= k).
    Returns N x k float64 on the [0, 1] pixel scale (identical images: 0; the largest possible
    is ``sqrt(H*W*3)``). Exact (float64 squared-norm expansion, batched over queries).
    """
    _check(queries, "queries")
    _check(reference, "reference")
    if queries.shape[1:] != reference.shape[1:]:
        raise ValueError(f"queries {queries.shape[1:]} and reference {reference.shape[1:]} "
                         "differ in size")
    if not 1 <= k <= len(reference):
        raise ValueError(f"k must be in 1..{len(reference)} (the reference size), got {k}")
    ref = flatten_unit(reference)
    ref_sq = (ref**2).sum(1)
    out = np.empty((len(queries), k))
    for i in range(0, len(queries), batch):
        q = flatten_unit(queries[i:i + batch])
        d2 = (q**2).sum(1)[:, None] + ref_sq[None, :] - 2 * q @ ref.T
        part = np.partition(d2, k - 1, axis=1)[:, :k] if k < len(reference) else d2
        out[i:i + batch] = np.sqrt(np.clip(np.sort(part, axis=1), 0, None))
    return out


def nn_distances(queries: np.ndarray, reference: np.ndarray, *, batch: int = 256) -> np.ndarray:
    """L2 distance from each query image (N x H x W x 3 uint8) to its nearest reference image:
    N float64 on the [0, 1] pixel scale (see :func:`knn_distances`)."""
    return knn_distances(queries, reference, 1, batch=batch)[:, 0]


def with_mirrors(images: np.ndarray) -> np.ndarray:
    """``images`` and their horizontal mirrors (2N x H x W x 3): generators trained with flips
    may reproduce a training face mirrored, which is still a copy."""
    return np.concatenate([images, images[:, :, ::-1]])


def memorization(samples: np.ndarray, train: np.ndarray, test: np.ndarray, *,
                 near_copy_quantile: float = 0.01, copy_ratio: float = 0.5,
                 neighbours: int = 10, mirror: bool = True) -> dict[str, float]:
    """How close generator samples sit to the training reals, relative to unseen reals.

    ``samples``, ``train``, ``test``: N x H x W x 3 uint8 (fakes; the generator's training
    reals; held-out reals). ``mirror``: mirrored training images count as copies too.

    A sample is a **near-copy** when both hold: (1) it is closer to its nearest training image
    than the ``near_copy_quantile`` quantile of the held-out reals' nearest-training distances
    (``near_copy_threshold``), and (2) it is much closer to that one training image than to
    the next ``neighbours`` ones: d1 < ``copy_ratio`` x mean(d2..d11) (Carlini et al. 2023's
    copy test). (2) is needed because L2 favours blur: a blurry, average-looking face sits
    close to *every* training face and passes (1) alone, but not (2).

    Returns ``median_fake_to_train`` and ``median_test_to_train`` (NN L2 on [0, 1] pixels),
    ``median_ratio`` (fake / test; < 1: closer than new real faces are, from copying *or*
    blur), ``near_copy_threshold``, ``close_fraction`` (share of samples meeting (1) alone),
    ``near_copy_fraction`` (share meeting both; ~0 for a generator that does not copy),
    ``median_copy_ratio`` (median d1 / mean(d2..d11) of the samples; near 1 for new faces,
    near 0 for copies), ``min_fake_to_train`` and ``median_train_vs_test`` (per sample:
    distance to the nearest training real / to the nearest held-out real; compare with a real
    held-out set's value, ``quality_table``'s real row, as the larger set is always closer).
    """
    if not 0 < near_copy_quantile < 1:
        raise ValueError(f"near_copy_quantile must be in (0, 1), got {near_copy_quantile}")
    ref = with_mirrors(train) if mirror else train
    k = min(neighbours + 1, len(ref))
    d_fake = knn_distances(samples, ref, k)
    d_test = nn_distances(test, ref)
    d_fake_test = nn_distances(samples, with_mirrors(test) if mirror else test)
    nearest = d_fake[:, 0]
    rest = d_fake[:, 1:].mean(1) if k > 1 else np.full(len(nearest), np.inf)
    copy_ratios = nearest / np.maximum(rest, 1e-12)
    threshold = float(np.quantile(d_test, near_copy_quantile))
    close = nearest < threshold
    med_fake, med_test = float(np.median(nearest)), float(np.median(d_test))
    return {"n_samples": len(samples), "n_test": len(test),
            "median_fake_to_train": med_fake, "median_test_to_train": med_test,
            "median_ratio": med_fake / med_test if med_test > 0 else float("nan"),
            "near_copy_threshold": threshold,
            "close_fraction": float(close.mean()),
            "near_copy_fraction": float((close & (copy_ratios < copy_ratio)).mean()),
            "median_copy_ratio": float(np.median(copy_ratios)),
            "min_fake_to_train": float(nearest.min()),
            "median_train_vs_test": float(np.median(nearest / np.maximum(d_fake_test, 1e-12)))}


def mean_color(images: np.ndarray) -> np.ndarray:
    """Mean RGB of a set: 3 floats in [0, 1]."""
    _check(images, "images")
    return images.reshape(-1, 3).mean(0) / 255.0


def colorfulness(images: np.ndarray) -> float:
    """Mean over pixels of the std across R, G, B, in [0, 1] units; 0 for gray images."""
    _check(images, "images")
    per_image = []
    for im in images:  # exact integer variance (9 var = 3 sum c^2 - (sum c)^2): gray gives 0.0
        c = im.astype(np.int64)
        nine_var = 3 * (c**2).sum(axis=2) - c.sum(axis=2) ** 2
        per_image.append(np.sqrt(nine_var).mean() / 3 / 255.0)
    return float(np.mean(per_image))


def radial_spectra(images: np.ndarray) -> np.ndarray:
    """Per-image radially averaged log10 power spectrum of the luminance: N x R float64,
    R = round(S / sqrt(2)) + 1 (see :func:`radial_spectrum`, their mean)."""
    _check(images, "images")
    n, h, w, _ = images.shape
    if h != w:
        raise ValueError(f"radial_spectrum expects square images, got {h}x{w}")
    y = (images.astype(np.float64) / 255.0) @ LUMA
    y -= y.mean(axis=(1, 2), keepdims=True)
    power = np.abs(np.fft.fft2(y)) ** 2 / (h * w)
    f = np.fft.fftfreq(h) * h
    radius = np.rint(np.sqrt(f[:, None] ** 2 + f[None, :] ** 2)).astype(int).ravel()
    counts = np.bincount(radius)
    rings = np.stack([np.bincount(radius, weights=p.ravel()) for p in power]) / counts
    return np.log10(rings + 1e-12)


def radial_spectrum(images: np.ndarray) -> np.ndarray:
    """Mean radially averaged log10 power spectrum of the luminance.

    ``images``: N x S x S x 3 uint8. Each image's luminance (BT.601, [0, 1]) minus its mean is
    Fourier transformed; power is averaged over rings of integer radius r (cycles per image)
    and logged; the N log spectra are averaged. Rings run to the corner of the spectrum,
    r = 0..round(S / sqrt(2)): those beyond S/2 hold only diagonal frequencies, exactly where
    transposed-convolution checkerboards put their energy. Returns round(S / sqrt(2)) + 1
    floats (log10 power; -12 where an image set has none).
    """
    return radial_spectra(images).mean(0)


def spectrum_distance(a: np.ndarray, b: np.ndarray, *, high_only: bool = False) -> float:
    """RMS difference (log10 units) between the radial spectra of two image sets.

    ``high_only``: compare only the upper half of the rings (radius above ~S/2.8), where
    upsampling artifacts and over-smoothing show. The DC ring is always left out.
    """
    sa, sb = radial_spectrum(a), radial_spectrum(b)
    if sa.shape != sb.shape:
        raise ValueError(f"image sizes differ: spectra of length {sa.shape} and {sb.shape}")
    lo = len(sa) // 2 + 1 if high_only else 1
    return float(np.sqrt(np.mean((sa[lo:] - sb[lo:]) ** 2)))


def trivial_cues(samples: np.ndarray, reals: np.ndarray) -> dict[str, float]:
    """Global statistics that could give fakes away without any local artifact.

    ``samples``, ``reals``: N x S x S x 3 uint8. Returns ``mean_color_distance`` (L2 between
    mean RGB, [0, 1] units), ``colorfulness_fake`` / ``colorfulness_real``,
    ``spectrum_distance`` and ``spectrum_distance_high`` (see :func:`spectrum_distance`).
    """
    return {"mean_color_distance": float(np.linalg.norm(mean_color(samples) - mean_color(reals))),
            "colorfulness_fake": colorfulness(samples), "colorfulness_real": colorfulness(reals),
            "spectrum_distance": spectrum_distance(samples, reals),
            "spectrum_distance_high": spectrum_distance(samples, reals, high_only=True)}


def load_split(world_root: str | Path, key: str, split: str) -> np.ndarray:
    """Every image of one split of one set, e.g. ``("fake/celeba/dcgan", "train")``:
    N x S x S x 3 uint8 in file order."""
    return load_folder(Path(world_root) / key / split)[0]


def quality_table(world_root: str | Path, *, split: str = "test",
                  near_copy_quantile: float = 0.01) -> pd.DataFrame:
    """One row per fake set of a built world (plus a real baseline row per dataset).

    Memorization compares the fake ``split`` samples with ``real/<dataset>/train`` (held-out
    reference: ``real/<dataset>/<split>``); trivial cues compare them with the real ``split``.
    The ``real (val)`` row runs the same numbers on ``real/<dataset>/val`` against the same
    references: what an ideal generator would score. Columns: dataset, generator, then the keys
    of :func:`memorization` and :func:`trivial_cues`.
    """
    manifest = read_manifest(world_root)
    rows: list[dict[str, Any]] = []
    datasets = built_datasets(manifest)
    for dataset in datasets:
        train = load_split(world_root, real_key(dataset), "train")
        held_out = load_split(world_root, real_key(dataset), split)
        # Manipulated faces (notebook 07) are edited reals, not a generator's samples.
        fakes = sorted(k for k, e in manifest["sets"].items()
                       if k.startswith(fake_prefix(dataset)) and "manipulation" not in e)
        base_split = "val" if split != "val" else "test"
        candidates = [(f"real ({base_split})", real_key(dataset), base_split)]
        candidates += [(k.split("/")[2], k, split) for k in fakes]
        for name, key, s in candidates:
            samples = load_split(world_root, key, s)
            rows.append({"dataset": dataset, "generator": name,
                         **memorization(samples, train, held_out,
                                        near_copy_quantile=near_copy_quantile),
                         **trivial_cues(samples, held_out)})
    return pd.DataFrame(rows)
