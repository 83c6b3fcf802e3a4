"""Figures: image grids and one ``savefig`` that writes PNG and PDF to ``results/figures``.

Saved figures and the notebooks' ipywidgets call the same functions, so what a slider shows is
what the papermill run saved.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from mpl_toolkits.axes_grid1 import make_axes_locatable

from . import paths
from .data import FAKE, load_folder
from .embedded import read_manifest
from .images import atomic_write_bytes
from .layout import fake_prefix, real_key
from .receptive_field import extract_patch, map_to_original, project_map
from .segment import (
    PART_COLORS,
    PARTS,
    best_parts,
    colorize,
    share_matrix,
    true_class_cell,
)


def image_grid(images: np.ndarray | Sequence[np.ndarray], *, ncols: int = 8,
               titles: Sequence[str] | None = None, title: str | None = None,
               scale: float = 1.2) -> matplotlib.figure.Figure:
    """A grid of N x H x W x 3 uint8 images (a list of such arrays of mixed sizes works too)."""
    n = len(images)
    if n == 0:
        raise ValueError("image_grid needs at least one image")
    ncols = min(ncols, n)
    nrows = (n + ncols - 1) // ncols
    size = (scale * ncols, scale * nrows + 0.4 * bool(title))
    fig, axes = plt.subplots(nrows, ncols, figsize=size, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i], interpolation="nearest")
            if titles is not None:
                ax.set_title(titles[i], fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def folder_grid(folder: str | os.PathLike, *, n: int = 16, ncols: int = 8, seed: int = 0,
                title: str | None = None) -> matplotlib.figure.Figure:
    """A grid of ``n`` images drawn (seeded) from a folder of prepared images."""
    images, files, _ = load_folder(folder)
    pick = np.sort(np.random.default_rng(seed).choice(len(images), min(n, len(images)),
                                                      replace=False))
    return image_grid(images[pick], ncols=ncols, title=title or Path(folder).as_posix())


def world_grid(world_root: str | os.PathLike, dataset: str, *, split: str = "test", n: int = 8,
               seed: int = 0) -> matplotlib.figure.Figure:
    """Reals and every generator's fakes of one dataset side by side: a row per set, n each."""

    root = Path(world_root)
    keys = [real_key(dataset)] + sorted(k for k, e in read_manifest(root)["sets"].items()
                                        if k.startswith(fake_prefix(dataset))
                                        and "manipulation" not in e)  # notebook 07 shows those
    rows, titles = [], []
    for key in keys:
        images, _, _ = load_folder(root / key / split)
        pick = np.sort(np.random.default_rng(seed).choice(len(images), min(n, len(images)),
                                                          replace=False))
        rows.extend(images[pick])
        titles.extend([key.split("/")[-1] if key.startswith("fake/") else "real"] +
                      [""] * (len(pick) - 1))
    return image_grid(rows, ncols=n, titles=titles, title=f"{dataset}: reals and fakes ({split})")


def savefig(fig: matplotlib.figure.Figure, name: str, *, folder: str | os.PathLike | None = None,
            close: bool = False) -> list[Path]:
    """Write ``fig`` as ``<name>.png`` and ``<name>.pdf`` (atomically) to ``results/figures``."""
    out_dir = Path(folder) if folder is not None else paths.figures_dir()
    written = []
    for ext in ("png", "pdf"):
        buf = io.BytesIO()
        # PDFs embed a creation date by default; drop it so reruns give identical files.
        meta = {"CreationDate": None} if ext == "pdf" else {"Software": None}
        fig.savefig(buf, format=ext, dpi=150, bbox_inches="tight", metadata=meta)
        target = out_dir / f"{name}.{ext}"
        atomic_write_bytes(target, buf.getvalue())
        written.append(target)
    if close:
        plt.close(fig)
    return written


