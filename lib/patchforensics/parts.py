"""Which face parts the patch classifier looks at: the top-patch analysis of Chai et al. 2020
(Sec. 4.3, Fig. 5 and the original code's ``segmenter`` scripts).

For every test image take the output cell with the highest probability of the image's **true**
class, and its exact receptive-field slice (``receptive_field``). Assign the patch to the face
part k maximising (pixels of k in the patch) / (pixels of k in the image): normalising by the
part's size keeps large regions (background, hair) from winning every patch. As a baseline, one
uniformly random cell per image (seeded) is assigned the same way. Parts come from
``segment.FaceParser``; images in which no face was found are left out and counted.

Enrichment of part k = (share of top patches assigned to k) / (share of random patches assigned to
k): above 1, the classifier's most confident patches land on k more often than chance. Confidence
intervals by bootstrap over images (the top and random patch of an image stay paired).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .data import FAKE, REAL
from .segment import PARTS


def true_class_cell(logit_map: np.ndarray, label: int) -> tuple[int, int]:
    """``(i, j)`` of the cell with the highest probability of class ``label`` in an h x w
    logit-difference map (fake minus real): argmax of d for fakes, of -d for reals. Ties go to
    the first cell in row-major order."""
    if label not in (REAL, FAKE):
        raise ValueError(f"label must be 0 (real) or 1 (fake), got {label}")
    flat = logit_map.ravel() if label == FAKE else -logit_map.ravel()
    i, j = np.unravel_index(int(np.argmax(flat)), logit_map.shape)
    return int(i), int(j)


def part_of_patch(label_map: np.ndarray, rows: slice, cols: slice,
                  n_parts: int = len(PARTS)) -> int:
    """The part k maximising (pixels of k inside ``label_map[rows, cols]``) / (pixels of k in
    ``label_map``), over parts present in the image; ties go to the lower part id. ``label_map``:
    H x W ints in [0, n_parts)."""
    whole = np.bincount(label_map.ravel(), minlength=n_parts)[:n_parts].astype(np.float64)
    inside = np.bincount(label_map[rows, cols].ravel(), minlength=n_parts)[:n_parts]
    if inside.sum() == 0:
        raise ValueError("the patch is empty")
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(whole > 0, inside / whole, -1.0)
    return int(np.argmax(ratio))


def top_patches(maps: np.ndarray, labels: np.ndarray, label_maps: np.ndarray,
                found: np.ndarray, rf, *, seed: int = 0) -> pd.DataFrame:
    """One row per image with a parsed face: ``image`` (index), ``label`` (0 real, 1 fake), the
    top cell ``top_i``/``top_j`` and its ``top_part``, and a uniformly random cell
    ``rand_i``/``rand_j`` with its ``rand_part`` (seeded by ``seed``, the same cells whatever the
    maps). ``maps``: N x h x w logit differences; ``label_maps``: N x H x W part ids; ``found``:
    N bool (False rows are skipped); ``rf``: the model's ``ReceptiveField`` at H x W."""
    n = len(maps)
    if not (len(labels) == len(label_maps) == len(found) == n):
        raise ValueError("maps, labels, label_maps and found must have one entry per image")
    if maps.shape[1:] != rf.output_size or label_maps.shape[1:] != rf.input_size:
        raise ValueError(f"maps {maps.shape[1:]} / label maps {label_maps.shape[1:]} do not match "
                         f"the receptive field ({rf.output_size} over {rf.input_size})")
    h, w = rf.output_size
    rng = np.random.default_rng(seed)
    random_cells = rng.integers(0, h * w, n)  # drawn for every image so the draw never shifts
    rows = []
    for k in range(n):
        if not found[k]:
            continue
        ti, tj = true_class_cell(maps[k], int(labels[k]))
        ri, rj = divmod(int(random_cells[k]), w)
        rows.append({"image": k, "label": int(labels[k]), "top_i": ti, "top_j": tj,
                     "top_part": PARTS[part_of_patch(label_maps[k], *rf.slices(ti, tj))],
                     "rand_i": ri, "rand_j": rj,
                     "rand_part": PARTS[part_of_patch(label_maps[k], *rf.slices(ri, rj))]})
    return pd.DataFrame(rows, columns=["image", "label", "top_i", "top_j", "top_part", "rand_i",
                                       "rand_j", "rand_part"])


def part_counts(frame: pd.DataFrame) -> pd.DataFrame:
    """Counts of top and random patches per part (rows in ``PARTS`` order, zeros kept)."""
    return pd.DataFrame({"top": frame["top_part"].value_counts(),
                         "random": frame["rand_part"].value_counts()}).reindex(
        list(PARTS)).fillna(0).astype(int).rename_axis("part")


