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


class _TinyGAN(torch.nn.Module):
    """z (4) -> tanh(linear) -> 3 x 8 x 8: the tiny generator as a module an encoder trains on."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = TinyGenerator().net

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.lin(z)).view(-1, 3, 8, 8)


class _WithEncoder:
    """A generator with ``encode``, the interface ``invert_images`` starts from."""

    latent_dim = 4
    device = torch.device("cpu")

    def __init__(self, net: torch.nn.Module, encoder: torch.nn.Module) -> None:
        self.net, self.encoder = net, encoder

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)


def test_trained_encoder_starts_inversions_closer_than_random_latents(one_thread):
    from patchforensics.generators.gan import GANConfig, encoder_step

    torch.manual_seed(0)
    G = _TinyGAN()
    E = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 32), torch.nn.ReLU(),
                            torch.nn.Linear(32, 4))
    cfg = GANConfig(latent_dim=4)
    gen = _WithEncoder(G, E)
    pool = _reals(TanhTiny(), 256)  # reals the generator can nearly make
    rng = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(E.parameters(), 3e-3)
    losses = []
    for _ in range(300):
        idx = torch.randint(0, len(pool), (32,), generator=rng)
        real = torch.from_numpy(pool[idx.numpy()]).permute(0, 3, 1, 2).float() / 127.5 - 1
        losses.append(float(encoder_step(cfg, {"G": G, "E": E}, opt, real, rng)["e"]))
    assert np.mean(losses[-20:]) < 0.5 * np.mean(losses[:20]), "the encoder must learn"
    reals = _reals(TanhTiny(), 16)
    start = InversionConfig(steps=0, restarts=0)  # the encoder's latent alone
    random = InversionConfig(steps=0, restarts=8, encoder=False)  # best of 8 random latents
    enc_psnr = invert_images(gen, reals, start)[2]
    rand_psnr = invert_images(gen, reals, random)[2]
    assert np.median(enc_psnr) > np.median(rand_psnr) + 3, (enc_psnr, rand_psnr)
    both = invert_images(gen, reals, InversionConfig(steps=0, restarts=8))[2]
    assert np.median(both) >= np.median(enc_psnr) - 0.5  # the lower loss of the two starts


def test_no_start_at_all_is_an_error():
    gen = TanhTiny()
    with np.testing.assert_raises_regex(ValueError, "no starting latent"):
        invert_images(gen, _reals(gen, 2), InversionConfig(restarts=0))
