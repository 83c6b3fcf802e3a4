"""Inversion by latent optimisation: better than chance, seeded, independent of batching."""

from __future__ import annotations

import numpy as np
import torch

from patchforensics.data import to_uint8
from patchforensics.generators import InversionConfig, invert_images, psnr_uint8

from conftest import TinyGenerator


def _reals(gen: TinyGenerator, n: int = 12) -> np.ndarray:
    """Images the generator can make (in range), plus a little noise it cannot."""
    z = 0.5 * gen.sample_latent(n, seed=123)
    with torch.no_grad():
        x = torch.tanh(gen.generate(z))
    noise = 0.02 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    return to_uint8((x + noise).clamp(-1, 1))


class TanhTiny(TinyGenerator):
    """The tiny linear generator squashed into [-1, 1] like a real generator's output."""

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(super().generate(z))


def test_inversion_beats_a_random_latent(one_thread):
    gen = TanhTiny()
    reals = _reals(gen)
    cfg = InversionConfig(steps=60, lr=0.1, restarts=4, batch_size=5, seed=0)
    inv, z, psnr = invert_images(gen, reals, cfg)
    assert inv.shape == reals.shape and inv.dtype == np.uint8 and z.shape == (len(reals), 4)
    np.testing.assert_allclose(psnr, psnr_uint8(inv, reals))
    with torch.no_grad():
        rand = to_uint8(gen.generate(gen.sample_latent(len(reals), seed=7)))
    baseline = psnr_uint8(rand, reals)
    assert np.median(psnr) > np.median(baseline) + 10, (np.median(psnr), np.median(baseline))
    assert (psnr > baseline).all()


def test_more_steps_do_not_hurt_and_results_are_seeded(one_thread):
    gen = TanhTiny()
    reals = _reals(gen, 8)
    short = invert_images(gen, reals, InversionConfig(steps=5, lr=0.1, restarts=2, seed=0))
    long = invert_images(gen, reals, InversionConfig(steps=40, lr=0.1, restarts=2, seed=0))
    # the best latent seen is kept, and the long run starts where the short one does
    assert long[2].mean() >= short[2].mean() - 1e-6
    again = invert_images(gen, reals, InversionConfig(steps=40, lr=0.1, restarts=2, seed=0))
    np.testing.assert_array_equal(again[0], long[0])


def test_batching_does_not_change_the_result(one_thread):
    gen = TanhTiny()
    reals = _reals(gen, 8)
    one = invert_images(gen, reals, InversionConfig(steps=10, batch_size=8, seed=3))
    split = invert_images(gen, reals, InversionConfig(steps=10, batch_size=3, seed=3))
    torch.testing.assert_close(one[1], split[1], atol=1e-4, rtol=1e-4)