def enrichment(frame: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0,
               level: float = 0.95) -> pd.DataFrame:
    """Per part: counts, shares, enrichment = top share / random share, and its bootstrap
    ``level`` confidence interval (percentile, ``n_boot`` resamples of the images). Parts with
    no random patch give NaN ratios."""
    counts = part_counts(frame)
    n = len(frame)
    top_idx = frame["top_part"].map({p: i for i, p in enumerate(PARTS)}).to_numpy()
    rand_idx = frame["rand_part"].map({p: i for i, p in enumerate(PARTS)}).to_numpy()
    rng = np.random.default_rng(seed)
    boots = np.full((n_boot, len(PARTS)), np.nan)
    if n:
        for b in range(n_boot):
            pick = rng.integers(0, n, n)
            t = np.bincount(top_idx[pick], minlength=len(PARTS))
            r = np.bincount(rand_idx[pick], minlength=len(PARTS))
            with np.errstate(invalid="ignore", divide="ignore"):
                boots[b] = np.where(r > 0, t / np.maximum(r, 1), np.nan)
    alpha = (1 - level) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        out = counts.assign(top_share=counts["top"] / max(n, 1),
                            random_share=counts["random"] / max(n, 1))
        out["enrichment"] = np.where(counts["random"] > 0,
                                     counts["top"] / counts["random"].replace(0, np.nan), np.nan)
    import warnings

    with warnings.catch_warnings():  # all-NaN columns (parts never drawn) stay NaN quietly
        warnings.simplefilter("ignore", RuntimeWarning)
        out["ci_low"] = np.nanquantile(boots, alpha, axis=0)
        out["ci_high"] = np.nanquantile(boots, 1 - alpha, axis=0)
    return out


def histogram_figure(frames: dict[str, pd.DataFrame], *, title: str | None = None,
                     paper: pd.DataFrame | None = None):
    """The paper's figure: per test set (``{name: top_patches frame}``), bars of top-patch and
    random-patch counts per face part. ``paper``: the paper's counts for comparison (columns
    ``test_set, cluster, top, random``), drawn as one more panel per test set it holds."""
    import matplotlib.pyplot as plt

    panels = list(frames.items())
    extra = [] if paper is None else list(paper.groupby("test_set", sort=False))
    n = len(panels) + len(extra)
    ncols = min(n, 4)
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.3 * ncols, 2.6 * nrows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax, (name, frame) in zip(axes.flat, panels, strict=False):
        c = part_counts(frame)
        x = np.arange(len(c))
        ax.bar(x - 0.2, c["top"], 0.4, label="top patch")
        ax.bar(x + 0.2, c["random"], 0.4, label="random patch", color="0.6")
        ax.set_xticks(x, c.index, rotation=60, ha="right", fontsize=7)
        ax.set_title(f"{name} (n={len(frame)})", fontsize=8)
    for ax, (name, g) in zip(axes.flat[len(panels):], extra, strict=False):
        x = np.arange(len(g))
        ax.bar(x - 0.2, g["top"], 0.4, label="top patch")
        ax.bar(x + 0.2, g["random"], 0.4, label="random patch", color="0.6")
        ax.set_xticks(x, g["cluster"], rotation=60, ha="right", fontsize=7)
        ax.set_title(f"paper: {name}", fontsize=8)
    axes.flat[0].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def patch_grid(images: np.ndarray, frame: pd.DataFrame, rf, *, per_part: int = 8,
               parts: tuple[str, ...] | None = None, title: str | None = None):
    """Top patches grouped by their assigned part: a row per part (``per_part`` patches, in
    image order), each patch its exact receptive-field slice padded to the full field."""
    from .receptive_field import extract_patch
    from .viz import image_grid

    parts = parts or tuple(p for p in PARTS if (frame["top_part"] == p).any())
    tiles, titles = [], []
    for part in parts:
        rows = frame[frame["top_part"] == part].head(per_part)
        for n, r in enumerate(rows.itertuples()):
            tiles.append(extract_patch(images[r.image], rf, r.top_i, r.top_j, pad_value=255))
            titles.append(f"{part} ({(frame['top_part'] == part).sum()})" if n == 0 else "")
        for _ in range(per_part - len(rows)):
            tiles.append(np.full_like(tiles[-1], 255) if tiles else
                         np.full((8, 8, 3), 255, np.uint8))
            titles.append("")
    if not tiles:
        raise ValueError("no top patches to show")
    return image_grid(tiles, ncols=per_part, titles=titles, title=title, scale=1.0)
