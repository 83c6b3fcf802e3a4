"""Localizing manipulations (``localize``): local image scores (top-k), patch maps in pixels,
Grad-CAM and input gradients, the per-image metrics and their table; and the claim on a planted
manipulation: a briefly trained patch model points at a pasted textured square."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from scipy.special import expit
from sklearn.metrics import roc_auc_score
from torch import nn

from patchforensics import attribution as att
from patchforensics import localize as loc
from patchforensics import sanity
from patchforensics.checkpoint import load_checkpoint
from patchforensics.models import ModelConfig, build_model
from patchforensics.receptive_field import receptive_field
from patchforensics.score_modes import MODES, log_odds_from_maps

from conftest import face_like

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE = 32  # the planted images' side; xception block1 at 32 px has a packaged field (7 x 7)


# --- top-k image scores ------------------------------------------------------------------------

def test_topk_spans_max_to_mean_logit():
    maps = np.random.default_rng(0).normal(size=(5, 4, 6))
    flat = maps.reshape(5, -1)
    np.testing.assert_allclose(loc.topk_log_odds(maps, 1), flat.max(1))
    np.testing.assert_allclose(loc.topk_log_odds(maps, 24), log_odds_from_maps(maps, "mean_logit"))
    np.testing.assert_allclose(loc.topk_log_odds(maps, 500), flat.mean(1))  # clipped to h w
    np.testing.assert_allclose(loc.topk_log_odds(maps, 3), np.sort(flat, 1)[:, -3:].mean(1))
    np.testing.assert_allclose(loc.topk_scores(maps, 3), expit(loc.topk_log_odds(maps, 3)))
    assert loc.default_ks(24) == [1, 2, 4, 8, 16, 24] and loc.default_ks(16) == [1, 2, 4, 8, 16]
    with pytest.raises(ValueError, match="k must be"):
        loc.topk_log_odds(maps, 0)


def one_hot_cell_maps(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """8 x 8 maps of cold cells (d ~ N(-2, 1)); each fake has one hot cell (d = 6): the mean
    over 64 cells dilutes it, the top cell shows it."""
    rng = np.random.default_rng(seed)
    real = rng.normal(-2, 1, (n, 8, 8))
    fake = rng.normal(-2, 1, (n, 8, 8))
    fake[np.arange(n), rng.integers(0, 8, n), rng.integers(0, 8, n)] = 6.0
    return real, fake


def test_choose_k_picks_a_local_k_on_a_planted_case_and_ties_go_to_the_larger():
    real, fake = one_hot_cell_maps(200, 0)
    k = loc.choose_k(real, fake)
    y = np.r_[np.zeros(200), np.ones(200)]
    auc = {c: roc_auc_score(y, np.r_[loc.topk_log_odds(real, c), loc.topk_log_odds(fake, c)])
           for c in loc.default_ks(64)}
    assert k < 64 and auc[k] == max(auc.values())
    assert all(auc[c] < auc[k] for c in auc if c > k)  # the largest of the best
    assert auc[k] > auc[64] + 0.2  # the mean dilutes one hot cell
    assert loc.choose_k(real, fake, ks=[1, 2]) == 2  # both separate perfectly: the larger


def test_aggregation_table_mean_calls_one_hot_fakes_real_topk_calls_them_fake():
    real, fake = one_hot_cell_maps(100, 1)
    table = loc.aggregation_table(real, fake, 1, n_boot=200).set_index("mode")
    assert list(table.index) == [*MODES, "topk"]
    assert "topk" not in MODES
    assert table.loc["topk", "k"] == 1 and pd.isna(table.loc["mean_softmax", "k"])
    assert table.loc["mean_softmax", "fake_called_fake"] < 0.1
    assert table.loc["topk", "fake_called_fake"] > 0.9
    # the price at the fixed 0.5: the hottest of 64 cold cells (about -2 + 2.4) is often > 0,
    # so top-1 needs a threshold chosen on validation data, like any other score
    assert table.loc["mean_softmax", "real_called_real"] == 1.0
    assert table.loc["topk", "real_called_real"] < 0.5
    assert table.loc["topk", "auc"] > table.loc["mean_softmax", "auc_high"]
    for metric in ("auc", "fake_called_fake", "real_called_real"):
        assert (table[f"{metric}_low"] <= table[metric]).all()
        assert (table[metric] <= table[f"{metric}_high"]).all()
    again = loc.aggregation_table(real, fake, 1, n_boot=200).set_index("mode")
    pd.testing.assert_frame_equal(table, again)


# --- metrics -----------------------------------------------------------------------------------

def square_masks(n: int, size: int, side: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, size, size))
    for m, (r, c) in zip(masks, rng.integers(0, size - side + 1, (n, 2)), strict=True):
        m[r: r + side, c: c + side] = 1.0
    return masks


def test_metrics_of_perfect_inverted_and_random_maps():
    masks = square_masks(300, 16, 6, 0)
    perfect = masks * 0.9 + 0.05
    assert (loc.pixel_auc(perfect, masks) == 1).all()
    assert loc.pointing_game(att.max_points(perfect), masks).all()
    np.testing.assert_allclose(loc.mass_inside(masks, masks), 1.0)
    assert (loc.pixel_auc(1 - perfect, masks) == 0).all()
    assert not loc.pointing_game(att.max_points(1 - perfect), masks).any()
    noise = att.random_maps(300, 16, seed=1)
    area = masks.mean()
    assert abs(np.nanmean(loc.pixel_auc(noise, masks)) - 0.5) < 0.02
    assert abs(loc.pointing_game(att.max_points(noise), masks).mean() - area) < 0.06
    assert abs(loc.mass_inside(noise, masks).mean() - area) < 0.01
    flat = np.ones_like(masks)  # ranks nothing; its maximum is a random pixel: chance
    assert (loc.pixel_auc(flat, masks) == 0.5).all()
    assert abs(loc.pointing_game(att.max_points(flat), masks).mean() - area) < 0.06
    # Grad-CAM's point: the top cell's centre; an all-zero cell map points at random cells
    cells = np.zeros((2, 2, 2))
    cells[0, 1, 0] = 1.0
    np.testing.assert_allclose(att.cell_points(cells, 16)[0], [11.5, 3.5])
    picks = {tuple(p) for p in att.cell_points(np.zeros((200, 2, 2)), 16)}
    assert picks == {(3.5, 3.5), (3.5, 11.5), (11.5, 3.5), (11.5, 11.5)}


def test_metrics_binarise_masks_and_handle_nan():
    mask = np.zeros((1, 4, 4))
    mask[0, 1:3, 1:3] = 0.6
    mask[0, 0, 0] = 0.4  # below the threshold: not manipulated
    heat = np.full((1, 4, 4), 0.1)
    heat[0, 1:3, 1:3] = 0.8
    heat[0, 3, :] = np.nan  # pixels no patch sees: left out
    heat[0, 0, 3] = 5.0 * np.nan
    assert loc.pixel_auc(heat, mask)[0] == 1.0
    # mass is heat above the map's minimum (0.1): all of it lies inside
    assert loc.mass_inside(heat, mask)[0] == pytest.approx(1.0)
    heat[0, 0, 1] = 0.3  # one warmer pixel outside: 0.2 of 2.8 + 0.2 outside
    assert loc.mass_inside(heat, mask)[0] == pytest.approx(2.8 / 3.0)
    assert loc.mass_inside(heat + 5, mask)[0] == pytest.approx(2.8 / 3.0)  # offsets do not count
    assert tuple(att.max_points(heat)[0]) in {(1, 1), (1, 2), (2, 1), (2, 2)}  # tied maxima
    assert np.isnan(att.max_points(np.full((1, 4, 4), np.nan))).all()
    points = np.array([[1.4, 2.5], [0.5, 0.4], [np.nan, 1.0]])
    masks = np.repeat(mask, 3, 0)
    # (1.4, 2.5) -> pixel (1, 3): outside; (0.5, 0.4) -> (1, 0): outside; NaN: a miss
    assert loc.pointing_game(points, masks).tolist() == [False, False, False]
    assert loc.pointing_game(np.array([[1.49, 2.49]]), mask).tolist() == [True]
    empty = np.zeros((1, 4, 4))
    assert np.isnan(loc.pixel_auc(heat, empty)[0]) and np.isnan(loc.pixel_auc(heat, 1 - empty)[0])
    # a flat map (no evidence) scores the mask's area, its chance level, instead of dropping out
    assert loc.mass_inside(np.zeros((1, 4, 4)), mask)[0] == pytest.approx(4 / 16)
    assert loc.mass_inside(np.full((1, 4, 4), 0.7), mask)[0] == pytest.approx(4 / 16)
    assert np.isnan(loc.mass_inside(np.full((1, 4, 4), np.nan), mask)[0])
    with pytest.raises(ValueError, match="masks are"):
        loc.pixel_auc(heat, np.zeros((1, 5, 5)))


def test_localization_table_means_intervals_chance_and_nans():
    masks = square_masks(40, 16, 8, 2)
    good = loc.localization_frame("patch", "m", "square", masks, att.max_points(masks), masks)
    noise = att.random_maps(40, 16, seed=3)
    bad = loc.localization_frame("random", "m", "square", noise, att.max_points(noise), masks)
    bad.loc[:4, "pixel_auc"] = np.nan
    frames = pd.concat([good, bad])
    table = loc.localization_table(frames, n_boot=300, seed=0).set_index("localizer")
    assert list(table.index) == ["patch", "random"]
    assert table.loc["patch", "pointing_game"] == 1.0 == table.loc["patch", "pixel_auc"]
    # 40 hits of 40: Wilson's interval does not collapse at 1 as a bootstrap's would
    assert 0.9 < table.loc["patch", "pointing_game_low"] < 1.0
    assert table.loc["patch", "pointing_game_high"] == pytest.approx(1.0)
    assert table.loc["random", "n"] == 40
    r = table.loc["random"]
    assert r["pixel_auc"] == pytest.approx(bad["pixel_auc"].iloc[5:].mean())  # NaNs dropped
    assert r["pointing_game_low"] < r["pointing_game"] < r["pointing_game_high"]
    assert r["mask_area"] == pytest.approx(0.25)
    pd.testing.assert_frame_equal(table, loc.localization_table(frames, n_boot=300, seed=0)
                                  .set_index("localizer"))
    assert not loc.localization_table(frames, n_boot=300, seed=1).equals(table.reset_index())


# --- patch maps in pixels ----------------------------------------------------------------------

def test_patch_points_and_pixel_maps_follow_the_receptive_fields():
    rf = receptive_field(ModelConfig("xception", "block1"), SIZE)
    h, w = rf.output_size
    rows, cols = att.cell_centres(rf)
    # interior cells: the middle of their field; border cells continue the grid, inside the box
    assert rows[3] == (rf.rows[3][0] + rf.rows[3][1] - 1) / 2
    np.testing.assert_allclose(np.diff(rows), rf.stride * rf.scale)
    maps = np.full((h * w, h, w), -3.0)
    for n, (i, j) in enumerate(np.ndindex(h, w)):
        maps[n, i, j] = 4.0
    points = att.patch_points(maps, rf)
    heat = att.patch_pixel_maps(maps, rf)
    assert heat.shape == (h * w, SIZE, SIZE)
    for n, (i, j) in enumerate(np.ndindex(h, w)):
        top, left, bottom, right = rf.box(i, j)
        r, c = points[n]
        assert top <= r < bottom and left <= c < right
        inside = rf.mask(i, j)
        seen = ~np.isnan(heat[n])
        # the hot cell's P(fake) reaches exactly the pixels it sees
        assert (heat[n][inside & seen] > expit(-3.0) + 1e-9).all()
        assert np.allclose(heat[n][~inside & seen], expit(-3.0))
    assert np.isnan(heat[:, :, -1]).all()  # block1 at 32 px never reads the last column
    with pytest.raises(ValueError, match="model's output"):
        att.patch_points(np.zeros((1, 3, 3)), rf)


# --- attributions ------------------------------------------------------------------------------

class Square(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * x


class Region(nn.Module):
    """Zero outside the top-right quadrant of the network's input grid."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        keep = torch.zeros_like(x)
        keep[..., : x.shape[-2] // 2, x.shape[-1] // 2:] = 1
        return x * keep


def region_model() -> nn.Module:
    """A "full-image" classifier upsampling 32 -> 64 px whose fake logit is the high-frequency
    energy of the top-right quadrant only (a real PatchClassifier's resize, hand-built
    features)."""
    model = build_model(ModelConfig("xception", "block1", load_size=64))
    conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
    with torch.no_grad():
        lap = torch.tensor([[0.0, -1, 0], [-1, 4, -1], [0, -1, 0]])
        conv.weight.copy_(lap.expand(4, 3, 3, 3) * torch.tensor([1.0, 0.5, 0.25, 2])[:, None,
                                                                                     None, None])
    model.features = nn.Sequential(OrderedDict(highpass=conv, square=Square(), region=Region()))
    model.pool = nn.AdaptiveAvgPool2d(1)
    model.head = nn.Conv2d(4, 2, 1)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.weight[1] = 1.0  # fake = energy, real = 0
        model.head.bias.zero_()
    return model


def test_gradcam_and_input_gradient_find_the_region_the_logit_reads():
    model = region_model().train()
    images = np.stack([np.asarray(Image.fromarray(np.random.default_rng(i).integers(
        0, 256, (SIZE, SIZE, 3), dtype=np.uint8))) for i in range(3)])
    region = np.zeros((3, SIZE, SIZE))
    region[:, : SIZE // 2, SIZE // 2:] = 1
    for heat in (att.gradcam(model, images, batch_size=2),
                 att.input_gradient(model, images, batch_size=2)):
        assert heat.shape == (3, SIZE, SIZE) and heat.dtype == np.float64
        assert heat.min() >= 0 and np.allclose(heat.max(axis=(1, 2)), 1)
        assert (loc.mass_inside(heat, region) > 0.95).all()  # not transposed, not flipped
        assert loc.pointing_game(att.max_points(heat), region).all()
    assert model.training  # the model's mode is restored
    with pytest.raises(ValueError, match="no block 'block4'"):
        att.gradcam(model, images, layer="block4")
    # an earlier block: the squared high-pass response is positive and region-free there
    assert att.gradcam(model, images, layer="square").shape == (3, SIZE, SIZE)
    with torch.no_grad():
        model.head.weight[1] = -1.0  # more energy = more real: no fake evidence anywhere
    assert (att.gradcam(model, images) == 0).all()  # all-zero stays zero, no NaN


def test_gradcam_of_a_full_xception_at_64px_is_a_2x2_map_upsampled():
    model = build_model(ModelConfig("xception", "full"), seed=0)
    with torch.no_grad():  # fake logit = mean of the (post-ReLU) features: positive weights
        model.head.weight.zero_()
        model.head.weight[1] = 1.0 / model.head.weight.shape[1]
    images = np.stack([face_like(i, 64) for i in range(2)])
    heat = att.gradcam(model, images)
    assert heat.shape == (2, 64, 64) and np.allclose(heat.max(axis=(1, 2)), 1)
    assert heat.min() >= 0
    # bilinear from 2 x 2 cell centres (16, 48): flat outside them, linear between
    for h in heat:
        assert np.allclose(h[:16, :16], h[0, 0]) and np.allclose(h[48:, 48:], h[63, 63])
    finer = att.gradcam(model, images, layer="block4")  # 4 x 4 activations
    assert finer.shape == (2, 64, 64) and 0 <= finer.min() and finer.max() <= 1
    grad = att.input_gradient(model, images)
    assert grad.shape == (2, 64, 64) and np.allclose(grad.max(axis=(1, 2)), 1)


def test_gradcam_layer_is_the_deepest_block_whose_grid_is_at_least_6x6():
    full = build_model(ModelConfig("xception", "full"), seed=0)
    grids = dict(att.feature_grids(full, 64))
    assert list(grids) == att.feature_layers(full)
    assert grids["block2"] == (8, 8) and grids["block3"] == (4, 4) and grids["relu4"] == (2, 2)
    assert att.gradcam_layer(full, 64) == "block2"  # the last block would give 2 x 2
    assert att.gradcam_layer(full, 32) == "block1"  # 7 x 7; block2 is 4 x 4 there
    assert att.gradcam_layer(full, 64, min_cells=2) == "relu4"
    # the same network upsampling to 192 px inside: its last block is already 6 x 6
    up = build_model(ModelConfig("xception", "full", load_size=192), seed=0)
    assert att.gradcam_layer(up, 64) == "relu4"
    cells = att.gradcam_cells(full, np.stack([face_like(i, 64) for i in range(2)]),
                              layer=att.gradcam_layer(full, 64))
    assert cells.shape == (2, 8, 8)
    assert full.training  # the probe forward restored the training flag
    with pytest.raises(ValueError, match="no block has a grid of at least 40"):
        att.gradcam_layer(full, 32, min_cells=40)


# --- the claim: a patch model points at a planted manipulation ---------------------------------

SIDE = 12  # the pasted square, px (a 19 px block1 field containing it is centred inside it)


def planted(seed: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(reals, fakes, masks)``: smooth random images; the fakes are the same images with a
    +-40 gray-level checkerboard of 2 x 2 px tiles added inside a SIDE px square at a random
    position; the mask is the square. (Single-pixel tiles would alias to a flat shift under the
    stride-2 stem, leaving only the square's edges to detect.)"""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIDE, :SIDE]
    board = np.where((yy // 2 + xx // 2) % 2 == 0, 40, -40)[..., None]
    reals = np.stack([face_like(seed * 10_000 + i, SIZE) for i in range(n)])
    fakes, masks = reals.astype(np.int16), np.zeros((n, SIZE, SIZE))
    for f, m, (r, c) in zip(fakes, masks, rng.integers(0, SIZE - SIDE + 1, (n, 2)), strict=True):
        f[r: r + SIDE, c: c + SIDE] += board
        m[r: r + SIDE, c: c + SIDE] = 1.0
    return reals, np.clip(fakes, 0, 255).astype(np.uint8), masks


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory) -> Path:
    """Xception block1 trained 8 epochs on 128 planted pairs at 32 px (about 4 s)."""
    from patchforensics.train import train
    from patchforensics.train_config import TrainConfig

    base = tmp_path_factory.mktemp("localize")
    for split, seed, n in (("train", 1, 128), ("val", 2, 16)):
        reals, fakes, _ = planted(seed, n)
        for kind, images in (("real", reals), ("fake", fakes)):
            (base / kind / split).mkdir(parents=True)
            for i, im in enumerate(images):
                Image.fromarray(im).save(base / kind / split / f"{i}.png")
    cfg = TrainConfig(arch="xception", depth="block1", epochs=8, patience=8, batch_size=16)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # module fixtures start before `one_thread`; 2 threads on a busy
    try:  #                     2-core machine made this 10x slower
        train(cfg, base / "real", base / "fake", base / "run", device="cpu", progress=False)
    finally:
        torch.set_num_threads(threads)
    return base / "run"


def test_a_patch_model_points_at_a_planted_square(planted_run):
    _, fakes, masks = planted(3, 64)  # held-out test fakes
    out = loc.localize_set(planted_run, fakes, masks, localizer="patch", manipulation="square")
    assert out.heat.shape == (64, SIZE, SIZE) and out.points.shape == (64, 2)
    row = loc.localization_table(out.frame, n_boot=1000).iloc[0]
    chance = row["mask_area"]
    assert chance == pytest.approx(SIDE**2 / SIZE**2)
    assert row["pointing_game"] >= max(0.6, 2 * chance)
    assert row["pointing_game_low"] > chance
    assert row["pixel_auc"] > 0.75 and row["pixel_auc_low"] > 0.5
    assert row["mass_inside"] > chance
    chance_row = loc.localization_table(loc.localize_set(
        planted_run, fakes, masks, localizer="random").frame).iloc[0]
    assert chance_row["pixel_auc_low"] < 0.5 < chance_row["pixel_auc_high"] < row["pixel_auc"]


def test_localize_set_names_methods_and_refuses_what_cannot_localize(planted_run):
    ck = load_checkpoint(planted_run, device="cpu")
    _, fakes, masks = planted(4, 4)
    frame = loc.localize_set(ck, fakes, masks, localizer="gradcam", layer="conv2", name="b1").frame
    assert set(frame["localizer"]) == {"gradcam"} and set(frame["model"]) == {"b1"}
    assert set(frame["layer"]) == {"conv2"} and set(frame["grid"]) == {"13x13"}
    assert list(frame.columns) == ["localizer", "model", "manipulation", "image",
                                   "pointing_game", "pixel_auc", "mass_inside", "mask_area",
                                   "pointing_chance", "flat", "layer", "grid"]
    # by default the deepest block with a grid of at least 6 x 6: block1 (7 x 7 at 32 px)
    auto = loc.localize_set(ck, fakes, masks, localizer="gradcam")
    assert set(auto.frame["layer"]) == {"block1"} and auto.grid == (7, 7)
    assert set(loc.localize_set(ck, fakes, masks, localizer="patch").frame["grid"]) == {"7x7"}
    with pytest.raises(ValueError, match="trained on 32 px"):
        loc.localize_set(ck, np.zeros((1, 48, 48, 3), np.uint8), np.zeros((1, 48, 48)),
                         localizer="patch")
    with pytest.raises(ValueError, match="full-image model"):
        loc.localize_set(build_model(ModelConfig("xception", "full")), fakes, masks,
                         localizer="patch")
    with pytest.raises(ValueError, match="localizer must be"):
        loc.localize_set(ck, fakes, masks, localizer="saliency")


def test_pointing_chance_is_the_share_of_a_localizers_points_inside_the_mask():
    masks = np.zeros((2, 16, 16))
    masks[0, 5:11, 5:11] = 1  # a centred square: none of a 2 x 2 grid's centres
    masks[1, :8, :8] = 1  # the top-left quadrant: one of four
    grid = att.grid_candidates((2, 2), 16)
    np.testing.assert_allclose(loc.pointing_chance(grid, masks), [0.0, 0.25])
    np.testing.assert_allclose(loc.pointing_chance(None, masks), [36 / 256, 0.25])  # area
    frame = loc.localization_frame("gradcam", "m", "sq", np.zeros((2, 16, 16)),
                                   att.cell_points(np.zeros((2, 2, 2)), 16), masks,
                                   candidates=grid)
    assert frame["flat"].all() and list(frame["pointing_chance"]) == [0.0, 0.25]
    table = loc.localization_table(frame, n_boot=50)
    assert table.loc[0, "flat_share"] == 1.0 and table.loc[0, "n_mass_inside"] == 2
    assert table.loc[0, "mass_inside"] == pytest.approx((36 / 256 + 0.25) / 2)  # the area


def test_aggregation_reports_each_modes_auc_against_the_mean_paired():
    rng = np.random.default_rng(0)
    real = rng.normal(-1, 1, (40, 4, 4))
    fake = rng.normal(-1, 1, (40, 4, 4))
    fake[:, 0, 0] += 6  # one hot cell: the mean dilutes it, the top-1 sees it
    t = loc.aggregation_table(real, fake, 1, n_boot=200).set_index("mode")
    assert t.loc["mean_softmax", "auc_minus_mean"] == 0
    assert t.loc["topk", "auc_minus_mean_low"] > 0  # top-1 ranks the fakes better, decided


# --- sanity controls ---------------------------------------------------------------------------

def test_derangement_gives_every_image_another_images_mask():
    for n in (2, 3, 10, 101):
        d = sanity.derangement(n, seed=n)
        assert sorted(d) == list(range(n)) and (d != np.arange(n)).all()
    np.testing.assert_array_equal(sanity.derangement(10, 3), sanity.derangement(10, 3))
    assert not np.array_equal(sanity.derangement(10, 3), sanity.derangement(10, 4))
    with pytest.raises(ValueError, match="at least 2"):
        sanity.derangement(1)


def localized(heat: np.ndarray, masks: np.ndarray) -> loc.Localized:
    points = att.max_points(heat)
    return loc.Localized(heat, points, loc.localization_frame("patch", "m", "sq", heat, points,
                                                              masks))


def test_shuffled_masks_take_a_true_localizers_advantage_not_a_structure_pointers():
    masks = square_masks(200, 16, 6, 0)  # the square moves from face to face
    perfect = localized(masks * 0.9 + 0.05, masks)
    order = sanity.derangement(200, 0)
    shuffled = sanity.shuffled_frame(perfect, masks, order)
    assert set(shuffled["control"]) == {"shuffled_masks"}
    assert set(shuffled["localizer"]) == {"patch"}
    assert perfect.frame["pixel_auc"].mean() == 1.0
    assert shuffled["pixel_auc"].mean() < 0.75  # about chance plus the squares' overlap
    assert shuffled["pointing_game"].mean() < 0.5 and shuffled["mask_iou"].mean() < 0.3
    np.testing.assert_allclose(shuffled["mask_area"], masks[order].mean(axis=(1, 2)))
    # where every face's mask lies in the same place, a shuffle changes nothing: the control
    # has no power there, and mask_iou = 1 says so
    same = np.repeat(masks[:1], 200, axis=0)
    fixed = sanity.shuffled_frame(localized(same * 0.9 + 0.05, same), same, order)
    assert fixed["pixel_auc"].mean() == 1.0 and (fixed["mask_iou"] == 1).all()
    table = loc.localization_table(pd.concat([perfect.frame.assign(control="none"), shuffled]),
                                   n_boot=100).set_index("control")
    assert table.loc["none", "pixel_auc"] == 1.0
    assert table.loc["shuffled_masks", "pixel_auc_high"] < 0.8
    assert table.loc["shuffled_masks", "mask_iou"] == pytest.approx(shuffled["mask_iou"].mean())
    with pytest.raises(ValueError, match="indices"):
        sanity.shuffled_frame(perfect, masks, order[:5])


def test_random_weights_are_a_fresh_init_of_the_same_architecture():
    trained = build_model(ModelConfig("xception", "block1", load_size=64), seed=0).train()
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(1.0)  # "training"
    before = {k: v.clone() for k, v in trained.state_dict().items()}
    fresh = sanity.random_weights(trained, seed=0)
    assert fresh.config == trained.config and not fresh.training
    init = build_model(trained.config, seed=0).state_dict()  # a run of seed 0 starts here
    state = fresh.state_dict()
    assert state.keys() == before.keys()
    assert all(torch.equal(state[k], init[k]) for k in state)
    assert not torch.equal(state["features.conv1.weight"], before["features.conv1.weight"])
    other = sanity.random_weights(trained, seed=1).state_dict()
    assert not torch.equal(other["features.conv1.weight"], state["features.conv1.weight"])
    assert all(torch.equal(v, before[k]) for k, v in trained.state_dict().items())


def test_a_trained_patch_map_beats_its_random_weights_twin_on_the_planted_square(planted_run):
    ck = load_checkpoint(planted_run, device="cpu")
    _, fakes, masks = planted(5, 48)
    trained = loc.localize_set(ck, fakes, masks, localizer="patch").frame
    fresh = loc.localize_set(sanity.random_weights(ck.model, seed=0), fakes, masks,
                             localizer="patch").frame
    table = loc.localization_table(pd.concat([trained.assign(control="none"),
                                              fresh.assign(control="random_weights")]),
                                   n_boot=500).set_index("control")
    # what the training added: the untrained network's map ranks the square far worse
    assert table.loc["none", "pixel_auc_low"] > table.loc["random_weights", "pixel_auc_high"]
    assert table.loc["none", "pointing_game"] > table.loc["random_weights", "pointing_game"]
