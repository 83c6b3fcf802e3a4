"""Face parsing and the top-patch analysis: the label map of real faces from the embedded world
(eyes above the mouth, skin inside the face oval, ...), the no-face path, the assignment rule on
hand-made label maps, the true-class cell, the random baseline and the enrichment table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from patchforensics.data import load_folder
from patchforensics.models import ModelConfig
from patchforensics.parts import (
    best_parts,
    enrichment,
    part_counts,
    part_of_patch,
    part_shares,
    top_patches,
    true_class_cell,
)
from patchforensics.receptive_field import receptive_field
from patchforensics.segment import PART_ID, PARTS, FaceParser, colorize, parse_images, parse_set

P = PART_ID


# --- the assignment rule ------------------------------------------------------------------------

def test_part_is_chosen_by_share_of_the_part_not_by_pixel_count():
    lab = np.full((20, 20), P["background"], np.uint8)
    lab[5:15, 5:15] = P["skin"]
    lab[8:10, 8:10] = P["eyes"]  # a small part: 4 px
    # Patch rows 6..12, cols 6..12: 36 skin-ish px (minus 4 eyes) and all 4 eye px.
    assert part_of_patch(lab, slice(6, 12), slice(6, 12)) == P["eyes"]
    # A patch holding only skin and background pixels: skin covers 30/100 of skin in the image,
    # background 0/300 + ... -> skin.
    assert part_of_patch(lab, slice(5, 8), slice(5, 15)) == P["skin"]
    # A corner patch: background only.
    assert part_of_patch(lab, slice(0, 4), slice(0, 4)) == P["background"]
    # A single eye pixel outweighs a skin pixel: 1/4 of the eyes vs 1/116 of the skin.
    lab2 = np.full((10, 20), P["skin"], np.uint8)
    lab2[0:2, 10:12] = P["eyes"]
    lab2[:, 12:] = P["hair"]
    assert part_of_patch(lab2, slice(0, 1), slice(9, 11)) == P["eyes"]


def test_three_tied_parts_share_a_patch_in_thirds():
    lab = np.full((24, 24), P["skin"], np.uint8)
    lab[4:6, 6:18] = P["brows"]
    lab[7:9, 6:18] = P["eyes"]
    lab[10:14, 10:14] = P["nose"]
    lab[18:20, 9:15] = P["mouth"]
    rows, cols = slice(3, 15), slice(5, 19)  # brows, eyes and nose whole (1.0 each)
    assert best_parts(lab, rows, cols) == [P["brows"], P["eyes"], P["nose"]]
    shares = part_shares(lab, rows, cols)
    assert shares[[P["brows"], P["eyes"], P["nose"]]] == pytest.approx([1 / 3] * 3)
    assert shares.sum() == pytest.approx(1.0) and shares[P["mouth"]] == 0
    assert part_of_patch(lab, rows, cols) == P["brows"]  # display name only: lowest id
    # A frame of such patches: the counts go a third to each, and the ties are counted.
    frame = pd.DataFrame({"top_parts": ["brows+eyes+nose"] * 6 + ["mouth"] * 3,
                          "top_tied": [3] * 6 + [1] * 3,
                          "rand_parts": ["skin"] * 6 + ["brows+eyes+nose"] * 3,
                          "rand_tied": [1] * 6 + [3] * 3})
    c = part_counts(frame)
    assert c.loc[["brows", "eyes", "nose"], "top"].tolist() == pytest.approx([2.0] * 3)
    assert c.loc["mouth", "top"] == 3 and c["top"].sum() == pytest.approx(9)
    assert c.loc["eyes", "random"] == pytest.approx(1.0)
    assert (c["top_tied"] == 6).all() and (c["random_tied"] == 3).all()
    t = enrichment(frame, n_boot=300, seed=0)
    assert t.loc["eyes", "enrichment"] == pytest.approx(2.0)
    assert t.loc["eyes", "ci_low"] <= 2.0 <= t.loc["eyes", "ci_high"]
    assert np.isnan(t.loc["mouth", "enrichment"])


def test_true_class_cell_takes_the_argmax_of_the_true_class():
    d = np.array([[0.5, -3.0], [2.0, 1.0]])
    assert true_class_cell(d, 1) == (1, 0)  # fake: highest d
    assert true_class_cell(d, 0) == (0, 1)  # real: lowest d
    with pytest.raises(ValueError):
        true_class_cell(d, 2)


def test_top_patches_random_baseline_and_enrichment():
    rf = receptive_field(ModelConfig("xception", "block1"), 32)
    h, w = rf.output_size
    n = 60
    lab = np.full((n, 32, 32), P["skin"], np.uint8)
    lab[:, :8, :] = P["hair"]
    lab[:, 24:, 12:20] = P["mouth"]  # the mouth sits low and centred
    # The classifier's evidence is always at the mouth: the true-class cell lies over it.
    maps = np.zeros((n, h, w))
    labels = np.r_[np.zeros(n // 2, int), np.ones(n // 2, int)]
    i_mouth, j_mouth = next((i, j) for i in range(h - 1, -1, -1) for j in range(w)
                            if part_of_patch(lab[0], *rf.slices(i, j)) == P["mouth"])
    maps[labels == 1, i_mouth, j_mouth] = 5.0
    maps[labels == 0, i_mouth, j_mouth] = -5.0
    found = np.ones(n, bool)
    found[3] = False
    frame = top_patches(maps, labels, lab, found, rf, seed=0)
    assert len(frame) == n - 1 and 3 not in set(frame["image"])
    assert (frame["top_part"] == "mouth").all() and (frame["top_parts"] == "mouth").all()
    assert (frame["top_tied"] == 1).all() and (frame["rand_tied"] >= 1).all()
    assert (frame["top_i"] == i_mouth).all() and (frame["top_j"] == j_mouth).all()
    # The random baseline is seeded and independent of the maps.
    again = top_patches(np.zeros_like(maps), labels, lab, found, rf, seed=0)
    assert again[["rand_i", "rand_j", "rand_part"]].equals(frame[["rand_i", "rand_j",
                                                                  "rand_part"]])
    assert frame["rand_part"].nunique() >= 2
    counts = part_counts(frame)
    assert list(counts.index) == list(PARTS) and counts["top"].sum() == n - 1
    table = enrichment(frame, n_boot=200, seed=1)
    mouth = table.loc["mouth"]
    assert mouth["enrichment"] == pytest.approx(mouth["top"] / mouth["random"])
    assert mouth["enrichment"] > 1.5 and mouth["ci_low"] > 1.0
    assert mouth["ci_low"] <= mouth["enrichment"] <= mouth["ci_high"]
    assert table.loc["skin", "top"] == 0
    assert np.isnan(table.loc["nose", "enrichment"])  # never drawn at random: no ratio
    # The interval excludes 1, so its inverted test rejects: p below 0.05, at least 1/200.
    assert 1 / 200 <= mouth["p"] < 0.05 and np.isnan(table.loc["nose", "p"])
    from patchforensics.parts import enrichment_table
    fam = enrichment_table({("m", "g1"): frame, ("m", "g2"): frame}, n_boot=200, seed=1)
    got = fam[fam["part"] == "mouth"]
    assert (got["p_holm"] >= got["p"]).all() and (got["p_holm"] <= 1).all()
    assert set(fam["verdict_holm"]) <= {"enriched", "depleted", "no difference"}
    assert (fam.loc[fam["part"] == "nose", "verdict_holm"] == "no difference").all()
    with pytest.raises(ValueError, match="one entry per image"):
        top_patches(maps[:5], labels, lab, found, rf)


# --- the face parser on real faces ---------------------------------------------------------------

@pytest.fixture(scope="module")
def parsed(smoke_world):
    images, files, _ = load_folder(smoke_world / "real/celeba/test")
    labels, found = parse_images(images[:8])
    return images[:8], labels, found


def centroid_row(mask: np.ndarray) -> float:
    return float(np.argwhere(mask)[:, 0].mean())


def test_label_map_of_real_faces_is_anatomically_ordered(parsed):
    images, labels, found = parsed
    assert found.mean() >= 0.75  # the upscaled detector finds most 32 px CelebA faces
    for lab in labels[found]:
        assert lab.shape == images.shape[1:3] and lab.max() < len(PARTS)
        present = set(np.unique(lab))
        for part in ("skin", "eyes", "mouth", "nose", "background"):
            assert P[part] in present, part
        eyes, mouth, nose = (centroid_row(lab == P[p]) for p in ("eyes", "mouth", "nose"))
        assert eyes < nose < mouth  # eyes above nose above mouth
        if P["brows"] in present:
            assert centroid_row(lab == P["brows"]) < mouth
        if P["neck_clothes"] in present:
            assert centroid_row(lab == P["neck_clothes"]) > mouth
        # The face parts sit inside the face: between the face's leftmost and rightmost skin.
        cols = np.argwhere(lab == P["skin"])[:, 1]
        for part in ("eyes", "mouth"):
            c = np.argwhere(lab == P[part])[:, 1]
            assert cols.min() <= c.min() and c.max() <= cols.max(), part


def test_skin_lies_inside_the_face_oval_at_full_resolution(smoke_world):
    images = load_folder(smoke_world / "real/celeba/test", limit=2)[0]
    with FaceParser() as parser:
        for im in images:
            pts = parser.landmarks(im)
            lab = parser.parse(im)
            if pts is None:
                continue
            # The face oval's landmarks, brought back to image px, enclose the skin.
            scale = im.shape[0] / parser.cfg.upscale
            skin = np.argwhere(lab == P["skin"])
            assert skin[:, 0].min() >= pts[:, 1].min() * scale - 1.5
            assert skin[:, 0].max() <= pts[:, 1].max() * scale + 1.5


def test_no_face_is_reported_not_fatal():
    rng = np.random.default_rng(0)
    blank = np.full((3, 32, 32, 3), 128, np.uint8)
    blank[1] = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    labels, found = parse_images(blank)
    assert not found.any() and (labels == 255).all()
    with FaceParser() as parser:
        assert parser.parse(blank[0]) is None and parser.landmarks(blank[0]) is None
    assert colorize(labels[0]).max() == 0  # no-face maps draw black
    with pytest.raises(ValueError, match="uint8"):
        FaceParser().parse(blank[0].astype(np.float32))


def test_parse_set_caches_by_fingerprint(smoke_world):
    labels, found, files = parse_set(smoke_world, "real/olivetti", "test")
    cache = smoke_world / "parsing/real/olivetti/test.npz"
    assert cache.exists() and len(labels) == len(files) == len(found)
    stamp = cache.stat().st_mtime_ns
    again, found2, _ = parse_set(smoke_world, "real/olivetti", "test")
    assert cache.stat().st_mtime_ns == stamp and np.array_equal(again, labels)
    assert found.mean() >= 0.75
    with pytest.raises(FileNotFoundError, match="no set"):
        parse_set(smoke_world, "fake/celeba/nothing", "test")


def test_enrichment_frame_is_a_dataframe_with_ci_columns():
    frame = pd.DataFrame({"top_part": ["eyes"] * 5 + ["skin"] * 5,
                          "rand_part": ["skin"] * 8 + ["eyes"] * 2})
    t = enrichment(frame, n_boot=100)
    assert t.loc["eyes", "enrichment"] == pytest.approx(5 / 2)
    assert t.loc["skin", "enrichment"] == pytest.approx(5 / 8)
    assert {"ci_low", "ci_high", "top_share", "random_share"} <= set(t.columns)


def test_mediapipe_native_log_lines_go_to_the_log_not_the_cell(tmp_path):
    """MediaPipe writes TensorFlow Lite's and absl's log lines to file descriptor 2, which a
    notebook kernel forwards into the cell's output (issue 27): they go to
    results/logs/mediapipe.log, for the parser's whole life (MediaPipe's threads log when they
    get to it), while Python's own stderr still shows; a parser never closed gives fd 2 back
    when it is collected."""
    import os
    import subprocess
    import sys

    code = ("import os, sys, numpy as np\n"
            "from patchforensics.segment import FaceParser\n"
            "with FaceParser() as p:\n"
            "    p.parse(np.zeros((64, 64, 3), np.uint8))\n"
            "    print('python during', file=sys.stderr)\n"
            "FaceParser().parse(np.zeros((64, 64, 3), np.uint8))  # never closed\n"
            "os.write(2, b'fd2 after\\n')\n"
            "print('after', file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PATCHFORENSICS_ROOT": str(tmp_path),
                                            "PATCHFORENSICS_RESULTS": str(tmp_path / "results")})
    assert done.returncode == 0, done.stderr
    log = (tmp_path / "results" / "logs" / "mediapipe.log").read_text()
    assert "XNNPACK" in log and "XNNPACK" not in done.stderr
    assert "inference_feedback_manager" not in done.stderr
    assert "python during" in done.stderr and "python during" not in log
    assert done.stderr.strip().endswith("fd2 after\nafter")  # fd 2 is given back
