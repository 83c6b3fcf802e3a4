"""The one interface every generator of the zoo offers, and the helpers they share.

A generator turns a seed into images that then go through the same parity pipeline as the
reals (Chai et al. 2020, Sec. 3.1), so ``sample`` returns exactly what a camera would: HxWx3
uint8. Gray datasets (Olivetti) are generated with ONE channel and replicated to three, so a
fake never carries a colour cast that the gray reals cannot have: that would be a trivial cue,
not a generator artifact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..data import to_uint8
from ..progress import bar as progress_bar

SAMPLE_BATCH = 128  # images per forward pass in ``sample``: bounds memory, not results


def from_uint8(arr: np.ndarray, channels: int) -> torch.Tensor:
    """N x H x W x 3 uint8 -> N x channels x H x W uint8 tensor (channel 0 when gray)."""
    if arr.ndim != 4 or arr.shape[3] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"expected N x H x W x 3 uint8, got {arr.shape} {arr.dtype}")
    t = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2)
    return t[:, :1].contiguous() if channels == 1 else t.contiguous()


def is_gray(arr: np.ndarray) -> bool:
    """True when every pixel of N x H x W x 3 ``arr`` has R == G == B."""
    return bool((arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all())


@dataclass
class Generator:
    """Base of every generator: a name, the dataset it imitates, and ``sample``.

    Attributes: ``name`` (registry name, e.g. ``"dcgan"``), ``dataset`` (the real set it
    imitates, e.g. ``"celeba"``), ``size`` (native output side in px), ``channels`` (1: gray
    generated once and replicated to RGB; 3: RGB), ``latent_dim`` (None when there is no
    differentiable latent), ``checkpoint`` (the weights file it was loaded from),
    ``checkpoint_sha256`` (of those weights) and ``info`` (how it was obtained: ``source`` is
    ``"trained"``, ``"resumed"``, ``"cache"`` or ``"package"``; steps, seconds, config).
    """

    name: str
    dataset: str
    size: int
    channels: int
    checkpoint: Path | None = None
    checkpoint_sha256: str = ""
    info: dict[str, Any] = field(default_factory=dict)
    latent_dim: int | None = None

    def sample(self, n: int, seed: int) -> np.ndarray:
        """``n`` images, N x size x size x 3 uint8 in [0, 255]; same seed, same images."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.dataset}/{self.name}, {self.size}px, "
                f"channels={self.channels}, latent_dim={self.latent_dim}, "
                f"source={self.info.get('source')})")


class TorchGenerator(Generator):
    """A generator with a latent: ``generate(sample_latent(n, seed))`` is differentiable.

    Subclasses set ``net`` (an ``nn.Module`` mapping N x latent_dim to N x channels x S x S in
    [-1, 1], or override ``_decode``) and ``device``. The net is kept in eval mode (BatchNorm
    uses its running statistics, so a sample never depends on its batch-mates); a finetuning
    notebook may switch it to train mode itself.
    """

    net: torch.nn.Module
    device: torch.device

    def sample_latent(self, n: int, seed: int) -> torch.Tensor:
        """N x latent_dim float32 N(0, I) on ``device``; drawn on the CPU so any device agrees."""
        assert self.latent_dim is not None
        g = torch.Generator().manual_seed(int(seed))
        return torch.randn(n, self.latent_dim, generator=g).to(self.device)

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        """N x latent_dim float -> N x 3 x size x size float in [-1, 1], differentiable in z
        and in the net's parameters (gray generators replicate their one channel)."""
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"{self.name}: expected z of shape N x {self.latent_dim}, "
                             f"got {tuple(z.shape)}")
        x = self._decode(z.to(self.device))
        return x.repeat(1, 3, 1, 1) if x.shape[1] == 1 else x

    def sample(self, n: int, seed: int) -> np.ndarray:
        z = self.sample_latent(n, seed)
        out = np.empty((n, self.size, self.size, 3), np.uint8)
        with torch.no_grad():
            for i in range(0, n, SAMPLE_BATCH):
                out[i:i + SAMPLE_BATCH] = to_uint8(self.generate(z[i:i + SAMPLE_BATCH]))
        return out

    def invert(self, images: np.ndarray, cfg: InversionConfig | None = None, *,
               progress: bool = False) -> tuple[np.ndarray, torch.Tensor, np.ndarray]:
        """Reconstruct real ``images`` (N x size x size x 3 uint8) by latent optimisation:
        ``(inverted N x size x size x 3 uint8, z N x latent_dim, PSNR N dB)``; see
        :func:`invert_images` and :class:`InversionConfig` (default when None)."""
        if images.ndim != 4 or images.shape[1:] != (self.size, self.size, 3):
            raise ValueError(f"{self.name}: expected N x {self.size} x {self.size} x 3 images, "
                             f"got {images.shape}")
        return invert_images(self, images, cfg or InversionConfig(), progress=progress)


