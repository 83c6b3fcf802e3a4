"""The fake half of a smoke world: counts, parity, seeds, rerun skips, inversions."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest

from patchforensics import audit, embedded, quality
from patchforensics.config import WorldConfig
from patchforensics.generators import get_generator, psnr_uint8, world_generators
from patchforensics.images import list_images, read_image
from patchforensics.preprocess import prepare_generated, resample_history
from patchforensics.world import (
    build_fake_world,
    build_inversion_set,
    inversion_config,
    invert_reals,
    resampling_ablation,
    spectrum_auc,
    split_seed,
    world_config_of,
)

CFG = WorldConfig.smoke_default()
FAKE_SETS = [f"fake/{d}/{g}" for d in embedded.REAL_DATASETS for g in world_generators(d)]
INVERTED_SETS = [f"{k}_inverted" for k in FAKE_SETS if k.split("/")[2] in CFG.invert]


@pytest.fixture(scope="module")
def world(smoke_world: Path) -> tuple[Path, dict]:
    """The session's smoke world with its fake half built: (root, manifest)."""
    return smoke_world, build_fake_world(CFG, progress=False, device="cpu")


def test_fake_counts_match_the_reals_except_the_larger_test_split(world):
    root, manifest = world
    counts = embedded.counts(manifest)
    assert set(FAKE_SETS) | set(INVERTED_SETS) <= set(counts)
    assert len(INVERTED_SETS) == 4  # celeba dcgan/upconv/vae, olivetti dcgan
    for key in FAKE_SETS:
        real = counts[f"real/{key.split('/')[1]}"]
        assert counts[key]["train"] == real["train"] and counts[key]["val"] == real["val"], key
        assert counts[key]["test"] == CFG.test_fakes > real["test"], key
        assert manifest["sets"][key]["real_counts"] == real
        for split in embedded.SPLITS:
            files = list_images(root / key / split)
            assert len(files) == counts[key][split]


def test_inversions_pair_with_the_reals_and_beat_samples(world):
    root, manifest = world
    for key in INVERTED_SETS:
        dataset = key.split("/")[1]
        entry, real = manifest["sets"][key], manifest["sets"][f"real/{dataset}"]
        assert entry["paired_with"] == f"real/{dataset}"
        for split in embedded.SPLITS:
            # the same file names as the reals: sorted listings pair index by index
            assert sorted(entry["splits"][split]["files"]) == sorted(real["splits"][split]["files"])
            assert entry["real_files"][split] == real["splits"][split]["files"]
            inv = quality.load_split(root, key, split)
            reals = quality.load_split(root, f"real/{dataset}", split)
            p = psnr_uint8(inv, reals)
            assert entry["psnr"][split]["mean"] == pytest.approx(p.mean())
            assert entry["psnr"][split]["median"] == pytest.approx(np.median(p))
        # an inversion is closer to its own real than a sample of the same generator is (by
        # little for the smoke GANs, which collapse to near-gray images in 40 steps; clearly
        # for the VAE, whose encoder knows the faces)
        inv = quality.load_split(root, key, "train")
        reals = quality.load_split(root, f"real/{dataset}", "train")
        samples = quality.load_split(root, key.removesuffix("_inverted"), "train")
        margin = psnr_uint8(inv, reals).mean() - psnr_uint8(samples, reals).mean()
        assert margin > (2.0 if "vae" in key else 0.0), (key, margin)


def test_inversions_are_cached_beside_the_generator(world):
    root, manifest = world
    key = INVERTED_SETS[0]
    cache = Path(manifest["sets"][key]["inversion"]["cache"])
    dataset, name = key.split("/")[1], key.split("/")[2].removesuffix("_inverted")
    gen = get_generator(dataset, name, world_root=root, device="cpu", progress=False)
    if not cache.exists():  # another test of the session retrained (and so wiped) the generator
        assert invert_reals(gen, root, inversion_config(CFG), progress=False)[1] == cache
    assert cache.name.startswith("inversions_") and cache.exists()
    assert cache.parent.name == name
    mtime = cache.stat().st_mtime_ns
    set_file = root / key / "val" / sorted(manifest["sets"][key]["splits"]["val"]["files"])[0]
    set_mtime = set_file.stat().st_mtime_ns
    build_inversion_set(CFG, root, gen, force=True, progress=False)  # rewrites the set...
    assert set_file.stat().st_mtime_ns != set_mtime
    assert cache.stat().st_mtime_ns == mtime  # ...but inverts nothing again
    assert embedded.read_manifest(root)["sets"][key]["psnr"] == manifest["sets"][key]["psnr"]


