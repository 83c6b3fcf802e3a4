"""The Python API: one trained patch classifier as a detector of single images.

    import patchforensics
    det = patchforensics.load("checkpoints/classifiers/default64/celeba_dcgan/"
                              "samples_inversions/xception_block2_seed0")
    det.score("face.jpg")        # P(fake) in [0, 1], calibrated on the run's validation split
    det.patch_map(pil_image)     # h x w logit differences, > 0 = the patch looks fake
    det.heatmap(array).savefig("face_heatmap.png")

An image is a path, a PIL image or an H x W x 3 (or H x W) uint8 array of any size: it goes
through the training pipeline (centre square, LANCZOS to the run's image size), as
``patchforensics score`` does. Scores are those of notebook 03 (``evaluate``): the mean patch
softmax by default, temperature-calibrated when the run has a validation split (one T on the
image log-odds, ``score_modes.calibrated_probability``: it never reorders images).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .checkpoint import calibration, eval_precision, load_checkpoint, logit_maps
from .images import read_image
from .preprocess import prepare_array
from .receptive_field import box_to_original, receptive_field
from .score_modes import MODES, calibrated_probability, log_odds_from_maps, patch_probabilities
from .viz import heatmap_figure

ImageLike = Any  # str | os.PathLike | PIL.Image.Image | np.ndarray


def to_rgb_array(x: ImageLike) -> np.ndarray:
    """A path, PIL image or uint8 array -> H x W x 3 uint8 RGB (a gray H x W array or a
    1-channel image is repeated to 3 channels). Files are read with the validating reader
    (``images.read_image``: EXIF orientation, 16-bit, transparency, truncation), so a bad file
    raises ``ImageError`` naming it."""
    from PIL import Image


    if isinstance(x, str | os.PathLike):
        return read_image(Path(x))[0]
    if isinstance(x, Image.Image):
        x = np.asarray(x.convert("RGB"))
    if not isinstance(x, np.ndarray):
        raise TypeError(f"expected a path, a PIL image or a uint8 array, got {type(x).__name__}")
    if x.dtype != np.uint8:
        raise ValueError(f"expected a uint8 array in [0, 255], got dtype {x.dtype}")
    if x.ndim == 2:
        x = np.repeat(x[..., None], 3, axis=2)
    if x.ndim != 3 or x.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 (or H x W) array, got shape {x.shape}")
    return np.ascontiguousarray(x)  # a copy when x was a read-only view (torch warns on those)


@dataclass
class Detector:
    """A trained classifier ready to judge single images (see :func:`load`)."""

    checkpoint: Any  # checkpoint.Checkpoint: model, run folder, training image size
    calibration: Any  # checkpoint.Calibration, or None when the run has no validation split
    mode: str = "mean_softmax"  # image score mode (score_modes.MODES)
    device: Any = None

    @property
    def name(self) -> str:
        return self.checkpoint.name

    @property
    def size(self) -> int:
        """Side (px) of the images the classifier was trained on."""
        return self.checkpoint.input_size

    def prepare(self, x: ImageLike) -> np.ndarray:
        """The image as the classifier sees it: size x size x 3 uint8."""

        return prepare_array(to_rgb_array(x), self.size)

    def patch_map(self, x: ImageLike) -> np.ndarray:
        """h x w float32 logit differences (logit fake - logit real), one per patch."""

        return logit_maps(self.checkpoint.model, self.prepare(x)[None], device=self.device,
                          precision=eval_precision(self.checkpoint, self.device))[0]

    @property
    def temperature(self) -> float:
        return self.calibration.temperature[self.mode] if self.calibration else 1.0

    def _score(self, maps: np.ndarray) -> float:

        score = log_odds_from_maps(maps[None], self.mode)
        return float(calibrated_probability(score, self.temperature, self.mode)[0])

    def score(self, x: ImageLike) -> float:
        """P(fake) in [0, 1] of ``mode``, temperature-calibrated when the run has a calibration
        (the ``prob_fake`` of ``patchforensics score``)."""
        return self._score(self.patch_map(x))

    def heatmap(self, x: ImageLike):
        """A matplotlib figure (``viz.heatmap_figure``, as ``patchforensics score --heatmaps``
        draws it): the original image at its own size, and the same image with the patch
        probabilities painted over the pixels each patch saw (each pixel the mean over the
        patches that see it; outside the centre square the classifier never sees stays
        unpainted), the most suspicious patch boxed, a P(fake) colour bar, the score and the
        model's name."""

        original = to_rgb_array(x)
        maps = self.patch_map(original)
        rf = receptive_field(self.checkpoint.model.config, self.size)
        i, j = np.unravel_index(int(np.argmax(maps)), maps.shape)
        # Patches at T = 1: the run's T calibrates image log-odds, not single patches.
        return heatmap_figure(original, patch_probabilities(maps[None])[0],
                              rf, score=self._score(maps), model=self.name, mode=self.mode,
                              box=box_to_original(rf.box(int(i), int(j)), original.shape,
                                                  self.size))


def load(run_or_checkpoint: str | os.PathLike, *, mode: str = "mean_softmax",
         device: str | None = None, **original: int) -> Detector:
    """A :class:`Detector` from a run folder or its ``best.pt`` (as ``train`` and notebook 02
    write them), or an original authors' ``*_net_D.pth`` (``original``: ``fake_class_id``,
    ``input_size``, ``load_size`` override its ``opt.yml``; see ``checkpoint.load_checkpoint``).
    ``mode``: ``"mean_softmax"`` (the paper's), ``"mean_logit"`` or ``"vote"``; ``device``:
    ``None`` = CUDA when present. A missing or foreign file raises an error that names it."""

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    unknown = set(original) - {"fake_class_id", "input_size", "load_size"}
    if unknown:
        raise TypeError(f"load() got unexpected keyword arguments {sorted(unknown)}")
    ck = load_checkpoint(run_or_checkpoint, device=device, **original)
    return Detector(ck, calibration(ck, device=device), mode, device)