def png_bytes(fig: matplotlib.figure.Figure, *, dpi: int = 100) -> bytes:
    """``fig`` rendered once as PNG bytes, at the figure's own margins (no software tag, so
    reruns give identical files); the figure is closed, so loops that draw one per item do not
    pile up open figures."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


# --- heatmaps (Chai et al. 2020, Fig. 3 and 4) --------------------------------------------------


def heatmap_overlay(image: np.ndarray, heat: np.ndarray, *, alpha: float = 0.45,
                    cmap: str = "RdBu_r", box: tuple[int, int, int, int] | None = None,
                    zoom: int = 4) -> np.ndarray:
    """``image`` (H x W x 3 uint8) blended with ``heat`` (H x W in [0, 1], 1 = fake, red) and
    an optional ``(top, left, bottom, right)`` box outlined in yellow; enlarged ``zoom`` times
    (nearest) so small images stay legible. Returns (zoom H) x (zoom W) x 3 uint8."""
    if heat.shape != image.shape[:2]:
        raise ValueError(f"heat is {heat.shape} but the image is {image.shape[:2]}")
    colors = matplotlib.colormaps[cmap](np.clip(np.nan_to_num(heat, nan=0.5), 0, 1))[..., :3]
    # Pixels no cell sees (NaN) keep the image unblended.
    a = np.where(np.isnan(heat), 0.0, alpha)[..., None]
    out = (1 - a) * image.astype(np.float64) + a * colors * 255
    out = np.repeat(np.repeat(out.round().astype(np.uint8), zoom, 0), zoom, 1)
    if box is not None:
        t, left, b, r = (v * zoom for v in box)
        b, r = min(b, out.shape[0]) - 1, min(r, out.shape[1]) - 1
        for edge in (out[t, left:r + 1], out[b, left:r + 1], out[t:b + 1, left],
                     out[t:b + 1, r]):
            edge[...] = (255, 220, 0)
    return out


def heatmap_figure(image: np.ndarray, prob_cells: np.ndarray, rf, *, score: float, model: str,
                   mode: str | None = None, box: tuple[int, int, int, int] | None = None,
                   alpha: float = 0.45) -> matplotlib.figure.Figure:
    """One image explained, in its own pixels: the original ``image`` (H x W x 3 uint8, any
    size) and the same image with ``prob_cells`` (h x w P(fake) in [0, 1] of the prepared
    image's patches, ``rf``: the ``receptive_field.ReceptiveField`` of the prepared size)
    painted over the pixels each patch saw (:func:`project_map`, then :func:`map_to_original`;
    outside the centre square stays unpainted), a P(fake) colour bar (0..1), and a title with
    the model's name and the image ``score`` (P(fake) in [0, 1]; ``mode`` named if given).
    ``box``: ``(top, left, bottom, right)`` in original pixels (:func:`box_to_original`),
    outlined in yellow, e.g. the most suspicious patch."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an H x W x 3 uint8 image, got {image.shape} {image.dtype}")
    if rf.input_size[0] != rf.input_size[1]:
        raise ValueError(f"expected the field of a square prepared image, got {rf.input_size}")
    heat = map_to_original(project_map(prob_cells, rf), image.shape)
    h, w = image.shape[:2]
    panel = 3.2  # inches of the longer side of each image panel
    fig, axes = plt.subplots(1, 2, figsize=(2 * panel * min(w / h, 1.0) + 1.4,
                                            panel * min(h / w, 1.0) + 0.9))
    axes[0].imshow(image, interpolation="nearest")
    axes[0].set_title(f"image ({w} x {h} px)", fontsize=8)
    axes[1].imshow(heatmap_overlay(image, heat, alpha=alpha, zoom=1), interpolation="nearest")
    if box is not None:  # drawn, not burnt in: a 1 px outline vanishes when a photo is shrunk
        t, left_, b, r = box
        axes[1].add_patch(matplotlib.patches.Rectangle(
            (left_ - 0.5, t - 0.5), r - left_, b - t, fill=False, edgecolor=(1.0, 0.86, 0.0),
            linewidth=1.5))
    axes[1].set_title("P(fake) per pixel", fontsize=8)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    bar = matplotlib.cm.ScalarMappable(norm=matplotlib.colors.Normalize(0, 1), cmap="RdBu_r")
    # A bar as tall as the image, whatever its aspect (``ax=`` would span the figure).
    cax = make_axes_locatable(axes[1]).append_axes("right", size="4%", pad=0.08)
    fig.colorbar(bar, cax=cax, label="P(fake)")
    fig.suptitle(f"{model}: P(fake) = {score:.3f}" + (f" ({mode})" if mode else ""),
                 fontsize=10)
    # Fixed margins, so png_bytes renders once (a tight bounding box renders twice): score
    # --heatmaps draws one figure per image.
    fig.subplots_adjust(left=0.02, right=0.88, bottom=0.03, top=0.80, wspace=0.08)
    return fig


