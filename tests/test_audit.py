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
