"""Training: the per-patch loss, balanced seeded batches, a run that must learn a planted
artifact, a run on identical real/fake sets that must stay at chance, exact resume, skipping of
finished runs, the command line, and DistributedDataParallel with two gloo processes."""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from patchforensics import protocol
from patchforensics.batches import (
    augment_batch,
    blur_jpeg,
    epoch_order,
    load_split,
    split_fingerprint,
)
from patchforensics.cli import config_from_args
from patchforensics.cli_parser import add_train_parser
from patchforensics.models import load_classifier
from patchforensics.train import train
from patchforensics.train_config import TrainConfig
from patchforensics.train_step import evaluate_split, patch_loss

from conftest import face_like, write_planted

SIZE = 32


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> tuple[Path, Path]:
    """Reals vs. fakes that differ only by a faint (+-10 of 255) checkerboard."""
    base = tmp_path_factory.mktemp("planted")
    return write_planted(base / "real", 0, 0), write_planted(base / "fake", 50_000, 10)


# --- pieces -------------------------------------------------------------------------------------

def test_patch_loss_broadcasts_the_image_label_to_every_patch():
    torch.manual_seed(0)
    logits = torch.randn(3, 2, 4, 5)
    labels = torch.tensor([0, 1, 1])
    by_hand = torch.stack([torch.nn.functional.cross_entropy(
        logits[n, :, i, j][None], labels[n][None]) for n in range(3) for i in range(4)
        for j in range(5)]).mean()
    torch.testing.assert_close(patch_loss(logits, labels), by_hand)
    # A 1x1 map (the full-image baselines) is ordinary cross-entropy.
    torch.testing.assert_close(patch_loss(logits[:, :, :1, :1], labels),
                               torch.nn.functional.cross_entropy(logits[:, :, 0, 0], labels))
    with pytest.raises(ValueError, match="N labels"):
        patch_loss(logits, labels[:2])


def test_epoch_order_is_balanced_seeded_and_sharded():
    real, fake = epoch_order(10, 7, 4, seed=0, epoch=0)
    assert real.shape == fake.shape == (3, 4)  # ceil(10 / 4) steps, fakes cycled
    assert set(real.flat) == set(range(10)) and set(fake.flat) == set(range(7))
    again, _ = epoch_order(10, 7, 4, seed=0, epoch=0)
    other, _ = epoch_order(10, 7, 4, seed=0, epoch=1)
    assert np.array_equal(real, again) and not np.array_equal(real, other)
    r0, f0 = epoch_order(10, 7, 2, seed=0, epoch=0, rank=0, world_size=2)
    r1, f1 = epoch_order(10, 7, 2, seed=0, epoch=0, rank=1, world_size=2)
    assert r0.shape == r1.shape == (3, 2)
    assert not set(r0.flat) & set(r1.flat) and set(r0.flat) | set(r1.flat) == set(range(10))


def test_augmentation_is_seeded_flip_and_blur_jpeg():
    x = torch.from_numpy(np.stack([face_like(i, SIZE) for i in range(8)])).permute(0, 3, 1, 2)
    cfg = TrainConfig(arch="resnet18", depth="layer1")
    a = augment_batch(x, cfg, np.random.default_rng(1))
    b = augment_batch(x, cfg, np.random.default_rng(1))
    assert torch.equal(a, b)
    flipped = [torch.equal(a[i], x[i].flip(-1)) for i in range(8)]
    kept = [torch.equal(a[i], x[i]) for i in range(8)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True)) and any(flipped) and any(kept)
    im = face_like(3, SIZE)
    assert np.array_equal(blur_jpeg(im, np.random.default_rng(0), 0.0, (0, 3), (30, 100)), im)
    changed = blur_jpeg(im, np.random.default_rng(0), 1.0, (2, 3), (30, 40))
    assert changed.shape == im.shape and np.abs(changed.astype(int) - im).mean() > 1


def test_split_fingerprint_depends_on_bytes_not_names(tmp_path):
    for name, seed in (("a.png", 1), ("b.png", 2)):
        Image.fromarray(face_like(seed, SIZE)).save(tmp_path / name)
    fp = split_fingerprint([tmp_path / "a.png", tmp_path / "b.png"])
    (tmp_path / "a.png").rename(tmp_path / "z.png")
    assert split_fingerprint([tmp_path / "b.png", tmp_path / "z.png"]) == fp
    Image.fromarray(face_like(3, SIZE)).save(tmp_path / "b.png")
    assert split_fingerprint([tmp_path / "b.png", tmp_path / "z.png"]) != fp


