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

from ..data import to_uint8

SAMPLE_BATCH = 128  # images per forward pass in ``sample``: bounds memory, not results


def default_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` if given, else CUDA when present, else CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


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
