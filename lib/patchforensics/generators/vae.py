"""The likelihood model of the zoo: a convolutional VAE (Glow's stand-in, Chai et al. Sec. 3.1).

The paper tests whether a patch classifier trained on GAN fakes also catches Glow, a model
trained by maximum likelihood instead of against a discriminator. A Glow does not train on two
CPU cores in minutes; a VAE is the likelihood model that does. Decoder: Gaussian with fixed
``recon_sigma`` (the ELBO's reconstruction term is ``|x - mean|^2 / (2 sigma^2)`` per pixel),
so a smaller sigma buys sharper samples at the cost of a less regular latent space. Samples are
decoder means of z from the latent prior: the smooth, slightly blurry look of likelihood models.

The prior is, by default, *fitted*: after training, a full-covariance Gaussian is fitted by
maximum likelihood to the posterior means of the training images (a two-stage VAE, Dai & Wipf
2019; Ghosh et al. 2020). A small VAE trained for minutes has an aggregate posterior far from
N(0, I) (measured here: per-dimension spread ~2, not 1), so decoding N(0, I) gave washed-out
blends of faces, while the fitted Gaussian gives distinct, face-like samples. ``prior="standard"``
keeps the textbook N(0, I). Either way ``sample_latent`` draws eps ~ N(0, I) and ``generate``
maps it through ``z = mean + chol @ eps``, so the latent interface matches the GANs'.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import to_dict
from .base import TorchGenerator, from_uint8
from .nets import ConvVAE
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
class VAEConfig:
    """A convolutional VAE; the defaults are the 64 px CelebA one."""

    latent_dim: int = 128  # size of z ~ N(0, I)
    nf: int = 32  # width of the first encoder / last decoder layer (doubles per layer)
    batch_size: int = 32  # images per step (budget: see generators.default_config)
    steps: int = 800  # optimisation steps
    lr: float = 1e-3  # Adam learning rate
    recon_sigma: float = 0.1  # decoder std on the [-1, 1] scale: smaller is sharper
    kl_warmup: int = 200  # steps over which the KL weight ramps 0 -> 1 (avoids early collapse)
    prior: str = "fitted"  # "fitted": Gaussian fitted to the posterior means; "standard": N(0, I)
    flip: bool = True  # random horizontal flips of the reals
    checkpoint_every: int = 200  # steps between resumable latest.pt saves (also every 120 s)
    threads: int = 0  # torch CPU threads while training (0: torch's default, one per core)
    channels_last: bool = True  # NHWC on CPU: faster convs with oneDNN here
    precision: str = "fp32"  # "fp32", or "bf16": autocast forward passes (CPU with bf16, CUDA)
    seed: int = 0  # weight init and training randomness


def build_vae(cfg: VAEConfig, size: int, channels: int) -> ConvVAE:
    """A fresh VAE initialised from ``cfg.seed`` (the caller's global RNG is left alone)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return ConvVAE(cfg.latent_dim, size, channels, cfg.nf)


def vae_training(cfg: VAEConfig, images: np.ndarray, channels: int, device: torch.device
                 ) -> tuple[dict[str, Any], torch.Generator, StepFn]:
    """The state and the step of VAE training, shared by ``train_vae`` and the benchmark.

    ``images``: N x S x S x 3 uint8. Returns ``(parts, rng, step)``: ``parts`` = the VAE
    (channels-last on CPU) and its fused Adam state; ``rng`` the one generator of every random
    draw; ``step(i)`` one ELBO step on ``cfg.batch_size`` images (KL weight ramped over
    ``kl_warmup`` steps), returning the detached ``{"rec", "kl"}``.
    """
    size = images.shape[1]
    vae = build_vae(cfg, size, channels).to(device)
    cl = cfg.channels_last and device.type == "cpu"
    if cl:
        vae = vae.to(memory_format=torch.channels_last)
    opt = adam(vae.parameters(), cfg.lr, (0.9, 0.999), device)
    data = from_uint8(images, channels)
    rng = torch.Generator().manual_seed(cfg.seed + 1)
    n, b = data.shape[0], cfg.batch_size
    inv_two_var = 1.0 / (2 * cfg.recon_sigma**2)

    def step(i: int) -> dict[str, torch.Tensor]:
        idx = torch.randint(0, n, (b,), generator=rng)
        flips = torch.rand(b, generator=rng) < 0.5 if cfg.flip else None
        eps = torch.randn(b, cfg.latent_dim, generator=rng).to(device)
        x = batch_from(data, idx, flips, device, cl)
        with autocast(cfg.precision, device):
            mu, logvar = vae.encode(x)
            mu, logvar = mu.float(), logvar.float()  # the ELBO in fp32 whatever the precision
            recon = vae.decode(mu + eps * torch.exp(0.5 * logvar)).float()
        rec = (recon - x).pow(2).flatten(1).sum(1).mean() * inv_two_var
        kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).sum(1).mean()
        weight = min(1.0, (i + 1) / cfg.kl_warmup) if cfg.kl_warmup > 0 else 1.0
        loss = rec + weight * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"rec": rec.detach(), "kl": kl.detach()}

    return {"vae": vae, "opt": opt}, rng, step


