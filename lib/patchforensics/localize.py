"""Where is the manipulation? Patch maps against the attributions of a full-image classifier.

Chai et al. (2020, Sec. 4.3-4.4) argue that patch classifiers show *where* an image looks fake,
and read their maps by eye. On manipulated faces (faceswap and the like) the data carry exact
ground-truth masks, so the claim can be measured: do a patch model's maps point at the
manipulated region more often than the usual explanations of a full-image classifier?

Localizers (:data:`LOCALIZERS`), each giving an N x S x S heat map at the image size S and one
point per image:

- ``patch``: the patch model's own P(fake) per cell, projected onto the pixels each cell sees
  (``receptive_field.project_map``); its point is the field centre of the most fake cell;
- ``gradcam``: Grad-CAM (Selvaraju et al. 2017) of the fake-minus-real logit of a full-image
  model, in :func:`localize_set` at the deepest block whose grid is at least
  :data:`GRADCAM_MIN_CELLS` cells a side (:func:`gradcam_layer`: a full Xception's last block
  sees a 64 px face as 2 x 2 cells, too coarse to point at anything);
- ``gradient``: the input gradient's magnitude (Simonyan et al. 2014);
- ``random``: i.i.d. uniform maps, the chance level.

Metrics per image (:func:`pixel_auc`, the ranking of mask pixels above the others, which no
rescaling or offset of a map changes; :func:`pointing_game`; :func:`mass_inside`) and a table
with intervals over images (:func:`localization_table`). The sanity controls of a localizer
(masks shuffled across faces, a network with random weights) are in ``sanity``.

A local manipulation also needs a *local image score*: averaging a map over the face dilutes one
fake region among many real-looking patches (the paper's ``mean_softmax`` calls such an image
real). :func:`topk_log_odds` scores an image by its k most fake patches, :func:`choose_k` picks k
on validation data and :func:`aggregation_table` compares it with ``score_modes.MODES``.

Conventions. Masks are N x S x S floats in [0, 1], binarised at >= 0.5 (a pixel at least half
manipulated counts as manipulated). Points are (row, col) in *pixel-index* coordinates: pixel
(i, j) is centred on (i, j), so a field covering rows [r0, r1) has its centre at
(r0 + r1 - 1) / 2, and a point falls on the pixel ``floor(p + 0.5)`` (halves round up).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy.special import expit
from torch import nn

from .checkpoint import Checkpoint, Device, load_checkpoint, logit_maps
from .data import FAKE, REAL
from .devices import resolve_device
from .models import PatchClassifier
from .receptive_field import ReceptiveField, project_map, receptive_field
from .score_modes import MODES, log_odds_from_maps, scores_from_maps
from .stats import (
    LEVEL,
    N_BOOT,
    boot_counts,
    interval,
    named_rng,
    weighted_auc,
    wilson_interval,
)

LOCALIZERS = ("patch", "gradcam", "gradient", "random")
METRICS = ("pointing_game", "pixel_auc", "mass_inside")
GRADCAM_MIN_CELLS = 6  # Grad-CAM's grid side at least this (gradcam_layer): a 6 x 6 grid's
#   cells are a sixth of the face, about block2's patch (22 %); 2 x 2 quadrants point nowhere
MASK_THRESHOLD = 0.5  # a mask pixel at least half manipulated counts as manipulated


# --- local image scores ------------------------------------------------------------------------

def _check_maps(maps: np.ndarray) -> np.ndarray:
    maps = np.asarray(maps)
    if maps.ndim != 3:
        raise ValueError(f"expected N x h x w maps, got shape {maps.shape}")
    return maps


def topk_log_odds(maps: np.ndarray, k: int) -> np.ndarray:
    """Local image score: the mean of each image's ``k`` largest patch logit differences.

    ``maps``: N x h x w logit-difference maps (``checkpoint.logit_maps``); returns N float64,
    unbounded, > 0 = fake. ``k`` is clipped to h * w: ``k = 1`` is the most fake patch,
    ``k >= h * w`` the mean logit (``score_modes.log_odds_from_maps(maps, "mean_logit")``). Mean
    *logits* rather than probabilities, so the score keeps its order where sigmoid saturates."""
    maps = _check_maps(maps)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    flat = maps.reshape(len(maps), -1).astype(np.float64)
    k = min(int(k), flat.shape[1])
    if k == flat.shape[1]:
        return flat.mean(axis=1)
    # partition, not sort: the top k in O(h w) per image, their order does not matter
    return -np.partition(-flat, k - 1, axis=1)[:, :k].mean(axis=1)


def topk_scores(maps: np.ndarray, k: int) -> np.ndarray:
    """:func:`topk_log_odds` as a probability: N float64 in [0, 1], > 0.5 = fake."""
    return expit(topk_log_odds(maps, k))


def default_ks(n_cells: int) -> list[int]:
    """Candidate k for ``n_cells`` patches: 1, 2, 4, 8, ... below ``n_cells``, and ``n_cells``."""
    ks = [1 << e for e in range(max(int(n_cells), 1).bit_length()) if 1 << e < n_cells]
    return ks + [int(n_cells)]


def choose_k(val_real_maps: np.ndarray, val_fake_maps: np.ndarray,
             ks: Sequence[int] | None = None) -> int:
    """The k of :func:`topk_log_odds` with the highest AUC on validation maps (N x h x w each;
    ``ks`` default :func:`default_ks`).

    Ties go to the *larger* k: validation splits are often perfectly separated, so many k tie
    at AUC 1, and a mean over more patches rests less on one noisy patch and stays closer to
    the paper's mean aggregation; a smaller k has to earn its place by a strictly better AUC."""
    real, fake = _check_maps(val_real_maps), _check_maps(val_fake_maps)
    if real.shape[1:] != fake.shape[1:]:
        raise ValueError(f"real maps {real.shape[1:]} and fake maps {fake.shape[1:]} differ")
    if not len(real) or not len(fake):
        raise ValueError("need validation maps of reals and of fakes")
    cands = sorted({int(k) for k in (ks or default_ks(real.shape[1] * real.shape[2]))})
    aucs = [float(weighted_auc(topk_log_odds(real, k), topk_log_odds(fake, k))[0])
            for k in cands]
    best = max(aucs)
    return max(k for k, a in zip(cands, aucs, strict=True) if a >= best - 1e-12)


