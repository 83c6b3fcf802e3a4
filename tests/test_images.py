"""Reading images: every bad input gets a clear error naming the file; awkward inputs are
converted correctly; sources are never modified; writes are atomic."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from patchforensics import images
from patchforensics.images import ImageError, read_image

from conftest import CONVERTED, REFUSED, face_like, write_bad_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_bad_corpus(tmp_path_factory.mktemp("bad"))


@pytest.mark.parametrize("kind", REFUSED)
def test_bad_inputs_are_refused_with_the_file_named(corpus, kind):
    before = corpus[kind].read_bytes()
    with pytest.raises(ImageError) as err:
        read_image(corpus[kind])
    assert str(corpus[kind]) in str(err.value)
    assert err.value.problem  # says what is wrong
    assert corpus[kind].read_bytes() == before  # never modified


def test_refusal_messages_say_what_is_wrong(corpus):
    problems = {}
    for kind in REFUSED:
        with pytest.raises(ImageError) as err:
            read_image(corpus[kind])
        problems[kind] = err.value.problem
    assert "empty" in problems["empty"]
    assert "decompression bomb" in problems["bomb"]
    assert "smaller than" in problems["tiny"]
    assert "transparen" in problems["transparent"]
    assert "not an image" in problems["text"]


@pytest.mark.parametrize("kind", CONVERTED)
def test_awkward_inputs_become_8bit_rgb_with_a_note(corpus, kind):
    arr, notes = read_image(corpus[kind])
    assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3
    assert notes, f"{kind} was converted silently"


def test_sixteen_bit_is_scaled_not_clipped(corpus):
    arr, _ = read_image(corpus["sixteen_bit"])
    ramp = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.float64)
    np.testing.assert_array_equal(arr[..., 0], np.round(ramp / 257).astype(np.uint8))
    assert arr.max() == round((64 * 64 - 1) * 16 / 257)  # 255, not stuck at 255 from row 0


def test_exif_rotation_is_applied(corpus):
    arr, notes = read_image(corpus["exif_rotated"])
    assert arr.shape[:2] == (32, 64)  # stored 64 high x 32 wide, displayed rotated
    assert any("EXIF" in n for n in notes)


def test_palette_and_opaque_alpha_keep_the_pixels(corpus):
    rgba, _ = read_image(corpus["rgba_opaque"])
    np.testing.assert_array_equal(rgba, face_like(1, 64))
    pal, _ = read_image(corpus["palette"])
    assert np.abs(pal.astype(int) - face_like(1, 64)).mean() < 8  # adaptive palette, close


def test_plain_rgb_has_no_notes(tmp_path):
    Image.fromarray(face_like(3)).save(tmp_path / "a.png")
    arr, notes = read_image(tmp_path / "a.png")
    assert notes == [] and arr.shape == (48, 48, 3)


def test_list_images_sorted_filtered_and_safe_with_link_loops(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("b.PNG", "a.jpg", "notes.txt", ".hidden.png", "sub/c.png"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub" / "loop").symlink_to(tmp_path, target_is_directory=True)
    assert [p.name for p in images.list_images(tmp_path)] == ["a.jpg", "b.PNG"]
    assert [p.name for p in images.list_images(tmp_path, recursive=True)] == [
        "a.jpg", "b.PNG", "c.png"]
    with pytest.raises(FileNotFoundError, match="no such folder"):
        images.list_images(tmp_path / "missing")


def test_atomic_write_leaves_old_file_or_nothing(tmp_path, monkeypatch):
    target = tmp_path / "out.bin"
    images.atomic_write_bytes(target, b"old")

    def boom(*_a, **_k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        images.atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]  # no temp file left behind
