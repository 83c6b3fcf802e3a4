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

from . import viz
from .charts import training_curves
from .checkpoint import logit_maps
from .exaggerate import strip_images
from .manipulation_study import Localization
from .receptive_field import project_map
from .score_modes import (
    calibrated_probability,
    log_odds_from_maps,
    patch_probabilities,
    scores_from_maps,
)
from .viz import folder_grid, heatmap_overlay, image_grid


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


def history_explorer(runs: dict[str, str | os.PathLike]) -> w.VBox:
    """A dropdown over runs (``{label: run folder}``, as ``charts.training_curves`` takes them)
    showing the chosen run's training curves (notebook 02)."""

    if not runs:
        raise ValueError("history_explorer needs at least one run")
    pick = w.Dropdown(options=list(runs), description="run")
    out = w.Output()

    def redraw(*_: object) -> None:
        show_figure(out, training_curves({pick.value: runs[pick.value]}))

    pick.observe(redraw, names="value")
    redraw()
    return w.VBox([pick, out])


def heatmap_explorer(images: dict[str, np.ndarray], maps: dict[str, np.ndarray], rf, *,
                     temperature: float = 1.0) -> w.VBox:
    """Dropdown over sets and a slider over images: the image with its patch map overlaid
    (``viz.heatmap_overlay``), the most suspicious patch boxed, and its image score
    (``score_modes.calibrated_probability`` at ``temperature``, the run's ``mean_softmax`` T).
    ``images``: ``{set: N x H x W x 3 uint8}``; ``maps``: ``{set: N x h x w}`` logit
    differences (``checkpoint.logit_maps``)."""

    names = list(images)
    pick = w.Dropdown(options=names, value=names[0], description="set")
    index = w.IntSlider(min=0, max=len(images[names[0]]) - 1, value=0, description="image")
    out = w.Output()

    def redraw(*_: object) -> None:
        index.max = len(images[pick.value]) - 1
        m = maps[pick.value][index.value]
        p = patch_probabilities(m[None])[0]  # T = 1: the run's T calibrates images, not patches
        i, j = np.unravel_index(int(np.argmax(m)), m.shape)
        tile = heatmap_overlay(images[pick.value][index.value], project_map(p, rf),
                               box=rf.box(int(i), int(j)))
        score = calibrated_probability(log_odds_from_maps(m[None], "mean_softmax"),
                                       temperature)[0]
        show_figure(out, image_grid([tile], ncols=1, scale=3.0,
                                    title=f"{pick.value} #{index.value}: P(fake) {score:.3f}"))

    pick.observe(redraw, names="value")
    index.observe(redraw, names="value")
    redraw()
    return w.VBox([w.HBox([pick, index]), out])


def patch_explorer(analysis, *, models: Sequence[str] | None = None) -> w.VBox:
    """The patch explorer (notebook 04): dropdowns over generator ("real" for the reals) and
    model (receptive field), sliders over the image and the P(fake) threshold; shows
    ``viz.patch_panel``: the heatmap above the threshold, the top patch's box and its face
    part next to the parser's label map. ``analysis``: a ``parts.PartsAnalysis``.

    The widgets are returned in ``.children``; ``explorer.out`` is the Output, and
    ``explorer.controls`` maps names to the controls (for tests and scripts)."""
    models = list(models or analysis.maps)
    sets = ["real", *analysis.generators]
    gen = w.Dropdown(options=sets, value=sets[1] if len(sets) > 1 else sets[0],
                     description="set")
    model = w.Dropdown(options=models, value=models[0], description="model")
    index = w.IntSlider(min=0, max=len(analysis.images[gen.value]) - 1, value=0,
                        description="image", continuous_update=False)
    threshold = w.FloatSlider(min=0.0, max=1.0, step=0.05, value=0.5, description="threshold",
                              continuous_update=False)
    out = w.Output()

    def redraw(*_: object) -> None:
        index.max = len(analysis.images[gen.value]) - 1
        k = min(index.value, index.max)
        show_figure(out, viz.patch_panel(**analysis.panel_args(
            model.value, gen.value, k, threshold=threshold.value)))

    for control in (gen, model, index, threshold):
        control.observe(redraw, names="value")
    redraw()
    box = w.VBox([w.HBox([gen, model]), w.HBox([index, threshold]), out])
    box.out = out
    box.controls = {"set": gen, "model": model, "image": index, "threshold": threshold}
    return box


def shift_explorer(gen, classifier, shifts: dict[str, object], z) -> w.VBox:
    """A slider over a and a dropdown over shifts (notebook 06): G(z + a w) for the latents
    ``z`` in a row, titled with the classifier's score of each (``exaggerate.strip_images``
    and ``evaluate`` underneath, as the saved figures)."""

    names = list(shifts)
    pick = w.Dropdown(options=names, value=names[-1], description="shift")
    alpha = w.FloatSlider(min=-2.0, max=2.0, step=0.25, value=0.0, description="a",
                          continuous_update=False)
    out = w.Output()

    def redraw(*_: object) -> None:
        images = strip_images(gen, shifts[pick.value], z, (alpha.value,))[:, 0]
        s = scores_from_maps(logit_maps(classifier, images, device=gen.device))
        show_figure(out, image_grid(images, ncols=len(images), scale=1.8,
                                    titles=[f"P(fake) {v:.3f}" for v in s],
                                    title=f"G(z + a w), a = {alpha.value:+.2f} ({pick.value})"))

    pick.observe(redraw, names="value")
    alpha.observe(redraw, names="value")
    redraw()
    return w.VBox([w.HBox([pick, alpha]), out])


def localization_browser(loc: Localization) -> w.VBox:
    """Browse the manipulated test images of notebook 07: a dropdown over manipulations and a
    slider over images; shows the image with its mask's outline beside every localizer's map
    (``viz.localization_examples``, the figure the notebook saves). ``loc``: a
    ``manipulation_study.Localization``."""
    manipulations = list(loc.images)
    if not manipulations:
        raise ValueError("localization_browser needs at least one manipulation")
    pick = w.Dropdown(options=manipulations, value=manipulations[0], description="manipulation")
    k = w.IntSlider(min=0, max=len(loc.images[manipulations[0]]) - 1, value=0, description="image")
    out = w.Output()

    def redraw(*_: object) -> None:
        k.max = len(loc.images[pick.value]) - 1
        at = min(k.value, k.max)
        show_figure(out, viz.localization_examples(
            [loc.example(pick.value, at)], title=f"{pick.value} #{at}: mask outlined in yellow"))

    pick.observe(redraw, names="value")
    k.observe(redraw, names="value")
    redraw()
    return w.VBox([w.HBox([pick, k]), out])