def aggregation_table(real_maps: np.ndarray, fake_maps: np.ndarray, k: int, *,
                      n_boot: int = N_BOOT, seed: int = 0) -> pd.DataFrame:
    """How each way of turning a map into an image score fares on one test pair: one row per
    mode of ``score_modes.MODES`` and ``"topk"`` (:func:`topk_log_odds` with ``k``).

    Columns: ``mode``, ``k`` (topk only), ``n_real``, ``n_fake``, ``auc`` (fake positive, on the
    order-keeping scores) with ``auc_low``/``auc_high``, ``auc_minus_mean`` (this mode's AUC
    minus that of ``MODES[0]``, the paper's mean patch softmax, with a paired interval
    ``auc_minus_mean_low``/``_high``), ``fake_called_fake`` and
    ``real_called_real`` (shares with probability score > 0.5 / <= 0.5) with ``_low``/``_high``.
    Intervals: ``stats.LEVEL`` percentile bootstrap over images, reals and fakes resampled
    separately, the same ``n_boot`` resamples for every mode (seeded by ``seed``), so modes
    compare paired. "topk" is not added to ``score_modes.MODES``: the other tables iterate it."""
    real, fake = _check_maps(real_maps), _check_maps(fake_maps)
    rng = np.random.default_rng(seed)
    w_real, w_fake = boot_counts(len(real), n_boot, rng), boot_counts(len(fake), n_boot, rng)

    def share(called: np.ndarray, w: np.ndarray) -> tuple[float, float, float]:
        called = called.astype(np.float64)
        return (float(called.mean()), *interval(w @ called / len(called)))

    rows = []
    base_boot: np.ndarray | None = None
    base_auc = 0.0
    for mode in (*MODES, "topk"):
        if mode == "topk":
            rank_r, rank_f = topk_log_odds(real, k), topk_log_odds(fake, k)
            prob_r, prob_f = topk_scores(real, k), topk_scores(fake, k)
        else:
            rank_r, rank_f = log_odds_from_maps(real, mode), log_odds_from_maps(fake, mode)
            prob_r, prob_f = scores_from_maps(real, mode), scores_from_maps(fake, mode)
        ff, ff_lo, ff_hi = share(prob_f > 0.5, w_fake)
        rr, rr_lo, rr_hi = share(prob_r <= 0.5, w_real)
        auc = float(weighted_auc(rank_r, rank_f)[0])
        boot = weighted_auc(rank_r, rank_f, w_real, w_fake)
        if base_boot is None:  # the first mode, the paper's mean patch softmax
            base_boot, base_auc = boot, auc
        rows.append({"mode": mode, "k": int(k) if mode == "topk" else pd.NA,
                     "n_real": len(real), "n_fake": len(fake), "auc": auc,
                     **dict(zip(("auc_low", "auc_high"), interval(boot), strict=True)),
                     # paired over the shared resamples: this mode's AUC minus the mean's
                     "auc_minus_mean": auc - base_auc,
                     **dict(zip(("auc_minus_mean_low", "auc_minus_mean_high"),
                                interval(boot - base_boot), strict=True)),
                     "fake_called_fake": ff, "fake_called_fake_low": ff_lo,
                     "fake_called_fake_high": ff_hi,
                     "real_called_real": rr, "real_called_real_low": rr_lo,
                     "real_called_real_high": rr_hi})
    table = pd.DataFrame(rows)
    table["k"] = table["k"].astype("Int64")
    return table


