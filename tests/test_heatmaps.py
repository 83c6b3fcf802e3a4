"""Heatmaps a person can read (issue 15, point 7): ``viz.heatmap_figure`` shows the original
image at its own size with the P(fake) overlay mapped back to its pixels, a colour bar, the
score and the model; ``score --heatmaps`` keeps subfolders, links each heatmap from the CSV and
refuses another model's heatmap folder unless forced."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import patchforensics
from patchforensics import cli
from patchforensics.checkpoint import checkpoint_sha256
from patchforensics.models import ModelConfig
from patchforensics.receptive_field import (
    box_to_original,
    map_to_original,
    project_map,
    receptive_field,
)
from patchforensics.scoring import HEATMAP_MARKER, score_files
from patchforensics.viz import heatmap_figure, heatmap_overlay

from conftest import face_like, train_tiny

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.filterwarnings("error::UserWarning")]

SIZE = 32  # the training size of the tiny runs


@pytest.fixture(scope="module")
def rf():
    return receptive_field(ModelConfig("xception", "block1"), SIZE)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def shown(ax) -> np.ndarray:
    """The array an image axis shows."""
    (im,) = ax.get_images()
    return np.asarray(im.get_array())


# --- the figure ---------------------------------------------------------------------------------

@pytest.mark.parametrize("h, w", [(80, 120), (120, 80), (50, 50)])
def test_figure_shows_the_original_at_its_size_with_colour_bar_score_and_model(rf, h, w):
    image = np.full((h, w, 3), 128, np.uint8)
    cells = np.random.default_rng(0).uniform(0, 1, rf.output_size)
    fig = heatmap_figure(image, cells, rf, score=0.8125, model="xception_block1")
    left, right, bar = fig.axes  # image, overlay, colour bar
    for ax in (left, right):
        assert shown(ax).shape == (h, w, 3)  # the original, not the 32 px crop
        assert ax.get_images()[0].get_extent() == [-0.5, w - 0.5, h - 0.5, -0.5]
    assert (shown(left) == image).all()
    assert bar.get_ylim() == (0.0, 1.0)  # P(fake), 0..1
    assert "P(fake)" in bar.get_ylabel()
    title = fig._suptitle.get_text()
    assert "xception_block1" in title and "0.812" in title


@pytest.mark.parametrize("h, w", [(80, 120), (120, 80)])
def test_one_hot_cell_lands_on_its_patch_of_the_original(rf, h, w):
    """A planted map with one hot cell paints, in the original image's pixels, exactly the
    patch that cell saw (mapped back through the centre square), and nothing outside the
    square."""
    cells = np.zeros(rf.output_size)
    i, j = rf.output_size[0] - 2, 1  # off-centre, so a flipped or transposed map shows
    cells[i, j] = 1.0
    heat = map_to_original(project_map(cells, rf), (h, w))
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    outside = np.ones((h, w), bool)
    outside[top:top + side, left:left + side] = False
    assert np.isnan(heat[outside]).all()
    # Inside, only what no cell sees is unpainted (block1 skips the last row and column).
    assert np.isnan(heat[~outside]).mean() < 0.1
    r0, c0, r1, c1 = box_to_original(rf.box(i, j), (h, w), SIZE)
    hot = np.argwhere(np.nan_to_num(heat) > 0)
    assert hot[:, 0].min() >= r0 and hot[:, 0].max() < r1
    assert hot[:, 1].min() >= c0 and hot[:, 1].max() < c1
    # The field fills its box (up to one pixel of rounding at each edge).
    assert hot[:, 0].min() <= r0 + 1 and hot[:, 0].max() >= r1 - 2
    assert hot[:, 1].min() <= c0 + 1 and hot[:, 1].max() >= c1 - 2
    # The figure paints the same pixels: only they differ from an all-real map's overlay.
    image = face_like(7, max(h, w))[:h, :w]
    fig = heatmap_figure(image, cells, rf, score=0.5, model="m")
    cold = heatmap_overlay(image, map_to_original(project_map(np.zeros_like(cells), rf),
                                                  (h, w)), zoom=1)
    changed = (shown(fig.axes[1]) != cold).any(-1)
    assert changed.any() and (changed <= (np.nan_to_num(heat) > 0)).all()
    assert (shown(fig.axes[1])[outside] == image[outside]).all()  # unpainted outside


def test_bad_figure_inputs_say_what_is_wrong(rf):
    with pytest.raises(ValueError, match="uint8"):
        heatmap_figure(np.zeros((8, 8, 3)), np.zeros(rf.output_size), rf, score=0.5, model="m")
    with pytest.raises(ValueError, match="output"):
        heatmap_figure(np.zeros((8, 8, 3), np.uint8), np.zeros((2, 2)), rf, score=0.5,
                       model="m")


# --- Detector.heatmap and score --heatmaps --------------------------------------------------------

@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny trained run, and a copy whose checkpoint differs by one extra entry (another
    SHA-256: another model as far as heatmap folders are concerned)."""
    base = tmp_path_factory.mktemp("heatmaps")
    first = train_tiny(base, n_train=32, epochs=1)
    other = base / "other"
    shutil.copytree(first, other)
    state = torch.load(other / "best.pt", map_location="cpu", weights_only=False)
    state["note"] = "another model"
    torch.save(state, other / "best.pt")
    (other / "calibration.json").unlink(missing_ok=True)
    assert checkpoint_sha256(first / "best.pt") != checkpoint_sha256(other / "best.pt")
    return first, other


