"""The networks of the generator zoo (Chai et al. 2020, Sec. 3.1: "generators").

The paper trains its patch classifier on one generator and tests it on others whose artifacts
differ by *how* they make pixels. The embedded world keeps that contrast with tiny networks:

- ``ConvTGenerator``: DCGAN (Radford et al.), upsampling by transposed convolutions, whose
  uneven kernel overlap leaves checkerboard artifacts (the training source, ProGAN's stand-in);
- ``UpsampleConvGenerator``: the same GAN but upsampling by interpolation + 3x3 conv
  (Odena et al. 2016): another artifact family;
- ``Discriminator``: the DCGAN critic both GANs train against (kept in checkpoints, since a later
  notebook continues adversarial training);
- ``Encoder``: image -> latent of a trained GAN, the starting point of its inversions;
- ``ConvVAE``: a convolutional VAE, the likelihood model (Glow's stand-in);
- ``CriminaiVAE`` and ``TutorialDCGANGenerator``: state-dict compatible re-implementations of
  the two pretrained generators shipped in wheels (``external.py`` loads them).

Every trained network is built for a square side ``size`` that is a power of two >= 16, with
``channels`` output planes (1 for gray datasets, 3 for RGB). Generators output float in [-1, 1].
"""

from __future__ import annotations

import math

import torch
from torch import nn


def n_doublings(size: int) -> int:
    """How many x2 upsamplings take a 4x4 map to ``size`` (a power of two >= 16)."""
    k = int(round(math.log2(size))) if size > 0 else 0
    if size < 16 or 2**k != size:
        raise ValueError(f"trained generators need a power-of-two size >= 16, got {size}")
    return k - 2