# --- runs ---------------------------------------------------------------------------------------

def test_learns_a_planted_artifact_and_skips_the_finished_run(planted, tmp_path):
    real, fake = planted
    cfg = TrainConfig(arch="xception", depth="block1", epochs=15, patience=15, batch_size=16)
    res = train(cfg, real, fake, tmp_path / "run", device="cpu", progress=False)
    assert res.best["patch_acc"] >= 0.9 and res.best["image_acc"] >= 0.95
    assert res.best["ap"] >= 0.99
    assert res.history["val_patch_acc"].iloc[0] < 0.9  # it had to learn it
    out = tmp_path / "run"
    for name in ("best.pt", "latest.pt", "config.json", "history.csv", "done.json"):
        assert (out / name).is_file(), name
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["depth"] == "block1" and config["model"]["arch"] == "xception"
    assert config["data"]["fake"]["train"]["count"] == 128
    assert len(config["data"]["real"]["val"]["sha256"]) == 16
    assert config["provenance"]["packages"]["torch"]
    hist = pd.read_csv(out / "history.csv")
    assert len(hist) == len(res.history) and hist["steps"].iloc[0] == 16  # 128 / (16 / 2)
    # best.pt reproduces its validation numbers.
    model = load_classifier(out)
    again = evaluate_split(model, load_split(real, "val")[0], load_split(fake, "val")[0],
                           torch.device("cpu"))
    assert again["patch_acc"] == pytest.approx(res.best["patch_acc"])
    # A rerun finds the finished run and trains nothing.
    rerun = train(cfg, real, fake, out, device="cpu", progress=False)
    assert rerun.skipped and rerun.best == res.best


def test_bf16_training_reaches_the_fp32_result(planted, tmp_path):
    """Mixed precision is the default where a CPU has native bf16 (protocol profiles'
    ``precision="auto"``): the same run in bf16 must learn what fp32 learns."""
    real, fake = planted
    base = TrainConfig(arch="xception", depth="block1", epochs=8, patience=8, batch_size=16)
    fp32 = train(base, real, fake, tmp_path / "fp32", device="cpu", progress=False)
    bf16 = train(replace(base, precision="bf16"), real, fake, tmp_path / "bf16", device="cpu",
                 progress=False)
    assert json.loads((tmp_path / "bf16" / "config.json").read_text())["config"][
        "precision"] == "bf16"
    for res in (fp32, bf16):
        assert res.best["patch_acc"] >= 0.9 and res.best["ap"] >= 0.99
    assert abs(bf16.best["patch_acc"] - fp32.best["patch_acc"]) <= 0.05
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="fp16")


def test_identical_real_and_fake_sets_stay_at_chance(planted, tmp_path):
    real, _ = planted
    twin = tmp_path / "twin"
    shutil.copytree(real, twin)
    cfg = TrainConfig(arch="resnet18", depth="layer1", epochs=3, batch_size=16)
    res = train(cfg, real, twin, tmp_path / "run", device="cpu", progress=False)
    # Every val image is both a real and a fake: whatever the model says, it is right once.
    assert (res.history["val_image_acc"] == 0.5).all()
    assert (res.history["val_patch_acc"] == 0.5).all()
    assert res.history["train_loss"].iloc[-1] > 0.6  # ln 2 = 0.693: nothing to learn


def _state(folder: Path) -> dict[str, torch.Tensor]:
    return torch.load(folder / "latest.pt", weights_only=True)["model"]


class Interrupt(Exception):
    pass


@pytest.mark.parametrize(("event", "key", "stop_at"),
                         [("step", "global_step", 7), ("epoch", "epoch", 2)],
                         ids=["mid-epoch", "after-epoch"])