def test_detector_heatmap_shows_the_original_image_and_the_csv_box(runs, tmp_path):
    det = patchforensics.load(runs[0])
    image = face_like(3, 120)[:80]  # 80 x 120: wider than tall
    fig = det.heatmap(image)
    assert len(fig.axes) == 3
    assert shown(fig.axes[0]).shape == (80, 120, 3)
    assert f"{det.score(image):.3f}" in fig._suptitle.get_text()
    assert det.name in fig._suptitle.get_text()
    # The outlined patch is the box `score` writes, in the same original pixels.
    Image.fromarray(image).save(tmp_path / "wide.png")
    row = score_files(runs[0], [tmp_path / "wide.png"], progress=False).iloc[0]
    (rect,) = fig.axes[1].patches
    x, y = rect.get_xy()
    assert (y + 0.5, x + 0.5, y + 0.5 + rect.get_height(), x + 0.5 + rect.get_width()) == (
        row["box_top"], row["box_left"], row["box_bottom"], row["box_right"])
    assert 20 <= row["box_left"] < row["box_right"] <= 100  # inside the centre square


@pytest.fixture()
def inputs(tmp_path) -> tuple[Path, Path]:
    """A folder with subfolders (one file unreadable, two sharing a stem) and a loose file."""
    folder = tmp_path / "in"
    (folder / "sub" / "deeper").mkdir(parents=True)
    Image.fromarray(face_like(1, 48)).save(folder / "a.png")
    Image.fromarray(face_like(2, 96)[:, :64]).save(folder / "sub" / "photo_01.jpg")
    Image.fromarray(face_like(3, 40)).save(folder / "sub" / "photo_01.png")
    Image.fromarray(face_like(4, 32)).save(folder / "sub" / "deeper" / "x.png")
    (folder / "sub" / "broken.png").write_bytes(b"not a png")
    loose = tmp_path / "elsewhere" / "face.png"
    loose.parent.mkdir()
    Image.fromarray(face_like(5, 60)[:50]).save(loose)
    return folder, loose


