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

from . import paths
from .data import load_folder
from .images import atomic_write_bytes


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
    from .embedded import read_manifest

    root = Path(world_root)
    keys = [f"real/{dataset}"] + sorted(k for k in read_manifest(root)["sets"]
                                        if k.startswith(f"fake/{dataset}/"))
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
