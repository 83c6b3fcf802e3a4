"""One training step of a patch classifier and its validation: every patch's loss, the step as
``train`` runs it (and ``benchmarks/bench_train.py`` times it), and a split's per-patch and
per-image accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .batches import random_windows, resized_windows, to_input
from .data import FAKE, REAL, ImageFiles, iter_batches
from .generators.training import adam, autocast
from .models import (
    PatchClassifier,
    inference_batch_size,
    inference_model,
    mean_fake_probability,
)
from .train_config import TrainConfig


def patch_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over every patch, each patch labelled with its image's label.

    ``logits``: N x 2 x h x w; ``labels``: N int64 in {0 real, 1 fake}. Returns a scalar.
    """
    n, c, h, w = logits.shape
    if c != 2 or labels.shape != (n,):
        raise ValueError(f"expected N x 2 x h x w logits and N labels, got {tuple(logits.shape)}"
                         f" and {tuple(labels.shape)}")
    return F.cross_entropy(logits, labels.view(n, 1, 1).expand(n, h, w))


def patch_correct(logits: torch.Tensor, labels: torch.Tensor) -> tuple[int, int]:
    """(correct patches, patches) of an N x 2 x h x w logit map against N labels."""
    pred = logits.argmax(dim=1)
    return int((pred == labels.view(-1, 1, 1)).sum()), pred.numel()


@torch.inference_mode()
def evaluate_split(model: torch.nn.Module, real: torch.Tensor | ImageFiles,
                   fake: torch.Tensor | ImageFiles, device: torch.device, *, batch_size: int = 0,
                   channels_last: bool = True) -> dict[str, float]:
    """Validation metrics of ``model`` on uint8 real and fake images (N x 3 x S x S tensors, or
    ``data.ImageFiles`` streamed through DataLoader workers: the same numbers):
    loss (mean per patch), patch_acc, image_acc (mean patch softmax > 0.5), real_acc, fake_acc
    (image level), ap (average precision of the image score, fake = positive). Runs on the
    model's BatchNorm-folded twin; ``batch_size`` 0 picks ``models.inference_batch_size``."""
    from sklearn.metrics import average_precision_score

    was_training = model.training
    model.eval()
    net = inference_model(model) if isinstance(model, PatchClassifier) else model
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    if batch_size <= 0:
        load = getattr(getattr(model, "config", None), "load_size", 0) or real.shape[-1]
        batch_size = inference_batch_size(max(load, real.shape[-1]), device)
    loss_sum, correct, patches, scores, labels = 0.0, 0, 0, [], []
    for images, label in ((real, REAL), (fake, FAKE)):
        for batch in iter_batches(images, batch_size,
                                  pin_memory=torch.device(device).type == "cuda"):
            x = to_input(batch, device, channels_last)
            y = torch.full((len(x),), label, dtype=torch.long, device=device)
            logits = net(x).float()
            loss_sum += float(patch_loss(logits, y)) * len(x)
            c, n = patch_correct(logits, y)
            correct, patches = correct + c, patches + n
            scores.append(mean_fake_probability(logits).cpu())
            labels.append(y.cpu())
    model.train(was_training)
    s, y = torch.cat(scores).numpy(), torch.cat(labels).numpy()
    pred = s > 0.5
    return {"loss": loss_sum / len(y), "patch_acc": correct / patches,
            "image_acc": float((pred == y).mean()),
            "real_acc": float((~pred[y == REAL]).mean()), "fake_acc": float(pred[y == FAKE].mean()),
            "ap": float(average_precision_score(y, s))}


@dataclass
class TrainStep:
    """One optimiser step of a patch classifier: what ``train`` runs for every batch, and what
    ``benchmarks/bench_train.py`` times (build it with :func:`training_step`).

    ``batch``: N x 3 x S x S uint8, augmented (:func:`epoch_batches`) -> float in [-1, 1]
    (channels-last if asked) -> with ``cfg.crop``, one random window per image of the
    load-size image (positions from ``rng``) -> forward under the run's autocast -> per-patch
    loss in fp32 -> backward -> Adam. Returns ``(loss, logits)``, detached (the logits are
    N x 2 x h x w, in the forward's dtype)."""

    cfg: TrainConfig
    model: PatchClassifier  # the weights: saved, validated, resumed
    net: torch.nn.Module  # what runs the forward: ``model``, its DDP wrapper, or compiled
    optim: torch.optim.Optimizer
    labels: torch.Tensor  # N int64: REAL x half, FAKE x half
    dev: torch.device
    channels_last: bool = True
    windows_first: bool = True  # cut the windows before upsampling (resized_windows)

    def __call__(self, batch: torch.Tensor, rng: np.random.Generator
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        x = to_input(batch, self.dev, self.channels_last)
        if self.cfg.crop and self.windows_first:
            x = resized_windows(self.model, x, self.cfg.crop, rng)
        elif self.cfg.crop:
            x = random_windows(self.model.resize(x), self.cfg.crop, rng)
        with autocast(self.cfg.precision, self.dev):
            logits = self.net(x, resize=not self.cfg.crop)
        loss = patch_loss(logits.float(), self.labels)
        self.optim.zero_grad(set_to_none=True)
        loss.backward()
        self.optim.step()
        return loss.detach(), logits.detach()


def training_step(cfg: TrainConfig, model: PatchClassifier, dev: torch.device,
                  labels: torch.Tensor, *, channels_last: bool = True,
                  compiled: bool = False, windows_first: bool = True) -> TrainStep:
    """The model moved to ``dev`` (channels-last if asked), fused Adam on its parameters
    (``cfg.lr``, ``cfg.beta1``) and the :class:`TrainStep` that trains it. ``labels``: the
    N int64 labels of every batch (reals first). ``compiled``: the forward (and so the
    backward) through ``torch.compile``. ``windows_first``: crop windows with
    :func:`resized_windows` (else :func:`random_windows` of whole resized images)."""
    model = model.to(dev)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optim = adam(model.parameters(), cfg.lr, (cfg.beta1, 0.999), dev)  # fused where it exists
    net = torch.compile(model, dynamic=False) if compiled else model
    return TrainStep(cfg, model, net, optim, labels.to(dev), dev, channels_last,
                     windows_first)