def test_resume_gives_the_same_result_as_an_uninterrupted_run(planted, tmp_path, event, key,
                                                              stop_at):
    real, fake = planted
    cfg = TrainConfig(arch="resnet18", depth="layer1", epochs=3, patience=3, batch_size=16,
                      limit=32, augment=0.5)  # 4 steps per epoch
    whole = train(cfg, real, fake, tmp_path / "whole", device="cpu", progress=False,
                  checkpoint_every=3)

    def kill(info):  # killed at step 7 it resumes from the checkpoint of step 6
        if info["event"] == event and info[key] == stop_at:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(cfg, real, fake, tmp_path / "cut", device="cpu", progress=False, callback=kill,
              checkpoint_every=3)
    assert not (tmp_path / "cut" / "done.json").exists()
    resumed = train(cfg, real, fake, tmp_path / "cut", device="cpu", progress=False,
                    checkpoint_every=3)
    a, b = _state(tmp_path / "whole"), _state(tmp_path / "cut")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    cols = ["epoch", "steps", "train_loss", "train_patch_acc", "val_loss", "val_patch_acc"]
    pd.testing.assert_frame_equal(whole.history[cols], resumed.history[cols])


def test_a_folder_of_another_run_is_refused_unless_forced(planted, tmp_path, capsys):
    real, fake = planted
    cfg = TrainConfig(arch="resnet18", depth="layer1", epochs=1, batch_size=16, limit=16)
    train(cfg, real, fake, tmp_path / "run", device="cpu", progress=False)
    other = TrainConfig(arch="resnet18", depth="layer1", epochs=1, batch_size=16, limit=16,
                        seed=1)
    with pytest.raises(ValueError, match=r"holds another run \(seed 0 -> 1\)"):
        train(other, real, fake, tmp_path / "run", device="cpu", progress=False)
    res = train(other, real, fake, tmp_path / "run", device="cpu", progress=False, force=True)
    assert not res.skipped
    assert json.loads((tmp_path / "run" / "config.json").read_text())["config"]["seed"] == 1
    # Protocol folders (notebooks, train_grid) replace a run whose config changed, saying what.
    again = replace(other, precision="bf16")
    res = train(again, real, fake, tmp_path / "run", device="cpu", progress=False,
                replace_stale=True)
    assert not res.skipped
    assert "precision 'fp32' -> 'bf16'" in capsys.readouterr().out
    assert json.loads((tmp_path / "run" / "config.json").read_text())["config"][
        "precision"] == "bf16"


def test_mismatched_image_sizes_are_refused(planted, tmp_path):
    real, _ = planted
    for split in ("train", "val"):
        (tmp_path / "big" / split).mkdir(parents=True)
        Image.fromarray(face_like(1, 48)).save(tmp_path / "big" / split / "0.png")
    with pytest.raises(ValueError, match="one size"):
        train(TrainConfig(arch="resnet18", depth="layer1"), real, tmp_path / "big",
              tmp_path / "run", device="cpu", progress=False)


def test_command_line_options_make_the_config():
    parser = argparse.ArgumentParser()
    add_train_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train", "--real", "r", "--fake", "f", "--arch", "xception",
                              "--depth", "3", "--epochs", "4", "--augment", "--batch-size",
                              "8", "--load-size", "128"])
    cfg = config_from_args(args)
    assert (cfg.depth, cfg.epochs, cfg.augment, cfg.batch_size, cfg.load_size) == \
        ("block3", 4, 0.1, 8, 128)
    args = parser.parse_args(["train", "--real", "r", "--fake", "f", "--arch", "resnet18",
                              "--depth", "full", "--augment", "0.5"])
    assert config_from_args(args).depth == "full" and config_from_args(args).augment == 0.5
    assert (config_from_args(args).setting, config_from_args(args).stop_patience) == \
        ("samples", 10)
    args = parser.parse_args(["train", "--real", "r", "--fake", "f", "--depth", "1",
                              "--inversions", "inv", "--load-size", "192", "--crop", "96"])
    cfg = config_from_args(args)
    assert (cfg.setting, cfg.crop, cfg.stop_patience, cfg.epochs) == \
        ("samples_inversions", 96, 50, protocol.profile("default").epochs)  # notebook 02's
    with pytest.raises(ValueError, match="resnet18"):
        config_from_args(parser.parse_args(["train", "--real", "r", "--fake", "f", "--arch",
                                            "resnet18", "--depth", "5"]))