def dcgan_init(module: nn.Module) -> None:
    """DCGAN's initialisation: conv weights N(0, 0.02), BN scale N(1, 0.02) and bias 0."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class ConvTGenerator(nn.Module):
    """DCGAN generator: z -> 4x4 -> ... -> size x size by stride-2 transposed convolutions.

    ``forward(z)``: z is N x latent_dim float; returns N x channels x size x size in [-1, 1].
    Widths halve per doubling from ``ngf * 2**(doublings-1)`` down to ``ngf`` (64 px, ngf 32:
    256-128-64-32).
    """

    def __init__(self, latent_dim: int, size: int, channels: int = 3, ngf: int = 32) -> None:
        super().__init__()
        d = n_doublings(size)
        widths = [ngf * 2 ** (d - 1 - i) for i in range(d)]
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(latent_dim, widths[0], 4, 1, 0, bias=False),
            nn.BatchNorm2d(widths[0]), nn.ReLU(True)]
        for cin, cout in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False),
                       nn.BatchNorm2d(cout), nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)
        self.latent_dim = latent_dim
        self.apply(dcgan_init)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z.reshape(z.shape[0], self.latent_dim, 1, 1))


class UpsampleConvGenerator(nn.Module):
    """Interpolate-then-convolve generator: no transposed convolution anywhere.

    z -> Linear -> 4x4 map, then per doubling ``Upsample(mode) -> Conv3x3 -> BN -> ReLU``; the
    last doubling ends in a 3x3 conv to ``channels`` and tanh. Same widths as ``ConvTGenerator``.
    ``forward(z)``: N x latent_dim -> N x channels x size x size in [-1, 1].
    """

    def __init__(self, latent_dim: int, size: int, channels: int = 3, ngf: int = 32,
                 mode: str = "nearest") -> None:
        super().__init__()
        d = n_doublings(size)
        widths = [ngf * 2 ** (d - 1 - i) for i in range(d)]
        self.fc = nn.Linear(latent_dim, widths[0] * 16, bias=False)
        self.bn0 = nn.BatchNorm2d(widths[0])
        # align_corners only exists for the interpolating modes
        kw = {"align_corners": False} if mode in ("bilinear", "bicubic") else {}
        layers: list[nn.Module] = []
        for cin, cout in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.Upsample(scale_factor=2, mode=mode, **kw),
                       nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout),
                       nn.ReLU(True)]
        layers += [nn.Upsample(scale_factor=2, mode=mode, **kw),
                   nn.Conv2d(widths[-1], channels, 3, 1, 1), nn.Tanh()]
        self.main = nn.Sequential(*layers)
        self.latent_dim = latent_dim
        self.width0 = widths[0]
        self.apply(dcgan_init)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.fc(z.reshape(z.shape[0], self.latent_dim)).view(z.shape[0], self.width0, 4, 4)
        return self.main(torch.relu(self.bn0(x)))


class Discriminator(nn.Module):
    """DCGAN discriminator: size x size -> 4x4 by stride-2 convs -> one logit per image.

    ``forward(x)``: N x channels x size x size in [-1, 1] -> N float logits (real > 0).
    """

    def __init__(self, size: int, channels: int = 3, ndf: int = 32) -> None:
        super().__init__()
        d = n_doublings(size)
        widths = [ndf * 2**i for i in range(d)]
        layers: list[nn.Module] = [nn.Conv2d(channels, widths[0], 4, 2, 1, bias=False),
                                   nn.LeakyReLU(0.2, True)]
        for cin, cout in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.Conv2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout),
                       nn.LeakyReLU(0.2, True)]
        layers += [nn.Conv2d(widths[-1], 1, 4, 1, 0, bias=False)]
        self.main = nn.Sequential(*layers)
        self.apply(dcgan_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x).flatten()


class Encoder(nn.Module):
    """Image -> latent for GAN inversion: the discriminator's conv stack, then a linear head.

    ``forward(x)``: N x channels x size x size in [-1, 1] -> N x latent_dim float (an estimate
    of the z with G(z) ~ x; trained after G, see ``gan.encoder_step``).
    """

    def __init__(self, latent_dim: int, size: int, channels: int = 3, nf: int = 32) -> None:
        super().__init__()
        d = n_doublings(size)
        widths = [nf * 2**i for i in range(d)]
        layers: list[nn.Module] = [nn.Conv2d(channels, widths[0], 4, 2, 1),
                                   nn.LeakyReLU(0.2, True)]
        for cin, cout in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.Conv2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout),
                       nn.LeakyReLU(0.2, True)]
        self.main = nn.Sequential(*layers, nn.Flatten())
        self.head = nn.Linear(widths[-1] * 16, latent_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.main(x))


class ConvVAE(nn.Module):
    """Convolutional VAE with a Gaussian decoder mean in [-1, 1].

    Encoder: stride-2 4x4 convs (BN, LeakyReLU) down to 4x4, then linear heads for ``mu`` and
    ``logvar`` (N x latent_dim). Decoder: linear to 4x4, then per doubling nearest-upsample +
    3x3 conv (BN, ReLU), tanh. ``decode(z)``: N x latent_dim -> N x channels x size x size in
    [-1, 1]; ``encode(x)`` -> ``(mu, logvar)``.
    """

    def __init__(self, latent_dim: int, size: int, channels: int = 3, nf: int = 32) -> None:
        super().__init__()
        d = n_doublings(size)
        enc_w = [nf * 2**i for i in range(d)]
        layers: list[nn.Module] = []
        cin = channels
        for w in enc_w:
            layers += [nn.Conv2d(cin, w, 4, 2, 1, bias=False), nn.BatchNorm2d(w),
                       nn.LeakyReLU(0.2, True)]
            cin = w
        self.encoder = nn.Sequential(*layers, nn.Flatten())
        self.mu = nn.Linear(enc_w[-1] * 16, latent_dim)
        self.logvar = nn.Linear(enc_w[-1] * 16, latent_dim)
        dec_w = enc_w[::-1]
        self.fc = nn.Linear(latent_dim, dec_w[0] * 16)
        dec: list[nn.Module] = [nn.ReLU(True)]
        for cin, cout in zip(dec_w[:-1], dec_w[1:], strict=True):
            dec += [nn.Upsample(scale_factor=2, mode="nearest"),
                    nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout),
                    nn.ReLU(True)]
        dec += [nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(dec_w[-1], dec_w[-1], 3, 1, 1), nn.ReLU(True),
                nn.Conv2d(dec_w[-1], channels, 3, 1, 1), nn.Tanh()]
        self.decoder = nn.Sequential(*dec)
        self.latent_dim = latent_dim
        self.width0 = dec_w[0]

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return self.mu(h), self.logvar(h).clamp(-12.0, 8.0)  # clamp: no exp overflow early on

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fc(z).view(z.shape[0], self.width0, 4, 4)
        return self.decoder(h)


class CriminaiVAE(nn.Module):
    """The VAE of ``criminai==1.0.6`` (``CriminAI/VAE/autoencodeur_BW.py``), key-compatible.

    Trained by its authors on all 400 Olivetti faces, gray 64x64 in [0, 1], with
    ``BCEWithLogitsLoss``: the decoder outputs logits, so an image is ``sigmoid(decoder(z))``.
    The encoder's last layer gives ``mu`` and ``logvar`` concatenated (2 x 64).
    """

    def __init__(self, latent_dim: int = 64) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 32, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(64, 128, 4, 2, 1), nn.ReLU(),
            nn.Flatten(), nn.Linear(128 * 8 * 8, 256), nn.ReLU(),
            nn.Linear(256, latent_dim * 2))
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, 256), nn.ReLU(),
            nn.Linear(256, 128 * 8 * 8), nn.ReLU(),
            nn.Unflatten(1, (128, 8, 8)),
            nn.ConvTranspose2d(128, 64, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(32, 1, 4, 2, 1))
        self.latent_dim = latent_dim

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """N x 64 latent -> N x 1 x 64 x 64 gray in [0, 1]."""
        return torch.sigmoid(self.decoder(z))


class TutorialDCGANGenerator(nn.Module):
    """The PyTorch-tutorial DCGAN generator (``gan_face_generate.models.Generator``).

    ``nn.Sequential`` named ``main``: ConvT(nz, 8 ngf, 4, 1, 0) then four stride-2 ConvT with
    BN-ReLU, tanh. ``forward(z)``: N x nz (or N x nz x 1 x 1) -> N x 3 x 64 x 64 in [-1, 1].
    """

    def __init__(self, nz: int = 100, ngf: int = 64, nc: int = 3) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 4),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh())
        self.nz = nz

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z.reshape(z.shape[0], self.nz, 1, 1))