# --- patch maps in pixels ----------------------------------------------------------------------

def _cell_centres(ranges: Sequence[tuple[int, int]], step: float) -> np.ndarray:
    mid = np.array([(a + b - 1) / 2 for a, b in ranges], np.float64)
    spans = np.array([b - a for a, b in ranges])
    full = np.flatnonzero(spans == spans.max())
    if step <= 0 or len(full) < 2:
        return mid  # one cell (a global model), or every field clipped: box midpoints
    # Border fields are clipped (by the image, or by pixels a strided layer never reads), so
    # their box midpoints drift inwards; the cells' nominal centres continue the regular grid
    # of the unclipped interior cells. Kept inside each box.
    at = full[len(full) // 2]
    grid = mid[at] + (np.arange(len(ranges)) - at) * step
    lo, hi = np.array([a for a, _ in ranges]), np.array([b - 1 for _, b in ranges])
    return np.clip(grid, lo, hi)


def cell_centres(rf: ReceptiveField) -> tuple[np.ndarray, np.ndarray]:
    """Centres of every output cell's receptive field in input-image px (pixel-index
    coordinates, see the module docstring): ``(rows h, cols w)`` float64. Interior cells: the
    middle of their field; border cells: the regular grid of the interior continued (their
    measured fields are clipped), kept inside their field box."""
    step = rf.stride * rf.scale
    return _cell_centres(rf.rows, step), _cell_centres(rf.cols, step)


def _check_rf(maps: np.ndarray, rf: ReceptiveField) -> np.ndarray:
    maps = _check_maps(maps)
    if maps.shape[1:] != tuple(rf.output_size):
        raise ValueError(f"maps are {maps.shape[1:]} but the model's output is "
                         f"{rf.output_size}")
    return maps


def patch_pixel_maps(maps: np.ndarray, rf: ReceptiveField) -> np.ndarray:
    """P(fake) of every cell (sigmoid of N x h x w logit differences) on the image's pixels:
    N x S x S float64 in [0, 1] at ``rf``'s input size, each pixel the mean over the cells
    whose field covers it (``receptive_field.project_map``), NaN where no cell sees the pixel."""
    maps = _check_rf(maps, rf)
    return np.stack([project_map(expit(m.astype(np.float64)), rf) for m in maps]) if len(maps) \
        else np.zeros((0, *rf.input_size))


def patch_points(maps: np.ndarray, rf: ReceptiveField) -> np.ndarray:
    """The field centre (:func:`cell_centres`, image px) of each image's most fake cell (argmax
    of the logit difference; the first in raster order on ties): N x 2 float64 (row, col)."""
    maps = _check_rf(maps, rf)
    rows, cols = cell_centres(rf)
    i, j = np.unravel_index(maps.reshape(len(maps), -1).argmax(axis=1), maps.shape[1:])
    return np.stack([rows[i], cols[j]], axis=1).astype(np.float64)


# --- attributions of a classifier --------------------------------------------------------------

def patch_candidates(rf: ReceptiveField) -> np.ndarray:
    """Every cell's field centre (:func:`cell_centres`): (h w) x 2, the points a patch map's
    pointing game can pick (:func:`pointing_chance`)."""
    rows, cols = cell_centres(rf)
    return np.stack(np.meshgrid(rows, cols, indexing="ij"), axis=-1).reshape(-1, 2)


def grid_candidates(shape: tuple[int, int], size: int) -> np.ndarray:
    """The centres, in S x S image px, of an h x w grid of cells tiling the image evenly (as
    :func:`cell_points` places a Grad-CAM's point): (h w) x 2."""
    h, w = shape
    rows = (np.arange(h) + 0.5) * size / h - 0.5
    cols = (np.arange(w) + 0.5) * size / w - 0.5
    return np.stack(np.meshgrid(rows, cols, indexing="ij"), axis=-1).reshape(-1, 2)


def _as_input(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """N x S x S x 3 uint8 -> N x 3 x S x S float32 in [-1, 1] (as ``checkpoint.logit_maps``)."""
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2)
    return x.float().div(127.5).sub(1.0)


def _check_images(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8 \
            or images.shape[1] != images.shape[2]:
        raise ValueError(f"expected N x S x S x 3 uint8 images, got {images.shape} "
                         f"{images.dtype}")
    return images


def _fake_minus_real(logits: torch.Tensor) -> torch.Tensor:
    """N x 2 x h x w logits -> N: the mean over cells of logit_fake - logit_real (a full
    model's one cell; a patch model's whole map)."""
    return (logits[:, FAKE] - logits[:, REAL]).mean(dim=(1, 2))


def _normalise(heat: torch.Tensor) -> np.ndarray:
    """Per image, divide by the maximum: N x S x S in [0, 1]; an all-zero map stays zero."""
    top = heat.flatten(1).amax(dim=1).clamp_min(torch.finfo(heat.dtype).tiny)
    return (heat / top[:, None, None]).double().cpu().numpy()


class _EvalMode:
    """Eval mode (BatchNorm running statistics: each image's output depends on itself only, so
    one backward pass over a batch gives every image's own gradient) on ``device``, with the
    model's training flag restored afterwards."""

    def __init__(self, model: nn.Module, device: torch.device) -> None:
        self.model, self.device = model, device

    def __enter__(self) -> nn.Module:
        self.was_training = self.model.training
        return self.model.to(self.device).eval()

    def __exit__(self, *exc: object) -> None:
        self.model.train(self.was_training)


def feature_layers(model: PatchClassifier) -> list[str]:
    """The names of ``model.features``' blocks (``conv1`` ... ``block2`` ... ``relu4``): what
    :func:`gradcam`'s ``layer`` may name."""
    return [name for name, _ in model.features.named_children()]


def _split_features(model: PatchClassifier, layer: str | None) -> tuple[nn.Module, nn.Module]:
    names = feature_layers(model)
    if layer is not None and layer not in names:
        raise ValueError(f"{model.config.name} has no block {layer!r}; its features are {names}")
    cut = len(names) if layer is None else names.index(layer) + 1
    blocks = list(model.features.named_children())
    return nn.Sequential(OrderedDict(blocks[:cut])), nn.Sequential(OrderedDict(blocks[cut:]))


def feature_grids(model: PatchClassifier, size: int) -> list[tuple[str, tuple[int, int]]]:
    """``[(block name, (h, w))]``: the output grid of each block of ``model.features`` for an
    S x S input image (``size`` = S, before the model's own upsampling), from one forward pass
    of a zero image in eval mode (the model's training flag is restored)."""
    dev = next(model.parameters()).device
    out = []
    with _EvalMode(model, dev), torch.no_grad():
        x = model.resize(torch.zeros(1, 3, size, size, device=dev))
        for name, block in model.features.named_children():
            x = block(x)
            out.append((name, (int(x.shape[-2]), int(x.shape[-1]))))
    return out


def gradcam_layer(model: PatchClassifier, size: int,
                  min_cells: int = GRADCAM_MIN_CELLS) -> str:
    """The deepest block of ``model.features`` whose output grid on an S x S image (``size``)
    is at least ``min_cells`` cells on each side: Grad-CAM's layer, chosen from the network's
    geometry (a full Xception at 64 px: ``block2``, 8 x 8; at 192 px its last block, 6 x 6).
    The deepest such block weighs the most evidence while still resolving the face into
    cells. Raises ``ValueError`` when no block's grid is that fine."""
    fine = [name for name, (h, w) in feature_grids(model, size) if min(h, w) >= min_cells]
    if not fine:
        raise ValueError(f"{model.config.name} at {size} px: no block has a grid of at least "
                         f"{min_cells} x {min_cells} cells")
    return fine[-1]


def gradcam_cells(model: PatchClassifier, images: np.ndarray, *, layer: str | None = None,
                  device: Device = None, batch_size: int = 16) -> np.ndarray:
    """Grad-CAM of the fake-minus-real logit on its own grid: N x S x S x 3 uint8 images ->
    N x h x w float64 >= 0 (unnormalised; all zero where the model sees no "fake" evidence).

    At the output of block ``layer`` of ``model.features`` (default: all of them, the last
    convolutional block), with activations A (C x h x w): channel weights = the spatial mean of
    d(logit_fake - logit_real)/dA, map = relu(sum_c weight_c A_c). Coarse by construction: a
    64 px image gives a full Xception a 2 x 2 map (stride 32); an earlier ``layer`` (e.g.
    ``"block4"``) is finer. A patch model's score is the mean of its logit map. fp32 with
    autograd (not the folded inference twin), model in eval mode on ``device`` (moved in
    place)."""
    images = _check_images(images)
    dev = resolve_device(device)
    out = []
    with _EvalMode(model, dev):
        head, tail = _split_features(model, layer)
        for at in range(0, len(images), batch_size):
            x = _as_input(images[at: at + batch_size], dev)
            with torch.no_grad():  # nothing below the chosen block needs a gradient
                acts = head(model.resize(x)).float()
            acts.requires_grad_(True)
            # a clone: the block after the cut may start with an in-place ReLU
            score = _fake_minus_real(model.head(model.pool(tail(acts.clone()))).float())
            (grad,) = torch.autograd.grad(score.sum(), acts)
            cam = torch.relu((grad.mean(dim=(2, 3), keepdim=True) * acts).sum(dim=1))
            out.append(cam.detach().double().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 1, 1))


def cells_to_pixels(cells: np.ndarray, size: int) -> np.ndarray:
    """N x h x w cell maps (>= 0) -> N x S x S, upsampled bilinearly and divided per image by
    its maximum (in [0, 1]; an all-zero map stays zero). The activations live on the network's
    input grid (the load size when the model upsamples), which spans the whole S x S image, so
    one bilinear step from h x w to S x S places them (to within the stem's few px)."""
    t = torch.from_numpy(np.asarray(cells, np.float64))[:, None]
    up = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)[:, 0]
    return _normalise(up.clamp_min(0))


