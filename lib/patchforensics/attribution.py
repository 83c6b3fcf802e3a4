"""Where a classifier looks, as maps over an image: Grad-CAM at a chosen feature layer, input
gradients, and random maps (the chance baseline), with the points each map picks.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy.special import expit
from torch import nn

from .checkpoint import Device
from .data import FAKE, REAL
from .devices import resolve_device
from .models import PatchClassifier
from .receptive_field import ReceptiveField, project_map

GRADCAM_MIN_CELLS = 6  # Grad-CAM's grid side at least this (gradcam_layer): a 6 x 6 grid's
#   cells are a sixth of the face, about block2's patch (22 %); 2 x 2 quadrants point nowhere


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


def check_images(images: np.ndarray) -> np.ndarray:
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
    images = check_images(images)
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
    return cells_to_pixels(cells, check_images(images).shape[1])


def input_gradient(model: PatchClassifier, images: np.ndarray, *, device: Device = None,
                   batch_size: int = 16) -> np.ndarray:
    """The input gradient's magnitude: |d(logit_fake - logit_real)/d pixel| summed over the
    colour channels, at the S x S input pixels (through the model's own upsampling), divided
    per image by its maximum: N x S x S x 3 uint8 -> N x S x S float64 in [0, 1]. Any
    classifier: a patch model's score is the mean of its logit map. fp32, eval mode."""
    images = check_images(images)
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
    heat = check_heat(heat)
    idx = _tie_break(heat.reshape(len(heat), -1), seed)
    pts = np.stack(np.unravel_index(np.maximum(idx, 0), heat.shape[1:]),
                   axis=1).astype(np.float64)
    pts[idx < 0] = np.nan
    return pts


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
    maps = check_maps(maps)
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


def check_heat(heat: np.ndarray) -> np.ndarray:
    heat = np.asarray(heat, np.float64)
    if heat.ndim != 3:
        raise ValueError(f"expected N x S x S maps, got shape {heat.shape}")
    return heat


def check_maps(maps: np.ndarray) -> np.ndarray:
    maps = np.asarray(maps)
    if maps.ndim != 3:
        raise ValueError(f"expected N x h x w maps, got shape {maps.shape}")
    return maps
