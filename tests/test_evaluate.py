"""Evaluation: metrics against hand-computed cases, the three score modes, a threshold and a
temperature that come only from validation data, calibration of an overconfident toy model,
heatmap geometry, degradations, `evaluate` and `score` on good, mixed and broken inputs, and the
claim that a classifier trained on a planted artifact finds it in another generator's images."""

from __future__ import annotations

import math
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from patchforensics import cli
from patchforensics.checkpoint import calibration, fit_calibration, load_checkpoint, logit_maps
from patchforensics.data import load_folder
from patchforensics.evaluate import (
    evaluate_maps,
    metrics_from_scores,
    patch_vs_full,
    unseen_auc,
)
from patchforensics.images import ImageError
from patchforensics.models import ModelConfig, build_model, mean_fake_probability
from patchforensics.receptive_field import project_map, receptive_field
from patchforensics.robustness import degrade
from patchforensics.score_modes import (
    CALIBRATION_METHOD,
    MODES,
    calibrated_probability,
    fit_temperature,
    log_odds_from_maps,
    n_tied,
    scores_from_maps,
)
from patchforensics.scoring import evaluate, score_files
from patchforensics.stats import (
    binary_metrics,
    boot_counts,
    choose_threshold,
    expected_calibration_error,
    weighted_ap,
    weighted_auc,
)
from patchforensics.train import train
from patchforensics.train_config import TrainConfig
from patchforensics.viz import extremes, heatmap_overlay

from conftest import CONVERTED, REFUSED, face_like, write_bad_corpus, write_planted

pytestmark = pytest.mark.usefixtures("one_thread")


def sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


# --- metrics, modes, thresholds, calibration ------------------------------------------------------

