"""ipywidgets explorers, built on the same functions as the saved figures.

Callbacks write into ``Output`` widgets explicitly (``append_display_data``) instead of using
``with out:`` capture, which needs a live front end; this keeps them testable without a kernel
and robust under papermill (which saves no widget pixels: every widget here only re-draws a
figure that the notebook also saved).
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import ipywidgets as w
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Image

from .viz import folder_grid


def show_figure(out: w.Output, fig) -> None:
    """Replace ``out``'s content with ``fig`` as a PNG (the figure is closed afterwards).

    Rendering to PNG here, rather than handing the figure to IPython's formatters, gives the
    same picture with or without a kernel's inline backend.
    """
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    out.outputs = ()
    out.append_display_data(Image(data=buf.getvalue(), format="png"))


def grid_explorer(folders: dict[str, str | os.PathLike], *, n: int = 16,
                  seeds: Sequence[int] = range(10)) -> w.VBox:
    """Dropdown over named image folders and a slider over the sample seed; shows a grid."""
    if not folders:
        raise ValueError("grid_explorer needs at least one folder")
    names = list(folders)
    pick = w.Dropdown(options=names, value=names[0], description="set")
    seed = w.IntSlider(min=min(seeds), max=max(seeds), value=min(seeds), description="seed")
    out = w.Output()

    def redraw(*_: object) -> None:
        show_figure(out, folder_grid(Path(folders[pick.value]), n=n, seed=seed.value,
                                     title=f"{pick.value} (seed {seed.value})"))

    pick.observe(redraw, names="value")
    seed.observe(redraw, names="value")
    redraw()
    return w.VBox([w.HBox([pick, seed]), out])


def heatmap_explorer(images: dict[str, np.ndarray], maps: dict[str, np.ndarray], rf, *,
                     temperature: float = 1.0) -> w.VBox:
    """Dropdown over sets and a slider over images: the image with its patch map overlaid
    (``viz.heatmap_overlay``), the most suspicious patch boxed, and its image score.
    ``images``: ``{set: N x H x W x 3 uint8}``; ``maps``: ``{set: N x h x w}`` logit
    differences (``evaluate.logit_maps``)."""
    from .evaluate import patch_probabilities, scores_from_maps
    from .viz import heatmap_overlay, image_grid, project_map

    names = list(images)
    pick = w.Dropdown(options=names, value=names[0], description="set")
    index = w.IntSlider(min=0, max=len(images[names[0]]) - 1, value=0, description="image")
    out = w.Output()

    def redraw(*_: object) -> None:
        index.max = len(images[pick.value]) - 1
        m = maps[pick.value][index.value]
        p = patch_probabilities(m[None], temperature)[0]
        i, j = np.unravel_index(int(np.argmax(m)), m.shape)
        tile = heatmap_overlay(images[pick.value][index.value], project_map(p, rf),
                               box=rf.box(int(i), int(j)))
        score = scores_from_maps(m[None], "mean_softmax", temperature)[0]
        show_figure(out, image_grid([tile], ncols=1, scale=3.0,
                                    title=f"{pick.value} #{index.value}: P(fake) {score:.3f}"))

    pick.observe(redraw, names="value")
    index.observe(redraw, names="value")
    redraw()
    return w.VBox([w.HBox([pick, index]), out])
