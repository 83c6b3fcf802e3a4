"""The parity pipeline: crop/resize geometry, metadata-free PNGs, and folder import."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from patchforensics.images import ImageError, sha256_file
from patchforensics.preprocess import encode_png, import_folder, prepare_array

from conftest import face_like, write_bad_corpus


def test_prepare_array_crops_the_centre_square_and_resizes():
    arr = np.zeros((40, 80, 3), np.uint8)
    arr[:, 20:60] = 200  # the centre square is all 200, the sides 0
    out = prepare_array(arr, 16)
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    assert out.min() == 200  # nothing of the cropped-away sides leaks in


def test_prepare_array_is_identity_at_native_size():
    arr = face_like(5, 32)
    np.testing.assert_array_equal(prepare_array(arr, 32), arr)


def test_prepare_array_rejects_wrong_shapes():
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        prepare_array(np.zeros((8, 8), np.uint8), 4)


def test_png_has_no_metadata_and_is_deterministic():
    arr = face_like(7, 32)
    a, b = encode_png(arr), encode_png(arr.copy())
    assert a == b
    chunks, pos = [], 8
    while pos < len(a):
        length = int.from_bytes(a[pos:pos + 4], "big")
        chunks.append(a[pos + 4:pos + 8].decode())
        pos += 12 + length
    assert set(chunks) == {"IHDR", "IDAT", "IEND"}


@pytest.fixture()
def mixed_folder(tmp_path):
    src = tmp_path / "src"
    write_bad_corpus(src / "bad")
    (src / "train").mkdir()
    for i in range(3):
        Image.fromarray(face_like(i, 40)).save(src / "train" / f"good{i}.jpg", quality=92)
    return src


def _hashes(folder):
    return {p: sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def test_import_skips_bad_files_with_reasons_and_never_touches_sources(mixed_folder, tmp_path):
    before = _hashes(mixed_folder)
    report = import_folder(mixed_folder, tmp_path / "out", 32, progress=False)
    assert _hashes(mixed_folder) == before
    assert report.written == 3 + 6  # 3 good + 6 converted awkward ones
    assert len(report.skipped) == 7
    assert any("bomb" in why for why in report.skipped.values())
    assert all("bad" in path for path in report.skipped)
    out = tmp_path / "out"
    assert sorted(p.name for p in (out / "train").iterdir()) == [
        "good0.png", "good1.png", "good2.png"]
    with Image.open(out / "train" / "good0.png") as im:
        assert (im.format, im.size, im.mode) == ("PNG", (32, 32), "RGB")
    manifest = json.loads((out / "import_manifest.json").read_text())
    assert manifest["size"] == 32 and len(manifest["files"]) == 9


def test_import_fail_mode_names_the_file(mixed_folder, tmp_path):
    with pytest.raises(ImageError) as err:
        import_folder(mixed_folder, tmp_path / "out", 32, on_error="fail", progress=False)
    assert str(mixed_folder / "bad") in str(err.value)


def test_import_rerun_reuses_and_refuses_a_different_import(mixed_folder, tmp_path):
    out = tmp_path / "out"
    import_folder(mixed_folder, out, 32, progress=False)
    again = import_folder(mixed_folder, out, 32, progress=False)
    assert again.written == 0 and again.reused == 9
    with pytest.raises(ValueError, match="already holds an import"):
        import_folder(mixed_folder, out, 64, progress=False)
    with pytest.raises(ValueError, match="inside the source"):
        import_folder(mixed_folder, mixed_folder / "train" / "x", 32, progress=False)


def test_import_reports_name_collisions(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(face_like(1)).save(src / "a.png")
    Image.fromarray(face_like(2)).save(src / "a.jpg")
    report = import_folder(src, tmp_path / "out", 32, progress=False)
    assert report.written == 1 and len(report.skipped) == 1
    assert "same output" in next(iter(report.skipped.values()))
