"""Test-time degradations (JPEG, blur, resize) applied to real and fake alike, and every
classifier's AP and accuracy under each (the paper's robustness check, Sec. 4.2).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable

import numpy as np
import pandas as pd
from PIL import Image, ImageFilter

from .checkpoint import Device, eval_precision, load_checkpoint, logit_maps
from .progress import bar as progress_bar
from .score_modes import scores_from_maps
from .stats import FAKE, REAL, binary_metrics

# Test-time degradations (applied to real and fake alike): JPEG quality, Gaussian blur sigma
# (px), and resize factor (down to factor * size with bicubic, then back up to size).
SWEEPS: dict[str, tuple[float, ...]] = {
    "jpeg": (95, 85, 75, 60, 45, 30),
    "blur": (0.0, 0.5, 1.0, 1.5, 2.0, 3.0),
    "resize": (1.0, 0.75, 0.5, 0.375, 0.25),
}
SMOKE_SWEEPS: dict[str, tuple[float, ...]] = {"jpeg": (75, 30), "blur": (0.0, 1.5),
                                              "resize": (1.0, 0.5)}


def degrade(images: np.ndarray, kind: str, value: float) -> np.ndarray:
    """A test-time degradation of N x S x S x 3 uint8 images (same shape back): ``jpeg``
    (quality ``value``), ``blur`` (Gaussian, sigma ``value`` px; 0 = identity) or ``resize``
    (bicubic down to round(value * S) px and back up; 1 = identity)."""
    if kind not in SWEEPS:
        raise ValueError(f"kind must be one of {tuple(SWEEPS)}, got {kind!r}")
    if (kind == "blur" and value == 0) or (kind == "resize" and value == 1):
        return images.copy()
    out = np.empty_like(images)
    side = images.shape[1]
    for i, arr in enumerate(images):
        im = Image.fromarray(arr)
        if kind == "jpeg":
            buf = io.BytesIO()
            im.save(buf, format="JPEG", quality=int(value))
            im = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
        elif kind == "blur":
            im = im.filter(ImageFilter.GaussianBlur(radius=float(value)))
        else:
            small = max(1, round(value * side))
            im = im.resize((small, small), Image.Resampling.BICUBIC).resize(
                (side, side), Image.Resampling.BICUBIC)
        out[i] = np.asarray(im)
    return out


def robustness(runs: dict[str, str | os.PathLike], real: np.ndarray, fake: np.ndarray, *,
               sweeps: dict[str, Iterable[float]] | None = None, mode: str = "mean_softmax",
               device: Device = None, progress: bool = True) -> pd.DataFrame:
    """AP and accuracy of every checkpoint under each degradation of ``sweeps`` (default
    ``SWEEPS``), applied to the real and the fake images (N x S x S x 3 uint8) alike. One row per
    (run, kind, value) with ``label``, ``model``, ``seed``, ``ap``, ``auc``, ``acc``; the clean
    score is the row with ``kind == "none"``."""

    sweeps = {k: tuple(v) for k, v in (sweeps or SWEEPS).items()}
    y = np.r_[np.full(len(real), REAL), np.full(len(fake), FAKE)]
    both = np.concatenate([real, fake])
    variants = {("none", 0.0): both}
    for kind, values in sweeps.items():
        for v in values:
            variants[(kind, float(v))] = degrade(both, kind, v)
    rows = []
    for label, run in progress_bar(list(runs.items()), desc="robustness", disable=not progress):
        ck = load_checkpoint(run, device=device)
        for (kind, value), imgs in variants.items():
            s = scores_from_maps(logit_maps(ck.model, imgs, device=device,
                                            precision=eval_precision(ck, device)), mode)
            m = binary_metrics(s, y)
            rows.append({"label": label, "model": ck.name, "seed": ck.seed, "kind": kind,
                         "value": value, "ap": m["ap"], "auc": m["auc"], "acc": m["acc"]})
    return pd.DataFrame(rows)
