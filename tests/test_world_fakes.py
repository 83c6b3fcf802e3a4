"""The fake half of a smoke world: counts equal to the reals, parity, seeds, rerun skips."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest

from patchforensics import embedded, quality
from patchforensics.config import WorldConfig
from patchforensics.generators import world_generators
from patchforensics.images import list_images, read_image
from patchforensics.world import build_fake_world, split_seed, world_config_of

CFG = WorldConfig.smoke_default()
FAKE_SETS = [f"fake/{d}/{g}" for d in embedded.REAL_DATASETS for g in world_generators(d)]


@pytest.fixture(scope="module")
def world(smoke_world: Path) -> tuple[Path, dict]:
    """The session's smoke world with its fake half built: (root, manifest)."""
    return smoke_world, build_fake_world(CFG, progress=False, device="cpu")


def test_every_fake_split_has_the_real_count(world):
    root, manifest = world
    counts = embedded.counts(manifest)
    assert set(FAKE_SETS) <= set(counts)
    for key in FAKE_SETS:
        dataset = key.split("/")[1]
        assert counts[key] == counts[f"real/{dataset}"], key
        for split in embedded.SPLITS:
            files = list_images(root / key / split)
            assert len(files) == counts[key][split]


def test_fakes_go_through_the_parity_pipeline(world):
    root, manifest = world
    name_re = re.compile(r"^(\w+)_(train|val|test)_(\d{5})\.png$")
    for key in FAKE_SETS:
        gen = key.split("/")[2]
        entry = manifest["sets"][key]
        assert entry["size"] == CFG.size and entry["kind"] == "fake"
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
                                                    strict=True)) == sorted(FAKE_SETS)
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
