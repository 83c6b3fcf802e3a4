"""Dataclass configs: every component owns its defaults, and a run saves the config it used.

Only plain values (numbers, strings, tuples) so a config round-trips through JSON and can be
fingerprinted: ``fingerprint(cfg)`` is what lets a rerun recognise finished work.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from typing import Any

FAKE_RESAMPLE = ("updown", "native")  # see WorldConfig.fake_resample
FAKE_RESAMPLE_DEFAULT = "updown"
FAKE_HISTORY = ("reals", "none")  # see WorldConfig.fake_history
FAKE_HISTORY_DEFAULT = "reals"


@dataclass(frozen=True)
class WorldConfig:
    """The embedded default world (docs/world.md): which reals, at what size,
    split how, and how its fakes are made.

    ``fake_resample`` decides the resampling history of every generated set (samples and
    inversions). The reals are photos downsampled 178 -> 64 px with PIL's LANCZOS filter: an
    anti-aliasing low-pass that damps the top octave of their spectrum. A generator trained
    at the world size makes its pixels natively at 64 px; written as they are (``"native"``),
    its last layer's artifacts reach the classifier at full strength, unfiltered, while the
    reals' same frequencies went through the filter. The paper's fakes were generated at
    1024 px and downsampled exactly like its reals, so reals and fakes shared that history.
    ``"updown"`` (default) restores the parity: every generated image is upsampled 2x
    (bicubic) and then resized to the world size by the same LANCZOS step as the reals, so
    both classes carry one LANCZOS low-pass and a difference in the top octave is not a
    difference of preprocessing. The default follows this parity argument, not a result;
    ``world.resampling_ablation`` measures what the choice changes. Non-default choices get
    their own world name (``default64-native``), so sets of the two never mix.

    ``fake_history`` adds the rest of the reals' history. The CelebA reals are decoded JPEGs
    (178 x 218, one quality and subsampling, read from their headers: ``jpeg.py``); with
    ``"reals"`` (default) every generated, inverted and manipulated CelebA image is rendered
    at that frame, JPEG round-tripped with the reals' tables, then cropped and resized like
    them (for those sets this replaces ``fake_resample``: the native frame *is* the up-down).
    Reals that never were JPEGs (Olivetti) keep ``fake_resample`` alone. ``"none"`` is the
    former world, for the ablation: named ``default64-nojpeg``. ``fake_resample="native"``
    keeps pixels unresampled, which the native frame cannot, so it needs ``"none"``.
    """

    size: int = 64  # side in px of every prepared image (smoke: 32)
    seed: int = 0  # split seed; the same seed always gives the same files in each split
    smoke: bool = False  # a tiny world for tests/CI: few images, 32 px, few training steps
    celeba_limit: int | None = None  # use only the first N CelebA crops (None: all 999)
    olivetti_subjects: int | None = None  # use only the first N of 40 Olivetti subjects
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)  # train/val/test fractions
    test_fakes: int = 500  # fake test images per generator (0: as many as the real test split)
    fake_resample: str = "updown"  # resampling history of generated sets: "updown" | "native"
    fake_history: str = "reals"  # the reals' JPEG history for fakes: "reals" | "none"
    invert: tuple[str, ...] = ("dcgan", "upconv", "vae")  # generators whose inversions are made
    # Inversion budget, measured on a 2-core EPYC Zen 4 (celeba dcgan, 128 train reals, mean
    # PSNR dB: random latent 11.0; best of 8 random 11.4; + 10 steps 12.0; 25 steps 12.3; 50
    # steps 12.5): one image-step costs about one DCGAN forward+backward / 64, a restart half
    # that, so 16 steps + 8 restarts keep the default world's ~3,900 dcgan-equivalent image
    # inversions near 3 minutes; more steps buy little.
    invert_steps: int = 16  # Adam steps per inverted image (see generators.InversionConfig)
    invert_restarts: int = 8  # random starting latents per image (the best one is optimised)

    @classmethod
    def smoke_default(cls, **overrides: Any) -> WorldConfig:
        base = dict(size=32, smoke=True, celeba_limit=200, olivetti_subjects=10, test_fakes=40,
                    invert_steps=5, invert_restarts=2)
        base.update(overrides)
        return cls(**base)

    @property
    def name(self) -> str:
        """Folder name under ``paths.data_dir()``, e.g. ``default64`` or ``smoke32``; a
        non-default ``fake_resample`` is a suffix (``default64-native``), and so is a world
        without the reals' JPEG history (``default64-nojpeg``; ``-native`` implies it)."""
        suffix = "" if self.fake_resample == FAKE_RESAMPLE_DEFAULT else f"-{self.fake_resample}"
        if self.fake_history != FAKE_HISTORY_DEFAULT and self.fake_resample != "native":
            suffix += "-nojpeg"
        return f"{'smoke' if self.smoke else 'default'}{self.size}{suffix}"

    def __post_init__(self) -> None:
        if self.size < 8:
            raise ValueError(f"size must be at least 8 px, got {self.size}")
        if len(self.split) != 3 or abs(sum(self.split) - 1) > 1e-6 or min(self.split) <= 0:
            raise ValueError(f"split must be three positive fractions summing to 1: {self.split}")
        if self.fake_resample not in FAKE_RESAMPLE:
            raise ValueError(f"fake_resample must be one of {FAKE_RESAMPLE}, "
                             f"got {self.fake_resample!r}")
        if self.fake_history not in FAKE_HISTORY:
            raise ValueError(f"fake_history must be one of {FAKE_HISTORY}, "
                             f"got {self.fake_history!r}")
        if self.fake_resample == "native" and self.fake_history != "none":
            raise ValueError("fake_resample='native' keeps generated pixels unresampled, but "
                             "the reals' JPEG history renders them at the reals' native frame: "
                             "use fake_history='none' with it")
        if self.test_fakes < 0 or self.invert_steps < 0 or self.invert_restarts < 1:
            raise ValueError("test_fakes >= 0, invert_steps >= 0 and invert_restarts >= 1 please")


def to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready dict of a dataclass config (tuples become lists)."""
    return json.loads(json.dumps(asdict(cfg)))


def from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Rebuild a config, ignoring unknown keys and restoring tuples."""
    names = {f.name: f for f in fields(cls)}
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in names}
    return cls(**kwargs)


def fingerprint(data: Any) -> str:
    """A short stable hash of a config (dataclass or JSON-able value)."""
    if hasattr(data, "__dataclass_fields__"):
        data = to_dict(data)
    blob = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def world_config(*, smoke: bool = False, seed: int = 0, size: int = 0,
                 fake_resample: str = "", fake_history: str = "") -> WorldConfig:
    """The default or smoke world config; ``size=0`` keeps that world's default size,
    ``fake_resample=""`` its default resampling history and ``fake_history=""`` its JPEG
    history (``"none"`` when ``fake_resample="native"``, which cannot have it)."""
    extra: dict[str, Any] = {"size": size} if size else {}
    if fake_resample:
        extra["fake_resample"] = fake_resample
    if fake_history or fake_resample == "native":
        extra["fake_history"] = fake_history or "none"
    return WorldConfig.smoke_default(seed=seed, **extra) if smoke else WorldConfig(seed=seed,
                                                                                  **extra)
