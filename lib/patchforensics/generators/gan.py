"""The two GANs of the zoo: ``dcgan`` (transposed convs) and ``upconv`` (interpolate + conv).

Chai et al. (2020, Sec. 3.1) train the patch classifier on ProGAN and test it on other GANs;
here ``dcgan`` is the training source and ``upconv`` a GAN of the same size and objective whose
only difference is the upsampling layer, so a detector that transfers between them must rely on
more than one artifact family. Both train against the same DCGAN discriminator with the
non-saturating loss (Goodfellow et al. 2014), Adam(2e-4, 0.5), and horizontal flips of the
(aligned, near-symmetric) faces to stretch the small training sets. The checkpoint keeps the
discriminator and both optimiser states: the finetuning notebook (Sec. 5) continues adversarial
training from there.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..config import to_dict
from .base import TorchGenerator, from_uint8
from .nets import ConvTGenerator, Discriminator, UpsampleConvGenerator
from .training import (
    StepFn,
    adam,
    autocast,
    batch_from,
    cpu_state,
    cpu_threads,
    finish_run,
    load_torch,
    start_run,
    train_loop,
)


@dataclass(frozen=True)
class GANConfig:
    """A DCGAN-style GAN; the defaults are the 64 px CelebA source generator."""

    arch: str = "dcgan"  # "dcgan": transposed convs; "upconv": interpolate + 3x3 conv
    upsample: str = "nearest"  # upconv only: "nearest" (bilinear collapsed at 64 px here)
    latent_dim: int = 64  # size of z ~ N(0, I)
    ngf: int = 32  # generator width at the last layer (doubles per layer towards z)
    ndf: int = 32  # discriminator width at the first layer
    batch_size: int = 32  # reals (and fakes) per step (budget: see default_config)
    steps: int = 800  # optimisation steps of D and G each
    lr_g: float = 2e-4  # Adam learning rate of G
    lr_d: float = 2e-4  # Adam learning rate of D
    beta1: float = 0.5  # Adam beta1 (DCGAN's choice)
    flip: bool = True  # random horizontal flips of the reals
    checkpoint_every: int = 200  # steps between resumable latest.pt saves (also every 120 s)
    threads: int = 0  # torch CPU threads while training (0: torch's default, one per core)
    channels_last: bool = True  # NHWC on CPU: ~1.6x faster convs with oneDNN here
    precision: str = "fp32"  # "fp32", or "bf16": autocast forward passes (CPU with bf16, CUDA)
    seed: int = 0  # weight init and training randomness


def build_nets(cfg: GANConfig, size: int, channels: int) -> tuple[torch.nn.Module, Discriminator]:
    """Fresh (G, D) for ``cfg`` at ``size`` px with ``channels`` image channels, initialised
    from ``cfg.seed`` without touching the caller's global RNG."""
    if cfg.arch not in ("dcgan", "upconv"):
        raise ValueError(f"unknown GAN arch {cfg.arch!r}; choose 'dcgan' or 'upconv'")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        if cfg.arch == "dcgan":
            G: torch.nn.Module = ConvTGenerator(cfg.latent_dim, size, channels, cfg.ngf)
        else:
            G = UpsampleConvGenerator(cfg.latent_dim, size, channels, cfg.ngf, cfg.upsample)
        return G, Discriminator(size, channels, cfg.ndf)


def discriminator_step(D: torch.nn.Module, opt_d: torch.optim.Optimizer, real: torch.Tensor,
                       fake: torch.Tensor, *, precision: str = "fp32") -> torch.Tensor:
    """One step of D on a real and a fake batch (fake detached): the non-saturating GAN loss in
    its numerically stable softplus form, computed in fp32 whatever ``precision`` the forward
    passes run in (see ``training.autocast``). Returns the detached loss."""
    with autocast(precision, real.device):
        logits_real, logits_fake = D(real), D(fake.detach())
    loss_d = F.softplus(-logits_real.float()).mean() + F.softplus(logits_fake.float()).mean()
    opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    opt_d.step()
    return loss_d.detach()


