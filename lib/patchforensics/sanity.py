"""Sanity controls of a localizer (Adebayo et al. 2018, "Sanity checks for saliency maps"):
does a map that lands in the manipulated region show *the manipulation*, or only where such
regions usually lie, or only what the architecture draws from any image?

Notebook 07 (``manipulation_study``) scores every localizer of ``localize`` three ways; a
``control`` column names which:

- ``none``: the trained model's map of each manipulated face against that face's own mask;
- ``shuffled_masks`` (:func:`shuffled_frame`): the same maps against *another* face's mask
  (:func:`derangement`: no face keeps its own). A map that localizes the edit of its own face
  loses its advantage; one that points where masks usually lie (the inner face, the mouth)
  keeps it. The control is only as strong as the masks differ between faces: ``mask_iou``
  (:func:`mask_iou`) says how much a shuffled mask still overlaps the true one (near 1 the
  control cannot separate the two);
- ``random_weights`` (:func:`random_weights`): the maps of the same architecture with freshly
  initialised weights, never trained. "A map that does not change is not attribution": a
  localizer that scores as well without its training shows the image's structure, not what
  the classifier learned.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .localize import MASK_THRESHOLD, Localized, localization_frame
from .models import PatchClassifier, build_model

CONTROLS = ("none", "shuffled_masks", "random_weights")


def derangement(n: int, seed: int = 0) -> np.ndarray:
    """A random permutation of ``range(n)`` without fixed points (seeded): n int64, entry i
    the index whose mask image i is scored against. A uniformly random cyclic order, so every
    image gets another's and every mask is used once. ``n >= 2``."""
    if n < 2:
        raise ValueError(f"need at least 2 images to shuffle masks between, got {n}")
    order = np.random.default_rng(seed).permutation(n)
    out = np.empty(n, np.int64)
    out[order] = np.roll(order, -1)  # each image in the cycle takes the next one's mask
    return out


def mask_iou(masks: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Per image, intersection over union of two binarised masks (N x S x S each, in [0, 1],
    manipulated at >= ``localize.MASK_THRESHOLD``): N float64 in [0, 1]; 1 where both are
    empty."""
    a = np.asarray(masks) >= MASK_THRESHOLD
    b = np.asarray(other) >= MASK_THRESHOLD
    if a.shape != b.shape or a.ndim != 3:
        raise ValueError(f"expected two N x S x S mask stacks, got {a.shape} and {b.shape}")
    inter = (a & b).sum(axis=(1, 2))
    union = (a | b).sum(axis=(1, 2))
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def shuffled_frame(result: Localized, masks: np.ndarray, order: np.ndarray) -> pd.DataFrame:
    """The ``shuffled_masks`` control of one localizer: its maps and points (``result``, from
    ``localize.localize_set``) scored against ``masks[order]`` (``order``: e.g.
    :func:`derangement`), with the localizer's chance level recomputed for those masks.
    ``localize.localization_frame`` rows with ``control = "shuffled_masks"`` and ``mask_iou``
    (each true mask against the one it is scored with)."""
    masks = np.asarray(masks)
    order = np.asarray(order, np.int64)
    if len(order) != len(masks) or len(masks) != len(result.heat):
        raise ValueError(f"{len(result.heat)} maps, {len(masks)} masks, {len(order)} indices")
    first = result.frame.iloc[0] if len(result.frame) else {}
    shuffled = masks[order]
    frame = localization_frame(
        first.get("localizer", ""), first.get("model", ""), first.get("manipulation", ""),
        result.heat, result.points, shuffled, candidates=result.candidates, flat=result.flat,
        layer=result.layer, grid=result.grid)
    return frame.assign(control="shuffled_masks", mask_iou=mask_iou(masks, shuffled))


def random_weights(model: PatchClassifier, seed: int = 0) -> PatchClassifier:
    """The ``random_weights`` control's network: ``model``'s architecture (its
    ``ModelConfig``: backbone, cut, load size, init gain) freshly initialised with ``seed``
    (``models.build_model``, the initialisation a training run of that seed starts from),
    in eval mode on ``model``'s device. ``model`` itself is not touched."""
    device = next(model.parameters()).device
    return build_model(model.config, seed=seed).to(device).eval()
