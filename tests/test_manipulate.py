"""The manipulated-face sets (FaceForensics++ analog): masks, pairing, parity, reruns.

The four sets are built once per module on a copy of the smoke world's reals (32 px, 200
CelebA faces; the copy keeps the session's shared world free of these sets).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from patchforensics import audit, embedded
from patchforensics import face_edits as E
from patchforensics import manipulate as M
from patchforensics.config import WorldConfig
from patchforensics.images import read_image
from patchforensics.preprocess import prepare_generated

CFG = WorldConfig.smoke_default()


@pytest.fixture(scope="module")
def reals() -> dict[str, list[tuple[str, np.ndarray]]]:
    """The smoke world's CelebA reals at native size, by split."""
    return embedded.real_splits("celeba", CFG)


@pytest.fixture(scope="module")
def world(smoke_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the smoke world's real half with the four manipulation sets built in it."""
    root = tmp_path_factory.mktemp("manip") / "smoke32"
    shutil.copytree(smoke_world / "real", root / "real")
    manifest = embedded.read_manifest(smoke_world)
    manifest["sets"] = {k: v for k, v in manifest["sets"].items() if k.startswith("real/")}
    (root / "manifest.json").write_text(json.dumps(manifest))
    M.build_manipulation_sets(CFG, root, progress=False, device="cpu")
    return root


@pytest.fixture(scope="module")
def faces(reals) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Three native test faces the mesh finds, and their landmarks."""
    images = [a for _, a in reals["test"][:6]]
    marks = E.detect_landmarks(images)
    found = [(a, m) for a, m in zip(images, marks, strict=True) if m is not None][:3]
    assert len(found) == 3
    return [a for a, _ in found], [m for _, m in found]


# --- one face at native size -------------------------------------------------------------------

def _check_native(target: np.ndarray, fake: np.ndarray, weight: np.ndarray,
                  face: np.ndarray) -> None:
    assert fake.shape == target.shape and fake.dtype == np.uint8
    assert weight.shape == target.shape[:2] and weight.dtype == np.float32
    assert 0 <= weight.min() and weight.max() <= 1
    assert (weight > 0).sum() > 50
    # Outside the blend weight the fake IS the target, pixel for pixel.
    np.testing.assert_array_equal(fake[weight == 0], target[weight == 0])
    changed = np.abs(fake.astype(int) - target).max(2) > 0
    assert changed[weight > 0.5].mean() > 0.3  # and inside it, pixels did change
    grown = cv2.dilate(face.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    assert not (weight > 0)[~grown].any()  # within the face


@pytest.mark.parametrize("method", M.MANIPULATIONS)
def test_each_method_edits_one_face_only_inside_its_weight(faces, method):
    (target, source, _), (t_pts, s_pts, _) = faces
    face = E.face_mask(t_pts, target.shape[:2])
    if method == "faceswap":
        fake, w = E.faceswap(target, t_pts, source, s_pts)
    elif method == "deepfake":  # a stand-in rendering: the source's own centre, blurred
        small = np.asarray(Image.fromarray(source[20:198]).resize((32, 32)))
        rendered = E.render_native(small, source)
        assert rendered.shape == source.shape
        np.testing.assert_array_equal(rendered[:20], source[:20])  # outside the square
        fake, w = E.faceswap(target, t_pts, rendered, s_pts)
    elif method == "reenact":
        fake, w = E.reenact(target, t_pts, s_pts)
    else:
        rendered = np.roll(target, 15, axis=0)  # another picture (colours are matched)
        fake, w = E.neuraltex(target, t_pts, rendered)
        lips = E.hull_mask(t_pts[E.landmark_groups()["lips"]], target.shape[:2])
        assert (w[lips] == 1).all()  # the mouth itself is fully replaced
    _check_native(target, fake, w, face)


def test_reenacting_a_face_with_its_own_expression_changes_nothing(faces):
    (target, *_), (t_pts, *_) = faces
    fake, w = E.reenact(target, t_pts, t_pts)
    np.testing.assert_array_equal(fake, target)
    assert w.max() == 0


def test_similarity_transform_recovers_a_rotation_scale_and_shift():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(20, 2))
    c, s = np.cos(0.3), np.sin(0.3)
    a = 1.7 * np.array([[c, -s], [s, c]])
    got_a, got_t = E.similarity_transform(src, src @ a.T + [3, -2])
    np.testing.assert_allclose(got_a, a, atol=1e-9)
    np.testing.assert_allclose(got_t, [3, -2], atol=1e-9)


def test_warp_maps_are_the_identity_for_an_unmoved_mesh(faces):
    (target, *_), (t_pts, *_) = faces
    map_x, map_y, inside = E.warp_maps(t_pts, t_pts, target.shape[:2])
    yy, xx = np.mgrid[:target.shape[0], :target.shape[1]]
    assert inside.mean() > 0.1
    np.testing.assert_allclose(map_x, xx, atol=1e-3)
    np.testing.assert_allclose(map_y, yy, atol=1e-3)


# --- skipping and pairing ------------------------------------------------------------------------

def test_a_face_the_mesh_cannot_find_gets_no_landmarks(faces):
    flat = np.full((218, 178, 3), 128, np.uint8)
    got = E.detect_landmarks([flat, faces[0][0]])
    assert got[0] is None
    assert got[1] is not None and got[1].shape == (468, 2)


def test_pairing_skips_faces_without_landmarks_and_never_pairs_a_face_with_itself():
    names = [f"{i}.png" for i in range(9)]
    found = [i not in (2, 5) for i in range(9)]
    pairs = M.pair_faces(names, found, seed=3)
    assert set(pairs) == {n for n, ok in zip(names, found, strict=True) if ok}
    assert sorted(pairs.values()) == sorted(pairs)  # each usable face is a source once
    assert all(t != s for t, s in pairs.items())
    assert M.pair_faces(names, found, seed=3) == pairs  # seeded
    assert M.pair_faces(names, found, seed=4) != pairs
    assert M.pair_faces(names[:2], [True, False], seed=0) == {}


# --- the built sets ------------------------------------------------------------------------------

def test_every_set_is_in_the_manifest_with_pairs_skips_and_masks(world):
    manifest = embedded.read_manifest(world)
    real = manifest["sets"]["real/celeba"]
    for method in M.MANIPULATIONS:
        e = manifest["sets"][f"fake/celeba/{method}"]
        assert e["kind"] == "fake" and e["manipulation"] == e["generator"] == method
        assert e["paired_with"] == "real/celeba" and e["resample"] == "native"
        assert (world / f"fake/celeba/{method}" / e["masks"]["file"]).is_file()
        assert (e["renderer"] is not None) == (method in M.LEARNED)
        for split in embedded.SPLITS:
            files = e["splits"][split]["files"]
            n_real = real["splits"][split]["count"]
            assert len(files) + e["skipped"][split] == n_real
            assert set(files) <= set(real["splits"][split]["files"])  # the targets' names
            assert set(e["pairs"][split]) == set(files)
            if method == "neuraltex":
                assert all(t == s for t, s in e["pairs"][split].items())
            else:
                assert all(t != s for t, s in e["pairs"][split].items())
            names, masks = M.load_masks(world, method, split)
            assert sorted(names) == sorted(files)
            assert masks.shape == (len(names), CFG.size, CFG.size)
            assert 0 < e["mask_coverage"][split] < 0.5
            assert e["mask_coverage"][split] == pytest.approx(float(masks.mean()), abs=1e-6)
    # The two swaps share FaceForensics++'s one pairing; the learned ones name their renderer.
    fs, df = (manifest["sets"][f"fake/celeba/{m}"] for m in ("faceswap", "deepfake"))
    assert fs["pairs"] == df["pairs"]
    assert df["renderer"]["generator"] == "vae"
    table = M.manipulation_table(manifest)
    assert list(table.columns) == ["method", "split", "count", "skipped", "mask_coverage"]
    assert len(table) == len(M.MANIPULATIONS) * len(embedded.SPLITS)
    assert list(table.method.unique()) == list(M.MANIPULATIONS)


@pytest.mark.parametrize("method", M.MANIPULATIONS)
def test_masks_lie_inside_the_face_and_the_fake_is_the_real_elsewhere(world, reals, method):
    history = embedded.fake_jpeg_history(CFG, embedded.read_manifest(world)["sets"]["real/celeba"])
    assert history is not None  # the default: manipulated photos get the reals' JPEG history
    names, masks = M.load_masks(world, method, "test")
    native = dict(reals["test"])
    marks = E.detect_landmarks([native[Path(n).stem] for n in names])
    grow = np.ones((5, 5), np.uint8)  # 2 px at the world size: the resize's reach
    for name, mask, pts in zip(names, masks, marks, strict=True):
        assert pts is not None and mask.max() > 0
        face = M.mask_to_world(E.face_mask(pts, native[Path(name).stem].shape[:2])
                               .astype(np.float32), CFG.size) > 0
        assert not (mask > 0)[~cv2.dilate(face.astype(np.uint8), grow).astype(bool)].any()
        # Elsewhere the fake is the real photo re-encoded whole with the reals' JPEG history
        # (as a manipulated video frame is): the real's own round trip, prepared the same way.
        real = prepare_generated(native[Path(name).stem], CFG.size, "native", history)
        fake, _ = read_image(world / f"fake/celeba/{method}/test" / name, min_side=1)
        # 16 native px: a 4:2:0 chroma block that straddles the mask's edge is re-quantised
        reach = 2 * int(np.ceil(16 * CFG.size / min(native[Path(name).stem].shape[:2]))) + 3
        near = cv2.dilate((mask > 0).astype(np.uint8),
                          np.ones((reach, reach), np.uint8)).astype(bool)
        assert np.abs(fake.astype(int) - real)[~near].max(initial=0) <= 1
        assert np.abs(fake.astype(int) - real)[mask > 0.5].max() > 0


@pytest.mark.parametrize("method", M.MANIPULATIONS)
def test_the_sets_pass_the_parity_audit(world, method):
    report = audit.audit(world / "real/celeba/train", world / f"fake/celeba/{method}/train")
    assert report.findings == [], report.summary()


def test_examples_give_target_fake_and_mask(world):
    ex = M.examples(world, "faceswap", "test", n=2)
    names, masks = M.load_masks(world, "faceswap", "test")
    assert [e["name"] for e in ex] == names[:2]
    for e, mask in zip(ex, masks, strict=False):
        assert e["target"].shape == e["fake"].shape == (CFG.size, CFG.size, 3)
        np.testing.assert_array_equal(e["mask"], mask)
        assert e["source"] != e["name"]


def test_a_rerun_skips_and_a_forced_rebuild_is_identical(world):
    key = "fake/celeba/reenact"
    before = embedded.read_manifest(world)["sets"]
    stamps = {f: f.stat().st_mtime_ns for f in (world / key).rglob("*") if f.is_file()}
    M.build_manipulation_sets(CFG, world, progress=False, device="cpu")
    after = embedded.read_manifest(world)["sets"]
    assert after == before  # nothing rewritten, not even the provenance time
    assert {f: f.stat().st_mtime_ns for f in stamps} == stamps
    M.build_manipulation_sets(CFG, world, methods=("reenact",), force=True, progress=False)
    again = embedded.read_manifest(world)["sets"][key]
    assert again["splits"] == before[key]["splits"]  # the same bytes: deterministic
    assert again["masks"]["sha256"] == before[key]["masks"]["sha256"]


def test_a_changed_mask_file_is_refused_and_rebuilt(world):
    f = world / "fake/celeba/neuraltex" / M.MASKS_FILE
    good = f.read_bytes()
    names, masks = M.load_masks(world, "neuraltex", "val")
    f.write_bytes(good[:-10] + b"0123456789")
    with pytest.raises(ValueError, match=str(f)):
        M.load_masks(world, "neuraltex", "val")
    M.build_manipulation_sets(CFG, world, methods=("neuraltex",), progress=False)
    assert f.read_bytes() == good  # the rerun saw the damage and made the same file again
    got_names, got = M.load_masks(world, "neuraltex", "val")
    assert got_names == names and np.array_equal(got, masks)


def test_bad_requests_are_refused(world, tmp_path):
    with pytest.raises(ValueError, match="unknown manipulation"):
        M.build_manipulation_sets(CFG, world, methods=("morph",), progress=False)
    with pytest.raises(FileNotFoundError, match="no real world"):
        M.build_manipulation_sets(CFG, tmp_path, progress=False)
    with pytest.raises(FileNotFoundError, match="no manipulation set"):
        M.load_masks(tmp_path, "faceswap", "test")


def test_the_study_aligns_each_fake_with_its_mask_and_the_real_it_was_made_from(world):
    from patchforensics import manipulation_study as ms_

    ms = ms_.ManipulationStudy(world, world.name, "celeba", "cpu", smoke=True,
                               methods=M.MANIPULATIONS)
    for method in M.MANIPULATIONS:
        fakes, masks, names = ms_.masked_test_split(ms, method)
        reals, index = ms_.real_counterparts(ms, names)
        assert len(fakes) == len(masks) == len(reals) == len(names) > 0
        diff = np.abs(fakes.astype(np.int16) - reals.astype(np.int16)).max(axis=3)
        outside = masks < 1 / 255  # untouched pixels (a resize ring aside) are the real's
        inside = masks >= 0.5
        # aligned: the fakes differ from their reals where the masks say, hardly elsewhere
        assert (diff[outside] > 8).mean() < 0.01, method
        assert (diff[inside] > 2).mean() > 0.05, method
        shifted = np.roll(masks, 1, axis=0) < 1 / 255  # a one-image misalignment shows
        assert (diff[shifted] > 8).mean() > (diff[outside] > 8).mean(), method
        assert [n for n in names] == sorted(names)


# --- the study's comparison (synthetic per-image metrics, no training) ------------------------

def _metric_rows(localizer: str, model: str, manipulation: str, values: np.ndarray,
                 control: str = "none") -> pd.DataFrame:
    return pd.DataFrame({"localizer": localizer, "model": model, "manipulation": manipulation,
                         "images": "manipulated", "control": control,
                         "image": np.arange(len(values)), "pixel_auc": values,
                         "flat": False})


def _standard(n: int, seed: int) -> np.ndarray:
    z = np.random.default_rng(seed).normal(size=n)
    return (z - z.mean()) / z.std(ddof=1)  # mean 0, sd 1 exactly


def test_the_comparison_is_tested_only_where_both_runs_are_adequate_and_holm_adjusted():
    from scipy import stats as sps

    from patchforensics import manipulation_study as ms_
    from patchforensics.compare import UNDER_TRAINED

    n, sd = 50, 0.1
    t_b = 2.25  # raw p about 0.03: decided alone, not after Holm over four manipulations
    shifts = {"clear": 0.3, "borderline": t_b * sd / np.sqrt(n), "inverse": -0.3, "equal": 0.0,
              "untrained": 0.3}
    rows, adequacy = [], []
    for k, (m, shift) in enumerate(shifts.items()):
        base = 0.5 + 0.05 * _standard(n, 100 + k)
        rows += [_metric_rows("gradcam", ms_.PRIMARY_FULL, m, base),
                 _metric_rows("patch", ms_.PRIMARY_PATCH, m, base + shift + sd * _standard(n, k)),
                 # a control's rows must not enter the comparison
                 _metric_rows("patch", ms_.PRIMARY_PATCH, m, base - 0.4, "shuffled_masks")]
        adequacy += [{"manipulation": m, "model": ms_.PRIMARY_PATCH, "adequate": True,
                      "val_auc_ci_low": 0.99},
                     {"manipulation": m, "model": ms_.PRIMARY_FULL,
                      "adequate": m != "untrained", "val_auc_ci_low": 0.4 if m == "untrained"
                      else 0.985}]
    frame = pd.concat(rows, ignore_index=True)
    cmp = ms_.localization_comparison(frame, pd.DataFrame(adequacy)).set_index("manipulation")
    assert set(cmp["verdict"]) <= set(ms_.VERDICTS)
    assert cmp.loc["clear", "verdict"] == "patch better"
    assert cmp.loc["inverse", "verdict"] == "Grad-CAM better"
    assert cmp.loc["equal", "verdict"] == "no difference"
    # the full model failed adequacy: no verdict, no p in the Holm family
    assert cmp.loc["untrained", "verdict"] == UNDER_TRAINED
    assert np.isnan(cmp.loc["untrained", "p_holm"]) and not cmp.loc["untrained", "b_adequate"]
    # paired t over images: the interval and p of the borderline cell
    b = cmp.loc["borderline"]
    assert b["diff"] == pytest.approx(shifts["borderline"]) and b["n"] == n
    assert b["se"] == pytest.approx(sd / np.sqrt(n))
    assert b["p"] == pytest.approx(2 * sps.t.sf(t_b, n - 1)) and b["p"] < 0.05 < b["p_holm"]
    assert b["ci_low"] > 0  # the unadjusted interval excludes 0 ...
    assert b["verdict"] == "no difference"  # ... but Holm over the four tested cells does not
    assert b["p_holm"] == pytest.approx(2 * b["p"])  # the third smallest of four: x 2
    text = ms_.reading(cmp.reset_index())
    assert "**untrained**: not tested: under-trained" in text and "0.400" in text
    assert "**clear**" in text and "**patch better**" in text


def test_localization_helpers_read_the_grid_and_name_the_controls():
    from patchforensics import manipulation_study as ms_

    table = pd.DataFrame({"localizer": ["patch", "gradcam", "gradcam", "random"],
                          "model": ["b2", "full", "full", "-"],
                          "control": ["none", "none", "random_weights", "none"],
                          "grid": ["22x22", "8x8", "7x9", ""]})
    assert ms_.grid_side(table) == 7 and ms_.grid_side(table, "patch") == 22
    with pytest.raises(ValueError, match="no gradient rows"):
        ms_.grid_side(table, "gradient")
    bars = ms_.bar_rows(pd.concat([table, pd.DataFrame({
        "localizer": ["gradient", "gradient"], "model": ["full", "full"],
        "control": ["none", "shuffled_masks"], "grid": ["", ""]})], ignore_index=True))
    # the compared maps with their controls, the gradient without its shuffled row
    assert list(bars["model"]) == ["b2", "full", "full\nuntrained", "full", "-"]
    assert list(bars["localizer"]) == ["patch", "gradcam", "gradcam", "gradient", "random"]
    assert list(table["model"]) == ["b2", "full", "full", "-"]  # the table is not touched
