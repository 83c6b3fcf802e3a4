"""The spectrum shortcut probe on synthetic images: a checkerboard "GAN" is found from the
spectrum alone, and over-smooth fakes then rank below the reals, as a high-frequency shortcut
predicts; fakes that differ from the reals only in content are not separated."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from patchforensics.probe import probe_reading, probe_table


def smooth_noise(n: int, seed: int, sigma: float = 1.2, size: int = 32) -> np.ndarray:
    """N x size x size x 3 uint8: white noise blurred by ``sigma`` px (a 1/f-ish texture)."""
    rng = np.random.default_rng(seed)
    x = gaussian_filter(rng.normal(0, 1, (n, size, size)), (0, sigma, sigma))
    x = 128 + 40 * x / x.std()
    return np.repeat(np.clip(x, 0, 255)[..., None], 3, -1).astype(np.uint8)


def with_checkerboard(images: np.ndarray, amp: float = 6.0) -> np.ndarray:
    i, j = np.indices(images.shape[1:3])
    board = amp * ((i + j) % 2 * 2 - 1)
    return np.clip(images + board[None, :, :, None], 0, 255).astype(np.uint8)


def test_probe_finds_the_checkerboard_and_ranks_blurry_fakes_below_the_reals():
    real_train, real_test = smooth_noise(150, 0), smooth_noise(100, 1)
    gan_train, gan_test = with_checkerboard(smooth_noise(150, 2)), with_checkerboard(
        smooth_noise(200, 3))
    tests = {"gan": (real_test, gan_test),
             "vae": (real_test, smooth_noise(200, 4, sigma=2.5)),  # over-smooth fakes
             "same": (real_test, smooth_noise(200, 5))}  # new content, the reals' spectrum
    t = probe_table(real_train, gan_train, tests, seen="gan", n_boot=300).set_index("generator")
    assert t.loc["gan", "auc"] > 0.95 and t.loc["gan", "seen"]
    assert t.loc["vae", "auc"] < 0.4 and t.loc["vae", "auc_ci_high"] < 0.5
    assert 0.3 < t.loc["same", "auc"] < 0.7
    assert (t["auc_ci_low"] <= t["auc"]).all() and (t["auc"] <= t["auc_ci_high"]).all()
    assert t.loc["vae", "n_fake"] == 200 and t.loc["vae", "n_real"] == 100
    text = probe_reading(t.reset_index())
    assert "high-frequency shortcut produces" in text and "vae 0." in text


@pytest.mark.parametrize("auc,lo,hi,words", [(0.4, 0.35, 0.45, "shortcut produces"),
                                             (0.45, 0.38, 0.52, "possible, not shown"),
                                             (0.7, 0.6, 0.8, "does not explain")])
def test_probe_reading_follows_the_interval(auc, lo, hi, words):
    import pandas as pd

    t = pd.DataFrame({"generator": ["dcgan", "gmm"], "seen": [True, False], "auc": [1.0, auc],
                      "auc_ci_low": [1.0, lo], "auc_ci_high": [1.0, hi]})
    assert words in probe_reading(t)
