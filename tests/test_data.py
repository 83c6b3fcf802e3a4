"""Folder datasets and the widget explorer (callbacks tested without a browser)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from patchforensics.data import RealFakeDataset, load_folder, to_tensor, to_uint8
from patchforensics.images import ImageError

from conftest import face_like


def _folder(path, n, size=32, start=0):
    path.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(face_like(start + i, size)).save(path / f"{i:03d}.png")
    return path


def test_tensor_round_trip_and_range():
    imgs = np.stack([face_like(i, 16) for i in range(3)])
    x = to_tensor(imgs)
    assert x.shape == (3, 3, 16, 16) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    np.testing.assert_array_equal(to_uint8(x), imgs)


def test_real_fake_dataset_labels(tmp_path):
    ds = RealFakeDataset(_folder(tmp_path / "r", 4), _folder(tmp_path / "f", 3, start=50))
    assert len(ds) == 7
    assert ds.labels.tolist() == [0, 0, 0, 0, 1, 1, 1]
    img, label = ds[5]
    assert img.shape == (3, 32, 32) and label == 1


def test_mismatched_sizes_and_same_folder_are_refused(tmp_path):
    real = _folder(tmp_path / "r", 2)
    big = _folder(tmp_path / "f", 2, size=40)
    with pytest.raises(ValueError, match="40x40"):
        RealFakeDataset(real, big)
    with pytest.raises(ValueError, match="same folder"):
        RealFakeDataset(real, real)
    Image.fromarray(face_like(9, 40)).save(real / "odd.png")
    with pytest.raises(ValueError, match="odd.png"):
        load_folder(real)


def test_bad_file_fails_or_is_skipped(tmp_path):
    folder = _folder(tmp_path / "r", 2)
    (folder / "broken.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(ImageError, match="broken.png"):
        load_folder(folder)
    images, files, skipped = load_folder(folder, on_error="skip")
    assert len(images) == 2 and list(skipped) == [str(folder / "broken.png")]


def test_grid_explorer_redraws_when_the_slider_moves(tmp_path):
    from patchforensics.widgets import grid_explorer

    box = grid_explorer({"a": _folder(tmp_path / "a", 6), "b": _folder(tmp_path / "b", 6, 16)},
                        n=4)
    (pick, seed), out = box.children[0].children, box.children[1]
    first = out.outputs
    assert len(first) == 1 and "image/png" in first[0]["data"]
    seed.value = 3
    assert out.outputs[0]["data"]["image/png"] != first[0]["data"]["image/png"]
    pick.value = "b"
    assert len(out.outputs) == 1