def test_metrics_match_hand_computed_values():
    s = np.array([0.1, 0.4, 0.35, 0.8])
    y = np.array([0, 0, 1, 1])
    m = binary_metrics(s, y, threshold=0.3)
    # Ranked by score: fake, real, fake, real -> precision 1 at recall 1/2, 2/3 at recall 1.
    assert m["ap"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    # Real as positive (the original code): ranked real 0.1, fake 0.35, real 0.4 -> 1 and 2/3.
    assert m["ap_real_positive"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert m["auc"] == pytest.approx(3 / 4)  # fake > real in 3 of the 4 pairs
    assert (m["acc"], m["real_acc"], m["fake_acc"]) == (0.75, 1.0, 0.5)
    assert m["acc_at_threshold"] == 0.75  # "fake if > 0.3": only the real 0.4 is wrong
    assert (m["n_real"], m["n_fake"]) == (2, 2)
    # The two positive-class conventions differ on an asymmetric case.
    s3, y3 = np.array([0.9, 0.6, 0.5, 0.3, 0.1]), np.array([1, 1, 0, 1, 0])
    m3 = binary_metrics(s3, y3)
    assert m3["ap"] == pytest.approx((1 + 1 + 3 / 4) / 3)
    assert m3["ap_real_positive"] == pytest.approx((1 + 2 / 3) / 2)
    with pytest.raises(ValueError, match="at least one real"):
        binary_metrics(np.array([0.2, 0.3]), np.array([1, 1]))


def test_ece_matches_a_hand_computed_value():
    p = np.array([0.9, 0.9, 0.2, 0.6])
    y = np.array([1, 0, 0, 1])
    # Confidences 0.9, 0.9, 0.8, 0.6 with correctness 1, 0, 1, 1, each group in its own bin.
    expected = 2 / 4 * abs(0.5 - 0.9) + 1 / 4 * abs(1 - 0.8) + 1 / 4 * abs(1 - 0.6)
    assert expected_calibration_error(p, y, bins=5) == pytest.approx(expected)
    assert expected_calibration_error(np.array([0.0, 1.0]), np.array([0, 1])) == 0.0


def test_three_modes_on_hand_made_maps():
    maps = np.array([[[2.0, -1.0], [-1.0, -1.0]],
                     [[6.0, -1.0], [-1.0, -1.0]]])
    assert scores_from_maps(maps, "mean_softmax") == pytest.approx(
        [(sig(2) + 3 * sig(-1)) / 4, (sig(6) + 3 * sig(-1)) / 4])
    assert scores_from_maps(maps, "mean_logit") == pytest.approx([sig(-0.25), sig(0.75)])
    assert scores_from_maps(maps, "vote") == pytest.approx([0.25, 0.25])
    # The modes can disagree: image 2 is fake by its mean logit, real by the other two.
    assert scores_from_maps(maps, "mean_logit")[1] > 0.5 > scores_from_maps(maps, "vote")[1]
    assert scores_from_maps(maps, "mean_softmax")[1] < 0.5
    # A temperature softens the logit modes and leaves the vote alone.
    assert scores_from_maps(maps, "mean_logit", 2.0)[1] == pytest.approx(sig(0.375))
    assert scores_from_maps(maps, "vote", 5.0) == pytest.approx([0.25, 0.25])
    with pytest.raises(ValueError, match="mode must be"):
        scores_from_maps(maps, "max")


def test_mean_softmax_of_the_maps_is_the_models_image_score():
    model = build_model(ModelConfig("xception", "block1"), seed=0).eval()
    images = np.stack([face_like(i, 32) for i in range(5)])
    maps = logit_maps(model, images)
    assert maps.shape == (5,) + receptive_field(model, 32).output_size
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        ref = mean_fake_probability(model(x)).numpy()
    assert scores_from_maps(maps, "mean_softmax") == pytest.approx(ref, abs=1e-5)


def test_threshold_is_the_best_validation_split_point():
    s = np.array([0.1, 0.2, 0.3, 0.35, 0.6, 0.7])
    y = np.array([0, 0, 0, 1, 1, 1])
    assert choose_threshold(s, y) == pytest.approx(0.325)
    # Perfectly separated around 0.5 already: 0.5 is kept (ties go to the untuned default).
    assert choose_threshold(np.array([0.1, 0.9]), np.array([0, 1])) == 0.5


def test_calibration_lowers_ece_of_an_overconfident_model():
    rng = np.random.default_rng(0)
    true_logit = rng.normal(0, 1.5, 4000)
    y = (rng.random(4000) < 1 / (1 + np.exp(-true_logit))).astype(int)
    maps = (8.0 * true_logit)[:, None, None] * np.ones((1, 2, 2))  # 8x overconfident
    t = fit_temperature(maps, y, "mean_softmax")
    assert 6.5 < t < 9.5
    raw = scores_from_maps(maps, "mean_softmax")
    calibrated = calibrated_probability(log_odds_from_maps(maps, "mean_softmax"), t)
    before, after = expected_calibration_error(raw, y), expected_calibration_error(calibrated, y)
    assert before > 0.15 and after < 0.03
    cal = fit_calibration(maps[y == 0], maps[y == 1])
    assert cal.ece_val_calibrated["mean_softmax"] < cal.ece_val["mean_softmax"] / 4
    assert cal.temperature["vote"] == 1.0
    assert cal.ece_val_calibrated["vote"] == cal.ece_val["vote"]
    assert cal.method == CALIBRATION_METHOD


def test_calibration_never_changes_which_images_are_more_fake():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 400)
    # Patches of one image disagree (sd 3), so a per-patch temperature would reorder images.
    maps = rng.normal(0, 3, (400, 3, 3)) + 0.8 * y[:, None, None]
    for mode in MODES:
        score = log_odds_from_maps(maps, mode)
        assert calibrated_probability(score, 1.0, mode) == pytest.approx(
            scores_from_maps(maps, mode), abs=1e-12), mode  # T = 1: the raw probability
        for t in (0.3, 4.0):
            p = calibrated_probability(score, t, mode)
            assert ((p >= 0) & (p <= 1)).all()
            assert roc_auc_score(y, p) == roc_auc_score(y, score), (mode, t)
            order = np.argsort(score, kind="stable")
            step_s, step_p = np.diff(score[order]), np.diff(p[order])
            assert (step_p >= 0).all() and (step_p[step_s > 0] > 0).all(), (mode, t)
            if mode != "vote":  # 0.5 stays at score 0
                assert calibrated_probability(np.zeros(1), t, mode)[0] == 0.5
    # The same maps would catch the old per-patch temperature: it reorders mean_softmax images.
    score = log_odds_from_maps(maps, "mean_softmax")
    assert roc_auc_score(y, scores_from_maps(maps, "mean_softmax", 4.0)) != pytest.approx(
        roc_auc_score(y, score), abs=1e-4)
    with pytest.raises(ValueError, match="temperature"):
        calibrated_probability(score, 0.0)


def test_temperature_of_a_separable_validation_split_is_finite_and_inside_its_bounds():
    rng = np.random.default_rng(2)
    for spread in (3.0, 50.0):  # separable, and separable far into saturation
        val_real = rng.normal(-spread, 1, (50, 2, 2))
        val_fake = rng.normal(spread, 1, (50, 2, 2))
        maps, y = np.concatenate([val_real, val_fake]), np.r_[np.zeros(50), np.ones(50)]
        for mode in ("mean_softmax", "mean_logit"):
            score = log_odds_from_maps(maps, mode)
            assert score[y == 0].max() < 0 < score[y == 1].min()  # perfectly separated
            t = fit_temperature(maps, y, mode)
            # Inside log T in [-5, 6], off both ends: the smoothed targets give a true optimum.
            assert np.isfinite(t) and math.exp(-5) * 1.05 < t < math.exp(6) / 1.05, (spread, t)
            p = calibrated_probability(score, t, mode)
            assert 0 < p.min() and p.max() < 1  # no probability pushed to 0 or 1
        assert fit_temperature(maps, y, "vote") == 1.0


def test_evaluate_maps_takes_threshold_and_temperature_from_the_calibration():
    rng = np.random.default_rng(1)
    val_real, val_fake = rng.normal(-1, 1, (50, 2, 2)), rng.normal(1, 1, (50, 2, 2))
    cal = fit_calibration(val_real, val_fake)
    test_real, test_fake = rng.normal(-3, 1, (40, 2, 2)), rng.normal(0.5, 1, (40, 2, 2))
    table = evaluate_maps(test_real, {"g": test_fake}, cal)
    assert list(table["mode"]) == list(MODES)
    for mode in MODES:
        row = table.set_index("mode").loc[mode]
        assert row["threshold"] == cal.threshold[mode]
        assert row["temperature"] == cal.temperature[mode]
        # The test set would choose differently: its reals sit far lower.
        s = scores_from_maps(np.concatenate([test_real, test_fake]), mode)
        y = np.r_[np.zeros(40), np.ones(40)]
        assert choose_threshold(s, y) != pytest.approx(row["threshold"])


# --- heatmaps and degradations ----------------------------------------------------------------

def test_projected_map_lands_on_the_cells_receptive_field():
    rf = receptive_field(ModelConfig("xception", "block1"), 32)
    h, w = rf.output_size
    seen = np.any([rf.mask(i, j) for i in range(h) for j in range(w)], axis=0)
    assert not seen.all()  # block1's unpadded strided stem never sees the last row and column
    flat = project_map(np.full((h, w), 0.3), rf)
    assert flat[seen] == pytest.approx(0.3) and np.isnan(flat[~seen]).all()
    for i, j in ((0, 0), (h // 2, w // 3), (h - 1, w - 1)):
        cells = np.zeros((h, w))
        cells[i, j] = 1.0
        heat = np.nan_to_num(project_map(cells, rf))
        assert np.array_equal(heat > 0, rf.mask(i, j))
    with pytest.raises(ValueError, match="output"):
        project_map(np.zeros((h + 1, w)), rf)
    over = heatmap_overlay(face_like(0, 32), np.zeros((32, 32)), box=rf.box(1, 1), zoom=2)
    assert over.shape == (64, 64, 3)
    top, left = rf.box(1, 1)[:2]
    assert tuple(over[2 * top, 2 * left + 1]) == (255, 220, 0)


def test_extremes_pick_easiest_and_hardest_per_class():
    s = np.array([0.1, 0.9, 0.4, 0.2, 0.95, 0.6])
    y = np.array([0, 0, 0, 1, 1, 1])
    ex = extremes(s, y, k=1)
    assert (ex["easiest real"][0], ex["hardest real"][0]) == (0, 1)
    assert (ex["easiest fake"][0], ex["hardest fake"][0]) == (4, 3)


def test_degradations_keep_shape_and_identity_values_change_nothing():
    images = np.stack([face_like(i, 32) for i in range(3)])
    for kind, value in (("blur", 0.0), ("resize", 1.0)):
        assert np.array_equal(degrade(images, kind, value), images)
    for kind, value in (("jpeg", 30), ("blur", 2.0), ("resize", 0.5)):
        out = degrade(images, kind, value)
        assert out.shape == images.shape and out.dtype == np.uint8
        assert np.abs(out.astype(int) - images).mean() > 1.0, kind
    with pytest.raises(ValueError, match="kind"):
        degrade(images, "noise", 1)


# --- trained checkpoints: evaluate, score, the claim -------------------------------------------

def swap_channels(folder: Path) -> Path:
    """Reverse the colour channels of every PNG below ``folder`` (RGB -> BGR), in place."""
    for f in folder.rglob("*.png"):
        Image.fromarray(np.ascontiguousarray(np.asarray(Image.open(f))[..., ::-1])).save(f)
    return folder


@pytest.fixture(scope="module")
def planted_world(tmp_path_factory) -> dict[str, Path]:
    """Reals; ``gen_a`` = the reals' kind of content + a faint checkerboard (the training
    generator); ``gen_b`` = other colours (channels reversed) + the same checkerboard; ``gen_c``
    = those colours without it."""
    base = tmp_path_factory.mktemp("planted_eval")
    n = dict(n_train=128, n_val=32, n_test=48)
    return {"real": write_planted(base / "real", 0, 0, **n),
            "gen_a": write_planted(base / "gen_a", 50_000, 10, **n),
            "gen_b": swap_channels(write_planted(base / "gen_b", 70_000, 10, **n)),
            "gen_c": swap_channels(write_planted(base / "gen_c", 90_000, 0, **n))}


@pytest.fixture(scope="module")
def planted_run(planted_world, tmp_path_factory) -> Path:
    cfg = TrainConfig(arch="xception", depth="block1", epochs=15, patience=15, batch_size=16)
    out = tmp_path_factory.mktemp("planted_run") / "run"
    res = train(cfg, planted_world["real"], planted_world["gen_a"], out, device="cpu",
                progress=False)
    assert res.best["patch_acc"] >= 0.9
    return out


def test_claim_a_planted_artifact_generalizes_to_a_generator_that_shares_it(planted_world,
                                                                           planted_run):
    w = planted_world
    table = evaluate(planted_run, w["real"] / "test",
                     {g: w[g] / "test" for g in ("gen_a", "gen_b", "gen_c")},
                     modes=["mean_softmax"]).set_index("fake_set")
    assert table.loc["gen_a", "ap"] > 0.95  # the training generator
    assert table.loc["gen_b", "ap"] > 0.9  # new colours, same artifact: caught...
    assert table.loc["gen_b", "fake_acc"] > 0.8
    assert table.loc["gen_c", "ap"] < 0.7  # ...the same colours without it: not caught
    assert table.loc["gen_c", "fake_acc"] < 0.2


def test_calibration_comes_from_the_runs_validation_split_and_is_cached(planted_world,
                                                                        planted_run):
    ck = load_checkpoint(planted_run)
    assert ck.input_size == 32 and ck.train_fake == planted_world["gen_a"]
    cal = calibration(ck)
    assert (planted_run / "calibration.json").exists()
    assert cal.val["n_real"] == 32 and cal.val["fake"].endswith("gen_a/val")
    # Separable validation data (val accuracy 1.0) still gives a finite, moderate temperature.
    assert 0.05 < cal.temperature["mean_softmax"] < 20
    maps_r = logit_maps(ck.model, load_folder(planted_world["real"] / "val")[0])
    maps_f = logit_maps(ck.model, load_folder(planted_world["gen_a"] / "val")[0])
    again = fit_calibration(maps_r, maps_f)
    assert again.threshold == cal.threshold and again.temperature == pytest.approx(
        cal.temperature)
    # Two different test sets see one threshold: it never comes from the test data.
    t1 = evaluate(planted_run, planted_world["real"] / "test",
                  {"b": planted_world["gen_b"] / "test"})
    t2 = evaluate(planted_run, planted_world["real"] / "train",
                  {"c": planted_world["gen_c"] / "train"})
    assert list(t1["threshold"]) == list(t2["threshold"]) == [cal.threshold[m] for m in MODES]
    # The cache is tied to best.pt: other weights refit.
    stale = planted_run.parent / "copy"
    shutil.copytree(planted_run, stale)
    ckpt = torch.load(stale / "best.pt", weights_only=True)
    ckpt["model"]["head.bias"] += torch.tensor([0.0, 3.0])
    torch.save(ckpt, stale / "best.pt")
    refit = calibration(load_checkpoint(stale))
    assert refit.checkpoint_sha256 != cal.checkpoint_sha256
    assert refit.temperature["mean_logit"] != pytest.approx(cal.temperature["mean_logit"])


def test_a_calibration_file_of_another_method_is_refitted(planted_run, tmp_path):
    import json

    run = tmp_path / "run"
    shutil.copytree(planted_run, run)
    ck = load_checkpoint(run)
    cache = run / "calibration.json"
    fitted = calibration(ck)
    assert fitted.method == CALIBRATION_METHOD
    assert json.loads(cache.read_text())["method"] == CALIBRATION_METHOD
    bogus = {**fitted.to_dict(), "temperature": {m: 123.0 for m in MODES}}
    cache.write_text(json.dumps(bogus))  # the current method: trusted as it is
    assert calibration(ck).temperature["mean_logit"] == 123.0
    for method in (None, "patch_logit_temperature"):  # a file from before `method`; another
        old = {k: v for k, v in bogus.items() if k != "method"}
        cache.write_text(json.dumps(old if method is None else {**old, "method": method}))
        refit = calibration(ck)
        assert refit.method == CALIBRATION_METHOD, method
        assert refit.temperature == pytest.approx(fitted.temperature), method
        assert json.loads(cache.read_text())["method"] == CALIBRATION_METHOD  # rewritten


def test_folder_maps_are_cached_per_checkpoint_and_folder_content(planted_world, planted_run,
                                                                  tmp_path):
    from patchforensics.checkpoint import folder_maps

    ck = load_checkpoint(planted_run)
    folder = tmp_path / "set"
    shutil.copytree(planted_world["gen_b"] / "test", folder)
    direct = logit_maps(ck.model, load_folder(folder)[0])
    first = folder_maps(ck, folder)
    np.testing.assert_allclose(first, direct, atol=1e-4)
    calls = []
    again = folder_maps(ck, folder, loader=lambda f: calls.append(f))  # read from the cache
    assert calls == [] and np.array_equal(again, first)
    # A rewritten set is scored afresh: one image replaced by another set's.
    victim = sorted(folder.glob("*.png"))[0]
    shutil.copy(sorted((planted_world["gen_c"] / "test").glob("*.png"))[0], victim)
    changed = folder_maps(ck, folder)
    assert not np.allclose(changed[0], first[0]) and np.allclose(changed[1:], first[1:], atol=1e-4)
    # Other weights (same run folder) are scored afresh too.
    ckpt = torch.load(planted_run / "best.pt", weights_only=True)
    other = tmp_path / "other"
    shutil.copytree(planted_run, other)
    ckpt["model"]["head.bias"] += torch.tensor([0.0, 3.0])
    torch.save(ckpt, other / "best.pt")
    shifted = folder_maps(load_checkpoint(other), folder)
    np.testing.assert_allclose(shifted, changed + 3.0, atol=1e-4)


def test_bf16_scoring_keeps_the_fp32_ranking_of_a_patch_model(planted_world, tmp_path):
    """Patch models trained in bf16 are scored with bf16 features and an fp32 head where the
    CPU has native bf16 (``eval_precision``): the AUC and the order of the images must hold.
    Full-image models stay fp32 (bf16 pooled features tie images: one logit each)."""
    from scipy.stats import spearmanr
    from sklearn.metrics import roc_auc_score

    from patchforensics.checkpoint import eval_precision
    from patchforensics.generators.training import native_bf16
    from patchforensics.score_modes import log_odds_from_maps, n_tied

    cfg = TrainConfig(arch="xception", depth="block1", epochs=3, patience=3, batch_size=16,
                      precision="bf16")
    train(cfg, planted_world["real"], planted_world["gen_a"], tmp_path / "run", device="cpu",
          progress=False)
    ck = load_checkpoint(tmp_path / "run")
    assert ck.precision == "bf16"
    assert eval_precision(ck, "cpu") == ("bf16" if native_bf16("cpu") else "fp32")
    full = load_checkpoint(tmp_path / "run")
    full.model.config = replace(full.model.config, depth="full")  # only the rule is checked
    assert eval_precision(full, "cpu") == "fp32"
    images = np.concatenate([load_folder(planted_world["real"] / "test")[0],
                             load_folder(planted_world["gen_b"] / "test")[0]])
    y = np.r_[np.zeros(48), np.ones(48)]
    scores = {p: log_odds_from_maps(logit_maps(ck.model, images, precision=p))
              for p in ("fp32", "bf16")}
    aucs = {p: roc_auc_score(y, s) for p, s in scores.items()}
    assert abs(aucs["bf16"] - aucs["fp32"]) <= 0.01, aucs
    assert spearmanr(scores["fp32"], scores["bf16"]).statistic > 0.99
    assert n_tied(scores["bf16"]) <= n_tied(scores["fp32"])


def test_evaluate_command_writes_one_row_per_set_and_mode(planted_world, planted_run, tmp_path,
                                                          capsys):
    out = tmp_path / "eval.csv"
    w = planted_world
    rc = cli.main(["evaluate", str(planted_run), "--real-images", str(w["real"] / "test"),
                   "--fake-images", f"b={w['gen_b'] / 'test'}",
                   "--fake-images", f"c={w['gen_c'] / 'test'}", "--out", str(out)])
    assert rc == 0
    table = pd.read_csv(out)
    assert len(table) == 2 * len(MODES)
    assert set(table["fake_set"]) == {"b", "c"}
    for col in ("ap", "auc", "acc", "real_acc", "fake_acc", "acc_at_threshold", "ece",
                "ece_calibrated", "temperature", "ap_real_positive"):
        assert table[col].between(0, 1e9).all(), col
    assert "b " in capsys.readouterr().out
    # User mistakes: one line, exit 2.
    for argv, words in (
            (["--fake-images", "b"], "NAME=DIR"),
            (["--fake-images", f"b={w['real'] / 'test'}"], "is the real folder"),
            (["--fake-images", f"b={tmp_path / 'nope'}"], "no such folder")):
        rc = cli.main(["evaluate", str(planted_run), "--real-images", str(w["real"] / "test"),
                       *argv])
        err = capsys.readouterr().err
        assert rc == 2 and words in err and "Traceback" not in err, err
    rc = cli.main(["evaluate", str(tmp_path / "nothing"), "--real-images", str(w["real"] / "test"),
                   "--fake-images", f"b={w['gen_b'] / 'test'}"])
    assert rc == 2 and "no such checkpoint" in capsys.readouterr().err
    big = tmp_path / "big"
    big.mkdir()
    Image.fromarray(face_like(0, 48)).save(big / "0.png")
    rc = cli.main(["evaluate", str(planted_run), "--real-images", str(w["real"] / "test"),
                   "--fake-images", f"big={big}"])
    assert rc == 2 and "patchforensics import --size 32" in capsys.readouterr().err


def test_score_handles_mixed_and_broken_inputs(planted_world, planted_run, tmp_path, capsys):
    mixed = tmp_path / "in put ü"  # spaces and unicode in the path
    bad = write_bad_corpus(mixed / "corpus")
    Image.fromarray(face_like(5, 96)[:, :72]).save(mixed / "wide.jpg", quality=92)
    prepared = sorted((planted_world["gen_b"] / "test").glob("*.png"))[:3]
    for f in prepared:
        shutil.copy(f, mixed / f"prep_{f.name}")
    skipped = []
    table = score_files(planted_run, [mixed], heatmaps=tmp_path / "heat", progress=False,
                        on_skip=lambda p, why: skipped.append(p.stem))
    assert len(table) == len(bad) + 1 + len(prepared)
    errors = table.set_index(table["path"].map(lambda p: Path(p).stem))["error"]
    for kind in REFUSED:
        assert errors[kind], kind
    for kind in CONVERTED:
        assert errors[kind] == "", kind
    assert sorted(skipped) == sorted(REFUSED)
    good = table[table["error"] == ""]
    assert good["prob_fake"].between(0, 1).all() and good["prob"].between(0, 1).all()
    # Calibrated or not, prob_fake keeps the images in the order of prob.
    s, p = good["prob"].to_numpy(), good["prob_fake"].to_numpy()
    assert ((s[:, None] < s[None, :]) <= (p[:, None] <= p[None, :])).all()
    assert len(list((tmp_path / "heat").rglob("*.heatmap.png"))) == len(good)
    # Boxes are in the original image's pixels: inside the 96 x 72 image's centre square.
    wide = good[good["path"].str.endswith("wide.jpg")].iloc[0]
    assert 12 <= wide["box_top"] < wide["box_bottom"] <= 84
    assert 0 <= wide["box_left"] < wide["box_right"] <= 72
    # A prepared image scores exactly as evaluation scores it (same pipeline, same maps).
    ck = load_checkpoint(planted_run)
    maps = logit_maps(ck.model, load_folder(planted_world["gen_b"] / "test")[0])
    ref = dict(zip([f.name for f in sorted((planted_world["gen_b"] / "test").glob("*.png"))],
                   scores_from_maps(maps), strict=True))
    for f in prepared:
        row = good[good["path"].str.endswith(f"prep_{f.name}")].iloc[0]
        assert row["prob"] == pytest.approx(ref[f.name], abs=1e-6)
    # --strict stops at the first bad file; the command says which, in one line.
    with pytest.raises(ImageError):
        score_files(planted_run, [bad["empty"]], strict=True, progress=False)
    rc = cli.main(["score", str(planted_run), str(bad["text"]), "--strict", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "text.png" in err and "Traceback" not in err
    rc = cli.main(["score", str(planted_run), str(mixed), "--quiet", "--out",
                   str(tmp_path / "s.csv")])
    captured = capsys.readouterr()
    assert rc == 0 and captured.err.count("skipped ") == len(REFUSED)
    assert len(pd.read_csv(tmp_path / "s.csv")) == len(table)
    rc = cli.main(["score", str(planted_run), str(tmp_path / "missing.png"), "--quiet"])
    assert rc == 2 and "no such file" in capsys.readouterr().err


# --- order-keeping scores, bootstrap intervals, patch vs. full, the reading -------------------

def test_log_odds_rank_saturated_images_that_the_clipped_sigmoid_ties():
    maps = np.stack([np.full((3, 3), 70.0), np.full((3, 3), 80.0), np.full((3, 3), -80.0),
                     np.full((3, 3), -70.0)])
    clipped = 1 / (1 + np.exp(-np.clip(maps, -60, 60)))  # the old score: all four saturate
    assert clipped[0].mean() == clipped[1].mean() and clipped[2].mean() == clipped[3].mean()
    for mode in ("mean_softmax", "mean_logit"):
        r = log_odds_from_maps(maps, mode)
        assert r[1] > r[0] > 0 > r[3] > r[2], mode
        assert r[1] - r[0] == pytest.approx(10, abs=1e-6)  # the log-odds themselves
        # The probability view (no clip now) still ties the two fakes: 1.0 in float64.
        assert n_tied(r) == 0 and n_tied(scores_from_maps(maps, mode)) == 2
    # Away from saturation it orders images exactly as the probability does.
    rng = np.random.default_rng(0)
    moderate = rng.normal(0, 2, (200, 3, 4))
    for mode in MODES:
        p, r = scores_from_maps(moderate, mode), log_odds_from_maps(moderate, mode)
        assert np.array_equal(np.argsort(p, kind="stable"), np.argsort(r, kind="stable")), mode
    assert scores_from_maps(moderate[:1], "mean_softmax")[0] == pytest.approx(
        sig(log_odds_from_maps(moderate[:1], "mean_softmax")[0]))
    # The metrics rank on the log-odds: a saturated fake above a less saturated one counts.
    y = np.array([1, 1, 0, 0])
    y2 = np.array([0, 1])  # a real at +70, a fake at +80: only the log-odds separate them
    m = binary_metrics(scores_from_maps(maps[:2], "mean_logit"), y2,
                       rank_scores=log_odds_from_maps(maps[:2], "mean_logit"))
    assert m["auc"] == 1.0
    assert binary_metrics(scores_from_maps(maps[:2], "mean_logit"), y2)["auc"] == 0.5
    assert binary_metrics(scores_from_maps(maps, "mean_logit"), y)["acc"] == 1.0


def test_weighted_auc_and_ap_match_sklearn_with_ties_and_weights():
    from sklearn.metrics import average_precision_score, roc_auc_score

    rng = np.random.default_rng(3)
    real = rng.integers(0, 6, 40).astype(float)  # many ties
    fake = rng.integers(2, 9, 130).astype(float)
    s = np.r_[real, fake]
    y = np.r_[np.zeros(40, int), np.ones(130, int)]
    assert weighted_auc(real, fake)[0] == pytest.approx(roc_auc_score(y, s))
    assert weighted_ap(s, y)[0] == pytest.approx(average_precision_score(y, s))
    w = boot_counts(len(s), 5, rng)
    for b in range(5):
        assert weighted_auc(real, fake, w[b:b + 1, :40], w[b:b + 1, 40:])[0] == pytest.approx(
            roc_auc_score(y, s, sample_weight=w[b]))
        assert weighted_ap(s, y, w[b:b + 1])[0] == pytest.approx(
            average_precision_score(y, s, sample_weight=w[b]))
    assert (w.sum(1) == len(s)).all()


def synthetic_scores(shift: dict[str, float], *, n_real: int = 100, n_fake: int = 500,
                     seeds: int = 1, seed_sd: float = 0.0, rng_seed: int = 0) -> pd.DataFrame:
    """An ``image_scores``-like table: one dataset, reals N(0, 1), two generators whose fakes
    are a shared latent N(0, 1) + each model's ``shift`` (+ a per-seed offset of sd
    ``seed_sd``); ``gen_a`` is the training generator. Model names ``<depth>``; AUC of a
    model on a generator = Phi(shift / sqrt 2)."""
    rng = np.random.default_rng(rng_seed)
    real = rng.normal(0, 1, n_real)
    latent = {g: rng.normal(0, 1, n_fake) for g in ("gen_a", "gen_b")}
    ff = {"block1": 0.1, "block2": 0.22, "full": 1.0}
    rows = []
    for depth, mu in shift.items():
        for sd in range(seeds):
            off = rng.normal(0, seed_sd) if seed_sd else 0.0
            head = {"label": depth, "model": f"xception_{depth}", "arch": "xception",
                    "depth": depth, "rf_px": 19, "field_fraction": ff[depth], "seed": sd,
                    "setting": "samples_inversions", "train_set": "d/gen_a", "dataset": "d",
                    "mode": "mean_softmax", "threshold": 0.5, "temperature": 1.0}
            sets = {"real": real} | {g: z + mu + off for g, z in latent.items()}
            for name, sc in sets.items():
                rows.append(pd.DataFrame({**head, "set": name, "image": np.arange(len(sc)),
                                          "y": int(name != "real"), "score": sc,
                                          "prob": sig_array(sc), "prob_calibrated": sig_array(sc)}))
    return pd.concat(rows, ignore_index=True)


def sig_array(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def true_auc(mu: float) -> float:
    return 0.5 * (1 + math.erf(mu / 2))  # Phi(mu / sqrt 2)


def test_metrics_from_scores_give_intervals_ties_and_unbalanced_counts():
    scores = synthetic_scores({"block1": 1.0, "full": 0.3})
    table = metrics_from_scores(scores, n_boot=400, seed=0)
    assert len(table) == 4 and set(table["generator"]) == {"gen_a", "gen_b"}
    assert (table["n_real"] == 100).all() and (table["n_fake"] == 500).all()
    assert (table["auc_ci_low"] < table["auc"]).all()
    assert (table["auc"] < table["auc_ci_high"]).all()
    assert ((table["auc_ci_high"] - table["auc_ci_low"]) < 0.2).all()
    assert (table["ap_real_positive_ci_low"] <= table["ap_real_positive"]).all()
    assert (table["ap_real_positive"] <= table["ap_real_positive_ci_high"]).all()
    assert (table["n_tied"] == 0).all()
    assert table.set_index(["label", "generator"]).loc[("block1", "gen_a"), "seen"]
    assert {"field_fraction", "setting", "seed"} <= set(table.columns)
    again = metrics_from_scores(scores, n_boot=400, seed=0)  # seeded
    assert again["auc_ci_low"].equals(table["auc_ci_low"])


def test_paired_bootstrap_covers_a_known_difference_and_calls_identical_models_equal():
    big = patch_vs_full(synthetic_scores({"block1": 1.5, "full": 0.5}), n_boot=1000)
    row = big.set_index("generator").loc["gen_b"]
    truth = true_auc(1.5) - true_auc(0.5)
    assert row["ci_low"] <= truth <= row["ci_high"]
    assert row["ci_low"] > 0 and row["verdict"] == "patch better"
    assert row["diff"] == pytest.approx(row["auc_patch"] - row["auc_full"])
    pooled = big.set_index("generator").loc["mean_unseen"]
    assert pooled["diff"] == pytest.approx(row["diff"])  # one unseen generator
    worse = patch_vs_full(synthetic_scores({"block1": 0.2, "full": 1.0}), n_boot=500)
    assert (worse["verdict"] == "full better").all()
    same = patch_vs_full(synthetic_scores({"block1": 0.7, "full": 0.7}), n_boot=500)
    assert (same["diff"] == 0).all() and (same["verdict"] == "no difference").all()
    # A small true difference: the interval covers it in most of 20 replicates.
    small = true_auc(0.6) - true_auc(0.5)
    covered = []
    for rep in range(20):
        r = patch_vs_full(synthetic_scores({"block1": 0.6, "full": 0.5}, rng_seed=100 + rep),
                          n_boot=300, seed=rep).set_index("generator").loc["gen_b"]
        covered.append(r["ci_low"] <= small <= r["ci_high"])
    assert np.mean(covered) >= 0.8
    # Seeds: a per-seed offset widens the interval when the seeds are resampled.
    one = patch_vs_full(synthetic_scores({"block1": 1.0, "full": 0.5}, seeds=3), n_boot=500)
    noisy = patch_vs_full(synthetic_scores({"block1": 1.0, "full": 0.5}, seeds=3, seed_sd=0.3),
                          n_boot=500)
    width = lambda t: float((t["ci_high"] - t["ci_low"]).iloc[0])  # noqa: E731
    assert (one["n_seeds"] == 3).all() and width(noisy) > 1.5 * width(one)


def test_reading_words_verdicts_only_from_intervals():
    from patchforensics.findings import depth_summary, reading

    better = synthetic_scores({"block1": 1.5, "block2": 0.5, "full": 0.5})
    table = metrics_from_scores(better, n_boot=200)
    cmp_ = patch_vs_full(better, n_boot=500)
    summ = unseen_auc(better, n_boot=500)
    assert list(summ["field_fraction"]) == [0.1, 0.22, 1.0]
    assert (summ["ci_low"] < summ["auc_unseen"]).all()
    assert (summ["auc_unseen"] < summ["ci_high"]).all()
    text = reading(table, comparison=cmp_, summary=summ)
    assert "block1 (field 10% of the face): +" in text and "**patch better**" in text
    assert "d/gen_b: patch better: 1, no difference: 1, full better: 0" in text
    assert "does not decide" not in text
    flat = synthetic_scores({"block1": 0.5, "full": 0.5})
    text = reading(metrics_from_scores(flat, n_boot=200), comparison=patch_vs_full(flat,
                                                                                  n_boot=200))
    assert "does not decide" in text and "patch better: 0" in text
    # Without the comparison: per-row intervals, no verdict.
    text = reading(table)
    assert "no verdict" in text and "patch better" not in text
    s = depth_summary(table)
    assert list(s.index) == ["block1", "block2", "full"]
    assert s.loc["block1", "auc_unseen"] == pytest.approx(
        table.set_index(["label", "generator"]).loc[("block1", "gen_b"), "auc"])
    with pytest.raises(ValueError, match="setting"):
        depth_summary(table, setting="samples")


def test_field_fraction_is_relative_to_the_network_input_and_inversions_are_not_test_sets(
        tmp_path):
    import json

    from patchforensics.evaluate import world_sets
    from patchforensics.receptive_field import field_fraction

    ff = [field_fraction(ModelConfig("xception", d, load_size=192), 64)
          for d in ("block1", "block2", "block3", "full")]
    assert ff == pytest.approx([19 / 192, 43 / 192, 91 / 192, 1.0])
    assert field_fraction(ModelConfig("xception", "block3"), 64) == 1.0  # capped
    (tmp_path / "manifest.json").write_text(json.dumps({"sets": {
        k: {} for k in ("real/celeba", "fake/celeba/dcgan", "fake/celeba/dcgan_inverted",
                        "fake/celeba/vae", "fake/olivetti/gmm")}}))
    assert world_sets(tmp_path) == {"celeba": ["dcgan", "vae"], "olivetti": ["gmm"]}


def test_paper_panel_is_drawn_against_field_fraction_with_interval_bars():
    import matplotlib.pyplot as plt

    from patchforensics.charts import ap_by_depth, patch_vs_full_figure
    from patchforensics.findings import paper_ap_by_block

    scores = synthetic_scores({"block1": 1.5, "block2": 1.0, "full": 0.5}, seeds=2)
    table = metrics_from_scores(scores, n_boot=200)
    fig = ap_by_depth(table, paper=paper_ap_by_block())
    ours, theirs = fig.axes[0], fig.axes[-1]
    assert list(ours.lines[0].get_xdata()) == [0.1, 0.22, 1.0]
    mean_b1 = table[(table["label"] == "block1") & (table["generator"] == "gen_a")]
    assert ours.lines[0].get_ydata()[0] == pytest.approx(mean_b1["ap_real_positive"].mean())
    assert len(ours.collections) == 2 * 2  # a bar set per (test set, seed)
    assert list(theirs.lines[0].get_xdata()) == pytest.approx(
        [19 / 299, 43 / 299, 91 / 299, 187 / 299, 283 / 299, 1.0])
    plt.close(fig)
    fig = patch_vs_full_figure(patch_vs_full(scores, n_boot=200))
    assert len(fig.axes[0].containers) == 2  # block1 and block2 against the full model
    plt.close(fig)
