"""The two GANs of the zoo: ``dcgan`` (transposed convs) and ``upconv`` (interpolate + conv).

Chai et al. (2020, Sec. 3.1) train the patch classifier on ProGAN and test it on other GANs;
here ``dcgan`` is the training source and ``upconv`` a GAN of the same size and objective whose
only difference is the upsampling layer, so a detector that transfers between them must rely on
more than one artifact family. Both train against the same DCGAN discriminator with the
non-saturating loss (Goodfellow et al. 2014), Adam(2e-4, 0.5), and horizontal flips of the
(aligned, near-symmetric) faces to stretch the small training sets.

The paper's fakes look like faces; a plain DCGAN trained on ~800 faces does not (issue 23: the
face mesh found a face in 46 % of its samples). The recipe of the few-shot GAN literature fixes
that without changing the families: DiffAugment of everything D sees (``augment.py``; Zhao et al.
2020), a lazy R1 penalty on D's gradient at the reals (Mescheder et al. 2018; Karras et al.
2020), and samples from an exponential moving average of G's weights (``G_ema``; Karras et al.
2018) with standing BatchNorm statistics. After G, an encoder E(x) -> z is trained against the
frozen ``G_ema`` (latent regression on its samples plus reconstruction of the real training
faces), so inversions start at the real face instead of a random latent.

The checkpoint's ``G`` is the generator that samples (the EMA weights); ``G_train`` the raw
weights D was trained against; plus D, both optimiser states and E. The finetuning notebook
(Sec. 5) continues adversarial training from ``G`` and ``D``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..config import to_dict
from .augment import diff_augment, parse_policy
from .base import TorchGenerator, from_uint8, perceptual_distance
from .nets import ConvTGenerator, Discriminator, Encoder, UpsampleConvGenerator
from .training import (
    StepFn,
    adam,
    autocast,
    batch_from,
    cpu_state,
    cpu_threads,
    ema_update,
    finish_run,
    load_torch,
    standing_stats,
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
    augment: str = ""  # DiffAugment policy of D's inputs, e.g. "color,translation,cutout"
    r1_gamma: float = 0.0  # R1 weight: gamma/2 E|grad D(real)|^2 (0: off)
    r1_every: int = 16  # lazy R1: the penalty (x r1_every) on every r1_every-th D step
    ema_decay: float = 0.0  # sample from an EMA of G's weights with this decay (0: raw G)
    encoder_steps: int = 0  # steps of the inversion encoder after G (0: no encoder)
    encoder_lr: float = 1e-3  # Adam learning rate of the encoder
    encoder_real: float = 1.0  # weight of real-face reconstruction next to latent regression
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


def build_encoder(cfg: GANConfig, size: int, channels: int) -> Encoder:
    """A fresh inversion encoder (as wide as D), initialised from ``cfg.seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed + 3)
        return Encoder(cfg.latent_dim, size, channels, cfg.ndf)


def r1_penalty(D: torch.nn.Module, real: torch.Tensor, precision: str) -> torch.Tensor:
    """Mean over the batch of |d D(x) / d x|^2 at the (already augmented) reals: the R1
    regulariser, differentiable in D's weights (a double backward)."""
    x = real.detach().requires_grad_(True)
    with autocast(precision, real.device):
        logits = D(x)
    (grad,) = torch.autograd.grad(logits.float().sum(), x, create_graph=True)
    return grad.float().pow(2).flatten(1).sum(1).mean()


def discriminator_step(D: torch.nn.Module, opt_d: torch.optim.Optimizer, real: torch.Tensor,
                       fake: torch.Tensor, *, precision: str = "fp32",
                       r1_weight: float = 0.0) -> torch.Tensor:
    """One step of D on a real and a fake batch (fake detached): the non-saturating GAN loss in
    its numerically stable softplus form, computed in fp32 whatever ``precision`` the forward
    passes run in (see ``training.autocast``), plus ``r1_weight`` x :func:`r1_penalty` when
    positive. Both batches arrive as D should see them (augmented by the caller). Returns the
    detached GAN loss."""
    with autocast(precision, real.device):
        logits_real, logits_fake = D(real), D(fake.detach())
    loss_d = F.softplus(-logits_real.float()).mean() + F.softplus(logits_fake.float()).mean()
    total = loss_d + r1_weight * r1_penalty(D, real, precision) if r1_weight > 0 else loss_d
    opt_d.zero_grad(set_to_none=True)
    total.backward()
    opt_d.step()
    return loss_d.detach()