def test_distributed_data_parallel_with_two_gloo_processes(planted, tmp_path):
    real, fake = planted
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
           "2", "-m", "patchforensics", "train", "--real", str(real), "--fake", str(fake),
           "--arch", "xception", "--depth", "1", "--out", str(out), "--epochs", "15",
           "--patience", "15", "--batch-size", "16", "--device", "cpu", "--threads", "1",
           "--load-size", "0", "--precision", "fp32",
           "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "done.json").read_text())
    assert summary["world_size"] == 2
    assert json.loads((out / "config.json").read_text())["world_size"] == 2
    hist = pd.read_csv(out / "history.csv")
    # Each process takes 8 of the 16 images per step, so an epoch has as many steps as alone.
    assert hist["steps"].iloc[0] == 16
    assert summary["best"]["image_acc"] >= 0.9
    assert math.isfinite(summary["params_checksum"])
    assert done.stdout.count("best epoch") == 1  # only rank 0 reports


def test_grid_trains_each_model_once_and_tabulates_it(planted, tmp_path):
    from patchforensics.charts import training_curves, val_accuracy_bars
    from patchforensics.grids import grid_models, train_grid
    from patchforensics.receptive_field import model_table

    real, fake = planted
    models = grid_models(["block1"], [1])
    assert models == [("xception", "block1"), ("resnet18", "layer1")]
    base = TrainConfig(epochs=1, batch_size=16, limit=16)
    first = train_grid(models, real, fake, tmp_path, base=base, device="cpu", progress=False)
    assert list(first.index) == ["xception_block1", "resnet18_layer1"]
    assert first["rf_px"].tolist() == [19, 43] and not first["skipped"].any()
    again = train_grid(models, real, fake, tmp_path, base=base, device="cpu", progress=False)
    assert again["skipped"].all()
    assert again["val_patch_acc"].tolist() == first["val_patch_acc"].tolist()
    fig = training_curves({m: first.loc[m, "run"] for m in first.index})  # as recorded
    assert len(fig.axes) == 4 and all(len(ax.lines) == 2 for ax in fig.axes)
    assert len(val_accuracy_bars(first).axes[0].patches) == 4
    table = model_table(models, SIZE)
    assert table.loc["resnet18_layer1", "map"] == "8x8"
    assert table["fits"].tolist() == [True, False]  # a 43 px field does not fit in 32 px


# --- the paper's protocol: stopping rule, samples + inversions, crops -----------------------------

def _scripted_validation(monkeypatch, patch_accs: list[float]) -> None:
    """Replace validation by a script of per-patch accuracies, one per epoch."""
    import patchforensics.train as tr

    script = iter(patch_accs)

    def fake_eval(*_args, **_kwargs) -> dict[str, float]:
        acc = next(script)
        return {"loss": 1 - acc, "patch_acc": acc, "image_acc": acc, "real_acc": acc,
                "fake_acc": acc, "ap": acc}

    monkeypatch.setattr(tr, "evaluate_split", fake_eval)


def test_stopping_rule_stops_at_perfect_patch_accuracy(planted, tmp_path, monkeypatch):
    real, fake = planted
    _scripted_validation(monkeypatch, [0.6, 0.8, 1.0, 0.5, 0.5])
    cfg = TrainConfig(arch="resnet18", depth="layer1", batch_size=16, limit=16,
                      steps_per_epoch=1)
    res = train(cfg, real, fake, tmp_path / "run", device="cpu", progress=False)
    assert res.stopped == "perfect" and len(res.history) == 3 and res.best_epoch == 3
    assert json.loads((tmp_path / "run" / "done.json").read_text())["epochs"] == 3