# --- inversion: the generator's closest image to a real one (Chai et al. 2020, Sec. 3.1) -------

@dataclass(frozen=True)
class InversionConfig:
    """Latent optimisation that reconstructs real images with a generator.

    The paper trains its classifiers on ProGAN samples *plus ProGAN inversions of the real
    training images*: an inversion shows the reals' content made with the generator's pixels,
    so content cannot separate the classes. Loss per image, on [-1, 1] images:
    ``|G(z) - x|_1 + perceptual * L_p(G(z), x) + prior * mean(z^2)``, with ``L_p`` the
    multi-scale pixel + gradient distance of notebook 06 (:func:`perceptual_distance`).
    """

    steps: int = 16  # Adam steps on z per image (fixed: the result must not depend on the clock)
    lr: float = 0.05  # Adam learning rate of z
    restarts: int = 8  # random latents tried per image; the best one starts the optimisation
    batch_size: int = 128  # images optimised together (each image's loss is its own)
    perceptual: float = 1.0  # weight of L_p next to the pixel L1
    prior: float = 1e-3  # weight of mean(z^2): keeps z where the generator was trained
    seed: int = 0  # the random starting latents
    encoder: bool = True  # also start from the generator's encoder latent, when it has one


def psnr_uint8(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-image PSNR in dB between N x H x W x C uint8 stacks (peak 255; inf when equal)."""
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).reshape(len(a), -1).mean(1)
    with np.errstate(divide="ignore"):
        return 10 * np.log10(255.0**2 / mse)


def _inversion_loss(gen: Any, z: torch.Tensor, x: torch.Tensor,
                    cfg: InversionConfig) -> torch.Tensor:
    """Per-image loss (N values) of latents ``z`` against targets ``x`` in [-1, 1]."""

    y = gen.generate(z)
    loss = (y - x).abs().mean(dim=(1, 2, 3))
    if cfg.perceptual:
        loss = loss + cfg.perceptual * perceptual_distance(y, x)
    if cfg.prior:
        loss = loss + cfg.prior * z.pow(2).mean(dim=1)
    return loss


def encoder_latents(gen: Any, x: torch.Tensor) -> torch.Tensor | None:
    """Starting latents from an encoder, when ``gen`` has one; None otherwise.

    A GAN trained with an inversion encoder offers ``encode(x)``; the VAE's posterior mean is
    mapped into the N(0, I) coordinates of its ``generate``. ``x``: N x 3 x S x S in [-1, 1]
    on ``gen.device``; returns N x latent_dim float.
    """
    encode = getattr(gen, "encode", None)
    if callable(encode):
        z = encode(x)
        if z is not None:
            return z
    net = getattr(gen, "net", None)
    chol, mean = getattr(gen, "prior_chol", None), getattr(gen, "prior_mean", None)
    if net is None or not hasattr(net, "encode") or chol is None or mean is None:
        return None
    channels = getattr(gen, "channels", 3)
    with torch.no_grad():
        mu = net.encode(x[:, :1] if channels == 1 else x)[0]
        # generate(eps) decodes mean + chol @ eps, so eps = chol^-1 (mu - mean)
        return torch.linalg.solve_triangular(chol, (mu - mean).T, upper=False).T


def starting_latents(gen: Any, x: torch.Tensor, random: torch.Tensor,
                     cfg: InversionConfig) -> torch.Tensor:
    """Per image the lowest-loss latent among the encoder's (when ``cfg.encoder`` and ``gen``
    has one) and the ``random`` candidates (R x N x latent_dim): never worse, by the loss,
    than random restarts alone. ``x``: N x 3 x S x S in [-1, 1]; returns N x latent_dim."""
    cands = [c for c in random.to(x.device)] if cfg.restarts > 0 else []
    if cfg.encoder:
        z_enc = encoder_latents(gen, x)
        if z_enc is not None:
            cands.insert(0, z_enc.to(x.device, torch.float32))
    if not cands:
        raise ValueError("no starting latent: set restarts >= 1 or give the generator an encoder")
    with torch.no_grad():
        losses = torch.stack([_inversion_loss(gen, c, x, cfg) for c in cands])
        stacked = torch.stack(cands)
        return stacked[losses.argmin(0), torch.arange(x.shape[0], device=x.device)]


def invert_images(gen: Any, images: np.ndarray, cfg: InversionConfig = InversionConfig(),
                  *, progress: bool = False) -> tuple[np.ndarray, torch.Tensor, np.ndarray]:
    """Invert real images by optimising the latent of ``gen`` (anything with ``generate``,
    ``latent_dim`` and ``device``).

    ``images``: N x S x S x 3 uint8 at the generator's size. Every image starts from the best
    (lowest loss) of ``cfg.restarts`` seeded N(0, I) latents and, when the generator has an
    encoder (:func:`encoder_latents`), the encoder's latent (:func:`starting_latents`), and
    then gets ``cfg.steps`` Adam steps; the lowest-loss latent seen is kept. Images are
    independent: the loss is summed over a batch, so the result does not depend on
    ``batch_size`` or on which images share a batch. Returns ``(inverted N x S x S x 3 uint8,
    z N x latent_dim float32 on the CPU, PSNR N float64 dB of inverted vs images)``.
    """

    n, d = len(images), int(gen.latent_dim)
    target = from_uint8(images, 3).float().div(127.5).sub(1.0)
    # Candidates drawn up front for all N images: image i's start depends on (seed, i) only.
    starts = torch.randn(max(cfg.restarts, 0), n, d,
                         generator=torch.Generator().manual_seed(int(cfg.seed)))
    net = getattr(gen, "net", None)
    frozen = [p for p in net.parameters() if p.requires_grad] if net is not None else []
    for p in frozen:  # only z learns; no gradient buffers for the weights
        p.requires_grad_(False)
    z_out = torch.empty(n, d)
    try:
        for lo in progress_bar(range(0, n, cfg.batch_size),
                               desc=f"invert {getattr(gen, 'name', '')}",
                               disable=not progress, unit="batch", leave=False):
            hi = min(n, lo + cfg.batch_size)
            x = target[lo:hi].to(gen.device)
            z0 = starting_latents(gen, x, starts[:, lo:hi], cfg)
            z = z0.clone().requires_grad_(True)
            best_z = z0.clone()
            best = torch.full((hi - lo,), float("inf"), device=z0.device)
            opt = torch.optim.Adam([z], lr=cfg.lr)
            for _ in range(cfg.steps):
                loss = _inversion_loss(gen, z, x, cfg)
                with torch.no_grad():  # the loss is of the z before this step: keep the best
                    better = loss < best
                    best = torch.where(better, loss, best)
                    best_z[better] = z[better]
                opt.zero_grad(set_to_none=True)
                loss.sum().backward()
                opt.step()
            with torch.no_grad():
                final = _inversion_loss(gen, z, x, cfg)
                better = final < best
                best_z[better] = z[better]
            z_out[lo:hi] = best_z.detach().cpu()
    finally:
        for p in frozen:
            p.requires_grad_(True)
    out = np.empty_like(images)
    with torch.no_grad():
        for lo in range(0, n, SAMPLE_BATCH):
            out[lo:lo + SAMPLE_BATCH] = to_uint8(gen.generate(z_out[lo:lo + SAMPLE_BATCH]
                                                              .to(gen.device)))
    return out, z_out, psnr_uint8(out, images)


# The one L_p of the project: inversions here, the latent shift of notebook 06 (exaggerate).
def perceptual_distance(x: torch.Tensor, y: torch.Tensor, scales: int = 3) -> torch.Tensor:
    """Multi-scale pixel + gradient L1 distance between N x C x H x W images in [-1, 1]:
    N values >= 0 (0 iff equal). Averaged over ``scales`` resolutions (halved each time)."""
    if x.shape != y.shape:
        raise ValueError(f"shapes differ: {tuple(x.shape)} vs {tuple(y.shape)}")
    total = x.new_zeros(x.shape[0])
    for s in range(scales):
        if s:
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
        d = x - y
        total = total + d.abs().mean(dim=(1, 2, 3))
        if d.shape[-1] > 1:
            total = total + (d[..., :, 1:] - d[..., :, :-1]).abs().mean(dim=(1, 2, 3))
        if d.shape[-2] > 1:
            total = total + (d[..., 1:, :] - d[..., :-1, :]).abs().mean(dim=(1, 2, 3))
    return total / scales
