"""Statistics of the pre-registered comparison: Wilson and Holm against known values, the
seed + image t-interval's coverage on simulated data (and the old seed bootstrap's
undercoverage), the grouped bootstrap, and the two comparison tables on tiny synthetic
``image_scores`` tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from patchforensics import compare, stats

# --- Wilson, Holm, df ---------------------------------------------------------------------------


def test_wilson_known_values_and_no_collapse():
    lo, hi = stats.wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=5e-4)  # z^2 / (n + z^2)
    lo, hi = stats.wilson_interval(10, 10)
    assert hi == 1.0 and lo == pytest.approx(1 - 0.2775, abs=5e-4)
    # 3 of 10: the textbook Wilson interval (Newcombe 1998) is [0.108, 0.603]
    lo, hi = stats.wilson_interval(3, 10)
    assert (float(lo), float(hi)) == pytest.approx((0.1078, 0.6032), abs=5e-4)
    lo, hi = stats.wilson_interval(np.array([0, 5, 40]), np.array([40, 40, 40]))
    assert np.all(hi - lo > 0.05) and np.all(lo >= 0) and np.all(hi <= 1)
    assert np.isnan(stats.wilson_interval(0, 0)[0])
    with pytest.raises(ValueError):
        stats.wilson_interval(11, 10)


def test_holm_hand_example():
    p = np.array([0.01, 0.04, 0.03, 0.005])
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> max so far 0.06
    np.testing.assert_allclose(stats.holm(p), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(stats.holm([0.5, 0.9]), [1.0, 1.0])  # capped at 1
    out = stats.holm([0.01, np.nan, 0.02])
    assert np.isnan(out[1]) and out[0] == pytest.approx(0.02) and out[2] == pytest.approx(0.02)


def test_holm_matches_statsmodels():
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    p = np.random.default_rng(3).uniform(0, 0.2, 25)
    np.testing.assert_allclose(stats.holm(p), multitest.multipletests(p, method="holm")[1])


def test_welch_df_and_t_interval():
    # equal variances and sizes: df = 2 (n - 1); an infinite-df extra part raises it
    assert stats.welch_df(1.0, 3, 1.0, 3) == pytest.approx(4.0)
    assert stats.welch_df(1.0, 3, 1.0, 3, extra_var=2 / 3) == pytest.approx(4.0 * 4)
    assert stats.welch_df(0.0, 3, 0.0, 3, extra_var=1.0) == np.inf
    lo, hi = stats.t_interval(1.0, 1.0, 2)
    assert hi - 1.0 == pytest.approx(4.303, abs=1e-3)  # 2.2x the normal 1.96
    assert stats.t_interval(0.0, 1.0, np.inf)[1] == pytest.approx(1.96, abs=1e-3)
    assert stats.t_pvalue(1.96, 1.0, np.inf) == pytest.approx(0.05, abs=1e-3)


# --- coverage of the seed + image interval --------------------------------------------------


def _simulate(rng: np.random.Generator, n_seeds: int = 3, n_img: int = 40, n_boot: int = 200,
              sd_seed: float = 1.0) -> tuple[np.ndarray, ...]:
    """One experiment: per seed of models a (true mean 0.5) and b (0), the mean over n_img
    shared test images of a per-image value = model mean + seed effect + model-specific image
    effect + noise; and the same under n_boot image resamples shared by every seed."""
    u = rng.normal(size=n_img)  # image difficulty, shared by every run
    w = stats.group_boot_counts(np.arange(n_img), n_boot, rng) / n_img  # n_boot x n_img

    def model(mu: float, slope: float) -> tuple[np.ndarray, np.ndarray]:
        v = (mu + sd_seed * rng.normal(size=(n_seeds, 1)) + slope * u
             + 0.5 * rng.normal(size=(n_seeds, n_img)))
        return v.mean(1), v @ w.T

    return (*model(0.5, 1.0), *model(0.0, 0.3))


def _old_percentile(a: np.ndarray, a_boot: np.ndarray, b: np.ndarray, b_boot: np.ndarray,
                    rng: np.random.Generator) -> tuple[float, float]:
    # The earlier scheme: seeds resampled with replacement per model, percentile interval.
    n_boot = a_boot.shape[1]
    cols = np.arange(n_boot)
    pa = rng.integers(0, len(a), (n_boot, len(a)))
    pb = rng.integers(0, len(b), (n_boot, len(b)))
    d = a_boot[pa, cols[:, None]].mean(1) - b_boot[pb, cols[:, None]].mean(1)
    return float(np.quantile(d, 0.025)), float(np.quantile(d, 0.975))


def test_seed_image_interval_covers_and_old_bootstrap_does_not():
    rng = np.random.default_rng(0)
    hit_new = hit_old = 0
    n_sim = 400
    for _ in range(n_sim):
        a, a_boot, b, b_boot = _simulate(rng)
        c = stats.seed_image_contrast(a, a_boot, b, b_boot)
        assert c.method == stats.METHOD_SEEDS
        hit_new += c.ci_low <= 0.5 <= c.ci_high
        lo, hi = _old_percentile(a, a_boot, b, b_boot, rng)
        hit_old += lo <= 0.5 <= hi
    assert 0.90 <= hit_new / n_sim <= 0.99
    assert hit_old / n_sim < 0.90  # the complaint, reproduced


def test_image_only_when_one_seed():
    rng = np.random.default_rng(1)
    a, a_boot, b, b_boot = _simulate(rng, n_seeds=1)
    c = stats.seed_image_contrast(a, a_boot, b, b_boot)
    assert c.method == stats.METHOD_IMAGES and c.df == np.inf
    assert c.se == pytest.approx(np.std(a_boot[0] - b_boot[0], ddof=1))


# --- grouped bootstrap ------------------------------------------------------------------------


def test_group_boot_counts_keeps_people_together():
    names = [f"s{p:02d}_{i}.png" for p in (3, 7, 11, 20) for i in range(10)]
    groups = stats.groups_from_names(names)
    assert groups is not None and list(groups[:11]) == [3] * 10 + [7]
    counts = stats.group_boot_counts(groups, 500, np.random.default_rng(0))
    assert counts.shape == (500, 40)
    for p in (3, 7, 11, 20):
        member = counts[:, groups == p]
        assert np.all(member == member[:, :1])  # a person's 10 images share one count
    assert np.all(counts.sum(1) == 40)  # 4 people drawn, 10 images each
    twice = np.argwhere(counts[:, groups == 3][:, 0] == 2)[0, 0]  # person 3 drawn twice:
    assert counts[twice, groups == 3].sum() == 20  # all 10 images count twice
    assert stats.groups_from_names(["dcgan_test_00001.png", "s01_0.png"]) is None


# --- the comparison tables on synthetic image_scores tables ---------------------------------

GENS = ("dcgan", "upconv", "vae", "gmm")


def _scores(shift: dict[str, float], seeds: dict[str, tuple[int, ...]], rng_seed: int = 0,
            n: int = 60) -> pd.DataFrame:
    """An image_scores-shaped table: xception block1 and full on celeba (real + GENS); a fake
    image's score is N(shift[depth] + seed effect, 1), a real's N(0, 1)."""
    rng = np.random.default_rng(rng_seed)
    frames = []
    for depth in ("block1", "full"):
        for sd in seeds[depth]:
            seed_effect = 0.15 * rng.normal()
            for name in ("real", *GENS):
                y = int(name != "real")
                frames.append(pd.DataFrame({
                    "label": f"xception_{depth}", "model": f"xception_{depth}",
                    "arch": "xception", "depth": depth, "seed": sd,
                    "setting": "samples_inversions", "train_set": "celeba/dcgan",
                    "dataset": "celeba", "set": name, "image": np.arange(n), "y": y,
                    "mode": "mean_softmax",
                    "score": rng.normal(size=n) + y * (shift[depth] + seed_effect)}))
    return pd.concat(frames, ignore_index=True)


def test_primary_contrast_patch_better():
    t = compare.primary_contrast(_scores({"block1": 2.0, "full": 0.3},
                                         {"block1": (0, 1, 2), "full": (0, 1, 2)}), n_boot=300)
    assert list(t.columns) == compare.PRIMARY_COLUMNS and len(t) == 1
    row = t.iloc[0]
    assert row["model"] == "xception_block1" and row["full_model"] == "xception_full"
    assert row["generators"] == "upconv,vae,gmm" and row["n_seeds"] == 3
    assert row["auc_patch"] > 0.85 and row["auc_full"] < 0.7
    assert row["method"] == stats.METHOD_SEEDS and 1 < row["df"] < np.inf
    assert row["ci_low"] > 0 and row["verdict"] == "patch better"


def test_a_run_that_fails_adequacy_makes_the_contrast_untested():
    scores = _scores({"block1": 2.0, "full": 0.3}, {"block1": (0, 1, 2), "full": (0, 1, 2)})
    scores["adequate"] = True
    scores["stopped_by"] = "rule"
    late = (scores["depth"] == "full") & (scores["seed"] == 2)
    scores.loc[late, "adequate"] = False
    scores.loc[late, "stopped_by"] = "cap"
    row = compare.primary_contrast(scores, n_boot=200).iloc[0]
    assert row["ci_low"] > 0  # the interval alone would say "patch better" ...
    assert row["verdict"] == compare.UNDER_TRAINED  # ... but a compared run is under-trained
    assert row["adequate_runs"] == "5/6" and row["cap_runs"] == "1/6"
    sec = compare.secondary_comparisons(scores, n_boot=200)
    assert (sec["verdict_holm"] == compare.UNDER_TRAINED).all()


def test_primary_contrast_same_models_no_difference():
    t = compare.primary_contrast(_scores({"block1": 1.0, "full": 1.0},
                                         {"block1": (0, 1, 2), "full": (0, 1, 2)}, rng_seed=5),
                                 n_boot=300)
    row = t.iloc[0]
    assert abs(row["diff"]) < 0.1 and row["ci_low"] < 0 < row["ci_high"]
    assert row["verdict"] == "no difference"


def test_primary_contrast_one_seed_is_image_only():
    t = compare.primary_contrast(_scores({"block1": 2.0, "full": 0.3},
                                         {"block1": (0,), "full": (0,)}), n_boot=300)
    row = t.iloc[0]
    assert row["method"] == stats.METHOD_IMAGES and row["df"] == np.inf
    assert row["n_seeds"] == 1 and row["verdict"] == "patch better"
    with pytest.raises(ValueError, match="digiface"):
        compare.primary_contrast(_scores({"block1": 2.0, "full": 0.3},
                                         {"block1": (0,), "full": (0,)}),
                                 generators=("upconv", "digiface"), n_boot=50)


def test_secondary_comparisons_holm_and_groups():
    scores = _scores({"block1": 2.0, "full": 0.3}, {"block1": (0, 1, 2), "full": (0, 1, 2)})
    t = compare.secondary_comparisons(scores, n_boot=300)
    assert list(t.columns) == compare.SECONDARY_COLUMNS
    assert list(t["generator"]) == [*GENS, "pooled"]
    assert t.loc[t["generator"] == "dcgan", "seen"].item()
    assert np.all(t["p_holm"] >= t["p"]) and np.all(t["p_holm"] <= 1)
    np.testing.assert_allclose(t["p_holm"], stats.holm(t["p"].to_numpy()))
    assert set(t["verdict_holm"]) == {"patch better"}
    pooled = t[t["generator"] == "pooled"].iloc[0]
    primary = compare.primary_contrast(scores, n_boot=300).iloc[0]
    assert pooled["diff"] == pytest.approx(primary["diff"])
    assert pooled["se"] == pytest.approx(primary["se"])
    # families: one per generator, so each Holm family has a single row (p_holm == p)
    per = compare.secondary_comparisons(scores, n_boot=300, family="generator")
    np.testing.assert_allclose(per["p_holm"], per["p"])
    # reals resampled by person (4 people x 15 images): a wider image part
    grouped = compare.primary_contrast(
        scores, n_boot=300, groups={"celeba": np.repeat(np.arange(4), 15)}).iloc[0]
    assert grouped["diff"] == pytest.approx(primary["diff"]) and grouped["se"] > primary["se"]


def test_groups_from_file_column_and_world_folders(tmp_path):
    scores = _scores({"block1": 2.0, "full": 0.3}, {"block1": (0, 1, 2), "full": (0, 1, 2)})
    person = np.repeat(np.arange(4), 15)
    named = scores.assign(file=[f"s{person[i]:02d}_{i % 15}.png" if s == "real"
                                else f"{s}_test_{i:05d}.png"
                                for s, i in zip(scores["set"], scores["image"], strict=True)])
    by_file = compare.primary_contrast(named, n_boot=300).iloc[0]
    by_map = compare.primary_contrast(scores, n_boot=300, groups={"celeba": person}).iloc[0]
    assert by_file["se"] == pytest.approx(by_map["se"])
    # a world laid out on disk: Olivetti-named reals are grouped, generator samples are not
    for key, names in {"real/olivetti": ["s01_0", "s01_1", "s02_0"],
                       "fake/olivetti/gmm": ["gmm_test_00000", "gmm_test_00001"]}.items():
        folder = tmp_path / key / "test"
        folder.mkdir(parents=True)
        for name in names:
            Image.new("RGB", (4, 4)).save(folder / f"{name}.png")
    found = compare.set_groups(tmp_path)
    assert list(found) == [("olivetti", "real")]
    np.testing.assert_array_equal(found[("olivetti", "real")], [1, 1, 2])


def test_boot_weights_resample_people_whole_and_metrics_read_them_from_file_names():
    from patchforensics.evaluate import file_groups
    from patchforensics.stats import boot_weights

    people = np.repeat(np.arange(4), 10)
    w_real, w_fake = boot_weights(40, 30, "olivetti", "gmm", n_boot=50, real_groups=people)
    for k in range(4):  # every image of a person is drawn as often as the person
        assert (w_real[:, people == k] == w_real[:, [10 * k]]).all()
    assert (w_real.sum(1) % 10 == 0).all() and (w_fake.sum(1) == 30).all()
    ungrouped, _ = boot_weights(40, 30, "olivetti", "gmm", n_boot=50)
    assert not (ungrouped[:, :10] == ungrouped[:, [0]]).all()
    rows = pd.DataFrame({"image": np.arange(40), "file": [f"s{p:02d}_{i % 10}.png"
                                                           for i, p in enumerate(people)]})
    assert (file_groups(rows) == people).all()
    assert file_groups(rows.assign(file=[f"{i:06d}.png" for i in range(40)])) is None


def test_seed_image_mean_covers_a_single_models_mean():
    rng = np.random.default_rng(3)
    hits = 0
    for _ in range(300):
        a, a_boot, _, _ = _simulate(rng)
        mean, lo, hi, method = stats.seed_image_mean(a, a_boot)
        assert method == stats.METHOD_SEEDS and lo < mean < hi
        hits += lo <= 0.5 <= hi
    assert 0.90 <= hits / 300 <= 0.995
    _, lo1, hi1, method1 = stats.seed_image_mean(a[:1], a_boot[:1])
    assert method1 == stats.METHOD_IMAGES and hi1 - lo1 < hi - lo


def test_unseen_auc_keeps_only_the_named_generators():
    from patchforensics.evaluate import unseen_auc

    t = _scores({"block1": 2.0, "full": 0.3}, {"block1": (0, 1, 2), "full": (0, 1, 2)})
    t["field_fraction"] = np.where(t["depth"] == "full", 1.0, 0.1)
    every = unseen_auc(t, n_boot=100).set_index("model")
    two = unseen_auc(t, n_boot=100, generators=("upconv", "vae")).set_index("model")
    assert (two["n_unseen"] == 2).all() and (every["n_unseen"] == 3).all()  # dcgan is seen
    assert (every["method"] == stats.METHOD_SEEDS).all()
    assert (every["ci_low"] < every["auc_unseen"]).all()