def test_stopping_rule_uses_the_original_patience_per_depth(planted, tmp_path, monkeypatch):
    from patchforensics.train_config import original_patience

    assert [original_patience(d) for d in ("block1", "block2", "block3", "full")] == \
        [50, 20, 10, 10]
    real, fake = planted
    # Best at epoch 2, then 10 epochs without a better one: block3's patience (10) stops it.
    _scripted_validation(monkeypatch, [0.6, 0.7] + [0.65] * 20)
    cfg = TrainConfig(arch="xception", depth="block3", batch_size=16, limit=16,
                      steps_per_epoch=1)
    assert cfg.stop_patience == 10
    res = train(cfg, real, fake, tmp_path / "run", device="cpu", progress=False)
    assert res.stopped == "patience" and len(res.history) == 12 and res.best_epoch == 2
    done = json.loads((tmp_path / "run" / "done.json").read_text())
    assert done["patience"] == 10 and done["epochs"] == 12
    # The cap stops earlier when it comes first.
    _scripted_validation(monkeypatch, [0.6, 0.7] + [0.65] * 20)
    capped = TrainConfig(arch="xception", depth="block3", batch_size=16, limit=16,
                         steps_per_epoch=1, epochs=5)
    res = train(capped, real, fake, tmp_path / "capped", device="cpu", progress=False)
    assert res.stopped == "epochs" and len(res.history) == 5


def test_samples_plus_inversions_pairs_each_real_with_its_inversion(planted, tmp_path):
    from patchforensics.batches import pair_index

    real, fake = planted
    inv = tmp_path / "inverted"
    for split in ("train", "val"):  # inversions named like their reals, listed in another order
        (inv / split).mkdir(parents=True)
        for f in sorted((real / split).iterdir(), reverse=True):
            shutil.copy(fake / split / f.name, inv / split / f.name)
    reals = load_split(real, "train")[1]
    idx = pair_index(reals, load_split(inv, "train")[1])
    assert [load_split(inv, "train")[1][k].name for k in idx] == [p.name for p in reals]

    cfg = TrainConfig(arch="resnet18", depth="layer1", epochs=1, batch_size=16, limit=16,
                      setting="samples_inversions")
    with pytest.raises(ValueError, match="needs the inversions folder"):
        train(cfg, real, fake, tmp_path / "run", device="cpu", progress=False)
    res = train(cfg, real, fake, tmp_path / "run", device="cpu", progress=False,
                inversions_dir=inv)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["data"]["inversions"]["train"]["count"] == 16
    assert config["config"]["setting"] == "samples_inversions"
    # An epoch is one pass over the reals: 16 reals / 8 per batch.
    assert res.history["steps"].iloc[0] == 2
    samples_only = TrainConfig(arch="resnet18", depth="layer1", epochs=1, batch_size=16,
                               limit=16)
    with pytest.raises(ValueError, match="inversions given"):
        train(samples_only, real, fake, tmp_path / "other", device="cpu", progress=False,
              inversions_dir=inv)
    (inv / "train" / reals[0].name).unlink()
    with pytest.raises(ValueError, match=reals[0].name):
        train(cfg, real, fake, tmp_path / "run2", device="cpu", progress=False,
              inversions_dir=inv)


def test_random_windows_cut_one_window_per_image_and_crop_training_runs(planted, tmp_path):
    from patchforensics.batches import random_windows

    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    rng = np.random.default_rng(0)
    w = random_windows(x, 4, rng)
    assert w.shape == (2, 3, 4, 4)
    for i in range(2):  # every window is a contiguous slice of its own image
        r0, c0 = [int(v) for v in torch.nonzero(x[i, 0] == w[i, 0, 0, 0])[0]]
        assert torch.equal(w[i], x[i, :, r0: r0 + 4, c0: c0 + 4])
    assert random_windows(x, 8, rng) is x
    with pytest.raises(ValueError, match="crop"):
        TrainConfig(depth="full", crop=32)
    real, fake = planted
    cfg = TrainConfig(arch="xception", depth="block1", epochs=1, batch_size=16, limit=16,
                      load_size=64, crop=40)
    res = train(cfg, real, fake, tmp_path / "run", device="cpu", progress=False)
    assert res.best_epoch == 1 and 0 <= res.best["patch_acc"] <= 1


def test_resized_windows_are_the_windows_of_the_resized_images():
    """The training step cuts its windows before upsampling: the same windows from the same
    draws as ``random_windows(model.resize(x))``, up to float rounding."""
    from patchforensics.batches import random_windows, resized_windows
    from patchforensics.models import build_model

    torch.manual_seed(0)
    x = (torch.rand(64, 3, SIZE, SIZE) * 2 - 1).contiguous(memory_format=torch.channels_last)
    for load, side, tol in ((96, 48, 2e-5), (64, 40, 0.0), (96, 95, 0.0), (48, 20, 0.0)):
        model = build_model(load_size=load)  # 3x (rounding), 2x (exact), 1.5x (falls back)
        rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
        whole = random_windows(model.resize(x), side, rng_a)
        first = resized_windows(model, x, side, rng_b)
        assert first.shape == whole.shape == (64, 3, side, side)
        assert (first - whole).abs().max() <= tol, (load, side)
        assert first.is_contiguous(memory_format=torch.channels_last)
        assert rng_a.random() == rng_b.random()  # the same draws, so runs resume alike