def cell_points(cells: np.ndarray, size: int, seed: int = 0) -> np.ndarray:
    """The centre, in S x S image px (row, col), of each map's top cell, the cells tiling the
    image evenly (cell i covers rows [i S/h, (i+1) S/h)): N x h x w -> N x 2. The Grad-CAM
    counterpart of :func:`patch_points` (the top patch's field centre); ties (e.g. an all-zero
    map) are broken at random (seeded), so a map without evidence scores the grid's chance
    (:func:`pointing_chance` of :func:`grid_candidates`), which for a coarse grid can be far
    from the mask's area (a centred mask may hold none of a 2 x 2 grid's centres)."""
    cells = np.asarray(cells, np.float64)
    n, h, w = cells.shape
    flat = _tie_break(cells.reshape(n, -1), seed)
    i, j = np.unravel_index(flat, (h, w))
    return np.stack([(i + 0.5) * size / h - 0.5, (j + 0.5) * size / w - 0.5], axis=1)


def _tie_break(flat: np.ndarray, seed: int) -> np.ndarray:
    """Per row of ``flat`` (N x K, NaN ignored), the index of a maximum, uniformly at random
    among equal maxima (seeded); -1 for an all-NaN row."""
    rng = np.random.default_rng(seed)
    vals = np.where(np.isnan(flat), -np.inf, flat)
    top = vals.max(axis=1, keepdims=True)
    # random keys on the maxima only: argmax picks one of them uniformly
    keys = np.where(vals == top, rng.random(vals.shape), -1.0)
    idx = keys.argmax(axis=1)
    idx[np.isnan(flat).all(axis=1)] = -1
    return idx


