"""Generator finetuning and latent exaggeration on tiny setups: finetuning lowers the frozen
classifier's score, the exaggeration objective decreases and the shift moves the classifier's
score monotonically the expected way; both resume exactly and are deterministic by seed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from patchforensics.config import WorldConfig
from patchforensics.exaggerate import (
    ExaggerateConfig,
    exaggerate,
    fake_loss,
    perceptual_distance,
    score_curve,
)
from patchforensics.finetune import FinetuneConfig, finetune, write_fake_set
from patchforensics.generators.training import TrainingInterrupted
from patchforensics.images import sha256_file
from patchforensics.train import train
from patchforensics.train_config import TrainConfig

from conftest import BrightnessClassifier, TinyGenerator

pytestmark = pytest.mark.usefixtures("one_thread")


# --- exaggeration on a tiny linear generator and a brightness classifier -----------------------

def test_perceptual_distance_and_fake_loss_by_hand():
    x = torch.zeros(2, 3, 8, 8)
    y = x.clone()
    assert torch.equal(perceptual_distance(x, y), torch.zeros(2))
    y[1] += 0.5  # a constant offset: pixel term 0.5 at every scale, no gradient term
    assert perceptual_distance(x, y)[1].item() == pytest.approx(0.5)
    y2 = x.clone()
    y2[0, :, :, 4:] = 1.0  # an edge adds gradient terms on top of the pixel term
    assert perceptual_distance(x, y2)[0] > 0.5
    logits = torch.zeros(1, 2, 2, 2)
    logits[0, 1, 0, 0] = 10.0  # one patch confidently fake
    ce = float(fake_loss(logits))
    assert ce == pytest.approx((10.0 + np.log1p(np.exp(-10.0)) + 3 * np.log(2)) / 4, rel=1e-4)
    mask = torch.zeros(1, 2, 2, dtype=torch.bool)
    mask[0, 1, 1] = True  # only a neutral patch counts
    assert float(fake_loss(logits, mask)) == pytest.approx(np.log(2), rel=1e-5)


def test_exaggeration_decreases_its_objective_and_orders_the_score(tmp_path):
    gen, clf = TinyGenerator(), BrightnessClassifier()
    cfg = ExaggerateConfig(lam=0.1, steps=40, lr=0.2, batch_size=16, n_latents=64)
    res = exaggerate(cfg, gen, clf, tmp_path / "run", progress=False)
    h = res.history
    assert h["objective"].iloc[-5:].mean() < h["objective"].iloc[:5].mean() - 0.05
    assert res.w.norm() > 0.1
    curve = score_curve(gen, clf, res.w, gen.sample_latent(32, 7), np.linspace(-2, 2, 9))
    s = curve["score"].to_numpy()
    assert np.all(np.diff(s) >= -1e-9) and s[-1] > s[0] + 0.05  # brighter, faker, with a
    # A finished run is found again, with the same w.
    again = exaggerate(cfg, gen, clf, tmp_path / "run", progress=False)
    assert again.skipped and torch.equal(again.w, res.w)


def test_exaggeration_resumes_exactly_and_is_deterministic_by_seed(tmp_path):
    gen, clf = TinyGenerator(), BrightnessClassifier()
    cfg = ExaggerateConfig(lam=1.0, steps=30, lr=0.1, batch_size=8, n_latents=32,
                           checkpoint_every=10)
    full = exaggerate(cfg, gen, clf, tmp_path / "full", progress=False)
    with pytest.raises(TrainingInterrupted):
        exaggerate(cfg, gen, clf, tmp_path / "cut", progress=False, stop_after=15)
    resumed = exaggerate(cfg, gen, clf, tmp_path / "cut", progress=False)
    assert not resumed.skipped and torch.equal(resumed.w, full.w)
    assert resumed.history.equals(full.history)
    other = exaggerate(ExaggerateConfig(**{**cfg.__dict__, "seed": 1}), gen, clf,
                       tmp_path / "other", progress=False)
    assert not torch.equal(other.w, full.w)
    with pytest.raises(ValueError, match="part must be"):
        ExaggerateConfig(part="tail")


# --- finetuning on the smoke world ---------------------------------------------------------------

@pytest.fixture(scope="module")
def smoke_classifier(smoke_world, tmp_path_factory):
    """The smoke world with its fakes, and a small classifier of celeba reals vs dcgan."""
    from patchforensics.world import build_fake_world

    build_fake_world(WorldConfig.smoke_default(), progress=False, device="cpu")
    cfg = TrainConfig(arch="xception", depth="block1", epochs=4, patience=4, batch_size=16)
    out = tmp_path_factory.mktemp("ft_clf") / "run"
    train(cfg, smoke_world / "real/celeba", smoke_world / "fake/celeba/dcgan", out,
          device="cpu", progress=False)
    return smoke_world, out


def test_finetuning_lowers_the_frozen_classifiers_score(smoke_classifier, tmp_path):
    world, clf = smoke_classifier
    cfg = FinetuneConfig(lam=5.0, steps=20, eval_every=10, eval_n=32, checkpoint_every=5)
    res = finetune(cfg, clf, world_root=world, out_dir=tmp_path / "ft", device="cpu",
                   progress=False)
    h = res.history
    assert list(h["step"]) == [0, 10, 20]
    assert h["score"].iloc[-1] < h["score"].iloc[0] - 0.1, h
    assert h["called_fake"].iloc[-1] <= h["called_fake"].iloc[0]
    for col in ("nn_real", "nn_sample", "spectrum"):
        assert np.isfinite(h[col]).all()
    # The finetuned generator samples and writes a set of the world's sizes, separately.
    images = res.generator.sample(4, 0)
    assert images.shape == (4, 32, 32, 3) and images.dtype == np.uint8
    folder = write_fake_set(res.generator, world)
    assert folder.parent.parent.parent.name == "finetuned"
    assert len(list((folder / "test").glob("*.png"))) == 20
    # A rerun is skipped; an interrupted run resumes to the identical generator.
    assert finetune(cfg, clf, world_root=world, out_dir=tmp_path / "ft", device="cpu",
                    progress=False).skipped
    with pytest.raises(TrainingInterrupted):
        finetune(cfg, clf, world_root=world, out_dir=tmp_path / "cut", device="cpu",
                 progress=False, stop_after=12)
    resumed = finetune(cfg, clf, world_root=world, out_dir=tmp_path / "cut", device="cpu",
                       progress=False)
    assert sha256_file(tmp_path / "cut" / "final.pt") == sha256_file(tmp_path / "ft" / "final.pt")
    assert resumed.history.equals(h)