def test_the_optimised_step_reaches_the_whole_image_step_result(tmp_path, monkeypatch):
    """The default training step (windows cut before upsampling, ``batches.resized_windows``)
    must learn what the step before it learned (whole images upsampled 3x, then windows).
    Upsampled 3x, the +-10 checkerboard stays unlearnt for many epochs: +-40 here."""
    import patchforensics.train_step as step_module
    from patchforensics.batches import random_windows

    real = write_planted(tmp_path / "real", 0, 0)
    fake = write_planted(tmp_path / "fake", 50_000, 40)
    cfg = TrainConfig(arch="xception", depth="block1", load_size=96, crop=48, epochs=10,
                      patience=10, batch_size=16)
    fast = train(cfg, real, fake, tmp_path / "fast", device="cpu", progress=False)
    monkeypatch.setattr(step_module, "resized_windows", lambda model, x, side, rng:
                        random_windows(model.resize(x), side, rng))
    whole = train(cfg, real, fake, tmp_path / "whole", device="cpu", progress=False)
    for res in (fast, whole):
        assert res.best["patch_acc"] >= 0.9 and res.best["ap"] >= 0.99
    assert abs(fast.best["patch_acc"] - whole.best["patch_acc"]) <= 0.05
    assert fast.history["val_patch_acc"].iloc[0] < 0.9  # both had to learn it


def test_paired_setting_pairs_each_real_with_the_fake_of_its_name(tmp_path):
    from patchforensics.batches import pair_index

    # A manipulated set: the same contents plus a pattern, named like its reals; the mesh
    # "missed" one face, so one real has no counterpart.
    real = write_planted(tmp_path / "real", 0, 0, n_train=16, n_val=8)
    fake = write_planted(tmp_path / "fake", 0, 10, n_train=16, n_val=8)
    (fake / "train" / "3.png").unlink()
    reals = sorted((real / "train").glob("*.png"))
    fakes = sorted((fake / "train").glob("*.png"))
    index = pair_index(reals, fakes, missing_ok=True)
    named = [fakes[k].name for k in index]
    assert [n for r, n in zip(reals, named, strict=True) if r.name != "3.png"] == \
        [r.name for r in reals if r.name != "3.png"]  # every other real with its own fake
    with pytest.raises(ValueError, match="no inversion"):
        pair_index(reals, fakes)  # the inversions setting still insists on every pair
    cfg = TrainConfig(arch="xception", depth="block1", epochs=1, batch_size=8,
                      setting="paired")
    # What the batches draw from: each real's counterpart is its own manipulated image (the
    # same content plus the pattern), the real without one gets another image of the set.
    from patchforensics import batches
    from patchforensics import train as T
    from patchforensics.distributed import Dist

    prep = T.prepare_run(cfg, real, fake, tmp_path / "probe", Dist(), False, False, None)
    data, _ = T.load_run_data(cfg, prep, False, tmp_path / "probe", Dist(), False)
    r, _, inv = batches.train_images(data, prep.pairs, torch.device("cpu"), cfg)
    gap = (inv.float() - r.float()).abs().amax(dim=(1, 2, 3))
    own = [i for i, f in enumerate(reals) if f.name != "3.png"]
    assert (gap[own] <= 10).all() and gap[reals.index(real / "train" / "3.png")] > 10
    res = train(cfg, real, fake, tmp_path / "run", device="cpu", progress=False)
    record = json.loads((res.out_dir / "config.json").read_text())
    assert record["config"]["setting"] == "paired"
    assert record["data"]["inversions"]["dir"] == record["data"]["fake"]["dir"]
    with pytest.raises(ValueError, match="pairs each real"):
        train(cfg, real, fake, tmp_path / "run2", device="cpu", progress=False,
              inversions_dir=real)
