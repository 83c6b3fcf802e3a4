"""Memorization and trivial-cue statistics on hand-built image sets whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from patchforensics import quality


def faces(n: int, seed: int, size: int = 16) -> np.ndarray:
    """``n`` smooth random RGB images (N x size x size x 3 uint8), each different."""
    rng = np.random.default_rng(seed)
    low = rng.uniform(40, 215, size=(n, 4, 4, 3))
    img = np.kron(low, np.ones((1, size // 4, size // 4, 1)))  # blocky, then a mild blur
    img = (img + np.roll(img, 1, axis=1) + np.roll(img, 1, axis=2)) / 3
    return np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)


def test_nn_distances_match_brute_force():
    q, r = faces(7, 1), faces(11, 2)
    got = quality.nn_distances(q, r, batch=3)
    qf, rf = q.reshape(7, -1) / 255.0, r.reshape(11, -1) / 255.0
    want = np.sqrt(((qf[:, None] - rf[None]) ** 2).sum(-1)).min(1)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)
    assert quality.nn_distances(r[:3], r).max() == pytest.approx(0.0, abs=1e-6)
    knn = quality.knn_distances(q, r, 3, batch=4)
    full = np.sort(np.sqrt(((qf[:, None] - rf[None]) ** 2).sum(-1)), axis=1)
    np.testing.assert_allclose(knn, full[:, :3], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(quality.knn_distances(q, r, 11), full, rtol=1e-9, atol=1e-9)


def test_copied_training_images_are_near_copies():
    train, test = faces(60, 1), faces(40, 2)
    copies = train[:10].copy()
    fresh = faces(10, 3)
    report = quality.memorization(np.concatenate([copies, fresh]), train, test)
    assert report["near_copy_fraction"] == pytest.approx(0.5)  # the 10 copies, none of the rest
    assert report["min_fake_to_train"] == pytest.approx(0.0, abs=1e-6)
    assert quality.memorization(copies, train, test)["median_train_vs_test"] < 1e-6
    assert quality.memorization(copies, train, test)["median_copy_ratio"] < 1e-6
    honest = quality.memorization(fresh, train, test)
    assert honest["near_copy_fraction"] <= 0.1
    assert 0.7 < honest["median_ratio"] < 1.4  # as far from train as new reals are
    assert honest["median_train_vs_test"] > 0.8


def test_blur_is_not_mistaken_for_copying():
    train, test = faces(60, 1), faces(40, 2)
    average = np.repeat(train.mean(0, keepdims=True), 10, axis=0).round().astype(np.uint8)
    report = quality.memorization(average, train, test)
    assert report["median_ratio"] < 0.8  # L2 alone: the average face is "close" to everyone
    assert report["close_fraction"] == 1.0  # ... even closer than any held-out real
    assert report["near_copy_fraction"] == 0.0  # but not much closer to one than to the rest
    assert report["median_copy_ratio"] > 0.8
    assert report["median_train_vs_test"] > 0.8  # and no closer to train than to test


def test_slightly_perturbed_copies_still_count_and_mirrors_too():
    train, test = faces(60, 1), faces(40, 2)
    rng = np.random.default_rng(0)
    noisy = np.clip(train[:8].astype(int) + rng.integers(-2, 3, train[:8].shape), 0, 255)
    report = quality.memorization(noisy.astype(np.uint8), train, test)
    assert report["near_copy_fraction"] == 1.0
    mirrored = train[:8, :, ::-1].copy()
    assert quality.memorization(mirrored, train, test)["near_copy_fraction"] == 1.0
    plain = quality.memorization(mirrored, train, test, mirror=False)
    assert plain["near_copy_fraction"] < 1.0


def test_memorization_rejects_bad_input():
    with pytest.raises(ValueError, match="N x H x W x 3 uint8"):
        quality.memorization(np.zeros((2, 8, 8), np.uint8), faces(3, 1), faces(3, 2))
    with pytest.raises(ValueError, match="differ in size"):
        quality.nn_distances(faces(2, 1, size=16), faces(2, 1, size=8))
    with pytest.raises(ValueError, match="near_copy_quantile"):
        quality.memorization(faces(2, 1), faces(3, 1), faces(3, 2), near_copy_quantile=1.5)


def test_mean_color_and_colorfulness():
    red = np.zeros((2, 8, 8, 3), np.uint8)
    red[..., 0] = 255
    black = np.zeros((3, 8, 8, 3), np.uint8)
    np.testing.assert_allclose(quality.mean_color(red), [1.0, 0.0, 0.0])
    cues = quality.trivial_cues(red, black)
    assert cues["mean_color_distance"] == pytest.approx(1.0)
    gray = np.repeat(faces(4, 1)[..., :1], 3, axis=3)
    assert quality.colorfulness(gray) == 0.0
    assert quality.colorfulness(faces(4, 1)) > 0.02


def test_radial_spectrum_finds_checkerboards_and_blur():
    size = 32
    yy, xx = np.mgrid[:size, :size]
    checker = np.where((yy + xx) % 2 == 0, 200, 50).astype(np.uint8)
    checker = np.repeat(checker[None, ..., None], 3, axis=3)
    spec = quality.radial_spectrum(checker)
    assert spec.shape == (round(size / np.sqrt(2)) + 1,)
    assert spec.argmax() == round(size / np.sqrt(2))  # all the energy in the (16, 16) corner
    stripes = np.repeat(np.where(xx % 2 == 0, 200, 50).astype(np.uint8)[None, ..., None], 3, 3)
    assert quality.radial_spectrum(stripes).argmax() == size // 2  # the Nyquist ring
    sharp = faces(20, 4, size=size)
    blurred = ((sharp.astype(float) + np.roll(sharp, 1, 1) + np.roll(sharp, 1, 2)
                + np.roll(sharp, (1, 1), (1, 2))) / 4).astype(np.uint8)
    s_sharp, s_blur = quality.radial_spectrum(sharp), quality.radial_spectrum(blurred)
    assert s_blur[-4:].mean() < s_sharp[-4:].mean() - 0.5  # blur removes high frequencies
    assert quality.spectrum_distance(sharp, sharp) == 0.0
    high = quality.spectrum_distance(sharp, blurred, high_only=True)
    assert high > quality.spectrum_distance(sharp, faces(20, 5, size=size), high_only=True)
    with pytest.raises(ValueError, match="square"):
        quality.radial_spectrum(np.zeros((1, 8, 16, 3), np.uint8))
