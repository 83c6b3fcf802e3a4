"""The parity audit: true positives on planted leaks, quiet on properly prepared pairs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageFilter

from patchforensics import audit as au
from patchforensics.cli import main
from patchforensics.preprocess import write_prepared

from conftest import face_like


@pytest.fixture(scope="module")
def reals(tmp_path_factory):
    """40 prepared 'real' images at 32 px, from 64 px sources."""
    folder = tmp_path_factory.mktemp("reals")
    for i in range(40):
        write_prepared(face_like(i, 64), folder / f"r{i:03d}.png", 32)
    return folder


@pytest.fixture(scope="module")
def fakes(tmp_path_factory):
    """40 'fakes' of a toy generator (other content, blurred), through the SAME pipeline."""
    folder = tmp_path_factory.mktemp("fakes")
    for i in range(40):
        img = Image.fromarray(face_like(1000 + i, 64)).filter(ImageFilter.GaussianBlur(2))
        write_prepared(np.asarray(img), folder / f"f{i:03d}.png", 32)
    return folder


def test_quiet_on_reals_vs_fakes_prepared_identically(reals, fakes):
    report = au.audit(reals, fakes)
    assert report.clean, report.summary()
    assert report.cheat_auc == 0.5
    table = report.frame().set_index("fact")
    assert not table.loc["file_size", "finding"]  # blurred fakes compress better: not a finding


def test_quiet_on_two_splits_of_the_real_world(smoke_world):
    report = au.audit(smoke_world / "real/celeba/train", smoke_world / "real/olivetti/test")
    assert report.clean, report.summary()


@pytest.mark.parametrize("leak,fact", [("jpeg", "format"), ("size", "size"), ("mode", "mode")])
def test_flags_a_planted_leak(reals, tmp_path, leak, fact):
    leaky = au.make_leaky_copy(reals, tmp_path / leak, leak)
    report = au.audit(reals, leaky)
    assert not report.clean
    assert any(f.startswith(fact) for f in report.findings), report.summary()
    assert report.cheat_auc >= 0.95


def test_flags_a_partial_leak_but_not_one_odd_file(reals, tmp_path):
    half = tmp_path / "half"
    half.mkdir()
    files = sorted(reals.iterdir())
    for i, f in enumerate(files):
        with Image.open(f) as im:
            if i % 2:
                im.save(half / (f.stem + ".jpg"), quality=90)
            else:
                im.save(half / f.name)
    assert not au.audit(reals, half).clean  # half the fakes are JPEG: AUC ~0.75
    one = tmp_path / "one"
    au.make_leaky_copy(reals, one, "none")
    with Image.open(one / files[0].name) as im:
        im.save(one / (files[0].stem + ".jpg"), quality=90)
    (one / files[0].name).unlink()
    assert au.audit(reals, one).clean  # one JPEG among 40 does not separate the sets


def test_jpeg_quality_estimate(tmp_path):
    for q in (50, 75, 95):
        Image.fromarray(face_like(1, 32)).save(tmp_path / f"q{q}.jpg", quality=q)
        assert abs(au.inspect_file(tmp_path / f"q{q}.jpg").jpeg_quality - q) <= 1


def test_unreadable_files_are_listed_not_fatal(reals, tmp_path):
    folder = tmp_path / "withbad"
    au.make_leaky_copy(reals, folder, "none")
    (folder / "broken.png").write_text("not an image")
    report = au.audit(reals, folder)
    assert list(report.unreadable) == [str(folder / "broken.png")]
    assert report.clean


def test_empty_or_missing_folder_is_a_clear_error(reals, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no image files"):
        au.audit(reals, tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="no such folder"):
        au.audit(reals, tmp_path / "missing")


def test_cli_strict_exit_codes_and_json(reals, fakes, tmp_path, capsys):
    assert main(["audit", str(reals), str(fakes), "--strict"]) == 0
    leaky = au.make_leaky_copy(reals, tmp_path / "jpeg", "jpeg")
    assert main(["audit", str(reals), str(leaky), "--strict", "--json"]) == 1
    out = capsys.readouterr().out
    payload = json.loads(out[out.index("{"):])
    assert payload["clean"] is False and payload["n_fake"] == 40
    assert main(["audit", str(reals), str(tmp_path / "nope")]) == 2
    assert "no such folder" in capsys.readouterr().err


# --- the JPEG block grid (issue 23) ---------------------------------------------------------------

GRID_FACES = 40  # real CelebA crops a side; with and without the history never overlap


@pytest.fixture(scope="module")
def grid_sets(tmp_path_factory):
    """The issue's pair from real CelebA crops: the world's 64 px reals upsampled to the native
    frame, with (``jpeg``) and without (``none``) the reals' JPEG round trip, both cropped and
    LANCZOS'd to 64 px; ``jpeg2``: other faces with the same JPEG history; ``blur_jpeg`` and
    ``blur_none``: those other faces blurred (as a VAE's are) before the same two histories."""
    from PIL import ImageFilter

    from patchforensics.embedded import load_celeba, source_jpeg_history
    from patchforensics.jpeg import jpeg_round_trip, render_native
    from patchforensics.preprocess import prepare_array

    history = source_jpeg_history("celeba")
    faces = [arr for _, arr in load_celeba(limit=2 * GRID_FACES)]
    names = ("jpeg", "none", "jpeg2", "blur_jpeg", "blur_none")
    folders = {k: tmp_path_factory.mktemp(k) for k in names}

    def both(small, jpeg_key, none_key, name):
        frame = render_native(small, history.height, history.width)
        write_prepared(prepare_array(jpeg_round_trip(frame, history), 64),
                       folders[jpeg_key] / name, 64)
        if none_key:
            write_prepared(prepare_array(frame, 64), folders[none_key] / name, 64)

    for i, arr in enumerate(faces):
        small = prepare_array(arr, 64)
        if i < GRID_FACES:
            both(small, "jpeg", "none", f"{i:03d}.png")
        else:
            both(small, "jpeg2", None, f"{i:03d}.png")
            blurred = np.asarray(Image.fromarray(small).filter(ImageFilter.GaussianBlur(1.0)))
            both(blurred, "blur_jpeg", "blur_none", f"{i:03d}.png")
    return folders


def grid_row(report):
    return report.frame().set_index("fact").loc["jpeg_grid"]


def test_flags_a_jpeg_history_mismatch_by_its_grid(grid_sets):
    report = au.audit(grid_sets["none"], grid_sets["jpeg"])
    grid = [f for f in report.findings if f.startswith("jpeg_grid")]
    assert grid and "JPEG block grid" in grid[0], report.summary()
    assert grid_row(report).auc >= 0.9
    # the images are PNGs of one size on both sides: only the grid tells them apart
    assert [f.split(":")[0] for f in report.findings] == ["jpeg_grid"]
    row = au.grid_frame({"pair": report}).loc["pair"]
    assert (row.lacking_real, row.lacking_fake, row.n_fake) == (1.0, 0.0, GRID_FACES)
    assert row.median_gain_real > au.GRID_MISSING > row.median_gain_fake and row.finding


def test_quiet_on_two_sets_with_the_same_jpeg_history(grid_sets):
    report = au.audit(grid_sets["jpeg"], grid_sets["jpeg2"])
    assert report.clean, report.summary()
    assert grid_row(report).auc < 0.6


def test_grid_check_does_not_follow_content(grid_sets):
    """Blurred faces carry a much weaker grid after the same JPEG step than sharp ones (the
    grid's amplitude alone separated them at AUC ~0.93 and flagged the default world's VAE and
    GMM); the gain compares each image with itself, so the same history passes, sharp or not,
    and a missing history is still flagged on blurred faces."""
    same = au.audit(grid_sets["jpeg"], grid_sets["blur_jpeg"])
    assert same.clean and grid_row(same).auc < 0.6, same.summary()
    missing = au.audit(grid_sets["jpeg"], grid_sets["blur_none"])
    assert [f.split(":")[0] for f in missing.findings] == ["jpeg_grid"], missing.summary()


def test_grid_gain_is_near_zero_with_the_history_and_large_without(grid_sets):
    from patchforensics.jpeg import block_grid_score, ijg_history

    def gains(folder):
        return np.array([au.grid_gain(np.asarray(Image.open(f).convert("RGB")), ijg_history())
                         for f in sorted(folder.iterdir())])

    with_history, without = gains(grid_sets["jpeg"]), gains(grid_sets["none"])
    assert np.all(with_history < au.GRID_MISSING) and np.all(without > au.GRID_MISSING)
    assert abs(np.median(with_history)) < 0.05 < 0.2 < np.median(without)
    # phase-locked: the frame the blocks are looked for in matters (half a block off: lost)
    face = np.asarray(Image.open(sorted(grid_sets["jpeg"].iterdir())[0]).convert("RGB"))
    assert np.isnan(au.grid_gain(face[:40, :40], ijg_history()))  # under 48 px: not measurable
    right = np.median([block_grid_score(np.asarray(Image.open(f).convert("RGB")), (218, 178))
                       for f in sorted(grid_sets["jpeg"].iterdir())])
    wrong = np.median([block_grid_score(np.asarray(Image.open(f).convert("RGB")), (226, 178))
                       for f in sorted(grid_sets["jpeg"].iterdir())])
    assert wrong < right


def test_ijg_history_is_the_celeba_reals_history():
    from patchforensics.embedded import source_jpeg_history
    from patchforensics.jpeg import ijg_history

    read, made = source_jpeg_history("celeba"), ijg_history()
    assert (made.tables, made.quality, made.subsampling) == (read.tables, read.quality,
                                                             read.subsampling)
    assert (made.height, made.width) == (read.height, read.width)


def test_cli_strict_fails_on_the_issue_pair(grid_sets, capsys):
    assert main(["audit", str(grid_sets["none"]), str(grid_sets["jpeg"]), "--strict"]) == 1
    assert "JPEG block grid" in capsys.readouterr().out
    assert main(["audit", str(grid_sets["jpeg"]), str(grid_sets["jpeg2"]), "--strict"]) == 0
