"""The realism table's pieces on tiny inputs: Frechet distance, PCA space, face mesh, goal."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from patchforensics import realism
from patchforensics.embedded import read_manifest
from patchforensics.generators import REALISM_GOAL
from patchforensics.quality import load_split


def test_frechet_distance_is_zero_for_equal_sets_and_the_mean_shift_squared():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4000, 3))
    assert realism.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    shift = np.array([3.0, 0.0, 4.0])
    # same covariance, means 5 apart: FD = |shift|^2 = 25
    assert realism.frechet_distance(a + shift, a) == pytest.approx(25.0, rel=1e-6)
    # N(0, 4 I) vs N(0, I) in 3 dims: tr(4I + I - 2 * 2I) = 3
    b = rng.standard_normal((20000, 3))
    assert realism.frechet_distance(2 * b, b) == pytest.approx(3.0, rel=0.05)
    with pytest.raises(ValueError, match="N x k"):
        realism.frechet_distance(a, a[:, :2])


def test_pca_basis_is_orthonormal_and_ranks_the_directions_of_variation():
    rng = np.random.default_rng(1)
    base = rng.integers(0, 256, (4, 4, 3)).astype(np.float64)
    # 50 images that vary along one pixel direction only (plus rounding)
    direction = np.zeros((4, 4, 3))
    direction[1, 2, 0] = 1.0
    images = np.clip(base + rng.uniform(-60, 60, (50, 1, 1, 1)) * direction, 0, 255)
    mean, vt = realism.pca_basis(images.round().astype(np.uint8), dim=5)
    assert vt.shape == (5, 48) and mean.shape == (48,)
    np.testing.assert_allclose(vt @ vt.T, np.eye(5), atol=1e-8)
    assert abs(vt[0].reshape(4, 4, 3)[1, 2, 0]) == pytest.approx(1.0, abs=1e-6)


def test_fd_pca_ranks_a_shifted_set_farther_than_a_fresh_draw():
    rng = np.random.default_rng(2)

    def faces(n: int, offset: int = 0) -> np.ndarray:
        x = 128 + offset + rng.normal(0, 30, (n, 1, 1, 1)) + rng.normal(0, 10, (n, 8, 8, 3))
        return np.clip(x, 0, 255).astype(np.uint8)

    train, test = faces(200), faces(100)
    basis = realism.pca_basis(train, dim=8)
    same = realism.fd_pca(faces(100), test, basis)
    brighter = realism.fd_pca(faces(100, offset=40), test, basis)
    assert brighter > 5 * same, (same, brighter)


@pytest.fixture(scope="module")
def faces(smoke_world: Path) -> np.ndarray:
    return load_split(smoke_world, "real/celeba", "test")[:6]


def test_face_mesh_finds_real_faces_not_flat_images(faces):
    flat = np.full((3,) + faces.shape[1:], 128, np.uint8)
    found = realism.face_found(np.concatenate([faces, flat]))
    assert found.dtype == bool and found.shape == (9,)
    assert found[:6].mean() >= 0.8 and not found[6:].any()
    with pytest.raises(ValueError, match="uint8"):
        realism.face_found(faces.astype(np.float32))


def test_set_realism_scores_reals_above_noise(smoke_world: Path):
    train = load_split(smoke_world, "real/celeba", "train")
    test = load_split(smoke_world, "real/celeba", "test")
    val = load_split(smoke_world, "real/celeba", "val")
    basis = realism.pca_basis(train, dim=8)
    noise = np.random.default_rng(3).integers(0, 256, val.shape, dtype=np.uint8)
    real = realism.set_realism(val, np.ones(len(val), bool), train, test, basis)
    fake = realism.set_realism(noise, np.zeros(len(val), bool), train, test, basis)
    assert real["face_found"] == 1.0 and fake["face_found"] == 0.0
    # Wilson intervals: they stay off the observed 1 and 0 instead of collapsing on them
    assert real["face_found_low"] < 1.0 == real["face_found_high"]
    assert fake["face_found_low"] == 0.0 < fake["face_found_high"]
    assert fake["fd_pca"] > 3 * real["fd_pca"]
    assert real["near_copy_fraction"] <= 0.05


def _table(found: dict[str, float]) -> pd.DataFrame:
    rows = [{"dataset": "celeba", "generator": g,
             "kind": "real" if g.startswith("real") else
             ("inversions" if g.endswith("_inverted") else "samples"),
             "trained": g not in ("real (val)", "digiface_dcgan"),
             "n": 10, "face_found": f, "fd_pca": 1.0, "near_copy_fraction": 0.0,
             "median_copy_ratio": 1.0, "psnr_random": 9.0 if g == "dcgan" else 20.0,
             "psnr": 20.0 if g.endswith("_inverted") else np.nan} for g, f in found.items()]
    return realism.with_goal(pd.DataFrame(rows))


def test_goal_flags_only_trained_generators_and_misses_are_recorded(tmp_path, monkeypatch):
    goal = REALISM_GOAL["face_found"]
    table = _table({"real (val)": 1.0, "dcgan": goal - 0.01, "vae": goal,
                    "digiface_dcgan": 0.5, "dcgan_inverted": 0.2})
    by = table.set_index("generator")
    assert by.meets_goal["dcgan"] is False and by.meets_goal["vae"] is True
    assert pd.isna(by.meets_goal["digiface_dcgan"]) and pd.isna(by.meets_goal["real (val)"])
    assert pd.isna(by.meets_goal["dcgan_inverted"])
    # an inversion set is read against its generator's random samples
    assert by.psnr_random["dcgan_inverted"] == 9.0 and pd.isna(by.psnr_random["real (val)"])
    monkeypatch.setenv("PATCHFORENSICS_ROOT", str(tmp_path))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        missed = realism.record_realism(table, tmp_path, reference=False)
    assert missed == ["celeba/dcgan"]
    assert any("celeba/dcgan" in str(w.message) for w in caught)
    assert (tmp_path / "realism.json").exists()
    assert not (tmp_path / "results" / "reference" / "realism.csv").exists()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        realism.record_realism(table, tmp_path, reference=True)
    written = pd.read_csv(tmp_path / "results" / "reference" / "realism.csv")
    assert {"dataset", "generator", "face_found", "fd_pca", "psnr"} <= set(written.columns)


def test_realism_table_of_a_smoke_world(smoke_world: Path, tmp_path, monkeypatch):
    """Every generated set gets a row with the face share, the distance and (inversions) a
    PSNR; the real row is the floor; trained generators are judged against the goal."""
    from patchforensics.config import WorldConfig
    from patchforensics.world import build_fake_world

    build_fake_world(WorldConfig.smoke_default(), progress=False, device="cpu")
    table = realism.realism_table(smoke_world)
    manifest_sets = {k.split("/")[2] for k, e in read_manifest(smoke_world)["sets"].items()
                     if k.startswith("fake/celeba/") and "manipulation" not in e}
    celeba = table[table.dataset == "celeba"].set_index("generator")
    assert set(celeba.index) == manifest_sets | {"real (val)"}
    assert celeba.face_found.between(0, 1).all() and (celeba.fd_pca >= 0).all()
    assert celeba.face_found["real (val)"] >= 0.8
    inv = celeba[celeba.kind == "inversions"]
    assert len(inv) and inv.psnr.notna().all()
    assert celeba[celeba.kind != "inversions"].psnr.isna().all()
    assert (inv.psnr > inv.psnr_random).all(), inv[["psnr", "psnr_random"]]
    judged = celeba[celeba.meets_goal.notna()]
    assert set(judged.index) == {g for g in ("dcgan", "upconv", "vae", "gmm") if g in celeba.index}
    monkeypatch.setenv("PATCHFORENSICS_ROOT", str(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tiny smoke generators miss the goal: expected here
        missed = realism.record_realism(table, smoke_world)
    assert missed == [f"{r.dataset}/{r.generator}" for r in realism.misses(table).itertuples()]