def gan_training(cfg: GANConfig, images: np.ndarray, channels: int, device: torch.device
                 ) -> tuple[dict[str, Any], torch.Generator, StepFn]:
    """The state and the step of GAN training, shared by ``train_gan`` and the benchmark.

    ``images``: N x S x S x 3 uint8. Returns ``(parts, rng, step)``: ``parts`` = G, D and their
    (fused) Adam states, in channels-last on CPU; ``rng`` the one generator of every random
    draw; ``step(i)`` one D step and one G step on a batch of ``cfg.batch_size``, returning
    the detached losses ``{"d", "g"}``.
    """
    size = images.shape[1]
    G, D = build_nets(cfg, size, channels)
    cl = cfg.channels_last and device.type == "cpu"
    G, D = G.to(device), D.to(device)
    if cl:
        G, D = G.to(memory_format=torch.channels_last), D.to(memory_format=torch.channels_last)
    opt_g = adam(G.parameters(), cfg.lr_g, (cfg.beta1, 0.999), device)
    opt_d = adam(D.parameters(), cfg.lr_d, (cfg.beta1, 0.999), device)
    data = from_uint8(images, channels)
    rng = torch.Generator().manual_seed(cfg.seed + 1)
    n, b = data.shape[0], cfg.batch_size

    def step(_: int) -> dict[str, torch.Tensor]:
        idx = torch.randint(0, n, (b,), generator=rng)
        flips = torch.rand(b, generator=rng) < 0.5 if cfg.flip else None
        z = torch.randn(b, cfg.latent_dim, generator=rng).to(device)
        real = batch_from(data, idx, flips, device, cl)
        with autocast(cfg.precision, device):
            fake = G(z)
        loss_d = discriminator_step(D, opt_d, real, fake, precision=cfg.precision)
        with autocast(cfg.precision, device):
            logits = D(fake)
        loss_g = F.softplus(-logits.float()).mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        return {"d": loss_d.detach(), "g": loss_g.detach()}

    return {"G": G, "D": D, "opt_g": opt_g, "opt_d": opt_d}, rng, step


def train_gan(folder: Path, fp: str, record: dict[str, Any], cfg: GANConfig, images: np.ndarray,
              channels: int, device: torch.device, *, force: bool, progress: bool, desc: str,
              stop_after: int | None = None) -> dict[str, Any]:
    """Train (or resume) one GAN on ``images`` (N x S x S x 3 uint8); returns done.json's record."""
    size = images.shape[1]
    start_run(folder, fp, record, force=force)
    parts, rng, step = gan_training(cfg, images, channels, device)
    with cpu_threads(cfg.threads):
        source, seconds = train_loop(folder, fp, steps=cfg.steps,
                                     checkpoint_every=cfg.checkpoint_every, parts=parts,
                                     rng=rng, step_fn=step, desc=desc, progress=progress,
                                     stop_after=stop_after)
    state = {"kind": "gan", "config": to_dict(cfg), "size": size, "channels": channels,
             **{k: cpu_state(p.state_dict()) for k, p in parts.items()}}
    done = finish_run(folder, fp, state, cfg.steps, seconds)
    return {**done, "source": source}


class GANGenerator(TorchGenerator):
    """A trained ``dcgan``/``upconv``: ``generate(z)`` is G(z), N x 3 x S x S in [-1, 1].

    ``net`` is G (eval mode) on ``device``; ``discriminator`` is D (eval mode);
    ``training_state()`` returns the whole final checkpoint (G, D, opt_g, opt_d, config) for
    continuing adversarial training.
    """

    def __init__(self, name: str, dataset: str, checkpoint: Path, sha256: str,
                 device: torch.device, info: dict[str, Any]) -> None:
        ckpt = load_torch(checkpoint)
        cfg = GANConfig(**{k: v for k, v in ckpt["config"].items()})
        super().__init__(name=name, dataset=dataset, size=int(ckpt["size"]),
                         channels=int(ckpt["channels"]), checkpoint=checkpoint,
                         checkpoint_sha256=sha256, info=info, latent_dim=cfg.latent_dim)
        G, D = build_nets(cfg, self.size, self.channels)
        G.load_state_dict(ckpt["G"])
        D.load_state_dict(ckpt["D"])
        self.config = cfg
        self.net = G.to(device).eval()
        self.discriminator = D.to(device).eval()
        self.device = device

    def training_state(self) -> dict[str, Any]:
        """The final checkpoint: ``{"G", "D", "opt_g", "opt_d", "config", "size", "channels"}``."""
        return load_torch(self.checkpoint, self.device) if self.checkpoint else {}
