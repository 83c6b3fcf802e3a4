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