def test_score_heatmaps_keep_subfolders_and_fill_the_heatmap_column(runs, inputs, tmp_path):
    folder, loose = inputs
    heat = tmp_path / "heat"
    table = score_files(runs[0], [folder, loose], heatmaps=heat, progress=False)
    by_name = dict(zip(table["path"].map(lambda p: Path(p).relative_to(tmp_path).as_posix()),
                       table["heatmap"], strict=True))
    assert by_name == {
        "in/a.png": (heat / "a.heatmap.png").as_posix(),
        "in/sub/broken.png": "",  # skipped: no heatmap
        "in/sub/deeper/x.png": (heat / "sub/deeper/x.heatmap.png").as_posix(),
        "in/sub/photo_01.jpg": (heat / "sub/photo_01.heatmap.png").as_posix(),
        "in/sub/photo_01.png": (heat / "sub/photo_01_2.heatmap.png").as_posix(),
        "elsewhere/face.png": (heat / "face.heatmap.png").as_posix()}
    written = sorted(p.relative_to(heat).as_posix() for p in heat.rglob("*.heatmap.png"))
    assert written == sorted(Path(v).relative_to(heat).as_posix() for v in by_name.values() if v)
    with Image.open(heat / "sub" / "photo_01.heatmap.png") as im:
        assert im.width > im.height  # image | overlay side by side
    marker = json.loads((heat / HEATMAP_MARKER).read_text())
    assert marker["checkpoint_sha256"] == checkpoint_sha256(runs[0] / "best.pt")
    assert marker["model"] == "xception_block1"
    # The same model again into its own folder: fine, and the heatmaps are not inputs now.
    again = score_files(runs[0], [folder, loose], heatmaps=heat, progress=False)
    assert again["heatmap"].tolist() == table["heatmap"].tolist()
    inside = score_files(runs[0], [tmp_path], heatmaps=heat, progress=False)
    assert not inside["path"].str.contains("/heat/").any()


def test_another_models_heatmap_folder_is_refused_unless_forced(runs, inputs, tmp_path):
    first, other = runs
    folder, loose = inputs
    heat = tmp_path / "heat"
    score_files(first, [folder, loose], heatmaps=heat, progress=False)
    with pytest.raises(FileExistsError, match=str(heat)) as err:
        score_files(other, [folder], heatmaps=heat, progress=False)
    assert "xception_block1" in str(err.value) and "\n" not in str(err.value)
    assert (json.loads((heat / HEATMAP_MARKER).read_text())["checkpoint_sha256"]
            == checkpoint_sha256(first / "best.pt"))  # untouched
    table = score_files(other, [folder], heatmaps=heat, force=True, progress=False)
    assert (json.loads((heat / HEATMAP_MARKER).read_text())["checkpoint_sha256"]
            == checkpoint_sha256(other / "best.pt"))
    # The first model's heatmap of the loose file is gone: the folder is one model's.
    assert not (heat / "face.heatmap.png").exists()
    assert all(Path(p).exists() for p in table["heatmap"] if p)
    score_files(other, [folder], heatmaps=heat, progress=False)  # its own folder now
    # A folder of other files (no marker) is not a heatmap folder either.
    with pytest.raises(FileExistsError, match="no heatmaps.json"):
        score_files(first, [loose], heatmaps=folder, progress=False)


def test_cli_score_refuses_a_foreign_heatmap_folder_with_status_2(runs, inputs, tmp_path,
                                                                  capsys):
    first, other = runs
    folder, _ = inputs
    heat = tmp_path / "heat"
    out = tmp_path / "scores.csv"
    assert cli.main(["score", str(first), str(folder), "--heatmaps", str(heat), "--out",
                     str(out), "--quiet", "--device", "cpu"]) == 0
    capsys.readouterr()
    rc = cli.main(["score", str(other), str(folder), "--heatmaps", str(heat), "--quiet",
                   "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 2 and str(heat) in err and "Traceback" not in err, err
    assert cli.main(["score", str(other), str(folder), "--heatmaps", str(heat), "--out",
                     str(out), "--force", "--quiet", "--device", "cpu"]) == 0
    assert pd.read_csv(out, keep_default_na=False)["heatmap"].str.endswith(
        ".heatmap.png").sum() == 4
