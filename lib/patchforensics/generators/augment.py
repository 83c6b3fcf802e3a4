"""Differentiable augmentation of the discriminator's inputs (DiffAugment, Zhao et al. 2020).

A GAN trained on ~800 faces overfits its discriminator within a few hundred steps: D memorises
the training reals, its gradients stop telling G anything about faces, and G makes blobs
(issue 23: the face mesh found a face in 46 % of the old DCGAN's samples). DiffAugment applies
the SAME random, differentiable transforms to every image D sees, real and fake, in D's step
and in G's step, so D cannot memorise and G's gradient passes through the transform. Because
both classes get the same distribution of transforms, G is not pushed to make augmented-looking
faces. The transforms are Zhao et al.'s: ``color`` (brightness, saturation and contrast
jitter), ``translation`` (a shift of up to 1/8 of the side, zero padding) and ``cutout`` (one
square of half the side cut out); which of them the zoo's GANs use was measured
(``generators.default_config``: translation alone, at the zoo's 2,000 steps). Randomness
comes only from the caller's ``torch.Generator`` (on the CPU), so a resumed training run
draws exactly what an uninterrupted one would.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

POLICIES = ("color", "translation", "cutout")  # the transforms a policy string may name


def parse_policy(policy: str) -> tuple[str, ...]:
    """``"color,translation,cutout"`` -> its names (``""``: no augmentation); unknown names
    raise."""
    names = tuple(p for p in (s.strip() for s in policy.split(",")) if p)
    unknown = [p for p in names if p not in POLICIES]
    if unknown:
        raise ValueError(f"unknown DiffAugment transforms {unknown}; choose from {POLICIES}")
    return names


def _color(x: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """Brightness +-0.5, saturation x[0, 2], contrast x[0.5, 1.5] on [-1, 1] images (Zhao et
    al.'s ranges, which are on [-1, 1] too)."""
    n = x.shape[0]
    r = torch.rand(3, n, 1, 1, 1, generator=rng).to(x.device, x.dtype)
    x = x + (r[0] - 0.5)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (r[1] * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (r[2] + 0.5) + mean


def _translation(x: torch.Tensor, rng: torch.Generator, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by up to ``ratio`` of its side in x and y; uncovered pixels are 0."""
    n, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ty = torch.randint(-sh, sh + 1, (n, 1, 1), generator=rng).to(x.device)
    tx = torch.randint(-sw, sw + 1, (n, 1, 1), generator=rng).to(x.device)
    gy = torch.arange(h, device=x.device).view(1, h, 1) + ty + 1  # +1: index into the padding
    gx = torch.arange(w, device=x.device).view(1, 1, w) + tx + 1
    gy, gx = gy.clamp(0, h + 1).expand(n, h, w), gx.clamp(0, w + 1).expand(n, h, w)
    padded = F.pad(x, (1, 1, 1, 1))  # a ring of zeros that every out-of-range index lands on
    idx = (gy * (w + 2) + gx).view(n, 1, h * w).expand(-1, x.shape[1], -1)
    return padded.flatten(2).gather(2, idx).view_as(x)


def _cutout(x: torch.Tensor, rng: torch.Generator, ratio: float = 0.5) -> torch.Tensor:
    """Zero one ``ratio``-sided square per image at a random centre (it may leave the image)."""
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    oy = torch.randint(0, h + (1 - ch % 2), (n, 1, 1), generator=rng).to(x.device)
    ox = torch.randint(0, w + (1 - cw % 2), (n, 1, 1), generator=rng).to(x.device)
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    inside = ((ys - oy + ch // 2) // ch == 0) & ((xs - ox + cw // 2) // cw == 0)
    return x * (~inside).unsqueeze(1).to(x.dtype)


def diff_augment(x: torch.Tensor, policy: str | tuple[str, ...],
                 rng: torch.Generator) -> torch.Tensor:
    """Apply the ``policy`` transforms, in its order, to N x C x H x W images in [-1, 1]
    (the result may leave that range, as in Zhao et al.); differentiable in ``x``. Each
    image gets its own draw from ``rng`` (a CPU generator). Memory format is kept."""
    names = parse_policy(policy) if isinstance(policy, str) else policy
    channels_last = x.is_contiguous(memory_format=torch.channels_last) and x.shape[1] > 1
    for name in names:
        if name == "color":
            x = _color(x, rng)
        elif name == "translation":
            x = _translation(x, rng)
        else:
            x = _cutout(x, rng)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x