def gradcam(model: PatchClassifier, images: np.ndarray, *, layer: str | None = None,
            device: Device = None, batch_size: int = 16) -> np.ndarray:
    """Grad-CAM (:func:`gradcam_cells`) in image pixels (:func:`cells_to_pixels`): N x S x S x 3
    uint8 images -> N x S x S float64 in [0, 1] (1 = most "fake" evidence; an image with none
    stays all zero)."""
    cells = gradcam_cells(model, images, layer=layer, device=device, batch_size=batch_size)
    return cells_to_pixels(cells, _check_images(images).shape[1])


def input_gradient(model: PatchClassifier, images: np.ndarray, *, device: Device = None,
                   batch_size: int = 16) -> np.ndarray:
    """The input gradient's magnitude: |d(logit_fake - logit_real)/d pixel| summed over the
    colour channels, at the S x S input pixels (through the model's own upsampling), divided
    per image by its maximum: N x S x S x 3 uint8 -> N x S x S float64 in [0, 1]. Any
    classifier: a patch model's score is the mean of its logit map. fp32, eval mode."""
    images = _check_images(images)
    dev = resolve_device(device)
    out = []
    with _EvalMode(model, dev):
        for at in range(0, len(images), batch_size):
            x = _as_input(images[at: at + batch_size], dev).requires_grad_(True)
            score = _fake_minus_real(model(x).float())
            (grad,) = torch.autograd.grad(score.sum(), x)
            out.append(_normalise(grad.abs().sum(dim=1)))
    return np.concatenate(out) if out else np.zeros((0, *images.shape[1:3]))


def random_maps(n: int, size: int, seed: int = 0) -> np.ndarray:
    """The chance level: N x S x S float64, i.i.d. uniform in [0, 1), seeded."""
    return np.random.default_rng(seed).random((n, size, size))