def train_vae(folder: Path, fp: str, record: dict[str, Any], cfg: VAEConfig, images: np.ndarray,
              channels: int, device: torch.device, *, force: bool, progress: bool, desc: str,
              stop_after: int | None = None) -> dict[str, Any]:
    """Train (or resume) the VAE on ``images`` (N x S x S x 3 uint8); returns done.json's record."""
    size = images.shape[1]
    start_run(folder, fp, record, force=force)
    parts, rng, step = vae_training(cfg, images, channels, device)
    vae = parts["vae"]
    data = from_uint8(images, channels)
    cl = cfg.channels_last and device.type == "cpu"
    with cpu_threads(cfg.threads):
        source, seconds = train_loop(folder, fp, steps=cfg.steps,
                                     checkpoint_every=cfg.checkpoint_every, parts=parts,
                                     rng=rng, step_fn=step, desc=desc, progress=progress,
                                     stop_after=stop_after)
        mean, chol = fit_prior(vae, data, cfg, device, cl)
    state = {"kind": "vae", "config": to_dict(cfg), "size": size, "channels": channels,
             "prior_mean": mean, "prior_chol": chol,
             **{k: cpu_state(p.state_dict()) for k, p in parts.items()}}
    done = finish_run(folder, fp, state, cfg.steps, seconds)
    return {**done, "source": source}


@torch.no_grad()
def fit_prior(vae: ConvVAE, data: torch.Tensor, cfg: VAEConfig, device: torch.device,
              channels_last: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, lower Cholesky factor) of the latent prior: N(0, I), or with ``prior="fitted"``
    the ML Gaussian of the posterior means of ``data`` (uint8 N x C x S x S) and mirrors."""
    d = cfg.latent_dim
    if cfg.prior == "standard":
        return torch.zeros(d), torch.eye(d)
    if cfg.prior != "fitted":
        raise ValueError(f"unknown VAE prior {cfg.prior!r}; choose 'fitted' or 'standard'")
    vae.eval()
    mus = []
    for i in range(0, len(data), 256):
        idx = torch.arange(i, min(i + 256, len(data)))
        for flips in ([False, True] if cfg.flip else [False]):
            flip = torch.full((len(idx),), flips) if flips else None
            mus.append(vae.encode(batch_from(data, idx, flip, device, channels_last))[0].cpu())
    mu = torch.cat(mus).double()
    mean = mu.mean(0)
    cov = torch.cov(mu.T) + 1e-6 * torch.eye(d, dtype=torch.float64)  # jitter: always PD
    return mean.float(), torch.linalg.cholesky(cov).float()


class VAEGenerator(TorchGenerator):
    """A trained VAE sampled from its prior: ``generate(eps)`` decodes ``mean + chol @ eps``.

    ``eps``: N x latent_dim, N(0, I) (``sample_latent``); returns the decoder mean, N x 3 x S x
    S in [-1, 1]. ``net`` is the whole ConvVAE (eval mode; ``net.encode`` gives the posterior
    of an image); ``prior_mean`` and ``prior_chol`` hold the (fitted or standard) prior.
    """

    def __init__(self, name: str, dataset: str, checkpoint: Path, sha256: str,
                 device: torch.device, info: dict[str, Any]) -> None:
        ckpt = load_torch(checkpoint)
        cfg = VAEConfig(**ckpt["config"])
        super().__init__(name=name, dataset=dataset, size=int(ckpt["size"]),
                         channels=int(ckpt["channels"]), checkpoint=checkpoint,
                         checkpoint_sha256=sha256, info=info, latent_dim=cfg.latent_dim)
        vae = build_vae(cfg, self.size, self.channels)
        vae.load_state_dict(ckpt["vae"])
        self.config = cfg
        self.net = vae.to(device).eval()
        self.prior_mean = ckpt["prior_mean"].to(device)
        self.prior_chol = ckpt["prior_chol"].to(device)
        self.device = device

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.net.decode(self.prior_mean + z @ self.prior_chol.T)