def _nets(cfg: GANConfig, size: int, channels: int, device: torch.device
          ) -> dict[str, torch.nn.Module]:
    """G, D, G_ema (when ``ema_decay``) and E (when ``encoder_steps``) on ``device``."""
    G, D = build_nets(cfg, size, channels)
    nets: dict[str, torch.nn.Module] = {"G": G, "D": D}
    if cfg.ema_decay > 0:
        nets["G_ema"] = build_nets(cfg, size, channels)[0]
        nets["G_ema"].load_state_dict(G.state_dict())
        nets["G_ema"].requires_grad_(False)
    if cfg.encoder_steps > 0:
        nets["E"] = build_encoder(cfg, size, channels)
    cl = cfg.channels_last and device.type == "cpu"
    return {k: (n.to(device, memory_format=torch.channels_last) if cl else n.to(device))
            for k, n in nets.items()}


def gan_training(cfg: GANConfig, images: np.ndarray, channels: int, device: torch.device
                 ) -> tuple[dict[str, Any], torch.Generator, StepFn]:
    """The state and the step of GAN training, shared by ``train_gan`` and the benchmark.

    ``images``: N x S x S x 3 uint8. Returns ``(parts, rng, step)``: ``parts`` = G, D (and
    G_ema, E) with their fused Adam states, channels-last on CPU; ``rng`` the one generator of
    every random draw; ``step(i)`` for i < ``cfg.steps`` one D step and one G step on a batch
    of ``cfg.batch_size`` (losses ``{"d", "g"}``), then ``cfg.encoder_steps`` encoder steps
    (``{"e"}``; the first one sets G_ema's standing statistics).
    """
    policy = parse_policy(cfg.augment)
    nets = _nets(cfg, images.shape[1], channels, device)
    G, D = nets["G"], nets["D"]
    parts: dict[str, Any] = {**nets, "opt_g": adam(G.parameters(), cfg.lr_g, (cfg.beta1, 0.999),
                                                   device),
                             "opt_d": adam(D.parameters(), cfg.lr_d, (cfg.beta1, 0.999), device)}
    if "E" in nets:
        parts["opt_e"] = adam(nets["E"].parameters(), cfg.encoder_lr, (0.9, 0.999), device)
    cl = cfg.channels_last and device.type == "cpu"
    data = from_uint8(images, channels)
    rng = torch.Generator().manual_seed(cfg.seed + 1)
    n, b = data.shape[0], cfg.batch_size

    def reals() -> torch.Tensor:
        idx = torch.randint(0, n, (b,), generator=rng)
        flips = torch.rand(b, generator=rng) < 0.5 if cfg.flip else None
        return batch_from(data, idx, flips, device, cl)

    def aug(x: torch.Tensor) -> torch.Tensor:
        return diff_augment(x, policy, rng) if policy else x

    def gan_step(i: int) -> dict[str, torch.Tensor]:
        real = reals()
        z = torch.randn(b, cfg.latent_dim, generator=rng).to(device)
        with autocast(cfg.precision, device):
            fake = G(z)
        lazy = cfg.r1_gamma > 0 and i % cfg.r1_every == 0
        loss_d = discriminator_step(D, parts["opt_d"], aug(real), aug(fake.detach()),
                                    precision=cfg.precision,
                                    r1_weight=cfg.r1_gamma / 2 * cfg.r1_every if lazy else 0.0)
        with autocast(cfg.precision, device):
            logits = D(aug(fake))  # the same kind of draw as D's step: G learns through it
        loss_g = F.softplus(-logits.float()).mean()
        parts["opt_g"].zero_grad(set_to_none=True)
        loss_g.backward()
        parts["opt_g"].step()
        if "G_ema" in nets:
            ema_update(nets["G_ema"], G, cfg.ema_decay, i)
        return {"d": loss_d.detach(), "g": loss_g.detach()}

    def step(i: int) -> dict[str, torch.Tensor]:
        if i < cfg.steps:
            return gan_step(i)
        if i == cfg.steps:  # G is final: give the sampling net its own BN statistics
            finalize_generator(cfg, nets, device)
        return encoder_step(cfg, nets, parts["opt_e"], reals(), rng)

    return parts, rng, step


def sampling_net(nets: dict[str, torch.nn.Module]) -> torch.nn.Module:
    """The generator that samples: the EMA weights when there are any, else G."""
    return nets.get("G_ema", nets["G"])