def test_updown_resampling_history():
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert resample_history(arr, "native") is arr
    assert resample_history(arr, "updown").shape == (64, 64, 3)
    down = prepare_generated(arr, 32, "updown")
    assert down.shape == (32, 32, 3) and not np.array_equal(down, arr)
    # the LANCZOS round trip keeps the image but damps pixel-level noise (a low-pass)
    assert np.abs(down.astype(int) - arr).mean() < 30
    assert np.abs(np.diff(down.astype(int), axis=1)).mean() < np.abs(
        np.diff(arr.astype(int), axis=1)).mean()
    with pytest.raises(ValueError, match="resampling history"):
        resample_history(arr, "bilinear")


def test_world_name_and_manifest_record_the_resampling():
    assert WorldConfig().name == "default64" and WorldConfig().fake_resample == "updown"
    assert WorldConfig(fake_resample="native", fake_history="none").name == "default64-native"
    with pytest.raises(ValueError, match="fake_resample"):
        WorldConfig(fake_resample="nearest")


def test_audit_works_with_unequal_counts(world):
    root, manifest = world
    reports = audit.audit_world(root, split="test")
    assert "celeba/dcgan" in reports and "celeba/dcgan_inverted" in reports
    r = reports["celeba/dcgan"]
    assert r.n_fake == CFG.test_fakes and r.n_real == manifest["sets"]["real/celeba"][
        "splits"]["test"]["count"]
    assert r.cheat_auc < 0.7 and not r.findings


def test_fakes_go_through_the_parity_pipeline(world):
    root, manifest = world
    name_re = re.compile(r"^(\w+)_(train|val|test)_(\d{5})\.png$")
    for key in FAKE_SETS:
        gen = key.split("/")[2]
        entry = manifest["sets"][key]
        assert entry["size"] == CFG.size and entry["kind"] == "fake"
        assert entry["resample"] == CFG.fake_resample == "updown"
        # the reals' JPEG history (embedded.source_jpeg_history) where the reals were JPEGs
        jpeg = entry["jpeg"]
        assert (jpeg is not None) == key.startswith("fake/celeba/"), key
        if jpeg is not None:
            assert jpeg == manifest["sets"]["real/celeba"]["jpeg_source"]
            assert (jpeg["height"], jpeg["width"], jpeg["quality"]) == (218, 178, 75)
        assert entry["generator"] == gen and len(entry["weights_sha256"]) == 64
        for split in embedded.SPLITS:
            first = sorted(entry["splits"][split]["files"])[0]
            m = name_re.match(first)
            assert m and m.group(1) == gen and m.group(2) == split and m.group(3) == "00000"
            arr, notes = read_image(root / key / split / first)
            assert arr.shape == (CFG.size, CFG.size, 3) and notes == []
    # external generators are 64 px natively: the pipeline resized them like the reals
    assert manifest["sets"]["fake/celeba/digiface_dcgan"]["native_size"] == 64


def test_gray_dataset_gets_gray_fakes(world):
    root, _ = world
    for gen in world_generators("olivetti"):
        imgs = quality.load_split(root, f"fake/olivetti/{gen}", "val")
        assert quality.colorfulness(imgs) == 0.0, gen
    assert quality.colorfulness(quality.load_split(root, "fake/celeba/dcgan", "val")) > 0


def test_seeds_differ_per_split_and_generator(world):
    _, manifest = world
    seeds = [s for key in FAKE_SETS for s in manifest["sets"][key]["seeds"].values()]
    assert len(set(seeds)) == len(seeds)
    assert manifest["sets"]["fake/celeba/dcgan"]["seeds"]["test"] == split_seed(
        CFG.seed, "celeba", "dcgan", "test")
    root, _ = world
    a = quality.load_split(root, "fake/celeba/gmm", "val")
    b = quality.load_split(root, "fake/celeba/gmm", "test")
    assert not np.array_equal(a, b[: len(a)])


