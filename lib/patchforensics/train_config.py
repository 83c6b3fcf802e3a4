"""What decides a classifier training run: :class:`TrainConfig`, and the original's patience rule
for each cut.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import runs
from .generators.training import PRECISIONS
from .models import ModelConfig

FIT_SPLITS = ("train", "val")  # the splits a training run reads (embedded.SPLITS adds "test")


SETTINGS = runs.SETTINGS


# The original scripts' patience (epochs without a better val per-patch accuracy) per cut.
ORIGINAL_PATIENCE = {"block1": 50, "block2": 20, "layer1": 50, "layer2": 20}


DEFAULT_PATIENCE = 10  # block3..5, deeper ResNet layers, full models


def original_patience(depth: str) -> int:
    """The original's patience for a cut: 50 (block1), 20 (block2), 10 otherwise."""
    return ORIGINAL_PATIENCE.get(depth, DEFAULT_PATIENCE)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run's result (machine settings are not in here)."""

    arch: str = "xception"  # backbone: "xception" or "resnet18"
    depth: str = "block2"  # cut: block1..block5 / layer1..layer4, or "full" (the baselines)
    load_size: int = 0  # upsample inputs to this side before the net (paper: 128 -> 299); 0 off
    init_gain: float = 0.02  # xavier-normal gain of the from-scratch init (original code)
    init: str = ""  # path of user-supplied initial weights ("" = train from scratch)
    seed: int = 0  # seeds the init, the batch order, the flips and the augmentation
    epochs: int = 1000  # at most this many epochs (the original's cap; notebooks pass less)
    patience: int = 0  # stop after this many epochs without a better val per-patch accuracy;
    #                    0 = the original's rule for the cut (50 block1, 20 block2, else 10)
    stop_at_perfect: bool = True  # stop once val per-patch accuracy is 1.0 (as the original)
    batch_size: int = 32  # images per step over all processes, half real half fake (16 + 16)
    lr: float = 1e-3  # Adam learning rate (paper)
    beta1: float = 0.9  # Adam beta1 (original code's default)
    flip: bool = True  # random horizontal flip, the paper's only augmentation
    augment: float = 0.0  # CNNDetection blur + JPEG, each with this probability (0 = off)
    blur_sigma: tuple[float, float] = (0.0, 3.0)  # Gaussian blur sigma range, px (CNNDetection)
    jpeg_quality: tuple[int, int] = (30, 100)  # JPEG quality range (CNNDetection)
    steps_per_epoch: int = 0  # cap on steps per epoch (smoke runs); 0 = a full pass
    setting: str = "samples"  # fakes: "samples_inversions" (the paper's), "samples", or
    #                           "paired" (each real with the fake of its name: manipulations)
    crop: int = 0  # train on random windows of this side, in network-input px; 0 = whole
    limit: int = 0  # use only the first N images of each folder split (smoke runs); 0 = all
    precision: str = "fp32"  # forward passes of training steps: "fp32", or "bf16" autocast
    #                          (weights, optimiser and loss stay fp32; validation runs in fp32)

    def __post_init__(self) -> None:
        self.model_config()  # validates arch/depth/load_size
        if self.batch_size < 2 or self.batch_size % 2:
            raise ValueError(f"batch_size must be even and >= 2, got {self.batch_size}")
        if not 0.0 <= self.augment <= 1.0:
            raise ValueError(f"augment is a probability in [0, 1], got {self.augment}")
        if self.epochs < 1 or self.patience < 0:
            raise ValueError("epochs must be >= 1 and patience >= 0 (0: the original's rule)")
        if self.setting not in SETTINGS:
            raise ValueError(f"setting must be one of {SETTINGS}, got {self.setting!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.crop < 0 or (self.crop and self.depth == "full"):
            raise ValueError(f"crop must be >= 0 and 0 for full-image models, got {self.crop}")

    @property
    def stop_patience(self) -> int:
        """The patience in force: ``patience``, or the original's for this cut when 0."""
        return self.patience or original_patience(self.depth)

    def model_config(self) -> ModelConfig:
        return ModelConfig(arch=self.arch, depth=self.depth, load_size=self.load_size,
                           init_gain=self.init_gain)

    def run_name(self) -> str:
        """The run folder's own name, e.g. ``xception_block2_in192_seed0`` (``runs``)."""
        return runs.leaf_name(self.arch, self.depth, self.load_size, self.seed)