def finalize_generator(cfg: GANConfig, nets: dict[str, torch.nn.Module],
                       device: torch.device) -> None:
    """Standing BatchNorm statistics for G_ema (seeded: deterministic); eval mode."""
    if "G_ema" in nets:
        standing_stats(nets["G_ema"], cfg.latent_dim, device, seed=cfg.seed + 2)
    sampling_net(nets).eval()


def encoder_step(cfg: GANConfig, nets: dict[str, torch.nn.Module], opt_e: torch.optim.Optimizer,
                 real: torch.Tensor, rng: torch.Generator) -> dict[str, torch.Tensor]:
    """One step of the encoder E against the frozen sampling generator G*:
    ``|E(G*(z)) - z|^2`` (E learns G*'s latent space) + ``encoder_real`` x (L1 + perceptual) of
    ``G*(E(x))`` vs real ``x`` (E learns to map real faces, which G* cannot make exactly, to
    their closest latents). Returns ``{"e": detached loss}``."""
    G, E = sampling_net(nets), nets["E"]
    G.requires_grad_(False)
    z = torch.randn(real.shape[0], cfg.latent_dim, generator=rng).to(real.device)
    with torch.no_grad(), autocast(cfg.precision, real.device):
        fake = G(z).float()
    with autocast(cfg.precision, real.device):
        z_fake = E(fake).float()
        z_real = E(real).float()
        rec = G(z_real).float()
    loss = (z_fake - z).pow(2).mean()
    if cfg.encoder_real > 0:
        x = real.float()
        loss = loss + cfg.encoder_real * ((rec - x).abs().mean(dim=(1, 2, 3))
                                          + perceptual_distance(rec, x)).mean()
    opt_e.zero_grad(set_to_none=True)
    loss.backward()
    opt_e.step()
    return {"e": loss.detach()}


def train_gan(folder: Path, fp: str, record: dict[str, Any], cfg: GANConfig, images: np.ndarray,
              channels: int, device: torch.device, *, force: bool, progress: bool, desc: str,
              stop_after: int | None = None) -> dict[str, Any]:
    """Train (or resume) one GAN on ``images`` (N x S x S x 3 uint8); returns done.json's record."""
    size = images.shape[1]
    start_run(folder, fp, record, force=force)
    parts, rng, step = gan_training(cfg, images, channels, device)
    total = cfg.steps + cfg.encoder_steps
    with cpu_threads(cfg.threads):
        source, seconds = train_loop(folder, fp, steps=total,
                                     checkpoint_every=cfg.checkpoint_every, parts=parts,
                                     rng=rng, step_fn=step, desc=desc, progress=progress,
                                     stop_after=stop_after)
        nets = {k: v for k, v in parts.items() if k in ("G", "D", "G_ema", "E")}
        finalize_generator(cfg, nets, device)  # idempotent: same statistics as at step `steps`
    states = {k: cpu_state(p.state_dict()) for k, p in parts.items()}
    states["G_train"] = states["G"]
    states["G"] = cpu_state(sampling_net(nets).state_dict())
    states.pop("G_ema", None)
    state = {"kind": "gan", "config": to_dict(cfg), "size": size, "channels": channels, **states}
    done = finish_run(folder, fp, state, total, seconds)
    return {**done, "source": source}


class GANGenerator(TorchGenerator):
    """A trained ``dcgan``/``upconv``: ``generate(z)`` is G(z), N x 3 x S x S in [-1, 1].

    ``net`` is G (the EMA weights when trained with them; eval mode) on ``device``;
    ``discriminator`` is D (eval mode); ``encoder`` the inversion encoder (eval mode) or None;
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
        self.encoder: torch.nn.Module | None = None
        if "E" in ckpt:
            E = build_encoder(cfg, self.size, self.channels)
            E.load_state_dict(ckpt["E"])
            self.encoder = E.to(device).eval()
        self.device = device

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor | None:
        """N x 3 x S x S images in [-1, 1] -> N x latent_dim starting latents from the
        encoder (None without one)."""
        if self.encoder is None:
            return None
        return self.encoder(x[:, :1] if self.channels == 1 else x).float()

    def training_state(self) -> dict[str, Any]:
        """The final checkpoint: ``{"G", "D", "opt_g", "opt_d", "config", "size", "channels"}``
        (``G``: the sampling weights; ``G_train``: the raw ones, when trained with an EMA)."""
        return load_torch(self.checkpoint, self.device) if self.checkpoint else {}