def test_rerun_skips_finished_sets(world):
    root, manifest = world
    files = [root / k / "train" / sorted(manifest["sets"][k]["splits"]["train"]["files"])[0]
             for k in FAKE_SETS]
    mtimes = [f.stat().st_mtime_ns for f in files]
    again = build_fake_world(CFG, progress=False, device="cpu")
    assert [f.stat().st_mtime_ns for f in files] == mtimes
    assert {k: again["sets"][k]["fingerprint"] for k in FAKE_SETS} == {
        k: manifest["sets"][k]["fingerprint"] for k in FAKE_SETS}


def test_a_damaged_set_is_rewritten(world):
    root, manifest = world
    key = "fake/olivetti/gmm"
    victim = root / key / "val" / sorted(manifest["sets"][key]["splits"]["val"]["files"])[0]
    before = victim.read_bytes()
    victim.write_bytes(b"not a png")
    other = root / "fake/celeba/vae/val" / sorted(
        manifest["sets"]["fake/celeba/vae"]["splits"]["val"]["files"])[0]
    other_mtime = other.stat().st_mtime_ns
    time.sleep(0.01)
    build_fake_world(CFG, progress=False, device="cpu")
    assert victim.read_bytes() == before  # same seeds, same weights: the same image again
    assert other.stat().st_mtime_ns == other_mtime


def test_world_config_round_trips(world):
    root, _ = world
    assert world_config_of(root) == CFG


def test_quality_table_has_a_row_per_set(world):
    root, _ = world
    table = quality.quality_table(root)
    fakes = table[~table.generator.str.startswith("real")]
    assert sorted(f"fake/{d}/{g}" for d, g in zip(fakes.dataset, fakes.generator,
                                                    strict=True)) == sorted(FAKE_SETS
                                                                            + INVERTED_SETS)
    assert (table.generator == "real (val)").sum() == 2
    assert table["near_copy_fraction"].between(0, 1).all()
    olivetti = table[table.dataset == "olivetti"]
    assert (olivetti["colorfulness_fake"] == 0).all()


def test_missing_or_mismatched_real_world_is_refused(tmp_path: Path, world):
    with pytest.raises(FileNotFoundError, match="build it first"):
        build_fake_world(CFG, root=tmp_path / "empty", progress=False)
    root, _ = world
    with pytest.raises(ValueError, match="another config"):
        build_fake_world(WorldConfig.smoke_default(seed=1), root=root, progress=False)


def test_spectrum_auc_separates_blur_and_not_noise():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (60, 16, 16, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (60, 16, 16, 3), dtype=np.uint8)
    assert abs(spectrum_auc(a, b) - 0.5) < 0.2  # same distribution: chance
    blurred = np.stack([prepare_generated(x, 16, "updown") for x in b])
    assert spectrum_auc(a, blurred) > 0.95  # the LANCZOS low-pass shows in the spectrum


def test_resampling_ablation_has_a_row_per_generator_and_history(world):
    root, _ = world
    gens = [get_generator("olivetti", "gmm", world_root=root, device="cpu", progress=False)]
    table = resampling_ablation(root, generators=gens)
    assert list(table.history) == ["native", "updown"]  # gray Olivetti: no JPEG row
    assert table.jpeg_grid_auc.isna().all()  # and no chroma to carry a grid
    assert (table.generator == "gmm").all() and (table.n_fake == table.n_real).all()
    assert table.spectrum_auc.between(0, 1).all() and (table.spectrum_distance > 0).all()
    # the two histories really differ (updown is not a no-op on the stored pixels)
    assert table.spectrum_distance_high.iloc[0] != table.spectrum_distance_high.iloc[1]


def test_the_ablation_has_a_jpeg_row_for_jpeg_reals(world):
    root, _ = world
    gens = [get_generator("celeba", "gmm", world_root=root, device="cpu", progress=False)]
    table = resampling_ablation(root, generators=gens).set_index("history")
    assert list(table.index) == ["native", "updown", "jpeg"]
    # the smoke world's 32 px is below jpeg.GRID_MIN_SIDE: no grid is measured there
    # (tests/test_audit.py checks detection on real crops at 64 px)
    assert table.jpeg_grid_auc.isna().all()
    assert table.loc["jpeg", "spectrum_distance"] != table.loc["updown", "spectrum_distance"]
