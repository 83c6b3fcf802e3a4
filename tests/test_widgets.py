"""The ipywidgets explorers without a browser or a kernel: set a control, the Output's picture
changes (callbacks write with ``append_display_data``, so no front end is needed)."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from patchforensics.models import ModelConfig
from patchforensics.parts import PartsAnalysis, top_patches
from patchforensics.receptive_field import receptive_field
from patchforensics.segment import PART_ID
from patchforensics.widgets import (
    heatmap_explorer,
    history_explorer,
    patch_explorer,
    shift_explorer,
)

from conftest import BrightnessClassifier, TinyGenerator, face_like


def picture(out) -> bytes:
    """The PNG bytes an Output shows (it holds exactly one picture)."""
    (item,) = out.outputs
    data = item["data"]["image/png"]
    return base64.b64decode(data) if isinstance(data, str) else data


@pytest.fixture(scope="module")
def analysis() -> PartsAnalysis:
    rng = np.random.default_rng(0)
    rf = {m: receptive_field(ModelConfig("xception", d), 32)
          for m, d in (("xception_block1", "block1"), ("xception_block2", "block2"))}
    images = {s: np.stack([face_like(100 * k + i, 32) for i in range(4)])
              for k, s in enumerate(("real", "gen"))}
    lab = np.full((4, 32, 32), PART_ID["skin"], np.uint8)
    lab[:, :10] = PART_ID["hair"]
    lab[:, 20:26, 10:22] = PART_ID["mouth"]
    found = np.array([True, True, False, True])
    maps = {m: {s: rng.normal(0, 2, (4,) + rf[m].output_size) for s in images} for m in rf}
    out = PartsAnalysis("toy", images, {s: lab for s in images}, {s: found for s in images},
                        rf, maps)
    for m in rf:
        out.frames[(m, "gen")] = top_patches(np.concatenate([maps[m]["real"], maps[m]["gen"]]),
                                             np.r_[np.zeros(4, int), np.ones(4, int)],
                                             np.concatenate([lab, lab]),
                                             np.concatenate([found, found]), rf[m])
    return out


def test_patch_explorer_redraws_on_every_control(analysis):
    ex = patch_explorer(analysis)
    c = ex.controls
    assert c["set"].value == "gen" and c["model"].value == "xception_block1"
    seen = {picture(ex.out)}
    for name, value in (("image", 1), ("threshold", 0.9), ("model", "xception_block2"),
                        ("set", "real"), ("image", 2)):  # image 2 has no face: still drawn
        c[name].value = value
        png = picture(ex.out)
        assert png.startswith(b"\x89PNG") and png not in seen, name
        seen.add(png)
    assert c["image"].max == 3


def test_heatmap_explorer_redraws_on_slider_and_dropdown(analysis):
    rf = analysis.rfs["xception_block1"]
    ex = heatmap_explorer(analysis.images, analysis.maps["xception_block1"], rf)
    out = ex.children[1]
    pick, index = ex.children[0].children
    first = picture(out)
    index.value = 2
    second = picture(out)
    assert pick.value == "real"
    pick.value = "gen"
    assert len({first, second, picture(out)}) == 3


def test_history_explorer_draws_the_chosen_runs_curves(tmp_path):
    import pandas as pd

    runs = {}
    for k, name in enumerate(("fast", "slow")):
        run = tmp_path / name
        run.mkdir()
        epochs = np.arange(1, 4)
        pd.DataFrame({"epoch": epochs, "train_loss": 1 / (epochs + k), "val_loss": 1 / epochs,
                      "val_patch_acc": 0.5 + 0.1 * epochs / (1 + k), "val_image_acc": 0.6}
                     ).to_csv(run / "history.csv", index=False)
        runs[name] = run
    ex = history_explorer(runs)
    pick, out = ex.children
    first = picture(out)
    pick.value = "slow"
    assert picture(out) != first
    with pytest.raises(ValueError, match="at least one run"):
        history_explorer({})


def test_shift_explorer_redraws_on_the_slider_and_the_dropdown():
    import torch

    gen, clf = TinyGenerator(), BrightnessClassifier()
    shifts = {"up": torch.tensor([1.0, 0, 0, 0]), "down": torch.tensor([-1.0, 0, 0, 0])}
    ex = shift_explorer(gen, clf, shifts, gen.sample_latent(3, 0))
    pick, alpha = ex.children[0].children
    out = ex.children[1]
    first = picture(out)
    alpha.value = 1.5
    second = picture(out)
    pick.value = "up"
    assert pick.value == "up" and len({first, second, picture(out)}) == 3
