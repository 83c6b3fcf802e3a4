"""Folder datasets of real and fake images, validated when loaded.

The embedded world and ``patchforensics import`` write prepared PNGs (``preprocess``); this module
loads such folders into memory (they are small: a 64 px image is 12 KiB as uint8) and checks
that every image can be read and that all share one size, so a wrong file fails here with its
name rather than deep inside training. Labels: 0 = real, 1 = fake (fake is the positive class).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .images import ImageError, list_images, read_image

REAL, FAKE = 0, 1


def load_folder(folder: str | os.PathLike, *, on_error: str = "fail", limit: int | None = None,
                recursive: bool = False) -> tuple[np.ndarray, list[Path], dict[str, str]]:
    """Load every image of a folder of prepared images.

    Returns ``(images, files, skipped)``: images N x S x S x 3 uint8 in [0, 255], the files in the
    same order, and ``{path: problem}`` of files skipped with ``on_error="skip"``. With
    ``"fail"`` (default) the first bad file raises :class:`ImageError`. All images must share one
    size (``ValueError`` names the first that does not); an empty folder is a ``ValueError``.
    """
    if on_error not in ("fail", "skip"):
        raise ValueError(f"on_error must be 'fail' or 'skip', got {on_error!r}")
    files = list_images(folder, recursive=recursive)[:limit]
    arrays, kept, skipped = [], [], {}
    for f in files:
        try:
            arr, _ = read_image(f)
        except ImageError as err:
            if on_error == "fail":
                raise
            skipped[str(f)] = err.problem
            continue
        if arrays and arr.shape != arrays[0].shape:
            raise ValueError(f"{f}: is {arr.shape[1]}x{arr.shape[0]} but {kept[0].name} is "
                             f"{arrays[0].shape[1]}x{arrays[0].shape[0]}; prepare the folder "
                             "with `patchforensics import` first")
        arrays.append(arr)
        kept.append(f)
    if not arrays:
        raise ValueError(f"{folder}: holds no readable images")
    return np.stack(arrays), kept, skipped


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """N x H x W x 3 uint8 in [0, 255] -> N x 3 x H x W float32 in [-1, 1] (the paper's range)."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """N x C x H x W float in [-1, 1] (C = 1 or 3) -> N x H x W x 3 uint8 in [0, 255].

    Values are clipped; one channel (a gray generator) is replicated to three.
    """
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"expected N x 1|3 x H x W, got {tuple(x.shape)}")
    u8 = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    if u8.shape[1] == 1:
        u8 = u8.expand(-1, 3, -1, -1)
    return u8.permute(0, 2, 3, 1).contiguous().cpu().numpy()


class RealFakeDataset(Dataset):
    """Real and fake folders as one in-memory dataset of ``(image, label)`` pairs.

    ``image``: 3 x S x S float32 in [-1, 1]; ``label``: 0 real, 1 fake. Both folders must hold
    images of the same size (checked; a mismatch is a container leak the classifier would learn).
    """

    def __init__(self, real_dir: str | os.PathLike, fake_dir: str | os.PathLike, *,
                 on_error: str = "fail", limit: int | None = None) -> None:
        real, self.real_files, skipped_r = load_folder(real_dir, on_error=on_error, limit=limit)
        fake, self.fake_files, skipped_f = load_folder(fake_dir, on_error=on_error, limit=limit)
        if real.shape[1:] != fake.shape[1:]:
            raise ValueError(f"{fake_dir}: images are {fake.shape[2]}x{fake.shape[1]} but "
                             f"{real_dir} holds {real.shape[2]}x{real.shape[1]}")
        if Path(real_dir).resolve() == Path(fake_dir).resolve():
            raise ValueError(f"{real_dir}: the real and the fake folder are the same folder")
        self.skipped = {**skipped_r, **skipped_f}
        self.images = torch.cat([to_tensor(real), to_tensor(fake)])
        self.labels = torch.cat([torch.full((len(real),), REAL), torch.full((len(fake),), FAKE)])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[i], self.labels[i]