def max_points(heat: np.ndarray, seed: int = 0) -> np.ndarray:
    """Each map's maximum pixel, N x S x S -> N x 2 float64 (row, col). NaN pixels are ignored;
    ties are broken uniformly at random (seeded), so a constant map (e.g. an all-zero
    Grad-CAM) scores the pointing game's chance level, the mask's area; an all-NaN map gives a
    NaN point (never a hit)."""
    heat = _check_heat(heat)
    idx = _tie_break(heat.reshape(len(heat), -1), seed)
    pts = np.stack(np.unravel_index(np.maximum(idx, 0), heat.shape[1:]),
                   axis=1).astype(np.float64)
    pts[idx < 0] = np.nan
    return pts


# --- metrics -----------------------------------------------------------------------------------

def _check_heat(heat: np.ndarray) -> np.ndarray:
    heat = np.asarray(heat, np.float64)
    if heat.ndim != 3:
        raise ValueError(f"expected N x S x S maps, got shape {heat.shape}")
    return heat


def _binary_masks(masks: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    masks = np.asarray(masks)
    if masks.shape != tuple(shape):
        raise ValueError(f"masks are {masks.shape} but the maps are {tuple(shape)}")
    return masks >= MASK_THRESHOLD


def pointing_game(points: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Whether each point falls inside its mask: ``points`` N x 2 (row, col) in pixel-index
    coordinates, ``masks`` N x S x S -> N bool. A point lands on pixel ``floor(p + 0.5)``
    (clipped to the image); a NaN point is a miss."""
    points = np.asarray(points, np.float64)
    masks = np.asarray(masks)
    if points.shape != (len(masks), 2) or masks.ndim != 3:
        raise ValueError(f"expected N x 2 points and N x S x S masks, got {points.shape} and "
                         f"{masks.shape}")
    binary = _binary_masks(masks, masks.shape)
    ok = ~np.isnan(points).any(axis=1)
    px = np.floor(np.nan_to_num(points) + 0.5).astype(np.int64)
    r = np.clip(px[:, 0], 0, masks.shape[1] - 1)
    c = np.clip(px[:, 1], 0, masks.shape[2] - 1)
    return ok & binary[np.arange(len(masks)), r, c]


def pixel_auc(heat: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Per image, the ROC AUC of the heat values as a detector of mask pixels (ties count one
    half): N float64 in [0, 1]; 0.5 = chance, 0 = inverted. NaN heat pixels are left out; NaN
    when the mask (over the remaining pixels) is all in or all out."""
    heat = _check_heat(heat)
    binary = _binary_masks(masks, heat.shape)
    out = np.full(len(heat), np.nan)
    for n, (h, m) in enumerate(zip(heat, binary, strict=True)):
        seen = ~np.isnan(h)
        h, m = h[seen], m[seen]
        if m.any() and not m.all():
            out[n] = weighted_auc(h[~m], h[m])[0]
    return out


def mass_inside(heat: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Per image, the share of the heat mass inside the mask: N float64 in [0, 1]. Mass is the
    heat above the map's own minimum (NaN pixels left out), so an offset does not count: a
    patch model's P(fake), never 0, and Grad-CAM's relu map, 0 where it sees nothing, are
    measured alike. A map without mass (flat: no evidence anywhere) scores the mask's area
    (over the seen pixels), the chance level of any map, rather than being left out; NaN only
    when no pixel is seen."""
    heat = _check_heat(heat)
    binary = _binary_masks(masks, heat.shape)
    seen = ~np.isnan(heat)
    n_seen = seen.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        floor = np.where(n_seen > 0, np.where(seen, heat, np.inf).min(axis=(1, 2)), 0)
        mass = np.where(seen, heat - floor[:, None, None], 0.0)
        total = mass.sum(axis=(1, 2))
        area = (binary & seen).sum(axis=(1, 2)) / n_seen
        share = (mass * binary).sum(axis=(1, 2)) / total
    return np.where(n_seen == 0, np.nan, np.where(total > 0, share, area))


def pointing_chance(candidates: np.ndarray | None, masks: np.ndarray) -> np.ndarray:
    """The pointing game's chance level per image: the share of the points a localizer can
    pick (``candidates``: K x 2, e.g. every cell centre of a patch map or of a Grad-CAM grid)
    that fall inside the mask; ``None`` (a pixel-resolution map) gives the mask's area. A 2 x 2
    Grad-CAM can only point at four quadrant centres, which a centred face mask may not
    contain at all: its chance is then 0, not the mask's area. N floats in [0, 1]."""
    binary = _binary_masks(masks, np.asarray(masks).shape)
    if candidates is None:
        return binary.mean(axis=(1, 2))
    cand = np.asarray(candidates, np.float64).reshape(-1, 2)
    hits = [pointing_game(np.repeat(c[None], len(binary), 0), masks) for c in cand]
    return np.mean(hits, axis=0)


def _is_flat(heat: np.ndarray) -> np.ndarray:
    """N bool: the map holds one value only (no evidence anywhere, e.g. an all-zero Grad-CAM)."""
    flat = heat.reshape(len(heat), -1)
    return np.nanmax(flat, axis=1) == np.nanmin(flat, axis=1)


def localization_frame(method: str, model: str, manipulation: str, heat: np.ndarray,
                       points: np.ndarray, masks: np.ndarray, *,
                       candidates: np.ndarray | None = None,
                       flat: np.ndarray | None = None, layer: str = "",
                       grid: tuple[int, int] | None = None) -> pd.DataFrame:
    """One row per image: ``method``, ``model``, ``manipulation``, ``image`` (index),
    ``pointing_game`` (bool), ``pixel_auc``, ``mass_inside`` (float, NaN where undefined),
    ``mask_area`` (share of pixels in the binarised mask), ``pointing_chance``
    (:func:`pointing_chance` of ``candidates``, the localizer's possible points; ``None``: the
    mask area), ``flat`` (the map holds one value: no evidence; default from ``heat``, or
    given, e.g. from a Grad-CAM's cells), ``layer`` (Grad-CAM's block, else "") and ``grid``
    (the map's own cells, ``"h x w"``, or "" for a pixel map). ``heat``: N x S x S;
    ``points``: N x 2; ``masks``: N x S x S in [0, 1]."""
    heat = _check_heat(heat)
    area = _binary_masks(masks, heat.shape).mean(axis=(1, 2))
    return pd.DataFrame({"method": method, "model": model, "manipulation": manipulation,
                         "image": np.arange(len(heat)),
                         "pointing_game": pointing_game(points, masks),
                         "pixel_auc": pixel_auc(heat, masks),
                         "mass_inside": mass_inside(heat, masks), "mask_area": area,
                         "pointing_chance": pointing_chance(candidates, masks),
                         "flat": _is_flat(heat) if flat is None else np.asarray(flat, bool),
                         "layer": layer, "grid": f"{grid[0]}x{grid[1]}" if grid else ""})


def localization_table(frames: pd.DataFrame, *, n_boot: int = N_BOOT, seed: int = 0,
                       level: float | None = None) -> pd.DataFrame:
    """Per (method, model, manipulation[, images][, control]) of :func:`localization_frame`
    rows (``images``, ``control``: columns a study adds, e.g. ``sanity``'s controls): ``n``
    images, the mean of each metric with an interval over images (``<metric>_low``/``_high``,
    ``stats.LEVEL`` unless ``level``: the pointing game's hit rate a Wilson interval, the
    others a percentile bootstrap) and
    the images it was computed on (``n_<metric>``: NaNs are dropped per metric), ``mask_area``
    (the mean mask share: the chance level of ``mass_inside`` and of a pixel-resolution
    pointing game), ``pointing_chance`` (the localizer's own chance level of the pointing game,
    :func:`pointing_chance`), ``flat_share`` (images whose map holds no evidence), and where
    the frame has them ``layer``, ``grid`` and ``mask_iou`` (``sanity.shuffled_frame``).
    Resamples are seeded by ``seed``, the manipulation and the metric only, so methods and
    models scored on the same images share them (paired)."""
    rows = []
    # ``images`` and ``control`` columns (what the localizer ran on, which sanity control)
    # split too
    keys = ["method", "model", "manipulation"] + [k for k in ("images", "control")
                                                  if k in frames]
    for key, g in frames.groupby(keys, sort=False):
        row = dict(zip(keys, key, strict=True)) | {"n": len(g)}
        for metric in METRICS:
            v = g[metric].to_numpy(np.float64)
            v = v[~np.isnan(v)]
            row[f"n_{metric}"] = len(v)
            if len(v) == 0:
                row |= {metric: np.nan, f"{metric}_low": np.nan, f"{metric}_high": np.nan}
                continue
            if metric == "pointing_game":  # a share: Wilson, which does not collapse at 0 or 1
                lo, hi = (float(x) for x in wilson_interval(v.sum(), len(v), level or LEVEL))
            else:
                w = boot_counts(len(v), n_boot, named_rng(seed, str(key[2]), metric))
                lo, hi = interval(w @ v / len(v), level or LEVEL)
            row |= {metric: float(v.mean()), f"{metric}_low": lo, f"{metric}_high": hi}
        row["mask_area"] = float(g["mask_area"].mean())
        if "pointing_chance" in g:
            row["pointing_chance"] = float(g["pointing_chance"].mean())
            row["flat_share"] = float(g["flat"].mean())
        row |= {k: g[k].iloc[0] for k in ("layer", "grid") if k in g}
        if "mask_iou" in g:
            row["mask_iou"] = float(g["mask_iou"].mean())
        rows.append(row)
    return pd.DataFrame(rows)


# --- one call per (model, localizer) -----------------------------------------------------------

@dataclass
class Localized:
    """What :func:`localize_set` returns for one (model, localizer) on one image set."""

    heat: np.ndarray  # N x S x S float64 in [0, 1] (NaN: pixels no patch sees)
    points: np.ndarray  # N x 2 float64 (row, col), pixel-index coordinates
    frame: pd.DataFrame  # localization_frame rows, one per image
    candidates: np.ndarray | None = None  # K x 2: every point it can pick (None: any pixel)
    flat: np.ndarray | None = None  # N bool from its own cells (None: from ``heat``)
    layer: str = ""  # Grad-CAM's block
    grid: tuple[int, int] | None = None  # its own cells (Grad-CAM's grid, the patch map)


def localize_set(source: Checkpoint | PatchClassifier | str | os.PathLike, images: np.ndarray,
                 masks: np.ndarray, *, kind: str, manipulation: str = "",
                 name: str | None = None, layer: str | None = "auto", seed: int = 0,
                 device: Device = None, batch_size: int = 16,
                 maps: np.ndarray | None = None) -> Localized:
    """Heat maps, points and per-image metrics of one localizer (``kind``, one of
    :data:`LOCALIZERS`) for one classifier on one set of manipulated images.

    ``source``: a checkpoint (or its run folder / ``best.pt``) or a model; ``images``: N x S x
    S x 3 uint8 at the model's training size; ``masks``: N x S x S in [0, 1]. ``name``: the
    ``model`` column (default the checkpoint's or config's name). ``layer``: Grad-CAM's block,
    ``"auto"`` the deepest with a fine enough grid (:func:`gradcam_layer`), ``None`` the last
    one (recorded in the ``layer`` column). ``seed``: the random maps'. ``patch``
    needs a patch model (a full model has one cell and nothing to point with); ``maps``: its
    N x h x w logit maps of ``images`` when already computed (e.g. ``checkpoint.folder_maps``'
    cache), else they are computed here."""
    if kind not in LOCALIZERS:
        raise ValueError(f"kind must be one of {LOCALIZERS}, got {kind!r}")
    images = _check_images(images)
    if isinstance(source, str | os.PathLike):
        source = load_checkpoint(source, device=device)
    if isinstance(source, Checkpoint):
        if source.input_size != images.shape[1]:
            raise ValueError(f"{source.name} was trained on {source.input_size} px images, "
                             f"these are {images.shape[1]} px")
        model, label = source.model, source.name
    else:
        model, label = source, source.config.name
    size = images.shape[1]
    if kind == "patch":
        if model.config.depth == "full":
            raise ValueError(f"{model.config.name} is a full-image model (one cell); localize "
                             "it with 'gradcam' or 'gradient'")
        rf = receptive_field(model, size)
        if maps is None:
            maps = logit_maps(model, images, device=device)
        elif maps.shape[0] != len(images):
            raise ValueError(f"{len(maps)} maps for {len(images)} images")
        heat, points = patch_pixel_maps(maps, rf), patch_points(maps, rf)
        candidates, flat, grid, layer = patch_candidates(rf), None, rf.output_size, ""
    elif kind == "gradcam":
        layer = gradcam_layer(model, size) if layer == "auto" else layer
        # the top activation cell's centre, as a patch model's top field centre
        cells = gradcam_cells(model, images, layer=layer, device=device, batch_size=batch_size)
        heat, points = cells_to_pixels(cells, size), cell_points(cells, size, seed)
        candidates, flat = grid_candidates(cells.shape[1:], size), _is_flat(cells)
        grid, layer = cells.shape[1:], layer or feature_layers(model)[-1]
    else:
        heat = (input_gradient(model, images, device=device, batch_size=batch_size)
                if kind == "gradient" else random_maps(len(images), size, seed))
        points, candidates, flat, grid, layer = max_points(heat, seed), None, None, None, ""
    grid = None if grid is None else (int(grid[0]), int(grid[1]))
    frame = localization_frame(kind, name or label, manipulation, heat, points, masks,
                               candidates=candidates, flat=flat, layer=layer, grid=grid)
    return Localized(heat, points, frame, candidates, flat, layer, grid)