def extremes(scores: np.ndarray, labels: np.ndarray, k: int = 4) -> dict[str, np.ndarray]:
    """Indices of the ``k`` easiest and hardest images of each class by image score (fake
    probability): ``{"easiest real", "hardest real", "easiest fake", "hardest fake"}``."""
    out = {}
    for cls, name, sign in ((0, "real", 1), (1, "fake", -1)):
        idx = np.flatnonzero(labels == cls)
        order = idx[np.argsort(sign * scores[idx], kind="stable")]
        out[f"easiest {name}"] = order[:k]
        out[f"hardest {name}"] = order[::-1][:k]
    return out


def relative_map(logit_map: np.ndarray) -> np.ndarray:
    """An h x w logit-difference map rescaled to [0, 1] within its own image (min -> 0,
    max -> 1; a constant map -> 0.5): where in *this* image the evidence for "fake" is strongest,
    visible even when every patch is confidently classified."""
    lo, hi = float(logit_map.min()), float(logit_map.max())
    if hi - lo < 1e-12:
        return np.full(logit_map.shape, 0.5)
    return (logit_map - lo) / (hi - lo)


def extremes_figure(images: np.ndarray, heat_maps: np.ndarray, scores: np.ndarray,
                    labels: np.ndarray, rf, *, k: int = 4,
                    title: str | None = None) -> matplotlib.figure.Figure:
    """A row per group of :func:`extremes` (easiest/hardest real/fake), each image overlaid with
    its map (``heat_maps``: N x h x w in [0, 1], e.g. fake probabilities or
    :func:`relative_map`) and titled with its image score."""
    groups = extremes(scores, labels, k)
    tiles, titles = [], []
    for name, idx in groups.items():
        for n, i in enumerate(idx):
            tiles.append(heatmap_overlay(images[i], project_map(heat_maps[i], rf)))
            titles.append(f"{name}\n{scores[i]:.2f}" if n == 0 else f"{scores[i]:.2f}")
        for _ in range(k - len(idx)):
            tiles.append(np.full_like(tiles[-1], 255))
            titles.append("")
    return image_grid(tiles, ncols=k, titles=titles, title=title, scale=1.5)


def average_heatmaps(maps: dict[str, np.ndarray], rf, *, relative: bool = False,
                     title: str | None = None) -> matplotlib.figure.Figure:
    """Mean projected heatmap per set (``{name: N x h x w}``), as the paper averages heatmaps
    per generator: where on the face the classifier finds fakeness. ``relative=False``: the
    maps are fake probabilities, averaged as they are; ``relative=True``: the maps are logit
    differences, each rescaled within its image (:func:`relative_map`) before averaging, which
    shows *where* the evidence sits even when every patch is saturated."""
    names = list(maps)
    fig, axes = plt.subplots(1, len(names), figsize=(1.7 * len(names) + 0.8, 2.1),
                             squeeze=False)
    im = None
    for ax, name in zip(axes[0], names, strict=True):
        per_image = [project_map(relative_map(m) if relative else m, rf) for m in maps[name]]
        mean = np.mean(per_image, axis=0)  # NaN where no cell sees the pixel
        im = ax.imshow(mean, cmap="RdBu_r", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(name, fontsize=8)
        ax.axis("off")
    label = "relative evidence (per-image min-max of logit)" if relative else "P(fake)"
    fig.colorbar(im, ax=axes[0].tolist(), fraction=0.03, label=label)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


# --- evaluation figures (notebook 03) -----------------------------------------------------------


# --- training, face-part, finetuning and exaggeration figures (notebooks 02, 04, 05, 06) -------


def patch_panel(image: np.ndarray, logit_map: np.ndarray, label_map: np.ndarray | None, rf,
                label: int, *, threshold: float = 0.5,
                title: str | None = None) -> matplotlib.figure.Figure:
    """One image explained (notebook 04): (1) the image (H x W x 3 uint8) with every patch
    whose P(fake) >= ``threshold`` painted by its P(fake); (2) the image with the top patch
    (highest probability of the true class ``label``, 0 real / 1 fake) boxed; (3) the parser's
    label map (H x W ints, ``segment.PARTS`` indices) with the same box and the patch's part
    (``label_map`` None: no face found). ``logit_map``: h x w logit differences."""

    p = 1.0 / (1.0 + np.exp(-np.clip(logit_map, -60, 60)))
    shown = np.where(p >= threshold, p, np.nan)  # unpainted: below the threshold
    i, j = true_class_cell(logit_map, label)
    box = rf.box(i, j)
    part = ("+".join(PARTS[b] for b in best_parts(label_map, *rf.slices(i, j)))
            if label_map is not None else None)
    fig, axes = plt.subplots(1, 3, figsize=(7.5, 2.9))
    axes[0].imshow(heatmap_overlay(image, project_map(shown, rf), alpha=0.55))
    axes[0].set_title(f"P(fake) >= {threshold:.2f}: {np.mean(p >= threshold):.0%} of patches",
                      fontsize=8)
    axes[1].imshow(heatmap_overlay(image, np.full(image.shape[:2], np.nan), box=box))
    truth = "fake" if label == FAKE else "real"
    axes[1].set_title(f"top {truth} patch, P = {p[i, j] if label == FAKE else 1 - p[i, j]:.3f}",
                      fontsize=8)
    if label_map is not None:
        axes[2].imshow(heatmap_overlay(colorize(label_map), np.full(image.shape[:2], np.nan),
                                       alpha=0.0, box=box))
        axes[2].set_title(f"face part: {part}", fontsize=8)
        handles = [plt.Rectangle((0, 0), 1, 1, color=PART_COLORS[k] / 255)
                   for k in range(len(PARTS))]
        axes[2].legend(handles, PARTS, fontsize=5, loc="center left",
                       bbox_to_anchor=(1.0, 0.5), frameon=False)
    else:
        axes[2].text(0.5, 0.5, "no face found", ha="center", va="center")
        axes[2].set_title("face part: -", fontsize=8)
    for ax in axes:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def top_patch_grid(images: np.ndarray, frame: pd.DataFrame, rf, *, per_part: int = 8,
               parts: tuple[str, ...] | None = None, title: str | None = None):
    """Top patches grouped by their assigned part: a row per part (``per_part`` patches, in
    image order; a patch tied between parts appears in each of their rows; the title gives the
    part's fractional count), each patch its exact receptive-field slice padded to the full
    field."""

    shares = pd.DataFrame(share_matrix(frame, "top"), columns=list(PARTS), index=frame.index)
    parts = parts or tuple(p for p in PARTS if (shares[p] > 0).any())
    tiles, titles = [], []
    for part in parts:
        rows = frame[shares[part] > 0].head(per_part)  # a tied patch shows under each part
        for n, r in enumerate(rows.itertuples()):
            tiles.append(extract_patch(images[r.image], rf, r.top_i, r.top_j, pad_value=255))
            titles.append(f"{part} ({shares[part].sum():g})" if n == 0 else "")
        for _ in range(per_part - len(rows)):
            tiles.append(np.full_like(tiles[-1], 255) if tiles else
                         np.full((8, 8, 3), 255, np.uint8))
            titles.append("")
    if not tiles:
        raise ValueError("no top patches to show")
    return image_grid(tiles, ncols=per_part, titles=titles, title=title, scale=1.0)


# --- notebook 07: manipulated faces and localization -------------------------------------------

def _mask_outline(image: np.ndarray, mask: np.ndarray, zoom: int = 4) -> np.ndarray:
    """``image`` enlarged ``zoom`` times with the edge of ``mask >= 0.5`` drawn in yellow."""
    big = np.repeat(np.repeat(image, zoom, 0), zoom, 1).copy()
    inside = np.repeat(np.repeat(mask >= 0.5, zoom, 0), zoom, 1)
    edge = inside & ~(np.roll(inside, 1, 0) & np.roll(inside, -1, 0)
                      & np.roll(inside, 1, 1) & np.roll(inside, -1, 1))
    big[edge] = (255, 220, 0)
    return big


def manipulation_examples(examples: dict[str, list[dict]], *,
                          title: str | None = None) -> matplotlib.figure.Figure:
    """One row per example of each manipulation: the real target, the manipulated face, its
    mask (blend weight 0..1, white = changed) and |fake - target| (x4, clipped). ``examples``:
    ``{method: [{"name", "target", "fake", "mask"}, ...]}`` (S x S x 3 uint8 images, S x S
    float masks), as ``manipulate.examples`` returns them."""
    rows = [(m, e) for m, items in examples.items() for e in items]
    if not rows:
        raise ValueError("manipulation_examples needs at least one example")
    fig, axes = plt.subplots(len(rows), 4, figsize=(6.4, 1.7 * len(rows) + 0.4 * bool(title)),
                             squeeze=False)
    heads = ("real (target)", "manipulated", "mask", "|difference| x4")
    for r, (method, e) in enumerate(rows):
        diff = np.abs(e["fake"].astype(np.int16) - e["target"].astype(np.int16)).max(axis=2)
        tiles = (e["target"], e["fake"], e["mask"], np.clip(diff * 4, 0, 255))
        for c, (ax, tile) in enumerate(zip(axes[r], tiles, strict=True)):
            gray = tile.ndim == 2
            ax.imshow(tile, cmap="gray" if gray else None, vmin=0,
                      vmax=1 if c == 2 else 255, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(heads[c], fontsize=8)
        axes[r, 0].set_ylabel(f"{method}\n{e['name']}", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def localization_examples(examples: list[dict], *, title: str | None = None,
                          alpha: float = 0.55) -> matplotlib.figure.Figure:
    """Localizers side by side, one row per example: the image with its mask's outline, then
    each map (``{"maps": {name: S x S in [0, 1], NaN = unseen}}``) over the image with the
    same outline. ``examples``: dicts with ``image`` (S x S x 3 uint8), ``mask`` (S x S in
    [0, 1]), ``maps`` and an optional ``title``."""
    if not examples:
        raise ValueError("localization_examples needs at least one example")
    names = list(examples[0]["maps"])
    ncols = 1 + len(names)
    fig, axes = plt.subplots(len(examples), ncols, figsize=(1.75 * ncols,
                             1.85 * len(examples) + 0.4 * bool(title)), squeeze=False)
    for r, e in enumerate(examples):
        tiles = [_mask_outline(e["image"], e["mask"])]
        for name in names:
            over = heatmap_overlay(e["image"], e["maps"][name], alpha=alpha, cmap="inferno",
                                   zoom=1)
            tiles.append(_mask_outline(over, e["mask"]))
        for c, (ax, tile) in enumerate(zip(axes[r], tiles, strict=True)):
            ax.imshow(tile, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title("image + mask" if c == 0 else names[c - 1], fontsize=7)
        if e.get("title"):
            axes[r, 0].set_ylabel(e["title"], fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


